// Entry points of libsegrt_trt_plugins.so.
//
// Registration is dynamic: IPluginRegistry::loadLibrary (what segrt.ops.plugins.load_plugins
// calls, `trtexec --dynamicPlugins`, plugin libraries serialized into version-compatible
// engines) calls setLoggerFinder() and getCreators() and registers what getCreators() returns,
// so TensorRT owns the registrations and can deregister them with the library.
// NvInferRuntimeCommon.h: loadLibrary "will fail and return nullptr if any of the plugins are
// already registered", so loading the library registers nothing by itself.
// Static registration is opt-in, for programs that only dlopen the library and never call
// loadLibrary (`trtexec --staticPlugins`): SEGRT_TRT_PLUGIN_AUTOREGISTER=1 at load time, or a
// call to segrt_trt_plugins_register(). After it, getCreators() offers nothing (no duplicates),
// and loadLibrary of this library fails as TensorRT specifies.
// The creators are created once and never destroyed: TensorRT's registry may
// outlive this library's static destructors at process exit.
#include "plugin_utils.h"
#include "roi_align_plugin.h"

#include <NvInferRuntime.h>

#include <cstdlib>
#include <mutex>

using namespace nvinfer1;

// TENSORRTAPI marks symbols visible only when building TensorRT itself; this library is built with
// -fvisibility=hidden, so its entry points say so explicitly.
#define SEGRT_PLUGIN_API __attribute__((visibility("default")))

namespace
{

constexpr int32_t kNbCreators = 2;

IPluginCreatorInterface* const* allCreators() noexcept
{
    static IPluginCreatorInterface* creators[kNbCreators] = {nullptr, nullptr};
    static std::once_flag once;
    try
    {
        std::call_once(once, [] {
            creators[0] = new segrt::trt::RoiAlignPluginCreator();
            creators[1] = new segrt::trt::MultiLevelRoiAlignPluginCreator();
        });
    }
    catch (...)
    {
        return nullptr;
    }
    return creators[0] != nullptr && creators[1] != nullptr ? creators : nullptr;
}

std::mutex gMutex;
bool gRegistered[kNbCreators] = {false, false}; // registered by this library's static path
IPluginCreatorInterface* gPending[kNbCreators] = {nullptr, nullptr};

//! Registers every creator not yet in the registry; returns how many of ours are in it afterwards.
int32_t registerAll() noexcept
{
    try
    {
        IPluginCreatorInterface* const* creators = allCreators();
        IPluginRegistry* registry = getPluginRegistry();
        if (creators == nullptr || registry == nullptr)
        {
            return 0;
        }
        std::lock_guard<std::mutex> lock(gMutex);
        int32_t present = 0;
        for (int32_t i = 0; i < kNbCreators; ++i)
        {
            auto* creator = static_cast<IPluginCreatorV3One*>(creators[i]);
            if (!gRegistered[i]
                && registry->getCreator(creator->getPluginName(), creator->getPluginVersion(),
                       segrt::trt::kPluginNamespace)
                    == nullptr)
            {
                gRegistered[i] = registry->registerCreator(*creators[i], segrt::trt::kPluginNamespace);
                if (!gRegistered[i])
                {
                    segrt::trt::logError(creator->getPluginName(), "could not register the plugin creator");
                }
            }
            present += registry->getCreator(creator->getPluginName(), creator->getPluginVersion(),
                           segrt::trt::kPluginNamespace)
                    != nullptr
                ? 1
                : 0;
        }
        return present;
    }
    catch (...)
    {
        return 0;
    }
}

struct AutoRegister
{
    AutoRegister() noexcept
    {
        char const* on = std::getenv("SEGRT_TRT_PLUGIN_AUTOREGISTER"); // opt-in (see the top of this file)
        if (on != nullptr && on[0] != '\0' && on[0] != '0')
        {
            registerAll();
        }
    }
};

AutoRegister const gAutoRegister;

} // namespace

//! Called by IPluginRegistry::loadLibrary before getCreators().
extern "C" SEGRT_PLUGIN_API void setLoggerFinder(ILoggerFinder* finder)
{
    segrt::trt::setLoggerFinder(finder);
}

//! Creators for IPluginRegistry::loadLibrary: those not already registered by the static path.
extern "C" SEGRT_PLUGIN_API IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    nbCreators = 0;
    try
    {
        IPluginCreatorInterface* const* creators = allCreators();
        if (creators == nullptr)
        {
            return nullptr;
        }
        std::lock_guard<std::mutex> lock(gMutex);
        for (int32_t i = 0; i < kNbCreators; ++i)
        {
            if (!gRegistered[i])
            {
                gPending[nbCreators++] = creators[i];
            }
        }
        return gPending;
    }
    catch (...)
    {
        nbCreators = 0;
        return nullptr;
    }
}

//! Opt-in static registration for programs that never call loadLibrary: registers the creators
//! not in the registry yet; returns how many of the 2 are registered.
extern "C" SEGRT_PLUGIN_API int32_t segrt_trt_plugins_register(void)
{
    return registerAll();
}
