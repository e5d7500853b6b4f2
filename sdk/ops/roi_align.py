"""RoIAlign ops: numpy arrays run on the CPU library, CUDA tensors on the CUDA library.

Two ops, NCHW features, boxes ``(x1, y1, x2, y2)`` in input-image pixels:

* :func:`roi_align` -- ONNX ``RoiAlign`` semantics; ``mode="avg"`` equals
  ``torchvision.ops.roi_align`` (``aligned=True`` is ONNX ``half_pixel``,
  ``aligned=False`` is ``output_half_pixel``).
* :func:`multi_scale_roi_align` -- ``torchvision.ops.MultiScaleRoIAlign`` in one
  call: every box is pooled from the FPN level chosen by torchvision's
  ``LevelMapper`` rule.

Where the work runs follows the features, as in torchvision:

* a ``numpy.ndarray`` (float32) goes to ``libsegrt_roi_align_cpu.so``
  (:mod:`segrt.ops._cpu`, ``pip install -e .`` builds it);
* an object holding CUDA memory the way a torch CUDA tensor does (``.is_cuda``
  true, ``.data_ptr()``; float32 or float16) goes to ``libsegrt_roi_align_cuda.so``
  (:mod:`segrt.ops._cuda`, built with CMake on a CUDA machine) and runs on the
  current stream of the tensor's framework. segrt never imports torch for this:
  the tensor brings its own methods.

Both libraries are located by :mod:`segrt.ops.native`. The attribute checks below are
shared by both devices; each binding checks its own arrays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from segrt.errors import InputError
from segrt.ops import _cpu, _cuda

__all__ = ["MAX_LEVELS", "fpn_scales", "is_cuda_tensor", "multi_scale_roi_align", "roi_align"]

MAX_LEVELS = 8  # kMaxLevels in kernels/roi_align/roi_align_common.h
_MODES = {"avg": 0, "max": 1}


def is_cuda_tensor(x: object) -> bool:
    """True for a tensor in CUDA memory (torch-style ``.is_cuda`` and ``.data_ptr()``), without importing torch."""
    return getattr(x, "is_cuda", False) is True and callable(getattr(x, "data_ptr", None))


def _refuse_other_devices(x: object, name: str) -> None:
    """Device memory this layer cannot pass on (CuPy, Numba, DLPack-only arrays) gets a clear error."""
    if not isinstance(x, np.ndarray) and hasattr(x, "__cuda_array_interface__"):
        raise InputError(
            f"{name} is a {type(x).__name__} in CUDA memory; RoIAlign takes numpy arrays (CPU) or torch CUDA tensors",
            f"wrap it as a torch tensor (torch.as_tensor({name}, device='cuda'))",
        )


# ------------------------------------------------------------ attribute checks (both devices)


def _output_size(output_size: int | Sequence[int]) -> tuple[int, int]:
    size = (output_size, output_size) if isinstance(output_size, (int, np.integer)) else tuple(output_size)
    if len(size) != 2 or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size):
        raise InputError(
            f"output_size must be an int or (height, width) ints, got {output_size!r}", "pass e.g. 7 or (14, 14)"
        )
    if size[0] < 1 or size[1] < 1:
        raise InputError(f"output_size must be at least 1x1, got {size}", "pass e.g. 7 or (14, 14)")
    return int(size[0]), int(size[1])


def _sampling_ratio(sampling_ratio: int) -> int:
    if not isinstance(sampling_ratio, (int, np.integer)) or isinstance(sampling_ratio, bool) or sampling_ratio < 0:
        raise InputError(
            f"sampling_ratio must be an int >= 0, got {sampling_ratio!r}",
            "pass 0 (adaptive: ceil(roi_size / output_size)) or a fixed count such as 2",
        )
    return int(sampling_ratio)


def _scale(value: float, name: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.floating, np.integer))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise InputError(
            f"{name} must be a finite number > 0, got {value!r}",
            "pass feature pixels per image pixel, e.g. 0.25 for stride 4",
        )
    return float(value)


def _mode(mode: str) -> int:
    if mode not in _MODES:
        raise InputError(f"mode must be 'avg' or 'max', got {mode!r}", "pass mode='avg' (torchvision) or 'max'")
    return _MODES[mode]


def _levels(features: Sequence[Any], spatial_scales: Sequence[float]) -> list[float]:
    """Checks the level list and returns the scales: 1..8 consecutive FPN levels 2^-k, finest first."""
    if isinstance(features, np.ndarray) or not isinstance(features, Sequence):
        raise InputError("features must be a list of [N, C, H, W] arrays, one per FPN level", "pass [p2, p3, p4, p5]")
    if not 1 <= len(features) <= MAX_LEVELS:
        raise InputError(
            f"features must hold 1 to {MAX_LEVELS} levels, got {len(features)}",
            "pass the FPN levels the pooler uses, e.g. P2..P5",
        )
    if (
        isinstance(spatial_scales, (str, bytes))
        or not isinstance(spatial_scales, Sequence)
        or len(spatial_scales) != len(features)
    ):
        raise InputError(
            f"spatial_scales must list one scale per level ({len(features)}), got {spatial_scales!r}",
            "pass e.g. [0.25, 0.125, 0.0625, 0.03125] for P2..P5",
        )
    scales = [_scale(s, f"spatial_scales[{i}]") for i, s in enumerate(spatial_scales)]
    levels = [-math.log2(s) for s in scales]
    k0 = round(levels[0])
    if any(abs(lv - (k0 + i)) > 1e-6 for i, lv in enumerate(levels)):
        raise InputError(
            f"spatial_scales {scales} are not consecutive FPN levels 2^-k, 2^-(k+1), ...",
            "pass the finest level first with each scale half the previous, e.g. [1/4, 1/8, 1/16, 1/32]",
        )
    return scales


def _canonical_level(canonical_level: int) -> int:
    if not isinstance(canonical_level, (int, np.integer)) or isinstance(canonical_level, bool):
        raise InputError(f"canonical_level must be an int, got {canonical_level!r}", "pass 4 (the FPN paper's k0)")
    return int(canonical_level)


# ------------------------------------------------------------------ the ops


def roi_align(
    x: Any,
    rois: Any,
    batch_indices: Any,
    output_size: int | Sequence[int] = (7, 7),
    spatial_scale: float = 1.0,
    sampling_ratio: int = 0,
    mode: str = "avg",
    aligned: bool = True,
    threads: int | None = None,
    stream: int | None = None,
) -> Any:
    """ONNX ``RoiAlign`` on the device that holds ``x``.

    Args:
        x: ``[N, C, H, W]`` feature map: a float32 ``numpy.ndarray`` (CPU), or a float32/float16
            CUDA tensor (GPU; ``rois`` and ``batch_indices`` then on the same device).
        rois: ``[K, 4]`` boxes ``(x1, y1, x2, y2)`` in input-image pixels (finite,
            non-negative, ``x1 <= x2``, ``y1 <= y2``; they may extend past the image).
        batch_indices: ``[K]`` integer image index of each box, in ``[0, N)`` (on the GPU an
            index outside gives zeros: a kernel cannot raise).
        output_size: ``h`` or ``(h, w)`` of each pooled map.
        spatial_scale: feature pixels per image pixel (``1/stride``).
        sampling_ratio: samples per bin and axis; 0 = adaptive ``ceil(roi_size / output_size)``.
        mode: ``"avg"`` or ``"max"`` (ONNX's max: max over samples of the largest weighted tap).
        aligned: True = ONNX ``half_pixel`` (pixel centres at +0.5, torchvision ``aligned=True``);
            False = ``output_half_pixel`` (legacy Mask R-CNN, RoI size clamped to >= 1).
        threads: CPU threads; None = every CPU this process may use (CPU only).
        stream: CUDA stream handle; None = the tensor framework's current stream (GPU only).

    Returns:
        ``[K, C, h, w]`` of ``x``'s kind and dtype (numpy float32 on the CPU).

    Raises:
        InputError: a rank, dtype, shape, device or attribute that cannot be used.
        BackendUnavailableError: the native library for that device is not built, or no GPU.
    """
    out_hw = _output_size(output_size)
    ratio = _sampling_ratio(sampling_ratio)
    scale = _scale(spatial_scale, "spatial_scale")
    mode_code = _mode(mode)
    if is_cuda_tensor(x):
        return _cuda.roi_align(x, rois, batch_indices, out_hw, scale, ratio, mode_code, bool(aligned), stream)
    _refuse_other_devices(x, "x")
    return _cpu.roi_align(x, rois, batch_indices, out_hw, scale, ratio, mode_code, bool(aligned), threads)


def multi_scale_roi_align(
    features: Sequence[Any],
    rois: Any,
    batch_indices: Any,
    output_size: int | Sequence[int],
    spatial_scales: Sequence[float],
    sampling_ratio: int,
    aligned: bool = False,
    canonical_scale: float = 224,
    canonical_level: int = 4,
    threads: int | None = None,
    stream: int | None = None,
) -> Any:
    """``torchvision.ops.MultiScaleRoIAlign`` in one fused call, on the device that holds the features.

    Box ``i`` is pooled (avg) from level ``k = floor(canonical_level +
    log2(sqrt(area_i) / canonical_scale) + 1e-6)`` clamped to the levels given,
    with ``area = (x2 - x1) * (y2 - y1)``; torchvision's defaults (224, 4) give
    Mask R-CNN's FPN assignment. Mask R-CNN uses ``sampling_ratio=2, aligned=False``.

    Args:
        features: 1 to 8 ``[N, C, H_l, W_l]`` maps of consecutive FPN levels, finest first
            (e.g. P2..P5); same ``N``, ``C`` and kind: float32 numpy arrays, or CUDA tensors
            of one dtype (float32 or float16).
        rois: ``[K, 4]`` boxes ``(x1, y1, x2, y2)`` in input-image pixels.
        batch_indices: ``[K]`` image index of each box.
        output_size: ``h`` or ``(h, w)``.
        spatial_scales: scale of each level, halving from level to level
            (``[1/4, 1/8, 1/16, 1/32]`` for P2..P5; :func:`fpn_scales` infers them as torchvision does).
        sampling_ratio: samples per bin and axis; 0 = adaptive.
        aligned: half-pixel offset (torchvision's MultiScaleRoIAlign uses False).
        canonical_scale, canonical_level: the FPN paper's 224 and k0 = 4.
        threads: CPU threads; None = every CPU this process may use (CPU only).
        stream: CUDA stream handle; None = the tensor framework's current stream (GPU only).

    Returns:
        ``[K, C, h, w]`` of the features' kind and dtype.
    """
    scales = _levels(features, spatial_scales)
    canonical = _scale(canonical_scale, "canonical_scale")
    level0 = _canonical_level(canonical_level)
    out_hw = _output_size(output_size)
    ratio = _sampling_ratio(sampling_ratio)
    if is_cuda_tensor(features[0]):
        return _cuda.multi_scale_roi_align(
            list(features), rois, batch_indices, out_hw, scales, ratio, bool(aligned), canonical, level0, stream
        )
    _refuse_other_devices(features[0], "features[0]")
    return _cpu.multi_scale_roi_align(
        list(features), rois, batch_indices, out_hw, scales, ratio, bool(aligned), canonical, level0, threads
    )


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
