"""Load segrt's TensorRT plugin library before an engine is deserialized.

An engine built from a segrt Mask R-CNN graph contains ``SegrtRoiAlign`` /
``SegrtMultiLevelRoiAlign`` layers (plugin version "1", namespace "segrt").
TensorRT can only deserialize it once the creators of ``libsegrt_trt_plugins.so``
are in its plugin registry. :func:`load_plugins` puts them there through TensorRT's own
``IPluginRegistry.load_library`` (which registers what the library's ``getCreators()``
returns, so TensorRT owns the registrations), idempotently, and, when it cannot, says
which places were searched (:mod:`segrt.ops.native`) and how to build the library.
The library does not register itself when loaded: ``loadLibrary`` "will fail and return
nullptr if any of the plugins are already registered" (``NvInferRuntimeCommon.h``).

Importing this module needs neither TensorRT nor a GPU.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from segrt.errors import BackendUnavailableError
from segrt.ops import native

__all__ = [
    "BUILD_COMMAND",
    "PLUGIN_LIBRARY",
    "PLUGIN_NAMES",
    "PLUGIN_NAMESPACE",
    "PLUGIN_VERSION",
    "find_plugin_library",
    "load_plugins",
    "plugin_search_paths",
]

PLUGIN_LIBRARY = native.TRT_PLUGINS.filename
PLUGIN_NAMES = ("SegrtRoiAlign", "SegrtMultiLevelRoiAlign")
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = "segrt"
BUILD_COMMAND = native.TRT_PLUGINS.build

_lock = threading.Lock()
_loaded: dict[Path, ctypes.CDLL] = {}


def plugin_search_paths(extra_dirs: Sequence[str | Path] = ()) -> list[Path]:
    """Candidate plugin library paths, in search order: ``extra_dirs`` (e.g. the engine's folder),
    ``$SEGRT_PLUGIN_PATH``, ``segrt/_lib/``, ``build/`` (see :func:`segrt.ops.native.search_paths`)."""
    return native.search_paths(native.TRT_PLUGINS, extra_dirs)


def find_plugin_library(extra_dirs: Sequence[str | Path] = ()) -> Path:
    """Path of the first ``libsegrt_trt_plugins.so`` of :func:`plugin_search_paths`.

    Raises:
        BackendUnavailableError: none found; names every place searched and the build command.
    """
    return native.find_library(native.TRT_PLUGINS, extra_dirs)


def _import_tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError:
        return None
    return tensorrt


def _registry_has(registry: Any, name: str) -> bool:
    try:  # IPluginRegistry.get_creator: TensorRT 10 and 11 (get_plugin_creator is gone in 11)
        return registry.get_creator(name, PLUGIN_VERSION, PLUGIN_NAMESPACE) is not None
    except Exception:  # some releases raise instead of returning None
        return False


def _ensure_registered(trt: Any, path: Path) -> None:
    """Make sure TensorRT's registry holds both creators: ``load_library`` unless they are there already
    (registered by an earlier call, or by a program that opted into the library's static registration)."""
    registry = trt.get_plugin_registry()
    missing = [n for n in PLUGIN_NAMES if not _registry_has(registry, n)]
    if missing:
        registry.load_library(str(path))  # None if some were registered meanwhile: checked below
        missing = [n for n in PLUGIN_NAMES if not _registry_has(registry, n)]
    if missing:
        raise BackendUnavailableError(
            f"{path} was loaded but TensorRT's plugin registry has no {', '.join(missing)} "
            f"(version {PLUGIN_VERSION}, namespace {PLUGIN_NAMESPACE!r})",
            f"rebuild the library against the TensorRT you run ({getattr(trt, '__version__', '?')}): {BUILD_COMMAND}",
        )


def load_plugins(extra_dirs: Sequence[str | Path] = ()) -> Path:
    """Load the plugin library (once per process) so engines using segrt plugins deserialize.

    Args:
        extra_dirs: folders (or files) searched first, typically the engine's folder.

    Returns:
        The path of the loaded library.

    Raises:
        BackendUnavailableError: not found, not loadable (e.g. built for another
            TensorRT), or its creators did not reach TensorRT's registry.
    """
    path = find_plugin_library(extra_dirs)
    key = path.resolve()
    with _lock:
        # tensorrt first: it loads libnvinfer, which the plugin library links against.
        trt = _import_tensorrt()
        if key not in _loaded:
            # opened here first for a clear error when it cannot load (missing libnvinfer, wrong build);
            # it registers nothing (module docstring): TensorRT's load_library does, below
            _loaded[key] = native.open_library(native.TRT_PLUGINS, key, mode=ctypes.RTLD_GLOBAL)
        if trt is not None:
            _ensure_registered(trt, key)
    return path
