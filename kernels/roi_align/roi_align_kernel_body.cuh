// Body of the CUDA RoIAlign kernel, written as host+device functions so that
// the exact same code can also be run on the CPU by a sequential emulator
// (tests/kernels/cuda_kernel_emulator.cpp): one call per block phase and
// thread, phases separated where the kernel has its barrier.
//
// Design (why it differs from torchvision's one-thread-per-output kernel):
//  * one block per (RoI, channel chunk). The block computes the RoI's FPN
//    level and geometry once and fills two small shared tables of bilinear
//    taps (one per axis: the taps are separable), so per output only the
//    loads and the weighted sum remain;
//  * the block's outputs are one contiguous range of y, walked with a
//    block-stride loop, so stores are fully coalesced and neighbouring threads
//    read neighbouring taps of the same channel plane;
//  * the multi-level op picks the level per RoI inside the kernel: one launch
//    replaces torchvision's per-level roi_align launches, index selects,
//    host-synchronising torch.where calls and the final scatter.
// Tables that would not fit (adaptive sampling of huge RoIs) fall back to
// computing the taps on the fly; results are identical.
#pragma once

#include "roi_align_common.h"

#include <climits>
#include <cstdint>

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#endif

namespace segrt
{
namespace kernel
{

constexpr int32_t kThreads = 256;
constexpr int32_t kMaxTable = 512; //!< shared entries per axis (2 x 512 x 16 B = 16 KiB)
constexpr int32_t kOutputsPerBlock = 2048;

struct LevelTable
{
    void const* data[kMaxLevels];
    int32_t height[kMaxLevels];
    int32_t width[kMaxLevels];
    float scale[kMaxLevels];
};

struct KernelArgs
{
    LevelTable levels;
    int32_t numLevels;
    int32_t kMin;
    float canonicalScale;
    int32_t canonicalLevel;
    float const* rois;
    int32_t const* batch;
    void* out;
    int64_t n;
    int64_t c;
    int64_t k;
    int32_t outH;
    int32_t outW;
    int32_t samplingRatio;
    int32_t aligned;
    int32_t mode;
    int32_t channelsPerBlock; //!< set by planGrid()
    int32_t chunks;           //!< grid.y, set by planGrid()
};

//! Read-only load: through the texture cache on the GPU (__ldg), plain on the host (the CPU emulator).
template <typename T>
SEGRT_HD T loadReadOnly(T const* p)
{
#if defined(__CUDA_ARCH__)
    return __ldg(p);
#else
    return *p;
#endif
}

SEGRT_HD float loadValue(float const* p)
{
    return loadReadOnly(p);
}

SEGRT_HD int32_t loadIndex(int32_t const* p)
{
    return loadReadOnly(p);
}

SEGRT_HD float loadBox(float const* p)
{
    return loadValue(p);
}

SEGRT_HD void storeValue(float* p, float v)
{
    *p = v;
}

#if defined(__CUDACC__)
__device__ __forceinline__ float loadValue(__half const* p)
{
    return __half2float(__ldg(p));
}

__device__ __forceinline__ void storeValue(__half* p, float v)
{
    *p = __float2half_rn(v);
}
#endif

//! What every thread of a block knows about its (RoI, channel chunk).
struct BlockState
{
    bool done;      //!< no work (channel chunk past C)
    bool badBatch;  //!< batch index outside [0, N): write zeros
    bool useTable;  //!< taps fit the shared tables
    int32_t total;  //!< outputs of this block
    int32_t outHW;
    int32_t height;
    int32_t width;
    int64_t outOffset;   //!< element offset of the block's first output
    int64_t inOffset;    //!< element offset of the block's first input plane in its level
    int32_t level;
    RoiGeometry g;
};

SEGRT_HD BlockState blockSetup(KernelArgs const& a, int64_t r, int64_t chunk)
{
    BlockState s{};
    int64_t const c0 = chunk * a.channelsPerBlock;
    s.done = c0 >= a.c;
    if (s.done)
    {
        return s;
    }
    int64_t const remaining = a.c - c0;
    int32_t const channels = static_cast<int32_t>(remaining < a.channelsPerBlock ? remaining : a.channelsPerBlock);
    s.outHW = a.outH * a.outW;
    s.total = channels * s.outHW; // planGrid() guarantees channelsPerBlock * outHW < 2^31
    s.outOffset = (r * a.c + c0) * s.outHW;
    // Every thread derives the same RoI facts from a broadcast read; no shared state needed.
    float const x1 = loadBox(a.rois + 4 * r + 0);
    float const y1 = loadBox(a.rois + 4 * r + 1);
    float const x2 = loadBox(a.rois + 4 * r + 2);
    float const y2 = loadBox(a.rois + 4 * r + 3);
    int32_t const b = loadIndex(a.batch + r);
    s.badBatch = b < 0 || b >= a.n;
    if (s.badBatch)
    {
        return s;
    }
    s.level = fpnLevel(x1, y1, x2, y2, a.canonicalScale, a.canonicalLevel, a.kMin, a.numLevels);
    s.height = a.levels.height[s.level];
    s.width = a.levels.width[s.level];
    s.g = roiGeometry(x1, y1, x2, y2, a.levels.scale[s.level], a.aligned != 0, a.outH, a.outW, a.samplingRatio);
    s.useTable = static_cast<int64_t>(a.outH) * s.g.gridH <= kMaxTable
        && static_cast<int64_t>(a.outW) * s.g.gridW <= kMaxTable;
    s.inOffset = (static_cast<int64_t>(b) * a.c + c0) * static_cast<int64_t>(s.height) * s.width;
    return s;
}

//! Phase 1 (only when s.useTable): thread `tid` of `nthreads` fills its share of both tables.
SEGRT_HD void blockFillTables(
    BlockState const& s, KernelArgs const& a, int32_t tid, int32_t nthreads, AxisSample* yTable, AxisSample* xTable)
{
    int32_t const gh = s.g.gridH;
    int32_t const gw = s.g.gridW;
    for (int32_t i = tid; i < a.outH * gh; i += nthreads)
    {
        yTable[i] = axisSample(s.g.startH, s.g.binH, i / gh, i % gh, gh, s.height);
    }
    for (int32_t i = tid; i < a.outW * gw; i += nthreads)
    {
        xTable[i] = axisSample(s.g.startW, s.g.binW, i / gw, i % gw, gw, s.width);
    }
}

//! Phase 2: thread `tid` of `nthreads` computes outputs tid, tid + nthreads, ... of the block.
template <typename T, bool kMax>
SEGRT_HD void blockCompute(BlockState const& s, KernelArgs const& a, int32_t tid, int32_t nthreads,
    AxisSample const* yTable, AxisSample const* xTable)
{
    T* out = static_cast<T*>(a.out) + s.outOffset;
    if (s.badBatch)
    {
        for (int32_t j = tid; j < s.total; j += nthreads)
        {
            storeValue(out + j, 0.F);
        }
        return;
    }
    int32_t const gh = s.g.gridH;
    int32_t const gw = s.g.gridW;
    int64_t const hw = static_cast<int64_t>(s.height) * s.width;
    T const* base = static_cast<T const*>(a.levels.data[s.level]) + s.inOffset;
    bool const empty = gh == 0 || gw == 0;
    for (int32_t j = tid; j < s.total; j += nthreads)
    {
        int32_t const cl = j / s.outHW;
        int32_t const bin = j - cl * s.outHW;
        int32_t const ph = bin / a.outW;
        int32_t const pw = bin - ph * a.outW;
        T const* img = base + cl * hw;
        float acc = kMax ? -INFINITY : 0.F;
        for (int32_t iy = 0; iy < gh; ++iy)
        {
            AxisSample const sy
                = s.useTable ? yTable[ph * gh + iy] : axisSample(s.g.startH, s.g.binH, ph, iy, gh, s.height);
            for (int32_t ix = 0; ix < gw; ++ix)
            {
                AxisSample const sx
                    = s.useTable ? xTable[pw * gw + ix] : axisSample(s.g.startW, s.g.binW, pw, ix, gw, s.width);
                if (sy.low < 0 || sx.low < 0)
                {
                    if (kMax)
                    {
                        acc = fmaxf(acc, 0.F); // an outside sample is a 0 candidate (ONNX)
                    }
                    continue;
                }
                float const w1 = sy.h * sx.h;
                float const w2 = sy.h * sx.l;
                float const w3 = sy.l * sx.h;
                float const w4 = sy.l * sx.l;
                T const* rowLo = img + static_cast<int64_t>(sy.low) * s.width;
                T const* rowHi = img + static_cast<int64_t>(sy.high) * s.width;
                float const v1 = loadValue(rowLo + sx.low);
                float const v2 = loadValue(rowLo + sx.high);
                float const v3 = loadValue(rowHi + sx.low);
                float const v4 = loadValue(rowHi + sx.high);
                if (kMax)
                {
                    acc = fmaxf(acc, fmaxf(fmaxf(fmaxf(w1 * v1, w2 * v2), w3 * v3), w4 * v4));
                }
                else
                {
                    acc += w1 * v1 + w2 * v2 + w3 * v3 + w4 * v4;
                }
            }
        }
        storeValue(out + j, kMax ? (empty ? 0.F : acc) : acc / s.g.count);
    }
}

// ------------------------------------------------------------------ host side

inline bool levelOk(int64_t h, int64_t w)
{
    return h >= 1 && w >= 1 && h <= INT32_MAX && w <= INT32_MAX && h * w <= INT32_MAX;
}

inline bool commonOk(int64_t n, int64_t c, int64_t k, int32_t outH, int32_t outW, int32_t samplingRatio)
{
    return n >= 0 && c >= 0 && k >= 0 && k <= INT32_MAX && outH >= 1 && outW >= 1
        && static_cast<int64_t>(outH) * outW <= INT32_MAX && samplingRatio >= 0;
}

//! Grid of K x chunks blocks with about kOutputsPerBlock outputs each, channels split evenly.
//! False when a chunk would exceed 2^31 outputs (far beyond any real use).
inline bool planGrid(KernelArgs& a)
{
    if (a.c <= 0 || a.k <= 0)
    {
        a.channelsPerBlock = 1; // nothing will be launched
        a.chunks = 1;
        return true;
    }
    int64_t const outHW = static_cast<int64_t>(a.outH) * a.outW;
    int64_t chunks = (a.c * outHW + kOutputsPerBlock - 1) / kOutputsPerBlock;
    chunks = chunks < 1 ? 1 : (chunks > a.c ? a.c : chunks);
    int64_t perBlock = (a.c + chunks - 1) / chunks;
    chunks = (a.c + perBlock - 1) / perBlock;
    if (chunks > 65535) // grid.y limit
    {
        perBlock = (a.c + 65534) / 65535;
        chunks = (a.c + perBlock - 1) / perBlock;
    }
    if (perBlock * outHW > INT32_MAX)
    {
        return false;
    }
    a.channelsPerBlock = static_cast<int32_t>(perBlock);
    a.chunks = static_cast<int32_t>(chunks);
    return true;
}

//! The RoI, output and sampling fields both ops share; the levels are filled in by the caller.
inline KernelArgs roiArgs(float const* rois, int32_t const* batch, void* y, int64_t n, int64_t c, int64_t k,
    int32_t outH, int32_t outW, int32_t samplingRatio, int32_t aligned, int32_t mode)
{
    KernelArgs a{};
    a.rois = rois;
    a.batch = batch;
    a.out = y;
    a.n = n;
    a.c = c;
    a.k = k;
    a.outH = outH;
    a.outW = outW;
    a.samplingRatio = samplingRatio;
    a.aligned = aligned != 0 ? 1 : 0;
    a.mode = mode;
    return a;
}

//! Arguments of one single-level RoIAlign; false when unusable (the launcher returns cudaErrorInvalidValue).
inline bool makeRoiAlignArgs(KernelArgs& a, void const* x, int64_t n, int64_t c, int64_t h, int64_t w,
    float const* rois, int32_t const* batch, int64_t k, int32_t outH, int32_t outW, float spatialScale,
    int32_t samplingRatio, int32_t mode, int32_t aligned, void* y)
{
    if (!commonOk(n, c, k, outH, outW, samplingRatio) || (mode != kRoiAlignAvg && mode != kRoiAlignMax)
        || !levelOk(h, w))
    {
        return false;
    }
    a = roiArgs(rois, batch, y, n, c, k, outH, outW, samplingRatio, aligned, mode);
    a.levels.data[0] = x;
    a.levels.height[0] = static_cast<int32_t>(h);
    a.levels.width[0] = static_cast<int32_t>(w);
    a.levels.scale[0] = spatialScale;
    a.numLevels = 1;
    a.kMin = 0;
    a.canonicalScale = 224.F;
    a.canonicalLevel = 4;
    bool const work = k > 0 && c > 0;
    return (!work || (x != nullptr && rois != nullptr && batch != nullptr && y != nullptr)) && planGrid(a);
}

//! Arguments of one fused multi-level RoIAlign (avg); false when unusable.
inline bool makeMultiLevelArgs(KernelArgs& a, void const* const* features, int64_t const* heights,
    int64_t const* widths, float const* scales, int32_t numLevels, int64_t n, int64_t c, float const* rois,
    int32_t const* batch, int64_t k, int32_t outH, int32_t outW, int32_t samplingRatio, int32_t aligned,
    float canonicalScale, int32_t canonicalLevel, void* y)
{
    if (!commonOk(n, c, k, outH, outW, samplingRatio) || features == nullptr || heights == nullptr
        || widths == nullptr || scales == nullptr || numLevels < 1 || numLevels > kMaxLevels
        || !(canonicalScale > 0.F))
    {
        return false;
    }
    bool const work = k > 0 && c > 0;
    a = roiArgs(rois, batch, y, n, c, k, outH, outW, samplingRatio, aligned, kRoiAlignAvg);
    for (int32_t l = 0; l < numLevels; ++l)
    {
        if (!levelOk(heights[l], widths[l]) || !(scales[l] > 0.F) || (work && features[l] == nullptr))
        {
            return false;
        }
        a.levels.data[l] = features[l];
        a.levels.height[l] = static_cast<int32_t>(heights[l]);
        a.levels.width[l] = static_cast<int32_t>(widths[l]);
        a.levels.scale[l] = scales[l];
    }
    a.numLevels = numLevels;
    a.kMin = fpnKMin(scales[0]);
    a.canonicalScale = canonicalScale;
    a.canonicalLevel = canonicalLevel;
    return (!work || (rois != nullptr && batch != nullptr && y != nullptr)) && planGrid(a);
}

} // namespace kernel
} // namespace segrt
