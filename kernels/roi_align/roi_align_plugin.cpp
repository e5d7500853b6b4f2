// SegrtRoiAlign (ONNX RoiAlign semantics): what differs from the other plugin; see roi_align_plugin.h.
#include "roi_align_plugin.h"

#include "roi_align_kernel.h"

using namespace nvinfer1;

namespace segrt
{
namespace trt
{
namespace
{
constexpr int32_t kX = 0;
constexpr int32_t kRois = 1;
constexpr int32_t kBatch = 2;
} // namespace

AttrSchema<RoiAlignAttrs> RoiAlignAttrs::schema() noexcept
{
    using A = RoiAlignAttrs;
    static AttrField<A> const fields[] = {
        attr("output_height", &A::outputHeight),
        attr("output_width", &A::outputWidth),
        attr("sampling_ratio", &A::samplingRatio),
        attr("spatial_scale", &A::spatialScale),
        attr("mode", &A::mode),
        attr("coordinate_transformation_mode", &A::coordinateTransformationMode),
    };
    return schemaOf(fields);
}

bool RoiAlignAttrs::validate(std::string& error) const
{
    if (!checkPooling(outputHeight, outputWidth, samplingRatio, error)
        || !checkPositive(spatialScale, "spatial_scale", error))
    {
        return false;
    }
    if (mode != "avg" && mode != "max")
    {
        error = "mode must be 'avg' or 'max', got '" + mode + "'";
        return false;
    }
    if (coordinateTransformationMode != "half_pixel" && coordinateTransformationMode != "output_half_pixel")
    {
        error = "coordinate_transformation_mode must be 'half_pixel' or 'output_half_pixel', got '"
            + coordinateTransformationMode + "'";
        return false;
    }
    return true;
}

IoLayout RoiAlignAttrs::layout() const noexcept
{
    return IoLayout{kRois, kBatch, kX, 1};
}

cudaError_t RoiAlignAttrs::launch(PluginTensorDesc const* inputDesc, void const* const* inputs, void* output,
    int64_t k, int32_t dtype, cudaStream_t stream) const noexcept
{
    Dims const& x = inputDesc[kX].dims;
    return segrt_roi_align_cuda(dtype, inputs[kX], x.d[0], x.d[1], x.d[2], x.d[3],
        static_cast<float const*>(inputs[kRois]), static_cast<int32_t const*>(inputs[kBatch]), k, outputHeight,
        outputWidth, spatialScale, samplingRatio, mode == "max" ? 1 : 0,
        coordinateTransformationMode == "half_pixel" ? 1 : 0, output, stream);
}

} // namespace trt
} // namespace segrt
