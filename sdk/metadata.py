"""The metadata every segrt artifact carries, so a user needs nothing but the file.

ONNX files keep it as one JSON string under the ``segrt`` key of
``metadata_props``; TensorRT engines keep the same JSON in a header (see
``sdk.backends.tensorrt``). The runtime configures pre/post-processing from it.

Common keys (all artifacts)::

    format_version   int, bumped when the schema changes incompatibly
    kind             "unet" | "maskrcnn" | "keypointrcnn"
    class_names      list[str], index = class id (index 0 is background)
    input_channels   int
    normalization    {"scale": float, "mean": [..], "std": [..]}: x' = (x * scale - mean) / std
    segrt_version    str, version that wrote the file
    opset            int (ONNX)

Kind-specific keys are documented next to the predictor that reads them
(``sdk.unet``, ``sdk.maskrcnn``).
"""
from __future__ import annotations

import json
from typing import Any, Mapping

from .errors import ArtifactError

METADATA_KEY = "segrt"
FORMAT_VERSION = 1
KINDS = ("unet", "maskrcnn", "keypointrcnn")


def encode(meta: dict[str, Any]) -> str:
    """Serialize metadata to the JSON string stored in an artifact."""
    meta = {"format_version": FORMAT_VERSION, **meta}
    validate(meta, source="metadata being written")
    return json.dumps(meta, sort_keys=True)


def decode(text: str | None, source: str) -> dict[str, Any]:
    """Parse and validate the JSON string read from ``source`` (a file path, for messages)."""
    if text is None:
        raise ArtifactError(
            f"{source} has no segrt metadata (no '{METADATA_KEY}' entry)",
            "export the model with `segrt export` (or export.to_onnx), which embeds it; "
            "a plain torch.onnx.export file does not say how to pre/post-process its input",
        )
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{source}: segrt metadata is not valid JSON ({exc})",
                            "re-export the model with `segrt export`") from None
    validate(meta, source)
    return meta


def from_props(props: Mapping[str, str], source: str, required: bool = True) -> dict[str, Any]:
    """The metadata of an ONNX model from its ``metadata_props`` (key -> string), as any runtime exposes them.

    Without a ``segrt`` entry: ``ArtifactError`` if ``required``, else ``{}``.
    """
    text = props.get(METADATA_KEY)
    if text is None and not required:
        return {}
    return decode(text, source)


def validate(meta: Any, source: str) -> None:
    """Check the keys every artifact must have; raise ``ArtifactError`` naming what is missing."""
    if not isinstance(meta, dict):
        raise ArtifactError(f"{source}: segrt metadata must be a JSON object", "re-export the model")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ArtifactError(
            f"{source}: segrt metadata format {version!r} is newer than this runtime understands "
            f"(max {FORMAT_VERSION})", "upgrade segrt (pip install -U segrt)")
    missing = [k for k in ("kind", "class_names", "input_channels", "normalization") if k not in meta]
    if missing:
        raise ArtifactError(f"{source}: segrt metadata lacks {', '.join(missing)}", "re-export the model")
    if meta["kind"] not in KINDS:
        raise ArtifactError(f"{source}: unknown model kind {meta['kind']!r}; known: {', '.join(KINDS)}",
                            "upgrade segrt, or re-export the model")
