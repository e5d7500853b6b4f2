"""The result type of Mask R-CNN and Keypoint R-CNN prediction (numpy only).

It lives apart from the predictor so that the modules that read or draw results (COCO export,
pictures, sliding windows) do not import the predictor that imports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from segrt.errors import InputError
from segrt.rcnn.masks import MaskCrops


@dataclass
class Instances:
    """Detections in original-image pixels.

    boxes float32 [N, 4] x1y1x2y2; scores float32 [N]; labels int64 [N] class ids;
    class_names ``list[str]`` of N (name of each instance's class); masks bool [N, H, W] or None;
    keypoints float32 [N, K, 3] (x, y, heatmap score) or None; image_hw (H, W) of the input image.

    Large images (predicted through sliding windows, ``segrt.rcnn.windows``) keep their masks sparse
    instead: ``masks`` is None and ``mask_crops`` holds one box crop per instance
    (``segrt.rcnn.masks.MaskCrops``); :meth:`dense_masks` gives bool [N, H, W] either way.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    masks: np.ndarray | None
    keypoints: np.ndarray | None
    image_hw: tuple[int, int]
    image: np.ndarray | None = field(default=None, repr=False)  # the input, kept for drawing
    mask_crops: MaskCrops | None = field(default=None, repr=False)  # sparse masks of large images

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def has_masks(self) -> bool:
        return self.masks is not None or self.mask_crops is not None

    def mask(self, i: int) -> np.ndarray:
        """Mask of instance ``i``, bool [H, W]; ``InputError`` if the model predicts no masks."""
        if self.masks is not None:
            return self.masks[i]
        if self.mask_crops is None:
            raise InputError(
                "these instances carry no masks (the model has no mask head)",
                "check result.has_masks before asking for a mask",
            )
        return self.mask_crops.mask(i)

    def dense_masks(self) -> np.ndarray | None:
        """All masks as bool [N, H, W] (densifies sparse masks: N x H x W bytes), or None."""
        return self.masks if self.masks is not None else None if self.mask_crops is None else self.mask_crops.dense()
