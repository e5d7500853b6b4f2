"""segrt runtime: load an exported segmentation model and run it, no torch needed.

>>> import segrt
>>> model = segrt.load("unet.onnx")          # backend picked from the suffix, config from metadata
>>> result = model.predict(image)          # numpy HxW or HxWxC, any size
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segrt.artifact.formats import FORMATS, format_for_path
from segrt.errors import ArtifactError, BackendUnavailableError, DataError, InputError, SegrtError

if TYPE_CHECKING:  # typing only: importing segrt stays light
    from segrt.backends.base import Backend
    from segrt.predictor import Predictor

__version__ = "0.1.0"

# model kind (from the artifact's metadata) -> "module:Class" of its predictor
PREDICTORS = {
    "unet": "segrt.unet.predictor:UNetPredictor",
    "maskrcnn": "segrt.rcnn.predictor:MaskRCNNPredictor",
    "keypointrcnn": "segrt.rcnn.predictor:MaskRCNNPredictor",
}


def open_backend(path: str | Path, backend: str | None = None, **backend_options: Any) -> Backend:
    """Open ``path`` with a backend that runs its format (see ``segrt.artifact.formats.FORMATS``).

    ``backend``: None for the format's default (ONNX Runtime for ``.onnx``), a runtime name
    (``"onnxruntime"``, ``"openvino"``, ``"tensorrt"``), or ``"auto"`` for the rule measured
    for this machine's CPU (``segrt.backends.select.auto_backend``).
    """
    fmt = format_for_path(path)
    if backend == "auto":
        from segrt.backends.select import auto_backend

        backend, backend_options = auto_backend(fmt, backend_options)
    runtime = fmt.runtime(backend)
    try:
        backend_class = runtime.backend_class()
    except ImportError as exc:
        raise BackendUnavailableError(
            f"the {runtime.name} backend cannot be imported ({exc})", f"install {runtime.needs}"
        ) from None
    return backend_class(path, **backend_options)


def load(path: str | Path, backend: str | None = None, **backend_options: Any) -> Predictor[Any]:
    """Load an artifact and return the predictor its metadata asks for.

    Args:
        path: an ``.onnx`` file or a TensorRT engine written by ``segrt export``.
        backend: None (the format's default), a runtime name or "auto" (see ``open_backend``).
        **backend_options: passed to the backend (e.g. ``threads=2``; ``providers=[...]`` for
            ONNX Runtime; ``precision="bf16"`` for OpenVINO).

    Returns:
        ``segrt.unet.predictor.UNetPredictor`` or ``segrt.rcnn.predictor.MaskRCNNPredictor``.
    """
    opened = open_backend(path, backend, **backend_options)
    kind = opened.metadata["kind"]
    module, name = PREDICTORS[kind].split(":")
    return getattr(importlib.import_module(module), name)(opened)


__all__ = [
    "FORMATS",
    "ArtifactError",
    "BackendUnavailableError",
    "DataError",
    "InputError",
    "SegrtError",
    "__version__",
    "load",
    "open_backend",
]
