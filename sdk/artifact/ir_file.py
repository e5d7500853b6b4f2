"""Read the header of an OpenVINO IR (``model.xml``) without OpenVINO: inputs, outputs, segrt metadata.

The IR's XML lists Parameter and Result layers with their element types and dimensions, and
its ``rt_info/framework`` element keeps the ONNX ``metadata_props`` of the model it was converted
from (segrt's ``segrt`` entry among them). The weights live in ``model.bin`` beside it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from segrt.artifact.onnx_file import TensorHeader
from segrt.errors import ArtifactError

# OpenVINO element type -> numpy dtype name
_DTYPES = {
    "f32": "float32",
    "f16": "float16",
    "bf16": "bfloat16",
    "i64": "int64",
    "i32": "int32",
    "u8": "uint8",
    "i8": "int8",
    "boolean": "bool",
}


@dataclass
class IRHeader:
    version: str = ""  # the OpenVINO version that wrote it
    metadata_props: dict[str, str] = field(default_factory=dict)
    inputs: list[TensorHeader] = field(default_factory=list)
    outputs: list[TensorHeader] = field(default_factory=list)
    layers: int = 0


def _dims(port: ET.Element | None) -> list[int | str | None]:
    dims = [] if port is None else [d.text or "" for d in port.findall("dim")]
    return [int(d) if d.lstrip("-").isdigit() and int(d) >= 0 else None for d in dims]


def read_ir_header(path: str | Path) -> IRHeader:
    """The header of an IR ``.xml`` file; raises ``ArtifactError`` if it is not one."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise ArtifactError(
            f"{path} is not a readable OpenVINO IR file ({exc})", "re-export it with `segrt export --format openvino`"
        ) from None
    if root.tag != "net":
        raise ArtifactError(
            f"{path} is XML but not an OpenVINO IR (root <{root.tag}>)",
            "re-export it with `segrt export --format openvino`",
        )
    header = IRHeader()
    layers = root.findall("layers/layer")
    header.layers = len(layers)
    for layer in layers:
        kind = layer.get("type")
        if kind == "Parameter":
            port, data = layer.find("output/port"), layer.find("data")
            element = data.get("element_type", "") if data is not None else ""
            header.inputs.append(TensorHeader(layer.get("name", ""), _DTYPES.get(element, element), _dims(port)))
        elif kind == "Result":
            port = layer.find("input/port")
            precision = (port.get("precision", "") if port is not None else "").lower()
            header.outputs.append(
                TensorHeader(
                    layer.get("output_names") or layer.get("name") or "",
                    _DTYPES.get(precision.replace("fp", "f"), precision),
                    _dims(port),
                )
            )
    info = root.find("rt_info")
    if info is not None:
        version = info.find("info[@name='OpenVINO Runtime']")
        header.version = version.get("value", "") if version is not None else ""
        framework = info.find("framework")
        if framework is not None:
            header.metadata_props = {e.tag: e.get("value", "") for e in framework}
    return header
