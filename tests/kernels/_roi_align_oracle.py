"""Slow, obvious RoIAlign: the oracle the native implementations are tested against.

Written from the ONNX RoiAlign specification and torchvision's documented
behaviour, one sample at a time in plain Python loops, in float32 scalar
arithmetic (so discrete decisions -- ceil of the adaptive grid, int() of a
coordinate -- fall the same way as in float32 kernels). Only for tiny inputs.
"""

from __future__ import annotations

import math

import numpy as np

f32 = np.float32


def _weighted_taps(plane: np.ndarray, y: np.float32, x: np.float32) -> list[np.float32]:
    """The four weighted bilinear taps of sample (y, x), or four zeros outside [-1, H] x [-1, W]."""
    height, width = plane.shape
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return [f32(0)] * 4
    y = max(y, f32(0))
    x = max(x, f32(0))
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_low = y_high = height - 1
        y = f32(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_low = x_high = width - 1
        x = f32(x_low)
    else:
        x_high = x_low + 1
    ly, lx = f32(y - y_low), f32(x - x_low)
    hy, hx = f32(1) - ly, f32(1) - lx
    return [
        hy * hx * plane[y_low, x_low],
        hy * lx * plane[y_low, x_high],
        ly * hx * plane[y_high, x_low],
        ly * lx * plane[y_high, x_high],
    ]


def roi_align_loop(
    x: np.ndarray,
    rois: np.ndarray,
    batch_indices: np.ndarray,
    out_h: int,
    out_w: int,
    spatial_scale: float,
    sampling_ratio: int,
    mode: str = "avg",
    aligned: bool = True,
) -> np.ndarray:
    """ONNX RoiAlign. x [N, C, H, W], rois [K, 4] (x1, y1, x2, y2), batch_indices [K] -> [K, C, out_h, out_w]."""
    x = np.asarray(x, dtype=np.float32)
    k, c = len(rois), x.shape[1]
    out = np.zeros((k, c, out_h, out_w), dtype=np.float32)
    offset = f32(0.5) if aligned else f32(0)
    scale = f32(spatial_scale)
    for r in range(k):
        x1, y1, x2, y2 = (f32(v) for v in rois[r])
        start_w, start_h = x1 * scale - offset, y1 * scale - offset
        roi_w, roi_h = x2 * scale - offset - start_w, y2 * scale - offset - start_h
        if not aligned:
            roi_w, roi_h = max(roi_w, f32(1)), max(roi_h, f32(1))
        bin_h, bin_w = roi_h / f32(out_h), roi_w / f32(out_w)
        grid_h = sampling_ratio if sampling_ratio > 0 else max(0, math.ceil(roi_h / f32(out_h)))
        grid_w = sampling_ratio if sampling_ratio > 0 else max(0, math.ceil(roi_w / f32(out_w)))
        count = f32(max(grid_h * grid_w, 1))
        image = x[int(batch_indices[r])]
        for ch in range(c):
            for ph in range(out_h):
                for pw in range(out_w):
                    samples = []
                    for iy in range(grid_h):
                        y = start_h + ph * bin_h + f32(iy + 0.5) * bin_h / f32(grid_h)
                        for ix in range(grid_w):
                            xx = start_w + pw * bin_w + f32(ix + 0.5) * bin_w / f32(grid_w)
                            samples.append(_weighted_taps(image[ch], y, xx))
                    if mode == "avg":
                        total = f32(0)
                        for taps in samples:
                            total += taps[0] + taps[1] + taps[2] + taps[3]
                        out[r, ch, ph, pw] = total / count
                    else:
                        out[r, ch, ph, pw] = max((max(t) for t in samples), default=f32(0))
    return out


def fpn_levels_loop(
    rois: np.ndarray, k_min: int, k_max: int, canonical_scale: float = 224, canonical_level: int = 4
) -> np.ndarray:
    """torchvision LevelMapper: index (k - k_min) of the FPN level of each box, float32 maths."""
    levels = []
    for x1, y1, x2, y2 in np.asarray(rois, dtype=np.float32):
        s = np.sqrt(f32((x2 - x1) * (y2 - y1)))
        with np.errstate(divide="ignore"):
            k = np.floor(f32(canonical_level) + np.log2(s / f32(canonical_scale)) + f32(1e-6))
        levels.append(int(min(max(k, k_min), k_max)) - k_min)
    return np.array(levels, dtype=np.int64)


def multi_scale_roi_align_loop(
    features: list[np.ndarray],
    rois: np.ndarray,
    batch_indices: np.ndarray,
    out_h: int,
    out_w: int,
    spatial_scales: list[float],
    sampling_ratio: int,
    aligned: bool = False,
) -> np.ndarray:
    """MultiScaleRoIAlign: each box pooled (avg) from its LevelMapper level."""
    k_min = round(-math.log2(spatial_scales[0]))
    levels = fpn_levels_loop(rois, k_min, k_min + len(features) - 1)
    out = np.zeros((len(rois), features[0].shape[1], out_h, out_w), dtype=np.float32)
    for r, lvl in enumerate(levels):
        out[r : r + 1] = roi_align_loop(
            features[lvl],
            rois[r : r + 1],
            batch_indices[r : r + 1],
            out_h,
            out_w,
            spatial_scales[lvl],
            sampling_ratio,
            "avg",
            aligned,
        )
    return out
