"""Paste fixed-size instance masks into the image: torchvision's ``paste_masks_in_image`` in numpy/OpenCV.

Mask R-CNN predicts one M x M (28 x 28) probability map per detection, in the
detection box's frame. To get a full-image mask torchvision pads the map by one
pixel, grows the box by (M + 2) / M around its centre, truncates the box to
integers, resizes the padded map bilinearly (half-pixel centres, no
antialiasing) to the integer box size and pastes it, clipped to the image.
This module does exactly that, with ``cv2.resize`` for the one interpolation
per instance (OpenCV's INTER_LINEAR uses the same sampling as
``F.interpolate(mode="bilinear", align_corners=False)``); the cost is one
small resize per detection, not per pixel work in Python.
"""
from __future__ import annotations

import cv2
import numpy as np

from .errors import InputError


def expand_boxes(boxes: np.ndarray, scale: float) -> np.ndarray:
    """Grow boxes [N, 4] (x1y1x2y2) by ``scale`` around their centres, in float32 as torchvision does."""
    boxes = boxes.astype(np.float32, copy=False)
    s = np.float32(scale)
    w_half = (boxes[:, 2] - boxes[:, 0]) * np.float32(0.5) * s
    h_half = (boxes[:, 3] - boxes[:, 1]) * np.float32(0.5) * s
    x_c = (boxes[:, 2] + boxes[:, 0]) * np.float32(0.5)
    y_c = (boxes[:, 3] + boxes[:, 1]) * np.float32(0.5)
    return np.stack([x_c - w_half, y_c - h_half, x_c + w_half, y_c + h_half], axis=1)


def paste_masks(masks: np.ndarray, boxes: np.ndarray, image_hw: tuple[int, int],
                threshold: float | None = 0.5, padding: int = 1) -> np.ndarray:
    """Full-image masks from per-box mask probabilities.

    Args:
        masks: float [N, M, M] probabilities (sigmoid already applied), one per box.
        boxes: float [N, 4] x1y1x2y2 in the pixels of the target image.
        image_hw: (H, W) of the target image.
        threshold: pixels with probability > threshold are True; None returns the
            pasted float32 probabilities instead (torchvision's raw output).
        padding: border added to the M x M map before resizing (torchvision uses 1).

    Returns:
        bool [N, H, W] (or float32 [N, H, W] when ``threshold`` is None).
    """
    masks = np.asarray(masks)
    boxes = np.asarray(boxes)
    if masks.ndim != 3 or masks.shape[1] != masks.shape[2]:
        raise InputError(f"masks must be [N, M, M], got shape {masks.shape}", "pass one square map per box")
    if boxes.shape != (masks.shape[0], 4):
        raise InputError(f"boxes must be [N, 4] for {masks.shape[0]} masks, got {boxes.shape}",
                         "pass one x1y1x2y2 box per mask")
    H, W = int(image_hw[0]), int(image_hw[1])
    n, m = masks.shape[0], masks.shape[1]
    out = np.zeros((n, H, W), dtype=np.float32 if threshold is None else np.bool_)
    if n == 0:
        return out
    padded = np.pad(masks.astype(np.float32, copy=False), ((0, 0), (padding, padding), (padding, padding)))
    # torchvision: boxes.to(int64) truncates toward zero
    ib = expand_boxes(boxes, float(m + 2 * padding) / m).astype(np.int64)
    for i in range(n):
        x1, y1, x2, y2 = (int(v) for v in ib[i])
        w, h = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)
        x0c, x1c = max(x1, 0), min(x2 + 1, W)
        y0c, y1c = max(y1, 0), min(y2 + 1, H)
        if x1c <= x0c or y1c <= y0c:
            continue
        resized = cv2.resize(padded[i], (w, h), interpolation=cv2.INTER_LINEAR)
        crop = resized[y0c - y1:y1c - y1, x0c - x1:x1c - x1]
        out[i, y0c:y1c, x0c:x1c] = crop if threshold is None else crop > threshold
    return out
