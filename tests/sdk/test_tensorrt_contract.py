"""segrt's TensorRT code against TensorRT's real Python bindings (10.x and 11.x), on a machine without a GPU.

The bindings come from PyPI with link stubs (``tests/doubles/trt_api.py``); they carry every
name and pybind11 signature but cannot build or run anything. Checked here:

1. every TensorRT name segrt's sources use (``trt.X...`` chains and the methods/properties
   called on TensorRT objects) exists in both versions (one guarded exception);
2. every call segrt makes, recorded while the execution double runs the build and run paths,
   matches an overload of the real signature: argument count, keyword names, argument kinds
   (int handle, str, buffer, shape, enum, TensorRT object);
3. segrt's ``ILogger`` and ``IOutputAllocator`` subclasses work with the real base classes,
   and the real constructors and functions accept segrt's objects;
4. the execution double and the CUDA-runtime double define nothing the real modules lack,
   with the same parameter names.
"""

from __future__ import annotations

import ast
import enum
import inspect
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from segrt.errors import ArtifactError
from tests.doubles import cudart_double, tensorrt_double
from tests.doubles import trt_api as bindings

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [
    *sorted((ROOT / "sdk" / "backends" / "tensorrt").glob("*.py")),
    ROOT / "sdk" / "ops" / "plugins.py",
    ROOT / "export" / "to_engine.py",
]

# What segrt calls on TensorRT objects, by class. The AST test below keeps this table in step
# with the sources: any attribute the sources use that a real TensorRT class has must be here.
USED_MEMBERS = {
    "ICudaEngine": [
        "error_recorder",
        "num_io_tensors",
        "get_tensor_name",
        "is_shape_inference_io",
        "get_tensor_dtype",
        "get_tensor_shape",
        "get_tensor_mode",
        "get_tensor_profile_shape",
        "create_execution_context",
    ],
    "IExecutionContext": [
        "error_recorder",
        "set_input_shape",
        "get_tensor_shape",
        "set_output_allocator",
        "set_tensor_address",
        "execute_async_v3",
    ],
    "Runtime": ["__init__", "error_recorder", "deserialize_cuda_engine"],
    "IPluginRegistry": ["get_creator", "load_library"],
    "Builder": [
        "__init__",
        "error_recorder",
        "create_network",
        "create_builder_config",
        "create_optimization_profile",
        "build_serialized_network",
    ],
    "INetworkDefinition": ["num_inputs", "get_input"],
    "ITensor": ["name", "shape"],
    "OnnxParser": ["__init__", "parse", "parse_from_file", "num_errors", "get_error"],
    "ParserError": ["node", "node_name", "node_operator", "desc"],
    "IBuilderConfig": [
        "set_memory_pool_limit",
        "set_flag",
        "add_optimization_profile",
        "create_timing_cache",
        "set_timing_cache",
        "get_timing_cache",
    ],
    "IOptimizationProfile": ["set_shape"],
    "ITimingCache": ["serialize"],
    "ILogger": ["__init__", "log"],
    "IOutputAllocator": ["__init__"],
    "IErrorRecorder": [
        "__init__",
        "num_errors",
        "get_error_code",
        "get_error_desc",
        "has_overflowed",
        "clear",
        "report_error",
    ],
}
# Used only behind a check that it exists (TensorRT 11 builds strongly typed networks only).
GUARDED = {"BuilderFlag.FP16": 'hasattr(trt.BuilderFlag, "FP16")'}
# Attribute names the sources use on non-TensorRT objects that happen to be TensorRT member names too.
NOT_TENSORRT = {
    "shape",
    "name",
    "dtype",
    "get",
    "copy",
    "close",
    "free",
    "run",
    "items",
    "values",
    "append",
    "index",
    "remove",
    "update",
    "clear",
    "pop",
    "split",
    "strip",
    "join",
    "reshape",
    "view",
    "size",
    "nbytes",
    "is_file",
    "is_dir",
    "read_bytes",
    "write_bytes",
    "serialize_to_string",
    "parent",
    "data",
    "ops",
    "version",
    "device",
    "add",
    "release",
    "acquire",
    "destroy",
    "capture",
    "launch",
    "synchronize",
    "stream",
    "graph",
    "engine",
    "context",
    "flags",
    "profile",
    "builder",
    "network",
    "parser",
    "config",
    "inputs",
    "outputs",
    "errors",
    "buffers",
    "shapes",
    "allocator",
    "entries",
    "host",
    "path",
    "mode",
    "type",
    "format",
    "max",
    "min",
    "opt",
    "logger",
    "num_bindings",
    "reset",
    "setdefault",
    "count",
    "extend",
    "sort",
    "search",
    "resolve",
    "glob",
    "exists",
    "stat",
    "mkdir",
    "lower",
    "upper",
    "startswith",
    "endswith",
    "replace",
    "encode",
    "decode",
    "format_map",
    "keys",
    "report",
    "record_stream",
    "wait_stream",
    "element_size",
    "numel",
    "data_ptr",
    "contiguous",
    "detach",
    "numpy",
    "to",
    "is_cuda",
    "clone",
    "ptr",
    "array",
    "handle",
    "exec",
    "cache_size",
    "shape_key",
    "use_graph",
    "created",
    "closed",
    "entry",
    "plugin",
    "library",
    "op_type",
    "domain",
    "attribute",
    "node",
    "input",
    "output",
    "initializer",
    "dim",
    "dim_value",
    "HasField",
    "tensor_type",
    "metadata_props",
    "key",
    "value",
    "fix",
    "problem",
    "args",
    "level",
    "warn",
    "perf_counter",
    "hexdigest",
    "digest",
    "isoformat",
    "now",
    "tobytes",
    "cast",
    "enable",
    "print",
    "location",
    "num_layers",
    "itemsize",
    "metadata",
    "precision",
    "read",
    "FLOAT16",
}  # onnx.TensorProto.FLOAT16 (to_engine checks an fp16 ONNX)


def _trt_chains(tree: ast.AST) -> set[str]:
    """``trt.A.B`` attribute chains (the module's own names), without the ``trt.`` prefix."""
    chains = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            parts, cur = [], node
            while isinstance(cur, ast.Attribute):
                parts.append(cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name) and cur.id == "trt":
                chains.add(".".join(reversed(parts)))
    # keep the longest chains only (trt.ILogger.Severity.ERROR implies trt.ILogger)
    return {c for c in chains if not any(o != c and o.startswith(c + ".") for o in chains)}


def _attributes(tree: ast.AST) -> set[str]:
    """Attribute names used on objects (not the ``trt.A.B`` chains of the module's own names)."""
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Attribute):
            cur = n.value
            while isinstance(cur, ast.Attribute):
                cur = cur.value
            if not (isinstance(cur, ast.Name) and cur.id == "trt"):
                out.add(n.attr)
    return out


def _exists(members: dict, path: str) -> bool:
    if path in members:
        return True
    head, _, tail = path.rpartition(".")
    return tail in ("__version__", "name", "value") and head in members  # module/enum dunders


# ----------------------------------------------------------------------------- 1. names


def test_every_tensorrt_name_segrt_uses_exists_in_both_versions(trt_api):
    chains = set().union(*(_trt_chains(ast.parse(p.read_text())) for p in SOURCES))
    assert any(c.startswith("__version__") for c in chains)  # trt.__version__: in every release (api["version"])
    chains = {c for c in chains if not c.startswith("__version__")}
    assert {
        "ILogger.Severity.WARNING",
        "Runtime",
        "TensorIOMode.INPUT",
        "BuilderFlag.FP16",
        "IErrorRecorder.__init__",
        "ErrorCodeTRT.UNSPECIFIED_ERROR",
    } <= chains  # parsed
    used = chains | {f"{cls}.{m}" for cls, ms in USED_MEMBERS.items() for m in ms}
    for version, api in trt_api.items():
        members = api["members"]
        missing = sorted(n for n in used if not _exists(members, n) and n not in GUARDED)
        assert not missing, f"TensorRT {version} lacks {missing}"
    assert "BuilderFlag.FP16" in trt_api["10.13.3.9"]["members"]
    assert "BuilderFlag.FP16" not in trt_api["11.4.0.106"]["members"]
    source = (ROOT / "export" / "to_engine.py").read_text()
    for name, guard in GUARDED.items():
        assert guard in source, f"{name} is absent in TensorRT 11 and must stay behind `{guard}`"


def test_the_table_of_used_members_covers_the_sources(trt_api):
    """An attribute used in segrt's TensorRT code that some real TensorRT class has must be in USED_MEMBERS."""
    members = trt_api["10.13.3.9"]["members"]
    trt_member_names = {k.rsplit(".", 1)[1] for k, v in members.items() if "." in k and v["kind"] != "class"}
    tabled = {m for ms in USED_MEMBERS.values() for m in ms}
    used = set().union(*(_attributes(ast.parse(p.read_text())) for p in SOURCES))
    untabled = sorted((used & trt_member_names) - tabled - NOT_TENSORRT)
    assert not untabled, f"add these to USED_MEMBERS (or NOT_TENSORRT if they are not TensorRT calls): {untabled}"


# ----------------------------------------------------------------------------- 2. signatures of recorded calls


def _kind_ok(value, type_text: str) -> bool:
    t = type_text.replace("tensorrt_bindings.tensorrt.", "").strip()
    if t in ("", "object", "handle"):
        return True
    if t in ("int", "typing.SupportsInt"):
        return isinstance(value, (int, np.integer)) and not isinstance(value, enum.Enum)
    if t in ("float", "typing.SupportsFloat"):
        return isinstance(value, (int, float, np.number)) and not isinstance(value, enum.Enum)
    if t == "bool":
        return isinstance(value, (bool, np.bool_))
    if t == "str":
        return isinstance(value, str)
    if t in ("buffer", "typing_extensions.Buffer"):
        if isinstance(value, str):
            return False
        try:
            memoryview(value)
        except TypeError:
            return False
        return True
    if t in ("Dims", "tuple", "list") or t.startswith(("List[int]", "typing.Sequence[typing.SupportsInt]")):
        return isinstance(value, (tuple, list)) and all(isinstance(d, (int, np.integer)) for d in value)
    if t in ("capsule", "typing_extensions.CapsuleType"):
        return type(value).__module__.startswith(("tensorrt", "segrt", tensorrt_double.__name__))
    # a TensorRT class or enum: the value's class, or one of its bases, has that (last) name
    want = t.rsplit(".", 1)[-1]
    return any(c.__name__ == want for c in type(value).__mro__)


def _matches(overload, args, kwargs) -> str | None:
    """None if the call fits the overload, else why not."""
    names = [p[0] for p in overload]
    if len(args) > len(overload):
        return f"{len(args)} positional arguments, the signature has {len(overload)}"
    unknown = [k for k in kwargs if k not in names]
    if unknown:
        return f"unknown keyword(s) {unknown}; parameters are {names}"
    # strict=False: trailing parameters with defaults may be left out of ``args``
    for (pname, ptype, _has_default), value in zip(overload, args, strict=False):
        if not _kind_ok(value, ptype):
            return f"{pname}: {type(value).__name__} where the binding takes {ptype}"
    for pname, ptype, has_default in overload[len(args) :]:
        if pname in kwargs:
            if not _kind_ok(kwargs[pname], ptype):
                return f"{pname}: {type(kwargs[pname]).__name__} where the binding takes {ptype}"
        elif not has_default:
            return f"required parameter {pname!r} not passed"
    return None


@pytest.fixture
def recorded_calls(trt_double, monkeypatch):
    """Every call segrt makes into the TensorRT double: (qualified name, args, kwargs)."""
    calls: list[tuple[str, tuple, dict]] = []
    internal = {"session", "output_shapes", "has", "reset", "configure"}  # the double's own helpers

    def wrap(qual, fn):
        def recorder(*args, **kwargs):
            frame = sys._getframe(1)
            if not frame.f_globals.get("__name__", "").startswith(tensorrt_double.__name__):
                calls.append((qual, args, kwargs))
            return fn(*args, **kwargs)

        return recorder

    for name, obj in vars(tensorrt_double).items():
        if name.startswith("_") or name in internal:
            continue
        if inspect.isfunction(obj) and obj.__module__ == tensorrt_double.__name__:
            monkeypatch.setattr(tensorrt_double, name, wrap(name, obj))
        elif inspect.isclass(obj) and obj.__module__ == tensorrt_double.__name__ and not issubclass(obj, enum.Enum):
            for attr, fn in list(vars(obj).items()):
                if inspect.isfunction(fn) and (not attr.startswith("_") or attr == "__init__") and attr not in internal:

                    def method(self, *args, _fn=fn, _q=f"{name}.{attr}", **kwargs):
                        frame = sys._getframe(1)
                        if not frame.f_globals.get("__name__", "").startswith(tensorrt_double.__name__):
                            calls.append((_q, args, kwargs))
                        return _fn(self, *args, **kwargs)

                    monkeypatch.setattr(obj, attr, method)
    return calls


def _plugin_model(path: Path, name_the_plugin: bool = True) -> Path:
    """A one-node graph using segrt's plugin op, with the plugin named in its metadata (parsed, never run)."""
    import onnx
    from onnx import TensorProto, helper

    from segrt.artifact import metadata as md

    node = helper.make_node("SegrtMultiLevelRoiAlign", ["rois", "f0"], ["y"], domain="segrt")
    graph = helper.make_graph(
        [node],
        "p",
        [
            helper.make_tensor_value_info("rois", TensorProto.FLOAT, [4, 4]),
            helper.make_tensor_value_info("f0", TensorProto.FLOAT, [1, 2, 8, 8]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 2, 7, 7])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("segrt", 1)])
    meta = {
        "kind": "maskrcnn",
        "class_names": ["bg", "x"],
        "input_channels": 2,
        "input_size": [8, 8],
        "normalization": {"scale": 1.0, "mean": [0.0, 0.0], "std": [1.0, 1.0]},
        "input_name": "f0",
        "plugin": {
            "library": "libsegrt_trt_plugins.so",
            "version": "1",
            "namespace": "segrt",
            "ops": ["SegrtMultiLevelRoiAlign"],
        }
        if name_the_plugin
        else None,
    }
    helper.set_model_props(model, {md.METADATA_KEY: md.encode(meta)})
    onnx.save(model, str(path))
    return path


def test_every_call_segrt_makes_matches_the_real_signatures(
    recorded_calls, trt_double, trt_api, tmp_path, plugin_library_standin
):
    from segrt.backends.tensorrt import TensorRTBackend
    from segrt.export.to_engine import onnx_to_engine
    from tests.export.test_to_engine import conv_relu_model
    from tests.sdk.test_tensorrt_double import _nonzero_engine

    onnx_path = conv_relu_model(tmp_path / "m.onnx")
    cache = tmp_path / "trt.cache"
    engine = onnx_to_engine(onnx_path, precision="fp16", fp16_mode="builder_flag", max_batch=2, timing_cache=cache)
    onnx_to_engine(onnx_path, tmp_path / "again.engine", max_batch=2, timing_cache=cache)  # reads the cache
    onnx_to_engine(onnx_path, tmp_path / "strong.engine", precision="fp16", fp16_mode="fp16_onnx", max_batch=2)
    x = np.zeros((1, 2, 16, 16), np.float32)
    with TensorRTBackend(engine, use_cuda_graph=True) as be:
        be.run({"image": x})
        be.run({"image": x})
    with TensorRTBackend(_nonzero_engine(tmp_path)) as be:
        be.run({"x": np.ones(3, np.float32)})
    from segrt.artifact.engine_file import read_engine_file
    from segrt.export.to_engine import wrap_plan

    (tmp_path / "bare.plan").write_bytes(bytes(read_engine_file(engine)[1]))  # as trtexec --saveEngine writes it
    wrapped = wrap_plan(tmp_path / "bare.plan", onnx_path, tmp_path / "wrapped.engine", precision="fp16")
    with TensorRTBackend(wrapped) as be:
        assert be.profiles["image"][2] == (2, 2, 64, 64)  # read back from the plan
        be.run({"image": x})
    onnx_to_engine(_plugin_model(tmp_path / "p.onnx"), tmp_path / "p.engine", plugin_dirs=[plugin_library_standin])
    trt_double.reset()  # a fresh registry, and metadata that does not name the plugin: the parser fails
    with pytest.raises(ArtifactError, match=r"node #0 .*SegrtMultiLevelRoiAlign.*Plugin not found"):
        onnx_to_engine(_plugin_model(tmp_path / "q.onnx", name_the_plugin=False), tmp_path / "q.engine")

    called = {q for q, _, _ in recorded_calls}
    expected = {
        "Runtime.deserialize_cuda_engine",
        "IExecutionContext.execute_async_v3",
        "IExecutionContext.set_tensor_address",
        "IExecutionContext.set_output_allocator",
        "Builder.build_serialized_network",
        "OnnxParser.parse",
        "OnnxParser.parse_from_file",
        "IBuilderConfig.set_flag",
        "IBuilderConfig.set_timing_cache",
        "IPluginRegistry.load_library",
        "ICudaEngine.get_tensor_profile_shape",
        "IBuilderConfig.create_timing_cache",
        "OnnxParser.get_error",
        "ParserError.node",
        "ParserError.node_name",
        "ParserError.node_operator",
        "ParserError.desc",
        "IPluginRegistry.get_creator",
        "init_libnvinfer_plugins",
        "nptype",
        "IOptimizationProfile.set_shape",
    }
    assert expected <= called, sorted(expected - called)
    for version, api in trt_api.items():
        members = api["members"]
        for qual, args, kwargs in recorded_calls:
            real = members.get(qual)
            assert real is not None, f"segrt calls {qual}, which TensorRT {version} does not have"
            if real["kind"] == "property":
                continue
            reasons = [_matches(o, args, kwargs) for o in real["overloads"]]
            assert None in reasons, (
                f"TensorRT {version}: segrt calls {qual} with "
                f"{[type(a).__name__ for a in args]} {sorted(kwargs)}: {reasons}"
            )


# ----------------------------------------------------------------------------- 3. subclasses and real calls

_REAL_CHECK = r"""
import inspect, json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from tests.doubles import trt_api, cudart_double
trt = trt_api.import_bindings(Path(sys.argv[1]))
from segrt.backends import cuda_rt
from segrt.backends.tensorrt.api import make_error_recorder, make_output_allocator, process_logger
out = {}
logger = process_logger(trt)                        # calls the real init_libnvinfer_plugins with it (stub: False)
out["same_logger"] = process_logger(trt) is logger
S = trt.ILogger.Severity
for sev in (S.INTERNAL_ERROR, S.ERROR, S.WARNING, S.INFO, S.VERBOSE):
    logger.log(sev, f"message {sev.name}")           # as TensorRT calls it: a real Severity, a str
out["is_ilogger"] = isinstance(logger, trt.ILogger)
out["init_plugins"] = trt.init_libnvinfer_plugins(logger, "")   # converts the logger; the stub says False
recorder = make_error_recorder(trt, "m.engine")
out["is_recorder"] = isinstance(recorder, trt.IErrorRecorder)
mark = recorder.mark()
out["fatal"] = recorder.report_error(trt.ErrorCodeTRT.INVALID_ARGUMENT, "bad shape")  # as TensorRT calls it
out["recorded"] = [recorder.num_errors(), recorder.get_error_desc(0), recorder.get_error_code(0).name,
                   recorder.has_overflowed()]
out["recorder_params"] = {m: [p for p in inspect.signature(getattr(type(recorder), m)).parameters if p != "self"]
                          for m in ("num_errors", "get_error_code", "get_error_desc", "has_overflowed", "clear",
                                    "report_error")}
for factory in ("Runtime", "Builder"):
    try:
        getattr(trt, factory)(logger)
        out[factory] = "constructed"
    except TypeError as exc:                            # "incompatible" = wrong arguments; nullptr = stub factory
        out[factory] = str(exc)
alloc = make_output_allocator(trt, recorder)
out["is_allocator"] = isinstance(alloc, trt.IOutputAllocator)
doc = trt.IOutputAllocator.__doc__
def names(fn):  # the documented override, by parameter names (segrt's may carry annotations)
    return "(%s)" % ", ".join(inspect.signature(fn).parameters)
out["doc_methods"] = {m: ("def %s%s" % (m, names(getattr(type(alloc), m)))) in doc
                      for m in ("reallocate_output", "reallocate_output_async", "notify_shape")}
out["logger_doc"] = ("def log%s" % names(type(logger).log)) in trt.ILogger.__doc__
# with no GPU, cudaMalloc fails: the callback must answer 0 and log, not raise
out["ptr_no_gpu"] = alloc.reallocate_output_async("idx", 0, 1024, 256, 0)
cuda_rt.import_cudart = lambda: cudart_double
out["ptr_double"] = alloc.reallocate_output_async("idx", 0, 1024, 256, 0)
alloc.notify_shape("idx", trt.Dims([2, 3]))         # TensorRT passes a Dims
out["shape"] = list(alloc.shapes["idx"])
out["nptype"] = {n: str(trt.nptype(getattr(trt.DataType, n))) for n in ("FLOAT", "HALF", "INT32", "INT64", "UINT8", "BOOL")}
out["errors_after"] = recorder.since(mark + 1)
print(json.dumps(out))
"""


@pytest.mark.parametrize("version", bindings.VERSIONS)
def test_segrt_subclasses_work_with_the_real_base_classes(trt_api, version, tmp_path):
    assert version in trt_api  # the fixture prepared it (or skipped)
    root = bindings.prepare(version)
    done = subprocess.run(
        [sys.executable, "-c", _REAL_CHECK, str(root), str(ROOT)], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["is_ilogger"] and out["is_allocator"] and out["is_recorder"] and out["same_logger"]
    assert "[TensorRT ERROR] message ERROR" in done.stderr and "message INFO" not in done.stderr  # warnings up
    assert out["init_plugins"] is False  # called and converted; the stub library answers False
    assert out["fatal"] is False and out["recorded"] == [1, "m.engine: bad shape", "INVALID_ARGUMENT", False]
    members = trt_api[version]["members"]
    for method, params in out["recorder_params"].items():  # pybind11 names the overridable parameters argN
        assert params in [[p[0] for p in o] for o in members[f"IErrorRecorder.{method}"]["overloads"]], method
    for factory in ("Runtime", "Builder"):
        assert "factory function returned nullptr" in out[factory], out[factory]  # arguments accepted
    assert out["doc_methods"] == {"reallocate_output": True, "reallocate_output_async": True, "notify_shape": True}
    assert out["logger_doc"]
    assert (
        out["ptr_no_gpu"] == 0 and "m.engine: could not allocate 1024 bytes for output 'idx'" in out["errors_after"][0]
    )
    assert out["ptr_double"] % 256 == 0 and out["ptr_double"] != 0
    assert out["shape"] == [2, 3]
    assert out["nptype"]["HALF"] == "<class 'numpy.float16'>" and out["nptype"]["INT64"] == "<class 'numpy.int64'>"


# ----------------------------------------------------------------------------- 4. the doubles follow the real modules


def _double_members(module) -> dict[str, object]:
    found = {}
    for name, obj in vars(module).items():
        if (
            name.startswith("_")
            or inspect.ismodule(obj)
            or getattr(obj, "__module__", module.__name__) != module.__name__
        ):
            continue
        if name in (
            "reset",
            "CrossedIntoTensorRT",
            "annotations",
            "enqueue",
            "flush",
            "is_capturing",
            "live_allocations",
            "STATE",
            "ALIGN",
            "configure",
            "VERSIONS",
            "ContractViolation",
            "violation",
            "pending_work",
        ):
            continue  # the doubles' own test hooks, not TensorRT/CUDA names
        found[name] = obj
        if inspect.isclass(obj):
            for attr, value in vars(obj).items():
                if isinstance(value, type) and issubclass(value, enum.Enum):
                    found[f"{name}.{attr}"] = value
                    found.update({f"{name}.{attr}.{m}": None for m in value.__members__})
                elif attr == "__init__" or not attr.startswith("_"):
                    if attr in ("has", "session", "output_shapes", "loaded", "model", "profile", "logger"):
                        continue
                    found[f"{name}.{attr}"] = value
            if issubclass(obj, enum.Enum):
                found.update({f"{name}.{m}": None for m in obj.__members__})
    return found


def _param_names(fn) -> list[str]:
    return [p for p in inspect.signature(fn).parameters if p != "self"]


@pytest.mark.parametrize("version", bindings.VERSIONS)
def test_the_tensorrt_double_defines_only_real_names_with_real_parameter_names(trt_api, version):
    """Playing each release, the double defines only what that release's bindings have (11: no BuilderFlag.FP16)."""
    members = trt_api[version]["members"]
    tensorrt_double.configure(version)
    try:
        found = _double_members(tensorrt_double)
    finally:
        tensorrt_double.configure(tensorrt_double.VERSIONS[0])
    assert ("BuilderFlag.FP16" in found) == ("BuilderFlag.FP16" in members)
    for recorded in ("Builder", "Runtime", "ICudaEngine", "IExecutionContext"):  # inherited from one helper
        assert f"{recorded}.error_recorder" in members and hasattr(getattr(tensorrt_double, recorded), "error_recorder")
    for qual, obj in found.items():
        assert qual in members, f"the double defines {qual}, which TensorRT does not have"
        real = members[qual]
        if inspect.isfunction(obj) and real["kind"] in ("method", "function"):
            names = _param_names(obj)
            assert any([p[0] for p in o] == names for o in real["overloads"]), (
                f"{qual}{names} differs from TensorRT's {[[p[0] for p in o] for o in real['overloads']]}"
            )
        if isinstance(obj, property):
            assert real["kind"] == "property", f"{qual} is a property in the double, a {real['kind']} in TensorRT"
    assert tuple(tensorrt_double.VERSIONS) == tuple(bindings.VERSIONS)


def test_the_cuda_double_defines_only_real_cuda_python_names():
    cudart = pytest.importorskip("cuda.bindings.runtime", reason="needs cuda (pip install -e '.[dev]')")
    for qual, obj in _double_members(cudart_double).items():
        head, _, tail = qual.partition(".")
        assert hasattr(cudart, head), f"cuda-python has no {head}"
        if tail:
            assert hasattr(getattr(cudart, head), tail.split(".")[0]), f"cuda-python has no {qual}"
        elif inspect.isfunction(obj):
            assert _param_names(obj) == list(inspect.signature(getattr(cudart, head)).parameters), qual
