#include "plugin_utils.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <mutex>

namespace segrt
{
namespace trt
{
namespace
{
std::mutex gFinderMutex;
nvinfer1::ILoggerFinder* gFinder = nullptr;

nvinfer1::ILogger* findLogger() noexcept
{
    try
    {
        std::lock_guard<std::mutex> lock(gFinderMutex);
        if (gFinder != nullptr)
        {
            return gFinder->findLogger();
        }
    }
    catch (...)
    {
    }
    // Not loaded through IPluginRegistry::loadLibrary: TensorRT's global logger, if any.
    return ::getLogger();
}
} // namespace

void setLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept
{
    try
    {
        std::lock_guard<std::mutex> lock(gFinderMutex);
        gFinder = finder;
    }
    catch (...)
    {
    }
}

void log(nvinfer1::ILogger::Severity severity, char const* where, std::string const& message) noexcept
{
    try
    {
        std::string const text = std::string("[segrt] ") + where + ": " + message;
        nvinfer1::ILogger* logger = findLogger();
        if (logger != nullptr)
        {
            logger->log(severity, text.c_str());
        }
        else if (severity <= nvinfer1::ILogger::Severity::kWARNING)
        {
            std::fprintf(stderr, "%s\n", text.c_str());
        }
        if (severity <= nvinfer1::ILogger::Severity::kERROR)
        {
            nvinfer1::IPluginRegistry* registry = ::getPluginRegistry();
            nvinfer1::IErrorRecorder* recorder = registry != nullptr ? registry->getErrorRecorder() : nullptr;
            if (recorder != nullptr)
            {
                recorder->reportError(nvinfer1::ErrorCode::kINVALID_ARGUMENT, text.c_str());
            }
        }
    }
    catch (...)
    {
    }
}

void logError(char const* where, std::string const& message) noexcept
{
    log(nvinfer1::ILogger::Severity::kERROR, where, message);
}

bool readInt(nvinfer1::PluginField const& f, int32_t& out, std::string& error) noexcept
{
    if (f.data == nullptr || f.length < 1)
    {
        error = std::string("attribute '") + f.name + "' has no value";
        return false;
    }
    int64_t v = 0;
    switch (f.type)
    {
    case nvinfer1::PluginFieldType::kINT8: v = *static_cast<int8_t const*>(f.data); break;
    case nvinfer1::PluginFieldType::kINT16: v = *static_cast<int16_t const*>(f.data); break;
    case nvinfer1::PluginFieldType::kINT32: v = *static_cast<int32_t const*>(f.data); break;
    case nvinfer1::PluginFieldType::kINT64: v = *static_cast<int64_t const*>(f.data); break;
    default:
        error = std::string("attribute '") + f.name + "' must be an integer";
        return false;
    }
    if (v < INT32_MIN || v > INT32_MAX)
    {
        error = std::string("attribute '") + f.name + "' does not fit in int32";
        return false;
    }
    out = static_cast<int32_t>(v);
    return true;
}

bool readFloats(nvinfer1::PluginField const& f, std::vector<float>& out, std::string& error) noexcept
{
    try
    {
        if (f.data == nullptr || f.length < 1)
        {
            error = std::string("attribute '") + f.name + "' has no value";
            return false;
        }
        out.resize(static_cast<size_t>(f.length));
        for (int32_t i = 0; i < f.length; ++i)
        {
            if (f.type == nvinfer1::PluginFieldType::kFLOAT32)
            {
                out[i] = static_cast<float const*>(f.data)[i];
            }
            else if (f.type == nvinfer1::PluginFieldType::kFLOAT64)
            {
                out[i] = static_cast<float>(static_cast<double const*>(f.data)[i]);
            }
            else
            {
                error = std::string("attribute '") + f.name + "' must be float32 or float64";
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

bool readFloat(nvinfer1::PluginField const& f, float& out, std::string& error) noexcept
{
    std::vector<float> v;
    if (!readFloats(f, v, error))
    {
        return false;
    }
    out = v[0];
    return true;
}

bool readString(nvinfer1::PluginField const& f, std::string& out, std::string& error) noexcept
{
    try
    {
        if (f.type != nvinfer1::PluginFieldType::kCHAR || f.data == nullptr || f.length < 0)
        {
            error = std::string("attribute '") + f.name + "' must be a string";
            return false;
        }
        // The ONNX parser passes the bytes without a terminator; others include one.
        char const* s = static_cast<char const*>(f.data);
        out.assign(s, strnlen(s, static_cast<size_t>(f.length)));
        return true;
    }
    catch (...)
    {
        error = "out of memory";
        return false;
    }
}

std::string dimsToString(nvinfer1::Dims const& d)
{
    std::string s;
    for (int32_t i = 0; i < d.nbDims; ++i)
    {
        s += (i ? "x" : "") + (d.d[i] < 0 ? std::string("?") : std::to_string(d.d[i]));
    }
    return s.empty() ? std::string("scalar") : s;
}

} // namespace trt
} // namespace segrt
