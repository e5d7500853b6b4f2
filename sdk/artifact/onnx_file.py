"""Read an ONNX file's header (metadata, inputs, outputs, opsets) without a runtime or the onnx package.

An ``.onnx`` file is one protobuf ``ModelProto``. ``segrt info`` needs only a
few of its fields, so this module walks the protobuf wire format directly and
skips everything else (weights included) without decoding it. Field numbers
are those of ``onnx/onnx.proto``::

    ModelProto      1 ir_version, 2 producer_name, 3 producer_version, 7 graph,
                    8 opset_import, 14 metadata_props
    GraphProto      1 node, 2 name, 5 initializer, 11 input, 12 output
    ValueInfoProto  1 name, 2 type
    TypeProto       1 tensor_type -> (1 elem_type, 2 shape -> 1 dim -> (1 dim_value | 2 dim_param))
    OperatorSetIdProto  1 domain, 2 version
    StringStringEntryProto  1 key, 2 value
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from segrt.errors import ArtifactError

# TensorProto.DataType -> numpy-style name
ELEM_TYPES = {
    1: "float32",
    2: "uint8",
    3: "int8",
    4: "uint16",
    5: "int16",
    6: "int32",
    7: "int64",
    8: "string",
    9: "bool",
    10: "float16",
    11: "float64",
    12: "uint32",
    13: "uint64",
    16: "bfloat16",
}


@dataclass
class TensorHeader:
    """A graph input or output: name, element type, and dims (int, a symbolic name, or None)."""

    name: str
    dtype: str
    shape: list[int | str | None]


@dataclass
class OnnxHeader:
    ir_version: int = 0
    producer: str = ""
    opsets: dict[str, int] = field(default_factory=dict)
    metadata_props: dict[str, str] = field(default_factory=dict)
    inputs: list[TensorHeader] = field(default_factory=list)
    outputs: list[TensorHeader] = field(default_factory=list)
    initializers: int = 0
    nodes: int = 0


class _Corrupt(Exception):
    pass


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise _Corrupt("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview) -> Iterator[tuple[int, int | memoryview]]:
    """(field number, value) of one message: ints for varints, views for length-delimited fields."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, value
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise _Corrupt("field runs past the end of the message")
            yield number, buf[pos : pos + size]
            pos += size
        elif wire in (1, 5):  # fixed64 / fixed32: skipped
            pos += 8 if wire == 1 else 4
        else:
            raise _Corrupt(f"unsupported wire type {wire}")


def _text(value: int | memoryview) -> str:
    return bytes(value).decode("utf-8", "replace") if isinstance(value, memoryview) else ""


def _tensor(value: memoryview) -> TensorHeader:
    name, dtype, shape = "", "?", []
    for number, v in _fields(value):
        if number == 1:
            name = _text(v)
        elif number == 2 and isinstance(v, memoryview):
            for n2, tensor_type in _fields(v):
                if n2 != 1 or not isinstance(tensor_type, memoryview):
                    continue
                for n3, t in _fields(tensor_type):
                    if n3 == 1:
                        dtype = ELEM_TYPES.get(int(t), f"type {t}")
                    elif n3 == 2 and isinstance(t, memoryview):
                        for n4, dim in _fields(t):
                            if n4 != 1 or not isinstance(dim, memoryview):
                                continue
                            d: int | str | None = None
                            for n5, dv in _fields(dim):
                                d = int(dv) if n5 == 1 else _text(dv) if n5 == 2 else d
                            shape.append(d)
    return TensorHeader(name, dtype, shape)


def read_onnx_header(path: str | Path) -> OnnxHeader:
    """The header fields of an ONNX file, read without loading its weights into a runtime."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"model file not found: {path}", "check the path")
    header = OnnxHeader()
    weights: set[str] = set()
    try:
        for number, value in _fields(memoryview(path.read_bytes())):
            if number == 1:
                header.ir_version = int(value)
            elif number == 2:
                header.producer = _text(value)
            elif number == 3 and header.producer:
                header.producer += f" {_text(value)}"
            elif number == 8 and isinstance(value, memoryview):
                entry = dict(_fields(value))
                header.opsets[_text(entry.get(1, memoryview(b""))) or "ai.onnx"] = int(entry.get(2, 0))
            elif number == 14 and isinstance(value, memoryview):
                entry = dict(_fields(value))
                header.metadata_props[_text(entry.get(1, memoryview(b"")))] = _text(entry.get(2, memoryview(b"")))
            elif number == 7 and isinstance(value, memoryview):
                for n2, v in _fields(value):
                    if n2 == 1:
                        header.nodes += 1
                    elif n2 == 5 and isinstance(v, memoryview):  # TensorProto: 8 = name
                        weights.add(next((_text(t) for n3, t in _fields(v) if n3 == 8), ""))
                    elif n2 == 11 and isinstance(v, memoryview):
                        header.inputs.append(_tensor(v))
                    elif n2 == 12 and isinstance(v, memoryview):
                        header.outputs.append(_tensor(v))
    except _Corrupt as exc:
        raise ArtifactError(f"{path} is not a readable ONNX file ({exc})", "re-export the model") from None
    if not header.ir_version or not header.opsets:
        raise ArtifactError(f"{path} is not an ONNX model (no ir_version/opset_import)", "re-export the model")
    # graph inputs may also list initializers (older exporters): those are weights, not feeds
    header.inputs = [t for t in header.inputs if t.name not in weights]
    header.initializers = len(weights)
    return header
