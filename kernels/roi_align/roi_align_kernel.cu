// CUDA RoIAlign kernels and their C launchers; see roi_align_kernel.h for the
// contract, roi_align_kernel_body.cuh for the kernel body and its design, and
// roi_align_common.h for the semantics (shared with the CPU implementation).
#include "roi_align_kernel.h"

#include "roi_align_kernel_body.cuh"

#include <cuda_fp16.h>

namespace segrt
{
namespace kernel
{
namespace
{

template <typename T, bool kMax>
__global__ void __launch_bounds__(kThreads) roiAlignKernel(KernelArgs const a)
{
    __shared__ AxisSample yTable[kMaxTable];
    __shared__ AxisSample xTable[kMaxTable];
    BlockState const s = blockSetup(a, blockIdx.x, blockIdx.y);
    if (s.done)
    {
        return;
    }
    // useTable and badBatch are the same in every thread of the block, so the barrier is safe.
    if (s.useTable && !s.badBatch)
    {
        blockFillTables(s, a, threadIdx.x, blockDim.x, yTable, xTable);
        __syncthreads();
    }
    blockCompute<T, kMax>(s, a, threadIdx.x, blockDim.x, yTable, xTable);
}

cudaError_t launch(KernelArgs const& a, int32_t dtype, cudaStream_t stream)
{
    if (a.k == 0 || a.c == 0)
    {
        return cudaSuccess; // nothing to write: return at once
    }
    dim3 const grid(static_cast<uint32_t>(a.k), static_cast<uint32_t>(a.chunks));
    bool const isMax = a.mode == kRoiAlignMax;
    if (dtype == SEGRT_DTYPE_FLOAT32)
    {
        if (isMax)
        {
            roiAlignKernel<float, true><<<grid, kThreads, 0, stream>>>(a);
        }
        else
        {
            roiAlignKernel<float, false><<<grid, kThreads, 0, stream>>>(a);
        }
    }
    else
    {
        if (isMax)
        {
            roiAlignKernel<__half, true><<<grid, kThreads, 0, stream>>>(a);
        }
        else
        {
            roiAlignKernel<__half, false><<<grid, kThreads, 0, stream>>>(a);
        }
    }
    return cudaGetLastError();
}

bool dtypeOk(int32_t dtype)
{
    return dtype == SEGRT_DTYPE_FLOAT32 || dtype == SEGRT_DTYPE_FLOAT16;
}

} // namespace
} // namespace kernel
} // namespace segrt

extern "C" int32_t segrt_roi_align_cuda_abi_version(void)
{
    return SEGRT_ROI_ALIGN_CUDA_ABI_VERSION;
}

extern "C" const char* segrt_roi_align_cuda_error_string(int32_t status)
{
    return cudaGetErrorString(static_cast<cudaError_t>(status));
}

extern "C" cudaError_t segrt_roi_align_cuda(int32_t dtype, const void* x, int64_t n, int64_t c, int64_t h, int64_t w,
    const float* rois, const int32_t* batch_indices, int64_t k, int32_t out_h, int32_t out_w, float spatial_scale,
    int32_t sampling_ratio, int32_t mode, int32_t aligned, void* y, cudaStream_t stream)
{
    using namespace segrt::kernel;
    KernelArgs a;
    if (!dtypeOk(dtype)
        || !makeRoiAlignArgs(a, x, n, c, h, w, rois, batch_indices, k, out_h, out_w, spatial_scale, sampling_ratio,
            mode, aligned, y))
    {
        return cudaErrorInvalidValue;
    }
    return launch(a, dtype, stream);
}

extern "C" cudaError_t segrt_multi_level_roi_align_cuda(int32_t dtype, const void* const* features,
    const int64_t* heights, const int64_t* widths, const float* spatial_scales, int32_t num_levels, int64_t n,
    int64_t c, const float* rois, const int32_t* batch_indices, int64_t k, int32_t out_h, int32_t out_w,
    int32_t sampling_ratio, int32_t aligned, float canonical_scale, int32_t canonical_level, void* y,
    cudaStream_t stream)
{
    using namespace segrt::kernel;
    KernelArgs a;
    if (!dtypeOk(dtype)
        || !makeMultiLevelArgs(a, features, heights, widths, spatial_scales, num_levels, n, c, rois, batch_indices, k,
            out_h, out_w, sampling_ratio, aligned, canonical_scale, canonical_level, y))
    {
        return cudaErrorInvalidValue;
    }
    return launch(a, dtype, stream);
}
