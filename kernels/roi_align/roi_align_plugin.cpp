// SegrtRoiAlign (ONNX RoiAlign semantics): what differs from the other plugin; see roi_align_plugin.h.
#include "roi_align_plugin.h"

#include "roi_align_kernel.h"

namespace segrt::trt
{
AttrSchema<RoiAlignAttrs> RoiAlignAttrs::schema() noexcept
{
    using A = RoiAlignAttrs;
    static AttrField<A> const fields[] = {attr("spatial_scale", &A::spatialScale), attr("mode", &A::mode),
        attr("coordinate_transformation_mode", &A::coordinateTransformationMode)};
    return schemaOf(fields);
}

bool RoiAlignAttrs::validate(std::string& error) const
{
    if (!PoolingAttrs::validate(error) || !checkPositive(spatialScale, "spatial_scale", error))
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
    return IoLayout{/*rois=*/1, /*batch=*/2, /*firstFeature=*/0, /*numFeatures=*/1}; // ONNX order: X, rois, batch
}

cudaError_t RoiAlignAttrs::launch(nvinfer1::PluginTensorDesc const* inputDesc, void const* const* inputs, void* output,
    int64_t k, int32_t dtype, cudaStream_t stream) const noexcept
{
    IoLayout const io = layout();
    nvinfer1::Dims const& x = inputDesc[io.firstFeature].dims;
    return segrt_roi_align_cuda(dtype, inputs[io.firstFeature], x.d[0], x.d[1], x.d[2], x.d[3],
        static_cast<float const*>(inputs[io.rois]), static_cast<int32_t const*>(inputs[io.batch]), k, outputHeight,
        outputWidth, spatialScale, samplingRatio, mode == "max" ? 1 : 0,
        coordinateTransformationMode == "half_pixel" ? 1 : 0, output, stream);
}

} // namespace segrt::trt
