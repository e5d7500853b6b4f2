"""The CUDA binding: CUDA tensors -> the C launchers of ``libsegrt_roi_align_cuda.so`` (ctypes).

Called by :mod:`segrt.ops.roi_align` with attributes already checked. Tensors are
used through their own methods (``data_ptr``, ``contiguous``, ``float``, ``int``,
``new_empty``, ``shape``, ``dtype``, ``device``), the way a torch CUDA tensor
offers them; this module never imports torch. The launchers enqueue one kernel
on the given stream, or on the current stream of the tensor's framework, exactly
as the TensorRT plugin runs them on the engine's stream.
"""

from __future__ import annotations

import ctypes
import functools
import sys
from collections.abc import Sequence
from typing import Any

from segrt.errors import BackendUnavailableError, InputError, SegrtError
from segrt.ops import native

# SEGRT_DTYPE_FLOAT32 / SEGRT_DTYPE_FLOAT16 in kernels/roi_align/roi_align_kernel.h
_DTYPES = {"float32": 0, "float16": 1}
_CUDA_INVALID_VALUE = 1
# cudaError_t values that mean "no usable GPU here" (driver_types.h)
_NO_GPU = {
    3: "cudaErrorInitializationError",
    35: "cudaErrorInsufficientDriver",
    100: "cudaErrorNoDevice",
    209: "cudaErrorNoKernelImageForDevice",
    222: "cudaErrorUnsupportedPtxVersion",
}


@functools.lru_cache(maxsize=1)
def _lib() -> ctypes.CDLL:
    lib = native.open_library(native.CUDA_ROI_ALIGN)
    i32, i64, f32, vp = ctypes.c_int32, ctypes.c_int64, ctypes.c_float, ctypes.c_void_p
    lib.segrt_roi_align_cuda.restype = ctypes.c_int
    lib.segrt_roi_align_cuda.argtypes = [i32, vp, i64, i64, i64, i64, vp, vp, i64, i32, i32, f32, i32, i32, i32, vp, vp]
    lib.segrt_multi_level_roi_align_cuda.restype = ctypes.c_int
    lib.segrt_multi_level_roi_align_cuda.argtypes = [
        i32,
        ctypes.POINTER(vp),
        ctypes.POINTER(i64),
        ctypes.POINTER(i64),
        ctypes.POINTER(f32),
        i32,
        i64,
        i64,
        vp,
        vp,
        i64,
        i32,
        i32,
        i32,
        i32,
        f32,
        i32,
        vp,
        vp,
    ]
    describe = getattr(lib, "segrt_roi_align_cuda_error_string", None)  # absent in libraries built before it
    if describe is not None:
        describe.restype = ctypes.c_char_p
        describe.argtypes = [i32]
    return lib


def _dtype_name(t: Any) -> str:
    return str(getattr(t, "dtype", "?")).rpartition(".")[2]  # torch.float16 -> float16


def _same_device(t: Any, ref: Any, name: str) -> Any:
    if getattr(t, "is_cuda", False) is not True or str(t.device) != str(ref.device):
        raise InputError(
            f"{name} must be a CUDA tensor on {ref.device} like the features, got "
            f"{type(t).__name__} on {getattr(t, 'device', 'the host')}",
            f"move it there: {name}.to({str(ref.device)!r})",
        )
    return t


def _feature(x: Any, name: str) -> Any:
    if len(x.shape) != 4:
        raise InputError(
            f"{name} must be 4-D [N, C, H, W], got shape {tuple(x.shape)}",
            "add the batch axis (x[None]) or pass NCHW data",
        )
    if _dtype_name(x) not in _DTYPES:
        raise InputError(f"{name} must be float32 or float16 on the GPU, got {x.dtype}", f"pass {name}.float()")
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise InputError(f"{name} has an empty spatial size {tuple(x.shape[2:])}", "pass a feature map of at least 1x1")
    return x.contiguous()


def _boxes(rois: Any, batch_indices: Any, ref: Any) -> tuple[Any, Any]:
    """float32 ``[K, 4]`` rois and int32 ``[K]`` indices, contiguous, on ``ref``'s device (values are not read)."""
    rois = _same_device(rois, ref, "rois")
    idx = _same_device(batch_indices, ref, "batch_indices")
    if len(rois.shape) != 2 or rois.shape[1] != 4:
        raise InputError(
            f"rois must have shape [K, 4] (x1, y1, x2, y2), got {tuple(rois.shape)}",
            "pass one row per box; a [K, 5] torchvision tensor splits into batch index and box",
        )
    if len(idx.shape) != 1 or idx.shape[0] != rois.shape[0]:
        raise InputError(
            f"batch_indices must have shape [K] = [{rois.shape[0]}], got {tuple(idx.shape)}",
            "pass one image index per box",
        )
    if not _dtype_name(rois).startswith(("float", "bfloat", "half")):
        raise InputError(f"rois must be floating point, got {rois.dtype}", "pass rois.float()")
    if not _dtype_name(idx).startswith(("int", "uint")):
        raise InputError(f"batch_indices must be integers, got {idx.dtype}", "pass batch_indices.int()")
    return rois.float().contiguous(), idx.int().contiguous()


def _stream(x: Any, stream: int | None) -> int:
    """The stream to launch on: the given handle, else the current stream of ``x``'s framework (never imported)."""
    if stream is not None:
        return int(stream)
    framework = sys.modules.get(type(x).__module__.partition(".")[0])
    current = getattr(getattr(framework, "cuda", None), "current_stream", None)
    return int(current(x.device).cuda_stream) if current is not None else 0  # 0: the legacy default stream


def _check(status: int, what: str) -> None:
    if status == 0:
        return
    describe = getattr(_lib(), "segrt_roi_align_cuda_error_string", None)
    text = (describe(status) or b"").decode(errors="replace") if describe is not None else "no description"
    if status in _NO_GPU:
        raise BackendUnavailableError(
            f"{what} could not run: no usable CUDA GPU ({_NO_GPU[status]}: {text})",
            "run on a machine with an NVIDIA GPU and driver, and build the library for that GPU's architecture "
            "(-DCMAKE_CUDA_ARCHITECTURES); or pass numpy arrays to run on the CPU",
        )
    if status == _CUDA_INVALID_VALUE:
        raise InputError(f"{what} rejected its arguments ({text})", "check the shapes and attributes")
    raise SegrtError(f"{what} failed: cudaError {status} ({text})", "check the GPU with nvidia-smi, then retry")


def roi_align(
    x: Any,
    rois: Any,
    batch_indices: Any,
    out_hw: tuple[int, int],
    scale: float,
    ratio: int,
    mode: int,
    aligned: bool,
    stream: int | None,
) -> Any:
    """See :func:`segrt.ops.roi_align`. Returns ``[K, C, h, w]`` of ``x``'s dtype on its device."""
    x = _feature(x, "x")
    rois, idx = _boxes(rois, batch_indices, x)
    n, c, h, w = (int(v) for v in x.shape)
    k = int(rois.shape[0])
    y = x.new_empty((k, c, *out_hw))
    handle = _stream(x, stream)
    lib = _lib()
    _check(
        lib.segrt_roi_align_cuda(
            _DTYPES[_dtype_name(x)],
            x.data_ptr(),
            n,
            c,
            h,
            w,
            rois.data_ptr(),
            idx.data_ptr(),
            k,
            out_hw[0],
            out_hw[1],
            scale,
            ratio,
            mode,
            int(aligned),
            y.data_ptr(),
            handle,
        ),
        "segrt_roi_align_cuda",
    )
    return y


def multi_scale_roi_align(
    features: Sequence[Any],
    rois: Any,
    batch_indices: Any,
    out_hw: tuple[int, int],
    scales: Sequence[float],
    ratio: int,
    aligned: bool,
    canonical_scale: float,
    canonical_level: int,
    stream: int | None,
) -> Any:
    """See :func:`segrt.ops.multi_scale_roi_align`. Returns ``[K, C, h, w]`` of the features' dtype, one launch."""
    feats = [_feature(_same_device(f, features[0], f"features[{i}]"), f"features[{i}]") for i, f in enumerate(features)]
    n, c = (int(v) for v in feats[0].shape[:2])
    for i, f in enumerate(feats[1:], start=1):
        if tuple(f.shape[:2]) != (n, c) or _dtype_name(f) != _dtype_name(feats[0]):
            raise InputError(
                f"features[{i}] has N, C = {tuple(f.shape[:2])} and {f.dtype}, but features[0] has "
                f"{(n, c)} and {feats[0].dtype}",
                "pass levels of one FPN: same batch size, channel count and dtype",
            )
    rois, idx = _boxes(rois, batch_indices, feats[0])
    num = len(feats)
    ptrs = (ctypes.c_void_p * num)(*[f.data_ptr() for f in feats])
    heights = (ctypes.c_int64 * num)(*[int(f.shape[2]) for f in feats])
    widths = (ctypes.c_int64 * num)(*[int(f.shape[3]) for f in feats])
    scale_arr = (ctypes.c_float * num)(*scales)
    k = int(rois.shape[0])
    y = feats[0].new_empty((k, c, *out_hw))
    handle = _stream(feats[0], stream)
    lib = _lib()
    _check(
        lib.segrt_multi_level_roi_align_cuda(
            _DTYPES[_dtype_name(feats[0])],
            ptrs,
            heights,
            widths,
            scale_arr,
            num,
            n,
            c,
            rois.data_ptr(),
            idx.data_ptr(),
            k,
            out_hw[0],
            out_hw[1],
            ratio,
            int(aligned),
            canonical_scale,
            canonical_level,
            y.data_ptr(),
            handle,
        ),
        "segrt_multi_level_roi_align_cuda",
    )
    return y
