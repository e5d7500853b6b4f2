"""Where segrt's native libraries are found, and how they are opened (no torch, no TensorRT).

Three shared libraries are built from ``kernels/roi_align/`` (see ``CMakeLists.txt``):

==========================  ===========================  ==========================================
library                     environment variable         used by
==========================  ===========================  ==========================================
libsegrt_roi_align_cpu.so   ``SEGRT_ROI_ALIGN_LIB``      :mod:`segrt.ops` for numpy arrays
libsegrt_roi_align_cuda.so  ``SEGRT_ROI_ALIGN_CUDA_LIB`` :mod:`segrt.ops` for CUDA tensors
libsegrt_trt_plugins.so     ``SEGRT_PLUGIN_PATH``        :mod:`segrt.ops.plugins` (TensorRT engines)
==========================  ===========================  ==========================================

Each is looked for, in order, in: the folders the caller names (e.g. an engine's
folder), the entries of its environment variable (files or folders,
``os.pathsep``-separated), ``segrt/_lib/`` (where ``pip install`` puts them), and,
in a source checkout, its CMake folder ``build/`` and its subfolders. When none holds it,
:func:`find_library` raises an error that names every place searched and the
build command.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from segrt.errors import BackendUnavailableError

__all__ = [
    "CPU_ROI_ALIGN",
    "CUDA_ROI_ALIGN",
    "TRT_PLUGINS",
    "NativeLibrary",
    "find_library",
    "open_library",
    "search_paths",
]

#: Where ``pip install`` puts the libraries (read at call time, so tests may point it elsewhere).
PACKAGE_LIB_DIR = Path(__file__).resolve().parents[1] / "_lib"
#: The CMake build folder of this checkout (``cmake -S . -B build``); None for an installed package,
#: which has no checkout around it (site-packages/build is nobody's build folder).
_CHECKOUT = Path(__file__).resolve().parents[2]
BUILD_DIR: Path | None = _CHECKOUT / "build" if (_CHECKOUT / "CMakeLists.txt").is_file() else None


@dataclass(frozen=True)
class NativeLibrary:
    """One native library: its file name, what it is, and how to get it."""

    filename: str
    description: str
    env_var: str
    build: str
    #: Function returning the C ABI version (int32, no arguments); None: not checked.
    abi_symbol: str | None = None
    abi_version: int = 0
    #: Where else the library may go, said before the environment variable in the "not found" fix.
    place: str = ""
    #: What to do when the file exists but cannot be dlopen-ed (default: rebuild it).
    load_fix: str | None = None


CPU_ROI_ALIGN = NativeLibrary(
    filename="libsegrt_roi_align_cpu.so",
    description="the CPU RoIAlign library",
    env_var="SEGRT_ROI_ALIGN_LIB",
    build=(
        "`pip install -e .` from the repository root (puts it in segrt/_lib/), or "
        "`cmake -S . -B build -DSEGRT_BUILD_CUDA=OFF && cmake --build build -j` (then it is found in build/)"
    ),
    abi_symbol="segrt_roi_align_abi_version",  # SEGRT_ROI_ALIGN_ABI_VERSION in kernels/roi_align/roi_align_capi.h
    abi_version=1,
)
CUDA_ROI_ALIGN = NativeLibrary(
    filename="libsegrt_roi_align_cuda.so",
    description="the CUDA RoIAlign library",
    env_var="SEGRT_ROI_ALIGN_CUDA_LIB",
    build=(
        "on a machine with the CUDA toolkit, from the repository root: `cmake -S . -B build "
        "-DSEGRT_BUILD_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=<your GPU, e.g. 90> && cmake --build build -j`"
    ),
    abi_symbol="segrt_roi_align_cuda_abi_version",  # SEGRT_ROI_ALIGN_CUDA_ABI_VERSION in roi_align_kernel.h
    abi_version=1,
)
TRT_PLUGINS = NativeLibrary(
    filename="libsegrt_trt_plugins.so",
    description="the TensorRT plugin library (plugins SegrtRoiAlign, SegrtMultiLevelRoiAlign)",
    env_var="SEGRT_PLUGIN_PATH",
    place="put it next to the engine, or ",
    build=(
        "on a machine with CUDA and TensorRT, from the repository root: `cmake -S . -B build "
        "-DTensorRT_ROOT=/path/to/TensorRT (or -DTensorRT_INCLUDE_DIR=... -DTensorRT_LIB_DIR=...) && "
        "cmake --build build -j`"
    ),
    load_fix=(
        "it needs the libnvinfer it was built against: `pip install tensorrt` (matching major version) or add "
        "TensorRT's lib folder to LD_LIBRARY_PATH; or rebuild it against your TensorRT"
    ),
)


def _as_file(entry: Path, filename: str) -> Path:
    """A folder (or a suffix-less name) means the library inside it."""
    return entry / filename if entry.is_dir() or not entry.suffix else entry


def search_paths(library: NativeLibrary, extra_dirs: Sequence[str | Path] = ()) -> list[Path]:
    """Candidate paths of ``library``, in search order (see the module docstring)."""
    out = [_as_file(Path(d), library.filename) for d in extra_dirs]
    out += [_as_file(Path(e), library.filename) for e in os.environ.get(library.env_var, "").split(os.pathsep) if e]
    out.append(PACKAGE_LIB_DIR / library.filename)
    if BUILD_DIR is not None:
        out.append(BUILD_DIR / library.filename)
        if BUILD_DIR.is_dir():  # CMake build folders one level down (e.g. build/cuda/)
            out.extend(sorted(BUILD_DIR.glob(f"*/{library.filename}")))
    return out


def find_library(library: NativeLibrary, extra_dirs: Sequence[str | Path] = ()) -> Path:
    """Path of the first existing file of :func:`search_paths`.

    Raises:
        BackendUnavailableError: not found; names every place searched and the build command.
    """
    candidates = search_paths(library, extra_dirs)
    for path in candidates:
        if path.is_file():
            return path
    searched = "\n    ".join(str(p) for p in candidates)
    raise BackendUnavailableError(
        f"{library.description} {library.filename} is not built or not found; searched:\n    {searched}",
        f"build it {library.build}; or {library.place}point {library.env_var} at the file or its folder",
    )


def open_library(library: NativeLibrary, path: Path | None = None, mode: int = ctypes.DEFAULT_MODE) -> ctypes.CDLL:
    """dlopen ``library`` (found by :func:`find_library` unless ``path`` is given) and check its C ABI version.

    Raises:
        BackendUnavailableError: not found, not loadable, or built from another segrt version.
    """
    path = find_library(library) if path is None else path
    try:
        lib = ctypes.CDLL(str(path), mode=mode)
    except OSError as exc:
        fix = f"{library.load_fix}: {library.build}" if library.load_fix else f"rebuild it: {library.build}"
        raise BackendUnavailableError(f"{library.description} {path} cannot be loaded ({exc})", fix) from None
    if library.abi_symbol is not None:
        abi = getattr(lib, library.abi_symbol, None)
        if abi is None:
            raise BackendUnavailableError(
                f"{path} is not {library.description} (it has no {library.abi_symbol})",
                f"point {library.env_var} at {library.filename}, or build it {library.build}",
            )
        abi.restype = ctypes.c_int32
        abi.argtypes = []
        version = abi()
        if version != library.abi_version:
            raise BackendUnavailableError(
                f"{path} has C ABI version {version}, this segrt needs {library.abi_version}",
                f"rebuild it from this checkout: {library.build}",
            )
    return lib
