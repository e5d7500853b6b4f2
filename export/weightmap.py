"""The U-Net paper's pixel weight map (Eq. 2), from instance labels.

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))

``w_c`` balances class frequencies; ``d1``/``d2`` are the distances to the
nearest and second-nearest object. The second term is large on the thin
background gaps between touching objects, which forces the network to learn
the separating borders. As in the paper's use (Fig. 3d), it is applied to
background pixels; object pixels carry only ``w_c``.
"""

from __future__ import annotations

import cv2
import numpy as np


def class_balance_weights(classes: np.ndarray, num_classes: int) -> np.ndarray:
    """``w_c``: per-pixel weight n / (num_classes * count(class)), float32 [H, W] (mean 1 over present classes)."""
    counts = np.bincount(classes.ravel(), minlength=num_classes).astype(np.float64)
    inv = np.where(counts > 0, classes.size / (num_classes * np.maximum(counts, 1)), 0.0)
    return inv[classes].astype(np.float32)


def border_weights(instances: np.ndarray, w0: float = 10.0, sigma: float = 5.0) -> np.ndarray:
    """The separation term ``w0 * exp(-(d1 + d2)^2 / (2 sigma^2))`` on background pixels, float32 [H, W].

    Needs at least two objects; otherwise it is zero everywhere.
    """
    ids = np.unique(instances)
    ids = ids[ids != 0]
    out = np.zeros(instances.shape, np.float32)
    if len(ids) < 2:
        return out
    # distance of every pixel to each object; keep the two smallest per pixel
    d1 = np.full(instances.shape, np.inf, np.float32)
    d2 = np.full(instances.shape, np.inf, np.float32)
    for i in ids:
        d = cv2.distanceTransform((instances != i).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        closer = d < d1
        d2 = np.where(closer, d1, np.minimum(d2, d))
        d1 = np.where(closer, d, d1)
    background = instances == 0
    out[background] = w0 * np.exp(-((d1[background] + d2[background]) ** 2) / (2 * sigma**2))
    return out


def weight_map(instances: np.ndarray, num_classes: int = 2, w0: float = 10.0, sigma: float = 5.0) -> np.ndarray:
    """The full weight map ``w_c + border term`` for foreground/background training, float32 [H, W]."""
    classes = (instances > 0).astype(np.int64)
    return class_balance_weights(classes, num_classes) + border_weights(instances, w0, sigma)
