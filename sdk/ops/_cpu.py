"""The CPU binding: numpy arrays -> ``libsegrt_roi_align_cpu.so`` (ctypes, no torch).

Called by :mod:`segrt.ops.roi_align` with attributes already checked; this module
checks the arrays. C-contiguous float32 inputs are passed by pointer, not copied.
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Sequence

import numpy as np

from segrt.errors import InputError, SegrtError
from segrt.ops import native

_f32p = ctypes.POINTER(ctypes.c_float)
_i64p = ctypes.POINTER(ctypes.c_int64)


@functools.lru_cache(maxsize=1)
def _lib() -> ctypes.CDLL:
    lib = native.open_library(native.CPU_ROI_ALIGN)
    lib.segrt_roi_align_last_error.restype = ctypes.c_char_p
    lib.segrt_roi_align_last_error.argtypes = []
    lib.segrt_roi_align_cpu_f32.restype = ctypes.c_int32
    lib.segrt_roi_align_cpu_f32.argtypes = [
        _f32p,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_int64,
        _f32p,
        _i64p,
        ctypes.c_int64,
        ctypes.c_int32,
        ctypes.c_int32,
        ctypes.c_float,
        ctypes.c_int32,
        ctypes.c_int32,
        ctypes.c_int32,
        ctypes.c_int32,
        _f32p,
    ]
    lib.segrt_multi_level_roi_align_cpu_f32.restype = ctypes.c_int32
    lib.segrt_multi_level_roi_align_cpu_f32.argtypes = [
        ctypes.POINTER(ctypes.c_void_p),
        _i64p,
        _i64p,
        _f32p,
        ctypes.c_int32,
        ctypes.c_int64,
        ctypes.c_int64,
        _f32p,
        _i64p,
        ctypes.c_int64,
        ctypes.c_int32,
        ctypes.c_int32,
        ctypes.c_int32,
        ctypes.c_int32,
        ctypes.c_float,
        ctypes.c_int32,
        ctypes.c_int32,
        _f32p,
    ]
    return lib


def _default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


# ---------------------------------------------------------------- validation


def _feature(x: object, name: str) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise InputError(f"{name} must be a numpy array, got {type(x).__name__}", "pass np.asarray(...)")
    if x.ndim != 4:
        raise InputError(
            f"{name} must be 4-D [N, C, H, W], got shape {x.shape}", "add the batch axis (x[None]) or pass NCHW data"
        )
    if x.dtype != np.float32:
        raise InputError(f"{name} must be float32, got {x.dtype}", f"pass {name}.astype(np.float32)")
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise InputError(f"{name} has an empty spatial size {x.shape[2:]}", "pass a feature map of at least 1x1")
    return np.ascontiguousarray(x)


def _boxes(rois: object, batch_indices: object, num_images: int) -> tuple[np.ndarray, np.ndarray]:
    rois = np.asarray(rois)
    if rois.ndim != 2 or rois.shape[1] != 4:
        raise InputError(
            f"rois must have shape [K, 4] (x1, y1, x2, y2), got {rois.shape}",
            "pass one row per box; a [K, 5] torchvision tensor splits into batch index and box",
        )
    if not np.issubdtype(rois.dtype, np.floating):
        raise InputError(f"rois must be floating point, got {rois.dtype}", "pass rois.astype(np.float32)")
    rois = np.ascontiguousarray(rois, dtype=np.float32)
    idx = np.asarray(batch_indices)
    if idx.ndim != 1 or idx.shape[0] != rois.shape[0]:
        raise InputError(
            f"batch_indices must have shape [K] = [{rois.shape[0]}], got {idx.shape}", "pass one image index per box"
        )
    if idx.size and not np.issubdtype(idx.dtype, np.integer):
        raise InputError(f"batch_indices must be integers, got {idx.dtype}", "pass batch_indices.astype(np.int64)")
    idx = np.ascontiguousarray(idx, dtype=np.int64)
    if rois.shape[0]:
        if not np.isfinite(rois).all():
            bad = int(np.flatnonzero(~np.isfinite(rois).all(axis=1))[0])
            raise InputError(f"rois[{bad}] = {rois[bad].tolist()} is not finite", "drop or fix NaN/inf boxes")
        if (rois < 0).any():
            bad = int(np.flatnonzero((rois < 0).any(axis=1))[0])
            raise InputError(
                f"rois[{bad}] = {rois[bad].tolist()} has a negative coordinate",
                "clip boxes to the image first (0 <= x1 <= x2, 0 <= y1 <= y2)",
            )
        inverted = (rois[:, 2] < rois[:, 0]) | (rois[:, 3] < rois[:, 1])
        if inverted.any():
            bad = int(np.flatnonzero(inverted)[0])
            raise InputError(
                f"rois[{bad}] = {rois[bad].tolist()} has x2 < x1 or y2 < y1",
                "pass boxes as (x1, y1, x2, y2) with x1 <= x2 and y1 <= y2",
            )
        out_of_range = (idx < 0) | (idx >= num_images)
        if out_of_range.any():
            bad = int(np.flatnonzero(out_of_range)[0])
            raise InputError(
                f"batch_indices[{bad}] = {int(idx[bad])} is outside [0, {num_images})",
                f"index an image of the batch of {num_images}",
            )
    return rois, idx


def _threads(threads: int | None) -> int:
    if threads is None:
        return _default_threads()
    if not isinstance(threads, (int, np.integer)) or isinstance(threads, bool) or threads < 1:
        raise InputError(f"threads must be an int >= 1 or None, got {threads!r}", "pass e.g. threads=2")
    return int(threads)


def _check(status: int) -> None:
    if status == 0:
        return
    message = (_lib().segrt_roi_align_last_error() or b"").decode(errors="replace")
    if status in (1, 2):
        raise InputError(f"RoIAlign rejected its input: {message}", "fix the argument named above")
    raise SegrtError(f"RoIAlign failed: {message}", "free memory or lower `threads`, then retry")


# ------------------------------------------------------------------ the ops


def roi_align(
    x: np.ndarray,
    rois: np.ndarray,
    batch_indices: np.ndarray,
    out_hw: tuple[int, int],
    scale: float,
    ratio: int,
    mode: int,
    aligned: bool,
    threads: int | None,
) -> np.ndarray:
    """See :func:`segrt.ops.roi_align`; ``mode`` 0 = avg, 1 = max. Returns float32 ``[K, C, h, w]``."""
    x = _feature(x, "x")
    rois, idx = _boxes(rois, batch_indices, x.shape[0])
    nthreads = _threads(threads)
    lib = _lib()
    n, c, h, w = x.shape
    k = rois.shape[0]
    y = np.empty((k, c, *out_hw), dtype=np.float32)
    _check(
        lib.segrt_roi_align_cpu_f32(
            x.ctypes.data_as(_f32p),
            n,
            c,
            h,
            w,
            rois.ctypes.data_as(_f32p),
            idx.ctypes.data_as(_i64p),
            k,
            out_hw[0],
            out_hw[1],
            scale,
            ratio,
            mode,
            int(aligned),
            nthreads,
            y.ctypes.data_as(_f32p),
        )
    )
    return y


def multi_scale_roi_align(
    features: Sequence[np.ndarray],
    rois: np.ndarray,
    batch_indices: np.ndarray,
    out_hw: tuple[int, int],
    scales: Sequence[float],
    ratio: int,
    aligned: bool,
    canonical_scale: float,
    canonical_level: int,
    threads: int | None,
) -> np.ndarray:
    """See :func:`segrt.ops.multi_scale_roi_align`. Returns float32 ``[K, C, h, w]``."""
    feats = [_feature(f, f"features[{i}]") for i, f in enumerate(features)]
    n, c = feats[0].shape[:2]
    for i, f in enumerate(feats[1:], start=1):
        if f.shape[:2] != (n, c):
            raise InputError(
                f"features[{i}] has N, C = {f.shape[:2]} but features[0] has {(n, c)}",
                "pass levels of one FPN: same batch size and channel count",
            )
    rois, idx = _boxes(rois, batch_indices, n)
    nthreads = _threads(threads)
    lib = _lib()
    num = len(feats)
    ptrs = (ctypes.c_void_p * num)(*[f.ctypes.data for f in feats])
    heights = np.array([f.shape[2] for f in feats], dtype=np.int64)
    widths = np.array([f.shape[3] for f in feats], dtype=np.int64)
    scale_arr = np.array(scales, dtype=np.float32)
    k = rois.shape[0]
    y = np.empty((k, c, *out_hw), dtype=np.float32)
    _check(
        lib.segrt_multi_level_roi_align_cpu_f32(
            ptrs,
            heights.ctypes.data_as(_i64p),
            widths.ctypes.data_as(_i64p),
            scale_arr.ctypes.data_as(_f32p),
            num,
            n,
            c,
            rois.ctypes.data_as(_f32p),
            idx.ctypes.data_as(_i64p),
            k,
            out_hw[0],
            out_hw[1],
            ratio,
            int(aligned),
            canonical_scale,
            canonical_level,
            nthreads,
            y.ctypes.data_as(_f32p),
        )
    )
    return y
