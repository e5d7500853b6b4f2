// Entry points of libsegrt_trt_plugins.so.
//
// Two ways in, both supported:
//  1. dlopen / ctypes.CDLL (what sdk.plugins.load_plugins does, and
//     `trtexec --staticPlugins`): a static initializer registers both creators
//     in TensorRT's global plugin registry under namespace "segrt", so an
//     engine can be deserialized right after loading the library.
//  2. IPluginRegistry::loadLibrary (`trtexec --dynamicPlugins`, plugin
//     libraries serialized into version-compatible engines): TensorRT calls
//     setLoggerFinder() and getCreators() and registers what getCreators()
//     returns. getCreators() returns only the creators that path 1 did not
//     already register, so the registry never sees a duplicate. Set
//     SEGRT_TRT_PLUGIN_NO_AUTOREGISTER=1 to skip path 1 entirely.
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
        char const* off = std::getenv("SEGRT_TRT_PLUGIN_NO_AUTOREGISTER");
        if (off == nullptr || off[0] == '\0' || off[0] == '0')
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

//! For ctypes users: registers the creators if they are not in the registry yet
//! (e.g. auto-registration was disabled); returns how many of the 2 are registered.
extern "C" SEGRT_PLUGIN_API int32_t segrt_trt_plugins_register(void)
{
    return registerAll();
}
