// CPU RoIAlign (ONNX RoiAlign semantics) and fused multi-level FPN RoIAlign
// (torchvision.ops.MultiScaleRoIAlign semantics), float32, NCHW, C-contiguous.
// Same semantics as the CUDA kernels in roi_align_kernel.cu; see
// roi_align_common.h for the rules both follow.
#pragma once

#include <cstdint>
#include <string>

namespace segrt
{

//! Status of a CPU call. kOk means the output was fully written.
enum class CpuStatus : int32_t
{
    kOk = 0,
    kInvalidArgument = 1,   //!< a shape, attribute or pointer is unusable (see the message)
    kBatchIndexOutOfRange = 2,
    kInternalError = 3,     //!< out of memory or a thread could not start
};

//! One feature map of shape [N, C, height, width].
struct CpuFeatureLevel
{
    float const* data;
    int64_t height;
    int64_t width;
    float spatialScale; //!< feature pixels per input-image pixel (e.g. 0.25 for P2)
};

//! Attributes shared by both ops.
struct CpuPoolAttrs
{
    int32_t outH;
    int32_t outW;
    int32_t samplingRatio; //!< 0 = adaptive ceil(roi_size / out_size)
    int32_t mode;          //!< kRoiAlignAvg or kRoiAlignMax
    bool aligned;          //!< true = ONNX half_pixel (torchvision aligned=True)
};

//! RoIAlign of `k` boxes `rois` [k, 4] (x1, y1, x2, y2, input-image pixels) with
//! image indices `batchIndices` [k] over `x` [n, c, H, W] -> `y` [k, c, outH, outW].
//! `numThreads` <= 0 uses one thread per hardware thread. On failure `message`
//! says why and `y` is left unspecified.
CpuStatus roiAlignCpu(CpuFeatureLevel const& x, int64_t n, int64_t c, float const* rois, int64_t const* batchIndices,
    int64_t k, CpuPoolAttrs const& attrs, int32_t numThreads, float* y, std::string& message);

//! Fused FPN RoIAlign: each box is pooled from the level chosen by the
//! torchvision LevelMapper rule; `levels` [numLevels] must be consecutive FPN
//! levels, finest first (scales 2^-k_min, 2^-(k_min+1), ...). Mode is avg.
CpuStatus multiLevelRoiAlignCpu(CpuFeatureLevel const* levels, int32_t numLevels, int64_t n, int64_t c,
    float const* rois, int64_t const* batchIndices, int64_t k, CpuPoolAttrs const& attrs, float canonicalScale,
    int32_t canonicalLevel, int32_t numThreads, float* y, std::string& message);

} // namespace segrt
