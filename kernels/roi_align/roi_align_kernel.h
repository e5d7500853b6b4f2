/* CUDA RoIAlign launchers (libsegrt_roi_align_cuda.so; also linked into the
 * TensorRT plugin library). They know nothing of TensorRT.
 *
 * Semantics: identical to the CPU implementation (roi_align_cpu.h) and to
 * roi_align_common.h: ONNX RoiAlign for segrt_roi_align_cuda,
 * torchvision.ops.MultiScaleRoIAlign for segrt_multi_level_roi_align_cuda.
 *
 * Memory: every pointer except `features`, `heights`, `widths` and
 * `spatial_scales` (host arrays describing the levels) is device memory.
 * Features and output are NCHW, linear, dtype SEGRT_DTYPE_FLOAT32 or
 * SEGRT_DTYPE_FLOAT16; rois are float32 [k, 4] (x1, y1, x2, y2, input-image
 * pixels) so fp16 engines keep full box precision; batch_indices are int32 [k].
 * Computation is in float32 for both dtypes.
 *
 * Each launcher enqueues at most one kernel on `stream` and returns at once:
 * cudaSuccess, cudaErrorInvalidValue for unusable arguments (nothing is
 * launched), or the launch error. k == 0 or c == 0 launches nothing. A batch
 * index outside [0, n) yields zeros for that RoI (a kernel cannot raise). */
#ifndef SEGRT_ROI_ALIGN_KERNEL_H
#define SEGRT_ROI_ALIGN_KERNEL_H

#include <cuda_runtime_api.h>
#include <stdint.h>

#if defined(_WIN32)
#define SEGRT_CUDA_API __declspec(dllexport)
#else
#define SEGRT_CUDA_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define SEGRT_ROI_ALIGN_CUDA_ABI_VERSION 1

#define SEGRT_DTYPE_FLOAT32 0
#define SEGRT_DTYPE_FLOAT16 1

/* Returns SEGRT_ROI_ALIGN_CUDA_ABI_VERSION. */
SEGRT_CUDA_API int32_t segrt_roi_align_cuda_abi_version(void);

/* cudaGetErrorString of a launcher's status, for callers without the CUDA runtime (ctypes). */
SEGRT_CUDA_API const char* segrt_roi_align_cuda_error_string(int32_t status);

/* ONNX RoiAlign: x [n, c, h, w] -> y [k, c, out_h, out_w]. mode 0 avg, 1 max; aligned 1 = half_pixel. */
SEGRT_CUDA_API cudaError_t segrt_roi_align_cuda(int32_t dtype, const void* x, int64_t n, int64_t c, int64_t h,
    int64_t w, const float* rois, const int32_t* batch_indices, int64_t k, int32_t out_h, int32_t out_w,
    float spatial_scale, int32_t sampling_ratio, int32_t mode, int32_t aligned, void* y, cudaStream_t stream);

/* Fused FPN RoIAlign (avg): features[l] [n, c, heights[l], widths[l]], num_levels in [1, 8], consecutive levels
 * finest first with spatial_scales[l] = 2^-(k_min + l). One launch for all levels. */
SEGRT_CUDA_API cudaError_t segrt_multi_level_roi_align_cuda(int32_t dtype, const void* const* features,
    const int64_t* heights, const int64_t* widths, const float* spatial_scales, int32_t num_levels, int64_t n,
    int64_t c, const float* rois, const int32_t* batch_indices, int64_t k, int32_t out_h, int32_t out_w,
    int32_t sampling_ratio, int32_t aligned, float canonical_scale, int32_t canonical_level, void* y,
    cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif /* SEGRT_ROI_ALIGN_KERNEL_H */
