"""segrt.ops.plugins: finding and loading libsegrt_trt_plugins.so (no TensorRT needed for these)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import segrt.ops.plugins as plugins
from segrt.errors import BackendUnavailableError
from segrt.ops import native

ROOT = Path(__file__).resolve().parents[2]


def test_imports_without_tensorrt():
    code = (
        "import sys; sys.modules['tensorrt'] = None\n"
        "import segrt.ops.plugins as p\n"
        "print(p.PLUGIN_LIBRARY, p.PLUGIN_NAMESPACE, p.PLUGIN_VERSION)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["libsegrt_trt_plugins.so", "segrt", "1"]


def test_missing_library_names_every_place_and_the_cmake_command(monkeypatch, tmp_path):
    monkeypatch.setenv("SEGRT_PLUGIN_PATH", str(tmp_path / "env_dir"))
    monkeypatch.setattr(native, "BUILD_DIR", tmp_path / "repo" / "build")
    monkeypatch.setattr(native, "PACKAGE_LIB_DIR", tmp_path / "pkg" / "_lib")
    with pytest.raises(BackendUnavailableError) as err:
        plugins.find_plugin_library([tmp_path / "engine_dir"])
    text = str(err.value)
    for place in [
        tmp_path / "engine_dir",
        tmp_path / "env_dir",
        tmp_path / "pkg" / "_lib",
        tmp_path / "repo" / "build",
    ]:
        assert str(place / plugins.PLUGIN_LIBRARY) in text
    assert "cmake -S . -B build -DTensorRT_ROOT=" in text and "cmake --build build" in text


def test_search_order_engine_dir_then_env(monkeypatch, tmp_path):
    engine_dir, env_dir = tmp_path / "engine", tmp_path / "env"
    for d in (engine_dir, env_dir):
        d.mkdir()
        (d / plugins.PLUGIN_LIBRARY).write_bytes(b"")
    monkeypatch.setenv("SEGRT_PLUGIN_PATH", str(env_dir))
    assert plugins.find_plugin_library([engine_dir]) == engine_dir / plugins.PLUGIN_LIBRARY
    assert plugins.find_plugin_library() == env_dir / plugins.PLUGIN_LIBRARY
    # a file path in the variable works too
    monkeypatch.setenv("SEGRT_PLUGIN_PATH", str(env_dir / plugins.PLUGIN_LIBRARY))
    assert plugins.find_plugin_library() == env_dir / plugins.PLUGIN_LIBRARY


def test_load_is_idempotent_and_global(monkeypatch, tmp_path):
    """Loads any shared library under the plugin's name (the real one needs libnvinfer), once."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # behave as on a machine without TensorRT
    fake = tmp_path / plugins.PLUGIN_LIBRARY
    shutil.copy(native.find_library(native.CPU_ROI_ALIGN), fake)
    monkeypatch.setattr(plugins, "_loaded", {})
    assert plugins.load_plugins([tmp_path]) == fake
    first = plugins._loaded[fake.resolve()]
    assert plugins.load_plugins([tmp_path]) == fake
    assert plugins._loaded[fake.resolve()] is first and len(plugins._loaded) == 1


def test_unloadable_library_says_what_it_needs(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setattr(plugins, "_loaded", {})
    (tmp_path / plugins.PLUGIN_LIBRARY).write_bytes(b"not an ELF file")
    with pytest.raises(BackendUnavailableError) as err:
        plugins.load_plugins([tmp_path])
    assert "cannot be loaded" in str(err.value) and "libnvinfer" in str(err.value)
