"""Make ``import segrt`` work from a plain checkout, with nothing installed (``scripts/gpu_check.sh``).

The repository's ``sdk/`` folder is the ``segrt`` package and ``export/`` is ``segrt.export``
(``package-dir`` in pyproject.toml), so putting the repository on ``PYTHONPATH`` is not enough.
With this folder on ``PYTHONPATH``, Python imports this file at start-up (``site`` imports
``sitecustomize``) and it registers both packages from the checkout. It does nothing when a
``segrt`` is installed already, and needs nothing but the standard library (the GPU machine has
no network for ``pip install``).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_PACKAGES = {"segrt": REPO / "sdk", "segrt.export": REPO / "export"}


class _CheckoutFinder(importlib.abc.MetaPathFinder):
    """Finds ``segrt`` in ``sdk/`` and ``segrt.export`` in ``export/``; their submodules follow ``__path__``."""

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        folder = _PACKAGES.get(fullname)
        if folder is None or not (folder / "__init__.py").is_file():
            return None
        return importlib.util.spec_from_file_location(
            fullname, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )


def _installed() -> bool:
    try:
        return importlib.util.find_spec("segrt") is not None
    except (ImportError, ValueError):
        return False


if not _installed():
    sys.meta_path.insert(0, _CheckoutFinder())
