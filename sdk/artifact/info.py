"""``segrt info``: what an artifact holds, read from its header alone (no backend is loaded)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from segrt.artifact import metadata as md
from segrt.artifact.formats import format_for_path
from segrt.errors import ArtifactError


def describe(path: str | Path) -> dict[str, Any]:
    """Format, size, metadata, inputs/outputs, and for engines the build header and plugin.

    Returns a JSON-ready dict. Reads only the file's header: works without onnxruntime
    sessions, TensorRT or a GPU. Invalid metadata is reported under ``metadata_error``
    rather than raised, so a damaged file can still be inspected.
    """
    path = Path(path)
    fmt = format_for_path(path)
    if not path.is_file():
        raise ArtifactError(f"model file not found: {path}", "check the path")
    info: dict[str, Any] = {"path": str(path), "format": fmt.name, "bytes": path.stat().st_size}
    if fmt.name == "onnx":
        from segrt.artifact.onnx_file import read_onnx_header

        header = read_onnx_header(path)
        info.update(
            ir_version=header.ir_version,
            producer=header.producer,
            opsets=header.opsets,
            nodes=header.nodes,
            weights=header.initializers,
            inputs=[vars(t) for t in header.inputs],
            outputs=[vars(t) for t in header.outputs],
        )
        _add_metadata(info, header.metadata_props, path)
        info["plugin"] = (info.get("metadata") or {}).get("plugin")
    elif fmt.name == "openvino":
        from segrt.artifact.ir_file import read_ir_header

        ir = read_ir_header(path)
        weights = path.with_suffix(".bin")
        info.update(
            openvino_version=ir.version,
            layers=ir.layers,
            weights_bytes=weights.stat().st_size if weights.is_file() else None,
            inputs=[vars(t) for t in ir.inputs],
            outputs=[vars(t) for t in ir.outputs],
        )
        _add_metadata(info, ir.metadata_props, path)
        info["plugin"] = None
    else:
        from segrt.artifact.engine_file import read_engine_metadata

        meta = read_engine_metadata(path)
        engine = meta.pop("engine", {})
        info.update(
            metadata=meta, engine={k: v for k, v in engine.items() if k != "plugin"}, plugin=engine.get("plugin")
        )
    return info


def _add_metadata(info: dict[str, Any], props: dict[str, str], path: Path) -> None:
    """``info["metadata"]`` from the segrt entry of ``props``, or ``info["metadata_error"]`` if it is invalid."""
    try:
        info["metadata"] = md.decode(props.get(md.METADATA_KEY), str(path))
    except ArtifactError as exc:
        info["metadata_error"] = exc.problem


def format_info(info: dict[str, Any]) -> str:
    """A human-readable summary of :func:`describe`'s dict."""
    lines = [f"{info['path']}: {info['format']}, {info['bytes'] / 1e6:.1f} MB"]
    meta = info.get("metadata")
    if meta:
        lines.append(
            f"  model     {meta['kind']}, classes {meta['class_names']}, {meta['input_channels']} input channel(s)"
        )
        geometry = {
            k: meta[k]
            for k in (
                "padding",
                "border",
                "size_min",
                "size_step",
                "tile_size",
                "input_size",
                "input_dtype",
                "max_detections",
                "graph",
                "quantization",
            )
            if k in meta
        }
        if geometry:
            lines.append(f"  geometry  {json.dumps(geometry)}")
        lines.append(f"  normalize {json.dumps(meta['normalization'])}")
    if "metadata_error" in info:
        lines.append(f"  metadata  INVALID: {info['metadata_error']}")
    if "opsets" in info:
        lines.append(
            f"  onnx      ir {info['ir_version']}, opsets {info['opsets']}, {info['nodes']} nodes, "
            f"{info['weights']} weight tensors, by {info['producer']}"
        )
    if "layers" in info:
        weights = info["weights_bytes"]
        lines.append(
            f"  openvino  IR by {info['openvino_version'] or 'unknown'}, {info['layers']} layers, weights "
            + (f"{weights / 1e6:.1f} MB" if weights is not None else "MISSING (the .bin beside the .xml)")
        )
    for role in ("inputs", "outputs"):
        for t in info.get(role, []):
            lines.append(f"  {role[:-1]:<9} {t['name']} {t['dtype']} {t['shape']}")
    if info.get("engine"):
        e = info["engine"]
        lines.append(
            f"  engine    TensorRT {e.get('tensorrt_version')}, {e.get('precision')}, "
            f"built on {e.get('gpu_name')} (compute {e.get('compute_capability')})"
        )
        for name, (lo, opt, hi) in (e.get("profile") or {}).items():
            lines.append(f"  profile   {name}: min {lo} opt {opt} max {hi}")
    plugin = info.get("plugin")
    lines.append(f"  plugin    {json.dumps(plugin) if plugin else 'none'}")
    return "\n".join(lines)
