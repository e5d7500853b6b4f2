"""A CPU execution double of the TensorRT Python API segrt uses (tests only).

It plays TensorRT's part so that segrt's orchestration (building, the engine header,
loading, plugin loading, profiles, shapes, addresses, streams, CUDA graphs, the output
allocator, the context pool) runs in CI without a GPU:

* ``Builder``/``OnnxParser`` "build" a plan that is the ONNX model itself plus the
  optimization profile, behind a magic and the double's version;
* ``Runtime`` deserializes it into an ``ICudaEngine`` that answers the tensor-name
  API from the ONNX graph; an ``IExecutionContext`` executes it with ONNX Runtime on
  host memory, reading inputs from and writing outputs to the addresses it was given
  (the CUDA double's "device memory"), in stream order (``cudart_double.enqueue``);
* plugin nodes (``SegrtMultiLevelRoiAlign``) need their creators in the plugin registry,
  which ``IPluginRegistry.load_library`` of segrt's plugin library fills; they run on
  segrt's C++ CPU kernel (``segrt.export.maskrcnn.ort_plugin``).

What it is not: TensorRT. No kernels, no precision, no timing: nothing it computes is a
TensorRT result, and tests report nothing from it but agreement with ONNX Runtime.
Every class, method, parameter name and enum member defined here exists in the real
bindings (``tests/segrt/test_tensorrt_contract.py`` checks it against both versions).
It is injected as ``sys.modules["tensorrt"]`` by a fixture, never installed.

Like TensorRT's C++ side, it calls the Python ``ILogger``/``IErrorRecorder``/``IOutputAllocator``
overrides as callbacks; an exception escaping one of them would abort a real process, so here it
raises ``CrossedIntoTensorRT`` (a ``BaseException``), which tests must never see.

It plays one release at a time: ``configure("10.13.3.9")`` (the default) or
``configure("11.4.0.106")``, which has no ``BuilderFlag.FP16`` and builds strongly typed
networks only; each is held to its own real bindings by the contract test.

Contracts it enforces (``cudart_double.violation``: recorded, raised as ``ContractViolation``,
and the ``trt_double`` fixture fails a test that leaves one behind), each from TensorRT's text:

* **One logger per process.** ``NvInferRuntime.h``/``NvInfer.h``: ``getLogger()`` returns the one
  logger TensorRT holds; a Builder/Runtime created with a different logger makes TensorRT warn that
  the first one stays in use (NVIDIA/TensorRT#1475); ``init_libnvinfer_plugins`` stores it as a
  raw pointer (the binding keeps no reference), so it must outlive everything. Here a second,
  different logger is a violation, and the first is held by a weak reference only: logging
  through it after it was garbage-collected is a violation (a real process would call freed memory).
* **Errors go to an error recorder when one is set** (``NvInferRuntime.h``: "If an error
  recorder is not set, messages will be sent to the global log stream"); an engine takes its
  runtime's recorder and a context its engine's, unless set on them.
* **Changed context state.** ``NvInferRuntime.h`` (``IPluginV3OneRuntime::onShapeChange``):
  the next ``enqueueV3`` redoes shape-dependent work "if an input binding is changed via
  setInputTensorAddress() or setTensorAddress() or setInputShape()" (the Python bindings 10.13 and
  11.4 expose no ``set_input_tensor_address``: ``set_tensor_address`` covers it). Such work cannot be in a
  CUDA graph, so capturing while the state is changed, or launching a graph captured before
  the change while it is pending, is a violation; a plain ``execute_async_v3`` settles it. A
  graph captured before the context's input shapes changed is never valid again (TensorRT may
  re-plan the context's internal memory for new shapes; trtexec captures one graph per context,
  after a warm-up enqueue, and never changes that context again).
* **Destroying a context with queued work** (``enqueueV3``: releasing memory registered for the
  tensors before stream synchronization is undefined behaviour) is a violation.
* **A pending CUDA error fails the next enqueue** (``cudart_double`` docstring).
* **``load_library`` returns None if any of the library's plugins are already registered**
  (``NvInferRuntimeCommon.h``, ``IPluginRegistry::loadLibrary``).
"""

from __future__ import annotations

import enum
import json
import threading
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from . import cudart_double

VERSIONS = ("10.13.3.9", "11.4.0.106")  # the releases it can play (tests/doubles/trt_api.VERSIONS)
__version__ = VERSIONS[0]  # the one it plays now (configure)

_MAGIC = b"SEGRT-TRT-DOUBLE-PLAN\0"
_ONNX_TO_NUMPY = {1: np.float32, 10: np.float16, 3: np.int8, 6: np.int32, 9: np.bool_, 2: np.uint8, 7: np.int64}
_ALIGNMENT = 256


class CrossedIntoTensorRT(BaseException):
    """A Python exception escaped a callback into TensorRT's C++ (a real process would abort)."""


def _new(cls, *args):
    """An instance of a class TensorRT only hands out (no public constructor in the real bindings)."""
    obj = cls.__new__(cls)
    obj._setup(*args)
    return obj


def _callback(method, *args):
    try:
        return method(*args)
    except BaseException as exc:
        raise CrossedIntoTensorRT(f"{type(exc).__name__} escaped {method.__qualname__}: {exc}") from exc


# ----------------------------------------------------------------------------- enums and types


class DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    INT64 = 8


_NUMPY_OF = {
    DataType.FLOAT: np.float32,
    DataType.HALF: np.float16,
    DataType.INT8: np.int8,
    DataType.INT32: np.int32,
    DataType.BOOL: np.bool_,
    DataType.UINT8: np.uint8,
    DataType.INT64: np.int64,
}
_DATATYPE_OF = {np.dtype(v): k for k, v in _NUMPY_OF.items()}


def nptype(trt_type):
    """numpy type of a ``DataType``."""
    return _NUMPY_OF[DataType(trt_type)]


class TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class _BuilderFlag10(enum.IntEnum):
    FP16 = 0  # the double builds fp32 whatever the flags (it has no kernels)
    TF32 = 6


class _BuilderFlag11(enum.IntEnum):  # TensorRT 11: strongly typed networks only, no precision flags
    TF32 = 6


BuilderFlag = _BuilderFlag10
BuilderFlag.__name__ = BuilderFlag.__qualname__ = "BuilderFlag"
_BuilderFlag11.__name__ = _BuilderFlag11.__qualname__ = "BuilderFlag"


class ErrorCodeTRT(enum.IntEnum):
    SUCCESS = 0
    UNSPECIFIED_ERROR = 1
    INTERNAL_ERROR = 2
    INVALID_ARGUMENT = 3
    INVALID_CONFIG = 4
    FAILED_ALLOCATION = 5
    FAILED_INITIALIZATION = 6
    FAILED_EXECUTION = 7
    FAILED_COMPUTATION = 8
    INVALID_STATE = 9
    UNSUPPORTED_STATE = 10


class NetworkDefinitionCreationFlag(enum.IntEnum):
    STRONGLY_TYPED = 1


class MemoryPoolType(enum.IntEnum):
    WORKSPACE = 0


class ILogger:
    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    def __init__(self) -> None:
        pass

    def log(self, severity, msg):
        raise NotImplementedError("ILogger.log must be overridden")


_logger_ref: Any = None  # weakref to the process's logger: TensorRT holds a raw pointer, no reference


def _adopt_logger(logger) -> None:
    """Every API that takes a logger: the first one becomes the process's, another one is a violation."""
    global _logger_ref
    current = _logger_ref() if _logger_ref is not None else None
    if _logger_ref is not None and current is None:
        cudart_double.violation(
            "a TensorRT logger was garbage-collected while TensorRT still holds it "
            "(the logger must outlive every TensorRT object; keep one for the process)"
        )
    if current is None:
        _logger_ref = weakref.ref(logger)
    elif current is not logger:
        cudart_double.violation(
            "a second, different ILogger: TensorRT keeps one logger per process "
            "(NVIDIA/TensorRT#1475); errors would go to the first one"
        )


def _log(severity, msg: str) -> None:
    logger = _logger_ref() if _logger_ref is not None else None
    if logger is None:
        if _logger_ref is not None:
            cudart_double.violation(f"TensorRT logged {msg!r} through a logger that was garbage-collected")
        return  # no logger was ever given: TensorRT's default logger prints nothing here
    _callback(logger.log, severity, msg)


def _report(recorder, msg: str, code: ErrorCodeTRT = None) -> None:  # type: ignore[assignment]
    """An error: to ``recorder`` if one is set (NvInferRuntime.h), else to the process's logger."""
    if recorder is not None:
        _callback(recorder.report_error, code if code is not None else ErrorCodeTRT.UNSPECIFIED_ERROR, msg)
    else:
        _log(ILogger.Severity.ERROR, msg)


class IErrorRecorder:
    MAX_DESC_LENGTH = 127

    def __init__(self) -> None:
        pass


class IOutputAllocator:
    def __init__(self) -> None:
        pass


class IHostMemory(bytes):
    """Serialized bytes (the real one exposes the buffer protocol too)."""

    @property
    def nbytes(self) -> int:
        return len(self)


def init_libnvinfer_plugins(logger, namespace):
    _adopt_logger(logger)
    return True


# ----------------------------------------------------------------------------- plugin registry


class IPluginCreatorV3One:
    def __init__(self) -> None:
        self._name = self._version = self._namespace = ""

    @classmethod
    def _for(cls, name: str, version: str, namespace: str) -> IPluginCreatorV3One:
        creator = cls()
        creator._name, creator._version, creator._namespace = name, version, namespace
        return creator

    @property
    def name(self) -> str:
        return self._name

    @property
    def plugin_version(self) -> str:
        return self._version

    @property
    def plugin_namespace(self) -> str:
        return self._namespace


class IPluginRegistry:
    def _setup(self) -> None:
        self._creators: dict[tuple[str, str, str], IPluginCreatorV3One] = {}
        self.loaded: list[str] = []

    def get_creator(self, type, version, plugin_namespace=""):
        return self._creators.get((type, version, plugin_namespace))

    def load_library(self, plugin_path):
        """Loading segrt's plugin library registers its creators (served by the C++ CPU kernel here)."""
        from segrt.ops.plugins import PLUGIN_LIBRARY, PLUGIN_NAMES, PLUGIN_NAMESPACE, PLUGIN_VERSION

        if not Path(plugin_path).is_file():
            return None
        if Path(plugin_path).name == PLUGIN_LIBRARY:
            already = [op for op in PLUGIN_NAMES if (op, PLUGIN_VERSION, PLUGIN_NAMESPACE) in self._creators]
            if already:  # NvInferRuntimeCommon.h: "nullptr if any of the plugins are already registered"
                _log(ILogger.Severity.ERROR, f"loadLibrary: {plugin_path}: plugin(s) {already} are already registered")
                return None
        self.loaded.append(str(plugin_path))
        if Path(plugin_path).name == PLUGIN_LIBRARY:
            for op in PLUGIN_NAMES:
                self._creators[(op, PLUGIN_VERSION, PLUGIN_NAMESPACE)] = IPluginCreatorV3One._for(
                    op, PLUGIN_VERSION, PLUGIN_NAMESPACE
                )
        return object()

    def has(self, op: str) -> bool:
        return any(key[0] == op for key in self._creators)


_REGISTRY = _new(IPluginRegistry)


def get_plugin_registry():
    return _REGISTRY


def reset() -> None:
    """An empty plugin registry and no logger (as in a fresh process); the release played stays."""
    global _REGISTRY, _logger_ref
    _REGISTRY = _new(IPluginRegistry)
    _logger_ref = None


def configure(version: str) -> None:
    """Play TensorRT ``version`` (one of ``VERSIONS``): its version string and its ``BuilderFlag``."""
    global __version__, BuilderFlag
    if version not in VERSIONS:
        raise ValueError(f"the double plays {VERSIONS}, not {version}")
    __version__ = version
    BuilderFlag = _BuilderFlag10 if version.startswith("10.") else _BuilderFlag11


def _major() -> int:
    return int(__version__.split(".")[0])


# ----------------------------------------------------------------------------- network, parser, builder


def _dims(value_info) -> tuple[int, ...]:
    return tuple(d.dim_value if d.HasField("dim_value") else -1 for d in value_info.type.tensor_type.shape.dim)


def _graph_io(model) -> tuple[list, list]:
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits], list(model.graph.output)


class ITensor:
    def _setup(self, value_info) -> None:
        self._name = value_info.name
        self._shape = _dims(value_info)
        self._dtype = _DATATYPE_OF[np.dtype(_ONNX_TO_NUMPY[value_info.type.tensor_type.elem_type])]

    @property
    def name(self) -> str:
        return self._name

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def dtype(self):
        return self._dtype


class INetworkDefinition:
    def _setup(self, flags: int) -> None:
        self.flags = flags
        self.model = None

    @property
    def num_inputs(self) -> int:
        return len(_graph_io(self.model)[0]) if self.model is not None else 0

    def get_input(self, index):
        return _new(ITensor, _graph_io(self.model)[0][index])

    @property
    def num_outputs(self) -> int:
        return len(self.model.graph.output) if self.model is not None else 0

    def get_output(self, index):
        return _new(ITensor, self.model.graph.output[index])


class ParserError:
    def _setup(self, node: int, name: str, op: str, desc: str) -> None:
        self._v = (node, name, op, desc)

    def node(self):
        return self._v[0]

    def node_name(self):
        return self._v[1]

    def node_operator(self):
        return self._v[2]

    def desc(self):
        return self._v[3]


class OnnxParser:
    def __init__(self, network, logger) -> None:
        self._network, self._logger = network, logger
        self._errors: list[ParserError] = []

    def parse(self, model, path=None):
        import onnx

        try:
            proto = onnx.load_from_string(bytes(memoryview(model)))
        except Exception as exc:
            self._errors.append(_new(ParserError, -1, "", "", f"cannot read the ONNX model: {exc}"))
            return False
        for i, node in enumerate(proto.graph.node):
            if node.domain not in ("", "ai.onnx") and not _REGISTRY.has(node.op_type):
                self._errors.append(
                    _new(
                        ParserError,
                        i,
                        node.name,
                        node.op_type,
                        "Plugin not found, are the plugin name, version, and namespace correct?",
                    )
                )
        if self._errors:
            return False
        self._network.model = proto
        return True

    def parse_from_file(self, model):
        return self.parse(Path(model).read_bytes(), model)

    @property
    def num_errors(self) -> int:
        return len(self._errors)

    def get_error(self, index):
        return self._errors[index]


class IOptimizationProfile:
    def _setup(self) -> None:
        self.shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

    def set_shape(self, input, min, opt, max):
        self.shapes[input] = tuple(tuple(int(d) for d in s) for s in (min, opt, max))


class ITimingCache:
    def _setup(self, data: bytes) -> None:
        self.data = data

    def serialize(self):
        return IHostMemory(self.data or b"segrt-double-timing-cache")


class IBuilderConfig:
    def _setup(self) -> None:
        self.flags: set[int] = set()
        self.pools: dict[int, int] = {}
        self.profiles: list[IOptimizationProfile] = []
        self.cache: ITimingCache | None = None

    def set_memory_pool_limit(self, pool, pool_size):
        self.pools[int(pool)] = int(pool_size)

    def set_flag(self, flag):
        self.flags.add(int(flag))

    def add_optimization_profile(self, profile):
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, serialized_timing_cache):
        return _new(ITimingCache, bytes(memoryview(serialized_timing_cache)))

    def set_timing_cache(self, cache, ignore_mismatch):
        self.cache = cache
        return True

    def get_timing_cache(self):
        return self.cache


class _Recorded:
    """The ``error_recorder`` property of the objects that have one."""

    _recorder: Any = None

    @property
    def error_recorder(self):
        return self._recorder

    @error_recorder.setter
    def error_recorder(self, recorder) -> None:
        self._recorder = recorder


class Builder(_Recorded):
    def __init__(self, logger) -> None:
        _adopt_logger(logger)

    def create_network(self, flags=0):
        if _major() >= 11:  # TensorRT 11: every network is strongly typed
            flags = int(flags) | (1 << int(NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        return _new(INetworkDefinition, int(flags))

    def create_builder_config(self):
        return _new(IBuilderConfig)

    def create_optimization_profile(self):
        return _new(IOptimizationProfile)

    def build_serialized_network(self, network, config):
        if network.model is None:
            _report(self._recorder, "the network is empty (nothing was parsed)")
            return None
        strongly_typed = bool(network.flags & (1 << int(NetworkDefinitionCreationFlag.STRONGLY_TYPED)))
        if strongly_typed and hasattr(BuilderFlag, "FP16") and int(BuilderFlag.FP16) in config.flags:
            _report(
                self._recorder,
                "BuilderFlag::kFP16 cannot be set on a strongly typed network",
                ErrorCodeTRT.INVALID_CONFIG,
            )
            return None
        inputs, _ = _graph_io(network.model)
        profile = config.profiles[0].shapes if config.profiles else {}
        for vi in inputs:
            if -1 in _dims(vi) and vi.name not in profile:
                _report(
                    self._recorder,
                    f"Network has dynamic or shape inputs, but no optimization profile has been defined ({vi.name})",
                )
                return None
        header = json.dumps({"version": __version__, "profile": profile}).encode()
        onnx_bytes = network.model.SerializeToString()
        return IHostMemory(_MAGIC + len(header).to_bytes(4, "little") + header + onnx_bytes)


# ----------------------------------------------------------------------------- runtime, engine, context


class Runtime(_Recorded):
    def __init__(self, logger) -> None:
        _adopt_logger(logger)

    def deserialize_cuda_engine(self, serialized_engine):
        import onnx

        data = bytes(memoryview(serialized_engine))
        if not data.startswith(_MAGIC):
            _report(
                self._recorder,
                "The engine plan file is not compatible with this version of "
                "TensorRT or is corrupt (magic tag does not match)",
            )
            return None
        n = int.from_bytes(data[len(_MAGIC) : len(_MAGIC) + 4], "little")
        header = json.loads(data[len(_MAGIC) + 4 : len(_MAGIC) + 4 + n])
        if header["version"] != __version__:
            _report(
                self._recorder,
                f"The engine plan file is not compatible with this version of "
                f"TensorRT, expecting library version {__version__} got {header['version']}",
            )
            return None
        model = onnx.load_from_string(data[len(_MAGIC) + 4 + n :])
        missing = sorted(
            {
                node.op_type
                for node in model.graph.node
                if node.domain not in ("", "ai.onnx") and not _REGISTRY.has(node.op_type)
            }
        )
        if missing:
            _report(self._recorder, f"IPluginRegistry::getCreator: Error Code 4: Cannot find plugin: {missing[0]}")
            return None
        return _new(
            ICudaEngine, model, {k: tuple(tuple(s) for s in v) for k, v in header["profile"].items()}, self._recorder
        )


class ICudaEngine(_Recorded):
    def _setup(self, model, profile: dict[str, tuple[tuple[int, ...], ...]], recorder) -> None:
        self.model = model
        self._recorder = recorder  # an engine takes its runtime's error recorder
        inputs, outputs = _graph_io(model)
        self._io = {vi.name: (TensorIOMode.INPUT, vi) for vi in inputs}
        self._io.update({vi.name: (TensorIOMode.OUTPUT, vi) for vi in outputs})
        self._names = [vi.name for vi in inputs] + [vi.name for vi in outputs]
        self.profile = profile
        self._session = None
        self._lock = threading.Lock()
        self._out_shapes: dict[tuple, dict[str, tuple[int, ...]]] = {}

    @property
    def num_io_tensors(self) -> int:
        return len(self._names)

    def get_tensor_name(self, index):
        return self._names[index]

    def get_tensor_mode(self, name):
        return self._io[name][0] if name in self._io else TensorIOMode.NONE

    def get_tensor_dtype(self, name):
        return _DATATYPE_OF[np.dtype(_ONNX_TO_NUMPY[self._io[name][1].type.tensor_type.elem_type])]

    def get_tensor_shape(self, name):
        return _dims(self._io[name][1])

    def is_shape_inference_io(self, name):
        return False

    def get_tensor_profile_shape(self, name, profile_index):
        lo, opt, hi = self.profile[name]
        return [lo, opt, hi]

    def create_execution_context(self, strategy=None):
        return _new(IExecutionContext, self)

    # -- what the GPU would do ------------------------------------------------------------
    def session(self):
        with self._lock:
            if self._session is None:
                import onnxruntime as ort

                opts = ort.SessionOptions()
                opts.intra_op_num_threads = 1
                opts.log_severity_level = 3
                model = self.model
                if any(n.domain not in ("", "ai.onnx") for n in model.graph.node):
                    import onnxruntime_extensions as ortx

                    from segrt.export.maskrcnn.ort_plugin import standin_model

                    model = standin_model(model)
                    opts.register_custom_ops_library(ortx.get_library_path())
                self._session = ort.InferenceSession(
                    model.SerializeToString(), opts, providers=["CPUExecutionProvider"]
                )
            return self._session

    def output_shapes(self, input_shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
        """Output shapes for these input shapes, -1 where only the data decide (as TensorRT reports them)."""
        key = tuple(sorted(input_shapes.items()))
        with self._lock:
            if key in self._out_shapes:
                return self._out_shapes[key]
        declared = {vi.name: _dims(vi) for vi in self.model.graph.output}
        if all(-1 not in s for s in declared.values()):
            shapes = declared
        else:
            import onnx

            model = onnx.ModelProto()
            model.CopyFrom(self.model)
            for vi in model.graph.input:
                if vi.name in input_shapes:
                    dims = vi.type.tensor_type.shape.dim
                    for d, v in zip(dims, input_shapes[vi.name], strict=True):
                        d.Clear()
                        d.dim_value = int(v)
            inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
            shapes = {vi.name: _dims(vi) for vi in inferred.graph.output}
        with self._lock:
            self._out_shapes[key] = shapes
        return shapes


def _host_array(address: int, shape: tuple[int, ...], dtype) -> np.ndarray:
    import ctypes

    count = int(np.prod(shape, dtype=np.int64))
    nbytes = max(count * np.dtype(dtype).itemsize, 1)
    raw = (ctypes.c_ubyte * nbytes).from_address(int(address))
    return np.frombuffer(raw, dtype=np.uint8, count=count * np.dtype(dtype).itemsize).view(dtype).reshape(shape)


class IExecutionContext(_Recorded):
    def _setup(self, engine: ICudaEngine) -> None:
        self._engine = engine
        self._recorder = engine.error_recorder  # a context takes its engine's error recorder
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._addresses: dict[str, int] = {}
        self._allocators: dict[str, Any] = {}
        self._busy = threading.Lock()
        self._changed = False  # set_input_shape / set_tensor_address since the last plain enqueue
        self._shape_epoch = 0  # bumped when an input shape changes: older graphs are invalid for good

    def __del__(self) -> None:
        if cudart_double.pending_work(id(self)):  # a raise here would be lost: the fixture reads violations
            cudart_double.STATE.violations.append(
                "an IExecutionContext was destroyed with its inference still queued "
                "(synchronize the stream before releasing the context)"
            )

    def _error(self, msg: str) -> None:
        _report(self._recorder, msg)

    def set_input_shape(self, name, shape):
        shape = tuple(int(d) for d in shape)
        if self._engine.get_tensor_mode(name) != TensorIOMode.INPUT:
            self._error(f"setInputShape: {name} is not an input")
            return False
        lo, _, hi = self._engine.profile.get(name, (self._engine.get_tensor_shape(name),) * 3)
        if len(shape) != len(lo) or any(not a <= d <= b for d, a, b in zip(shape, lo, hi, strict=True)):
            self._error(f"setInputShape: {name} shape {list(shape)} is outside the profile {list(lo)}..{list(hi)}")
            return False
        if self._input_shapes().get(name) != shape:
            self._shape_epoch += 1
        self._shapes[name] = shape
        self._changed = True  # NvInferRuntime.h: the next enqueue redoes shape-dependent work
        return True

    def _input_shapes(self) -> dict[str, tuple[int, ...]]:
        out = {}
        for name in self._engine._names:
            if self._engine.get_tensor_mode(name) == TensorIOMode.INPUT:
                fixed = self._engine.get_tensor_shape(name)
                out[name] = self._shapes.get(name, fixed)
        return out

    def get_tensor_shape(self, name):
        if self._engine.get_tensor_mode(name) == TensorIOMode.INPUT:
            return self._input_shapes()[name]
        inputs = self._input_shapes()
        if any(-1 in s for s in inputs.values()):
            return self._engine.get_tensor_shape(name)
        return self._engine.output_shapes(inputs)[name]

    def set_tensor_address(self, name, memory):
        if int(memory) % _ALIGNMENT:
            self._error(
                f"setTensorAddress: the address {int(memory):#x} of {name} is not aligned to {_ALIGNMENT} bytes"
            )
            return False
        self._addresses[name] = int(memory)
        self._changed = True  # NvInferRuntime.h: the next enqueue redoes shape-dependent work
        return True

    def set_output_allocator(self, name, output_allocator):
        self._allocators[name] = output_allocator
        return True

    def execute_async_v3(self, stream_handle):
        if cudart_double.STATE.last_error:
            self._error(
                f"executeAsyncV3: a CUDA error is pending ({cudart_double.cudaError_t(cudart_double.STATE.last_error).name}) "
                "and the first kernel launch check returns it"
            )
            return False
        capturing = cudart_double.is_capturing(stream_handle)
        if capturing and self._changed:
            cudart_double.violation(
                "execute_async_v3 captured into a CUDA graph right after set_input_shape/"
                "set_tensor_address: run one plain enqueue first (its shape-dependent work "
                "cannot be captured)"
            )
        inputs = self._input_shapes()
        if any(-1 in s for s in inputs.values()):
            self._error("executeAsyncV3: not all input shapes are specified")
            return False
        outputs = {vi.name: self._engine.output_shapes(inputs)[vi.name] for vi in self._engine.model.graph.output}
        for name in [*inputs, *[n for n, s in outputs.items() if -1 not in s]]:
            if name not in self._addresses:
                self._error(f"executeAsyncV3: no address set for tensor {name}")
                return False
        for name in [n for n, s in outputs.items() if -1 in s]:
            if name not in self._allocators:
                self._error(f"executeAsyncV3: output {name} has a data-dependent shape and no output allocator")
                return False
        addresses = dict(self._addresses)  # a captured graph keeps the addresses of capture time
        allocators = dict(self._allocators)
        dtypes = {n: nptype(self._engine.get_tensor_dtype(n)) for n in self._engine._names}
        engine = self._engine
        busy = self._busy  # the queued work must not keep the context alive (TensorRT's does not)

        def work() -> None:
            if not busy.acquire(blocking=False):  # one context, two threads at once: a bug in the caller
                raise AssertionError("an IExecutionContext was used by two threads at once")
            try:
                feed = {n: _host_array(addresses[n], s, dtypes[n]).copy() for n, s in inputs.items()}
                names = [vi.name for vi in engine.model.graph.output]
                results = dict(zip(names, engine.session().run(names, feed), strict=True))
                cudart_double.STATE.count("inference")
                for name, value in results.items():
                    value = np.ascontiguousarray(value, dtype=dtypes[name])
                    if -1 not in outputs[name]:
                        assert value.shape == outputs[name], (name, value.shape, outputs[name])
                        _host_array(addresses[name], value.shape, dtypes[name])[...] = value
                        continue
                    alloc = allocators[name]
                    ptr = _callback(
                        alloc.reallocate_output_async, name, 0, max(value.nbytes, 1), _ALIGNMENT, stream_handle
                    )
                    if not ptr:
                        raise _EnqueueFailed(f"IOutputAllocator returned nullptr for {name}")
                    _callback(alloc.notify_shape, name, tuple(value.shape))
                    if value.nbytes:
                        _host_array(int(ptr), value.shape, dtypes[name])[...] = value
            finally:
                busy.release()

        work.owner = id(self)  # type: ignore[attr-defined]
        if capturing:
            ref, epoch = weakref.ref(self), self._shape_epoch

            def before_launch() -> None:
                ctx = ref()
                if ctx is None:
                    cudart_double.violation("a CUDA graph of a destroyed IExecutionContext was launched")
                elif ctx._shape_epoch != epoch:
                    cudart_double.violation(
                        "a CUDA graph captured before the context's input shapes changed was "
                        "replayed (capture one graph per context state, after a plain enqueue)"
                    )
                elif ctx._changed:
                    cudart_double.violation(
                        "a CUDA graph was replayed after set_input_shape/set_tensor_address "
                        "without a plain enqueue in between"
                    )

            work.before_launch = before_launch  # type: ignore[attr-defined]

        try:
            if any(-1 in s for s in outputs.values()):
                # data-dependent output sizes: TensorRT waits for the data to size them and calls the
                # output allocator during this call, so the work runs now, after what is queued before it
                if cudart_double.is_capturing(stream_handle):
                    self._error("executeAsyncV3: data-dependent outputs cannot be captured in a CUDA graph")
                    return False
                cudart_double.flush(stream_handle)
                work()
            else:
                cudart_double.enqueue(stream_handle, work)
        except _EnqueueFailed as exc:
            self._error(f"executeAsyncV3: {exc}")
            return False
        if not capturing:
            self._changed = False  # this enqueue did the shape-dependent work
        return True


class _EnqueueFailed(Exception):
    pass
