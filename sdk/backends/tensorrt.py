"""TensorRT backend: runs a segrt ``.engine`` (or ``.plan``) file on an NVIDIA GPU.

    backend = TensorRTBackend("unet.engine")              # or sdk.load("unet.engine")
    out = backend.run({"image": x})                        # numpy in, numpy out
    out = backend.run_torch({"image": t})                  # torch CUDA tensors in and out, zero-copy

Loading reads the engine header (``sdk.backends.engine_file``: metadata + checksum),
refuses an engine built by another TensorRT version or for another GPU compute
capability (printing the exact rebuild command), loads the segrt plugin library
the metadata names (``sdk.plugins``: next to the engine, its environment variable,
the package), then deserializes the plan.

Running uses TensorRT's tensor-name API (``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``) on a CUDA stream. Device buffers and page-locked host buffers
are allocated once per input shape and reused (a few shapes are cached); with
``use_cuda_graph=True`` the enqueue is captured as a CUDA graph the first time a
shape is seen and replayed while the shape stays the same (tiles of one size, or a
static-shape engine). Outputs whose size depends on the data get TensorRT's output
allocator, and no graph.

Thread safety: a TensorRT execution context holds per-inference state, so it must
not be used by two threads at once. The backend keeps a small pool of contexts
(``contexts``, default 1), each with its own stream and buffers; ``run`` borrows one
for the duration of the call. Up to ``contexts`` threads run concurrently; more wait.
Each context costs its activation memory on the GPU (for the largest profile shape).

Without ``tensorrt`` and ``cuda-python`` this module still imports; constructing the
backend raises ``BackendUnavailableError`` saying what to install.
"""
from __future__ import annotations

import collections
import queue
import sys
import threading
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import ArtifactError, BackendUnavailableError, InputError
from . import cuda_rt
from .base import Backend, TensorInfo
from .engine_file import read_engine_file, rebuild_command

TRT_INSTALL_HINT = ("install TensorRT 10 or 11 for your CUDA version (pip install tensorrt-cu12 or tensorrt-cu13, "
                    "or NVIDIA's packages) together with cuda-python: pip install 'segrt[gpu]'")
MAX_CACHED_SHAPES = 4  # buffer sets kept per context; tiling uses 1-3 distinct shapes


# --------------------------------------------------------------------------- pure checks

def check_engine_compatibility(meta: Mapping[str, Any], *, tensorrt_version: str, compute_capability: Sequence[int],
                               gpu_name: str, path: str | Path) -> list[str]:
    """Raise ``ArtifactError`` if the engine cannot run here; return warnings for what merely may be slower.

    A TensorRT plan loads only in the TensorRT version that built it and runs only on
    GPUs of the compute capability it was built for. The error names both sides and the
    exact command that rebuilds the engine on this machine.
    """
    eng = meta["engine"]
    cmd = rebuild_command(dict(meta), path)
    built = str(eng["tensorrt_version"])
    if built != str(tensorrt_version):
        raise ArtifactError(
            f"{path} was built with TensorRT {built}, but this machine has TensorRT {tensorrt_version}; "
            "a TensorRT engine loads only in the exact version that built it",
            f"rebuild it here from its ONNX file: {cmd}   (or install TensorRT {built})")
    built_cc = tuple(int(v) for v in eng["compute_capability"])
    here_cc = tuple(int(v) for v in compute_capability)
    if built_cc != here_cc:
        raise ArtifactError(
            f"{path} was built for {eng.get('gpu_name', 'another GPU')} (compute capability "
            f"{built_cc[0]}.{built_cc[1]}), but this GPU is {gpu_name} (compute capability {here_cc[0]}.{here_cc[1]}); "
            "a TensorRT engine runs only on the GPU architecture it was built for",
            f"rebuild it on this GPU from its ONNX file: {cmd}")
    notes = []
    if eng.get("gpu_name") and eng["gpu_name"] != gpu_name:
        notes.append(f"{path} was built on {eng['gpu_name']} and runs on {gpu_name}: same compute capability, so it "
                     f"works, but its kernels were timed on the other GPU; for best speed rebuild it here: {cmd}")
    return notes


def check_input_shape(name: str, shape: Sequence[int], profile: tuple[Sequence[int], Sequence[int], Sequence[int]],
                      size_rule: tuple[int, int] | None = None, rebuild_hint: str = "") -> None:
    """Reject ``shape`` if it lies outside the engine's profile (or off a U-Net's valid-size grid).

    ``profile`` is (min, opt, max); ``size_rule`` = (size_min, size_step) applies to the
    last two axes (H, W). The error names the allowed range.
    """
    lo, _, hi = profile
    shape = tuple(int(d) for d in shape)
    if len(shape) != len(lo):
        raise InputError(f"input {name!r} has shape {list(shape)}, the engine expects rank {len(lo)} "
                         f"(between {list(lo)} and {list(hi)})", "reshape the input")
    bad = [i for i, (d, a, b) in enumerate(zip(shape, lo, hi)) if not a <= d <= b]
    if bad:
        ranges = ", ".join(f"dim {i}: {shape[i]} not in {lo[i]}..{hi[i]}" for i in bad)
        fix = "use inputs within that range (sdk.unet tiles large images to fit)"
        if rebuild_hint:
            fix += f", or rebuild the engine with a larger profile: {rebuild_hint}"
        raise InputError(f"input {name!r} shape {list(shape)} is outside the engine's optimization profile "
                         f"(min {list(lo)}, max {list(hi)}; {ranges})", fix)
    if size_rule is not None and len(shape) >= 2:
        smin, step = size_rule
        for axis in (len(shape) - 2, len(shape) - 1):
            d = shape[axis]
            if d < smin or (d - smin) % step:
                below = smin + max(0, (d - smin) // step) * step
                raise InputError(f"input {name!r} size {d} on axis {axis} is not a valid U-Net input size "
                                 f"(valid: {smin} + k*{step}; nearest: {below}, {below + step})",
                                 "pad or crop to a valid size (sdk.unet does this)")


class ContextPool:
    """At most ``size`` slots (execution context + stream + buffers), created lazily and lent to one thread at a time."""

    def __init__(self, factory: Callable[[], Any], size: int = 1) -> None:
        if int(size) < 1:
            raise InputError(f"contexts must be >= 1, got {size}", "pass contexts=1 (or more for concurrent threads)")
        self._factory = factory
        self.size = int(size)
        self._idle: queue.LifoQueue = queue.LifoQueue()
        self._lock = threading.Lock()
        self.created: list[Any] = []

    def acquire(self) -> Any:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            make = len(self.created) < self.size
            if make:
                self.created.append(None)  # reserve the place before the (slow) creation
        if make:
            try:
                slot = self._factory()
            except BaseException:
                with self._lock:
                    self.created.remove(None)
                raise
            with self._lock:
                self.created[self.created.index(None)] = slot
            return slot
        return self._idle.get()

    def release(self, slot: Any) -> None:
        self._idle.put(slot)

    def close(self) -> None:
        for slot in self.created:
            if slot is not None and hasattr(slot, "close"):
                slot.close()
        self.created = []


# --------------------------------------------------------------------------- TensorRT glue

def import_tensorrt():
    """``import tensorrt`` (10 or newer), or ``BackendUnavailableError`` saying what to install."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailableError(f"TensorRT's Python package is not installed ({exc})", TRT_INSTALL_HINT) from None
    if int(str(trt.__version__).split(".")[0]) < 10:
        raise BackendUnavailableError(f"TensorRT {trt.__version__} is too old: segrt uses the TensorRT 10 API "
                                      "(tensor names, execute_async_v3)", TRT_INSTALL_HINT)
    return trt


def make_logger(trt: Any, verbose: bool = False):
    """A ``trt.ILogger`` printing warnings (everything with ``verbose``) and keeping errors for messages."""

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []
            self.min_print = trt.ILogger.Severity.VERBOSE if verbose else trt.ILogger.Severity.WARNING

        def log(self, severity, msg):  # lower value = more severe
            if severity <= trt.ILogger.Severity.ERROR:
                self.errors.append(str(msg))
            if severity <= self.min_print:
                print(f"[TensorRT {getattr(severity, 'name', severity)}] {msg}", file=sys.stderr)

    return _Logger()


def check_plugin_creators(trt: Any, plugin: Mapping[str, Any], library: Path) -> None:
    """Every op in ``plugin["ops"]`` must have a registered creator (name, version, namespace)."""
    registry = trt.get_plugin_registry()
    version, namespace = str(plugin.get("version", "1")), str(plugin.get("namespace", ""))
    missing = [op for op in plugin.get("ops", ()) if registry.get_creator(op, version, namespace) is None]
    if missing:
        raise BackendUnavailableError(
            f"{library} was loaded but TensorRT has no creator for {', '.join(missing)} "
            f"(version {version}, namespace {namespace!r})",
            "the library is from another segrt version: rebuild kernels/roi_align from this segrt")


def load_engine_plugins(trt: Any, plugin: Mapping[str, Any] | None, extra_dirs: Sequence[str | Path]) -> Path | None:
    """Load the segrt plugin library an engine needs (before deserializing it) and check its creators."""
    if not plugin:
        return None
    need = (f"this engine needs the segrt TensorRT plugin library {plugin.get('library')} "
            f"(version {plugin.get('version')}, ops {', '.join(plugin.get('ops', ()))})")
    try:
        from ..plugins import load_plugins
    except ImportError as exc:
        raise BackendUnavailableError(f"{need}, but sdk.plugins cannot be imported ({exc})",
                                      "reinstall segrt with its native libraries (pip install 'segrt[gpu]')") from None
    try:
        library = Path(load_plugins(extra_dirs=tuple(extra_dirs)))
    except BackendUnavailableError as exc:
        raise BackendUnavailableError(f"{need}: {exc.problem}",
                                      exc.fix or "put the library next to the engine") from None
    check_plugin_creators(trt, plugin, library)
    return library


def _make_output_allocator(trt: Any):
    """A ``trt.IOutputAllocator`` for outputs whose shape is only known after inference (data-dependent)."""

    class _OutputAllocator(trt.IOutputAllocator):
        def __init__(self) -> None:
            trt.IOutputAllocator.__init__(self)
            self.buffers: dict[str, cuda_rt.DeviceBuffer] = {}
            self.shapes: dict[str, tuple[int, ...]] = {}

        def reallocate_output_async(self, tensor_name, memory, size, alignment, stream):
            buf = self.buffers.get(tensor_name)
            if buf is None or buf.nbytes < size:
                if buf is not None:
                    buf.free()  # the previous result was copied out before this run started
                buf = cuda_rt.DeviceBuffer(size)  # cudaMalloc aligns to 256 bytes, more than TensorRT asks
                self.buffers[tensor_name] = buf
            return buf.ptr

        def notify_shape(self, tensor_name, shape):
            self.shapes[tensor_name] = tuple(int(d) for d in shape)

    return _OutputAllocator()


def _is_torch_tensor(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch" and hasattr(x, "data_ptr")


class _Buffers:
    """Device + pinned host buffers for one set of input shapes."""

    def __init__(self, shapes: Mapping[str, tuple[int, ...]], dtypes: Mapping[str, np.dtype]) -> None:
        self.shapes = dict(shapes)
        self.device = {n: cuda_rt.DeviceBuffer(int(np.prod(s, dtype=np.int64)) * dtypes[n].itemsize) for n, s in shapes.items()}
        self.host = {n: cuda_rt.PinnedBuffer(s, dtypes[n]) for n, s in shapes.items()}

    def close(self) -> None:
        for b in (*self.device.values(), *self.host.values()):
            b.free()


class _Slot:
    """One execution context with its stream, buffers per shape and (optionally) a CUDA graph."""

    def __init__(self, trt: Any, engine: Any) -> None:
        self.context = engine.create_execution_context()
        if self.context is None:
            raise cuda_rt.CudaError("TensorRT could not create an execution context (out of GPU memory?)",
                                    "use fewer contexts, or a smaller engine profile")
        self.stream = cuda_rt.Stream()
        self.buffers: collections.OrderedDict[tuple, _Buffers] = collections.OrderedDict()
        self.shape_key: tuple | None = None
        self.graph: cuda_rt.CudaGraph | None = None
        self.allocator = None

    def drop_graph(self) -> None:
        if self.graph is not None:
            self.graph.destroy()
            self.graph = None

    def close(self) -> None:
        self.drop_graph()
        for b in self.buffers.values():
            b.close()
        self.buffers.clear()
        if self.allocator is not None:
            for b in self.allocator.buffers.values():
                b.free()
            self.allocator = None
        self.stream.destroy()
        self.context = None


class TensorRTBackend(Backend):
    """Runs a segrt TensorRT engine file (see module docstring).

    Args:
        path: ``.engine`` / ``.plan`` written by ``export.to_engine``.
        device: CUDA device index.
        use_cuda_graph: capture each shape's enqueue as a CUDA graph and replay it while
            the shape stays the same (saves CPU launch overhead; not with data-dependent outputs).
        contexts: execution contexts in the pool = threads that can run at once.
        plugin_dirs: extra folders to search for the segrt plugin library.
        verbose: print TensorRT's verbose log.
    """

    def __init__(self, path: str | Path, device: int = 0, use_cuda_graph: bool = False, contexts: int = 1,
                 plugin_dirs: Sequence[str | Path] = (), verbose: bool = False) -> None:
        self.path = Path(path)
        meta, plan = read_engine_file(self.path)  # checks size and checksum before anything heavy
        self.metadata: dict[str, Any] = meta
        if int(contexts) < 1:
            raise InputError(f"contexts must be >= 1, got {contexts}", "pass contexts=1 (or more for concurrent threads)")
        trt = import_tensorrt()
        cuda_rt.import_cudart()
        self._trt = trt
        self.device = int(device)
        self.gpu = cuda_rt.device_info(self.device)
        for note in check_engine_compatibility(meta, tensorrt_version=trt.__version__,
                                               compute_capability=self.gpu.compute_capability,
                                               gpu_name=self.gpu.name, path=self.path):
            warnings.warn(note, stacklevel=2)
        cuda_rt.set_device(self.device)
        self._logger = make_logger(trt, verbose)
        trt.init_libnvinfer_plugins(self._logger, "")
        self.plugin_library = load_engine_plugins(trt, meta["engine"].get("plugin"),
                                                  extra_dirs=[self.path.parent, *plugin_dirs])
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(plan)
        if self._engine is None:
            detail = "; ".join(self._logger.errors[-3:]) or "no reason given"
            raise ArtifactError(f"TensorRT {trt.__version__} could not deserialize {self.path}: {detail}",
                                f"rebuild the engine: {rebuild_command(meta, self.path)}")
        self._rebuild_hint = rebuild_command(meta, self.path)
        self.inputs, self.outputs = [], []
        self._dtypes: dict[str, np.dtype] = {}
        self.profiles: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = {}
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            if self._engine.is_shape_inference_io(name):
                raise ArtifactError(f"{self.path}: input {name!r} is a shape tensor, which segrt does not feed",
                                    "export the model with fixed-shape control inputs")
            try:
                dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
            except TypeError:
                raise ArtifactError(f"{self.path}: tensor {name!r} has type {self._engine.get_tensor_dtype(name)}, "
                                    "which numpy cannot hold", "export with float32/float16/int inputs and outputs") from None
            shape = tuple(int(d) for d in self._engine.get_tensor_shape(name))
            info = TensorInfo(name, tuple(None if d < 0 else d for d in shape), dtype)
            self._dtypes[name] = dtype
            if self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.inputs.append(info)
                if -1 in shape:
                    lo, opt, hi = self._engine.get_tensor_profile_shape(name, 0)
                    self.profiles[name] = (tuple(lo), tuple(opt), tuple(hi))
                else:
                    self.profiles[name] = (shape, shape, shape)
            else:
                self.outputs.append(info)
        self._size_rule = ((int(meta["size_min"]), int(meta["size_step"]))
                           if meta.get("kind") == "unet" and "size_min" in meta and "size_step" in meta else None)
        self.use_cuda_graph = bool(use_cuda_graph)
        create_lock = threading.Lock()

        def new_slot() -> _Slot:
            with create_lock:  # contexts run concurrently; creating them is kept to one thread at a time
                return _Slot(trt, self._engine)
        self._pool = ContextPool(new_slot, contexts)

    # ----------------------------------------------------------------- feed checks

    def _check_feed(self, feed: Mapping[str, Any]) -> dict[str, Any]:
        missing = [t.name for t in self.inputs if t.name not in feed]
        if missing:
            raise InputError(f"missing model input(s): {', '.join(missing)}",
                             f"pass a dict with keys {[t.name for t in self.inputs]}")
        out = {}
        for info in self.inputs:
            x = feed[info.name]
            if _is_torch_tensor(x) and not x.is_cuda:
                x = x.detach().numpy()
            if _is_torch_tensor(x):
                if x.device.index not in (None, self.device):
                    raise InputError(f"input {info.name!r} is on cuda:{x.device.index}, the engine on cuda:{self.device}",
                                     f"move it with .to('cuda:{self.device}')")
                target = _torch_dtype(info.dtype)
                x = x.detach()
                if x.dtype != target:
                    x = x.to(target)
                x = x.contiguous()
            else:
                x = np.ascontiguousarray(x, dtype=info.dtype)
            check_input_shape(info.name, tuple(x.shape), self.profiles[info.name], self._size_rule
                              if info.name == self.metadata.get("input_name", info.name) else None, self._rebuild_hint)
            out[info.name] = x
        return out

    def _set_shapes(self, slot: _Slot, key: tuple) -> None:
        if slot.shape_key == key:
            return
        slot.shape_key = None  # a failure half-way leaves the context in no known state
        slot.drop_graph()  # a captured graph bakes in the old shapes
        for info, shape in zip(self.inputs, key):
            if not slot.context.set_input_shape(info.name, shape):
                raise InputError(f"TensorRT rejected shape {list(shape)} for input {info.name!r}: "
                                 + ("; ".join(self._logger.errors[-2:]) or "outside the profile"),
                                 f"use shapes between {list(self.profiles[info.name][0])} and {list(self.profiles[info.name][2])}")
        slot.shape_key = key

    def _output_shapes(self, slot: _Slot) -> tuple[dict[str, tuple[int, ...]], list[str]]:
        static, dynamic = {}, []
        for info in self.outputs:
            shape = tuple(int(d) for d in slot.context.get_tensor_shape(info.name))
            if -1 in shape:
                dynamic.append(info.name)
            else:
                static[info.name] = shape
        if dynamic and slot.allocator is None:
            slot.allocator = _make_output_allocator(self._trt)
            for name in dynamic:
                slot.context.set_output_allocator(name, slot.allocator)
        return static, dynamic

    def _buffers(self, slot: _Slot, key: tuple, out_shapes: Mapping[str, tuple[int, ...]]) -> _Buffers:
        bufs = slot.buffers.get(key)
        if bufs is None:
            while len(slot.buffers) >= MAX_CACHED_SHAPES:
                _, old = slot.buffers.popitem(last=False)
                old.close()
            shapes = {info.name: shape for info, shape in zip(self.inputs, key)}
            shapes.update(out_shapes)
            bufs = slot.buffers[key] = _Buffers(shapes, self._dtypes)
        slot.buffers.move_to_end(key)
        return bufs

    def _enqueue(self, slot: _Slot) -> None:
        if not slot.context.execute_async_v3(int(slot.stream)):
            raise cuda_rt.CudaError("TensorRT could not enqueue the inference: "
                                    + ("; ".join(self._logger.errors[-3:]) or "no reason given"),
                                    "run with verbose=True and report the log with the engine")

    # ----------------------------------------------------------------- run

    def run(self, feed: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Run once. ``feed``: numpy arrays (or torch tensors; CUDA ones are read in place); returns numpy arrays."""
        arrays = self._check_feed(feed)
        key = tuple(tuple(int(d) for d in arrays[i.name].shape) for i in self.inputs)
        cuda_rt.set_device(self.device)  # the current device is per host thread; slots are created on it
        slot = self._pool.acquire()
        try:
            return self._run_numpy(slot, arrays, key)
        finally:
            self._pool.release(slot)

    def _run_numpy(self, slot: _Slot, arrays: Mapping[str, Any], key: tuple) -> dict[str, np.ndarray]:
        self._set_shapes(slot, key)
        out_shapes, dynamic = self._output_shapes(slot)
        bufs = self._buffers(slot, key, out_shapes)
        ctx, stream = slot.context, slot.stream
        graphable = self.use_cuda_graph and not dynamic
        torch_inputs = [x for x in arrays.values() if _is_torch_tensor(x)]
        if torch_inputs:
            import torch
            torch.cuda.current_stream(self.device).synchronize()  # the producer of the tensor must be done
        for info in self.inputs:
            x, dev = arrays[info.name], bufs.device[info.name]
            if _is_torch_tensor(x):
                if graphable:  # the graph reads a fixed address: copy on the GPU
                    stream.copy_dtod(dev.ptr, x.data_ptr(), dev.nbytes)
                    ctx.set_tensor_address(info.name, dev.ptr)
                else:  # zero-copy: TensorRT reads the tensor's memory
                    ctx.set_tensor_address(info.name, x.data_ptr())
            else:
                host = bufs.host[info.name].array
                np.copyto(host, x)
                stream.copy_htod(dev.ptr, host)
                ctx.set_tensor_address(info.name, dev.ptr)
        for name in out_shapes:
            ctx.set_tensor_address(name, bufs.device[name].ptr)
        if graphable:
            self._launch_graph(slot)
        else:
            self._enqueue(slot)
        for name in out_shapes:
            stream.copy_dtoh(bufs.host[name].array, bufs.device[name].ptr)
        stream.synchronize()
        results = {name: bufs.host[name].array.copy() for name in out_shapes}
        if dynamic:  # data-dependent outputs: TensorRT reported their shapes during the enqueue
            for name in dynamic:
                arr = np.empty(slot.allocator.shapes[name], dtype=self._dtypes[name])
                if arr.nbytes:
                    stream.copy_dtoh(arr, slot.allocator.buffers[name].ptr)
                results[name] = arr
            stream.synchronize()
        return {info.name: results[info.name] for info in self.outputs}

    def _launch_graph(self, slot: _Slot) -> None:
        if slot.graph is None:
            # TensorRT does deferred setup on the first enqueue after a shape change; run it outside the capture
            self._enqueue(slot)
            graph = cuda_rt.CudaGraph()
            try:
                graph.capture(slot.stream, lambda: self._enqueue(slot))
            except Exception as exc:
                warnings.warn(f"CUDA graph capture failed for {self.path.name} ({exc}); running without graphs",
                              stacklevel=3)
                self.use_cuda_graph = False
                graph.destroy()
                return  # the enqueue above already produced this call's outputs
            slot.graph = graph
        slot.graph.launch(slot.stream)

    def run_torch(self, feed: Mapping[str, Any]) -> dict[str, Any]:
        """Run on torch CUDA tensors and return torch CUDA tensors, without host copies.

        Work is ordered after the current torch stream and the results are ordered
        before later work on it, as if it were a torch op; nothing synchronizes the host.
        No CUDA graphs here (the addresses change with every call).
        """
        try:
            import torch
        except ImportError:
            raise BackendUnavailableError("run_torch needs PyTorch", "pip install torch, or use run() with numpy") from None
        tensors = {}
        for info in self.inputs:
            x = feed.get(info.name)
            if x is None:
                raise InputError(f"missing model input {info.name!r}", f"pass a dict with keys {[t.name for t in self.inputs]}")
            if not (_is_torch_tensor(x) and x.is_cuda):
                x = torch.as_tensor(np.asarray(x), device=f"cuda:{self.device}")
            tensors[info.name] = x
        arrays = self._check_feed(tensors)
        key = tuple(tuple(int(d) for d in arrays[i.name].shape) for i in self.inputs)
        cuda_rt.set_device(self.device)
        slot = self._pool.acquire()
        try:
            self._set_shapes(slot, key)
            out_shapes, dynamic = self._output_shapes(slot)
            dev = torch.device("cuda", self.device)
            ours = torch.cuda.ExternalStream(int(slot.stream), device=dev)
            current = torch.cuda.current_stream(dev)
            outputs = {n: torch.empty(s, dtype=_torch_dtype(self._dtypes[n]), device=dev) for n, s in out_shapes.items()}
            # inputs were produced, and outputs allocated, in torch's stream order: start after both
            ours.wait_stream(current)
            for name, t in {**arrays, **outputs}.items():
                slot.context.set_tensor_address(name, t.data_ptr())
                t.record_stream(ours)  # keep torch's allocator from reusing the memory too early
            self._enqueue(slot)
            if dynamic:
                slot.stream.synchronize()
                for name in dynamic:
                    shape = slot.allocator.shapes[name]
                    t = torch.empty(shape, dtype=_torch_dtype(self._dtypes[name]), device=dev)
                    ours.wait_stream(current)  # the allocation is ordered on torch's stream
                    if t.numel():
                        slot.stream.copy_dtod(t.data_ptr(), slot.allocator.buffers[name].ptr,
                                              t.numel() * t.element_size())
                    t.record_stream(ours)
                    outputs[name] = t
            current.wait_stream(ours)
            return {info.name: outputs[info.name] for info in self.outputs}
        finally:
            self._pool.release(slot)

    @property
    def name(self) -> str:
        return "TensorRTBackend"

    def close(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.close()  # contexts go before the engine that owns them
            self._pool = None
        self._engine = None
        self._runtime = None


def _torch_dtype(dtype: np.dtype):
    import torch

    return torch.from_numpy(np.empty(0, dtype=dtype)).dtype
