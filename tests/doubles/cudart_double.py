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

Stricter than forgiving: where CUDA (or TensorRT's use of it) is undefined or deprecated, the
double records a violation in ``STATE.violations`` and raises ``ContractViolation`` (a
``BaseException``, so no ``except Exception`` in the code under test can hide it); the
``trt_double`` fixture fails any test that leaves a violation behind. Each rule cites its source:

* ``cudaStreamDestroy`` with work still queued: CUDA itself would finish the work later, but
  segrt frees the stream's buffers and its TensorRT context next, and ``NvInferRuntime.h``
  (``enqueueV3``): "Modifying or releasing memory that has been registered for the tensors
  before stream synchronization ... results in undefined behavior". So: synchronize first.
* A failed ``cudaStreamEndCapture`` leaves its error as the thread's last error until
  ``cudaGetLastError`` reads it (CUDA Runtime API, "Error Handling": the runtime keeps the last
  error; ``cudaGetLastError`` returns and resets it). TensorRT's plugins (segrt's
  ``roi_align_kernel.cu`` returns ``cudaGetLastError()`` after its launch) then fail the next
  enqueue, which the TensorRT double models by refusing ``execute_async_v3`` while it is set.
* ``int(handle)``: "Using int(cuda_obj) to retrieve the underlying address of a CUDA object is
  deprecated and subject to future removal. Please switch to use get_cuda_native_handle()"
  (cuda-bindings 12.9.1 / 13.0.0 release notes).
"""

from __future__ import annotations

import ctypes
import enum
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ALIGN = 256


class ContractViolation(BaseException):
    """The code under test did what real CUDA/TensorRT leaves undefined, deprecates or refuses."""


def violation(msg: str) -> None:
    """Record ``msg`` (the fixture fails the test) and raise it where it happened."""
    STATE.violations.append(msg)
    raise ContractViolation(msg)


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
    """Opaque handle. cuda-bindings still converts its handles with ``int()``, but that is deprecated
    (module docstring): here it is a violation; ``cuda_utils_double.get_cuda_native_handle`` reads it."""

    def __init__(self, value: int = 0) -> None:
        self._value = int(value)

    def __int__(self) -> int:
        violation(
            f"int({type(self).__name__}) is deprecated in cuda-bindings 13: use "
            "cuda.bindings.utils.get_cuda_native_handle()"
        )
        return self._value

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._value == self._value  # type: ignore[attr-defined]

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
    blocks: dict[int, Any] = field(default_factory=dict)  # address -> ctypes buffer keeping it alive
    sizes: dict[int, int] = field(default_factory=dict)
    streams: dict[int, list | None] = field(default_factory=dict)  # handle -> recorded work while capturing
    pending: dict[int, list] = field(default_factory=dict)  # handle -> queued work, run on synchronize
    freed: list = field(default_factory=list)
    graphs: dict[int, list] = field(default_factory=dict)
    execs: dict[int, list] = field(default_factory=dict)
    next_handle: int = 1
    counts: dict[str, int] = field(default_factory=dict)
    fail: dict[str, int] = field(default_factory=dict)  # function name -> how many next calls fail
    device: cudaDeviceProp = field(default_factory=cudaDeviceProp)
    violations: list[str] = field(default_factory=list)  # contract breaches (module docstring)
    last_error: int = 0  # cudaGetLastError's sticky value

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


def _h(handle: Any) -> int:
    """The value of a handle or address, without the deprecated ``int(handle)``."""
    return handle._value if isinstance(handle, _Handle) else int(handle)


def pending_work(owner: int | None = None) -> int:
    """Work items queued (not yet run) on any stream, or only those of ``owner`` (an ``id``)."""
    return sum(1 for q in STATE.pending.values() for w in q if owner is None or getattr(w, "owner", None) == owner)


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
        if _h(ptr) not in STATE.blocks:
            return (cudaError_t.cudaErrorInvalidValue,)
        STATE.freed.append(STATE.blocks.pop(_h(ptr)))
        del STATE.sizes[_h(ptr)]
    return (cudaError_t.cudaSuccess,)


def enqueue(stream: Any, work: Callable[[], None]) -> None:
    """Queue ``work`` on ``stream``, or record it when the stream is being captured (used by the TensorRT double)."""
    recorded = STATE.streams.get(_h(stream))
    if recorded is not None:
        recorded.append(work)
    elif _h(stream) == 0:  # the legacy default stream: segrt never uses it; run at once
        work()
    else:
        STATE.pending.setdefault(_h(stream), []).append(work)


def flush(stream: Any) -> None:
    """Run the work queued on ``stream`` (what the GPU does by the time a synchronize returns)."""
    queue = STATE.pending.get(_h(stream), [])
    while queue:
        queue.pop(0)()


def is_capturing(stream: Any) -> bool:
    return STATE.streams.get(_h(stream)) is not None


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
    queued = len(STATE.pending.get(_h(stream), []))
    if queued:  # module docstring: segrt frees the stream's buffers and context next
        violation(f"cudaStreamDestroy with {queued} work item(s) still queued: synchronize the stream first")
    if STATE.streams.pop(_h(stream), "missing") == "missing":
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
    if _h(stream) not in STATE.streams or is_capturing(stream):
        return (cudaError_t.cudaErrorInvalidValue,)
    STATE.streams[_h(stream)] = []
    return (cudaError_t.cudaSuccess,)


def cudaStreamEndCapture(stream):
    work = STATE.streams.get(_h(stream))
    if work is None:
        return (cudaError_t.cudaErrorInvalidValue, None)
    STATE.streams[_h(stream)] = None
    if STATE.should_fail("cudaStreamEndCapture"):
        STATE.last_error = cudaError_t.cudaErrorStreamCaptureInvalidated  # sticky until cudaGetLastError
        return (cudaError_t.cudaErrorStreamCaptureInvalidated, None)
    h = _new_handle()
    STATE.graphs[h] = work
    STATE.count("capture")
    return (cudaError_t.cudaSuccess, cudaGraph_t(h))


def cudaGraphInstantiate(graph, flags):
    if _h(graph) not in STATE.graphs:
        return (cudaError_t.cudaErrorInvalidValue, None)
    h = _new_handle()
    STATE.execs[h] = STATE.graphs[_h(graph)]
    return (cudaError_t.cudaSuccess, cudaGraphExec_t(h))


def cudaGraphLaunch(graphExec, stream):
    work = STATE.execs.get(_h(graphExec))
    if work is None:
        return (cudaError_t.cudaErrorInvalidValue,)
    for step in work:
        check = getattr(step, "before_launch", None)  # the TensorRT double checks its context's state
        if check is not None:
            check()
    for step in work:
        enqueue(stream, step)
    STATE.count("graph_launch")
    return (cudaError_t.cudaSuccess,)


def cudaGraphExecDestroy(graphExec):
    return (
        cudaError_t.cudaSuccess
        if STATE.execs.pop(_h(graphExec), None) is not None
        else cudaError_t.cudaErrorInvalidValue,
    )


def cudaGraphDestroy(graph):
    return (
        cudaError_t.cudaSuccess if STATE.graphs.pop(_h(graph), None) is not None else cudaError_t.cudaErrorInvalidValue,
    )


def cudaGetLastError():
    err, STATE.last_error = STATE.last_error, 0
    return (cudaError_t(err),)
