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

//! The attributes every RoIAlign plugin has: the first rows of each plugin's table. A plugin's
//! attribute struct derives from it, sets its defaults, and adds a table of its own.
struct PoolingAttrs
{
    int32_t outputHeight;
    int32_t outputWidth;
    int32_t samplingRatio; //!< samples per bin and axis; 0 = adaptive

    static AttrSchema<PoolingAttrs> schema() noexcept
    {
        static AttrField<PoolingAttrs> const fields[] = {
            attr("output_height", &PoolingAttrs::outputHeight),
            attr("output_width", &PoolingAttrs::outputWidth),
            attr("sampling_ratio", &PoolingAttrs::samplingRatio),
        };
        return schemaOf(fields);
    }

    //! False + `error` when unusable (required where the plugin has no default). May throw std::bad_alloc,
    //! like every `validate` (createPlugin catches).
    bool validate(std::string& error) const
    {
        if (outputHeight < 1 || outputWidth < 1)
        {
            error = "output_height and output_width must be given and >= 1, got " + std::to_string(outputHeight)
                + "x" + std::to_string(outputWidth);
            return false;
        }
        if (samplingRatio < 0)
        {
            error = "sampling_ratio must be given and >= 0 (0 = adaptive), got " + std::to_string(samplingRatio);
            return false;
        }
        return true;
    }
};

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

namespace detail
{
//! Reads `f` into the member of `s` that `row` names; false + `error` on a value of the wrong type.
template <typename S>
bool readRow(nvinfer1::PluginField const& f, AttrField<S> const& row, S& s, std::string& error) noexcept
{
    switch (row.kind)
    {
    case AttrKind::kInt: return readInt(f, s.*row.intMember, error);
    case AttrKind::kFloat: return readFloat(f, s.*row.floatMember, error);
    case AttrKind::kFloats: return readFloats(f, s.*row.floatsMember, error);
    case AttrKind::kString: return readString(f, s.*row.stringMember, error);
    }
    return false;
}

//! Reads `f` if it is one of the rows of S's table (other names are not S's: ignored).
template <typename S>
bool readField(nvinfer1::PluginField const& f, S& s, std::string& error) noexcept
{
    for (AttrField<S> const& row : S::schema())
    {
        if (std::strcmp(f.name, row.name) == 0 && !readRow(f, row, s, error))
        {
            return false;
        }
    }
    return true;
}

//! Appends a field pointing at each member of S's table. May throw std::bad_alloc.
template <typename S>
void appendFields(S& s, std::vector<nvinfer1::PluginField>& out)
{
    using nvinfer1::PluginFieldType;
    for (AttrField<S> const& row : S::schema())
    {
        switch (row.kind)
        {
        case AttrKind::kInt: out.emplace_back(row.name, &(s.*row.intMember), PluginFieldType::kINT32, 1); break;
        case AttrKind::kFloat: out.emplace_back(row.name, &(s.*row.floatMember), PluginFieldType::kFLOAT32, 1); break;
        case AttrKind::kFloats:
            out.emplace_back(row.name, (s.*row.floatsMember).data(), PluginFieldType::kFLOAT32,
                static_cast<int32_t>((s.*row.floatsMember).size()));
            break;
        case AttrKind::kString:
            out.emplace_back(row.name, (s.*row.stringMember).c_str(), PluginFieldType::kCHAR,
                static_cast<int32_t>((s.*row.stringMember).size()));
            break;
        }
    }
}

//! Appends S's rows as creator fields: names and types, no data; arrays and strings have length 0 (any).
template <typename S>
void declareFields(std::vector<nvinfer1::PluginField>& out)
{
    using nvinfer1::PluginFieldType;
    for (AttrField<S> const& row : S::schema())
    {
        bool const scalar = row.kind == AttrKind::kInt || row.kind == AttrKind::kFloat;
        PluginFieldType const type = row.kind == AttrKind::kInt ? PluginFieldType::kINT32
            : row.kind == AttrKind::kString                     ? PluginFieldType::kCHAR
                                                                : PluginFieldType::kFLOAT32;
        out.emplace_back(row.name, nullptr, type, scalar ? 1 : 0);
    }
}

//! " name=value" for each row of S's table; floats with all their digits, so two layers with different
//! attributes never share a timing-cache entry.
template <typename S>
std::string describeRows(S const& s)
{
    auto number = [](float v) {
        char text[32];
        std::snprintf(text, sizeof(text), "%.9g", static_cast<double>(v));
        return std::string(text);
    };
    std::string out;
    for (AttrField<S> const& row : S::schema())
    {
        out += std::string(" ") + row.name + "=";
        switch (row.kind)
        {
        case AttrKind::kInt: out += std::to_string(s.*row.intMember); break;
        case AttrKind::kFloat: out += number(s.*row.floatMember); break;
        case AttrKind::kFloats:
            for (size_t i = 0; i < (s.*row.floatsMember).size(); ++i)
            {
                out += (i ? "," : "") + number((s.*row.floatsMember)[i]);
            }
            break;
        case AttrKind::kString: out += s.*row.stringMember; break;
        }
    }
    return out;
}
} // namespace detail

// A plugin's attributes are PoolingAttrs' rows followed by its own (`Attrs::schema()`).

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
        if (f.name != nullptr
            && (!detail::readField<PoolingAttrs>(f, attrs, error) || !detail::readField<Attrs>(f, attrs, error)))
        {
            return false;
        }
    }
    return true;
}

//! The fields that serialize `attrs` into an engine; they point into `attrs`. May throw std::bad_alloc.
template <typename Attrs>
void serializeAttrs(Attrs& attrs, std::vector<nvinfer1::PluginField>& out)
{
    out.clear();
    detail::appendFields<PoolingAttrs>(attrs, out);
    detail::appendFields<Attrs>(attrs, out);
}

//! The creator's field list. May throw std::bad_alloc.
template <typename Attrs>
std::vector<nvinfer1::PluginField> declaredFields()
{
    std::vector<nvinfer1::PluginField> out;
    detail::declareFields<PoolingAttrs>(out);
    detail::declareFields<Attrs>(out);
    return out;
}

//! "out=HxW sampling_ratio=N name=value ..." for the timing cache and the layer's metadata.
template <typename Attrs>
std::string describeAttrs(Attrs const& attrs)
{
    return "out=" + std::to_string(attrs.outputHeight) + "x" + std::to_string(attrs.outputWidth)
        + " sampling_ratio=" + std::to_string(attrs.samplingRatio) + detail::describeRows<Attrs>(attrs);
}

} // namespace trt
} // namespace segrt
