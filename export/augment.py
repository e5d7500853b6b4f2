"""Training augmentation for U-Net (paper, Sec. 3.1): elastic deformation, flips/rotations, shifts, grey values.

All transforms are applied jointly to the image, the class target and the weight
map, with one random generator so runs are reproducible.
"""

from __future__ import annotations

import cv2
import numpy as np


def elastic_fields(
    shape: tuple[int, int], rng: np.random.Generator, grid: int = 3, sigma: float = 10.0
) -> tuple[np.ndarray, np.ndarray]:
    """Sampling maps (map_x, map_y) float32 [H, W] of a smooth random deformation.

    As in the paper: random displacement vectors on a coarse ``grid`` x ``grid``
    grid, drawn from N(0, sigma) pixels, interpolated to every pixel bicubically.
    """
    h, w = shape
    coarse = rng.normal(0.0, sigma, size=(2, grid, grid)).astype(np.float32)
    dx = cv2.resize(coarse[0], (w, h), interpolation=cv2.INTER_CUBIC)
    dy = cv2.resize(coarse[1], (w, h), interpolation=cv2.INTER_CUBIC)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return xs + dx, ys + dy


def augment(
    image: np.ndarray, classes: np.ndarray, weights: np.ndarray, rng: np.random.Generator, elastic_sigma: float = 10.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One random augmentation of (image float32 [H,W,C], classes int [H,W], weights float32 [H,W]).

    Geometry: a dihedral transform (flip + 90-degree rotation), then an elastic
    deformation (image and weights bicubic/linear, classes nearest, borders
    mirrored). Intensity: random gamma, contrast and brightness on the normalized image.
    """
    k, flip = int(rng.integers(4)), bool(rng.integers(2))
    image, classes, weights = (np.rot90(a[:, ::-1] if flip else a, k) for a in (image, classes, weights))
    image, classes, weights = (np.ascontiguousarray(a) for a in (image, classes, weights))
    if elastic_sigma > 0:
        mx, my = elastic_fields(classes.shape, rng, sigma=elastic_sigma)
        border = cv2.BORDER_REFLECT_101
        warped = cv2.remap(image, mx, my, cv2.INTER_CUBIC, borderMode=border)
        image = warped.reshape(image.shape)
        classes = cv2.remap(classes.astype(np.uint8), mx, my, cv2.INTER_NEAREST, borderMode=border).astype(
            classes.dtype
        )
        weights = cv2.remap(weights, mx, my, cv2.INTER_LINEAR, borderMode=border)
    gamma = float(np.exp(rng.normal(0.0, 0.2)))
    contrast, brightness = float(rng.uniform(0.8, 1.2)), float(rng.normal(0.0, 0.05))
    image = np.sign(image) * np.abs(image) ** gamma * contrast + brightness
    return image.astype(np.float32), classes, weights
