// One table per plugin describes its attributes (name, kind, member); parsing the
// PluginFieldCollection TensorRT or the ONNX parser passes, serializing into an
// engine, the creator's field list and the timing-cache description all read that
// table, so a new attribute is one row. Nothing here throws except where noted.
#pragma once

#include "plugin_utils.h"

#include <NvInferRuntime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace segrt
{
namespace trt
{

enum class AttrKind : int32_t
{
    kInt,    //!< int32 scalar (read from any integer width)
    kFloat,  //!< float32 scalar (read from float32 or float64)
    kFloats, //!< float32 array
    kString, //!< chars (the ONNX parser passes them without a terminator)
};

//! One row of an attribute table: the field name and the member of `Attrs` it fills.
template <typename Attrs>
struct AttrField
{
    char const* name;
    AttrKind kind;
    int32_t Attrs::*intMember;
    float Attrs::*floatMember;
    std::vector<float> Attrs::*floatsMember;
    std::string Attrs::*stringMember;
};

template <typename Attrs>
constexpr AttrField<Attrs> attr(char const* name, int32_t Attrs::*m)
{
    return {name, AttrKind::kInt, m, nullptr, nullptr, nullptr};
}
template <typename Attrs>
constexpr AttrField<Attrs> attr(char const* name, float Attrs::*m)
{
    return {name, AttrKind::kFloat, nullptr, m, nullptr, nullptr};
}
template <typename Attrs>
constexpr AttrField<Attrs> attr(char const* name, std::vector<float> Attrs::*m)
{
    return {name, AttrKind::kFloats, nullptr, nullptr, m, nullptr};
}
template <typename Attrs>
constexpr AttrField<Attrs> attr(char const* name, std::string Attrs::*m)
{
    return {name, AttrKind::kString, nullptr, nullptr, nullptr, m};
}

//! The whole table (what `Attrs::schema()` returns), iterable with range-for.
template <typename Attrs>
struct AttrSchema
{
    AttrField<Attrs> const* first;
    size_t count;
    AttrField<Attrs> const* begin() const noexcept
    {
        return first;
    }
    AttrField<Attrs> const* end() const noexcept
    {
        return first + count;
    }
};

template <typename Attrs, size_t N>
constexpr AttrSchema<Attrs> schemaOf(AttrField<Attrs> const (&fields)[N])
{
    return {fields, N};
}

//! Fills `attrs` from `fc` (unknown fields are ignored, missing ones keep their defaults);
//! false + `error` on a value of the wrong type.
template <typename Attrs>
bool parseAttrs(nvinfer1::PluginFieldCollection const* fc, Attrs& attrs, std::string& error) noexcept
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
        nvinfer1::PluginField const& f = fc->fields[i];
        for (AttrField<Attrs> const& a : Attrs::schema())
        {
            if (f.name == nullptr || std::strcmp(f.name, a.name) != 0)
            {
                continue;
            }
            bool const ok = a.kind == AttrKind::kInt ? readInt(f, attrs.*a.intMember, error)
                : a.kind == AttrKind::kFloat         ? readFloat(f, attrs.*a.floatMember, error)
                : a.kind == AttrKind::kFloats        ? readFloats(f, attrs.*a.floatsMember, error)
                                                     : readString(f, attrs.*a.stringMember, error);
            if (!ok)
            {
                return false;
            }
        }
    }
    return true;
}

//! The fields that serialize `attrs` into an engine; they point into `attrs`. May throw std::bad_alloc.
template <typename Attrs>
void serializeAttrs(Attrs& attrs, std::vector<nvinfer1::PluginField>& out)
{
    using nvinfer1::PluginFieldType;
    out.clear();
    for (AttrField<Attrs> const& a : Attrs::schema())
    {
        switch (a.kind)
        {
        case AttrKind::kInt: out.emplace_back(a.name, &(attrs.*a.intMember), PluginFieldType::kINT32, 1); break;
        case AttrKind::kFloat: out.emplace_back(a.name, &(attrs.*a.floatMember), PluginFieldType::kFLOAT32, 1); break;
        case AttrKind::kFloats:
            out.emplace_back(a.name, (attrs.*a.floatsMember).data(), PluginFieldType::kFLOAT32,
                static_cast<int32_t>((attrs.*a.floatsMember).size()));
            break;
        case AttrKind::kString:
            out.emplace_back(a.name, (attrs.*a.stringMember).c_str(), PluginFieldType::kCHAR,
                static_cast<int32_t>((attrs.*a.stringMember).size()));
            break;
        }
    }
}

//! The creator's field list: names and types, no data; arrays and strings have length 0 (any).
template <typename Attrs>
std::vector<nvinfer1::PluginField> declaredFields()
{
    using nvinfer1::PluginFieldType;
    std::vector<nvinfer1::PluginField> out;
    for (AttrField<Attrs> const& a : Attrs::schema())
    {
        bool const scalar = a.kind == AttrKind::kInt || a.kind == AttrKind::kFloat;
        PluginFieldType const type = a.kind == AttrKind::kInt ? PluginFieldType::kINT32
            : a.kind == AttrKind::kString                     ? PluginFieldType::kCHAR
                                                              : PluginFieldType::kFLOAT32;
        out.emplace_back(a.name, nullptr, type, scalar ? 1 : 0);
    }
    return out;
}

//! The output size and sampling ratio every RoIAlign plugin has (required where they have no default).
//! May throw std::bad_alloc, like the `validate` functions that call it (createPlugin catches).
inline bool checkPooling(int32_t outputHeight, int32_t outputWidth, int32_t samplingRatio, std::string& error)
{
    if (outputHeight < 1 || outputWidth < 1)
    {
        error = "output_height and output_width must be given and >= 1, got " + std::to_string(outputHeight) + "x"
            + std::to_string(outputWidth);
        return false;
    }
    if (samplingRatio < 0)
    {
        error = "sampling_ratio must be given and >= 0 (0 = adaptive), got " + std::to_string(samplingRatio);
        return false;
    }
    return true;
}

//! A scale that must be finite and > 0.
inline bool checkPositive(float value, std::string const& name, std::string& error)
{
    if (std::isfinite(value) && value > 0.F)
    {
        return true;
    }
    error = name + " must be finite and > 0, got " + std::to_string(value);
    return false;
}

//! "out=HxW name=value ..." for the timing cache and the layer's metadata; floats with all
//! their digits, so two layers with different attributes never share a timing-cache entry.
template <typename Attrs>
std::string describeAttrs(Attrs const& attrs)
{
    auto number = [](float v) {
        char text[32];
        std::snprintf(text, sizeof(text), "%.9g", static_cast<double>(v));
        return std::string(text);
    };
    std::string s = "out=" + std::to_string(attrs.outputHeight) + "x" + std::to_string(attrs.outputWidth);
    for (AttrField<Attrs> const& a : Attrs::schema())
    {
        if (a.intMember == &Attrs::outputHeight || a.intMember == &Attrs::outputWidth)
        {
            continue; // already in "out="
        }
        s += std::string(" ") + a.name + "=";
        switch (a.kind)
        {
        case AttrKind::kInt: s += std::to_string(attrs.*a.intMember); break;
        case AttrKind::kFloat: s += number(attrs.*a.floatMember); break;
        case AttrKind::kFloats:
            for (size_t i = 0; i < (attrs.*a.floatsMember).size(); ++i)
            {
                s += (i ? "," : "") + number((attrs.*a.floatsMember)[i]);
            }
            break;
        case AttrKind::kString: s += attrs.*a.stringMember; break;
        }
    }
    return s;
}

} // namespace trt
} // namespace segrt
