"""The TensorRT Python objects segrt defines or imports: the module, a logger, an output allocator.

TensorRT calls the logger and the output allocator from C++. A Python exception raised
inside such a callback cannot be handed back through TensorRT's ``noexcept`` interfaces
(the process would abort), so the callbacks here catch everything, record it, and
return what TensorRT understands as failure.
"""
from __future__ import annotations

import sys
from typing import Any

from segrt.errors import BackendUnavailableError
from segrt.backends import cuda_rt
TRT_INSTALL_HINT = ("install TensorRT 10 or 11 for your CUDA version (pip install tensorrt-cu12 or tensorrt-cu13, "
                    "or NVIDIA's packages) together with cuda-python: pip install 'segrt[gpu]'")


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
    """A ``trt.ILogger`` printing warnings (everything with ``verbose``) and keeping errors for messages.

    ``errors`` holds TensorRT's error messages and those of segrt's own callbacks
    (``report``), so a failed call can say why.
    """

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []
            self.min_print = trt.ILogger.Severity.VERBOSE if verbose else trt.ILogger.Severity.WARNING

        def log(self, severity, msg):  # lower value = more severe
            try:
                if severity <= trt.ILogger.Severity.ERROR:
                    self.errors.append(str(msg))
                if severity <= self.min_print:
                    print(f"[TensorRT {getattr(severity, 'name', severity)}] {msg}", file=sys.stderr)
            except Exception:  # noqa: BLE001 - called from TensorRT's C++: nothing may escape
                pass

        def report(self, msg: str) -> None:
            """Record an error of a segrt callback as if TensorRT had logged it."""
            self.errors.append(msg)
            print(f"[segrt] {msg}", file=sys.stderr)

    return _Logger()


def make_output_allocator(trt: Any, logger: Any):
    """A ``trt.IOutputAllocator`` for outputs whose shape is only known after inference (data-dependent).

    TensorRT calls ``reallocate_output_async`` with the byte size it needs and expects a
    device address, or 0 to say the allocation failed (it then fails the inference);
    ``notify_shape`` gives the final shape. Any exception (out of GPU memory, a CUDA
    error) is written to ``logger`` and answered with 0.
    """

    class _OutputAllocator(trt.IOutputAllocator):
        def __init__(self) -> None:
            trt.IOutputAllocator.__init__(self)
            self.buffers: dict[str, cuda_rt.DeviceBuffer] = {}
            self.shapes: dict[str, tuple[int, ...]] = {}

        def reallocate_output_async(self, tensor_name, memory, size, alignment, stream):
            try:
                buf = self.buffers.get(tensor_name)
                if buf is None or buf.nbytes < size:
                    if buf is not None:
                        del self.buffers[tensor_name]
                        buf.free()  # the previous result was copied out before this run started
                    buf = cuda_rt.DeviceBuffer(size)  # cudaMalloc aligns to 256 bytes, more than TensorRT asks
                    self.buffers[tensor_name] = buf
                return buf.ptr
            except BaseException as exc:  # noqa: BLE001 - must not cross into TensorRT
                logger.report(f"could not allocate {size} bytes for output {tensor_name!r}: {exc}")
                return 0

        def reallocate_output(self, tensor_name, memory, size, alignment):
            return self.reallocate_output_async(tensor_name, memory, size, alignment, 0)

        def notify_shape(self, tensor_name, shape):
            try:
                self.shapes[tensor_name] = tuple(int(d) for d in shape)
            except BaseException as exc:  # noqa: BLE001 - must not cross into TensorRT
                logger.report(f"could not read the shape of output {tensor_name!r}: {exc}")

        def free(self) -> None:
            for buf in self.buffers.values():
                buf.free()
            self.buffers.clear()

    return _OutputAllocator()
