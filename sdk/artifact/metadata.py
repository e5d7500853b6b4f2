"""The metadata every segrt artifact carries, so a user needs nothing but the file.

ONNX files keep it as one JSON string under the ``segrt`` key of
``metadata_props``; TensorRT engines keep the same JSON in a header (see
``segrt.backends.tensorrt``). The runtime configures pre/post-processing from it.

Common keys (all artifacts)::

    format_version   int, bumped when the schema changes incompatibly
    kind             "unet" | "maskrcnn" | "keypointrcnn"
    class_names      list[str], index = class id (index 0 is background)
    input_channels   int
    normalization    {"scale": float, "mean": [..], "std": [..]}: x' = (x * scale - mean) / std
    segrt_version    str, version that wrote the file
    opset            int (ONNX)

Kind-specific keys are documented next to the predictor that reads them
(``segrt.unet.predictor``, ``segrt.rcnn.predictor``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from segrt.errors import ArtifactError

METADATA_KEY = "segrt"
FORMAT_VERSION = 1
KINDS = ("unet", "maskrcnn", "keypointrcnn")


def _int(v: Any) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _numbers(v: Any) -> bool:
    return _number(v) or (isinstance(v, list) and len(v) > 0 and all(_number(x) for x in v))


def _normalization(v: Any) -> bool:
    if not isinstance(v, dict):
        return False
    mode = v.get("mode", "fixed")
    if mode == "percentile":
        return _number(v.get("low")) and _number(v.get("high")) and 0 <= v["low"] < v["high"] <= 100
    std = v.get("std", 1.0)
    return (
        mode == "fixed"
        and _numbers(v.get("scale", 1.0))
        and _numbers(v.get("mean", 0.0))
        and _numbers(std)
        and all(x > 0 for x in (std if isinstance(std, list) else [std]))
    )


@dataclass(frozen=True)
class Field:
    """One metadata key: whether it must be there, and the rule its value follows."""

    rule: str  # the rule in words, for the error message
    valid: Callable[[Any], bool]
    required: bool = True


SCHEMA: dict[str, dict[str, Field]] = {
    "common": {
        "kind": Field(f"one of {', '.join(KINDS)}", lambda v: v in KINDS),
        "class_names": Field(
            "a list of at least 2 strings (index 0 is background)",
            lambda v: isinstance(v, list) and len(v) >= 2 and all(isinstance(x, str) for x in v),
        ),
        "input_channels": Field("an integer from 1 to 64", lambda v: _int(v) and 1 <= v <= 64),
        "normalization": Field(
            '{"mode": "percentile", "low": 0..100, "high": > low} or {"mode": "fixed", "scale", "mean", "std" > 0}',
            _normalization,
        ),
    },
    "unet": {
        "padding": Field('"valid" or "same"', lambda v: v in ("valid", "same")),
        "border": Field("an integer >= 0", lambda v: _int(v) and v >= 0),
        "size_min": Field("an integer >= 1", lambda v: _int(v) and v >= 1),
        "size_step": Field("an integer >= 1", lambda v: _int(v) and v >= 1),
        "tile_size": Field("an integer >= 1", lambda v: _int(v) and v >= 1),
        "margin": Field("an integer >= 0", lambda v: _int(v) and v >= 0, required=False),
        "input_name": Field("a tensor name", lambda v: isinstance(v, str) and v != "", required=False),
        "output_name": Field("a tensor name", lambda v: isinstance(v, str) and v != "", required=False),
        "foreground_class": Field("an integer >= 0", lambda v: _int(v) and v >= 0, required=False),
    },
    "maskrcnn": {
        "input_size": Field(
            "[H, W], two integers >= 1",
            lambda v: isinstance(v, list) and len(v) == 2 and all(_int(x) and x >= 1 for x in v),
        ),
        "input_dtype": Field('"float32" or "uint8"', lambda v: v in ("float32", "uint8"), required=False),
        "resize": Field(
            '{"min_size": int >= 1, "max_size": int >= min_size}',
            lambda v: (
                isinstance(v, dict)
                and _int(v.get("min_size"))
                and _int(v.get("max_size"))
                and 1 <= v["min_size"] <= v["max_size"]
            ),
            required=False,
        ),
        "mask_size": Field("an integer >= 1", lambda v: _int(v) and v >= 1, required=False),
    },
}
SCHEMA["keypointrcnn"] = {**SCHEMA["maskrcnn"], "num_keypoints": Field("an integer >= 1", lambda v: _int(v) and v >= 1)}


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
            "export the model with `segrt export` (or segrt.export.to_onnx), which embeds it; "
            "a plain torch.onnx.export file does not say how to pre/post-process its input",
        )
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArtifactError(
            f"{source}: segrt metadata is not valid JSON ({exc})", "re-export the model with `segrt export`"
        ) from None
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
    """Check metadata against ``SCHEMA``; raise ``ArtifactError`` naming every key that breaks it."""
    if not isinstance(meta, dict):
        raise ArtifactError(f"{source}: segrt metadata must be a JSON object", "re-export the model")
    version = meta.get("format_version")
    if not _int(version) or version > FORMAT_VERSION:
        raise ArtifactError(
            f"{source}: segrt metadata format {version!r} is newer than this runtime understands "
            f"(max {FORMAT_VERSION})",
            "upgrade segrt (pip install -U segrt)",
        )
    problems = _check(meta, SCHEMA["common"])
    if meta.get("kind") in KINDS:
        problems += _check(meta, SCHEMA[meta["kind"]])
    if not problems and meta["kind"] == "unet":
        if (meta["tile_size"] - meta["size_min"]) % meta["size_step"] or meta["tile_size"] < meta["size_min"]:
            problems.append(
                f"tile_size {meta['tile_size']} is not a valid input size "
                f"(size_min + k * size_step = {meta['size_min']} + k * {meta['size_step']})"
            )
        if meta.get("foreground_class", 1) >= len(meta["class_names"]):
            problems.append(f"foreground_class {meta['foreground_class']} has no entry in class_names")
    if problems:
        raise ArtifactError(
            f"{source}: invalid segrt metadata: " + "; ".join(problems),
            "re-export the model with `segrt export`; the file may have been edited or damaged",
        )


def _check(meta: dict[str, Any], fields: dict[str, Field]) -> list[str]:
    problems = []
    for key, field in fields.items():
        if key not in meta:
            if field.required:
                problems.append(f"{key!r} is missing")
        elif not field.valid(meta[key]):
            problems.append(f"{key!r} is {json.dumps(meta[key])}, expected {field.rule}")
    return problems
