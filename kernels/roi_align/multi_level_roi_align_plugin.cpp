// SegrtMultiLevelRoiAlign: torchvision.ops.MultiScaleRoIAlign in one launch; see roi_align_plugin.h.
//
// Inputs: rois [K, 4] float32, batch_indices [K] int32, then one feature map
// [N, C, H_l, W_l] per level (float32 or float16, all the same), finest first.
#include "roi_align_plugin.h"

#include "roi_align_common.h"
#include "roi_align_kernel.h"

#include <cmath>
#include <cstring>
#include <utility>

using namespace nvinfer1;

namespace segrt
{
namespace trt
{

// ------------------------------------------------ MultiLevelRoiAlignAttrs

bool MultiLevelRoiAlignAttrs::parse(PluginFieldCollection const* fc, std::string& error) noexcept
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
        else if (std::strcmp(f.name, "spatial_scales") == 0)
        {
            ok = readFloats(f, spatialScales, error);
        }
        else if (std::strcmp(f.name, "aligned") == 0)
        {
            ok = readInt(f, aligned, error);
        }
        else if (std::strcmp(f.name, "canonical_scale") == 0)
        {
            ok = readFloat(f, canonicalScale, error);
        }
        else if (std::strcmp(f.name, "canonical_level") == 0)
        {
            ok = readInt(f, canonicalLevel, error);
        }
        if (!ok)
        {
            return false;
        }
    }
    return true;
}

bool MultiLevelRoiAlignAttrs::validate(std::string& error) const noexcept
{
    try
    {
        if (outputHeight < 1 || outputWidth < 1)
        {
            error = "output_height and output_width are required and must be >= 1, got "
                + std::to_string(outputHeight) + "x" + std::to_string(outputWidth);
            return false;
        }
        if (samplingRatio < 0)
        {
            error = "sampling_ratio is required and must be >= 0 (0 = adaptive)";
            return false;
        }
        if (aligned != 0 && aligned != 1)
        {
            error = "aligned must be 0 or 1, got " + std::to_string(aligned);
            return false;
        }
        if (!(std::isfinite(canonicalScale) && canonicalScale > 0.F))
        {
            error = "canonical_scale must be finite and > 0";
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
            float const s = spatialScales[l];
            if (!(std::isfinite(s) && s > 0.F))
            {
                error = "spatial_scales[" + std::to_string(l) + "] must be finite and > 0";
                return false;
            }
            // Levels must be consecutive powers of two, finest first: the level index is k - k_min.
            double const k = -std::log2(static_cast<double>(s));
            if (std::fabs(k - static_cast<double>(fpnKMin(spatialScales[0]) + l)) > 1e-3)
            {
                error = "spatial_scales must be consecutive FPN levels 2^-k, 2^-(k+1), ... finest first "
                        "(e.g. 0.25, 0.125, 0.0625, 0.03125)";
                return false;
            }
        }
        return true;
    }
    catch (...)
    {
        error = "out of memory";
        return false;
    }
}

// ----------------------------------------------- MultiLevelRoiAlignPlugin

namespace
{
constexpr int32_t kRois = 0;
constexpr int32_t kBatch = 1;
constexpr int32_t kFirstLevel = 2;
} // namespace

MultiLevelRoiAlignPlugin::MultiLevelRoiAlignPlugin(MultiLevelRoiAlignAttrs attrs)
    : mAttrs(std::move(attrs))
{
    mDescription = "out=" + std::to_string(mAttrs.outputHeight) + "x" + std::to_string(mAttrs.outputWidth)
        + " sampling_ratio=" + std::to_string(mAttrs.samplingRatio) + " aligned=" + std::to_string(mAttrs.aligned)
        + " canonical=" + std::to_string(mAttrs.canonicalScale) + "/" + std::to_string(mAttrs.canonicalLevel)
        + " scales=";
    for (float s : mAttrs.spatialScales)
    {
        mDescription += std::to_string(s) + ",";
    }
}

int32_t MultiLevelRoiAlignPlugin::numLevels() const noexcept
{
    return static_cast<int32_t>(mAttrs.spatialScales.size());
}

IPluginV3* MultiLevelRoiAlignPlugin::clone() noexcept
{
    try
    {
        return new MultiLevelRoiAlignPlugin(*this);
    }
    catch (...)
    {
        logError(kMultiLevelRoiAlignName, "clone failed: out of memory");
        return nullptr;
    }
}

char const* MultiLevelRoiAlignPlugin::getPluginName() const noexcept
{
    return kMultiLevelRoiAlignName;
}

namespace
{
//! Checks ranks and agreeing dimensions of (rois, batch_indices, levels...); -1 matches anything.
template <typename GetDims>
bool checkMultiLevelDims(int32_t nbInputs, GetDims const& dims, std::string& error)
{
    Dims const& rois = dims(kRois);
    Dims const& batch = dims(kBatch);
    if (rois.nbDims != 2 || batch.nbDims != 1 || (rois.d[1] >= 0 && rois.d[1] != 4))
    {
        error = "expected rois [K, 4] and batch_indices [K]; got rois " + dimsToString(rois) + ", batch_indices "
            + dimsToString(batch);
        return false;
    }
    if (rois.d[0] >= 0 && batch.d[0] >= 0 && rois.d[0] != batch.d[0])
    {
        error = "rois " + dimsToString(rois) + " and batch_indices " + dimsToString(batch) + " disagree on K";
        return false;
    }
    Dims const& first = dims(kFirstLevel);
    for (int32_t i = kFirstLevel; i < nbInputs; ++i)
    {
        Dims const& f = dims(i);
        std::string const which = "feature map " + std::to_string(i - kFirstLevel);
        if (f.nbDims != 4)
        {
            error = which + " must be [N, C, H, W], got " + dimsToString(f);
            return false;
        }
        if (f.d[2] == 0 || f.d[3] == 0)
        {
            error = which + " has an empty spatial size: " + dimsToString(f);
            return false;
        }
        for (int32_t axis = 0; axis < 2; ++axis)
        {
            if (first.nbDims == 4 && f.d[axis] >= 0 && first.d[axis] >= 0 && f.d[axis] != first.d[axis])
            {
                error = which + " " + dimsToString(f) + " does not match feature map 0 " + dimsToString(first)
                    + (axis == 0 ? " in N" : " in C (channel counts must agree across levels)");
                return false;
            }
        }
    }
    return true;
}
} // namespace

int32_t MultiLevelRoiAlignPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    try
    {
        if (in == nullptr || nbInputs != kFirstLevel + numLevels() || nbOutputs != 1)
        {
            logError(kMultiLevelRoiAlignName,
                "expects rois, batch_indices and " + std::to_string(numLevels())
                    + " feature maps (one per spatial_scales entry), and 1 output; got "
                    + std::to_string(nbInputs) + " inputs");
            return 1;
        }
        std::string error;
        if (!checkMultiLevelDims(nbInputs, [&](int32_t i) -> Dims const& { return in[i].desc.dims; }, error))
        {
            logError(kMultiLevelRoiAlignName, error);
            return 1;
        }
        return 0;
    }
    catch (...)
    {
        return 1;
    }
}

int32_t MultiLevelRoiAlignPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (outputTypes == nullptr || inputTypes == nullptr || nbOutputs != 1 || nbInputs != kFirstLevel + numLevels())
    {
        logError(kMultiLevelRoiAlignName, "wrong number of inputs or outputs");
        return 1;
    }
    outputTypes[0] = inputTypes[kFirstLevel];
    return 0;
}

int32_t MultiLevelRoiAlignPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs,
    DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs,
    IExprBuilder& exprBuilder) noexcept
{
    try
    {
        if (inputs == nullptr || outputs == nullptr || nbInputs != kFirstLevel + numLevels() || nbOutputs != 1)
        {
            logError(kMultiLevelRoiAlignName,
                "expects rois, batch_indices and " + std::to_string(numLevels()) + " feature maps; got "
                    + std::to_string(nbInputs) + " inputs");
            return 1;
        }
        if (inputs[kRois].nbDims != 2 || inputs[kBatch].nbDims != 1)
        {
            logError(kMultiLevelRoiAlignName, "rois must be rank 2 [K, 4] and batch_indices rank 1 [K]");
            return 1;
        }
        IDimensionExpr const* four = inputs[kRois].d[1];
        if (four->isConstant() && four->getConstantValue() != 4)
        {
            logError(kMultiLevelRoiAlignName, "rois must be [K, 4]");
            return 1;
        }
        for (int32_t i = kFirstLevel; i < nbInputs; ++i)
        {
            if (inputs[i].nbDims != 4)
            {
                logError(kMultiLevelRoiAlignName,
                    "feature map " + std::to_string(i - kFirstLevel) + " must be rank 4 [N, C, H, W]");
                return 1;
            }
            IDimensionExpr const* c = inputs[i].d[1];
            IDimensionExpr const* c0 = inputs[kFirstLevel].d[1];
            if (c->isConstant() && c0->isConstant() && c->getConstantValue() != c0->getConstantValue())
            {
                logError(kMultiLevelRoiAlignName,
                    "channel counts differ across levels: " + std::to_string(c0->getConstantValue()) + " vs "
                        + std::to_string(c->getConstantValue()));
                return 1;
            }
        }
        outputs[0].nbDims = 4;
        outputs[0].d[0] = inputs[kRois].d[0];
        outputs[0].d[1] = inputs[kFirstLevel].d[1];
        outputs[0].d[2] = exprBuilder.constant(mAttrs.outputHeight);
        outputs[0].d[3] = exprBuilder.constant(mAttrs.outputWidth);
        return 0;
    }
    catch (...)
    {
        return 1;
    }
}

bool MultiLevelRoiAlignPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (inOut == nullptr || nbInputs != kFirstLevel + numLevels() || nbOutputs != 1 || pos < 0 || pos > nbInputs)
    {
        return false;
    }
    PluginTensorDesc const& d = inOut[pos].desc;
    if (d.format != TensorFormat::kLINEAR)
    {
        return false;
    }
    if (pos == kRois)
    {
        return d.type == DataType::kFLOAT;
    }
    if (pos == kBatch)
    {
        return d.type == DataType::kINT32;
    }
    if (pos == kFirstLevel)
    {
        return d.type == DataType::kFLOAT || d.type == DataType::kHALF;
    }
    return d.type == inOut[kFirstLevel].desc.type; // later levels and the output
}

int32_t MultiLevelRoiAlignPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    try
    {
        if (in == nullptr || nbInputs != kFirstLevel + numLevels() || nbOutputs != 1)
        {
            logError(kMultiLevelRoiAlignName, "wrong number of inputs or outputs");
            return 1;
        }
        std::string error;
        if (!checkMultiLevelDims(nbInputs, [&](int32_t i) -> Dims const& { return in[i].dims; }, error))
        {
            logError(kMultiLevelRoiAlignName, error);
            return 1;
        }
        return 0;
    }
    catch (...)
    {
        return 1;
    }
}

int32_t MultiLevelRoiAlignPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
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
    int32_t const levels = numLevels();
    void const* features[kMaxLevels];
    int64_t heights[kMaxLevels];
    int64_t widths[kMaxLevels];
    for (int32_t l = 0; l < levels; ++l)
    {
        features[l] = inputs[kFirstLevel + l];
        heights[l] = inputDesc[kFirstLevel + l].dims.d[2];
        widths[l] = inputDesc[kFirstLevel + l].dims.d[3];
    }
    Dims const& first = inputDesc[kFirstLevel].dims;
    int32_t const dtype = inputDesc[kFirstLevel].type == DataType::kHALF ? SEGRT_DTYPE_FLOAT16 : SEGRT_DTYPE_FLOAT32;
    cudaError_t const status = segrt_multi_level_roi_align_cuda(dtype, features, heights, widths,
        mAttrs.spatialScales.data(), levels, first.d[0], first.d[1], static_cast<float const*>(inputs[kRois]),
        static_cast<int32_t const*>(inputs[kBatch]), k, mAttrs.outputHeight, mAttrs.outputWidth,
        mAttrs.samplingRatio, mAttrs.aligned, mAttrs.canonicalScale, mAttrs.canonicalLevel, outputs[0], stream);
    if (status != cudaSuccess)
    {
        try
        {
            logError(kMultiLevelRoiAlignName, std::string("kernel launch failed: ") + cudaGetErrorString(status));
        }
        catch (...)
        {
        }
        return 1;
    }
    return 0;
}

PluginFieldCollection const* MultiLevelRoiAlignPlugin::getFieldsToSerialize() noexcept
{
    try
    {
        mSerialFields.clear();
        mSerialFields.emplace_back("output_height", &mAttrs.outputHeight, PluginFieldType::kINT32, 1);
        mSerialFields.emplace_back("output_width", &mAttrs.outputWidth, PluginFieldType::kINT32, 1);
        mSerialFields.emplace_back("sampling_ratio", &mAttrs.samplingRatio, PluginFieldType::kINT32, 1);
        mSerialFields.emplace_back("spatial_scales", mAttrs.spatialScales.data(), PluginFieldType::kFLOAT32,
            static_cast<int32_t>(mAttrs.spatialScales.size()));
        mSerialFields.emplace_back("aligned", &mAttrs.aligned, PluginFieldType::kINT32, 1);
        mSerialFields.emplace_back("canonical_scale", &mAttrs.canonicalScale, PluginFieldType::kFLOAT32, 1);
        mSerialFields.emplace_back("canonical_level", &mAttrs.canonicalLevel, PluginFieldType::kINT32, 1);
        mSerialCollection.nbFields = static_cast<int32_t>(mSerialFields.size());
        mSerialCollection.fields = mSerialFields.data();
        return &mSerialCollection;
    }
    catch (...)
    {
        logError(kMultiLevelRoiAlignName, "getFieldsToSerialize: out of memory");
        return nullptr;
    }
}

// ----------------------------------------- MultiLevelRoiAlignPluginCreator

MultiLevelRoiAlignPluginCreator::MultiLevelRoiAlignPluginCreator()
{
    mFields.emplace_back("output_height", nullptr, PluginFieldType::kINT32, 1);
    mFields.emplace_back("output_width", nullptr, PluginFieldType::kINT32, 1);
    mFields.emplace_back("sampling_ratio", nullptr, PluginFieldType::kINT32, 1);
    mFields.emplace_back("spatial_scales", nullptr, PluginFieldType::kFLOAT32, 0);
    mFields.emplace_back("aligned", nullptr, PluginFieldType::kINT32, 1);
    mFields.emplace_back("canonical_scale", nullptr, PluginFieldType::kFLOAT32, 1);
    mFields.emplace_back("canonical_level", nullptr, PluginFieldType::kINT32, 1);
    mCollection.nbFields = static_cast<int32_t>(mFields.size());
    mCollection.fields = mFields.data();
}

IPluginV3* MultiLevelRoiAlignPluginCreator::createPlugin(
    char const* name, PluginFieldCollection const* fc, TensorRTPhase /*phase*/) noexcept
{
    try
    {
        MultiLevelRoiAlignAttrs attrs;
        std::string error;
        if (!attrs.parse(fc, error) || !attrs.validate(error))
        {
            logError(kMultiLevelRoiAlignName, std::string("cannot create layer '") + (name ? name : "") + "': " + error);
            return nullptr;
        }
        return new MultiLevelRoiAlignPlugin(std::move(attrs));
    }
    catch (...)
    {
        logError(kMultiLevelRoiAlignName, "createPlugin: out of memory");
        return nullptr;
    }
}

PluginFieldCollection const* MultiLevelRoiAlignPluginCreator::getFieldNames() noexcept
{
    return &mCollection;
}

char const* MultiLevelRoiAlignPluginCreator::getPluginName() const noexcept
{
    return kMultiLevelRoiAlignName;
}

char const* MultiLevelRoiAlignPluginCreator::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

char const* MultiLevelRoiAlignPluginCreator::getPluginNamespace() const noexcept
{
    return kPluginNamespace;
}

} // namespace trt
} // namespace segrt
