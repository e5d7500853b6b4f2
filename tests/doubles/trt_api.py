"""TensorRT's real Python bindings on a machine without TensorRT's libraries: fetch, link stubs, describe.

NVIDIA publishes the bindings alone as ``tensorrt-cu12-bindings`` wheels on PyPI (about
1.2 MB; the ``-libs`` wheels with libnvinfer are not installable here). The extension
module ``tensorrt_bindings/tensorrt.so`` links against libnvinfer, libnvonnxparser and
libnvinfer_plugin but needs only nine C symbols from them at load time. ``prepare``
downloads the wheel with ``pip download --no-deps``, unpacks it and compiles those nine
symbols (returning NULL/0) into stub libraries with the system C compiler; both are
cached under ``~/.cache/segrt-tests/tensorrt/<version>-py<python>``. With the stubs preloaded,
``import tensorrt_bindings`` works: every class, method, property and enum is there with
pybind11's signatures in ``__doc__``. Nothing can be built or run through them (the
factories return NULL): they are the reference for names and signatures only.

``describe(version)`` imports one version in a subprocess (two versions cannot share a
process) and returns its API as data::

    {"version": "10.13.3.9",
     "members": {"IExecutionContext.set_tensor_address":
                    {"kind": "method", "overloads": [[["name", "str", false], ["memory", "int", false]]],
                     "returns": ["bool"]},
                 "ILogger.Severity.ERROR": {"kind": "enum_member"}, ...}}

Each overload is a list of (parameter name, type text, has default) without ``self``.
Run as ``python -m tests.doubles.trt_api VERSION`` to print that JSON.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

VERSIONS = ("10.13.3.9", "11.4.0.106")  # one TensorRT 10 and one TensorRT 11 release
PACKAGE = "tensorrt-cu12-bindings"
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"  # the extension module is built per Python version
CACHE = Path(os.environ.get("SEGRT_TEST_CACHE", Path.home() / ".cache" / "segrt-tests")) / "tensorrt"
STUB_LIBRARIES = ("nvinfer", "nvonnxparser", "nvinfer_plugin")
STUB_SOURCE = """\
/* The nine symbols tensorrt_bindings/tensorrt.so needs from TensorRT's libraries; nothing works through them. */
#include <stddef.h>
void* createInferBuilder_INTERNAL(void* logger, int version) { return NULL; }
void* createInferRuntime_INTERNAL(void* logger, int version) { return NULL; }
void* createInferRefitter_INTERNAL(void* engine, void* logger, int version) { return NULL; }
void* createNvOnnxParser_INTERNAL(void* network, void* logger, int version) { return NULL; }
void* createNvOnnxParserRefitter_INTERNAL(void* refitter, void* logger, int version) { return NULL; }
void* getPluginRegistry(void) { return NULL; }
void* getBuilderPluginRegistry(int capability) { return NULL; }
int initLibNvInferPlugins(void* logger, const char* ns) { return 0; }
int getNvOnnxParserVersion(void) { return 0; }
"""


class Unavailable(Exception):
    """The bindings cannot be prepared here (no network, no compiler); the message says which."""


def _run(cmd: list[str], what: str, timeout: float = 300) -> None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"{what} failed: {exc}") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise Unavailable(f"{what} failed: {' | '.join(tail)}")


def prepare(version: str) -> Path:
    """Folder holding ``site/tensorrt_bindings`` and ``lib/lib*.so.<major>`` for ``version`` (cached)."""
    root = CACHE / f"{version}-py{PYTHON}"
    if (root / "ready").is_file():
        return root
    major = version.split(".")[0]
    tmp = root.with_name(root.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "lib").mkdir(parents=True)
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            PYTHON,
            "--disable-pip-version-check",
            "--retries",
            "1",
            "--timeout",
            "30",
            "-q",
            "-d",
            str(tmp / "wheel"),
            f"{PACKAGE}=={version}",
        ],
        f"pip download {PACKAGE}=={version} (PyPI unreachable?)",
    )
    wheel = next((tmp / "wheel").glob("*.whl"))
    with zipfile.ZipFile(wheel) as z:
        z.extractall(tmp / "site")
    (tmp / "stub.c").write_text(STUB_SOURCE)
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise Unavailable("no C compiler (cc) to build the TensorRT link stubs")
    for lib in STUB_LIBRARIES:
        name = f"lib{lib}.so.{major}"
        _run(
            [cc, "-shared", "-fPIC", "-O0", f"-Wl,-soname,{name}", "-o", str(tmp / "lib" / name), str(tmp / "stub.c")],
            f"compiling the {name} stub",
        )
    (tmp / "ready").write_text(version)
    shutil.rmtree(root, ignore_errors=True)
    os.replace(tmp, root)
    return root


def import_bindings(root: Path):
    """Import ``tensorrt_bindings`` from a prepared folder into this process (one version per process)."""
    major = root.name.split(".")[0]  # "10.13.3.9-py3.11" -> "10"
    for lib in STUB_LIBRARIES:  # RTLD_GLOBAL: the extension's NEEDED entries resolve to these sonames
        ctypes.CDLL(str(root / "lib" / f"lib{lib}.so.{major}"), mode=ctypes.RTLD_GLOBAL)
    sys.path.insert(0, str(root / "site"))
    import tensorrt_bindings

    return tensorrt_bindings


# ----------------------------------------------------------------------------- pybind11 signatures

_SIG = re.compile(r"^\s*(?:\d+\.\s+)?(\w+)\((.*)\)\s*(?:->\s*(.+))?$")


def _split_params(text: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur)
    return [p.strip() for p in out]


def parse_signatures(name: str, doc: str | None) -> list[tuple[list[tuple[str, str, bool]], str]]:
    """pybind11 overloads of ``name`` from its docstring: [(params [(name, type, has_default)], return type)]."""
    sigs = []
    for line in (doc or "").splitlines():
        m = _SIG.match(line)
        if not m or m.group(1) != name:
            continue
        params = []
        for p in _split_params(m.group(2)):
            if p in ("*args", "**kwargs"):
                params = None
                break
            head, _, default = p.partition("=")
            pname, _, ptype = head.partition(":")
            params.append((pname.strip(), ptype.strip(), bool(default.strip())))
        if params is None:
            continue
        if params and params[0][0] == "self":
            params = params[1:]
        sigs.append((params, (m.group(3) or "").strip()))
    return sigs


def _describe_module(trt) -> dict[str, Any]:
    import inspect

    members: dict[str, Any] = {}

    def visit(obj, prefix: str, depth: int) -> None:
        for attr in dir(obj):
            if attr.startswith("_") and attr not in ("__init__",):
                continue
            try:
                value = inspect.getattr_static(obj, attr)
            except AttributeError:
                continue
            path = f"{prefix}{attr}"
            raw = getattr(obj, attr, None)
            if isinstance(value, property) or type(value).__name__ == "property":
                members[path] = {"kind": "property", "doc": (value.__doc__ or "")[:400]}
            elif inspect.isclass(raw):
                if depth < 2 and (raw.__module__ or "").startswith("tensorrt"):
                    members[path] = {"kind": "class", "enum": hasattr(raw, "__members__")}
                    if hasattr(raw, "__members__"):
                        for m in raw.__members__:
                            members[f"{path}.{m}"] = {"kind": "enum_member"}
                    visit(raw, path + ".", depth + 1)
            elif inspect.isfunction(raw):  # plain Python in the bindings package (nptype, ...)
                params = [(p.name, "", p.default is not p.empty) for p in inspect.signature(raw).parameters.values()]
                members[path] = {"kind": "function", "overloads": [params], "returns": [""]}
            elif callable(raw):
                sigs = parse_signatures(attr, getattr(raw, "__doc__", None))
                if not sigs and attr == "__init__" and prefix:
                    continue  # object.__init__ of a class without a constructor
                members[path] = {
                    "kind": "method" if prefix else "function",
                    "overloads": [p for p, _ in sigs],
                    "returns": [r for _, r in sigs],
                }
            elif prefix and type(raw).__name__ == type(obj).__name__ and hasattr(obj, "__members__"):
                continue  # enum members are listed above
            else:
                members[path] = {"kind": "value", "type": type(raw).__name__}

    visit(trt, "", 0)
    return {"version": trt.__version__, "members": members}


@functools.cache
def describe(version: str) -> dict[str, Any]:
    """The API of the real bindings ``version`` (see the module docstring); raises ``Unavailable``."""
    root = prepare(version)
    cache = root / "api.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    here = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "tests.doubles.trt_api", str(root)],
        cwd=here,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise Unavailable(f"importing tensorrt_bindings {version} with link stubs failed: {done.stderr[-800:]}")
    cache.write_text(done.stdout)
    return json.loads(done.stdout)


if __name__ == "__main__":
    print(json.dumps(_describe_module(import_bindings(Path(sys.argv[1])))))
