"""The whole CMake tree configures and builds from scratch with warnings as errors, and the
TensorRT plugin library works through TensorRT's plugin interfaces.

* full build (one configure): CPU library, CUDA library with nvcc (compile only, one architecture
  to keep CI fast) and libsegrt_trt_plugins.so linked against a stand-in libnvinfer
  (fake_nvinfer.cpp), then driven by trt_plugin_harness.cpp;
* headers-only build: the plugin sources compiled against real TensorRT headers without linking
  (SEGRT_TRT_HEADERS_ONLY), the compile check a machine without TensorRT can run.
TensorRT headers: $SEGRT_TRT_INCLUDE_DIR, else /work/trt_headers/include (the include/ folder of
NVIDIA/TensorRT); the tests that need them skip when neither exists.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CMAKE = shutil.which("cmake")
CXX = shutil.which("g++") or shutil.which("c++")
NVCC = shutil.which("nvcc") or next((p for p in ["/usr/local/cuda/bin/nvcc"] if Path(p).is_file()), None)


def _trt_include() -> Path | None:
    env = os.environ.get("SEGRT_TRT_INCLUDE_DIR")
    for candidate in ([Path(env)] if env else []) + [Path("/work/trt_headers/include")]:
        if (candidate / "NvInferRuntime.h").is_file():
            return candidate
    return None


TRT_INCLUDE = _trt_include()
NO_TRT = "TensorRT headers not found: set SEGRT_TRT_INCLUDE_DIR to the include/ folder of NVIDIA/TensorRT"
NO_NVCC = "nvcc (CUDA toolkit) not found: the CUDA library and the plugin cannot be compiled here"


def _cuda_include() -> Path:
    """Folder with cuda_runtime_api.h (nvcc may be a wrapper script outside the toolkit)."""
    roots = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda",
             str(Path(NVCC).resolve().parent.parent)]
    for root in filter(None, roots):
        if (Path(root) / "include" / "cuda_runtime_api.h").is_file():
            return Path(root) / "include"
    pytest.skip("cuda_runtime_api.h not found (set CUDA_HOME)")


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


def _cmake(build_dir: Path, *options: str) -> str:
    args = [CMAKE, "-S", ROOT, "-B", build_dir, "-DSEGRT_WARNINGS_AS_ERRORS=ON", *options]
    if shutil.which("ninja"):
        args += ["-G", "Ninja"]
    log = _run(args).stdout
    _run([CMAKE, "--build", build_dir, "-j", str(os.cpu_count() or 2)])
    return log


@pytest.fixture(scope="module")
def full_build(tmp_path_factory):
    """(build_dir, configure log, stub dir or None)."""
    if CMAKE is None:
        pytest.skip("cmake is not installed")
    work = tmp_path_factory.mktemp("cmake_full")
    options = ["-DCMAKE_CUDA_ARCHITECTURES=90"]
    stub = None
    if NVCC:
        options.append(f"-DCMAKE_CUDA_COMPILER={NVCC}")
        if TRT_INCLUDE and CXX:
            stub = work / "fake_trt"
            stub.mkdir()
            _run([CXX, "-std=c++17", "-shared", "-fPIC", "-Wl,-soname,libnvinfer.so.11", f"-isystem{TRT_INCLUDE}",
                  f"-isystem{_cuda_include()}", HERE / "fake_nvinfer.cpp", "-o", stub / "libnvinfer.so"])
            (stub / "libnvinfer.so.11").symlink_to("libnvinfer.so")  # the soname the loader looks for
            options += [f"-DTensorRT_INCLUDE_DIR={TRT_INCLUDE}", f"-DTensorRT_LIB_DIR={stub}"]
    else:
        options.append("-DSEGRT_BUILD_CUDA=OFF")
    build_dir = work / "build"
    return build_dir, _cmake(build_dir, *options), stub


def test_cpu_library_builds_and_loads(full_build):
    build_dir, log, _ = full_build
    assert "segrt: building libsegrt_roi_align_cpu.so" in log
    lib = ctypes.CDLL(str(build_dir / "libsegrt_roi_align_cpu.so"))
    assert lib.segrt_roi_align_abi_version() == 1


@pytest.mark.skipif(NVCC is None, reason=NO_NVCC)
def test_cuda_library_compiles_and_rejects_bad_launches_without_a_gpu(full_build):
    build_dir, log, _ = full_build
    assert "segrt: building libsegrt_roi_align_cuda.so" in log
    lib = ctypes.CDLL(str(build_dir / "libsegrt_roi_align_cuda.so"))
    assert lib.segrt_roi_align_cuda_abi_version() == 1
    fn = lib.segrt_roi_align_cuda
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_int32, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                   ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32, ctypes.c_int32, ctypes.c_float,
                   ctypes.c_int32, ctypes.c_int32, ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p]
    cuda_success, cuda_invalid_value = 0, 1
    # K = 0 returns at once (no launch, so no GPU needed); so do invalid arguments.
    assert fn(0, None, 1, 256, 50, 50, None, None, 0, 7, 7, 0.25, 2, 0, 0, None, None) == cuda_success
    assert fn(0, None, 1, 256, 50, 50, None, None, 5, 0, 7, 0.25, 2, 0, 0, None, None) == cuda_invalid_value
    assert fn(2, None, 1, 256, 50, 50, None, None, 5, 7, 7, 0.25, 2, 0, 0, None, None) == cuda_invalid_value
    assert fn(0, None, 1, 256, 50, 50, None, None, 5, 7, 7, 0.25, 2, 3, 0, None, None) == cuda_invalid_value


@pytest.mark.skipif(NVCC is None, reason=NO_NVCC)
@pytest.mark.skipif(TRT_INCLUDE is None, reason=NO_TRT)
def test_tensorrt_plugin_library_through_the_plugin_interfaces(full_build, tmp_path):
    build_dir, log, stub = full_build
    assert "segrt: building libsegrt_trt_plugins.so" in log
    plugin = build_dir / "libsegrt_trt_plugins.so"
    harness = tmp_path / "trt_plugin_harness"
    _run([CXX, "-std=c++17", "-Wall", "-Wextra", "-Werror", f"-isystem{TRT_INCLUDE}", f"-isystem{_cuda_include()}",
          HERE / "trt_plugin_harness.cpp", "-o", harness, f"-L{stub}", "-lnvinfer", f"-Wl,-rpath,{stub}", "-ldl"])
    env = {k: v for k, v in os.environ.items() if k != "SEGRT_TRT_PLUGIN_NO_AUTOREGISTER"}
    done = subprocess.run([harness, plugin], capture_output=True, text=True, env=env)
    assert done.returncode == 0 and "PASSED" in done.stdout, done.stdout + done.stderr
    done = subprocess.run([harness, plugin, "--no-autoregister"], capture_output=True, text=True,
                          env={**env, "SEGRT_TRT_PLUGIN_NO_AUTOREGISTER": "1"})
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(CMAKE is None, reason="cmake is not installed")
@pytest.mark.skipif(NVCC is None, reason="no CUDA toolkit: the plugin needs cuda_runtime_api.h")
@pytest.mark.skipif(TRT_INCLUDE is None, reason=NO_TRT)
def test_tensorrt_plugin_compiles_against_headers_only_without_warnings(tmp_path):
    log = _cmake(tmp_path / "build", "-DSEGRT_BUILD_CUDA=OFF", f"-DTensorRT_INCLUDE_DIR={TRT_INCLUDE}",
                 "-DSEGRT_TRT_HEADERS_ONLY=ON")
    assert "segrt: building TensorRT plugin objects (compile check only" in log
    names = {p.name.split(".")[0] for p in (tmp_path / "build").rglob("*.o")}
    assert {"roi_align_plugin", "multi_level_roi_align_plugin", "plugin_registration", "plugin_utils"} <= names
