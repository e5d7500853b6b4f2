"""One execution slot: a TensorRT execution context, its CUDA stream, per-shape buffers and one CUDA graph.

A slot is used by one thread at a time (``ContextPool`` lends it). For each set of input
shapes it keeps device and page-locked host buffers; the last ``MAX_CACHED_SHAPES`` shape
sets are kept, least recently used first out, so a U-Net's tiles (full batches, then the
remainder) do not reallocate on every switch.

It keeps at most one CUDA graph, valid only for the context's state when it was captured:
``NvInferRuntime.h`` says the next enqueue redoes shape-dependent work "if an input binding is
changed via setInputTensorAddress() or setTensorAddress() or setInputShape()", and TensorRT may
re-plan the context's internal memory for new shapes, which an older graph still points into.
So every such change drops the graph (``invalidate``); trtexec likewise captures one graph per
context after a warm-up enqueue and never changes that context again. ``addresses`` remembers
what the context is bound to, so binding the same buffers again changes nothing.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from segrt.backends import cuda_rt

MAX_CACHED_SHAPES = 4  # shape sets kept per slot; tiling uses 1-3 distinct shapes

ShapeKey = tuple[tuple[int, ...], ...]  # one shape per engine input, in input order


class ShapeEntry:
    """Device + pinned host buffers for one set of I/O shapes."""

    def __init__(self, shapes: Mapping[str, tuple[int, ...]], dtypes: Mapping[str, np.dtype]) -> None:
        self.shapes = dict(shapes)
        self.device: dict[str, cuda_rt.DeviceBuffer] = {}
        self.host: dict[str, cuda_rt.PinnedBuffer] = {}
        try:
            for n, s in shapes.items():
                self.device[n] = cuda_rt.DeviceBuffer(int(np.prod(s, dtype=np.int64)) * np.dtype(dtypes[n]).itemsize)
                self.host[n] = cuda_rt.PinnedBuffer(s, dtypes[n])
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Free the buffers (the caller makes sure no queued work uses them)."""
        for device in self.device.values():
            device.free()
        for host in self.host.values():
            host.free()
        self.device.clear()
        self.host.clear()


class Slot:
    """One execution context with its stream, its per-shape entries and its output allocator."""

    def __init__(self, engine: Any, cache_size: int = MAX_CACHED_SHAPES) -> None:
        self.engine = engine  # the context must not outlive its engine
        self.context = engine.create_execution_context()
        if self.context is None:
            raise cuda_rt.CudaError(
                "TensorRT could not create an execution context (out of GPU memory?)",
                "use fewer contexts, or a smaller engine profile",
            )
        self.stream = cuda_rt.Stream()
        self.cache_size = int(cache_size)
        self.entries: collections.OrderedDict[ShapeKey, ShapeEntry] = collections.OrderedDict()
        self.shape_key: ShapeKey | None = None  # the input shapes the context is set to
        self.use_graph = True  # cleared for this slot only when a capture fails here
        self.graph: cuda_rt.CudaGraph | None = None  # captured on the context's current state, if any
        self.settled = False  # a plain enqueue ran since the last change of shapes or addresses
        self.addresses: dict[str, int] = {}  # tensor name -> device address the context is bound to
        self.allocator: Any = None
        self.recorder: Any = engine.error_recorder  # the backend gives each context its own (api.make_error_recorder)

    def invalidate(self) -> None:
        """The context's shapes or addresses changed: the graph is stale and the next enqueue must be plain."""
        self.settled = False
        if self.graph is not None:
            self.graph.destroy()  # safe: every run() synchronizes before it returns, so no launch is queued
            self.graph = None

    def entry(self, key: ShapeKey, make: Callable[[], ShapeEntry]) -> ShapeEntry:
        """The entry for ``key`` (created by ``make`` if absent), marked most recently used."""
        found = self.entries.get(key)
        if found is None:
            while len(self.entries) >= self.cache_size:
                _, old = self.entries.popitem(last=False)
                old.close()
            found = self.entries[key] = make()
        self.entries.move_to_end(key)
        return found

    def close(self) -> None:
        """Wait for the stream's work, then free graph, buffers, stream and context (TensorRT: releasing
        memory an enqueue uses before the stream has synchronized is undefined behaviour)."""
        try:
            self.stream.synchronize()
        finally:
            self._free()

    def _free(self) -> None:
        self.invalidate()
        for e in self.entries.values():
            e.close()
        self.entries.clear()
        if self.allocator is not None:
            self.allocator.free()
            self.allocator = None
        self.stream.destroy()
        self.context = None
        self.engine = None
