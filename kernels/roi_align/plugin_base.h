// What every segrt RoIAlign plugin shares (IPluginV3 with IPluginV3OneCore /
// IPluginV3OneBuild / IPluginV3OneRuntime, IPluginCreatorV3One): identity,
// capabilities, input/output counts, shape, type and format checks, the enqueue
// wrapper, serialization and the creator. A plugin is an attribute struct that
// gives its name, its attribute table (plugin_attrs.h), `validate`, its input
// layout and `launch`; `Plugin<Attrs>` and `PluginCreator<Attrs>` do the rest.
//
// Every method is noexcept; failures are logged through TensorRT's logger and
// returned as non-zero status / nullptr, never thrown.
#pragma once

#include "plugin_attrs.h"
#include "plugin_utils.h"

#include <NvInferRuntime.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace segrt
{
namespace trt
{

//! Input positions: boxes [K, 4] float32, batch indices [K] int32, and `numFeatures` consecutive
//! feature maps [N, C, H, W] (float32 or float16, all one type). The one output is [K, C, out_h, out_w]
//! of the features' type.
struct IoLayout
{
    int32_t rois;
    int32_t batch;
    int32_t firstFeature;
    int32_t numFeatures;

    int32_t nbInputs() const noexcept
    {
        return 2 + numFeatures;
    }
};

class PluginBase : public nvinfer1::IPluginV3,
                   public nvinfer1::IPluginV3OneCore,
                   public nvinfer1::IPluginV3OneBuild,
                   public nvinfer1::IPluginV3OneRuntime
{
public:
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;

    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    int32_t getNbOutputs() const noexcept override;
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    char const* getTimingCacheID() noexcept override;
    char const* getMetadataString() noexcept override;

    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;

protected:
    PluginBase(char const* name, IoLayout layout, int32_t outputHeight, int32_t outputWidth, std::string description);
    PluginBase(PluginBase const&) = default;
    PluginBase& operator=(PluginBase const&) = delete;

    //! Enqueues the kernel for k > 0 RoIs on `stream`; `dtype` is the features' SEGRT_DTYPE_*.
    virtual cudaError_t launch(nvinfer1::PluginTensorDesc const* inputDesc, void const* const* inputs, void* output,
        int64_t k, int32_t dtype, cudaStream_t stream) const noexcept
        = 0;

private:
    //! True when the input/output counts match the layout; logs what was expected otherwise.
    bool countsOk(bool pointersOk, int32_t nbInputs, int32_t nbOutputs) const noexcept;
    //! Checks ranks and the dimensions that must agree; -1 (unknown) matches anything.
    template <typename DimsAt>
    bool checkDims(DimsAt const& dims, std::string& error) const;
    //! configurePlugin / onShapeChange: counts, then dimensions; 0 or 1 (logged).
    template <typename DimsAt>
    int32_t checkInputs(bool pointersOk, int32_t nbInputs, int32_t nbOutputs, DimsAt const& dims) const noexcept;
    std::string inputName(int32_t index) const;

    char const* mName;
    IoLayout mLayout;
    int32_t mOutputHeight;
    int32_t mOutputWidth;
    //! Attribute summary, e.g. "out=7x7 sampling_ratio=2 ..." (timing-cache id and metadata).
    std::string mDescription;
};

//! The plugin of one attribute struct. `Attrs` derives from PoolingAttrs and provides:
//! `static constexpr char const* kName`, `static AttrSchema<Attrs> schema()` (its own rows),
//! `bool validate(std::string&) const`, `IoLayout layout() const` and `cudaError_t launch(...) const`
//! (the signature of PluginBase::launch).
template <typename Attrs>
class Plugin final : public PluginBase
{
public:
    //! May throw std::bad_alloc (callers catch).
    explicit Plugin(Attrs attrs)
        : PluginBase(Attrs::kName, attrs.layout(), attrs.outputHeight, attrs.outputWidth, describeAttrs(attrs))
        , mAttrs(std::move(attrs))
    {
    }

    //! Copies the attributes; the serialized fields are rebuilt from them on demand.
    Plugin(Plugin const& other)
        : PluginBase(other)
        , mAttrs(other.mAttrs)
    {
    }

    nvinfer1::IPluginV3* clone() noexcept override
    {
        try
        {
            return new Plugin(*this);
        }
        catch (...)
        {
            logError(Attrs::kName, "clone failed: out of memory");
            return nullptr;
        }
    }

    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override
    {
        try
        {
            serializeAttrs(mAttrs, mSerialFields);
            mSerialCollection.nbFields = static_cast<int32_t>(mSerialFields.size());
            mSerialCollection.fields = mSerialFields.data();
            return &mSerialCollection;
        }
        catch (...)
        {
            logError(Attrs::kName, "getFieldsToSerialize: out of memory");
            return nullptr;
        }
    }

private:
    cudaError_t launch(nvinfer1::PluginTensorDesc const* inputDesc, void const* const* inputs, void* output, int64_t k,
        int32_t dtype, cudaStream_t stream) const noexcept override
    {
        return mAttrs.launch(inputDesc, inputs, output, k, dtype, stream);
    }

    Attrs mAttrs;
    std::vector<nvinfer1::PluginField> mSerialFields;
    nvinfer1::PluginFieldCollection mSerialCollection{};
};

//! The creator of `Plugin<Attrs>`: advertises the attribute table; createPlugin parses and validates.
template <typename Attrs>
class PluginCreator final : public nvinfer1::IPluginCreatorV3One
{
public:
    PluginCreator()
        : mFields(declaredFields<Attrs>())
    {
        mCollection.nbFields = static_cast<int32_t>(mFields.size());
        mCollection.fields = mFields.data();
    }

    nvinfer1::IPluginV3* createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc,
        nvinfer1::TensorRTPhase /*phase*/) noexcept override
    {
        try
        {
            Attrs attrs;
            std::string error;
            if (!parseAttrs(fc, attrs, error) || !attrs.validate(error))
            {
                logError(Attrs::kName, std::string("cannot create layer '") + (name ? name : "") + "': " + error);
                return nullptr;
            }
            return new Plugin<Attrs>(std::move(attrs));
        }
        catch (...)
        {
            logError(Attrs::kName, "createPlugin: out of memory");
            return nullptr;
        }
    }

    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override
    {
        return &mCollection;
    }
    char const* getPluginName() const noexcept override
    {
        return Attrs::kName;
    }
    char const* getPluginVersion() const noexcept override
    {
        return kPluginVersion;
    }
    char const* getPluginNamespace() const noexcept override
    {
        return kPluginNamespace;
    }

private:
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mCollection{};
};

} // namespace trt
} // namespace segrt
