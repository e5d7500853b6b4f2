"""segrt ``.onnx`` -> OpenVINO IR (``model.xml`` + ``model.bin``), for ``segrt export --format openvino``.

The IR is the ONNX graph as OpenVINO reads it, weights in float32 (no fp16 compression: the
precision is chosen when loading, ``precision="fp32"|"bf16"|"mixed"``). The segrt metadata travels
in the IR's ``rt_info``, so ``segrt.load("model.xml")`` and ``segrt info`` see the same model
description as for the ``.onnx``. Loading an IR skips the ONNX conversion.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from segrt.backends.openvino import import_openvino


def onnx_to_openvino_ir(onnx_path: str | Path, out: str | Path) -> Path:
    """Write ``out`` (``.xml``) and its ``.bin`` from a segrt ``.onnx``; returns the ``.xml`` path.

    Both files are written under temporary names and renamed into place, the weights first, so an
    interrupted export never leaves an ``.xml`` that points at missing or partial weights.
    """
    ov = import_openvino()
    out = Path(out).with_suffix(".xml")
    out.parent.mkdir(parents=True, exist_ok=True)
    model = ov.Core().read_model(os.fspath(onnx_path))
    with tempfile.TemporaryDirectory(prefix=".segrt_ir_", dir=out.parent) as tmp:
        xml = Path(tmp) / out.name
        ov.save_model(model, os.fspath(xml), compress_to_fp16=False)
        os.replace(xml.with_suffix(".bin"), out.with_suffix(".bin"))
        os.replace(xml, out)
    return out
