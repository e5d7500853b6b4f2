"""Keypoint R-CNN outputs: heatmaps to keypoint coordinates, and the COCO person skeleton."""
from __future__ import annotations

import math

import cv2
import numpy as np

# COCO person keypoint skeleton (1-based pairs, as in the COCO annotations) for drawing
COCO_SKELETON = [(16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8),
                 (7, 9), (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7)]


def heatmaps_to_keypoints(maps: np.ndarray, rois: np.ndarray) -> np.ndarray:
    """torchvision's ``heatmaps_to_keypoints`` with OpenCV's bicubic resize.

    Args:
        maps: float [N, K, S, S] keypoint heatmap logits; rois: float [N, 4] x1y1x2y2 boxes.

    Returns:
        float32 [N, K, 3]: x, y in the rois' pixel frame (Heckbert: centre of the argmax cell)
        and the resized heatmap's value there.
    """
    n, k = maps.shape[:2]
    out = np.zeros((n, k, 3), dtype=np.float32)
    for i in range(n):
        x1, y1, x2, y2 = (float(v) for v in rois[i])
        bw, bh = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
        mw, mh = int(math.ceil(bw)), int(math.ceil(bh))
        # cv2 resizes each channel of an HxWxC array; OpenCV caps channels at 512, K is 17
        roi_map = cv2.resize(np.ascontiguousarray(maps[i].transpose(1, 2, 0)), (mw, mh),
                             interpolation=cv2.INTER_CUBIC).reshape(mh, mw, k)
        flat = roi_map.reshape(-1, k)
        pos = flat.argmax(axis=0)
        xi, yi = pos % mw, pos // mw
        out[i, :, 0] = (xi + 0.5) * (bw / mw) + x1
        out[i, :, 1] = (yi + 0.5) * (bh / mh) + y1
        out[i, :, 2] = flat[pos, np.arange(k)]
    return out
