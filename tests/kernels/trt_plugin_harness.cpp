// Drives libsegrt_trt_plugins.so through TensorRT's public plugin interfaces (IPluginCreatorV3One,
// IPluginV3 + Core/Build/Runtime), the way TensorRT's builder, ONNX parser and runtime call them,
// on a machine without TensorRT or a GPU (linked against fake_nvinfer.cpp). Covers registration on
// dlopen and via getCreators(), attribute parsing as the ONNX parser passes attributes, shape and
// format checks, serialization round trips, clone/attach, and enqueue returning at once for K = 0.
//
//   trt_plugin_harness /path/libsegrt_trt_plugins.so [--no-autoregister]
// Prints one line per check; exit status 1 if any failed.
#include <NvInferRuntime.h>

#include <dlfcn.h>

#include <cstdio>
#include <cstring>
#include <deque>
#include <initializer_list>
#include <limits>
#include <string>
#include <vector>

using namespace nvinfer1;

extern "C" char const* fake_nvinfer_logged() noexcept;
extern "C" void fake_nvinfer_clear_log() noexcept;

namespace
{

int gFailures = 0;

void expect(bool ok, std::string const& what)
{
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
    gFailures += ok ? 0 : 1;
}

bool logged(char const* needle)
{
    return std::strstr(fake_nvinfer_logged(), needle) != nullptr;
}

Dims dims(std::initializer_list<int64_t> v)
{
    Dims d{};
    d.nbDims = static_cast<int32_t>(v.size());
    int32_t i = 0;
    for (int64_t x : v)
    {
        d.d[i++] = x;
    }
    return d;
}

DynamicPluginTensorDesc dyn(Dims d, DataType t, TensorFormat f = TensorFormat::kLINEAR)
{
    DynamicPluginTensorDesc desc{};
    desc.desc.dims = d;
    desc.desc.type = t;
    desc.desc.format = f;
    desc.min = d;
    desc.max = d;
    desc.opt = d;
    return desc;
}

PluginTensorDesc concrete(Dims d, DataType t)
{
    PluginTensorDesc desc{};
    desc.dims = d;
    desc.type = t;
    desc.format = TensorFormat::kLINEAR;
    return desc;
}

//! A dimension expression: a constant (value >= 0) or a runtime value (-1), as TensorRT's builder gives.
class FakeDimImpl final : public apiv::VDimensionExpr
{
public:
    explicit FakeDimImpl(int64_t v)
        : value(v)
    {
    }
    bool isConstant() const override
    {
        return value >= 0;
    }
    int64_t getConstantValue() const override
    {
        return value >= 0 ? value : std::numeric_limits<int64_t>::min();
    }
    bool isSizeTensor() const override
    {
        return false;
    }
    int64_t value;
};

class FakeDim final : public IDimensionExpr
{
public:
    explicit FakeDim(int64_t v)
        : impl(v)
    {
        mImpl = &impl;
    }
    ~FakeDim() noexcept override = default;
    FakeDimImpl impl;
};

class FakeExprBuilderImpl final : public apiv::VExprBuilder
{
public:
    IDimensionExpr const* constant(int64_t value) override
    {
        return &dims.emplace_back(value);
    }
    IDimensionExpr const* operation(DimensionOperation, IDimensionExpr const&, IDimensionExpr const&) override
    {
        return nullptr;
    }
    IDimensionExpr const* declareSizeTensor(int32_t, IDimensionExpr const&, IDimensionExpr const&) override
    {
        return nullptr;
    }
    std::deque<FakeDim> dims;
};

class FakeExprBuilder final : public IExprBuilder
{
public:
    FakeExprBuilder()
    {
        mImpl = &impl;
    }
    ~FakeExprBuilder() noexcept override = default;
    //! Shape expressions for `values` (-1 = unknown until runtime).
    DimsExprs shape(std::initializer_list<int64_t> values)
    {
        DimsExprs e{};
        e.nbDims = static_cast<int32_t>(values.size());
        int32_t i = 0;
        for (int64_t v : values)
        {
            e.d[i++] = &impl.dims.emplace_back(v);
        }
        return e;
    }
    FakeExprBuilderImpl impl;
};

struct Caps
{
    IPluginV3OneCore* core;
    IPluginV3OneBuild* build;
    IPluginV3OneRuntime* runtime;
};

Caps caps(IPluginV3* p)
{
    return {static_cast<IPluginV3OneCore*>(p->getCapabilityInterface(PluginCapabilityType::kCORE)),
        static_cast<IPluginV3OneBuild*>(p->getCapabilityInterface(PluginCapabilityType::kBUILD)),
        static_cast<IPluginV3OneRuntime*>(p->getCapabilityInterface(PluginCapabilityType::kRUNTIME))};
}

void roiAlign(IPluginCreatorV3One* creator)
{
    std::printf("-- SegrtRoiAlign\n");
    expect(creator->getFieldNames()->nbFields == 6, "creator advertises 6 fields");
    // As the ONNX parser passes them: INT32, FLOAT32, strings without a terminator.
    int32_t oh = 7, ow = 5, ratio = 2;
    float scale = 0.25F;
    char const mode[] = {'a', 'v', 'g'};
    char const ctm[] = "output_half_pixel";
    std::vector<PluginField> f = {{"output_height", &oh, PluginFieldType::kINT32, 1},
        {"output_width", &ow, PluginFieldType::kINT32, 1}, {"sampling_ratio", &ratio, PluginFieldType::kINT32, 1},
        {"spatial_scale", &scale, PluginFieldType::kFLOAT32, 1}, {"mode", mode, PluginFieldType::kCHAR, 3},
        {"coordinate_transformation_mode", ctm, PluginFieldType::kCHAR, 17}};
    PluginFieldCollection fc{static_cast<int32_t>(f.size()), f.data()};
    IPluginV3* p = creator->createPlugin("roi", &fc, TensorRTPhase::kBUILD);
    expect(p != nullptr, "createPlugin with ONNX-parser fields");
    if (p == nullptr)
    {
        return;
    }
    Caps c = caps(p);
    expect(c.core && c.build && c.runtime, "core, build and runtime capabilities");
    expect(!std::strcmp(c.core->getPluginName(), "SegrtRoiAlign") && !std::strcmp(c.core->getPluginVersion(), "1")
            && !std::strcmp(c.core->getPluginNamespace(), "segrt"),
        "name/version/namespace = SegrtRoiAlign/1/segrt");
    std::string const meta = c.build->getMetadataString();
    expect(meta.find("out=7x5") != std::string::npos && meta.find("output_half_pixel") != std::string::npos,
        "attributes parsed: " + meta);
    expect(c.build->getNbOutputs() == 1, "one output");
    DataType in[3] = {DataType::kHALF, DataType::kFLOAT, DataType::kINT32};
    DataType out = DataType::kFLOAT;
    expect(c.build->getOutputDataTypes(&out, 1, in, 3) == 0 && out == DataType::kHALF, "output type follows X (half)");

    DynamicPluginTensorDesc io[4] = {dyn(dims({-1, 256, -1, -1}), DataType::kHALF), dyn(dims({-1, 4}), DataType::kFLOAT),
        dyn(dims({-1}), DataType::kINT32), dyn(dims({-1, 256, 7, 5}), DataType::kHALF)};
    bool all = true;
    for (int32_t pos = 0; pos < 4; ++pos)
    {
        all = all && c.build->supportsFormatCombination(pos, io, 3, 1);
    }
    expect(all, "supports half X, float rois, int32 indices, half output");
    io[0].desc.type = DataType::kFLOAT;
    io[3].desc.type = DataType::kFLOAT;
    expect(c.build->supportsFormatCombination(0, io, 3, 1) && c.build->supportsFormatCombination(3, io, 3, 1),
        "supports float X and output");
    io[3].desc.type = DataType::kHALF;
    expect(!c.build->supportsFormatCombination(3, io, 3, 1), "rejects output type != X type");
    io[1].desc.type = DataType::kHALF;
    expect(!c.build->supportsFormatCombination(1, io, 3, 1), "rejects half rois");
    io[2].desc.type = DataType::kINT64;
    expect(!c.build->supportsFormatCombination(2, io, 3, 1), "rejects int64 batch indices");
    io[0].desc.format = TensorFormat::kCHW32;
    expect(!c.build->supportsFormatCombination(0, io, 3, 1), "rejects non-linear formats");

    {
        FakeExprBuilder eb;
        DimsExprs shapes[3] = {eb.shape({-1, 256, -1, -1}), eb.shape({-1, 4}), eb.shape({-1})};
        DimsExprs outShape{};
        bool ok = c.build->getOutputShapes(shapes, 3, nullptr, 0, &outShape, 1, eb) == 0;
        expect(ok && outShape.nbDims == 4 && outShape.d[0] == shapes[1].d[0] && outShape.d[1] == shapes[0].d[1]
                && outShape.d[2]->getConstantValue() == 7 && outShape.d[3]->getConstantValue() == 5,
            "getOutputShapes: [K from rois, C from X, 7, 5]");
        shapes[1] = eb.shape({-1, 5});
        fake_nvinfer_clear_log();
        expect(c.build->getOutputShapes(shapes, 3, nullptr, 0, &outShape, 1, eb) != 0 && logged("rois must be [K, 4]"),
            "getOutputShapes rejects rois [K, 5]");
        shapes[1] = eb.shape({-1, 4});
        shapes[0] = eb.shape({256, -1, -1});
        expect(c.build->getOutputShapes(shapes, 3, nullptr, 0, &outShape, 1, eb) != 0, "getOutputShapes rejects rank-3 X");
    }

    DynamicPluginTensorDesc good[3] = {dyn(dims({-1, 256, -1, -1}), DataType::kFLOAT),
        dyn(dims({-1, 4}), DataType::kFLOAT), dyn(dims({-1}), DataType::kINT32)};
    DynamicPluginTensorDesc outDesc = dyn(dims({-1, 256, 7, 5}), DataType::kFLOAT);
    expect(c.build->configurePlugin(good, 3, &outDesc, 1) == 0, "configurePlugin accepts [N,C,H,W],[K,4],[K]");
    fake_nvinfer_clear_log();
    good[1] = dyn(dims({-1, 5}), DataType::kFLOAT);
    expect(c.build->configurePlugin(good, 3, &outDesc, 1) != 0 && logged("rois must be [K, 4]"),
        "configurePlugin rejects rois [K,5] with a logged reason");
    expect(c.build->configurePlugin(good, 2, &outDesc, 1) != 0, "configurePlugin rejects 2 inputs");

    PluginTensorDesc rt[3] = {concrete(dims({2, 256, 50, 60}), DataType::kFLOAT),
        concrete(dims({10, 4}), DataType::kFLOAT), concrete(dims({10}), DataType::kINT32)};
    PluginTensorDesc rtOut = concrete(dims({10, 256, 7, 5}), DataType::kFLOAT);
    expect(c.runtime->onShapeChange(rt, 3, &rtOut, 1) == 0, "onShapeChange accepts matching K");
    rt[2] = concrete(dims({9}), DataType::kINT32);
    fake_nvinfer_clear_log();
    expect(c.runtime->onShapeChange(rt, 3, &rtOut, 1) != 0 && logged("disagree on K"), "onShapeChange rejects K mismatch");

    PluginTensorDesc empty[3] = {concrete(dims({2, 256, 50, 60}), DataType::kFLOAT),
        concrete(dims({0, 4}), DataType::kFLOAT), concrete(dims({0}), DataType::kINT32)};
    void const* inputs[3] = {nullptr, nullptr, nullptr};
    void* outputs[1] = {nullptr};
    expect(c.runtime->enqueue(empty, &rtOut, inputs, outputs, nullptr, nullptr) == 0,
        "enqueue returns 0 at once for K = 0 (no CUDA call: none available here)");

    PluginFieldCollection const* ser = c.runtime->getFieldsToSerialize();
    expect(ser != nullptr && ser->nbFields == 6, "getFieldsToSerialize gives 6 fields");
    IPluginV3* back = ser ? creator->createPlugin("roi", ser, TensorRTPhase::kRUNTIME) : nullptr;
    expect(back != nullptr && meta == caps(back).build->getMetadataString(), "serialization round trip keeps attributes");
    IPluginV3* cl = p->clone();
    expect(cl != nullptr && meta == caps(cl).build->getMetadataString(), "clone keeps attributes");
    IPluginV3* attached = c.runtime->attachToContext(nullptr);
    expect(attached != nullptr, "attachToContext returns a plugin");
    delete attached;
    delete cl;
    delete back;
    delete p;

    // Bad attributes: nullptr and a logged reason, never an exception.
    char const bad[] = "mean";
    f[4] = PluginField{"mode", bad, PluginFieldType::kCHAR, 4};
    fake_nvinfer_clear_log();
    expect(creator->createPlugin("roi", &fc, TensorRTPhase::kBUILD) == nullptr && logged("mode must be 'avg' or 'max'"),
        "rejects mode=mean");
    f[4] = PluginField{"mode", mode, PluginFieldType::kCHAR, 3};
    int32_t zero = 0;
    f[0] = PluginField{"output_height", &zero, PluginFieldType::kINT32, 1};
    expect(creator->createPlugin("roi", &fc, TensorRTPhase::kBUILD) == nullptr && logged("output_height"),
        "rejects output_height=0");
    int64_t oh64 = 14;
    double scale64 = 0.5;
    f[0] = PluginField{"output_height", &oh64, PluginFieldType::kINT64, 1};
    f[3] = PluginField{"spatial_scale", &scale64, PluginFieldType::kFLOAT64, 1};
    IPluginV3* wide = creator->createPlugin("roi", &fc, TensorRTPhase::kBUILD);
    expect(wide != nullptr && std::string(caps(wide).build->getMetadataString()).find("out=14x5") != std::string::npos,
        "accepts INT64 / FLOAT64 fields (Python users)");
    delete wide;
}

void multiLevel(IPluginCreatorV3One* creator)
{
    std::printf("-- SegrtMultiLevelRoiAlign\n");
    int32_t oh = 14, ow = 14, ratio = 2, aligned = 0, level = 4;
    float scales[4] = {0.25F, 0.125F, 0.0625F, 0.03125F};
    float canonical = 224.F;
    std::vector<PluginField> f = {{"output_height", &oh, PluginFieldType::kINT32, 1},
        {"output_width", &ow, PluginFieldType::kINT32, 1}, {"sampling_ratio", &ratio, PluginFieldType::kINT32, 1},
        {"spatial_scales", scales, PluginFieldType::kFLOAT32, 4}, {"aligned", &aligned, PluginFieldType::kINT32, 1},
        {"canonical_scale", &canonical, PluginFieldType::kFLOAT32, 1},
        {"canonical_level", &level, PluginFieldType::kINT32, 1}};
    PluginFieldCollection fc{static_cast<int32_t>(f.size()), f.data()};
    IPluginV3* p = creator->createPlugin("pool", &fc, TensorRTPhase::kBUILD);
    expect(p != nullptr, "createPlugin with 4 levels");
    if (p == nullptr)
    {
        return;
    }
    Caps c = caps(p);
    expect(!std::strcmp(c.core->getPluginName(), "SegrtMultiLevelRoiAlign")
            && !std::strcmp(c.core->getPluginNamespace(), "segrt"),
        "name/namespace = SegrtMultiLevelRoiAlign/segrt");
    DataType in[6] = {DataType::kFLOAT, DataType::kINT32, DataType::kHALF, DataType::kHALF, DataType::kHALF,
        DataType::kHALF};
    DataType out = DataType::kFLOAT;
    expect(c.build->getOutputDataTypes(&out, 1, in, 6) == 0 && out == DataType::kHALF, "output type follows P2");
    expect(c.build->getOutputDataTypes(&out, 1, in, 5) != 0, "getOutputDataTypes rejects 3 levels for 4 scales");

    DynamicPluginTensorDesc io[7] = {dyn(dims({-1, 4}), DataType::kFLOAT), dyn(dims({-1}), DataType::kINT32),
        dyn(dims({1, 256, 200, 336}), DataType::kHALF), dyn(dims({1, 256, 100, 168}), DataType::kHALF),
        dyn(dims({1, 256, 50, 84}), DataType::kHALF), dyn(dims({1, 256, 25, 42}), DataType::kHALF),
        dyn(dims({-1, 256, 14, 14}), DataType::kHALF)};
    bool all = true;
    for (int32_t pos = 0; pos < 7; ++pos)
    {
        all = all && c.build->supportsFormatCombination(pos, io, 6, 1);
    }
    expect(all, "supports float rois, int32 indices, half levels and output");
    io[4].desc.type = DataType::kFLOAT;
    expect(!c.build->supportsFormatCombination(4, io, 6, 1), "rejects mixed level types");
    io[4].desc.type = DataType::kHALF;

    {
        FakeExprBuilder eb;
        DimsExprs shapes[6] = {eb.shape({-1, 4}), eb.shape({-1}), eb.shape({1, 256, -1, -1}),
            eb.shape({1, 256, -1, -1}), eb.shape({1, 256, -1, -1}), eb.shape({1, 256, -1, -1})};
        DimsExprs outShape{};
        bool ok = c.build->getOutputShapes(shapes, 6, nullptr, 0, &outShape, 1, eb) == 0;
        expect(ok && outShape.nbDims == 4 && outShape.d[0] == shapes[0].d[0] && outShape.d[1] == shapes[2].d[1]
                && outShape.d[2]->getConstantValue() == 14 && outShape.d[3]->getConstantValue() == 14,
            "getOutputShapes: [K from rois, C from P2, 14, 14]");
        shapes[5] = eb.shape({1, 255, -1, -1});
        fake_nvinfer_clear_log();
        expect(c.build->getOutputShapes(shapes, 6, nullptr, 0, &outShape, 1, eb) != 0
                && logged("channel counts differ across levels"),
            "getOutputShapes rejects constant channel counts that differ");
    }

    expect(c.build->configurePlugin(io, 6, io + 6, 1) == 0, "configurePlugin accepts P2..P5");
    io[4].desc.dims = dims({1, 128, 50, 84});
    fake_nvinfer_clear_log();
    expect(c.build->configurePlugin(io, 6, io + 6, 1) != 0 && logged("channel counts must agree"),
        "configurePlugin rejects a level with other channels");
    expect(c.build->configurePlugin(io, 5, io + 6, 1) != 0, "configurePlugin rejects a missing level");

    PluginTensorDesc rt[6] = {concrete(dims({0, 4}), DataType::kFLOAT), concrete(dims({0}), DataType::kINT32),
        concrete(dims({1, 256, 200, 336}), DataType::kFLOAT), concrete(dims({1, 256, 100, 168}), DataType::kFLOAT),
        concrete(dims({1, 256, 50, 84}), DataType::kFLOAT), concrete(dims({1, 256, 25, 42}), DataType::kFLOAT)};
    PluginTensorDesc rtOut = concrete(dims({0, 256, 14, 14}), DataType::kFLOAT);
    expect(c.runtime->onShapeChange(rt, 6, &rtOut, 1) == 0, "onShapeChange accepts K = 0");
    void const* inputs[6] = {};
    void* outputs[1] = {nullptr};
    expect(c.runtime->enqueue(rt, &rtOut, inputs, outputs, nullptr, nullptr) == 0, "enqueue returns 0 at once for K = 0");

    std::string const meta = c.build->getMetadataString();
    PluginFieldCollection const* ser = c.runtime->getFieldsToSerialize();
    IPluginV3* back = ser ? creator->createPlugin("pool", ser, TensorRTPhase::kRUNTIME) : nullptr;
    expect(back != nullptr && meta == caps(back).build->getMetadataString(), "serialization round trip: " + meta);
    delete back;
    delete p;

    float gap[2] = {0.25F, 0.0625F};
    f[3] = PluginField{"spatial_scales", gap, PluginFieldType::kFLOAT32, 2};
    fake_nvinfer_clear_log();
    expect(creator->createPlugin("pool", &fc, TensorRTPhase::kBUILD) == nullptr && logged("consecutive"),
        "rejects non-consecutive spatial_scales");
    f.erase(f.begin() + 3);
    fc = PluginFieldCollection{static_cast<int32_t>(f.size()), f.data()};
    fake_nvinfer_clear_log();
    expect(creator->createPlugin("pool", &fc, TensorRTPhase::kBUILD) == nullptr && logged("spatial_scales is required"),
        "rejects missing spatial_scales");
}

} // namespace

int main(int argc, char** argv)
{
    if (argc < 2)
    {
        std::printf("usage: %s libsegrt_trt_plugins.so [--no-autoregister]\n", argv[0]);
        return 2;
    }
    bool const autoRegister = argc > 2 && std::strcmp(argv[2], "--autoregister") == 0;
    void* lib = dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL);
    expect(lib != nullptr, std::string("dlopen ") + (lib ? argv[1] : dlerror()));
    if (lib == nullptr)
    {
        return 1;
    }
    using GetCreators = IPluginCreatorInterface* const* (*) (int32_t&);
    auto getCreators = reinterpret_cast<GetCreators>(dlsym(lib, "getCreators"));
    auto registerAll = reinterpret_cast<int32_t (*)()>(dlsym(lib, "segrt_trt_plugins_register"));
    expect(getCreators && dlsym(lib, "setLoggerFinder") && registerAll,
        "exports getCreators, setLoggerFinder, segrt_trt_plugins_register");
    if (!getCreators || !registerAll)
    {
        return 1;
    }
    IPluginRegistry* registry = getPluginRegistry();
    int32_t registered = 0;
    registry->getAllCreators(&registered);
    int32_t offered = -1;
    getCreators(offered);
    if (autoRegister)
    {   // the opt-in static path: registered on dlopen, nothing left for loadLibrary, which then fails
        expect(registered == 2, "SEGRT_TRT_PLUGIN_AUTOREGISTER=1: dlopen registered 2 creators");
        expect(offered == 0, "getCreators() offers none of the already registered creators (no duplicates)");
        expect(registry->loadLibrary(argv[1]) == nullptr, "loadLibrary fails: the plugins are already registered");
        expect(registerAll() == 2, "segrt_trt_plugins_register() is idempotent and reports 2");
        std::printf("%s: %d failure(s)\n", gFailures ? "FAILED" : "PASSED", gFailures);
        return gFailures ? 1 : 0;
    }
    expect(registered == 0, "dlopen registers nothing (registration is TensorRT's, through loadLibrary)");
    expect(offered == 2, "getCreators() offers both creators");
    void* handle = registry->loadLibrary(argv[1]);
    expect(handle != nullptr, std::string("IPluginRegistry::loadLibrary succeeds: ") + fake_nvinfer_logged());
    registry->getAllCreators(&registered);
    expect(registered == 2, "loadLibrary registered the 2 creators getCreators() offered");
    auto* roi = static_cast<IPluginCreatorV3One*>(registry->getCreator("SegrtRoiAlign", "1", "segrt"));
    auto* ml = static_cast<IPluginCreatorV3One*>(registry->getCreator("SegrtMultiLevelRoiAlign", "1", "segrt"));
    expect(roi != nullptr && ml != nullptr, "both creators found by (name, \"1\", \"segrt\")");
    expect(registry->getCreator("SegrtRoiAlign", "1", "") == nullptr, "not registered in the empty namespace");
    if (roi)
    {
        roiAlign(roi);
    }
    if (ml)
    {
        multiLevel(ml);
    }
    std::printf("%s: %d failure(s)\n", gFailures ? "FAILED" : "PASSED", gFailures);
    return gFailures ? 1 : 0;
}
