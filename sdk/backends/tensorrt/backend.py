"""``TensorRTBackend``: loads a segrt engine file and runs it (see the package docstring)."""

from __future__ import annotations

import sys
import threading
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segrt.artifact.engine_file import read_engine_file, rebuild_command
from segrt.backends import cuda_rt
from segrt.backends.base import Backend, TensorInfo, check_feed
from segrt.backends.tensorrt.api import import_tensorrt, make_error_recorder, make_output_allocator, process_logger
from segrt.backends.tensorrt.checks import check_engine_compatibility, check_input_shape, is_aligned
from segrt.backends.tensorrt.plugin_loading import load_engine_plugins
from segrt.backends.tensorrt.pool import ContextPool
from segrt.backends.tensorrt.slot import MAX_CACHED_SHAPES, ShapeEntry, ShapeKey, Slot
from segrt.errors import ArtifactError, BackendUnavailableError, InputError


def _is_torch_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")  # a torch tensor exists only if torch was imported
    return torch is not None and isinstance(x, torch.Tensor)


def _why(recorder: Any, mark: int, default: str = "no reason given", last: int = 3) -> str:
    """TensorRT's error messages for one call: those ``recorder`` received since ``mark``."""
    return "; ".join(recorder.since(mark)[-last:]) or default


def _torch_dtype(dtype: np.dtype) -> Any:
    import torch

    return torch.from_numpy(np.empty(0, dtype=dtype)).dtype


class TensorRTBackend(Backend):
    """Runs a segrt TensorRT engine file (see the package docstring).

    Args:
        path: ``.engine`` / ``.plan`` written by ``segrt.export.to_engine``.
        device: CUDA device index.
        use_cuda_graph: capture each shape's enqueue as a CUDA graph and replay it when the
            shape comes again (saves CPU launch overhead; not with data-dependent outputs).
        contexts: execution contexts in the pool = threads that can run at once.
        plugin_dirs: extra folders to search for the segrt plugin library.
        verbose: print TensorRT's verbose log.
        cached_shapes: input-shape sets whose buffers (and graphs) each context keeps.
    """

    def __init__(
        self,
        path: str | Path,
        device: int = 0,
        use_cuda_graph: bool = False,
        contexts: int = 1,
        plugin_dirs: Sequence[str | Path] = (),
        verbose: bool = False,
        cached_shapes: int = MAX_CACHED_SHAPES,
    ) -> None:
        self.path = Path(path)
        meta, plan = read_engine_file(self.path)  # checks size and checksum before anything heavy
        self.metadata: dict[str, Any] = meta
        if int(contexts) < 1:
            raise InputError(
                f"contexts must be >= 1, got {contexts}", "pass contexts=1 (or more for concurrent threads)"
            )
        if int(cached_shapes) < 1:
            raise InputError(f"cached_shapes must be >= 1, got {cached_shapes}", "pass cached_shapes=4")
        trt = import_tensorrt()
        cuda_rt.import_cudart()
        self._trt = trt
        self.device = int(device)
        self.gpu = cuda_rt.device_info(self.device)
        for note in check_engine_compatibility(
            meta,
            tensorrt_version=trt.__version__,
            compute_capability=self.gpu.compute_capability,
            gpu_name=self.gpu.name,
            path=self.path,
        ):
            warnings.warn(note, stacklevel=2)
        cuda_rt.set_device(self.device)
        self._logger = process_logger(trt, verbose)  # one per process (api.py): TensorRT keeps its pointer
        self._recorder = make_error_recorder(trt, self.path.name)  # this engine's errors, named after it
        self.plugin_library = load_engine_plugins(
            trt, meta["engine"].get("plugin"), extra_dirs=[self.path.parent, *plugin_dirs]
        )
        self._runtime = trt.Runtime(self._logger)
        self._runtime.error_recorder = self._recorder  # the engine, and its contexts, inherit it
        mark = self._recorder.mark()
        self._engine = self._runtime.deserialize_cuda_engine(plan)
        if self._engine is None:
            detail = _why(self._recorder, mark)
            raise ArtifactError(
                f"TensorRT {trt.__version__} could not deserialize {self.path}: {detail}",
                f"rebuild the engine: {rebuild_command(meta, self.path)}",
            )
        self._rebuild_hint = rebuild_command(meta, self.path)
        self.inputs, self.outputs = [], []
        self._dtypes: dict[str, np.dtype] = {}
        self.profiles: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = {}
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            if self._engine.is_shape_inference_io(name):
                raise ArtifactError(
                    f"{self.path}: input {name!r} is a shape tensor, which segrt does not feed",
                    "export the model with fixed-shape control inputs",
                )
            try:
                dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
            except TypeError:
                raise ArtifactError(
                    f"{self.path}: tensor {name!r} has type {self._engine.get_tensor_dtype(name)}, "
                    "which numpy cannot hold",
                    "export with float32/float16/int inputs and outputs",
                ) from None
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
        self._size_rule = (
            (int(meta["size_min"]), int(meta["size_step"]))
            if meta.get("kind") == "unet" and "size_min" in meta and "size_step" in meta
            else None
        )
        self.use_cuda_graph = bool(use_cuda_graph)
        create_lock = threading.Lock()
        engine, cache = self._engine, int(cached_shapes)

        def new_slot() -> Slot:
            with create_lock:  # contexts run concurrently; creating them is kept to one thread at a time
                slot = Slot(engine, cache)
                # each context its own recorder: a failed call reads its own thread's errors
                slot.recorder = make_error_recorder(trt, self.path.name)
                slot.context.error_recorder = slot.recorder
                return slot

        self._pool = ContextPool(new_slot, contexts, name=f"the TensorRT backend of {self.path.name}")

    # ----------------------------------------------------------------- feed checks

    def _check_feed(self, feed: Mapping[str, Any]) -> dict[str, Any]:
        check_feed(self.inputs, feed)
        out = {}
        for info in self.inputs:
            x = feed[info.name]
            if _is_torch_tensor(x) and not x.is_cuda:
                x = x.detach().numpy()
            if _is_torch_tensor(x):
                if x.device.index not in (None, self.device):
                    raise InputError(
                        f"input {info.name!r} is on cuda:{x.device.index}, the engine on cuda:{self.device}",
                        f"move it with .to('cuda:{self.device}')",
                    )
                x = x.detach().contiguous()
            else:
                x = np.ascontiguousarray(x)
            check_input_shape(
                info.name,
                tuple(x.shape),
                self.profiles[info.name],
                self._size_rule if info.name == self.metadata.get("input_name", info.name) else None,
                self._rebuild_hint,
            )
            out[info.name] = x
        return out

    def _set_address(self, slot: Slot, name: str, address: int) -> None:
        """Bind ``name`` to ``address`` unless it is bound there already (a change invalidates the graph)."""
        if slot.addresses.get(name) == int(address):
            return
        slot.invalidate()
        slot.addresses.pop(name, None)  # a refusal leaves the binding unknown
        mark = slot.recorder.mark()
        if not slot.context.set_tensor_address(name, int(address)):
            raise cuda_rt.CudaError(
                f"TensorRT refused the address {int(address):#x} of tensor {name!r}: " + _why(slot.recorder, mark),
                "report it with the engine (segrt passes 256-byte aligned buffers)",
            )
        slot.addresses[name] = int(address)

    def _set_shapes(self, slot: Slot, key: ShapeKey) -> bool:
        """Set the context's input shapes to ``key``; True if they changed."""
        if slot.shape_key == key:
            return False
        slot.shape_key = None  # a failure half-way leaves the context in no known state
        slot.invalidate()
        for info, shape in zip(self.inputs, key, strict=True):
            mark = slot.recorder.mark()
            if not slot.context.set_input_shape(info.name, shape):
                raise InputError(
                    f"TensorRT rejected shape {list(shape)} for input {info.name!r}: "
                    + _why(slot.recorder, mark, "outside the profile"),
                    f"use shapes between {list(self.profiles[info.name][0])} and {list(self.profiles[info.name][2])}",
                )
        slot.shape_key = key
        return True

    def _output_shapes(self, slot: Slot) -> tuple[dict[str, tuple[int, ...]], list[str]]:
        static, dynamic = {}, []
        for info in self.outputs:
            shape = tuple(int(d) for d in slot.context.get_tensor_shape(info.name))
            if -1 in shape:
                dynamic.append(info.name)
            else:
                static[info.name] = shape
        if dynamic and slot.allocator is None:
            slot.allocator = make_output_allocator(self._trt, slot.recorder)
            for name in dynamic:
                if not slot.context.set_output_allocator(name, slot.allocator):
                    raise cuda_rt.CudaError(
                        f"TensorRT refused an output allocator for {name!r}", "report it with the engine"
                    )
        return static, dynamic

    def _entry(self, slot: Slot, key: ShapeKey, out_shapes: Mapping[str, tuple[int, ...]]) -> ShapeEntry:
        def make() -> ShapeEntry:
            shapes = {info.name: shape for info, shape in zip(self.inputs, key, strict=True)}
            shapes.update(out_shapes)
            return ShapeEntry(shapes, self._dtypes)

        return slot.entry(key, make)

    def _enqueue(self, slot: Slot, capturing: bool = False) -> None:
        mark = slot.recorder.mark()
        if not slot.context.execute_async_v3(slot.stream.native):
            raise cuda_rt.CudaError(
                "TensorRT could not enqueue the inference: " + _why(slot.recorder, mark),
                "run with verbose=True and report the log with the engine",
            )
        if not capturing:
            slot.settled = True  # this enqueue did TensorRT's deferred, shape-dependent work

    # ----------------------------------------------------------------- run

    def run(self, feed: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Run once. ``feed``: numpy arrays (or torch tensors; CUDA ones are read in place); returns numpy arrays.

        Each input must have the engine's dtype (``InputError`` otherwise, as with ONNX Runtime).
        """
        arrays = self._check_feed(feed)
        key = tuple(tuple(int(d) for d in arrays[i.name].shape) for i in self.inputs)
        cuda_rt.set_device(self.device)  # the current device is per host thread; slots are created on it
        slot = self._pool.acquire()
        try:
            return self._run_on_slot(slot, arrays, key)
        finally:
            self._pool.release(slot)

    def _run_on_slot(self, slot: Slot, arrays: Mapping[str, Any], key: ShapeKey) -> dict[str, np.ndarray]:
        self._set_shapes(slot, key)
        out_shapes, dynamic = self._output_shapes(slot)
        entry = self._entry(slot, key, out_shapes)
        stream = slot.stream
        graphable = self.use_cuda_graph and slot.use_graph and not dynamic
        if any(_is_torch_tensor(x) for x in arrays.values()):
            import torch

            torch.cuda.current_stream(self.device).synchronize()  # the producer of the tensor must be done
        for info in self.inputs:
            x, dev = arrays[info.name], entry.device[info.name]
            if _is_torch_tensor(x):
                # zero-copy only where TensorRT may read the tensor's memory: 256-byte aligned, and not
                # under a graph (which reads one fixed address); otherwise one copy on the GPU
                if not graphable and is_aligned(x.data_ptr()):
                    self._set_address(slot, info.name, x.data_ptr())
                    continue
                stream.copy_dtod(dev.ptr, x.data_ptr(), dev.nbytes)
            else:
                host = entry.host[info.name].array
                np.copyto(host, x)
                stream.copy_htod(dev.ptr, host)
            self._set_address(slot, info.name, dev.ptr)
        for name in out_shapes:
            self._set_address(slot, name, entry.device[name].ptr)
        if graphable:
            self._launch_graph(slot)
        else:
            self._enqueue(slot)
        for name in out_shapes:
            stream.copy_dtoh(entry.host[name].array, entry.device[name].ptr)
        stream.synchronize()
        results = {name: entry.host[name].array.copy() for name in out_shapes}
        if dynamic:  # data-dependent outputs: TensorRT reported their shapes during the enqueue
            for name in dynamic:
                arr = np.empty(slot.allocator.shapes[name], dtype=self._dtypes[name])
                if arr.nbytes:
                    stream.copy_dtoh(arr, slot.allocator.buffers[name].ptr)
                results[name] = arr
            stream.synchronize()
        return {info.name: results[info.name] for info in self.outputs}

    def _launch_graph(self, slot: Slot) -> None:
        """Replay the slot's graph, or run a plain enqueue, or capture the graph and replay it.

        After any change of the context's shapes or addresses (``Slot.invalidate``) the next call
        runs one plain enqueue: TensorRT does its deferred, shape-dependent work there, which a
        graph cannot hold. The next call with nothing changed captures the enqueue as a graph and
        replays it (capturing does not run the work); later calls replay it. So a shape seen once
        costs no capture, and a graph never outlives the state it was captured in.
        """
        if slot.graph is not None:
            slot.graph.launch(slot.stream)
            return
        if not slot.settled:
            self._enqueue(slot)
            return
        graph = cuda_rt.CudaGraph()
        try:
            graph.capture(slot.stream, lambda: self._enqueue(slot, capturing=True))
        except Exception as exc:
            graph.destroy()
            slot.use_graph = False  # this slot only: other threads' slots keep their graphs
            warnings.warn(
                f"CUDA graph capture failed for {self.path.name} ({exc}); this execution context "
                "runs without graphs from now on",
                stacklevel=3,
            )
            self._enqueue(slot)  # nothing ran during the failed capture
            return
        slot.graph = graph
        graph.launch(slot.stream)

    def run_torch(self, feed: Mapping[str, Any]) -> dict[str, Any]:
        """Run on torch CUDA tensors and return torch CUDA tensors, without host copies.

        Work is ordered after the current torch stream and the results are ordered
        before later work on it, as if it were a torch op; nothing synchronizes the host.
        No CUDA graphs here (the addresses change with every call): binding the tensors drops
        the context's graph, and the next ``run`` starts with a plain enqueue. Inputs whose
        memory is not 256-byte aligned are copied once on the GPU. ``close()`` waits for
        work still queued on the backend's streams.
        """
        try:
            import torch
        except ImportError:
            raise BackendUnavailableError(
                "run_torch needs PyTorch", "pip install torch, or use run() with numpy"
            ) from None
        tensors = {}
        for info in self.inputs:
            x = feed.get(info.name)
            if x is None:
                raise InputError(
                    f"missing model input {info.name!r}", f"pass a dict with keys {[t.name for t in self.inputs]}"
                )
            if not (_is_torch_tensor(x) and x.is_cuda):
                x = torch.as_tensor(np.asarray(x), device=f"cuda:{self.device}")
            tensors[info.name] = x
        arrays = self._check_feed(tensors)
        arrays = {n: (t if is_aligned(t.data_ptr()) else t.clone()) for n, t in arrays.items()}  # allocator: aligned
        key = tuple(tuple(int(d) for d in arrays[i.name].shape) for i in self.inputs)
        cuda_rt.set_device(self.device)
        slot = self._pool.acquire()
        try:
            self._set_shapes(slot, key)
            out_shapes, dynamic = self._output_shapes(slot)
            dev = torch.device("cuda", self.device)
            ours = torch.cuda.ExternalStream(slot.stream.native, device=dev)
            current = torch.cuda.current_stream(dev)
            outputs = {
                n: torch.empty(s, dtype=_torch_dtype(self._dtypes[n]), device=dev) for n, s in out_shapes.items()
            }
            # inputs were produced, and outputs allocated, in torch's stream order: start after both
            ours.wait_stream(current)
            for name, t in {**arrays, **outputs}.items():
                self._set_address(slot, name, t.data_ptr())
                t.record_stream(ours)  # keep torch's allocator from reusing the memory too early
            self._enqueue(slot)
            if dynamic:
                slot.stream.synchronize()
                for name in dynamic:
                    shape = slot.allocator.shapes[name]
                    t = torch.empty(shape, dtype=_torch_dtype(self._dtypes[name]), device=dev)
                    ours.wait_stream(current)  # the allocation is ordered on torch's stream
                    if t.numel():
                        slot.stream.copy_dtod(
                            t.data_ptr(), slot.allocator.buffers[name].ptr, t.numel() * t.element_size()
                        )
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
        """Free the contexts and the engine. Calls running in other threads finish first (their
        contexts are freed when they return); later calls raise ``PoolClosedError``."""
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.close()  # contexts go before the engine that owns them
        self._engine = None
        self._runtime = None
