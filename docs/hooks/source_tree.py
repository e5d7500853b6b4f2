"""MkDocs hook: let mkdocstrings read ``segrt`` from the repository's own folders.

The repository keeps the runtime in ``sdk/`` and the training side in ``export/``; the build maps
them to ``segrt`` and ``segrt.export`` (``package-dir`` in pyproject.toml). griffe, which reads the
source for mkdocstrings, looks for a folder named like the package, so this hook lays out a
``segrt/`` folder of symbolic links (every entry of ``sdk/``, plus ``export``) in a temporary
directory and points the Python handler there. The docs are then built from the working tree,
not from whatever happens to be installed.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority

ROOT = Path(__file__).resolve().parents[2]


def _source_tree() -> Path:
    """A temporary folder holding ``segrt/`` -> ``sdk/*`` and ``segrt/export`` -> ``export/``."""
    top = Path(tempfile.mkdtemp(prefix="segrt-docs-src-"))
    atexit.register(shutil.rmtree, top, ignore_errors=True)
    package = top / "segrt"
    package.mkdir()
    for entry in (ROOT / "sdk").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    (package / "export").symlink_to(ROOT / "export")
    return top


@event_priority(100)  # before mkdocstrings' own on_config, which creates the handler with its paths
def on_config(config: Any) -> Any:
    """Put the ``segrt`` source tree first on the Python handler's search paths."""
    handler = config.plugins["mkdocstrings"].config.handlers.setdefault("python", {})
    handler["paths"] = [str(_source_tree()), *handler.get("paths", [])]
    return config
