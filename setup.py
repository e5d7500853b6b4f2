"""Build segrt: the Python package (folders mapped into the `segrt` namespace, see pyproject.toml)
and its native CPU RoIAlign library, compiled with CMake into segrt/_lib.

The library is the only compiled part; a wheel built here carries it (tag py3-none-<platform>,
made manylinux by `auditwheel repair`), so installing the wheel needs no compiler. The library
does not depend on Python's ABI: it is opened with ctypes.

Environment:
    SEGRT_CMAKE_ARGS   extra CMake arguments, e.g. "-DSEGRT_BUILD_CUDA=ON" (default: CPU library only)
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
LIBRARY = "libsegrt_roi_align_cpu.so"


class CMakeLibrary(Extension):
    """The shared library CMakeLists.txt builds, installed into the package folder ``package``."""

    def __init__(self, package: str) -> None:
        super().__init__(f"{package}.{LIBRARY.removesuffix('.so')}", sources=[])


class BuildCMake(build_ext):
    def build_extension(self, ext: Extension) -> None:
        assert isinstance(ext, CMakeLibrary)
        cmake = shutil.which("cmake")
        if cmake is None:
            raise RuntimeError(
                "building segrt from source needs CMake and a C++ compiler "
                "(or install a prebuilt segrt wheel, which needs neither)"
            )
        out_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        build_dir = Path(self.build_temp).resolve() / "cmake"
        args = [
            f"-DSEGRT_OUTPUT_DIR={out_dir}",
            "-DCMAKE_BUILD_TYPE=Release",
            "-DSEGRT_BUILD_CUDA=OFF",
            *shlex.split(os.environ.get("SEGRT_CMAKE_ARGS", "")),
        ]
        subprocess.run([cmake, "-S", str(ROOT), "-B", str(build_dir), *args], check=True)
        subprocess.run([cmake, "--build", str(build_dir), "--parallel", str(os.cpu_count() or 1)], check=True)
        if not (out_dir / LIBRARY).is_file():
            raise RuntimeError(f"CMake did not write {out_dir / LIBRARY}")

    def copy_extensions_to_source(self) -> None:
        # editable installs copy the library next to the sources (sdk/_lib), a folder git ignores
        build_py = self.get_finalized_command("build_py")
        for ext in self.extensions:
            Path(self._get_inplace_equivalent(build_py, ext)[0]).parent.mkdir(parents=True, exist_ok=True)
        super().copy_extensions_to_source()

    def get_ext_filename(self, fullname: str) -> str:
        """The library's own file name (not a Python extension's ``.cpython-311-...so``)."""
        if fullname.endswith(LIBRARY.removesuffix(".so")):
            return os.path.join(*fullname.split(".")) + ".so"
        return super().get_ext_filename(fullname)


class PlatformWheel(bdist_wheel):
    """py3-none-<platform>: the native library is plain C ABI, opened with ctypes."""

    def get_tag(self) -> tuple[str, str, str]:
        _, _, plat = super().get_tag()
        return "py3", "none", plat


def packages() -> list[str]:
    """Every package under sdk/ and export/, named in the segrt namespace (pyproject.toml's package-dir)."""
    names = []
    for folder, prefix in (("sdk", "segrt"), ("export", "segrt.export")):
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            parts = init.parent.relative_to(ROOT / folder).parts
            names.append(".".join((prefix, *parts)))
    return names


setup(
    packages=packages(),
    ext_modules=[CMakeLibrary("segrt._lib")],
    cmdclass={"build_ext": BuildCMake, "bdist_wheel": PlatformWheel},
)
