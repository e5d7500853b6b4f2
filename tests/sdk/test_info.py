"""`segrt info` reads an ONNX header with its own protobuf reader: checked against the onnx package."""

from __future__ import annotations

import onnx
import pytest

from segrt.artifact.info import describe, format_info
from segrt.artifact.onnx_file import ELEM_TYPES, read_onnx_header
from segrt.errors import ArtifactError


def _dims(value_info) -> list:
    return [
        d.dim_value if d.HasField("dim_value") else d.dim_param if d.HasField("dim_param") else None
        for d in value_info.type.tensor_type.shape.dim
    ]


@pytest.mark.parametrize("kind", ["unet", "maskrcnn"])
def test_header_equals_the_onnx_package(kind, tiny_unet, tiny_maskrcnn):
    path = tiny_unet[1] if kind == "unet" else tiny_maskrcnn
    proto = onnx.load(str(path))
    header = read_onnx_header(path)
    weights = {t.name for t in proto.graph.initializer}
    assert header.ir_version == proto.ir_version
    assert header.opsets == {(o.domain or "ai.onnx"): o.version for o in proto.opset_import}
    assert header.metadata_props == {p.key: p.value for p in proto.metadata_props}
    assert header.nodes == len(proto.graph.node) and header.initializers == len(weights)
    for ours, theirs in (
        (header.inputs, [i for i in proto.graph.input if i.name not in weights]),
        (header.outputs, proto.graph.output),
    ):
        assert [t.name for t in ours] == [t.name for t in theirs]
        assert [t.dtype for t in ours] == [ELEM_TYPES[t.type.tensor_type.elem_type] for t in theirs]
        assert [t.shape for t in ours] == [_dims(t) for t in theirs]


def test_describe_and_format(tiny_maskrcnn):
    info = describe(tiny_maskrcnn)
    text = format_info(info)
    assert info["metadata"]["input_size"] == [128, 128] and "input_size" in text and "plugin    none" in text


@pytest.mark.parametrize("content", [b"", b"\x08", b"not an onnx file at all"])
def test_garbage_is_a_clear_error(content, tmp_path):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(ArtifactError, match=r"not (a readable ONNX file|an ONNX model)"):
        read_onnx_header(path)
