"""Mask R-CNN on images larger than its graph input: overlapping sliding windows at native resolution.

Resizing a 4k microscopy image down to a 512 px graph input shrinks nuclei below
the anchors. Instead the image is cut into windows of the graph's input size,
overlapping by ``overlap`` pixels, each run at scale 1 (the exported graphs take
one image per call, so windows run one after another). Detections are merged:

1. *Cut objects are dropped.* A detection whose box comes within ``edge`` pixels of
   a window side that lies inside the image is cut by that side; with windows
   overlapping by at least an object's size plus ``2 * edge``, another window sees
   that object whole, and its detection is the one kept. Objects larger than the
   overlap are therefore lost: choose ``overlap`` above the largest object.
2. *Duplicates are removed.* An object inside the overlap of two windows is seen
   whole by both: detections of the same class whose boxes overlap and whose masks
   have IoU >= ``dup_iou`` (boxes alone for models without masks) are reduced to
   one: the one with the most context (pixels to the nearest interior window side,
   counted up to half the overlap), then the highest score.

Masks are kept as box crops (``segrt.rcnn.masks.MaskCrops``): memory grows with the
objects, not with N x H x W. Integer images are scaled by the whole image's
maximum (read once), exactly as the whole-image path scales them.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from segrt.io.sources import ImageSource, open_image
from segrt.rcnn.masks import MaskCrops, paste_crops

if TYPE_CHECKING:
    from segrt.rcnn.instances import Instances


@dataclass(frozen=True)
class Window:
    """Image pixels ``[y0, y0 + h) x [x0, x0 + w)`` and which of its sides lie inside the image."""

    y0: int
    x0: int
    h: int
    w: int
    inner: tuple[bool, bool, bool, bool]  # top, left, bottom, right sides are interior


def axis_starts(length: int, window: int, overlap: int) -> list[int]:
    """Window starts along one axis: stride ``window - overlap``, the last window flush with the end."""
    if length <= window:
        return [0]
    stride = max(1, window - overlap)
    n = math.ceil((length - window) / stride) + 1
    return sorted({min(i * stride, length - window) for i in range(n)})


def plan_windows(image_hw: tuple[int, int], window_hw: tuple[int, int], overlap: int) -> list[Window]:
    """Row-major windows covering an image; windows are the full ``window_hw`` where the image allows."""
    H, W = image_hw
    wins = []
    for y0 in axis_starts(H, window_hw[0], overlap):
        for x0 in axis_starts(W, window_hw[1], overlap):
            h, w = min(window_hw[0], H), min(window_hw[1], W)
            wins.append(Window(y0, x0, h, w, (y0 > 0, x0 > 0, y0 + h < H, x0 + w < W)))
    return wins


def image_peak(source: ImageSource, rows_per_read: int = 512) -> float | None:
    """The maximum integer images are scaled by (None for uint8 and float images), read by bands."""
    if source.dtype == np.uint8 or not (np.issubdtype(source.dtype, np.integer) or source.dtype == np.bool_):
        return None
    H, W, _ = source.shape
    return float(max(np.max(source.read(y0, min(y0 + rows_per_read, H), 0, W)) for y0 in range(0, H, rows_per_read)))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a [4] against boxes b [M, 4] (x1y1x2y2)."""
    ix = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0, None)
    iy = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0, None)
    inter = ix * iy
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-9)


def crop_iou(crops: MaskCrops, i: int, j: int) -> float:
    """Mask IoU of two sparse masks, on their crops' intersection."""
    (yi, xi), (yj, xj) = crops.origins[i], crops.origins[j]
    ci, cj = crops.crops[i], crops.crops[j]
    y0, x0 = max(yi, yj), max(xi, xj)
    y1, x1 = min(yi + ci.shape[0], yj + cj.shape[0]), min(xi + ci.shape[1], xj + cj.shape[1])
    inter = 0
    if y1 > y0 and x1 > x0:
        inter = int((ci[y0 - yi : y1 - yi, x0 - xi : x1 - xi] & cj[y0 - yj : y1 - yj, x0 - xj : x1 - xj]).sum())
    union = int(ci.sum()) + int(cj.sum()) - inter
    return inter / union if union else 0.0


def deduplicate(
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    crops: MaskCrops | None,
    window_ids: np.ndarray,
    dup_iou: float,
    room: np.ndarray | None = None,
) -> np.ndarray:
    """Indices to keep: greedy, dropping detections from other windows that duplicate a kept one.

    Greedy order: most ``room`` first (pixels between the box and the nearest interior side of its
    window: the detection that saw the most context), then highest score.
    """
    room = np.zeros(len(scores)) if room is None else room
    order = np.lexsort((-scores, -room))
    kept: list[int] = []
    suppressed = np.zeros(len(scores), bool)
    for i in order:
        if suppressed[i]:
            continue
        kept.append(int(i))
        cand = np.flatnonzero(~suppressed & (labels == labels[i]) & (window_ids != window_ids[i]))
        cand = cand[box_iou(boxes[i], boxes[cand]) > 0] if cand.size else cand
        for j in cand.tolist():
            same = (
                crop_iou(crops, i, j) >= dup_iou
                if crops is not None
                else box_iou(boxes[i], boxes[j : j + 1])[0] >= dup_iou
            )
            if same:
                suppressed[j] = True
    return np.asarray(sorted(kept, key=lambda k: -scores[k]), np.int64)


def predict_windows(
    predictor: Any,
    image: Any,
    overlap: int | None = None,
    edge: int = 2,
    dup_iou: float = 0.5,
    progress: bool | None = None,
) -> Instances:
    """Detect instances in a large image through overlapping windows (see the module doc).

    Args:
        predictor: a ``segrt.rcnn.predictor.MaskRCNNPredictor`` (Mask R-CNN graph; keypoint graphs too, without masks).
        image: [H, W], [H, W, 3] or [H, W, 4] array (numpy, memory-mapped, zarr) or an image path.
        overlap: pixels shared by neighbouring windows (default a quarter of the window):
            more than the largest object.
        edge: a box within this many pixels of an interior window side is cut.
        dup_iou: mask IoU (box IoU without masks) at which two detections are one object.
        progress: tqdm bar of windows (default: more than 16 windows).

    Returns:
        ``segrt.rcnn.predictor.Instances`` in image pixels, masks sparse (``mask_crops``), sorted by score.
    """
    from segrt.io.preprocess import to_rgb_float
    from segrt.rcnn.instances import Instances
    from segrt.rcnn.keypoints import heatmaps_to_keypoints

    t0 = time.perf_counter()
    source = open_image(image)
    H, W, _ = source.shape
    wh, ww = predictor.input_hw
    overlap = min(wh, ww) // 4 if overlap is None else int(overlap)
    windows = plan_windows((H, W), (wh, ww), overlap)
    peak = image_peak(source)
    progress = len(windows) > 16 if progress is None else progress
    boxes, scores, labels, wids, rooms, keypoints = [], [], [], [], [], []
    crops: list[np.ndarray] = []
    origins: list[tuple[int, int]] = []
    has_masks = False
    model_s = 0.0
    bar: contextlib.AbstractContextManager[Any] = contextlib.nullcontext(None)
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(windows), unit="window", desc="detect", dynamic_ncols=True, leave=False)
    with bar as pbar:
        for k, win in enumerate(windows):
            rgb = to_rgb_float(source.read(win.y0, win.y0 + win.h, win.x0, win.x0 + win.w), peak=peak)
            canvas = np.zeros((1, 3, wh, ww), predictor.input_dtype)
            chw = rgb.transpose(2, 0, 1)
            canvas[0, :, : win.h, : win.w] = np.round(chw * 255.0) if predictor.input_dtype == np.uint8 else chw
            t = time.perf_counter()
            out = predictor.backend.run({"image": canvas, "image_size": np.array([win.h, win.w], np.float32)})
            model_s += time.perf_counter() - t
            n = int(np.asarray(out["num_detections"]).reshape(-1)[0])
            b = np.asarray(out["boxes"])[:n].astype(np.float32)
            top, left, bottom, right = win.inner
            cut = (
                (top & (b[:, 1] <= edge))
                | (left & (b[:, 0] <= edge))
                | (bottom & (b[:, 3] >= win.h - edge))
                | (right & (b[:, 2] >= win.w - edge))
            )
            keep = np.flatnonzero(~cut)
            gaps = [
                b[:, 1] if top else None,
                b[:, 0] if left else None,
                win.h - b[:, 3] if bottom else None,
                win.w - b[:, 2] if right else None,
            ]
            gap = (
                np.min([g for g in gaps if g is not None], axis=0)
                if any(g is not None for g in gaps)
                else np.full(n, np.inf, np.float32)
            )
            rooms.append(np.minimum(gap[keep], overlap / 2))  # beyond half the overlap, context is enough
            offset = np.array([win.x0, win.y0, win.x0, win.y0], np.float32)
            boxes.append(b[keep] + offset)
            scores.append(np.asarray(out["scores"])[:n][keep].astype(np.float32))
            labels.append(np.asarray(out["labels"])[:n][keep].astype(np.int64))
            wids.append(np.full(len(keep), k))
            if "masks" in out:
                has_masks = True
                m = np.asarray(out["masks"])[:n][keep]
                for y0, x0, c in paste_crops(m, b[keep], (win.h, win.w), threshold=predictor.mask_threshold):
                    crops.append(c)
                    origins.append((y0 + win.y0, x0 + win.x0))
            if "keypoint_heatmaps" in out:
                kp = heatmaps_to_keypoints(np.asarray(out["keypoint_heatmaps"])[:n][keep], b[keep])
                kp[:, :, 0] += win.x0
                kp[:, :, 1] += win.y0
                keypoints.append(kp)
            if pbar is not None:
                pbar.update(1)
                pbar.set_postfix_str(f"{(k + 1) * win.h * win.w / 1e6 / (time.perf_counter() - t0):.2f} Mpixel/s")
    boxes_a = np.concatenate(boxes) if boxes else np.zeros((0, 4), np.float32)
    scores_a = np.concatenate(scores) if scores else np.zeros(0, np.float32)
    labels_a = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    sparse = MaskCrops(crops, np.asarray(origins, np.int64).reshape(-1, 2), (H, W)) if has_masks else None
    t1 = time.perf_counter()
    keep = deduplicate(
        boxes_a,
        scores_a,
        labels_a,
        sparse,
        np.concatenate(wids) if wids else np.zeros(0, int),
        dup_iou,
        np.concatenate(rooms) if rooms else np.zeros(0),
    )
    kp_all = np.concatenate(keypoints)[keep] if keypoints else None
    names = [predictor.class_names[i] if 0 <= i < len(predictor.class_names) else str(i) for i in labels_a[keep]]
    result = Instances(
        boxes_a[keep],
        scores_a[keep],
        labels_a[keep],
        names,
        None,
        kp_all,
        (H, W),
        image if isinstance(image, np.ndarray) else None,
        mask_crops=sparse.select(keep) if sparse is not None else None,
    )
    t2 = time.perf_counter()
    predictor.last_timings = {
        "preprocess_ms": (t1 - t0 - model_s) * 1e3,
        "model_ms": model_s * 1e3,
        "postprocess_ms": (t2 - t1) * 1e3,
        "windows": float(len(windows)),
    }
    return result
