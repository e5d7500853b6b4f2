"""Keypoints (Keypoint R-CNN): heatmap decoding, COCO skeleton drawing, COCO OKS metrics. numpy/OpenCV only.

Decoding reproduces ``torchvision.models.detection.roi_heads.heatmaps_to_keypoints``:
each [S, S] heatmap is resized to the box's ceil(width) x ceil(height) with
PyTorch's bicubic interpolation (``align_corners=False``, A = -0.75, edge
pixels repeated), the argmax cell (first one on ties) becomes a keypoint at
the cell centre (Heckbert: continuous = discrete + 0.5), scaled back by
width / ceil(width), and the resized heatmap's value there is its score.

Resizing every map with PyTorch's float32 arithmetic in numpy would cost
seconds for 100 detections, so the argmax is found in two passes: OpenCV's
bicubic resize (the same kernel, rounded differently: about 1e-5 apart) finds
every cell within a safe margin of the maximum, and those few cells are then
evaluated with PyTorch's exact float32 operation order (fused multiply-adds
where its CPU kernel has them), which picks the same cell and the same score.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
from numpy.typing import ArrayLike

from segrt.errors import DataError

# COCO person keypoints, in annotation order
COCO_KEYPOINT_NAMES = [
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
]
# COCO person keypoint skeleton (1-based pairs, as in the COCO annotations' "skeleton")
COCO_SKELETON = [
    (16, 14),
    (14, 12),
    (17, 15),
    (15, 13),
    (12, 13),
    (6, 12),
    (7, 13),
    (6, 7),
    (6, 8),
    (7, 9),
    (8, 10),
    (9, 11),
    (2, 3),
    (1, 2),
    (1, 3),
    (2, 4),
    (3, 5),
    (4, 6),
    (5, 7),
]
# per-keypoint OKS falloff of COCO (pycocotools' default kpt_oks_sigmas)
COCO_SIGMAS = (
    np.array([0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89])
    / 10.0
)

_F32 = np.float32
_A = _F32(-0.75)  # PyTorch's (and OpenCV's) bicubic coefficient


def _fma(a: ArrayLike, b: ArrayLike, c: ArrayLike) -> np.ndarray:
    """float32 fused multiply-add: the float64 product of two float32 numbers is exact."""
    return (np.asarray(a, np.float64) * np.asarray(b, np.float64) + np.asarray(c, np.float64)).astype(_F32)


def _cubic_taps(in_size: int, out_size: int, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Source indices int64 [4, n] and float32 weights [4, n] of output positions ``at`` (PyTorch's CPU kernel)."""
    scale = _F32(in_size) / _F32(out_size)
    real = _fma(scale, at.astype(_F32) + _F32(0.5), _F32(-0.5))  # area_pixel_compute_source_index, cubic
    base = np.floor(real)
    t = (real - base).astype(_F32)

    def conv1(x: np.ndarray) -> np.ndarray:  # ((A + 2) x - (A + 3)) x x + 1, first step fused
        return (_fma(_A + _F32(2), x, -(_A + _F32(3))) * x * x + _F32(1)).astype(_F32)

    def conv2(x: np.ndarray) -> np.ndarray:  # ((A x - 5A) x + 8A) x - 4A, first two steps fused
        return (_fma(_fma(_A, x, _F32(-5) * _A), x, _F32(8) * _A) * x - _F32(4) * _A).astype(_F32)

    u = (_F32(1) - t).astype(_F32)
    weights = np.stack([conv2(t + _F32(1)), conv1(t), conv1(u), conv2(u + _F32(1))])
    index = np.clip(base.astype(np.int64)[None] + np.arange(-1, 3)[:, None], 0, in_size - 1)
    return index, weights


def _weighted_sum(values: list[np.ndarray], weights: list[np.ndarray]) -> np.ndarray:
    """v0 w0 + v1 w1 + v2 w2 + v3 w3 as PyTorch's compiled kernel rounds it."""
    s = _fma(values[0], weights[0], values[1] * weights[1])
    for j in (2, 3):
        s = _fma(values[j], weights[j], s)
    return s


def bicubic_values(
    maps: np.ndarray, out_hw: tuple[int, int], channels: np.ndarray, ys: np.ndarray, xs: np.ndarray
) -> np.ndarray:
    """Values at output cells of ``F.interpolate(maps[:, None], out_hw, mode="bicubic", align_corners=False)``.

    Args:
        maps: float32 [C, S, S'] maps; out_hw: resized (height, width);
        channels, ys, xs: int arrays [n], the map and output cell of each value wanted.

    Returns:
        float32 [n].
    """
    src = np.asarray(maps, dtype=_F32)
    iy, wy = _cubic_taps(src.shape[1], out_hw[0], np.asarray(ys))
    ix, wx = _cubic_taps(src.shape[2], out_hw[1], np.asarray(xs))
    c = np.asarray(channels)
    rows = [_weighted_sum([src[c, iy[j], ix[i]] for i in range(4)], [wx[i] for i in range(4)]) for j in range(4)]
    return _weighted_sum(rows, [wy[j] for j in range(4)])


def bicubic_resize(maps: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Whole resized maps (float32 [C, H, W]) with PyTorch's arithmetic: the slow reference of the fast path."""
    c, ys, xs = np.meshgrid(np.arange(len(maps)), np.arange(out_hw[0]), np.arange(out_hw[1]), indexing="ij")
    return bicubic_values(maps, out_hw, c.ravel(), ys.ravel(), xs.ravel()).reshape(len(maps), *out_hw)


def heatmaps_to_keypoints(maps: np.ndarray, rois: np.ndarray) -> np.ndarray:
    """torchvision's ``heatmaps_to_keypoints``: keypoints in the rois' pixel frame.

    Args:
        maps: float [N, K, S, S] keypoint heatmap logits (the graph's ``keypoint_heatmaps``).
        rois: float [N, 4] x1y1x2y2 boxes the heatmaps were pooled from (the graph's ``boxes``).

    Returns:
        float32 [N, K, 3]: x, y (pixels, same frame as ``rois``) and the resized heatmap's value there.
    """
    maps = np.asarray(maps, dtype=_F32)
    rois = np.asarray(rois, dtype=_F32)
    n, k = maps.shape[:2]
    out = np.zeros((n, k, 3), dtype=_F32)
    for i in range(n):
        x1, y1 = rois[i, 0], rois[i, 1]
        bw = max(_F32(rois[i, 2] - rois[i, 0]), _F32(1))
        bh = max(_F32(rois[i, 3] - rois[i, 1]), _F32(1))
        mw, mh = int(math.ceil(bw)), int(math.ceil(bh))
        # pass 1: OpenCV's bicubic resize (HxWxC, each channel alike; OpenCV allows up to 512 channels)
        approx = cv2.resize(
            np.ascontiguousarray(maps[i].transpose(1, 2, 0)), (mw, mh), interpolation=cv2.INTER_CUBIC
        ).reshape(mh * mw, k)
        margin = 1e-3 * (1.0 + np.abs(maps[i]).reshape(k, -1).max(axis=1))
        cell, chan = np.nonzero(approx >= approx.max(axis=0) - margin)  # sorted by cell, then keypoint
        # pass 2: the candidate cells with PyTorch's exact arithmetic
        vals = bicubic_values(maps[i], (mh, mw), chan, cell // mw, cell % mw)
        order = np.lexsort((cell, -vals, chan))  # per keypoint: highest value, first cell on ties
        first = order[np.r_[0, np.flatnonzero(np.diff(chan[order])) + 1]]
        xi, yi = (cell[first] % mw).astype(_F32), (cell[first] // mw).astype(_F32)
        out[i, :, 0] = (xi + _F32(0.5)) * (bw / _F32(mw)) + x1
        out[i, :, 1] = (yi + _F32(0.5)) * (bh / _F32(mh)) + y1
        out[i, :, 2] = vals[first]
    return out


def draw_skeleton(
    canvas: np.ndarray,
    keypoints: np.ndarray,
    colour: tuple[int, int, int],
    skeleton: list[tuple[int, int]] | None = None,
    thickness: int = 2,
    min_score: float | None = None,
) -> np.ndarray:
    """Draw one person's keypoints (float [K, 2+] x, y in pixels) and limbs onto ``canvas`` (uint8 RGB, in place).

    ``skeleton``: 1-based keypoint pairs; default the COCO limbs when K is 17, none otherwise.
    ``min_score``: skip keypoints whose third column (score, or COCO visibility) is below it, and their limbs.
    Coordinates are continuous (pixel i spans [i, i+1)), so points are drawn at x - 0.5.
    """
    kp = np.asarray(keypoints, dtype=np.float32)
    if skeleton is None:
        skeleton = COCO_SKELETON if len(kp) == 17 else []
    keep = np.ones(len(kp), bool) if min_score is None else kp[:, 2] >= min_score
    skeleton = [(a, b) for a, b in skeleton if keep[a - 1] and keep[b - 1]]
    shift = 4  # OpenCV fixed-point sub-pixel drawing
    pts = [(int(round((x - 0.5) * 16)), int(round((y - 0.5) * 16))) for x, y in kp[:, :2]]
    dark = tuple(int(c * 0.45) for c in colour)
    for a, b in skeleton:
        cv2.line(canvas, pts[a - 1], pts[b - 1], colour, thickness, cv2.LINE_AA, shift)
    for p, k in zip(pts, keep, strict=True):
        if not k:
            continue
        cv2.circle(canvas, p, (thickness + 1) * 16, dark, -1, cv2.LINE_AA, shift)
        cv2.circle(canvas, p, (thickness + 1) * 16, colour, 1, cv2.LINE_AA, shift)
    return canvas


def keypoint_metrics(gt: Any, results: list[dict[str, Any]]) -> dict[str, float]:
    """COCO keypoint AP (OKS) of ``results`` against a pycocotools ``COCO`` ground truth.

    Args:
        gt: ``pycocotools.coco.COCO`` with person-keypoints annotations.
        results: COCO result dicts with ``image_id``, ``category_id``, ``keypoints`` [x, y, v] x K, ``score``.

    Returns:
        {"keypoints_AP", "keypoints_AP50", "keypoints_AP75", "keypoints_APM", "keypoints_APL"} in [0, 1]
        (-1 where COCO has no ground truth of that size). Sigmas: COCO's 17 (pycocotools' default).
    """
    import contextlib
    import io

    from pycocotools.cocoeval import COCOeval

    names = ["AP", "AP50", "AP75", "APM", "APL"]
    results = [dict(r) for r in results if "keypoints" in r]
    k = {len(r["keypoints"]) // 3 for r in results}
    if k and k != {len(COCO_SIGMAS)}:
        raise DataError(
            f"OKS needs one falloff sigma per keypoint; COCO defines 17, the model predicts {sorted(k)}",
            "evaluate person keypoints in COCO order, or compute OKS with your own sigmas",
        )
    if not results:
        return {f"keypoints_{n}": 0.0 for n in names}
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {f"keypoints_{n}": float(v) for n, v in zip(names, ev.stats[:5], strict=True)}
