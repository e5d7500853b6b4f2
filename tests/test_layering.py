"""The layering contracts of pyproject.toml ([tool.importlinter]) hold, checked by import-linter.

import-linter finds a package by importing it and reading its folder. An editable install maps
``segrt`` to sdk/ and ``segrt.export`` to export/, two folders, so the check runs on a copy laid out
as the wheel installs it: sdk/ as segrt/, export/ as segrt/export/.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "pyproject.toml"


def _contracts() -> dict[str, dict]:
    return {c["id"]: c for c in tomllib.loads(CONFIG.read_text())["tool"]["importlinter"]["contracts"]}


def _runtime_groups() -> set[str]:
    """The runtime's top-level modules and packages: every entry of sdk/ that is Python."""
    names = {p.stem for p in (ROOT / "sdk").glob("*.py")} | {
        p.parent.name for p in (ROOT / "sdk").glob("*/__init__.py")
    }
    return {f"segrt.{n}" for n in names - {"__init__", "__main__"}}


def test_contracts_name_every_runtime_group() -> None:
    """A new runtime module cannot slip past the contracts: each is a source of the forbidden contract
    and sits in a layer."""
    contracts = _contracts()
    assert set(contracts["runtime-not-training"]["source_modules"]) == _runtime_groups()
    layered = {m.strip() for layer in contracts["runtime-layers"]["layers"] for m in layer.split("|")}
    assert layered == _runtime_groups()


def test_lint_imports_keeps_every_contract(tmp_path: Path) -> None:
    """``lint-imports``: runtime never imports segrt.export or torch; groups import only lower ones; no cycles."""
    exe = Path(sys.executable).parent / "lint-imports"
    if not exe.is_file():
        pytest.skip("import-linter is not installed (it is in the dev extra: pip install -e '.[dev]')")
    skip = shutil.ignore_patterns("__pycache__", "_lib", "*.so")
    shutil.copytree(ROOT / "sdk", tmp_path / "segrt", ignore=skip)
    shutil.copytree(ROOT / "export", tmp_path / "segrt" / "export", ignore=skip)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    run = subprocess.run(
        [str(exe), "--no-cache", str(CONFIG)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout + run.stderr
    kept = [line for line in run.stdout.splitlines() if line.rstrip().endswith(("KEPT", "ignored import)"))]
    assert len(kept) == len(_contracts()) and "0 broken" in run.stdout, run.stdout
