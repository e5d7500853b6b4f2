// Runs the CUDA kernel body (kernels/roi_align/roi_align_kernel_body.cuh) on the CPU, one block at a
// time and one thread at a time per phase, so the kernel's indexing, tables, level choice and
// fallback path are tested on machines without a GPU. The shared tables are poisoned before every
// block: a thread that read an entry no thread wrote in phase 1 would produce garbage.
// float32 only; what it cannot cover (concurrency, __ldg, half) is covered by the gpu-marked tests.
#include "roi_align_kernel_body.cuh"

#include <cmath>
#include <vector>

using namespace segrt;
using namespace segrt::kernel;

namespace
{
void runGrid(KernelArgs const& a, int32_t nthreads)
{
    if (a.k == 0 || a.c == 0)
    {
        return;
    }
    AxisSample const poison{0, 0, NAN, NAN}; // in bounds, but NaN weights poison any output that reads it
    std::vector<AxisSample> yTable(kMaxTable), xTable(kMaxTable);
    for (int64_t r = 0; r < a.k; ++r)
    {
        for (int64_t chunk = 0; chunk < a.chunks; ++chunk)
        {
            BlockState const s = blockSetup(a, r, chunk);
            if (s.done)
            {
                continue;
            }
            yTable.assign(kMaxTable, poison);
            xTable.assign(kMaxTable, poison);
            if (s.useTable && !s.badBatch)
            {
                for (int32_t tid = 0; tid < nthreads; ++tid)
                {
                    blockFillTables(s, a, tid, nthreads, yTable.data(), xTable.data());
                }
            }
            for (int32_t tid = 0; tid < nthreads; ++tid)
            {
                if (a.mode == kRoiAlignMax)
                {
                    blockCompute<float, true>(s, a, tid, nthreads, yTable.data(), xTable.data());
                }
                else
                {
                    blockCompute<float, false>(s, a, tid, nthreads, yTable.data(), xTable.data());
                }
            }
        }
    }
}
} // namespace

extern "C" int emulate_roi_align(const float* x, int64_t n, int64_t c, int64_t h, int64_t w, const float* rois,
    const int32_t* batch, int64_t k, int32_t out_h, int32_t out_w, float spatial_scale, int32_t sampling_ratio,
    int32_t mode, int32_t aligned, float* y, int32_t nthreads)
{
    KernelArgs a;
    if (!makeRoiAlignArgs(a, x, n, c, h, w, rois, batch, k, out_h, out_w, spatial_scale, sampling_ratio, mode,
            aligned, y))
    {
        return 1;
    }
    runGrid(a, nthreads);
    return 0;
}

extern "C" int emulate_multi_level(const void* const* features, const int64_t* heights, const int64_t* widths,
    const float* scales, int32_t num_levels, int64_t n, int64_t c, const float* rois, const int32_t* batch, int64_t k,
    int32_t out_h, int32_t out_w, int32_t sampling_ratio, int32_t aligned, float canonical_scale,
    int32_t canonical_level, float* y, int32_t nthreads)
{
    KernelArgs a;
    if (!makeMultiLevelArgs(a, features, heights, widths, scales, num_levels, n, c, rois, batch, k, out_h, out_w,
            sampling_ratio, aligned, canonical_scale, canonical_level, y))
    {
        return 1;
    }
    runGrid(a, nthreads);
    return 0;
}
