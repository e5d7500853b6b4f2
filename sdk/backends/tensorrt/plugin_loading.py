"""Load the segrt plugin library an engine names, before TensorRT deserializes or parses it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from segrt.errors import BackendUnavailableError


def check_plugin_creators(trt: Any, plugin: Mapping[str, Any], library: Path) -> None:
    """Every op in ``plugin["ops"]`` must have a registered creator (name, version, namespace)."""
    registry = trt.get_plugin_registry()
    version, namespace = str(plugin.get("version", "1")), str(plugin.get("namespace", ""))
    missing = [op for op in plugin.get("ops", ()) if registry.get_creator(op, version, namespace) is None]
    if missing:
        raise BackendUnavailableError(
            f"{library} was loaded but TensorRT has no creator for {', '.join(missing)} "
            f"(version {version}, namespace {namespace!r})",
            "the library is from another segrt version: rebuild kernels/roi_align from this segrt",
        )


def load_engine_plugins(trt: Any, plugin: Mapping[str, Any] | None, extra_dirs: Sequence[str | Path]) -> Path | None:
    """Load the segrt plugin library an engine needs (before deserializing it) and check its creators."""
    if not plugin:
        return None
    need = (
        f"this engine needs the segrt TensorRT plugin library {plugin.get('library')} "
        f"(version {plugin.get('version')}, ops {', '.join(plugin.get('ops', ()))})"
    )
    try:
        from segrt.ops.plugins import load_plugins
    except ImportError as exc:
        raise BackendUnavailableError(
            f"{need}, but segrt.ops.plugins cannot be imported ({exc})",
            "reinstall segrt with its native libraries (pip install 'segrt[gpu]')",
        ) from None
    try:
        library = Path(load_plugins(extra_dirs=tuple(extra_dirs)))
    except BackendUnavailableError as exc:
        raise BackendUnavailableError(
            f"{need}: {exc.problem}", exc.fix or "put the library next to the engine"
        ) from None
    check_plugin_creators(trt, plugin, library)
    return library
