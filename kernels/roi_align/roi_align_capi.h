/* C ABI of the CPU RoIAlign library (libsegrt_roi_align_cpu.so), for ctypes
 * (sdk/roi_align.py) and for ONNX Runtime custom ops.
 *
 * All arrays are C-contiguous float32 / int64 host memory, NCHW. Boxes are
 * (x1, y1, x2, y2) in input-image pixels. Every function returns 0 on success,
 * or a non-zero SEGRT_STATUS_* code and leaves a message for
 * segrt_roi_align_last_error() (per thread). Inputs are never written and no
 * memory outside the given arrays is touched, whatever the values. */
#ifndef SEGRT_ROI_ALIGN_CAPI_H
#define SEGRT_ROI_ALIGN_CAPI_H

#include <stdint.h>

#if defined(_WIN32)
#define SEGRT_CAPI __declspec(dllexport)
#else
#define SEGRT_CAPI __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define SEGRT_ROI_ALIGN_ABI_VERSION 1

#define SEGRT_STATUS_OK 0
#define SEGRT_STATUS_INVALID_ARGUMENT 1
#define SEGRT_STATUS_BATCH_INDEX_OUT_OF_RANGE 2
#define SEGRT_STATUS_INTERNAL_ERROR 3

/* Returns SEGRT_ROI_ALIGN_ABI_VERSION; bumped whenever a signature changes. */
SEGRT_CAPI int32_t segrt_roi_align_abi_version(void);

/* Message of the last failing call on this thread ("" if none). */
SEGRT_CAPI const char* segrt_roi_align_last_error(void);

/* ONNX RoiAlign: x [n, c, h, w], rois [k, 4], batch_indices [k] -> y [k, c, out_h, out_w].
 * mode: 0 avg, 1 max. aligned: 1 = half_pixel (torchvision aligned=True), 0 = output_half_pixel.
 * sampling_ratio 0 = adaptive. num_threads <= 0: one per hardware thread. */
SEGRT_CAPI int32_t segrt_roi_align_cpu_f32(const float* x, int64_t n, int64_t c, int64_t h, int64_t w,
    const float* rois, const int64_t* batch_indices, int64_t k, int32_t out_h, int32_t out_w, float spatial_scale,
    int32_t sampling_ratio, int32_t mode, int32_t aligned, int32_t num_threads, float* y);

/* Fused FPN RoIAlign (torchvision MultiScaleRoIAlign): features[l] [n, c, heights[l], widths[l]] for
 * num_levels consecutive levels, finest first, spatial_scales[l] = 2^-(k_min + l). Each box is pooled
 * (avg) from level floor(canonical_level + log2(sqrt(area) / canonical_scale) + 1e-6) clamped to the
 * levels present. y [k, c, out_h, out_w]. */
SEGRT_CAPI int32_t segrt_multi_level_roi_align_cpu_f32(const float* const* features, const int64_t* heights,
    const int64_t* widths, const float* spatial_scales, int32_t num_levels, int64_t n, int64_t c, const float* rois,
    const int64_t* batch_indices, int64_t k, int32_t out_h, int32_t out_w, int32_t sampling_ratio, int32_t aligned,
    float canonical_scale, int32_t canonical_level, int32_t num_threads, float* y);

#ifdef __cplusplus
}
#endif

#endif /* SEGRT_ROI_ALIGN_CAPI_H */
