"""torchvision eager as a predictor with the runtime's interface: the oracle and the benchmark baseline.

``TorchvisionPredictor(model).predict(image)`` calls the torchvision model
itself (its transform, network and its own postprocessing, masks pasted by
``paste_masks_in_image``) and returns ``segrt.rcnn.predictor.Instances``.

With ``canvas_hw=(H, W)`` the batch is padded to that size instead of the next
multiple of 32: this is what torchvision computes for the image when it is
batched with an H x W one, and it is the exact reference for a graph exported
at H x W (the network sees the same zero padding). Images whose resized size
does not fit the canvas are rejected, since torchvision would not shrink them.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from segrt.errors import InputError
from segrt.io.preprocess import to_rgb_float
from segrt.rcnn.instances import Instances


class _PadToCanvas(GeneralizedRCNNTransform):
    """torchvision's transform, batching onto a fixed H x W canvas."""

    def __init__(self, base: GeneralizedRCNNTransform, canvas_hw: tuple[int, int]) -> None:
        super().__init__(
            base.min_size, base.max_size, base.image_mean, base.image_std, base.size_divisible, base.fixed_size
        )
        self.canvas_hw = tuple(canvas_hw)

    def batch_images(self, images: list[torch.Tensor], size_divisible: int = 32) -> torch.Tensor:
        H, W = self.canvas_hw
        out = images[0].new_zeros((len(images), images[0].shape[0], H, W))
        for i, im in enumerate(images):
            if im.shape[1] > H or im.shape[2] > W:
                raise InputError(
                    f"torchvision resized the image to {tuple(im.shape[1:])}, larger than the {H}x{W} canvas",
                    "compare only images that fit the export size",
                )
            out[i, :, : im.shape[1], : im.shape[2]] = im
        return out


class TorchvisionPredictor:
    """Eager torchvision model behind the ``predict(image) -> Instances`` interface.

    Args:
        model: torchvision MaskRCNN / KeypointRCNN (eval mode is set here).
        class_names: index = class id.
        canvas_hw: pad batches to this size (the export size) instead of a multiple of 32.
        mask_threshold: pixels with probability > this are foreground.
    """

    def __init__(
        self,
        model: nn.Module,
        class_names: list[str],
        canvas_hw: tuple[int, int] | None = None,
        mask_threshold: float = 0.5,
    ) -> None:
        self.model = model.eval()
        self.class_names = list(class_names)
        self.transform = _PadToCanvas(model.transform, canvas_hw).eval() if canvas_hw else model.transform
        self.mask_threshold = mask_threshold

    @torch.no_grad()
    def predict(self, image: np.ndarray) -> Instances:
        rgb = to_rgb_float(image)
        tensor = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
        original = self.model.transform
        self.model.transform = self.transform
        try:
            out = self.model([tensor])[0]
        finally:
            self.model.transform = original
        labels = out["labels"].numpy().astype(np.int64)
        masks = (out["masks"][:, 0] > self.mask_threshold).numpy() if "masks" in out else None
        keypoints = None
        if "keypoints" in out:
            keypoints = out["keypoints"].numpy().astype(np.float32).copy()
            keypoints[:, :, 2] = out["keypoints_scores"].numpy()
        names = [self.class_names[i] if i < len(self.class_names) else str(i) for i in labels]
        return Instances(
            out["boxes"].numpy().astype(np.float32),
            out["scores"].numpy().astype(np.float32),
            labels,
            names,
            masks,
            keypoints,
            tuple(rgb.shape[:2]),
            np.asarray(image),
        )
