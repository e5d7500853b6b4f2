// RoIAlign math shared by the CPU implementation and the CUDA kernels.
//
// Semantics follow ONNX RoiAlign (opset 16+) and torchvision.ops.roi_align,
// whose CPU/CUDA kernels (torchvision/csrc/ops/{cpu,cuda}/roi_align_kernel.*)
// and the ONNX reference evaluator (onnx/reference/ops/op_roi_align.py) are
// the references this file was written against:
//   * aligned (ONNX half_pixel): box corners are shifted by -0.5 px and the
//     RoI size is not clamped;
//   * not aligned (ONNX output_half_pixel): no shift, RoI size clamped to >= 1;
//   * sampling grid per output bin: sampling_ratio, or ceil(roi_size / out_size)
//     when sampling_ratio == 0 (adaptive);
//   * a sample at y < -1 or y > H (or x < -1, x > W) reads as 0; otherwise the
//     coordinate is clamped into [0, H-1] and bilinearly interpolated;
//   * avg: mean over the grid (count >= 1); max (ONNX only): max over samples of
//     max(w1*v1, w2*v2, w3*v3, w4*v4) -- the ONNX definition, kept as is.
//
// The FPN level rule is torchvision.ops.poolers.LevelMapper:
//   k = floor(canonical_level + log2(sqrt(area) / canonical_scale) + 1e-6),
//   clamped to [k_min, k_max], area = (x2 - x1) * (y2 - y1) without +1.
//
// Everything here is plain arithmetic so that it compiles as host C++ and as
// CUDA device code. Every function is safe for any input (NaN, inf, inverted
// or huge boxes): it never produces an index outside [0, size).
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define SEGRT_HD __host__ __device__ __forceinline__
#else
#define SEGRT_HD inline
#endif

namespace segrt
{

//! Pooling mode (ONNX RoiAlign `mode`).
enum RoiAlignMode : int32_t
{
    kRoiAlignAvg = 0,
    kRoiAlignMax = 1,
};

//! Most FPN levels the multi-level op accepts (P2..P5 needs 4; P2..P6 would need 5).
constexpr int32_t kMaxLevels = 8;

//! Adaptive sampling grids are capped per axis so that a absurd box (1e9 px)
//! cannot make the loop count overflow or run for hours. Boxes that need more
//! than this many samples per bin per axis (roi size > 4096 * output size, in
//! feature-map pixels) sample a 4096-point grid instead of the reference's.
constexpr int32_t kMaxSamplingGrid = 4096;

//! Where one RoI samples its feature map, in feature-map pixels.
struct RoiGeometry
{
    float startH;  //!< top of the RoI
    float startW;  //!< left of the RoI
    float binH;    //!< height of one output bin
    float binW;    //!< width of one output bin
    int32_t gridH; //!< samples per bin along y (>= 0)
    int32_t gridW; //!< samples per bin along x (>= 0)
    float count;   //!< divisor of the average: max(gridH * gridW, 1)
};

SEGRT_HD int32_t samplingGrid(int32_t samplingRatio, float roiSize, int32_t outSize)
{
    if (samplingRatio > 0)
    {
        return samplingRatio;
    }
    float g = ceilf(roiSize / static_cast<float>(outSize));
    // !(g > 0) also catches NaN; an inverted box has no samples (as in the reference).
    if (!(g > 0.F))
    {
        return 0;
    }
    return g > static_cast<float>(kMaxSamplingGrid) ? kMaxSamplingGrid : static_cast<int32_t>(g);
}

//! Geometry of `box` = (x1, y1, x2, y2) in input-image pixels, on a feature map of scale `spatialScale`.
SEGRT_HD RoiGeometry roiGeometry(
    float x1, float y1, float x2, float y2, float spatialScale, bool aligned, int32_t outH, int32_t outW, int32_t samplingRatio)
{
    float const offset = aligned ? 0.5F : 0.F;
    RoiGeometry g;
    g.startW = x1 * spatialScale - offset;
    g.startH = y1 * spatialScale - offset;
    float const endW = x2 * spatialScale - offset;
    float const endH = y2 * spatialScale - offset;
    float roiW = endW - g.startW;
    float roiH = endH - g.startH;
    if (!aligned)
    {
        // Force malformed RoIs to be 1x1 (torchvision / ONNX output_half_pixel).
        roiW = roiW > 1.F ? roiW : 1.F;
        roiH = roiH > 1.F ? roiH : 1.F;
    }
    g.binH = roiH / static_cast<float>(outH);
    g.binW = roiW / static_cast<float>(outW);
    g.gridH = samplingGrid(samplingRatio, roiH, outH);
    g.gridW = samplingGrid(samplingRatio, roiW, outW);
    int64_t const n = static_cast<int64_t>(g.gridH) * static_cast<int64_t>(g.gridW);
    g.count = n > 1 ? static_cast<float>(n) : 1.F;
    return g;
}

//! One bilinear sample position along one axis. `low < 0` marks a sample that reads as 0.
struct AxisSample
{
    int32_t low;  //!< lower tap index, or -1 when the sample lies outside [-1, size]
    int32_t high; //!< upper tap index
    float l;      //!< weight of the upper tap (fractional part)
    float h;      //!< weight of the lower tap (1 - l)
};

//! Sample `i` (of `grid`) of output bin `p`, along an axis of length `size`.
SEGRT_HD AxisSample axisSample(float start, float bin, int32_t p, int32_t i, int32_t grid, int32_t size)
{
    // Same expression (and float rounding) as the references.
    float v = start + static_cast<float>(p) * bin
        + static_cast<float>(i + 0.5F) * bin / static_cast<float>(grid);
    AxisSample s;
    // Written as !(inside) so NaN reads as outside instead of reaching the int cast.
    if (size <= 0 || !(v >= -1.F && v <= static_cast<float>(size)))
    {
        s.low = -1;
        s.high = -1;
        s.l = 0.F;
        s.h = 0.F;
        return s;
    }
    if (v <= 0.F)
    {
        v = 0.F;
    }
    int32_t low = static_cast<int32_t>(v);
    int32_t high;
    if (low >= size - 1)
    {
        high = low = size - 1;
        v = static_cast<float>(low);
    }
    else
    {
        high = low + 1;
    }
    s.low = low;
    s.high = high;
    s.l = v - static_cast<float>(low);
    s.h = 1.F - s.l;
    return s;
}

//! FPN level index in [0, numLevels) for one box (torchvision LevelMapper), given k_min of level 0.
SEGRT_HD int32_t fpnLevel(float x1, float y1, float x2, float y2, float canonicalScale, int32_t canonicalLevel,
    int32_t kMin, int32_t numLevels)
{
    if (numLevels <= 1)
    {
        return 0;
    }
    float const area = (x2 - x1) * (y2 - y1);
    float const s = sqrtf(area);
    float const t = floorf(static_cast<float>(canonicalLevel) + log2f(s / canonicalScale) + 1e-6F);
    float const kMaxF = static_cast<float>(kMin + numLevels - 1);
    // fmaxf/fminf return the other operand for NaN (negative area): NaN maps to k_min, never out of range.
    float const k = fminf(fmaxf(t, static_cast<float>(kMin)), kMaxF);
    return static_cast<int32_t>(k) - kMin;
}

//! k_min of an FPN pyramid whose finest level has scale `scale0` (e.g. 1/4 -> 2).
inline int32_t fpnKMin(float scale0)
{
    return static_cast<int32_t>(std::lround(-std::log2(static_cast<double>(scale0))));
}

} // namespace segrt
