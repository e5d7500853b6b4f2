"""Mask R-CNN pictures: instances (masks, boxes, scores, keypoints) drawn over images (numpy/OpenCV only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from segrt.io.preprocess import to_rgb_uint8
from segrt.rcnn.keypoints import draw_skeleton
from segrt.viz import instance_colour

if TYPE_CHECKING:
    from segrt.rcnn.instances import Instances


def draw_instances(image: np.ndarray, result: Instances, alpha: float = 0.45) -> np.ndarray:
    """uint8 [H, W, 3] RGB overlay of ``result`` on ``image`` (any supported image type)."""
    canvas = to_rgb_uint8(image).copy()
    for i in range(len(result)):
        colour = np.array(instance_colour(i), dtype=np.float32)
        m: np.ndarray | None = None
        if result.masks is not None:
            m, (y0, x0) = result.masks[i], (0, 0)
        elif result.mask_crops is not None:
            m, (y0, x0) = result.mask_crops.crops[i], (int(v) for v in result.mask_crops.origins[i])
        if m is not None:
            region = canvas[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]]
            region[m] = (region[m] * (1 - alpha) + colour * alpha).astype(np.uint8)
        x1, y1, x2, y2 = (int(round(v)) for v in result.boxes[i])
        c = instance_colour(i)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), c, 1)
        cv2.putText(
            canvas,
            f"{result.class_names[i]} {result.scores[i]:.2f}",
            (x1, max(y1 - 3, 8)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.35,
            c,
            1,
            cv2.LINE_AA,
        )
        if result.keypoints is not None:
            draw_skeleton(canvas, result.keypoints[i], c)
    return canvas
