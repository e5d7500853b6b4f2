"""The few CUDA runtime calls the TensorRT backend needs, through NVIDIA's cuda-python.

Why cuda-python (``cuda.bindings.runtime``) rather than pycuda: it is NVIDIA's
own, maintained binding of the CUDA runtime API, released with each CUDA
version and used by TensorRT's samples since TensorRT 10; it ships as wheels
(no compiler at install time), works with the primary context that TensorRT
and PyTorch also use (pycuda's autoinit creates its own context, which then
fights with torch's), and exposes CUDA graphs and stream capture.

Every call returns ``(cudaError_t, *values)``; ``check`` turns errors into
segrt errors. A missing driver or GPU becomes ``BackendUnavailableError``.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from segrt.errors import BackendUnavailableError, SegrtError

INSTALL_HINT = "pip install 'cuda-python>=12.6' (or pip install 'segrt[gpu]'); it must match your NVIDIA driver"

# errors that mean "there is no usable GPU here", not "this program has a bug"
_NO_GPU_ERRORS = (
    "cudaErrorNoDevice",
    "cudaErrorInsufficientDriver",
    "cudaErrorInvalidDevice",
    "cudaErrorDevicesUnavailable",
    "cudaErrorSystemDriverMismatch",
    "cudaErrorCompatNotSupportedOnDevice",
)


class CudaError(SegrtError, RuntimeError):
    """A CUDA runtime call failed (out of memory, illegal address, ...)."""


def import_cudart() -> Any:
    """Return ``cuda.bindings.runtime``, or raise ``BackendUnavailableError`` saying what to install."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:  # cuda-python < 12.6 spelled it cuda.cudart
            from cuda import cudart
        except ImportError:
            raise BackendUnavailableError(
                "cuda-python is not installed (the TensorRT backend uses it for GPU memory, streams and CUDA graphs)",
                INSTALL_HINT,
            ) from None
    return cudart


def import_cuda_utils() -> Any:
    """``cuda.bindings.utils`` (cuda-python >= 12.9.1), or None where it does not exist yet."""
    try:
        from cuda.bindings import utils
    except ImportError:
        return None
    return utils


def native_handle(obj: Any) -> int:
    """The native value (``cudaStream_t`` address, ...) of a cuda-python object, as an int.

    cuda-bindings 12.9.1/13.0 deprecate ``int(cuda_obj)`` for this ("subject to future
    removal") in favour of ``cuda.bindings.utils.get_cuda_native_handle``; older releases
    have only ``int()``.
    """
    utils = import_cuda_utils()
    getter = getattr(utils, "get_cuda_native_handle", None) if utils is not None else None
    return int(getter(obj)) if getter is not None else int(obj)


def error_name(err: Any) -> str:
    cudart = import_cudart()
    _, name = cudart.cudaGetErrorName(err)
    _, text = cudart.cudaGetErrorString(err)
    return f"{name.decode() if isinstance(name, bytes) else name}: {text.decode() if isinstance(text, bytes) else text}"


def check(result: Any, what: str) -> Any:
    """Unwrap ``(err, *values)`` from a cuda-python call; raise a segrt error naming ``what`` failed."""
    if isinstance(result, tuple):
        err, values = result[0], result[1:]
    else:
        err, values = result, ()
    if int(err) != 0:
        desc = error_name(err)
        if any(desc.startswith(n) for n in _NO_GPU_ERRORS):
            raise BackendUnavailableError(
                f"no usable NVIDIA GPU: {what} failed with {desc}",
                "run on a machine with an NVIDIA GPU and a driver new enough for this CUDA "
                "(nvidia-smi must list the GPU); or use the ONNX Runtime backend (the .onnx file) on CPU",
            )
        raise CudaError(
            f"CUDA error in {what}: {desc}",
            "if it is out of memory, use smaller inputs/batches or fewer execution contexts; "
            "otherwise report it with the model file",
        )
    if not values:
        return None
    return values[0] if len(values) == 1 else values


@dataclass(frozen=True)
class DeviceInfo:
    """What an engine build depends on: the GPU model and its compute capability."""

    index: int
    name: str
    compute_capability: tuple[int, int]
    total_memory: int  # bytes
    driver_version: int  # e.g. 12080 for CUDA 12.8
    runtime_version: int


def device_info(device: int = 0) -> DeviceInfo:
    """Describe GPU ``device``; ``BackendUnavailableError`` when there is no driver or GPU."""
    cudart = import_cudart()
    driver = check(cudart.cudaDriverGetVersion(), "cudaDriverGetVersion")
    if driver == 0:
        raise BackendUnavailableError(
            "no NVIDIA driver is installed (cudaDriverGetVersion returned 0)",
            "install the NVIDIA driver and run on a machine with an NVIDIA GPU; "
            "or use the ONNX Runtime backend (the .onnx file) on CPU",
        )
    count = check(cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")
    if not 0 <= device < count:
        raise BackendUnavailableError(
            f"GPU {device} does not exist; this machine has {count} GPU(s)",
            f"pass device=0..{count - 1} (or check CUDA_VISIBLE_DEVICES)",
        )
    prop = check(cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = prop.name
    if isinstance(name, (bytes, bytearray)):
        name = bytes(name).split(b"\0", 1)[0].decode(errors="replace")
    return DeviceInfo(
        device,
        str(name),
        (int(prop.major), int(prop.minor)),
        int(prop.totalGlobalMem),
        int(driver),
        int(check(cudart.cudaRuntimeGetVersion(), "cudaRuntimeGetVersion")),
    )


def set_device(device: int) -> None:
    """Make ``device`` current for the calling thread (CUDA's current device is per host thread)."""
    check(import_cudart().cudaSetDevice(device), f"cudaSetDevice({device})")


class DeviceBuffer:
    """``nbytes`` of GPU memory, freed by ``free()`` or garbage collection."""

    def __init__(self, nbytes: int) -> None:
        self._cudart = import_cudart()
        self.nbytes = int(nbytes)
        # cudaMalloc(0) returns a null pointer; TensorRT wants a valid address even for empty tensors
        self._ptr: int | None = int(check(self._cudart.cudaMalloc(max(self.nbytes, 1)), f"cudaMalloc({self.nbytes})"))

    @property
    def ptr(self) -> int:
        """The device address; using a freed buffer is a bug, so it raises rather than passing a null pointer."""
        if self._ptr is None:
            raise RuntimeError("this device buffer was freed")
        return self._ptr

    def free(self) -> None:
        if self._ptr is not None:
            self._cudart.cudaFree(self._ptr)
            self._ptr = None

    def __del__(self) -> None:
        try:
            self.free()
        except Exception:  # interpreter shutdown: the driver may already be gone
            pass


class PinnedBuffer:
    """Page-locked host memory seen as a numpy array: copies to/from the GPU run asynchronously at full speed."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self._cudart = import_cudart()
        self.dtype = np.dtype(dtype)
        self.shape = tuple(int(s) for s in shape)
        self.nbytes = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
        self.ptr: int | None = int(
            check(self._cudart.cudaMallocHost(max(self.nbytes, 1)), f"cudaMallocHost({self.nbytes})")
        )
        # byte view then dtype view: works for float16, which ctypes has no type for
        raw = (ctypes.c_ubyte * max(self.nbytes, 1)).from_address(self.ptr)
        self.array = (
            np.frombuffer(memoryview(raw), dtype=np.uint8, count=self.nbytes).view(self.dtype).reshape(self.shape)
        )

    def free(self) -> None:
        if self.ptr is not None:
            self.array = None  # type: ignore[assignment]
            self._cudart.cudaFreeHost(self.ptr)
            self.ptr = None

    def __del__(self) -> None:
        try:
            self.free()
        except Exception:
            pass


class Stream:
    """A non-blocking CUDA stream (does not synchronize with the legacy default stream)."""

    def __init__(self) -> None:
        self._cudart = import_cudart()
        self.handle = check(
            self._cudart.cudaStreamCreateWithFlags(self._cudart.cudaStreamNonBlocking), "cudaStreamCreateWithFlags"
        )

    @property
    def native(self) -> int:
        """The ``cudaStream_t`` as an int (for ``execute_async_v3`` and ``torch.cuda.ExternalStream``)."""
        return native_handle(self.handle)

    def synchronize(self) -> None:
        check(self._cudart.cudaStreamSynchronize(self.handle), "cudaStreamSynchronize")

    def copy_htod(self, dst: int, src: np.ndarray) -> None:
        check(
            self._cudart.cudaMemcpyAsync(
                dst, src.ctypes.data, src.nbytes, self._cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self.handle
            ),
            "cudaMemcpyAsync host->device",
        )

    def copy_dtoh(self, dst: np.ndarray, src: int) -> None:
        check(
            self._cudart.cudaMemcpyAsync(
                dst.ctypes.data, src, dst.nbytes, self._cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.handle
            ),
            "cudaMemcpyAsync device->host",
        )

    def copy_dtod(self, dst: int, src: int, nbytes: int) -> None:
        check(
            self._cudart.cudaMemcpyAsync(
                dst, src, nbytes, self._cudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice, self.handle
            ),
            "cudaMemcpyAsync device->device",
        )

    def destroy(self) -> None:
        """Wait for the stream's work, then destroy it (TensorRT: releasing memory an enqueue uses
        before the stream has synchronized is undefined behaviour, and callers free buffers next)."""
        if self.handle is not None:
            handle, self.handle = self.handle, None
            try:
                self._cudart.cudaStreamSynchronize(handle)
            finally:
                self._cudart.cudaStreamDestroy(handle)

    def __del__(self) -> None:
        try:
            self.destroy()
        except Exception:
            pass


class CudaGraph:
    """A captured and instantiated CUDA graph: ``capture(stream, fn)`` then ``launch(stream)``.

    Capture records the kernels ``fn`` enqueues on ``stream`` without running
    them; replaying skips the per-kernel CPU launch cost. The graph bakes in
    every pointer and shape, so it is only valid while they stay the same.
    """

    def __init__(self) -> None:
        self._cudart = import_cudart()
        self.graph = None
        self.exec = None

    def capture(self, stream: Stream, fn: Callable[[], None]) -> None:
        cudart = self._cudart
        # thread-local mode: other threads' CUDA calls are not forbidden while we capture
        check(
            cudart.cudaStreamBeginCapture(stream.handle, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal),
            "cudaStreamBeginCapture",
        )
        try:
            fn()
        except BaseException:
            self._end_failed_capture(stream)
            raise
        result = cudart.cudaStreamEndCapture(stream.handle)
        if int(result[0]) != 0:
            self._end_failed_capture(stream, result)
            check(result, "cudaStreamEndCapture")
        graph = result[1]
        self.graph = graph
        self.exec = check(cudart.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")

    def _end_failed_capture(self, stream: Stream, ended: Any = None) -> None:
        """Clean up as trtexec does after a failed capture: end it (or the stream stays in capture
        mode), destroy any graph it returned, and read CUDA's last error, which would otherwise be
        returned by the next ``cudaGetLastError`` (segrt's plugin checks its launch with it)."""
        cudart = self._cudart
        if ended is None:
            ended = cudart.cudaStreamEndCapture(stream.handle)
        graph = ended[1] if isinstance(ended, tuple) and len(ended) > 1 else None
        if graph is not None:
            cudart.cudaGraphDestroy(graph)
        cudart.cudaGetLastError()

    def launch(self, stream: Stream) -> None:
        check(self._cudart.cudaGraphLaunch(self.exec, stream.handle), "cudaGraphLaunch")

    def destroy(self) -> None:
        if self.exec is not None:
            self._cudart.cudaGraphExecDestroy(self.exec)
            self.exec = None
        if self.graph is not None:
            self._cudart.cudaGraphDestroy(self.graph)
            self.graph = None

    def __del__(self) -> None:
        try:
            self.destroy()
        except Exception:
            pass
