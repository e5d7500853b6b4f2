// SegrtMultiLevelRoiAlign (torchvision.ops.MultiScaleRoIAlign in one launch): what differs from the
// other plugin; see roi_align_plugin.h.
//
// Inputs: rois [K, 4] float32, batch_indices [K] int32, then one feature map
// [N, C, H_l, W_l] per level (float32 or float16, all the same), finest first.
#include "roi_align_plugin.h"

#include "roi_align_common.h"
#include "roi_align_kernel.h"

#include <cmath>

namespace segrt::trt
{
AttrSchema<MultiLevelRoiAlignAttrs> MultiLevelRoiAlignAttrs::schema() noexcept
{
    using A = MultiLevelRoiAlignAttrs;
    static AttrField<A> const fields[] = {attr("spatial_scales", &A::spatialScales), attr("aligned", &A::aligned),
        attr("canonical_scale", &A::canonicalScale), attr("canonical_level", &A::canonicalLevel)};
    return schemaOf(fields);
}

IoLayout MultiLevelRoiAlignAttrs::layout() const noexcept
{
    return IoLayout{/*rois=*/0, /*batch=*/1, /*firstFeature=*/2, static_cast<int32_t>(spatialScales.size())};
}

bool MultiLevelRoiAlignAttrs::validate(std::string& error) const
{
    if (!PoolingAttrs::validate(error) || !checkPositive(canonicalScale, "canonical_scale", error))
    {
        return false;
    }
    if (aligned != 0 && aligned != 1)
    {
        error = "aligned must be 0 or 1, got " + std::to_string(aligned);
        return false;
    }
    int32_t const n = static_cast<int32_t>(spatialScales.size());
    if (n < 1 || n > kMaxLevels)
    {
        error = "spatial_scales is required with 1 to " + std::to_string(kMaxLevels) + " entries, got "
            + std::to_string(n);
        return false;
    }
    for (int32_t l = 0; l < n; ++l)
    {
        if (!checkPositive(spatialScales[l], "spatial_scales[" + std::to_string(l) + "]", error))
        {
            return false;
        }
        // Levels must be consecutive powers of two, finest first: the level index is k - k_min.
        double const k = -std::log2(static_cast<double>(spatialScales[l]));
        if (std::fabs(k - static_cast<double>(fpnKMin(spatialScales[0]) + l)) > 1e-3)
        {
            error = "spatial_scales must be consecutive FPN levels 2^-k, 2^-(k+1), ... finest first "
                    "(e.g. 0.25, 0.125, 0.0625, 0.03125)";
            return false;
        }
    }
    return true;
}

cudaError_t MultiLevelRoiAlignAttrs::launch(nvinfer1::PluginTensorDesc const* inputDesc, void const* const* inputs,
    void* output, int64_t k, int32_t dtype, cudaStream_t stream) const noexcept
{
    IoLayout const io = layout();
    void const* features[kMaxLevels];
    int64_t heights[kMaxLevels];
    int64_t widths[kMaxLevels];
    for (int32_t l = 0; l < io.numFeatures; ++l)
    {
        features[l] = inputs[io.firstFeature + l];
        heights[l] = inputDesc[io.firstFeature + l].dims.d[2];
        widths[l] = inputDesc[io.firstFeature + l].dims.d[3];
    }
    nvinfer1::Dims const& first = inputDesc[io.firstFeature].dims;
    return segrt_multi_level_roi_align_cuda(dtype, features, heights, widths, spatialScales.data(), io.numFeatures,
        first.d[0], first.d[1], static_cast<float const*>(inputs[io.rois]), static_cast<int32_t const*>(inputs[io.batch]),
        k, outputHeight, outputWidth, samplingRatio, aligned, canonicalScale, canonicalLevel, output, stream);
}

} // namespace segrt::trt
