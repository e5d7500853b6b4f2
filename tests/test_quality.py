"""Lint, format and type checks of the repository, as CI runs them (configuration: pyproject.toml).

Each check runs the tool installed beside this Python (the venv's ``bin/``, from the ``dev`` extra)
over the source tree, and fails with the tool's own report. Without the tool, the test is skipped
and says which package to install.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _tool(name: str) -> Path:
    """The executable ``name`` of this interpreter's environment; skips the test when it is absent."""
    path = BIN / name
    if not path.is_file():
        pytest.skip(f"{name} is not installed in {BIN.parent} (pip install -e '.[dev]' installs it)")
    return path


def _run(*cmd: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.fixture(autouse=True)
def _source_tree() -> None:
    if not (ROOT / "pyproject.toml").is_file() or not (ROOT / "sdk").is_dir():
        pytest.skip(f"needs the source tree (pyproject.toml and sdk/ under {ROOT})")


def test_ruff_lint_finds_nothing() -> None:
    """``ruff check``: the rule set of [tool.ruff.lint] holds over every Python file."""
    out = _run(_tool("ruff"), "check", "--no-fix", "--output-format", "concise", ".")
    assert out.returncode == 0, f"ruff check found problems:\n{out.stdout}{out.stderr}"


def test_ruff_format_is_applied() -> None:
    """``ruff format --check``: every Python file is formatted (``ruff format`` fixes what this reports)."""
    out = _run(_tool("ruff"), "format", "--check", "--output-format", "concise", ".")
    assert out.returncode == 0, f"files need `ruff format`:\n{out.stdout}{out.stderr}"


def test_mypy_finds_nothing_in_the_runtime() -> None:
    """``mypy``: the runtime package ``segrt`` (folder sdk/) type-checks with untyped definitions disallowed."""
    link = ROOT / ".typecheck" / "segrt"
    assert link.resolve() == (ROOT / "sdk").resolve(), f"{link} must link to sdk/ (git keeps it as a symlink)"
    out = _run(_tool("mypy"))
    assert out.returncode == 0, f"mypy found problems:\n{out.stdout}{out.stderr}"
    assert "Success: no issues found" in out.stdout, out.stdout
