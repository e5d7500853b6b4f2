// Helpers shared by the segrt TensorRT plugins: names, logging, error
// reporting and PluginField parsing. Nothing here throws.
#pragma once

#include <NvInferRuntime.h>

#include <cstdint>
#include <string>
#include <vector>

namespace segrt
{
namespace trt
{

//! Plugin namespace of every segrt plugin (also the ONNX node's `plugin_namespace`).
constexpr char const* kPluginNamespace = "segrt";
//! Version of both plugins (also the ONNX node's `plugin_version`).
constexpr char const* kPluginVersion = "1";
constexpr char const* kRoiAlignName = "SegrtRoiAlign";
constexpr char const* kMultiLevelRoiAlignName = "SegrtMultiLevelRoiAlign";

//! Remembers the ILoggerFinder TensorRT hands to setLoggerFinder().
void setLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept;

//! Logs `message` prefixed by `where` through TensorRT's logger (stderr when there is none)
//! and, for errors, also reports it to the plugin registry's error recorder when one is set.
void log(nvinfer1::ILogger::Severity severity, char const* where, std::string const& message) noexcept;
void logError(char const* where, std::string const& message) noexcept;

//! Reads plugin attributes whatever integer/float width the producer used
//! (the ONNX parser gives INT32/FLOAT32/CHAR; Python users often give INT64/FLOAT64).
//! Each returns false and fills `error` on a type it cannot read.
bool readInt(nvinfer1::PluginField const& f, int32_t& out, std::string& error) noexcept;
bool readFloat(nvinfer1::PluginField const& f, float& out, std::string& error) noexcept;
bool readFloats(nvinfer1::PluginField const& f, std::vector<float>& out, std::string& error) noexcept;
bool readString(nvinfer1::PluginField const& f, std::string& out, std::string& error) noexcept;

//! "NxCxHxW" for messages; "?" for unknown (-1) dimensions.
std::string dimsToString(nvinfer1::Dims const& d);

} // namespace trt
} // namespace segrt
