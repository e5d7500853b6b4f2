// Standalone driver for compute-sanitizer (scripts/gpu_check.sh): runs both CUDA launchers on
// edge cases (boxes outside the image, zero-area, huge with adaptive sampling -> table fallback,
// bad batch index, K = 0, uneven channel chunks, fp32 and fp16) and checks every fp32 result
// against the CPU implementation, fp16 within fp16 rounding. Buffers are allocated to the exact
// size, so memcheck flags any out-of-bounds access; racecheck checks the shared tap tables.
//
//   nvcc -std=c++17 -O2 -arch=sm_90 -Ikernels/roi_align tests/kernels/cuda_sanitize_driver.cu
//        kernels/roi_align/roi_align_kernel.cu kernels/roi_align/roi_align_cpu.cpp -o sanitize_driver
//   compute-sanitizer --tool memcheck --error-exitcode 1 ./sanitize_driver
#include "roi_align_cpu.h"
#include "roi_align_kernel.h"

#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace
{

int gFailures = 0;

#define CHECK_CUDA(expr)                                                                                               \
    do                                                                                                                 \
    {                                                                                                                  \
        cudaError_t const e_ = (expr);                                                                                 \
        if (e_ != cudaSuccess)                                                                                         \
        {                                                                                                              \
            std::printf("CUDA error %s at %s:%d: %s\n", cudaGetErrorName(e_), __FILE__, __LINE__, #expr);              \
            std::exit(2);                                                                                              \
        }                                                                                                              \
    } while (0)

struct Rng
{
    uint64_t s;
    float uniform()
    {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        return static_cast<float>((s >> 40) & 0xFFFFFF) / 16777216.F;
    }
};

template <typename T>
T* toDevice(std::vector<T> const& h)
{
    T* d = nullptr;
    CHECK_CUDA(cudaMalloc(&d, h.size() * sizeof(T) + (h.empty() ? 1 : 0)));
    if (!h.empty())
    {
        CHECK_CUDA(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
    }
    return d;
}

std::vector<float> halfRound(std::vector<float> const& v)
{
    std::vector<float> r(v.size());
    for (size_t i = 0; i < v.size(); ++i)
    {
        r[i] = __half2float(__float2half_rn(v[i]));
    }
    return r;
}

//! Boxes on an image of (imgH, imgW): random ones plus the edge cases.
std::vector<float> makeBoxes(Rng& rng, int k, float imgH, float imgW)
{
    std::vector<float> b;
    for (int i = 0; i < k; ++i)
    {
        float const x = rng.uniform() * imgW;
        float const y = rng.uniform() * imgH;
        float const w = std::exp(rng.uniform() * std::log(imgW * 1.5F));
        float const h = std::exp(rng.uniform() * std::log(imgH * 1.5F));
        b.insert(b.end(), {x, y, x + w, y + h});
    }
    float const edges[][4] = {{0, 0, imgW, imgH}, {imgW * 0.9F, imgH * 0.9F, imgW * 3, imgH * 3},
        {imgW * 2, imgH * 2, imgW * 3, imgH * 3}, {5, 5, 5, 5}, {5, 5, 5, 50}, {1, 1, 1.3F, 1.2F},
        {0, 0, imgW * 12, imgH * 12}};
    for (auto const& e : edges)
    {
        b.insert(b.end(), {e[0], e[1], e[2], e[3]});
    }
    return b;
}

void compare(std::string const& what, std::vector<float> const& got, std::vector<float> const& want, float tol)
{
    double worst = 0;
    for (size_t i = 0; i < want.size(); ++i)
    {
        double const d = std::fabs(static_cast<double>(got[i]) - want[i]) / (1.0 + std::fabs(want[i]));
        worst = d > worst || std::isnan(d) ? (std::isnan(d) ? INFINITY : d) : worst;
    }
    bool const ok = worst <= tol;
    gFailures += ok ? 0 : 1;
    std::printf("%-58s max rel err %.3g (tol %.0e) %s\n", what.c_str(), worst, tol, ok ? "ok" : "FAIL");
}

std::vector<float> fromDevice(void const* d, size_t count, bool half)
{
    std::vector<float> out(count);
    if (half)
    {
        std::vector<__half> h(count);
        CHECK_CUDA(cudaMemcpy(h.data(), d, count * sizeof(__half), cudaMemcpyDeviceToHost));
        for (size_t i = 0; i < count; ++i)
        {
            out[i] = __half2float(h[i]);
        }
    }
    else
    {
        CHECK_CUDA(cudaMemcpy(out.data(), d, count * sizeof(float), cudaMemcpyDeviceToHost));
    }
    return out;
}

void* featureToDevice(std::vector<float> const& v, bool half)
{
    if (!half)
    {
        return toDevice(v);
    }
    std::vector<__half> h(v.size());
    for (size_t i = 0; i < v.size(); ++i)
    {
        h[i] = __float2half_rn(v[i]);
    }
    return toDevice(h);
}

void singleLevel(Rng& rng, bool half, int mode, bool aligned, int ratio, int outH, int outW)
{
    int64_t const n = 2, c = 37, h = 45, w = 61;
    float const scale = 0.25F;
    std::vector<float> x(static_cast<size_t>(n * c * h * w));
    for (auto& v : x)
    {
        v = rng.uniform() * 4.F - 2.F;
    }
    if (half)
    {
        x = halfRound(x);
    }
    std::vector<float> rois = makeBoxes(rng, 60, h / scale, w / scale);
    int64_t const k = static_cast<int64_t>(rois.size() / 4);
    std::vector<int32_t> idx32(k);
    std::vector<int64_t> idx64(k);
    for (int64_t i = 0; i < k; ++i)
    {
        idx64[i] = idx32[i] = static_cast<int32_t>(rng.uniform() * n) % n;
    }
    idx32[3] = 7; // out of range: the GPU writes zeros for this RoI
    std::vector<float> want(static_cast<size_t>(k * c * outH * outW));
    std::string msg;
    segrt::CpuFeatureLevel const level{x.data(), h, w, scale};
    segrt::CpuPoolAttrs const attrs{outH, outW, ratio, mode, aligned};
    if (segrt::roiAlignCpu(level, n, c, rois.data(), idx64.data(), k, attrs, 0, want.data(), msg) != segrt::CpuStatus::kOk)
    {
        std::printf("CPU reference failed: %s\n", msg.c_str());
        std::exit(2);
    }
    std::fill(want.begin() + 3 * c * outH * outW, want.begin() + 4 * c * outH * outW, 0.F);

    void* dx = featureToDevice(x, half);
    float* dr = toDevice(rois);
    int32_t* di = toDevice(idx32);
    void* dy = nullptr;
    size_t const bytes = want.size() * (half ? 2 : 4);
    CHECK_CUDA(cudaMalloc(&dy, bytes));
    CHECK_CUDA(segrt_roi_align_cuda(half ? SEGRT_DTYPE_FLOAT16 : SEGRT_DTYPE_FLOAT32, dx, n, c, h, w, dr, di, k, outH,
        outW, scale, ratio, mode, aligned ? 1 : 0, dy, nullptr));
    CHECK_CUDA(cudaDeviceSynchronize());
    char what[160];
    std::snprintf(what, sizeof(what), "roi_align %s %s aligned=%d ratio=%d out=%dx%d", half ? "fp16" : "fp32",
        mode ? "max" : "avg", aligned ? 1 : 0, ratio, outH, outW);
    compare(what, fromDevice(dy, want.size(), half), want, half ? 2e-3F : 1e-5F);
    // K = 0 must launch nothing and succeed, even with null pointers.
    CHECK_CUDA(segrt_roi_align_cuda(SEGRT_DTYPE_FLOAT32, nullptr, n, c, h, w, nullptr, nullptr, 0, outH, outW, scale,
        ratio, mode, 1, nullptr, nullptr));
    CHECK_CUDA(cudaFree(dx));
    CHECK_CUDA(cudaFree(dr));
    CHECK_CUDA(cudaFree(di));
    CHECK_CUDA(cudaFree(dy));
}

void multiLevel(Rng& rng, bool half, int outSize, int ratio, bool aligned)
{
    int64_t const n = 2, c = 19;
    int64_t const imgH = 200, imgW = 328;
    int const levels = 4;
    float const scales[levels] = {0.25F, 0.125F, 0.0625F, 0.03125F};
    std::vector<std::vector<float>> feats(levels);
    std::vector<segrt::CpuFeatureLevel> cpuLevels(levels);
    std::vector<void const*> dfeats(levels);
    int64_t heights[levels], widths[levels];
    for (int l = 0; l < levels; ++l)
    {
        heights[l] = (imgH + (4 << l) - 1) / (4 << l);
        widths[l] = (imgW + (4 << l) - 1) / (4 << l);
        feats[l].resize(static_cast<size_t>(n * c * heights[l] * widths[l]));
        for (auto& v : feats[l])
        {
            v = rng.uniform() * 4.F - 2.F;
        }
        if (half)
        {
            feats[l] = halfRound(feats[l]);
        }
        cpuLevels[l] = segrt::CpuFeatureLevel{feats[l].data(), heights[l], widths[l], scales[l]};
        dfeats[l] = featureToDevice(feats[l], half);
    }
    std::vector<float> rois = makeBoxes(rng, 200, static_cast<float>(imgH), static_cast<float>(imgW));
    int64_t const k = static_cast<int64_t>(rois.size() / 4);
    std::vector<int32_t> idx32(k);
    std::vector<int64_t> idx64(k);
    for (int64_t i = 0; i < k; ++i)
    {
        idx64[i] = idx32[i] = static_cast<int32_t>(rng.uniform() * n) % n;
    }
    std::vector<float> want(static_cast<size_t>(k * c * outSize * outSize));
    std::string msg;
    segrt::CpuPoolAttrs const attrs{outSize, outSize, ratio, 0 /* avg */, aligned};
    if (segrt::multiLevelRoiAlignCpu(cpuLevels.data(), levels, n, c, rois.data(), idx64.data(), k, attrs, 224.F, 4, 0,
            want.data(), msg)
        != segrt::CpuStatus::kOk)
    {
        std::printf("CPU reference failed: %s\n", msg.c_str());
        std::exit(2);
    }
    float* dr = toDevice(rois);
    int32_t* di = toDevice(idx32);
    void* dy = nullptr;
    CHECK_CUDA(cudaMalloc(&dy, want.size() * (half ? 2 : 4)));
    CHECK_CUDA(segrt_multi_level_roi_align_cuda(half ? SEGRT_DTYPE_FLOAT16 : SEGRT_DTYPE_FLOAT32, dfeats.data(),
        heights, widths, scales, levels, n, c, dr, di, k, outSize, outSize, ratio, aligned ? 1 : 0, 224.F, 4, dy,
        nullptr));
    CHECK_CUDA(cudaDeviceSynchronize());
    char what[160];
    std::snprintf(what, sizeof(what), "multi_level %s ratio=%d aligned=%d out=%dx%d", half ? "fp16" : "fp32", ratio,
        aligned ? 1 : 0, outSize, outSize);
    compare(what, fromDevice(dy, want.size(), half), want, half ? 2e-3F : 1e-5F);
    for (auto p : dfeats)
    {
        CHECK_CUDA(cudaFree(const_cast<void*>(p)));
    }
    CHECK_CUDA(cudaFree(dr));
    CHECK_CUDA(cudaFree(di));
    CHECK_CUDA(cudaFree(dy));
}

} // namespace

int main()
{
    Rng rng{42};
    for (bool half : {false, true})
    {
        for (int mode : {0, 1})
        {
            for (bool aligned : {true, false})
            {
                for (int ratio : {0, 2})
                {
                    singleLevel(rng, half, mode, aligned, ratio, 7, 7);
                }
            }
        }
        singleLevel(rng, half, 0, true, 0, 14, 5);
        for (int out : {7, 14})
        {
            multiLevel(rng, half, out, 2, false);
        }
        multiLevel(rng, half, 7, 0, true);
    }
    std::printf("%s: %d failure(s)\n", gFailures ? "FAILED" : "PASSED", gFailures);
    return gFailures ? 1 : 0;
}
