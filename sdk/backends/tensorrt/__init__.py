"""TensorRT backend: runs a segrt ``.engine`` (or ``.plan``) file on an NVIDIA GPU.

    backend = TensorRTBackend("unet.engine")              # or segrt.load("unet.engine")
    out = backend.run({"image": x})                        # numpy in, numpy out
    out = backend.run_torch({"image": t})                  # torch CUDA tensors in and out, zero-copy

Loading reads the engine header (``segrt.artifact.engine_file``: metadata + checksum),
refuses an engine built by another TensorRT version or for another GPU compute
capability (printing the exact rebuild command), loads the segrt plugin library
the metadata names (``segrt.ops.plugins``: next to the engine, its environment variable,
the package), then deserializes the plan.

Running uses TensorRT's tensor-name API (``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``) on a CUDA stream. Device buffers and page-locked host buffers
are allocated once per set of input shapes and reused (the last few shape sets are
kept); with ``use_cuda_graph=True`` each context keeps one CUDA graph: after any change
of its shapes or tensor addresses one plain enqueue runs, the next call with nothing
changed captures the enqueue and replays it, and later calls replay it (see ``slot``).
Outputs whose size depends on the data get TensorRT's output allocator, and no graph.

One TensorRT logger serves the whole process (``api.process_logger``); each engine and
each context reports errors into its own ``IErrorRecorder``, so a failure names its model.

Thread safety: a TensorRT execution context holds per-inference state, so it must
not be used by two threads at once. The backend keeps a small pool of contexts
(``contexts``, default 1), each with its own stream and buffers; ``run`` borrows one
for the duration of the call. Up to ``contexts`` threads run concurrently; more wait.
Each context costs its activation memory on the GPU (for the largest profile shape).

Modules, one job each: ``checks`` (pure checks: versions, shapes, alignment), ``api``
(importing TensorRT; the logger and output allocator it calls back), ``plugin_loading``,
``pool`` (``ContextPool``), ``slot`` (one context with its stream, buffers and graphs),
``backend`` (``TensorRTBackend``).

Without ``tensorrt`` and ``cuda-python`` this package still imports; constructing the
backend raises ``BackendUnavailableError`` saying what to install.
"""

from segrt.backends.tensorrt.api import (
    TRT_INSTALL_HINT,
    import_tensorrt,
    make_error_recorder,
    make_logger,
    make_output_allocator,
    process_logger,
)
from segrt.backends.tensorrt.backend import TensorRTBackend
from segrt.backends.tensorrt.checks import TENSOR_ALIGNMENT, check_engine_compatibility, check_input_shape, is_aligned
from segrt.backends.tensorrt.plugin_loading import check_plugin_creators, load_engine_plugins
from segrt.backends.tensorrt.pool import ContextPool, PoolClosedError
from segrt.backends.tensorrt.slot import MAX_CACHED_SHAPES

__all__ = [
    "MAX_CACHED_SHAPES",
    "TENSOR_ALIGNMENT",
    "TRT_INSTALL_HINT",
    "ContextPool",
    "PoolClosedError",
    "TensorRTBackend",
    "check_engine_compatibility",
    "check_input_shape",
    "check_plugin_creators",
    "import_tensorrt",
    "is_aligned",
    "load_engine_plugins",
    "make_error_recorder",
    "make_logger",
    "make_output_allocator",
    "process_logger",
]
