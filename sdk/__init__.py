"""segrt runtime: load an exported segmentation model and run it, no torch needed.

>>> import sdk
>>> model = sdk.load("unet.onnx")          # backend picked from the suffix, config from metadata
>>> result = model.predict(image)          # numpy HxW or HxWxC, any size
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from .errors import ArtifactError, BackendUnavailableError, DataError, InputError, SegrtError
from .formats import FORMATS, format_for_path

__version__ = "0.1.0"

# model kind (from the artifact's metadata) -> "module:Class" of its predictor
PREDICTORS = {
    "unet": "sdk.unet:UNetPredictor",
    "maskrcnn": "sdk.maskrcnn:MaskRCNNPredictor",
    "keypointrcnn": "sdk.maskrcnn:MaskRCNNPredictor",
}


def open_backend(path: str | Path, **backend_options: Any):
    """Open ``path`` with the backend its suffix names (see ``sdk.formats.FORMATS``)."""
    fmt = format_for_path(path)
    try:
        backend_class = fmt.backend_class()
    except ImportError as exc:
        raise BackendUnavailableError(f"the {fmt.name} backend cannot be imported ({exc})",
                                      f"install {fmt.needs}") from None
    return backend_class(path, **backend_options)


def load(path: str | Path, **backend_options: Any):
    """Load an artifact and return the predictor its metadata asks for.

    Args:
        path: an ``.onnx`` file or a TensorRT engine written by ``segrt export``.
        **backend_options: passed to the backend (e.g. ``threads=2``,
            ``providers=[...]`` for ONNX Runtime).

    Returns:
        ``sdk.unet.UNetPredictor`` or ``sdk.maskrcnn.MaskRCNNPredictor``.
    """
    backend = open_backend(path, **backend_options)
    kind = backend.metadata["kind"]
    module, name = PREDICTORS[kind].split(":")
    return getattr(importlib.import_module(module), name)(backend)


__all__ = ["load", "open_backend", "FORMATS", "SegrtError", "InputError", "ArtifactError",
           "DataError", "BackendUnavailableError", "__version__"]
