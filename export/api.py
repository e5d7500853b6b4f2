"""The typed export API: a checkpoint in, deployable artifacts out.

The CLI (``segrt export``), the demo and the tests all call these functions.

    export_unet(ckpt, "unet.onnx", tile_size=700)
    export_maskrcnn(ckpt, "maskrcnn.onnx", graph="tensorrt", input_hw=(800, 1344))
    export_checkpoint(ckpt, "unet.engine", format="engine", engine=EngineOptions(precision="fp16"))

``EXPORTERS`` maps each artifact format of ``segrt.artifact.formats.FORMATS`` to the step that
writes it, so the load side and the export side name the same formats.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from segrt.artifact.formats import format_by_name
from segrt.errors import ArtifactError, InputError
from segrt.export import DEFAULT_OPSET
from segrt.export.checkpoint import load_checkpoint

Checkpoint = str | Path | dict[str, Any]


def _checkpoint(checkpoint: Checkpoint, kinds: Sequence[str]) -> dict[str, Any]:
    ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    if ckpt["kind"] not in kinds:
        raise ArtifactError(
            f"the checkpoint holds a {ckpt['kind']!r} model, not {' or '.join(kinds)}",
            "use export_checkpoint(), which picks the exporter from the checkpoint",
        )
    return ckpt


def export_unet(
    checkpoint: Checkpoint, out: str | Path, *, tile_size: int | None = None, opset: int = DEFAULT_OPSET
) -> Path:
    """U-Net checkpoint -> ``.onnx`` with dynamic batch/height/width and segrt metadata.

    Args:
        tile_size: largest input tile edge the runtime uses by default, rounded up to a valid size
            (default: one tile covers a 512x512 image).

    The export checks ONNX Runtime against eager PyTorch on an input size it did not trace.
    """
    from segrt.export.to_onnx import build_unet, unet_to_onnx

    ckpt = _checkpoint(checkpoint, ("unet",))
    return unet_to_onnx(
        build_unet(ckpt),
        out,
        ckpt["class_names"],
        normalization=ckpt.get("extra", {}).get("normalization"),
        tile_size=tile_size,
        opset=opset,
    )


def export_maskrcnn(
    checkpoint: Checkpoint,
    out: str | Path,
    *,
    graph: str = "portable",
    input_hw: tuple[int, int] | None = None,
    input_dtype: str = "float32",
    score_thresh: float | None = None,
    nms_iou: float | None = None,
    max_detections: int | None = None,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Mask R-CNN / Keypoint R-CNN checkpoint -> ``.onnx`` deploy graph at a fixed input size.

    Args:
        graph: "portable" (standard ONNX ops) or "tensorrt" (multi-level RoIAlign as segrt plugin
            nodes; the portable graph is written beside it as ``<stem>.portable.onnx``).
        input_hw: (H, W) graph input, multiples of 32 (default: the checkpoint's max_size square).
        input_dtype: "float32" (RGB in [0, 1]) or "uint8" (0..255).
        score_thresh, nms_iou, max_detections: default to the model's (0.05, 0.5, 100).
    """
    from segrt.export.maskrcnn.models import model_from_checkpoint
    from segrt.export.maskrcnn.onnx_export import torch_to_onnx
    from segrt.export.maskrcnn.trt_graph import portable_to_tensorrt

    if graph not in ("portable", "tensorrt"):
        raise InputError(f"unknown graph {graph!r}", 'use graph="portable" or graph="tensorrt"')
    out = Path(out)
    if out.suffix != ".onnx":
        raise InputError(
            f"{out}: Mask R-CNN graphs are written as .onnx",
            "name the output *.onnx (build an engine from it with format='engine')",
        )
    model, cfg, names = model_from_checkpoint(_checkpoint(checkpoint, ("maskrcnn", "keypointrcnn")))
    side = -(-cfg.max_size // 32) * 32
    size = tuple(input_hw) if input_hw else (side, side)
    portable = out if graph == "portable" else out.with_name(out.stem + ".portable.onnx")
    torch_to_onnx(model, cfg, names, portable, size, input_dtype, score_thresh, nms_iou, max_detections, opset)
    return portable_to_tensorrt(portable, out) if graph == "tensorrt" else out


@dataclass
class EngineOptions:
    """Every option of the TensorRT engine build (``segrt.export.to_engine.onnx_to_engine``)."""

    precision: str = "fp32"  # "fp32" (TF32 allowed) or "fp16"
    workspace_gib: float = 4.0
    timing_cache: Path | None = None
    max_batch: int | None = None  # U-Net tiles per call
    opt_batch: int | None = None
    max_size: int | None = None  # U-Net: largest H/W, snapped to a valid size
    min_size: int | None = None
    fp16_mode: str = "auto"  # "auto" | "builder_flag" | "fp16_onnx"
    device: int = 0
    plugin_dirs: list[Path] = field(default_factory=list)
    verbose: bool = False


def export_onnx(checkpoint: Checkpoint, out: str | Path, **options: Any) -> Path:
    """Any segrt checkpoint -> ``.onnx``; ``options`` go to :func:`export_unet` or :func:`export_maskrcnn`."""
    ckpt = _checkpoint(checkpoint, ("unet", "maskrcnn", "keypointrcnn"))
    return (export_unet if ckpt["kind"] == "unet" else export_maskrcnn)(ckpt, out, **options)


def export_engine(onnx_path: str | Path, out: str | Path, engine: EngineOptions | None = None) -> Path:
    """segrt ``.onnx`` -> TensorRT engine (needs TensorRT and a GPU)."""
    from segrt.export.to_engine import onnx_to_engine

    return onnx_to_engine(onnx_path, out, **asdict(engine or EngineOptions()))


def export_openvino_ir(onnx_path: str | Path, out: str | Path, engine: EngineOptions | None = None) -> Path:
    """segrt ``.onnx`` -> OpenVINO IR ``.xml`` + ``.bin`` (needs ``segrt[openvino]``); ``engine`` is unused."""
    from segrt.export.to_openvino import onnx_to_openvino_ir

    return onnx_to_openvino_ir(onnx_path, out)


# format name (segrt.artifact.formats) -> the last step that writes it, given the .onnx
EXPORTERS: dict[str, Callable[..., Path] | None] = {
    "onnx": None,
    "openvino": export_openvino_ir,
    "engine": export_engine,
}


def export_checkpoint(
    checkpoint: Checkpoint,
    out: str | Path | None = None,
    *,
    format: str = "onnx",
    int8_calibration: str | Path | None = None,
    engine: EngineOptions | None = None,
    progress: Callable[[str], None] = lambda message: None,
    **model_options: Any,
) -> list[Path]:
    """Export a checkpoint to ``format``; returns every file written, the requested artifact last.

    Args:
        checkpoint: a ``.pt`` from ``segrt train`` (or its loaded dict).
        out: the artifact path (default: the checkpoint path with the format's suffix).
        format: a name from ``segrt.artifact.formats.FORMATS`` ("onnx", "openvino" or "engine").
        int8_calibration: also write ``<stem>.int8.onnx``, statically quantized and calibrated on the
            images of this folder (a split folder with images/ works too).
        engine: TensorRT build options for format "engine".
        progress: called with a line of text after each file is written.
        **model_options: :func:`export_unet` / :func:`export_maskrcnn` options.
    """
    fmt = format_by_name(format)
    ckpt = _checkpoint(checkpoint, ("unet", "maskrcnn", "keypointrcnn"))
    base = (
        Path(out)
        if out
        else (
            Path(checkpoint).with_suffix(fmt.suffixes[0])
            if not isinstance(checkpoint, dict)
            else Path(f"{ckpt['kind']}{fmt.suffixes[0]}")
        )
    )
    onnx_out = base if fmt.name == "onnx" else base.with_suffix(".onnx")
    written = [export_onnx(ckpt, onnx_out, **model_options)]
    progress(f"wrote {written[-1]}")
    if int8_calibration is not None:
        from segrt.export.quantize import calibration_images, quantize_int8

        images = calibration_images(int8_calibration)
        written.insert(0, quantize_int8(written[0], written[0].with_suffix(".int8.onnx"), images))
        progress(
            f"wrote {written[0]} (int8, calibrated on {len(images)} image(s) of {int8_calibration}; "
            "check its accuracy with `segrt eval`)"
        )
    step = EXPORTERS[fmt.name]
    if step is not None:  # formats built from the fp32 .onnx
        written.append(step(written[-1], base, engine))
        progress(f"wrote {written[-1]}")
    return written
