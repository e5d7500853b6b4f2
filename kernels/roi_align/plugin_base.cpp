// PluginBase: the IPluginV3 methods both RoIAlign plugins share; see plugin_base.h.
#include "plugin_base.h"

#include "roi_align_kernel.h"

#include <utility>

using namespace nvinfer1;

namespace segrt
{
namespace trt
{

PluginBase::PluginBase(
    char const* name, IoLayout layout, int32_t outputHeight, int32_t outputWidth, std::string description)
    : mName(name)
    , mLayout(layout)
    , mOutputHeight(outputHeight)
    , mOutputWidth(outputWidth)
    , mDescription(std::move(description))
{
}

IPluginCapability* PluginBase::getCapabilityInterface(PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
    case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
    case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

char const* PluginBase::getPluginName() const noexcept
{
    return mName;
}

char const* PluginBase::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

char const* PluginBase::getPluginNamespace() const noexcept
{
    return kPluginNamespace;
}

int32_t PluginBase::getNbOutputs() const noexcept
{
    return 1;
}

char const* PluginBase::getTimingCacheID() noexcept
{
    return mDescription.c_str();
}

char const* PluginBase::getMetadataString() noexcept
{
    return mDescription.c_str();
}

IPluginV3* PluginBase::attachToContext(IPluginResourceContext* /*context*/) noexcept
{
    // No per-context resources: a plain copy is the attached plugin.
    return clone();
}

std::string PluginBase::inputName(int32_t index) const
{
    if (index == mLayout.rois)
    {
        return "rois";
    }
    if (index == mLayout.batch)
    {
        return "batch_indices";
    }
    return mLayout.numFeatures == 1 ? std::string("X") : "feature map " + std::to_string(index - mLayout.firstFeature);
}

bool PluginBase::countsOk(bool pointersOk, int32_t nbInputs, int32_t nbOutputs) const noexcept
{
    if (pointersOk && nbInputs == mLayout.nbInputs() && nbOutputs == 1)
    {
        return true;
    }
    try
    {
        std::string names;
        for (int32_t i = 0; i < mLayout.nbInputs(); ++i)
        {
            names += (i ? ", " : "") + inputName(i);
        }
        logError(mName,
            "expects " + std::to_string(mLayout.nbInputs()) + " inputs (" + names + ") and 1 output; got "
                + std::to_string(nbInputs) + " inputs and " + std::to_string(nbOutputs) + " outputs");
    }
    catch (...)
    {
    }
    return false;
}

template <typename DimsAt>
bool PluginBase::checkDims(DimsAt const& dims, std::string& error) const
{
    Dims const& rois = dims(mLayout.rois);
    Dims const& batch = dims(mLayout.batch);
    if (rois.nbDims != 2 || batch.nbDims != 1)
    {
        error = "expected rois [K, 4] and batch_indices [K]; got rois " + dimsToString(rois) + ", batch_indices "
            + dimsToString(batch);
        return false;
    }
    if (rois.d[1] >= 0 && rois.d[1] != 4)
    {
        error = "rois must be [K, 4] (x1, y1, x2, y2), got " + dimsToString(rois);
        return false;
    }
    if (rois.d[0] >= 0 && batch.d[0] >= 0 && rois.d[0] != batch.d[0])
    {
        error = "rois " + dimsToString(rois) + " and batch_indices " + dimsToString(batch) + " disagree on K";
        return false;
    }
    Dims const& first = dims(mLayout.firstFeature);
    for (int32_t i = mLayout.firstFeature; i < mLayout.firstFeature + mLayout.numFeatures; ++i)
    {
        Dims const& f = dims(i);
        if (f.nbDims != 4)
        {
            error = inputName(i) + " must be [N, C, H, W], got " + dimsToString(f);
            return false;
        }
        if (f.d[2] == 0 || f.d[3] == 0)
        {
            error = inputName(i) + " has an empty spatial size: " + dimsToString(f);
            return false;
        }
        for (int32_t axis = 0; axis < 2; ++axis)
        {
            if (first.nbDims == 4 && f.d[axis] >= 0 && first.d[axis] >= 0 && f.d[axis] != first.d[axis])
            {
                error = inputName(i) + " " + dimsToString(f) + " does not match " + inputName(mLayout.firstFeature)
                    + " " + dimsToString(first)
                    + (axis == 0 ? " in N" : " in C (channel counts must agree across levels)");
                return false;
            }
        }
    }
    return true;
}

template <typename DimsAt>
int32_t PluginBase::checkInputs(bool pointersOk, int32_t nbInputs, int32_t nbOutputs, DimsAt const& dims) const noexcept
{
    try
    {
        if (!countsOk(pointersOk, nbInputs, nbOutputs))
        {
            return 1;
        }
        std::string error;
        if (!checkDims(dims, error))
        {
            logError(mName, error);
            return 1;
        }
        return 0;
    }
    catch (...)
    {
        return 1;
    }
}

int32_t PluginBase::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    return checkInputs(in != nullptr, nbInputs, nbOutputs, [&](int32_t i) -> Dims const& { return in[i].desc.dims; });
}

int32_t PluginBase::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    return checkInputs(in != nullptr, nbInputs, nbOutputs, [&](int32_t i) -> Dims const& { return in[i].dims; });
}

int32_t PluginBase::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (!countsOk(outputTypes != nullptr && inputTypes != nullptr, nbInputs, nbOutputs))
    {
        return 1;
    }
    outputTypes[0] = inputTypes[mLayout.firstFeature];
    return 0;
}

int32_t PluginBase::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* /*shapeInputs*/,
    int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs, IExprBuilder& exprBuilder) noexcept
{
    try
    {
        if (!countsOk(inputs != nullptr && outputs != nullptr, nbInputs, nbOutputs))
        {
            return 1;
        }
        DimsExprs const& rois = inputs[mLayout.rois];
        if (rois.nbDims != 2 || inputs[mLayout.batch].nbDims != 1)
        {
            logError(mName,
                "rois must be rank 2 [K, 4] and batch_indices rank 1 [K]; got ranks " + std::to_string(rois.nbDims)
                    + ", " + std::to_string(inputs[mLayout.batch].nbDims));
            return 1;
        }
        if (rois.d[1]->isConstant() && rois.d[1]->getConstantValue() != 4)
        {
            logError(mName, "rois must be [K, 4], got last dimension " + std::to_string(rois.d[1]->getConstantValue()));
            return 1;
        }
        DimsExprs const& first = inputs[mLayout.firstFeature];
        for (int32_t i = mLayout.firstFeature; i < mLayout.firstFeature + mLayout.numFeatures; ++i)
        {
            if (inputs[i].nbDims != 4)
            {
                logError(mName,
                    inputName(i) + " must be rank 4 [N, C, H, W], got rank " + std::to_string(inputs[i].nbDims));
                return 1;
            }
            IDimensionExpr const* c = inputs[i].d[1];
            if (c->isConstant() && first.d[1]->isConstant() && c->getConstantValue() != first.d[1]->getConstantValue())
            {
                logError(mName,
                    "channel counts differ across levels: " + std::to_string(first.d[1]->getConstantValue()) + " vs "
                        + std::to_string(c->getConstantValue()));
                return 1;
            }
        }
        outputs[0].nbDims = 4;
        outputs[0].d[0] = rois.d[0];
        outputs[0].d[1] = first.d[1];
        outputs[0].d[2] = exprBuilder.constant(mOutputHeight);
        outputs[0].d[3] = exprBuilder.constant(mOutputWidth);
        return 0;
    }
    catch (...)
    {
        return 1;
    }
}

bool PluginBase::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (inOut == nullptr || nbInputs != mLayout.nbInputs() || nbOutputs != 1 || pos < 0 || pos > nbInputs)
    {
        return false;
    }
    PluginTensorDesc const& d = inOut[pos].desc;
    if (d.format != TensorFormat::kLINEAR)
    {
        return false;
    }
    if (pos == mLayout.rois)
    {
        return d.type == DataType::kFLOAT; // fp32 boxes: fp16 cannot hold 1-px steps past 2048
    }
    if (pos == mLayout.batch)
    {
        return d.type == DataType::kINT32;
    }
    if (pos == mLayout.firstFeature)
    {
        return d.type == DataType::kFLOAT || d.type == DataType::kHALF;
    }
    return d.type == inOut[mLayout.firstFeature].desc.type; // later levels and the output
}

int32_t PluginBase::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
    void const* const* inputs, void* const* outputs, void* /*workspace*/, cudaStream_t stream) noexcept
{
    if (inputDesc == nullptr || inputs == nullptr || outputs == nullptr)
    {
        return 1;
    }
    int64_t const k = inputDesc[mLayout.rois].dims.d[0];
    if (k == 0)
    {
        return 0; // no RoIs: empty output, nothing to launch
    }
    int32_t const dtype
        = inputDesc[mLayout.firstFeature].type == DataType::kHALF ? SEGRT_DTYPE_FLOAT16 : SEGRT_DTYPE_FLOAT32;
    cudaError_t const status = launch(inputDesc, inputs, outputs[0], k, dtype, stream);
    if (status != cudaSuccess)
    {
        try
        {
            logError(mName, std::string("kernel launch failed: ") + cudaGetErrorString(status));
        }
        catch (...)
        {
        }
        return 1;
    }
    return 0;
}

} // namespace trt
} // namespace segrt
