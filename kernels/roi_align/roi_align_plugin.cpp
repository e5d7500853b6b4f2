// PluginBase and SegrtRoiAlign (ONNX RoiAlign semantics); see roi_align_plugin.h.
#include "roi_align_plugin.h"

#include "roi_align_kernel.h"

#include <cmath>
#include <cstring>
#include <utility>

using namespace nvinfer1;

namespace segrt
{
namespace trt
{

// ------------------------------------------------------------- PluginBase

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

// ---------------------------------------------------------- RoiAlignAttrs

bool RoiAlignAttrs::parse(PluginFieldCollection const* fc, std::string& error) noexcept
{
    if (fc == nullptr)
    {
        return true;
    }
    if (fc->nbFields > 0 && fc->fields == nullptr)
    {
        error = "null field array";
        return false;
    }
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        PluginField const& f = fc->fields[i];
        if (f.name == nullptr)
        {
            continue;
        }
        bool ok = true;
        if (std::strcmp(f.name, "output_height") == 0)
        {
            ok = readInt(f, outputHeight, error);
        }
        else if (std::strcmp(f.name, "output_width") == 0)
        {
            ok = readInt(f, outputWidth, error);
        }
        else if (std::strcmp(f.name, "sampling_ratio") == 0)
        {
            ok = readInt(f, samplingRatio, error);
        }
        else if (std::strcmp(f.name, "spatial_scale") == 0)
        {
            ok = readFloat(f, spatialScale, error);
        }
        else if (std::strcmp(f.name, "mode") == 0)
        {
            ok = readString(f, mode, error);
        }
        else if (std::strcmp(f.name, "coordinate_transformation_mode") == 0)
        {
            ok = readString(f, coordinateTransformationMode, error);
        }
        if (!ok)
        {
            return false;
        }
    }
    return true;
}

bool RoiAlignAttrs::validate(std::string& error) const noexcept
{
    try
    {
        if (outputHeight < 1 || outputWidth < 1)
        {
            error = "output_height and output_width must be >= 1, got " + std::to_string(outputHeight) + "x"
                + std::to_string(outputWidth);
            return false;
        }
        if (samplingRatio < 0)
        {
            error = "sampling_ratio must be >= 0 (0 = adaptive), got " + std::to_string(samplingRatio);
            return false;
        }
        if (!(std::isfinite(spatialScale) && spatialScale > 0.F))
        {
            error = "spatial_scale must be finite and > 0";
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
    catch (...)
    {
        error = "out of memory";
        return false;
    }
}

// --------------------------------------------------------- RoiAlignPlugin

namespace
{
constexpr int32_t kX = 0;
constexpr int32_t kRois = 1;
constexpr int32_t kBatch = 2;
constexpr int32_t kNbInputs = 3;

//! Checks ranks and the dimensions that must agree; -1 (unknown) matches anything.
bool checkRoiAlignDims(Dims const& x, Dims const& rois, Dims const& batch, std::string& error)
{
    if (x.nbDims != 4 || rois.nbDims != 2 || batch.nbDims != 1)
    {
        error = "expected X [N,C,H,W], rois [K,4], batch_indices [K]; got X " + dimsToString(x) + ", rois "
            + dimsToString(rois) + ", batch_indices " + dimsToString(batch);
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
    if ((x.d[2] == 0) || (x.d[3] == 0))
    {
        error = "X has an empty spatial size: " + dimsToString(x);
        return false;
    }
    return true;
}
} // namespace

RoiAlignPlugin::RoiAlignPlugin(RoiAlignAttrs attrs)
    : mAttrs(std::move(attrs))
{
    mDescription = "out=" + std::to_string(mAttrs.outputHeight) + "x" + std::to_string(mAttrs.outputWidth)
        + " sampling_ratio=" + std::to_string(mAttrs.samplingRatio) + " spatial_scale="
        + std::to_string(mAttrs.spatialScale) + " mode=" + mAttrs.mode
        + " coordinate_transformation_mode=" + mAttrs.coordinateTransformationMode;
}

IPluginV3* RoiAlignPlugin::clone() noexcept
{
    try
    {
        return new RoiAlignPlugin(*this);
    }
    catch (...)
    {
        logError(kRoiAlignName, "clone failed: out of memory");
        return nullptr;
    }
}

char const* RoiAlignPlugin::getPluginName() const noexcept
{
    return kRoiAlignName;
}

int32_t RoiAlignPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    try
    {
        if (in == nullptr || nbInputs != kNbInputs || nbOutputs != 1)
        {
            logError(kRoiAlignName, "expects 3 inputs (X, rois, batch_indices) and 1 output");
            return 1;
        }
        std::string error;
        if (!checkRoiAlignDims(in[kX].desc.dims, in[kRois].desc.dims, in[kBatch].desc.dims, error))
        {
            logError(kRoiAlignName, error);
            return 1;
        }
        return 0;
    }
    catch (...)
    {
        return 1;
    }
}

int32_t RoiAlignPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (outputTypes == nullptr || inputTypes == nullptr || nbOutputs != 1 || nbInputs != kNbInputs)
    {
        logError(kRoiAlignName, "expects 3 inputs (X, rois, batch_indices) and 1 output");
        return 1;
    }
    outputTypes[0] = inputTypes[kX];
    return 0;
}

int32_t RoiAlignPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* /*shapeInputs*/,
    int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs, IExprBuilder& exprBuilder) noexcept
{
    try
    {
        if (inputs == nullptr || outputs == nullptr || nbInputs != kNbInputs || nbOutputs != 1)
        {
            logError(kRoiAlignName, "expects 3 inputs (X, rois, batch_indices) and 1 output");
            return 1;
        }
        if (inputs[kX].nbDims != 4 || inputs[kRois].nbDims != 2 || inputs[kBatch].nbDims != 1)
        {
            logError(kRoiAlignName,
                "expected X rank 4, rois rank 2, batch_indices rank 1; got ranks " + std::to_string(inputs[kX].nbDims)
                    + ", " + std::to_string(inputs[kRois].nbDims) + ", " + std::to_string(inputs[kBatch].nbDims));
            return 1;
        }
        IDimensionExpr const* four = inputs[kRois].d[1];
        if (four->isConstant() && four->getConstantValue() != 4)
        {
            logError(kRoiAlignName, "rois must be [K, 4], got last dimension " + std::to_string(four->getConstantValue()));
            return 1;
        }
        outputs[0].nbDims = 4;
        outputs[0].d[0] = inputs[kRois].d[0];
        outputs[0].d[1] = inputs[kX].d[1];
        outputs[0].d[2] = exprBuilder.constant(mAttrs.outputHeight);
        outputs[0].d[3] = exprBuilder.constant(mAttrs.outputWidth);
        return 0;
    }
    catch (...)
    {
        return 1;
    }
}

bool RoiAlignPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (inOut == nullptr || nbInputs != kNbInputs || nbOutputs != 1 || pos < 0 || pos > kNbInputs)
    {
        return false;
    }
    PluginTensorDesc const& d = inOut[pos].desc;
    if (d.format != TensorFormat::kLINEAR)
    {
        return false;
    }
    switch (pos)
    {
    case kX: return d.type == DataType::kFLOAT || d.type == DataType::kHALF;
    case kRois: return d.type == DataType::kFLOAT; // fp32 boxes: fp16 cannot hold 1-px steps past 2048
    case kBatch: return d.type == DataType::kINT32;
    default: return d.type == inOut[kX].desc.type; // output
    }
}

int32_t RoiAlignPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    try
    {
        if (in == nullptr || nbInputs != kNbInputs || nbOutputs != 1)
        {
            logError(kRoiAlignName, "expects 3 inputs (X, rois, batch_indices) and 1 output");
            return 1;
        }
        std::string error;
        if (!checkRoiAlignDims(in[kX].dims, in[kRois].dims, in[kBatch].dims, error))
        {
            logError(kRoiAlignName, error);
            return 1;
        }
        return 0;
    }
    catch (...)
    {
        return 1;
    }
}

int32_t RoiAlignPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
    void const* const* inputs, void* const* outputs, void* /*workspace*/, cudaStream_t stream) noexcept
{
    if (inputDesc == nullptr || inputs == nullptr || outputs == nullptr)
    {
        return 1;
    }
    int64_t const k = inputDesc[kRois].dims.d[0];
    if (k == 0)
    {
        return 0; // no RoIs: empty output, nothing to launch
    }
    Dims const& x = inputDesc[kX].dims;
    int32_t const dtype = inputDesc[kX].type == DataType::kHALF ? SEGRT_DTYPE_FLOAT16 : SEGRT_DTYPE_FLOAT32;
    cudaError_t const status = segrt_roi_align_cuda(dtype, inputs[kX], x.d[0], x.d[1], x.d[2], x.d[3],
        static_cast<float const*>(inputs[kRois]), static_cast<int32_t const*>(inputs[kBatch]), k,
        mAttrs.outputHeight, mAttrs.outputWidth, mAttrs.spatialScale, mAttrs.samplingRatio,
        mAttrs.mode == "max" ? 1 : 0, mAttrs.coordinateTransformationMode == "half_pixel" ? 1 : 0, outputs[0], stream);
    if (status != cudaSuccess)
    {
        try
        {
            logError(kRoiAlignName, std::string("kernel launch failed: ") + cudaGetErrorString(status));
        }
        catch (...)
        {
        }
        return 1;
    }
    return 0;
}

PluginFieldCollection const* RoiAlignPlugin::getFieldsToSerialize() noexcept
{
    try
    {
        mSerialFields.clear();
        mSerialFields.emplace_back("output_height", &mAttrs.outputHeight, PluginFieldType::kINT32, 1);
        mSerialFields.emplace_back("output_width", &mAttrs.outputWidth, PluginFieldType::kINT32, 1);
        mSerialFields.emplace_back("sampling_ratio", &mAttrs.samplingRatio, PluginFieldType::kINT32, 1);
        mSerialFields.emplace_back("spatial_scale", &mAttrs.spatialScale, PluginFieldType::kFLOAT32, 1);
        mSerialFields.emplace_back(
            "mode", mAttrs.mode.c_str(), PluginFieldType::kCHAR, static_cast<int32_t>(mAttrs.mode.size()));
        mSerialFields.emplace_back("coordinate_transformation_mode", mAttrs.coordinateTransformationMode.c_str(),
            PluginFieldType::kCHAR, static_cast<int32_t>(mAttrs.coordinateTransformationMode.size()));
        mSerialCollection.nbFields = static_cast<int32_t>(mSerialFields.size());
        mSerialCollection.fields = mSerialFields.data();
        return &mSerialCollection;
    }
    catch (...)
    {
        logError(kRoiAlignName, "getFieldsToSerialize: out of memory");
        return nullptr;
    }
}

// -------------------------------------------------- RoiAlignPluginCreator

RoiAlignPluginCreator::RoiAlignPluginCreator()
{
    mFields.emplace_back("output_height", nullptr, PluginFieldType::kINT32, 1);
    mFields.emplace_back("output_width", nullptr, PluginFieldType::kINT32, 1);
    mFields.emplace_back("sampling_ratio", nullptr, PluginFieldType::kINT32, 1);
    mFields.emplace_back("spatial_scale", nullptr, PluginFieldType::kFLOAT32, 1);
    mFields.emplace_back("mode", nullptr, PluginFieldType::kCHAR, 0);
    mFields.emplace_back("coordinate_transformation_mode", nullptr, PluginFieldType::kCHAR, 0);
    mCollection.nbFields = static_cast<int32_t>(mFields.size());
    mCollection.fields = mFields.data();
}

IPluginV3* RoiAlignPluginCreator::createPlugin(char const* name, PluginFieldCollection const* fc, TensorRTPhase /*phase*/) noexcept
{
    try
    {
        RoiAlignAttrs attrs;
        std::string error;
        if (!attrs.parse(fc, error) || !attrs.validate(error))
        {
            logError(kRoiAlignName, std::string("cannot create layer '") + (name ? name : "") + "': " + error);
            return nullptr;
        }
        return new RoiAlignPlugin(std::move(attrs));
    }
    catch (...)
    {
        logError(kRoiAlignName, "createPlugin: out of memory");
        return nullptr;
    }
}

PluginFieldCollection const* RoiAlignPluginCreator::getFieldNames() noexcept
{
    return &mCollection;
}

char const* RoiAlignPluginCreator::getPluginName() const noexcept
{
    return kRoiAlignName;
}

char const* RoiAlignPluginCreator::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

char const* RoiAlignPluginCreator::getPluginNamespace() const noexcept
{
    return kPluginNamespace;
}

} // namespace trt
} // namespace segrt
