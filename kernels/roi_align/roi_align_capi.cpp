// C ABI over roi_align_cpu.h; see roi_align_capi.h.
#include "roi_align_capi.h"

#include "roi_align_common.h"
#include "roi_align_cpu.h"

#include <exception>
#include <string>

namespace
{
thread_local std::string gLastError;

int32_t finish(segrt::CpuStatus st, std::string const& message)
{
    gLastError = st == segrt::CpuStatus::kOk ? std::string() : message;
    return static_cast<int32_t>(st);
}
} // namespace

extern "C" int32_t segrt_roi_align_abi_version(void)
{
    return SEGRT_ROI_ALIGN_ABI_VERSION;
}

extern "C" const char* segrt_roi_align_last_error(void)
{
    return gLastError.c_str();
}

extern "C" int32_t segrt_roi_align_cpu_f32(const float* x, int64_t n, int64_t c, int64_t h, int64_t w,
    const float* rois, const int64_t* batch_indices, int64_t k, int32_t out_h, int32_t out_w, float spatial_scale,
    int32_t sampling_ratio, int32_t mode, int32_t aligned, int32_t num_threads, float* y)
{
    try
    {
        std::string message;
        segrt::CpuFeatureLevel const level{x, h, w, spatial_scale};
        segrt::CpuPoolAttrs const attrs{out_h, out_w, sampling_ratio, mode, aligned != 0};
        if (k > 0 && c > 0 && x == nullptr)
        {
            return finish(segrt::CpuStatus::kInvalidArgument, "null feature map pointer");
        }
        auto const st = segrt::roiAlignCpu(level, n, c, rois, batch_indices, k, attrs, num_threads, y, message);
        return finish(st, message);
    }
    catch (std::exception const& e)
    {
        return finish(segrt::CpuStatus::kInternalError, e.what());
    }
    catch (...)
    {
        return finish(segrt::CpuStatus::kInternalError, "unknown error");
    }
}

extern "C" int32_t segrt_multi_level_roi_align_cpu_f32(const float* const* features, const int64_t* heights,
    const int64_t* widths, const float* spatial_scales, int32_t num_levels, int64_t n, int64_t c, const float* rois,
    const int64_t* batch_indices, int64_t k, int32_t out_h, int32_t out_w, int32_t sampling_ratio, int32_t aligned,
    float canonical_scale, int32_t canonical_level, int32_t num_threads, float* y)
{
    try
    {
        if (features == nullptr || heights == nullptr || widths == nullptr || spatial_scales == nullptr
            || num_levels < 1 || num_levels > segrt::kMaxLevels)
        {
            return finish(segrt::CpuStatus::kInvalidArgument,
                "need 1 to " + std::to_string(segrt::kMaxLevels) + " feature maps with heights, widths and scales");
        }
        segrt::CpuFeatureLevel levels[segrt::kMaxLevels];
        for (int32_t l = 0; l < num_levels; ++l)
        {
            levels[l] = segrt::CpuFeatureLevel{features[l], heights[l], widths[l], spatial_scales[l]};
        }
        segrt::CpuPoolAttrs const attrs{out_h, out_w, sampling_ratio, segrt::kRoiAlignAvg, aligned != 0};
        std::string message;
        auto const st = segrt::multiLevelRoiAlignCpu(levels, num_levels, n, c, rois, batch_indices, k, attrs,
            canonical_scale, canonical_level, num_threads, y, message);
        return finish(st, message);
    }
    catch (std::exception const& e)
    {
        return finish(segrt::CpuStatus::kInternalError, e.what());
    }
    catch (...)
    {
        return finish(segrt::CpuStatus::kInternalError, "unknown error");
    }
}
