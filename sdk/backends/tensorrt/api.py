"""The TensorRT Python objects segrt defines or imports: the module, the logger, error recorders, an output allocator.

TensorRT calls the logger, the error recorder and the output allocator from C++. A Python
exception raised inside such a callback cannot be handed back through TensorRT's
``noexcept`` interfaces (the process would abort), so the callbacks here catch everything,
record it, and return what TensorRT understands as failure.

One logger per process: ``NvInferRuntime.h`` requires the logger to outlive every object
created with it, ``init_libnvinfer_plugins`` keeps it as a raw pointer (the binding holds
no reference), plugins log through ``getLogger()``, and TensorRT keeps a single logger
pointer at a time (NVIDIA/TensorRT#1475). So :func:`process_logger` creates it once and
keeps it for the life of the process, and the logger only prints. Error *messages* for
exceptions come from an ``IErrorRecorder`` per engine / context (:func:`make_error_recorder`):
``NvInferRuntime.h``: "If an error recorder is not set, messages will be sent to the global
log stream", i.e. with one set, a context's errors reach its own recorder, named after its model.
"""

from __future__ import annotations

import collections
import sys
import threading
from typing import Any

from segrt.backends import cuda_rt
from segrt.errors import BackendUnavailableError

TRT_INSTALL_HINT = (
    "install TensorRT 10 or 11 for your CUDA version (pip install tensorrt-cu12 or tensorrt-cu13, "
    "or NVIDIA's packages) together with cuda-python: pip install 'segrt[gpu]'"
)
MAX_RECORDED_ERRORS = 64  # an error recorder keeps the most recent ones; older ones are counted as overflow


def import_tensorrt() -> Any:
    """``import tensorrt`` (10 or newer), or ``BackendUnavailableError`` saying what to install."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailableError(f"TensorRT's Python package is not installed ({exc})", TRT_INSTALL_HINT) from None
    if int(str(trt.__version__).split(".")[0]) < 10:
        raise BackendUnavailableError(
            f"TensorRT {trt.__version__} is too old: segrt uses the TensorRT 10 API (tensor names, execute_async_v3)",
            TRT_INSTALL_HINT,
        )
    return trt


def make_logger(trt: Any, verbose: bool = False) -> Any:
    """A new ``trt.ILogger`` printing warnings (everything with ``verbose``) to stderr.

    Use :func:`process_logger` to get *the* logger: TensorRT must be given one logger per
    process. Errors are printed, not kept: they reach exceptions through error recorders.
    """

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.min_print = trt.ILogger.Severity.VERBOSE if verbose else trt.ILogger.Severity.WARNING

        def log(self, severity: Any, msg: str) -> None:  # lower value = more severe
            try:
                if severity <= self.min_print:
                    print(f"[TensorRT {getattr(severity, 'name', severity)}] {msg}", file=sys.stderr)
            except Exception:
                pass

    return _Logger()


_logger_lock = threading.Lock()
_process_logger: tuple[Any, Any] | None = None  # (tensorrt module, its logger): kept until the process ends


def process_logger(trt: Any, verbose: bool = False) -> Any:
    """The one ``ILogger`` of this process for module ``trt``, created (and given to
    ``init_libnvinfer_plugins``) on first use and never released.

    ``verbose=True`` makes it print TensorRT's verbose messages from then on (process-wide:
    there is only one logger).
    """
    global _process_logger
    with _logger_lock:
        if _process_logger is None or _process_logger[0] is not trt:
            logger = make_logger(trt, verbose)
            trt.init_libnvinfer_plugins(logger, "")  # stores the pointer: this logger must live forever
            _process_logger = (trt, logger)
        logger = _process_logger[1]
        if verbose:
            logger.min_print = trt.ILogger.Severity.VERBOSE
        return logger


def make_error_recorder(trt: Any, owner: str) -> Any:
    """A thread-safe ``trt.IErrorRecorder`` keeping the last ``MAX_RECORDED_ERRORS`` errors of one engine.

    ``owner`` (e.g. the engine file's name) prefixes every message, so an error read back
    names its model even with several engines in one process. ``mark()`` / ``since(mark)``
    give the errors reported after a point (one call's errors), ``report(msg)`` records an
    error of segrt's own callbacks (output allocator) the same way.
    """

    class _ErrorRecorder(trt.IErrorRecorder):
        def __init__(self) -> None:
            trt.IErrorRecorder.__init__(self)
            self.owner = owner
            self._lock = threading.Lock()
            self._errors: collections.deque[tuple[Any, str]] = collections.deque(maxlen=MAX_RECORDED_ERRORS)
            self._total = 0  # errors ever reported: marks count from here

        # -- IErrorRecorder (called by TensorRT, from any thread) --------------------------
        def num_errors(self) -> int:
            with self._lock:
                return len(self._errors)

        def get_error_code(self, arg0: int) -> Any:
            with self._lock:
                return self._errors[int(arg0)][0] if 0 <= int(arg0) < len(self._errors) else trt.ErrorCodeTRT.SUCCESS

        def get_error_desc(self, arg0: int) -> str:
            with self._lock:
                return self._errors[int(arg0)][1] if 0 <= int(arg0) < len(self._errors) else ""

        def has_overflowed(self) -> bool:
            with self._lock:
                return self._total > len(self._errors)

        def clear(self) -> None:
            with self._lock:
                self._errors.clear()

        def report_error(self, arg0: Any, arg1: str) -> bool:
            try:
                with self._lock:
                    self._errors.append((arg0, f"{owner}: {arg1}"))
                    self._total += 1
            except Exception:
                pass
            return False  # not fatal: TensorRT's call returns its failure value, segrt raises with the message

        # -- segrt's side ------------------------------------------------------------------
        def mark(self) -> int:
            """A position; ``since(mark)`` returns the errors reported after it."""
            with self._lock:
                return self._total

        def since(self, mark: int) -> list[str]:
            """Messages reported after ``mark`` (those still kept)."""
            with self._lock:
                kept_from = self._total - len(self._errors)
                return [m for i, (_, m) in enumerate(self._errors) if kept_from + i >= mark]

        def report(self, msg: str) -> None:
            """Record an error of a segrt callback as if TensorRT had reported it."""
            self.report_error(trt.ErrorCodeTRT.UNSPECIFIED_ERROR, msg)
            print(f"[segrt] {owner}: {msg}", file=sys.stderr)

    return _ErrorRecorder()


def make_output_allocator(trt: Any, recorder: Any) -> Any:
    """A ``trt.IOutputAllocator`` for outputs whose shape is only known after inference (data-dependent).

    TensorRT calls ``reallocate_output_async`` with the byte size it needs and expects a
    device address, or 0 to say the allocation failed (it then fails the inference);
    ``notify_shape`` gives the final shape. Any exception (out of GPU memory, a CUDA
    error) is reported to ``recorder`` (``make_error_recorder``) and answered with 0.
    """

    class _OutputAllocator(trt.IOutputAllocator):
        def __init__(self) -> None:
            trt.IOutputAllocator.__init__(self)
            self.buffers: dict[str, cuda_rt.DeviceBuffer] = {}
            self.shapes: dict[str, tuple[int, ...]] = {}

        def reallocate_output_async(self, tensor_name: str, memory: int, size: int, alignment: int, stream: int) -> int:
            try:
                buf = self.buffers.get(tensor_name)
                if buf is None or buf.nbytes < size:
                    if buf is not None:
                        del self.buffers[tensor_name]
                        buf.free()  # the previous result was copied out before this run started
                    buf = cuda_rt.DeviceBuffer(size)  # cudaMalloc aligns to 256 bytes, more than TensorRT asks
                    self.buffers[tensor_name] = buf
                return buf.ptr
            except BaseException as exc:
                recorder.report(f"could not allocate {size} bytes for output {tensor_name!r}: {exc}")
                return 0

        def reallocate_output(self, tensor_name: str, memory: int, size: int, alignment: int) -> int:
            return self.reallocate_output_async(tensor_name, memory, size, alignment, 0)

        def notify_shape(self, tensor_name: str, shape: Any) -> None:
            try:
                self.shapes[tensor_name] = tuple(int(d) for d in shape)
            except BaseException as exc:
                recorder.report(f"could not read the shape of output {tensor_name!r}: {exc}")

        def free(self) -> None:
            for buf in self.buffers.values():
                buf.free()
            self.buffers.clear()

    return _OutputAllocator()
