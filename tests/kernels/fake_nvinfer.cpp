// A stand-in for libnvinfer.so with just what libsegrt_trt_plugins.so calls (getPluginRegistry,
// getLogger), so the plugin library can be linked, loaded and driven through TensorRT's public
// plugin interfaces on a machine without TensorRT. The registry records registrations by
// (name, version, namespace) and refuses duplicates as TensorRT's does; the logger keeps messages.
// loadLibrary does what NvInferRuntimeCommon.h specifies: dlopen the library, hand it a logger
// finder (setLoggerFinder), register what getCreators() returns, and "fail and return nullptr if
// any of the plugins are already registered" (then nothing is registered and the library is closed).
// Built by tests/kernels/test_trt_plugin.py; never shipped.
#include <NvInferRuntime.h>

#include <dlfcn.h>

#include <cstring>
#include <string>
#include <vector>

using namespace nvinfer1;

namespace
{

struct Entry
{
    std::string name, version, ns;
    IPluginCreatorInterface* creator;
};

class FakeRegistry final : public IPluginRegistry
{
public:
    std::vector<Entry> entries;
    std::vector<IPluginCreatorInterface*> flat;

    void setErrorRecorder(IErrorRecorder* const) noexcept override {}
    IErrorRecorder* getErrorRecorder() const noexcept override
    {
        return nullptr;
    }
    bool isParentSearchEnabled() const override
    {
        return false;
    }
    void setParentSearchEnabled(bool const) override {}
    PluginLibraryHandle loadLibrary(AsciiChar const* path) noexcept override;
    void deregisterLibrary(PluginLibraryHandle handle) noexcept override
    {
        if (handle != nullptr)
        {
            dlclose(handle);
        }
    }
    bool registerCreator(IPluginCreatorInterface& creator, AsciiChar const* const ns) noexcept override
    {
        auto& c = static_cast<IPluginCreatorV3One&>(creator);
        if (std::strcmp(creator.getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") != 0
            || getCreator(c.getPluginName(), c.getPluginVersion(), ns) != nullptr)
        {
            return false;
        }
        entries.push_back({c.getPluginName(), c.getPluginVersion(), ns ? ns : "", &creator});
        return true;
    }
    IPluginCreatorInterface* const* getAllCreators(int32_t* const n) const noexcept override
    {
        auto* self = const_cast<FakeRegistry*>(this);
        self->flat.clear();
        for (auto const& e : entries)
        {
            self->flat.push_back(e.creator);
        }
        *n = static_cast<int32_t>(flat.size());
        return flat.data();
    }
    IPluginCreatorInterface* getCreator(
        AsciiChar const* const name, AsciiChar const* const version, AsciiChar const* const ns) noexcept override
    {
        for (auto const& e : entries)
        {
            if (e.name == name && e.version == version && e.ns == (ns ? ns : ""))
            {
                return e.creator;
            }
        }
        return nullptr;
    }
    bool deregisterCreator(IPluginCreatorInterface const&) noexcept override
    {
        return false;
    }
    IPluginResource* acquirePluginResource(AsciiChar const*, IPluginResource*) noexcept override
    {
        return nullptr;
    }
    int32_t releasePluginResource(AsciiChar const*) noexcept override
    {
        return 0;
    }
    IPluginCreatorInterface* const* getAllCreatorsRecursive(int32_t* const n) noexcept override
    {
        return getAllCreators(n);
    }
};

class FakeLogger final : public ILogger
{
public:
    std::vector<std::string> errors;
    void log(Severity severity, AsciiChar const* msg) noexcept override
    {
        if (severity <= Severity::kWARNING)
        {
            errors.emplace_back(msg);
        }
    }
};

FakeRegistry gRegistry;
FakeLogger gLogger;

class FakeLoggerFinder final : public ILoggerFinder
{
public:
    ILogger* findLogger() noexcept override
    {
        return &gLogger;
    }
};

FakeLoggerFinder gLoggerFinder;

IPluginRegistry::PluginLibraryHandle FakeRegistry::loadLibrary(AsciiChar const* path) noexcept
{
    void* lib = dlopen(path, RTLD_LAZY | RTLD_LOCAL);
    if (lib == nullptr)
    {
        gLogger.log(ILogger::Severity::kERROR, dlerror());
        return nullptr;
    }
    using SetLoggerFinder = void (*)(ILoggerFinder*);
    using GetCreators = IPluginCreatorInterface* const* (*) (int32_t&);
    auto setFinder = reinterpret_cast<SetLoggerFinder>(dlsym(lib, "setLoggerFinder"));
    auto getCreators = reinterpret_cast<GetCreators>(dlsym(lib, "getCreators"));
    if (setFinder == nullptr || getCreators == nullptr)
    {
        gLogger.log(ILogger::Severity::kERROR, "loadLibrary: the library lacks setLoggerFinder or getCreators");
        dlclose(lib);
        return nullptr;
    }
    setFinder(&gLoggerFinder);
    int32_t n = 0;
    IPluginCreatorInterface* const* creators = getCreators(n);
    bool anyRegistered = n <= 0 || creators == nullptr;
    for (int32_t i = 0; i < n && creators != nullptr; ++i)
    {
        auto* c = static_cast<IPluginCreatorV3One*>(creators[i]);
        anyRegistered = anyRegistered || getCreator(c->getPluginName(), c->getPluginVersion(), c->getPluginNamespace());
    }
    if (anyRegistered)
    {
        gLogger.log(ILogger::Severity::kERROR, "loadLibrary: a plugin of the library is already registered (or it offers none)");
        dlclose(lib);
        return nullptr;
    }
    for (int32_t i = 0; i < n; ++i)
    {
        auto* c = static_cast<IPluginCreatorV3One*>(creators[i]);
        registerCreator(*creators[i], c->getPluginNamespace());
    }
    return lib;
}

} // namespace

extern "C" TENSORRTAPI IPluginRegistry* getPluginRegistry() noexcept
{
    return &gRegistry;
}

extern "C" TENSORRTAPI ILogger* getLogger() noexcept
{
    return &gLogger;
}

//! For the harness: errors and warnings logged so far, joined by '\n'.
extern "C" TENSORRTAPI char const* fake_nvinfer_logged() noexcept
{
    static std::string joined;
    joined.clear();
    for (auto const& e : gLogger.errors)
    {
        joined += e + "\n";
    }
    return joined.c_str();
}

extern "C" TENSORRTAPI void fake_nvinfer_clear_log() noexcept
{
    gLogger.errors.clear();
}
