"""A CPU stand-in for the ``cuda.bindings.runtime`` calls segrt makes (tests only).

Host memory plays device memory: ``cudaMalloc`` returns the address of a 256-byte aligned
host block, copies are ``memmove``. Work on a stream is asynchronous as on a GPU: it is
queued and runs, in order, only when the stream is synchronized (so code that reads a result
before ``cudaStreamSynchronize`` reads stale memory, and its test fails). While a stream is
being captured, work is recorded into a graph instead, and ``cudaGraphLaunch`` queues it.
Freed blocks are kept until ``reset`` (a late write into freed memory cannot crash the tests).
Every function returns ``(cudaError_t, *values)`` like cuda-python, with cuda-python's
parameter names (a contract test compares them with the real module).

``STATE`` counts what happened (allocations alive, captures, launches, enqueues) so
tests can check what the code under test did; ``STATE.fail`` makes chosen calls fail.
Injected by monkeypatching ``segrt.backends.cuda_rt.import_cudart``; never installed as ``cuda``.
"""
from __future__ import annotations

import ctypes
import enum
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

ALIGN = 256


class cudaError_t(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorInvalidResourceHandle = 400
    cudaErrorStreamCaptureInvalidated = 901


class cudaMemcpyKind(enum.IntEnum):
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3
    cudaMemcpyDefault = 4


class cudaStreamCaptureMode(enum.IntEnum):
    cudaStreamCaptureModeGlobal = 0
    cudaStreamCaptureModeThreadLocal = 1
    cudaStreamCaptureModeRelaxed = 2


cudaStreamNonBlocking = 1


class _Handle:
    """Opaque handle (cuda-python's handles convert to int)."""

    def __init__(self, value: int = 0) -> None:
        self._value = int(value)

    def __int__(self) -> int:
        return self._value

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and int(other) == self._value  # type: ignore[arg-type]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._value))


class cudaStream_t(_Handle):
    pass


class cudaGraph_t(_Handle):
    pass


class cudaGraphExec_t(_Handle):
    pass


@dataclass
class cudaDeviceProp:
    name: bytes = b"segrt CPU test double (no GPU)"
    major: int = 8
    minor: int = 9
    totalGlobalMem: int = 1 << 30


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    blocks: dict[int, Any] = field(default_factory=dict)     # address -> ctypes buffer keeping it alive
    sizes: dict[int, int] = field(default_factory=dict)
    streams: dict[int, list | None] = field(default_factory=dict)  # handle -> recorded work while capturing
    pending: dict[int, list] = field(default_factory=dict)   # handle -> queued work, run on synchronize
    freed: list = field(default_factory=list)
    graphs: dict[int, list] = field(default_factory=dict)
    execs: dict[int, list] = field(default_factory=dict)
    next_handle: int = 1
    counts: dict[str, int] = field(default_factory=dict)
    fail: dict[str, int] = field(default_factory=dict)       # function name -> how many next calls fail
    device: cudaDeviceProp = field(default_factory=cudaDeviceProp)

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def should_fail(self, what: str) -> bool:
        with self.lock:
            left = self.fail.get(what, 0)
            if left:
                self.fail[what] = left - 1
            return bool(left)


STATE = _State()


def reset() -> None:
    """Forget every allocation, stream, graph and count (a fresh 'GPU')."""
    global STATE
    STATE = _State()


def live_allocations() -> int:
    return len(STATE.blocks)


def _new_handle() -> int:
    with STATE.lock:
        h = STATE.next_handle
        STATE.next_handle += 1
        return h


def _alloc(size: int, what: str):
    if STATE.should_fail(what):
        return (cudaError_t.cudaErrorMemoryAllocation, 0)
    raw = ctypes.create_string_buffer(int(size) + ALIGN)
    addr = (ctypes.addressof(raw) + ALIGN - 1) // ALIGN * ALIGN
    with STATE.lock:
        STATE.blocks[addr] = raw
        STATE.sizes[addr] = int(size)
        STATE.count(what)
    return (cudaError_t.cudaSuccess, addr)


def _free(ptr: Any):
    with STATE.lock:
        if int(ptr) not in STATE.blocks:
            return (cudaError_t.cudaErrorInvalidValue,)
        STATE.freed.append(STATE.blocks.pop(int(ptr)))
        del STATE.sizes[int(ptr)]
    return (cudaError_t.cudaSuccess,)


def enqueue(stream: Any, work: Callable[[], None]) -> None:
    """Queue ``work`` on ``stream``, or record it when the stream is being captured (used by the TensorRT double)."""
    recorded = STATE.streams.get(int(stream))
    if recorded is not None:
        recorded.append(work)
    elif int(stream) == 0:  # the legacy default stream: segrt never uses it; run at once
        work()
    else:
        STATE.pending.setdefault(int(stream), []).append(work)


def flush(stream: Any) -> None:
    """Run the work queued on ``stream`` (what the GPU does by the time a synchronize returns)."""
    queue = STATE.pending.get(int(stream), [])
    while queue:
        queue.pop(0)()


def is_capturing(stream: Any) -> bool:
    return STATE.streams.get(int(stream)) is not None


# ----------------------------------------------------------------------------- the cuda-python functions

def cudaGetErrorName(error: cudaError_t):
    return (cudaError_t.cudaSuccess, cudaError_t(error).name.encode())


def cudaGetErrorString(error: cudaError_t):
    return (cudaError_t.cudaSuccess, f"{cudaError_t(error).name} (CPU test double)".encode())


def cudaDriverGetVersion():
    return (cudaError_t.cudaSuccess, 12080)


def cudaRuntimeGetVersion():
    return (cudaError_t.cudaSuccess, 12080)


def cudaGetDeviceCount():
    return (cudaError_t.cudaSuccess, 1)


def cudaGetDeviceProperties(device):
    if int(device) != 0:
        return (cudaError_t.cudaErrorInvalidValue, None)
    return (cudaError_t.cudaSuccess, STATE.device)


def cudaSetDevice(device):
    return (cudaError_t.cudaSuccess if int(device) == 0 else cudaError_t.cudaErrorInvalidValue,)


def cudaMalloc(size):
    return _alloc(size, "cudaMalloc")


def cudaMallocHost(size):
    return _alloc(size, "cudaMallocHost")


def cudaFree(devPtr):
    return _free(devPtr)


def cudaFreeHost(ptr):
    return _free(ptr)


def cudaStreamCreateWithFlags(flags):
    h = _new_handle()
    STATE.streams[h] = None
    return (cudaError_t.cudaSuccess, cudaStream_t(h))


def cudaStreamDestroy(stream):
    flush(stream)  # CUDA finishes a destroyed stream's work
    if STATE.streams.pop(int(stream), "missing") == "missing":
        return (cudaError_t.cudaErrorInvalidResourceHandle,)
    return (cudaError_t.cudaSuccess,)


def cudaStreamSynchronize(stream):
    if is_capturing(stream):  # illegal during capture, as on a GPU
        return (cudaError_t.cudaErrorStreamCaptureInvalidated,)
    flush(stream)
    return (cudaError_t.cudaSuccess,)


def cudaMemcpyAsync(dst, src, count, kind: cudaMemcpyKind, stream):
    if int(count) < 0:
        return (cudaError_t.cudaErrorInvalidValue,)
    dst, src, count = int(dst), int(src), int(count)
    enqueue(stream, lambda: ctypes.memmove(dst, src, count))
    STATE.count("memcpy")
    return (cudaError_t.cudaSuccess,)


def cudaStreamBeginCapture(stream, mode: cudaStreamCaptureMode):
    if int(stream) not in STATE.streams or is_capturing(stream):
        return (cudaError_t.cudaErrorInvalidValue,)
    STATE.streams[int(stream)] = []
    return (cudaError_t.cudaSuccess,)


def cudaStreamEndCapture(stream):
    work = STATE.streams.get(int(stream))
    if work is None:
        return (cudaError_t.cudaErrorInvalidValue, None)
    STATE.streams[int(stream)] = None
    if STATE.should_fail("cudaStreamEndCapture"):
        return (cudaError_t.cudaErrorStreamCaptureInvalidated, None)
    h = _new_handle()
    STATE.graphs[h] = work
    STATE.count("capture")
    return (cudaError_t.cudaSuccess, cudaGraph_t(h))


def cudaGraphInstantiate(graph, flags):
    if int(graph) not in STATE.graphs:
        return (cudaError_t.cudaErrorInvalidValue, None)
    h = _new_handle()
    STATE.execs[h] = STATE.graphs[int(graph)]
    return (cudaError_t.cudaSuccess, cudaGraphExec_t(h))


def cudaGraphLaunch(graphExec, stream):
    work = STATE.execs.get(int(graphExec))
    if work is None:
        return (cudaError_t.cudaErrorInvalidValue,)
    for step in work:
        enqueue(stream, step)
    STATE.count("graph_launch")
    return (cudaError_t.cudaSuccess,)


def cudaGraphExecDestroy(graphExec):
    return (cudaError_t.cudaSuccess if STATE.execs.pop(int(graphExec), None) is not None
            else cudaError_t.cudaErrorInvalidValue,)


def cudaGraphDestroy(graph):
    return (cudaError_t.cudaSuccess if STATE.graphs.pop(int(graph), None) is not None
            else cudaError_t.cudaErrorInvalidValue,)
