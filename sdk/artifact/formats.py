"""The one table of artifact formats.

The file suffix picks the backend on load. ``segrt export --format`` takes its
names from this table too (``segrt.export.api.EXPORTERS`` has one entry per format, and a
test holds the two together), so the two sides cannot drift. A format may have
several runtimes (``.onnx``: ONNX Runtime, the default, and OpenVINO; ``.xml``: OpenVINO IR);
``segrt.load(path, backend=NAME)`` picks one.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segrt.errors import ArtifactError, InputError


@dataclass(frozen=True)
class Runtime:
    """One backend that can run a format: ``segrt.load(path, backend=name)``."""

    name: str  # value of ``backend=`` (and of the CLI's --backend)
    target: str  # "module:Class" of the segrt backend
    needs: str  # what must be installed, for messages

    def backend_class(self) -> type[Any]:
        """The backend class (a ``segrt.backends.base.Backend``), imported on first use."""
        module, name = self.target.split(":")
        return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Format:
    """One artifact format: how it is named, opened and produced."""

    name: str  # value of `segrt export --format`
    suffixes: tuple[str, ...]  # file suffixes recognised on load (first = default on export)
    runtimes: tuple[Runtime, ...]  # backends that run it, the default first

    @property
    def needs(self) -> str:
        return self.runtimes[0].needs

    def runtime(self, backend: str | None = None) -> Runtime:
        """The runtime called ``backend`` (None: the default one)."""
        if backend is None:
            return self.runtimes[0]
        for rt in self.runtimes:
            if rt.name == backend:
                return rt
        raise InputError(
            f"no backend {backend!r} for {self.name} files",
            f"use one of: {', '.join(r.name for r in self.runtimes)} (or 'auto')",
        )

    def backend_class(self, backend: str | None = None) -> type[Any]:
        """The class of the runtime called ``backend`` (see ``runtime``)."""
        return self.runtime(backend).backend_class()


FORMATS: tuple[Format, ...] = (
    Format(
        "onnx",
        (".onnx",),
        (
            Runtime("onnxruntime", "segrt.backends.onnxrt:OnnxRuntimeBackend", "onnxruntime (installed with segrt)"),
            Runtime("openvino", "segrt.backends.openvino:OpenVINOBackend", "openvino (pip install 'segrt[openvino]')"),
        ),
    ),
    # OpenVINO IR (model.xml + model.bin), converted from the .onnx: no conversion when loading
    Format(
        "openvino",
        (".xml",),
        (Runtime("openvino", "segrt.backends.openvino:OpenVINOBackend", "openvino (pip install 'segrt[openvino]')"),),
    ),
    Format(
        "engine",
        (".engine", ".plan"),
        (
            Runtime(
                "tensorrt",
                "segrt.backends.tensorrt:TensorRTBackend",
                "tensorrt, cuda-python and an NVIDIA GPU (pip install 'segrt[gpu]')",
            ),
        ),
    ),
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
    raise ArtifactError(
        f"{path}: cannot tell the model format from the suffix {suffix!r}", f"segrt loads files ending in {known}"
    )
