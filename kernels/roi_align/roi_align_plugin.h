// TensorRT plugins for segrt's RoIAlign ops (IPluginV3 + IPluginV3OneCore /
// IPluginV3OneBuild / IPluginV3OneRuntime, IPluginCreatorV3One). They parse
// and check attributes and shapes, then call the CUDA launchers of
// roi_align_kernel.h. See kernels/README.md for inputs, outputs, attributes.
//
//   SegrtRoiAlign            v1, namespace "segrt": ONNX RoiAlign semantics.
//   SegrtMultiLevelRoiAlign  v1, namespace "segrt": torchvision MultiScaleRoIAlign, one launch.
//
// Every method is noexcept; failures are logged through TensorRT's logger and
// returned as non-zero status / nullptr, never thrown.
#pragma once

#include "plugin_utils.h"

#include <NvInferRuntime.h>

#include <cstdint>
#include <string>
#include <vector>

namespace segrt
{
namespace trt
{

//! What both plugins share: capabilities, identity, one output, serialization storage.
class PluginBase : public nvinfer1::IPluginV3,
                   public nvinfer1::IPluginV3OneCore,
                   public nvinfer1::IPluginV3OneBuild,
                   public nvinfer1::IPluginV3OneRuntime
{
public:
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;

    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    int32_t getNbOutputs() const noexcept override;
    char const* getTimingCacheID() noexcept override;
    char const* getMetadataString() noexcept override;

    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;

protected:
    PluginBase() = default;
    PluginBase(PluginBase const&) = default;
    PluginBase& operator=(PluginBase const&) = delete;

    //! Attribute summary, e.g. "out=7x7 sampling_ratio=2 ..." (timing-cache id and metadata).
    std::string mDescription;
    std::vector<nvinfer1::PluginField> mSerialFields;
    nvinfer1::PluginFieldCollection mSerialCollection{};
};

//! Attributes of SegrtRoiAlign (ONNX RoiAlign names and defaults).
struct RoiAlignAttrs
{
    int32_t outputHeight{1};
    int32_t outputWidth{1};
    int32_t samplingRatio{0};
    float spatialScale{1.F};
    std::string mode{"avg"};                                  //!< "avg" | "max"
    std::string coordinateTransformationMode{"half_pixel"}; //!< "half_pixel" | "output_half_pixel"

    //! Fills from `fc` (missing fields keep their defaults); false + `error` on a bad value.
    bool parse(nvinfer1::PluginFieldCollection const* fc, std::string& error) noexcept;
    //! Checks the values; false + `error` when unusable.
    bool validate(std::string& error) const noexcept;
};

class RoiAlignPlugin final : public PluginBase
{
public:
    explicit RoiAlignPlugin(RoiAlignAttrs attrs);

    nvinfer1::IPluginV3* clone() noexcept override;
    char const* getPluginName() const noexcept override;

    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;

    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

private:
    RoiAlignAttrs mAttrs;
};

//! Attributes of SegrtMultiLevelRoiAlign (torchvision MultiScaleRoIAlign).
struct MultiLevelRoiAlignAttrs
{
    int32_t outputHeight{0};          //!< required
    int32_t outputWidth{0};           //!< required
    int32_t samplingRatio{-1};        //!< required; 0 = adaptive
    std::vector<float> spatialScales; //!< required; one per level, finest first, halving
    int32_t aligned{0};               //!< torchvision's MultiScaleRoIAlign uses 0
    float canonicalScale{224.F};
    int32_t canonicalLevel{4};

    bool parse(nvinfer1::PluginFieldCollection const* fc, std::string& error) noexcept;
    bool validate(std::string& error) const noexcept;
};

class MultiLevelRoiAlignPlugin final : public PluginBase
{
public:
    explicit MultiLevelRoiAlignPlugin(MultiLevelRoiAlignAttrs attrs);

    nvinfer1::IPluginV3* clone() noexcept override;
    char const* getPluginName() const noexcept override;

    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;

    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

private:
    int32_t numLevels() const noexcept;
    MultiLevelRoiAlignAttrs mAttrs;
};

//! Creator shared shape: field list + name; createPlugin parses and validates.
class RoiAlignPluginCreator final : public nvinfer1::IPluginCreatorV3One
{
public:
    RoiAlignPluginCreator();
    nvinfer1::IPluginV3* createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc,
        nvinfer1::TensorRTPhase phase) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

private:
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mCollection{};
};

class MultiLevelRoiAlignPluginCreator final : public nvinfer1::IPluginCreatorV3One
{
public:
    MultiLevelRoiAlignPluginCreator();
    nvinfer1::IPluginV3* createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc,
        nvinfer1::TensorRTPhase phase) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

private:
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mCollection{};
};

} // namespace trt
} // namespace segrt
