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

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from segrt.errors import InputError


def run_lengths(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO counts of a 2-D mask: alternating zero/one run lengths, column-major."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return [0]
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts = [0] + counts  # COCO counts always start with a (possibly empty) run of zeros
    return counts


def expand_boxes(boxes: np.ndarray, scale: float) -> np.ndarray:
    """Grow boxes [N, 4] (x1y1x2y2) by ``scale`` around their centres, in float32 as torchvision does."""
    boxes = boxes.astype(np.float32, copy=False)
    s = np.float32(scale)
    w_half = (boxes[:, 2] - boxes[:, 0]) * np.float32(0.5) * s
    h_half = (boxes[:, 3] - boxes[:, 1]) * np.float32(0.5) * s
    x_c = (boxes[:, 2] + boxes[:, 0]) * np.float32(0.5)
    y_c = (boxes[:, 3] + boxes[:, 1]) * np.float32(0.5)
    return np.stack([x_c - w_half, y_c - h_half, x_c + w_half, y_c + h_half], axis=1)


def paste_masks(
    masks: np.ndarray, boxes: np.ndarray, image_hw: tuple[int, int], threshold: float | None = 0.5, padding: int = 1
) -> np.ndarray:
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
        raise InputError(
            f"boxes must be [N, 4] for {masks.shape[0]} masks, got {boxes.shape}", "pass one x1y1x2y2 box per mask"
        )
    H, W = int(image_hw[0]), int(image_hw[1])
    out: np.ndarray = np.zeros((masks.shape[0], H, W), dtype=np.float32 if threshold is None else np.bool_)
    for i, (y0, x0, crop) in enumerate(paste_crops(masks, boxes, (H, W), threshold, padding)):
        out[i, y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] = crop
    return out


def paste_crops(
    masks: np.ndarray, boxes: np.ndarray, image_hw: tuple[int, int], threshold: float | None = 0.5, padding: int = 1
) -> Iterator[tuple[int, int, np.ndarray]]:
    """What :func:`paste_masks` pastes, per instance: ``(y0, x0, crop)``, the crop [h, w] clipped to the image.

    ``crop`` is bool (or float32 when ``threshold`` is None) and may be empty (0 x 0) for boxes
    outside the image. Memory is one box per instance, not one image.
    """
    H, W = int(image_hw[0]), int(image_hw[1])
    n, m = masks.shape[0], masks.shape[1]
    if n == 0:
        return
    padded = np.pad(masks.astype(np.float32, copy=False), ((0, 0), (padding, padding), (padding, padding)))
    # torchvision: boxes.to(int64) truncates toward zero
    ib = expand_boxes(boxes, float(m + 2 * padding) / m).astype(np.int64)
    for i in range(n):
        x1, y1, x2, y2 = (int(v) for v in ib[i])
        w, h = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)
        x0c, x1c = max(x1, 0), min(x2 + 1, W)
        y0c, y1c = max(y1, 0), min(y2 + 1, H)
        if x1c <= x0c or y1c <= y0c:
            yield 0, 0, np.zeros((0, 0), np.float32 if threshold is None else np.bool_)
            continue
        resized = cv2.resize(padded[i], (w, h), interpolation=cv2.INTER_LINEAR)
        crop = resized[y0c - y1 : y1c - y1, x0c - x1 : x1c - x1]
        yield y0c, x0c, (crop if threshold is None else crop > threshold)


@dataclass
class MaskCrops:
    """Instance masks of an H x W image stored sparsely, as box crops.

    Mask ``i`` is ``crops[i]`` (bool [h_i, w_i]) at rows ``origins[i, 0]..`` and columns
    ``origins[i, 1]..``, False elsewhere: memory grows with the objects, not N x H x W.
    """

    crops: list[np.ndarray]
    origins: np.ndarray  # int64 [N, 2] (y0, x0)
    image_hw: tuple[int, int]

    def __len__(self) -> int:
        return len(self.crops)

    def mask(self, i: int) -> np.ndarray:
        """Mask ``i`` as bool [H, W]."""
        out = np.zeros(self.image_hw, np.bool_)
        y0, x0 = (int(v) for v in self.origins[i])
        c = self.crops[i]
        out[y0 : y0 + c.shape[0], x0 : x0 + c.shape[1]] = c
        return out

    def dense(self) -> np.ndarray:
        """All masks as bool [N, H, W] (what ``Instances.masks`` holds for ordinary images)."""
        out = np.zeros((len(self),) + tuple(self.image_hw), np.bool_)
        for i, c in enumerate(self.crops):
            y0, x0 = (int(v) for v in self.origins[i])
            out[i, y0 : y0 + c.shape[0], x0 : x0 + c.shape[1]] = c
        return out

    def select(self, keep: np.ndarray) -> MaskCrops:
        keep = np.asarray(keep, np.int64).reshape(-1)
        return MaskCrops([self.crops[i] for i in keep], self.origins[keep].reshape(-1, 2), self.image_hw)

    def areas(self) -> np.ndarray:
        return np.array([int(c.sum()) for c in self.crops], np.int64)

    def run_lengths(self, i: int) -> list[int]:
        """COCO counts (column-major runs over the whole image) of mask ``i``, from its crop alone."""
        H, W = self.image_hw
        y0, x0 = (int(v) for v in self.origins[i])
        c = self.crops[i]
        strip = np.zeros((H, c.shape[1]), np.bool_)  # the crop's columns, full height
        strip[y0 : y0 + c.shape[0]] = c
        counts = run_lengths(strip)
        counts[0] += x0 * H  # columns left of the crop: zeros
        trailing = (W - x0 - c.shape[1]) * H
        if len(counts) % 2:  # ends with a run of zeros
            counts[-1] += trailing
        elif trailing:
            counts.append(trailing)
        return counts
