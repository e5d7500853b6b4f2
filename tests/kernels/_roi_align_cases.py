"""Inputs shared by the RoIAlign tests (CPU and GPU): random boxes, edge-case boxes, FPN pyramids."""

from __future__ import annotations

import numpy as np


def random_boxes(rng: np.random.Generator, k: int, image_hw: tuple[float, float]) -> np.ndarray:
    """[k, 4] float32 boxes (x1, y1, x2, y2) starting inside the image, sizes exponential around 1/4 of it."""
    h, w = image_hw
    xy = rng.uniform(0, [w, h], size=(k, 2))
    wh = rng.exponential([w / 4, h / 4], size=(k, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


#: Edge cases on a 160x120 (w x h) feature map at scale 1; divide by the scale for other scales.
EDGE_BOXES = np.array(
    [
        [0, 0, 159, 119],  # the whole image
        [150, 100, 400, 300],  # partly outside (right/bottom)
        [500, 400, 600, 480],  # wholly outside
        [20, 30, 20, 30],  # zero area
        [20, 30, 20, 60],  # zero width
        [10, 10, 10.4, 10.3],  # sub-pixel
        [0, 0, 1600, 1200],  # huge: 10x the image
        [159, 119, 160, 120],  # on the far corner
    ],
    dtype=np.float32,
)


def pyramid(
    rng: np.random.Generator, n: int, c: int, image_hw: tuple[int, int], strides: tuple[int, ...] = (4, 8, 16, 32)
) -> list[np.ndarray]:
    """FPN-like float32 feature maps [n, c, ceil(h / s), ceil(w / s)], finest first."""
    h, w = image_hw
    return [rng.standard_normal((n, c, -(-h // s), -(-w // s))).astype(np.float32) for s in strides]


def boxes_all_levels(rng: np.random.Generator, k: int, image_hw: tuple[int, int]) -> np.ndarray:
    """Boxes from 1 px to 1.5x the image side, log-uniform, so every FPN level (and both clamps) is used."""
    h, w = image_hw
    side = np.exp(rng.uniform(np.log(1.0), np.log(1.5 * max(h, w)), size=(k, 1)))
    aspect = np.exp(rng.uniform(-1, 1, size=(k, 1)))
    wh = np.concatenate([side * aspect, side / aspect], axis=1)
    xy = rng.uniform(0, [w, h], size=(k, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
