"""RoIAlign on the CPU, through segrt's native library (no torch).

Two ops, both float32, NCHW, boxes ``(x1, y1, x2, y2)`` in input-image pixels:

* :func:`roi_align` -- ONNX ``RoiAlign`` semantics; ``mode="avg"`` equals
  ``torchvision.ops.roi_align`` (``aligned=True`` is ONNX ``half_pixel``,
  ``aligned=False`` is ``output_half_pixel``).
* :func:`multi_scale_roi_align` -- ``torchvision.ops.MultiScaleRoIAlign`` in one
  call: every box is pooled from the FPN level chosen by torchvision's
  ``LevelMapper`` rule.

The work is done by ``libsegrt_roi_align_cpu.so`` (``kernels/roi_align/``), which
``pip install -e .`` builds into ``sdk/_lib/``. Arrays are passed by pointer:
C-contiguous float32 inputs are not copied.
"""
from __future__ import annotations

import ctypes
import functools
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import BackendUnavailableError, InputError, SegrtError

__all__ = [
    "LIBRARY_NAME",
    "MAX_LEVELS",
    "fpn_scales",
    "library_path",
    "multi_scale_roi_align",
    "roi_align",
]

LIBRARY_NAME = "libsegrt_roi_align_cpu.so"
MAX_LEVELS = 8  # kMaxLevels in kernels/roi_align/roi_align_common.h
_ABI_VERSION = 1  # SEGRT_ROI_ALIGN_ABI_VERSION in kernels/roi_align/roi_align_capi.h
_REPO_ROOT = Path(__file__).resolve().parent.parent
_BUILD_FIX = (
    "build it with `pip install -e .` from the repository root (puts it in sdk/_lib/), or "
    "`cmake -S . -B build -DSEGRT_BUILD_CUDA=OFF && cmake --build build -j` "
    "(then it is found in build/), or point SEGRT_ROI_ALIGN_LIB at the .so file"
)
_MODES = {"avg": 0, "max": 1}

_f32p = ctypes.POINTER(ctypes.c_float)
_i64p = ctypes.POINTER(ctypes.c_int64)


def _candidates() -> list[Path]:
    """Where the library is looked for, in order."""
    out: list[Path] = []
    env = os.environ.get("SEGRT_ROI_ALIGN_LIB")
    if env:
        p = Path(env)
        out.append(p / LIBRARY_NAME if p.is_dir() else p)
    out.append(Path(__file__).resolve().parent / "_lib" / LIBRARY_NAME)
    build = _REPO_ROOT / "build"
    out.append(build / LIBRARY_NAME)
    if build.is_dir():  # scikit-build's build/{wheel_tag}/ and other cmake build dirs
        out.extend(sorted(build.glob(f"*/{LIBRARY_NAME}")))
    return out


def library_path() -> Path:
    """Path of the CPU RoIAlign library that :func:`roi_align` uses.

    Raises:
        BackendUnavailableError: not built; the message lists every place searched.
    """
    candidates = _candidates()
    for p in candidates:
        if p.is_file():
            return p
    searched = ", ".join(str(p) for p in candidates)
    raise BackendUnavailableError(f"the CPU RoIAlign library {LIBRARY_NAME} was not found (searched: {searched})",
                                  _BUILD_FIX)


@functools.lru_cache(maxsize=1)
def _lib() -> ctypes.CDLL:
    path = library_path()
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as exc:
        raise BackendUnavailableError(f"the CPU RoIAlign library {path} cannot be loaded ({exc})",
                                      f"rebuild it: {_BUILD_FIX}") from None
    lib.segrt_roi_align_abi_version.restype = ctypes.c_int32
    lib.segrt_roi_align_abi_version.argtypes = []
    version = lib.segrt_roi_align_abi_version()
    if version != _ABI_VERSION:
        raise BackendUnavailableError(f"{path} has C ABI version {version}, this sdk needs {_ABI_VERSION}",
                                      f"rebuild it: {_BUILD_FIX}")
    lib.segrt_roi_align_last_error.restype = ctypes.c_char_p
    lib.segrt_roi_align_last_error.argtypes = []
    lib.segrt_roi_align_cpu_f32.restype = ctypes.c_int32
    lib.segrt_roi_align_cpu_f32.argtypes = [
        _f32p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
        _f32p, _i64p, ctypes.c_int64, ctypes.c_int32, ctypes.c_int32, ctypes.c_float,
        ctypes.c_int32, ctypes.c_int32, ctypes.c_int32, ctypes.c_int32, _f32p,
    ]
    lib.segrt_multi_level_roi_align_cpu_f32.restype = ctypes.c_int32
    lib.segrt_multi_level_roi_align_cpu_f32.argtypes = [
        ctypes.POINTER(ctypes.c_void_p), _i64p, _i64p, _f32p, ctypes.c_int32, ctypes.c_int64, ctypes.c_int64,
        _f32p, _i64p, ctypes.c_int64, ctypes.c_int32, ctypes.c_int32, ctypes.c_int32, ctypes.c_int32,
        ctypes.c_float, ctypes.c_int32, ctypes.c_int32, _f32p,
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
        raise InputError(f"{name} must be 4-D [N, C, H, W], got shape {x.shape}",
                         "add the batch axis (x[None]) or pass NCHW data")
    if x.dtype != np.float32:
        raise InputError(f"{name} must be float32, got {x.dtype}", f"pass {name}.astype(np.float32)")
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise InputError(f"{name} has an empty spatial size {x.shape[2:]}", "pass a feature map of at least 1x1")
    return np.ascontiguousarray(x)


def _boxes(rois: object, batch_indices: object, num_images: int) -> tuple[np.ndarray, np.ndarray]:
    rois = np.asarray(rois)
    if rois.ndim != 2 or rois.shape[1] != 4:
        raise InputError(f"rois must have shape [K, 4] (x1, y1, x2, y2), got {rois.shape}",
                         "pass one row per box; a [K, 5] torchvision tensor splits into batch index and box")
    if not np.issubdtype(rois.dtype, np.floating):
        raise InputError(f"rois must be floating point, got {rois.dtype}", "pass rois.astype(np.float32)")
    rois = np.ascontiguousarray(rois, dtype=np.float32)
    idx = np.asarray(batch_indices)
    if idx.ndim != 1 or idx.shape[0] != rois.shape[0]:
        raise InputError(f"batch_indices must have shape [K] = [{rois.shape[0]}], got {idx.shape}",
                         "pass one image index per box")
    if idx.size and not np.issubdtype(idx.dtype, np.integer):
        raise InputError(f"batch_indices must be integers, got {idx.dtype}", "pass batch_indices.astype(np.int64)")
    idx = np.ascontiguousarray(idx, dtype=np.int64)
    if rois.shape[0]:
        if not np.isfinite(rois).all():
            bad = int(np.flatnonzero(~np.isfinite(rois).all(axis=1))[0])
            raise InputError(f"rois[{bad}] = {rois[bad].tolist()} is not finite", "drop or fix NaN/inf boxes")
        if (rois < 0).any():
            bad = int(np.flatnonzero((rois < 0).any(axis=1))[0])
            raise InputError(f"rois[{bad}] = {rois[bad].tolist()} has a negative coordinate",
                             "clip boxes to the image first (0 <= x1 <= x2, 0 <= y1 <= y2)")
        inverted = (rois[:, 2] < rois[:, 0]) | (rois[:, 3] < rois[:, 1])
        if inverted.any():
            bad = int(np.flatnonzero(inverted)[0])
            raise InputError(f"rois[{bad}] = {rois[bad].tolist()} has x2 < x1 or y2 < y1",
                             "pass boxes as (x1, y1, x2, y2) with x1 <= x2 and y1 <= y2")
        out_of_range = (idx < 0) | (idx >= num_images)
        if out_of_range.any():
            bad = int(np.flatnonzero(out_of_range)[0])
            raise InputError(f"batch_indices[{bad}] = {int(idx[bad])} is outside [0, {num_images})",
                             f"index an image of the batch of {num_images}")
    return rois, idx


def _output_size(output_size: int | Sequence[int]) -> tuple[int, int]:
    size = (output_size, output_size) if isinstance(output_size, (int, np.integer)) else tuple(output_size)
    if len(size) != 2 or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size):
        raise InputError(f"output_size must be an int or (height, width) ints, got {output_size!r}",
                         "pass e.g. 7 or (14, 14)")
    if size[0] < 1 or size[1] < 1:
        raise InputError(f"output_size must be at least 1x1, got {size}", "pass e.g. 7 or (14, 14)")
    return int(size[0]), int(size[1])


def _sampling_ratio(sampling_ratio: int) -> int:
    if not isinstance(sampling_ratio, (int, np.integer)) or isinstance(sampling_ratio, bool) or sampling_ratio < 0:
        raise InputError(f"sampling_ratio must be an int >= 0, got {sampling_ratio!r}",
                         "pass 0 (adaptive: ceil(roi_size / output_size)) or a fixed count such as 2")
    return int(sampling_ratio)


def _scale(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not math.isfinite(value) or value <= 0:
        raise InputError(f"{name} must be a finite number > 0, got {value!r}",
                         "pass feature pixels per image pixel, e.g. 0.25 for stride 4")
    return float(value)


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
    output_size: int | Sequence[int] = (7, 7),
    spatial_scale: float = 1.0,
    sampling_ratio: int = 0,
    mode: str = "avg",
    aligned: bool = True,
    threads: int | None = None,
) -> np.ndarray:
    """ONNX ``RoiAlign`` on the CPU.

    Args:
        x: float32 ``[N, C, H, W]`` feature map.
        rois: ``[K, 4]`` boxes ``(x1, y1, x2, y2)`` in input-image pixels (finite,
            non-negative, ``x1 <= x2``, ``y1 <= y2``; they may extend past the image).
        batch_indices: ``[K]`` integer image index of each box, in ``[0, N)``.
        output_size: ``h`` or ``(h, w)`` of each pooled map.
        spatial_scale: feature pixels per image pixel (``1/stride``).
        sampling_ratio: samples per bin and axis; 0 = adaptive ``ceil(roi_size / output_size)``.
        mode: ``"avg"`` or ``"max"`` (ONNX's max: max over samples of the largest weighted tap).
        aligned: True = ONNX ``half_pixel`` (pixel centres at +0.5, torchvision ``aligned=True``);
            False = ``output_half_pixel`` (legacy Mask R-CNN, RoI size clamped to >= 1).
        threads: CPU threads; None = every CPU this process may use.

    Returns:
        float32 ``[K, C, h, w]``.

    Raises:
        InputError: a rank, dtype, shape or attribute that cannot be used.
        BackendUnavailableError: the native library is not built.
    """
    x = _feature(x, "x")
    rois, idx = _boxes(rois, batch_indices, x.shape[0])
    out_h, out_w = _output_size(output_size)
    ratio = _sampling_ratio(sampling_ratio)
    scale = _scale(spatial_scale, "spatial_scale")
    if mode not in _MODES:
        raise InputError(f"mode must be 'avg' or 'max', got {mode!r}", "pass mode='avg' (torchvision) or 'max'")
    nthreads = _threads(threads)
    lib = _lib()
    n, c, h, w = x.shape
    k = rois.shape[0]
    y = np.empty((k, c, out_h, out_w), dtype=np.float32)
    _check(lib.segrt_roi_align_cpu_f32(
        x.ctypes.data_as(_f32p), n, c, h, w, rois.ctypes.data_as(_f32p), idx.ctypes.data_as(_i64p), k,
        out_h, out_w, scale, ratio, _MODES[mode], int(bool(aligned)), nthreads, y.ctypes.data_as(_f32p)))
    return y


def multi_scale_roi_align(
    features: Sequence[np.ndarray],
    rois: np.ndarray,
    batch_indices: np.ndarray,
    output_size: int | Sequence[int],
    spatial_scales: Sequence[float],
    sampling_ratio: int,
    aligned: bool = False,
    canonical_scale: float = 224,
    canonical_level: int = 4,
    threads: int | None = None,
) -> np.ndarray:
    """``torchvision.ops.MultiScaleRoIAlign`` in one fused call.

    Box ``i`` is pooled (avg) from level ``k = floor(canonical_level +
    log2(sqrt(area_i) / canonical_scale) + 1e-6)`` clamped to the levels given,
    with ``area = (x2 - x1) * (y2 - y1)``; torchvision's defaults (224, 4) give
    Mask R-CNN's FPN assignment. Mask R-CNN uses ``sampling_ratio=2, aligned=False``.

    Args:
        features: 1 to 8 float32 ``[N, C, H_l, W_l]`` maps of consecutive FPN
            levels, finest first (e.g. P2..P5); same ``N`` and ``C``.
        rois: ``[K, 4]`` boxes ``(x1, y1, x2, y2)`` in input-image pixels.
        batch_indices: ``[K]`` image index of each box.
        output_size: ``h`` or ``(h, w)``.
        spatial_scales: scale of each level, halving from level to level
            (``[1/4, 1/8, 1/16, 1/32]`` for P2..P5; :func:`fpn_scales` infers them as torchvision does).
        sampling_ratio: samples per bin and axis; 0 = adaptive.
        aligned: half-pixel offset (torchvision's MultiScaleRoIAlign uses False).
        canonical_scale, canonical_level: the FPN paper's 224 and k0 = 4.
        threads: CPU threads; None = every CPU this process may use.

    Returns:
        float32 ``[K, C, h, w]``.
    """
    if isinstance(features, np.ndarray) or not isinstance(features, Sequence):
        raise InputError("features must be a list of [N, C, H, W] arrays, one per FPN level",
                         "pass [p2, p3, p4, p5]")
    if not 1 <= len(features) <= MAX_LEVELS:
        raise InputError(f"features must hold 1 to {MAX_LEVELS} levels, got {len(features)}",
                         "pass the FPN levels the pooler uses, e.g. P2..P5")
    feats = [_feature(f, f"features[{i}]") for i, f in enumerate(features)]
    n, c = feats[0].shape[:2]
    for i, f in enumerate(feats[1:], start=1):
        if f.shape[:2] != (n, c):
            raise InputError(f"features[{i}] has N, C = {f.shape[:2]} but features[0] has {(n, c)}",
                             "pass levels of one FPN: same batch size and channel count")
    if isinstance(spatial_scales, (str, bytes)) or not isinstance(spatial_scales, Sequence) \
            or len(spatial_scales) != len(feats):
        raise InputError(f"spatial_scales must list one scale per level ({len(feats)}), got {spatial_scales!r}",
                         "pass e.g. [0.25, 0.125, 0.0625, 0.03125] for P2..P5")
    scales = [_scale(s, f"spatial_scales[{i}]") for i, s in enumerate(spatial_scales)]
    levels = [-math.log2(s) for s in scales]
    k0 = round(levels[0])
    if any(abs(lv - (k0 + i)) > 1e-6 for i, lv in enumerate(levels)):
        raise InputError(f"spatial_scales {scales} are not consecutive FPN levels 2^-k, 2^-(k+1), ...",
                         "pass the finest level first with each scale half the previous, e.g. [1/4, 1/8, 1/16, 1/32]")
    if not isinstance(canonical_level, (int, np.integer)) or isinstance(canonical_level, bool):
        raise InputError(f"canonical_level must be an int, got {canonical_level!r}", "pass 4 (the FPN paper's k0)")
    canonical = _scale(canonical_scale, "canonical_scale")
    rois, idx = _boxes(rois, batch_indices, n)
    out_h, out_w = _output_size(output_size)
    ratio = _sampling_ratio(sampling_ratio)
    nthreads = _threads(threads)
    lib = _lib()
    num = len(feats)
    ptrs = (ctypes.c_void_p * num)(*[f.ctypes.data for f in feats])
    heights = np.array([f.shape[2] for f in feats], dtype=np.int64)
    widths = np.array([f.shape[3] for f in feats], dtype=np.int64)
    scale_arr = np.array(scales, dtype=np.float32)
    k = rois.shape[0]
    y = np.empty((k, c, out_h, out_w), dtype=np.float32)
    _check(lib.segrt_multi_level_roi_align_cpu_f32(
        ptrs, heights.ctypes.data_as(_i64p), widths.ctypes.data_as(_i64p), scale_arr.ctypes.data_as(_f32p), num,
        n, c, rois.ctypes.data_as(_f32p), idx.ctypes.data_as(_i64p), k, out_h, out_w, ratio, int(bool(aligned)),
        canonical, int(canonical_level), nthreads, y.ctypes.data_as(_f32p)))
    return y


def fpn_scales(feature_sizes: Sequence[Sequence[int]], image_size: Sequence[int]) -> list[float]:
    """Spatial scale of each FPN level, inferred as torchvision's MultiScaleRoIAlign does.

    Args:
        feature_sizes: ``(H_l, W_l)`` of each level.
        image_size: ``(height, width)`` of the (padded-batch) network input; torchvision
            uses the largest image size of the batch.

    Returns:
        ``2 ** round(log2(H_l / height))`` per level (torchvision uses the height ratio).
    """
    height = float(image_size[0])
    if height <= 0:
        raise InputError(f"image_size must be positive, got {tuple(image_size)}", "pass (height, width) in pixels")
    return [float(2.0 ** round(math.log2(float(size[0]) / height))) for size in feature_sizes]
