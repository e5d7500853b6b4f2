"""The one table of artifact formats.

The file suffix picks the backend on load. ``segrt export --format`` takes its
names from this table too (``export.api.EXPORTERS`` has one entry per format, and a
test holds the two together), so the two sides cannot drift.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from .errors import ArtifactError


@dataclass(frozen=True)
class Format:
    """One artifact format: how it is named, opened and produced."""

    name: str                 # value of `segrt export --format`
    suffixes: tuple[str, ...]  # file suffixes recognised on load (first = default on export)
    backend: str              # "module:Class" of the sdk backend that runs it
    needs: str                # what must be installed, for messages

    def backend_class(self):
        module, name = self.backend.split(":")
        return getattr(importlib.import_module(module), name)


FORMATS: tuple[Format, ...] = (
    Format("onnx", (".onnx",), "sdk.backends.onnxrt:OnnxRuntimeBackend", "onnxruntime (installed with segrt)"),
    Format("engine", (".engine", ".plan"), "sdk.backends.tensorrt:TensorRTBackend", "tensorrt, cuda-python and an NVIDIA GPU (pip install 'segrt[gpu]')"),
)


def format_by_name(name: str) -> Format:
    for fmt in FORMATS:
        if fmt.name == name:
            return fmt
    raise ArtifactError(f"unknown format {name!r}", f"use one of: {', '.join(f.name for f in FORMATS)}")


def format_for_path(path: str | Path) -> Format:
    """The format of an artifact, from its suffix."""
    suffix = Path(path).suffix.lower()
    for fmt in FORMATS:
        if suffix in fmt.suffixes:
            return fmt
    known = ", ".join(s for f in FORMATS for s in f.suffixes)
    raise ArtifactError(f"{path}: cannot tell the model format from the suffix {suffix!r}",
                        f"segrt loads files ending in {known}")
