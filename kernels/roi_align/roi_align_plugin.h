// TensorRT plugins for segrt's RoIAlign ops. Each is an attribute struct (its
// table, checks, input layout and CUDA launch); plugin_base.h turns it into an
// IPluginV3 and its IPluginCreatorV3One. See kernels/README.md for inputs,
// outputs and attributes.
//
//   SegrtRoiAlign            v1, namespace "segrt": ONNX RoiAlign semantics.
//   SegrtMultiLevelRoiAlign  v1, namespace "segrt": torchvision MultiScaleRoIAlign, one launch.
#pragma once

#include "plugin_attrs.h"
#include "plugin_base.h"
#include "plugin_utils.h"

#include <NvInferRuntime.h>

#include <cstdint>
#include <string>
#include <vector>

namespace segrt
{
namespace trt
{

//! SegrtRoiAlign (ONNX RoiAlign names and defaults). Inputs: X [N, C, H, W], rois [K, 4], batch_indices [K].
struct RoiAlignAttrs : PoolingAttrs
{
    static constexpr char const* kName = kRoiAlignName;

    RoiAlignAttrs()
        : PoolingAttrs{1, 1, 0} // ONNX defaults: 1x1, adaptive sampling
    {
    }

    float spatialScale{1.F};
    std::string mode{"avg"};                                //!< "avg" | "max"
    std::string coordinateTransformationMode{"half_pixel"}; //!< "half_pixel" | "output_half_pixel"

    //! The rows after PoolingAttrs' in the attribute table.
    static AttrSchema<RoiAlignAttrs> schema() noexcept;
    //! False + `error` when a value is unusable; may throw std::bad_alloc (createPlugin catches).
    bool validate(std::string& error) const;
    IoLayout layout() const noexcept;
    cudaError_t launch(nvinfer1::PluginTensorDesc const* inputDesc, void const* const* inputs, void* output, int64_t k,
        int32_t dtype, cudaStream_t stream) const noexcept;
};

//! SegrtMultiLevelRoiAlign (torchvision MultiScaleRoIAlign). Inputs: rois [K, 4], batch_indices [K],
//! then one feature map [N, C, H_l, W_l] per level, finest first.
struct MultiLevelRoiAlignAttrs : PoolingAttrs
{
    static constexpr char const* kName = kMultiLevelRoiAlignName;

    MultiLevelRoiAlignAttrs()
        : PoolingAttrs{0, 0, -1} // all three required
    {
    }

    std::vector<float> spatialScales; //!< required; one per level, finest first, halving
    int32_t aligned{0};               //!< torchvision's MultiScaleRoIAlign uses 0
    float canonicalScale{224.F};
    int32_t canonicalLevel{4};

    static AttrSchema<MultiLevelRoiAlignAttrs> schema() noexcept;
    bool validate(std::string& error) const;
    IoLayout layout() const noexcept;
    cudaError_t launch(nvinfer1::PluginTensorDesc const* inputDesc, void const* const* inputs, void* output, int64_t k,
        int32_t dtype, cudaStream_t stream) const noexcept;
};

using RoiAlignPlugin = Plugin<RoiAlignAttrs>;
using RoiAlignPluginCreator = PluginCreator<RoiAlignAttrs>;
using MultiLevelRoiAlignPlugin = Plugin<MultiLevelRoiAlignAttrs>;
using MultiLevelRoiAlignPluginCreator = PluginCreator<MultiLevelRoiAlignAttrs>;

} // namespace trt
} // namespace segrt
