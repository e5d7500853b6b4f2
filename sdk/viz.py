"""Pictures shared by both pipelines: label-map overlays and labelled panels (numpy/OpenCV only).

Instance drawing with boxes, scores and keypoints is Mask R-CNN's own (``segrt.rcnn.viz``).
"""

from __future__ import annotations

import cv2
import numpy as np


def to_display(image: np.ndarray) -> np.ndarray:
    """Any grey/colour image -> uint8 RGB [H, W, 3], contrast-stretched to the 1..99.8 percentiles."""
    x = image.astype(np.float32)
    if x.ndim == 2:
        x = x[:, :, None]
    x = x[:, :, :3]
    lo, hi = np.percentile(x, [1.0, 99.8])
    x = np.clip((x - lo) / max(hi - lo, 1e-6), 0, 1) * 255
    x = x.astype(np.uint8)
    return np.repeat(x, 3, axis=2) if x.shape[2] == 1 else np.ascontiguousarray(x)


def instance_colors(n: int, seed: int = 0) -> np.ndarray:
    """``n`` bright, distinct-looking RGB colours, uint8 [n, 3] (fixed order for a given seed)."""
    rng = np.random.default_rng(seed)
    hsv = np.stack(
        [
            rng.permutation(np.linspace(0, 179, n, endpoint=False)) if n else np.zeros(0),
            np.full(n, 200),
            np.full(n, 255),
        ],
        axis=1,
    ).astype(np.uint8)
    return cv2.cvtColor(hsv[None], cv2.COLOR_HSV2RGB)[0] if n else np.zeros((0, 3), np.uint8)


def overlay_instances(image: np.ndarray, labels: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Colour each instance of ``labels`` (int [H, W], 0 = background) over ``image``; outline them.

    Returns uint8 RGB [H, W, 3].
    """
    rgb = to_display(image)
    n = int(labels.max())
    if n == 0:
        return rgb
    colors = np.vstack([np.zeros((1, 3), np.uint8), instance_colors(n)])
    fill = colors[labels]
    fg = labels > 0
    out = rgb.copy()
    out[fg] = (rgb[fg] * (1 - alpha) + fill[fg] * alpha).astype(np.uint8)
    # instance outlines: pixels whose 3x3 neighbourhood holds another id
    edge = (
        cv2.dilate(labels.astype(np.float32), np.ones((3, 3))) != cv2.erode(labels.astype(np.float32), np.ones((3, 3)))
    ) & fg
    out[edge] = fill[edge]
    return out


def label(panel: np.ndarray, text: str) -> np.ndarray:
    """A copy of an RGB panel with ``text`` in its top-left corner (white on a dark band)."""
    out = panel.copy()
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
    out[: h + base + 6, : w + 8] = (out[: h + base + 6, : w + 8] * 0.35).astype(np.uint8)
    cv2.putText(out, text, (4, h + 3), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def side_by_side(*panels: np.ndarray, gap: int = 4) -> np.ndarray:
    """Join RGB panels of equal height horizontally with a white gap."""
    h = max(p.shape[0] for p in panels)
    spacer = np.full((h, gap, 3), 255, np.uint8)
    parts: list[np.ndarray] = []
    for i, p in enumerate(panels):
        if p.shape[0] < h:
            p = np.pad(p, ((0, h - p.shape[0]), (0, 0), (0, 0)), constant_values=255)
        parts += [p] if i == 0 else [spacer, p]
    return np.concatenate(parts, axis=1)


def instance_colour(i: int) -> tuple[int, int, int]:
    """A distinct, stable RGB colour per instance (golden-ratio hue steps)."""
    hue = int((i * 0.618033988749895 % 1.0) * 179)
    hsv = np.array([[[hue, 200, 255]]], dtype=np.uint8)
    r, g, b = (int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])
    return r, g, b
