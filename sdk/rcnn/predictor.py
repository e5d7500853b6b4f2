"""Mask R-CNN / Keypoint R-CNN runtime: image in, instances out (numpy + OpenCV, no torch).

Graph contract (written by ``segrt.export.maskrcnn``; see ``export/maskrcnn/deploy.py``)::

    inputs:  image       float32 [1, 3, H, W] RGB in [0, 1]  (or uint8 0..255), top-left aligned, zero padded
             image_size  float32 [2]     (h, w) of the valid (resized) region
    outputs: boxes [D, 4], scores [D], labels int64 [D], num_detections int64 [1],
             masks [D, 28, 28] (maskrcnn) | keypoint_heatmaps [D, K, 56, 56] (keypointrcnn)

Metadata keys read here (besides the common ones in ``segrt.artifact.metadata``)::

    input_size      [H, W]   fixed graph input size
    input_dtype     "float32" | "uint8"
    resize          {"min_size": int, "max_size": int}: torchvision's resize rule (shorter side to
                    min_size, longer side capped at max_size), then capped again to fit [H, W]
    score_thresh, nms_iou, max_detections   what the graph was exported with (informational)
    mask_size       28 (maskrcnn)
    num_keypoints   17 (keypointrcnn)

Image conventions: see ``segrt.io.preprocess.to_rgb_float`` (grey, RGB or RGBA; uint8, uint16
or float). Drawing lives in ``segrt.rcnn.viz``, COCO output and evaluation in ``segrt.rcnn.coco``,
keypoint decoding in ``segrt.rcnn.keypoints``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from segrt.backends.base import Backend
from segrt.io.files import atomic_path
from segrt.io.images import write_png
from segrt.io.preprocess import check_image, to_rgb_float
from segrt.predictor import Timer, check_options
from segrt.rcnn.coco import evaluate as coco_evaluate
from segrt.rcnn.coco import instances_to_coco
from segrt.rcnn.instances import Instances
from segrt.rcnn.keypoints import heatmaps_to_keypoints
from segrt.rcnn.masks import paste_masks
from segrt.rcnn.viz import draw_instances


@dataclass(frozen=True)
class Geometry:
    """How an image was placed in the graph input: resized to (new_h, new_w) at the top-left."""

    image_hw: tuple[int, int]
    resized_hw: tuple[int, int]


def resized_size(image_hw: tuple[int, int], input_hw: tuple[int, int], min_size: int, max_size: int) -> tuple[int, int]:
    """torchvision's resize rule (``GeneralizedRCNNTransform``), then capped to fit the graph input."""
    h, w = image_hw
    scale = min(min_size / min(h, w), max_size / max(h, w))
    new_h, new_w = int(math.floor(h * scale)), int(math.floor(w * scale))
    if new_h > input_hw[0] or new_w > input_hw[1]:  # does not fit: shrink to fit, keep the aspect ratio
        fit = min(input_hw[0] / h, input_hw[1] / w)
        new_h = min(int(math.floor(h * fit)), input_hw[0])
        new_w = min(int(math.floor(w * fit)), input_hw[1])
    return max(new_h, 1), max(new_w, 1)


class MaskRCNNPredictor:
    """Runs an exported Mask R-CNN / Keypoint R-CNN on images of any size.

    Args:
        backend: an ``segrt.backends`` backend holding a graph written by ``segrt export``.
        mask_threshold: probability above which a mask pixel is foreground (torchvision users use 0.5).

    After each ``predict``, ``last_timings`` holds the network's and the whole call's milliseconds.
    """

    def __init__(self, backend: Backend, mask_threshold: float = 0.5) -> None:
        self.backend = backend
        meta = backend.metadata
        self.metadata = meta
        self.kind: str = meta["kind"]
        self.class_names: list[str] = list(meta["class_names"])
        height, width = (int(v) for v in meta["input_size"])
        self.input_hw: tuple[int, int] = (height, width)
        self.input_dtype = np.dtype(meta.get("input_dtype", "float32"))
        resize = meta.get("resize") or {"min_size": min(self.input_hw), "max_size": max(self.input_hw)}
        self.min_size, self.max_size = int(resize["min_size"]), int(resize["max_size"])
        self.mask_threshold = float(mask_threshold)
        self.last_timings: dict[str, float] = {}

    # -- pre/post-processing -------------------------------------------------
    def preprocess(self, image: np.ndarray) -> tuple[dict[str, np.ndarray], Geometry]:
        """Image -> graph feed (resized, padded NCHW) and the geometry to undo it."""
        rgb = to_rgb_float(image)
        h, w = rgb.shape[:2]
        new_h, new_w = resized_size((h, w), self.input_hw, self.min_size, self.max_size)
        if (new_h, new_w) != (h, w):
            rgb = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        H, W = self.input_hw
        canvas = np.zeros((1, 3, H, W), dtype=self.input_dtype)
        chw = rgb.transpose(2, 0, 1)
        if self.input_dtype == np.uint8:
            chw = np.round(chw * 255.0).astype(np.uint8)
        canvas[0, :, :new_h, :new_w] = chw
        feed = {"image": canvas, "image_size": np.array([new_h, new_w], dtype=np.float32)}
        return feed, Geometry((h, w), (new_h, new_w))

    def postprocess(
        self, outputs: dict[str, np.ndarray], geometry: Geometry, image: np.ndarray | None = None
    ) -> Instances:
        """Graph outputs -> Instances in original-image pixels (boxes rescaled, masks pasted)."""
        n = int(np.asarray(outputs["num_detections"]).reshape(-1)[0])
        boxes = np.asarray(outputs["boxes"])[:n].astype(np.float32)
        (h, w), (nh, nw) = geometry.image_hw, geometry.resized_hw
        # torchvision's resize_boxes: ratio = original / resized, per axis, in float32
        rw, rh = np.float32(w) / np.float32(nw), np.float32(h) / np.float32(nh)
        boxes = boxes * np.array([rw, rh, rw, rh], dtype=np.float32)
        labels = np.asarray(outputs["labels"])[:n].astype(np.int64)
        scores = np.asarray(outputs["scores"])[:n].astype(np.float32)
        masks = None
        if "masks" in outputs:
            masks = paste_masks(np.asarray(outputs["masks"])[:n], boxes, (h, w), threshold=self.mask_threshold)
        keypoints = None
        if "keypoint_heatmaps" in outputs:
            keypoints = heatmaps_to_keypoints(
                np.asarray(outputs["keypoint_heatmaps"])[:n], np.asarray(outputs["boxes"])[:n].astype(np.float32)
            )
            keypoints[:, :, 0] *= rw
            keypoints[:, :, 1] *= rh
        names = [self.class_names[i] if 0 <= i < len(self.class_names) else str(i) for i in labels]
        return Instances(boxes, scores, labels, names, masks, keypoints, (h, w), image)

    def predict(
        self,
        image: np.ndarray,
        *,
        tiles: bool | None = None,
        overlap: int | None = None,
        progress: bool | None = None,
        **unknown: Any,
    ) -> Instances:
        """Detect instances in one image ([H, W], [H, W, 3] RGB or [H, W, 4]; uint8, uint16 or float).

        Args:
            image: a numpy array, or a large image read lazily (a memmap, a TIFF / zarr path).
            tiles: True: sliding windows of the graph's input size at native resolution, detections
                merged, masks sparse (``segrt.rcnn.windows``); False: the whole image resized into the graph
                input; None decides: windows when fitting the image would shrink it more than
                2x (:meth:`uses_windows`).
            overlap, progress: for windows (see ``segrt.rcnn.windows.predict_windows``).
        """
        check_options(self.kind, unknown, ("tiles", "overlap", "progress"))
        lazy = isinstance(image, (str, Path, np.memmap)) or (
            hasattr(image, "shape") and not isinstance(image, np.ndarray)
        )
        if not lazy:
            check_image(image)  # in-memory images are checked before their size is used
        if tiles or (tiles is None and self.uses_windows(image)):
            from segrt.rcnn.windows import predict_windows

            return predict_windows(self, image, overlap=overlap, progress=progress)
        if not isinstance(image, np.ndarray):
            from segrt.io.sources import open_image

            src = open_image(image)
            image = src.read(0, src.shape[0], 0, src.shape[1])
        timer = Timer(self.backend)
        feed, geometry = self.preprocess(image)
        result = self.postprocess(timer.run(feed), geometry, image=image)
        self.last_timings = timer.timings()
        return result

    __call__ = predict

    def uses_windows(self, image: Any) -> bool:
        """Whether ``predict`` runs sliding windows: when the whole-image resize would shrink ``image`` > 2x."""
        from segrt.io.sources import open_image

        h, w = (int(v) for v in (image.shape if hasattr(image, "shape") else open_image(image).shape)[:2])
        new_h, new_w = resized_size((h, w), self.input_hw, self.min_size, self.max_size)
        return new_h * 2 < h or new_w * 2 < w

    # -- output ----------------------------------------------------------------
    def draw(self, image: np.ndarray, result: Instances) -> np.ndarray:
        """uint8 [H, W, 3] RGB overlay: filled masks, boxes, class names and scores, keypoints."""
        return draw_instances(image, result)

    def save(self, result: Instances, out_dir: str | Path, stem: str, image: np.ndarray | None = None) -> list[Path]:
        """Write ``<stem>_overlay.png`` (when the result carries its image) and ``<stem>.json``.

        The JSON is a list of COCO-style results: ``bbox`` [x, y, w, h], ``score``,
        ``category_id``, ``category_name``, ``segmentation`` (compressed RLE), ``keypoints``.
        """
        out_dir = Path(out_dir)
        paths = []
        image = result.image if image is None else image
        if image is not None:
            paths.append(write_png(out_dir / f"{stem}_overlay.png", self.draw(image, result)))
        path = out_dir / f"{stem}.json"
        with atomic_path(path) as tmp:
            tmp.write_text(
                json.dumps({"image_size": list(result.image_hw), "instances": instances_to_coco(result)}, indent=1)
            )
        paths.append(path)
        return paths

    def evaluate(self, data: str | Path, *, images: str | Path | None = None, **unknown: Any) -> dict[str, Any]:
        """COCO box/segm AP on an instances JSON (``segrt.rcnn.coco.evaluate``).

        ``images`` is the folder of the JSON's images; by default the folder named like the JSON
        beside it (``coco/val.json`` -> ``coco/val/``).
        """
        check_options(self.kind, unknown, ("images",))
        return coco_evaluate(self, data, images if images is not None else Path(data).with_suffix(""))
