"""Mask R-CNN / Keypoint R-CNN runtime: image in, instances out (numpy + OpenCV, no torch).

Graph contract (written by ``export.maskrcnn``; see ``export/maskrcnn/deploy.py``)::

    inputs:  image       float32 [1, 3, H, W] RGB in [0, 1]  (or uint8 0..255), top-left aligned, zero padded
             image_size  float32 [2]     (h, w) of the valid (resized) region
    outputs: boxes [D, 4], scores [D], labels int64 [D], num_detections int64 [1],
             masks [D, 28, 28] (maskrcnn) | keypoint_heatmaps [D, K, 56, 56] (keypointrcnn)

Metadata keys read here (besides the common ones in ``sdk.metadata``)::

    input_size      [H, W]   fixed graph input size
    input_dtype     "float32" | "uint8"
    resize          {"min_size": int, "max_size": int}: torchvision's resize rule (shorter side to
                    min_size, longer side capped at max_size), then capped again to fit [H, W]
    score_thresh, nms_iou, max_detections   what the graph was exported with (informational)
    mask_size       28 (maskrcnn)
    num_keypoints   17 (keypointrcnn)

Image conventions: HxW grey is replicated to RGB; HxWx4 drops alpha; HxWx3 is
taken as RGB. uint8 is divided by 255; uint16 (and other integer types) by the
image's own maximum (microscopy images rarely use the full 16-bit range, and
the demo data is converted the same way); float images are taken as [0, 1]
and clipped.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from .coco import bbox_xywh, compress_counts, encode_rle
from .errors import DataError, InputError
from .io import atomic_path
from .masks import MaskCrops, paste_masks

# COCO person keypoint skeleton (1-based pairs, as in the COCO annotations) for drawing
COCO_SKELETON = [(16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8),
                 (7, 9), (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7)]


@dataclass
class Instances:
    """Detections in original-image pixels.

    boxes float32 [N, 4] x1y1x2y2; scores float32 [N]; labels int64 [N] class ids;
    class_names list[str] [N] (name of each instance's class); masks bool [N, H, W] or None;
    keypoints float32 [N, K, 3] (x, y, heatmap score) or None; image_hw (H, W) of the input image.

    Large images (predicted through sliding windows, ``sdk.windows``) keep their masks sparse
    instead: ``masks`` is None and ``mask_crops`` holds one box crop per instance
    (``sdk.masks.MaskCrops``); :meth:`dense_masks` gives bool [N, H, W] either way.
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
        """Mask of instance ``i``, bool [H, W]."""
        return self.masks[i] if self.masks is not None else self.mask_crops.mask(i)

    def dense_masks(self) -> np.ndarray | None:
        """All masks as bool [N, H, W] (densifies sparse masks: N x H x W bytes), or None."""
        return self.masks if self.masks is not None else None if self.mask_crops is None else self.mask_crops.dense()


def to_rgb_float(image: np.ndarray, peak: float | None = None) -> np.ndarray:
    """Any supported image -> float32 [H, W, 3] RGB in [0, 1] (rules in the module doc).

    ``peak``: the maximum integer images are divided by (default: this image's own; a window
    of a larger image passes the whole image's).
    """
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    elif not (image.ndim == 3 and image.shape[2] == 3):
        raise InputError(f"expected an HxW, HxWx3 or HxWx4 image, got shape {image.shape}",
                         "pass one image at a time as a numpy array (grey, RGB or RGBA)")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InputError(f"empty image of shape {image.shape}", "pass an image with at least one pixel")
    if image.dtype == np.uint8:
        return image.astype(np.float32) / np.float32(255.0)
    if np.issubdtype(image.dtype, np.integer) or image.dtype == np.bool_:
        peak = (float(image.max()) if image.size else 0.0) if peak is None else float(peak)
        return image.astype(np.float32) / np.float32(peak if peak > 0 else 1.0)
    if np.issubdtype(image.dtype, np.floating):
        return np.clip(image.astype(np.float32), 0.0, 1.0)
    raise InputError(f"unsupported image dtype {image.dtype}", "pass uint8, uint16 or float images")


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Any supported image -> uint8 [H, W, 3] RGB (same conversion as the model input)."""
    if np.asarray(image).dtype == np.uint8 and np.asarray(image).ndim == 3 and image.shape[2] == 3:
        return np.asarray(image)
    return np.round(to_rgb_float(image) * 255.0).astype(np.uint8)


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


class Predictor(Protocol):
    def predict(self, image: np.ndarray) -> Instances: ...


class MaskRCNNPredictor:
    """Runs an exported Mask R-CNN / Keypoint R-CNN on images of any size.

    Args:
        backend: an ``sdk.backends`` backend holding a graph written by ``segrt export``.
        mask_threshold: probability above which a mask pixel is foreground (torchvision users use 0.5).

    After each ``predict``, ``last_timings`` holds preprocess/model/postprocess milliseconds.
    """

    def __init__(self, backend, mask_threshold: float = 0.5) -> None:
        self.backend = backend
        meta = backend.metadata
        self.metadata = meta
        self.kind: str = meta["kind"]
        self.class_names: list[str] = list(meta["class_names"])
        self.input_hw: tuple[int, int] = tuple(int(v) for v in meta["input_size"])  # type: ignore[assignment]
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

    def postprocess(self, outputs: dict[str, np.ndarray], geometry: Geometry,
                    image: np.ndarray | None = None) -> Instances:
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
            keypoints = heatmaps_to_keypoints(np.asarray(outputs["keypoint_heatmaps"])[:n],
                                              np.asarray(outputs["boxes"])[:n].astype(np.float32))
            keypoints[:, :, 0] *= rw
            keypoints[:, :, 1] *= rh
        names = [self.class_names[i] if 0 <= i < len(self.class_names) else str(i) for i in labels]
        return Instances(boxes, scores, labels, names, masks, keypoints, (h, w), image)

    def predict(self, image: np.ndarray, tiles: bool | None = None, overlap: int | None = None,
                progress: bool | None = None) -> Instances:
        """Detect instances in one image (HxW, HxWx3 RGB or HxWx4; uint8, uint16 or float).

        Args:
            tiles: True: sliding windows of the graph's input size at native resolution, detections
                merged, masks sparse (``sdk.windows``); False: the whole image resized into the graph
                input; None decides: windows when fitting the image would shrink it more than
                2x (:meth:`uses_windows`).
            overlap, progress: for windows (see ``sdk.windows.predict_windows``).
        """
        if tiles or (tiles is None and self.uses_windows(image)):
            from .windows import predict_windows
            return predict_windows(self, image, overlap=overlap, progress=progress)
        if not isinstance(image, np.ndarray):
            from .sources import open_image
            src = open_image(image)
            image = src.read(0, src.shape[0], 0, src.shape[1])
        t0 = time.perf_counter()
        feed, geometry = self.preprocess(image)
        t1 = time.perf_counter()
        outputs = self.backend.run(feed)
        t2 = time.perf_counter()
        result = self.postprocess(outputs, geometry, image=np.asarray(image))
        t3 = time.perf_counter()
        self.last_timings = {"preprocess_ms": (t1 - t0) * 1e3, "model_ms": (t2 - t1) * 1e3,
                             "postprocess_ms": (t3 - t2) * 1e3}
        return result

    __call__ = predict

    def uses_windows(self, image: Any) -> bool:
        """Whether ``predict`` runs sliding windows: when the whole-image resize would shrink ``image`` > 2x."""
        from .sources import open_image
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
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        image = result.image if image is None else image
        if image is not None:
            overlay = self.draw(image, result)
            ok, buf = cv2.imencode(".png", cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
            if not ok:
                raise DataError(f"cannot encode the overlay for {stem}", "check the output folder")
            path = out_dir / f"{stem}_overlay.png"
            with atomic_path(path) as tmp:
                tmp.write_bytes(buf.tobytes())
            paths.append(path)
        path = out_dir / f"{stem}.json"
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps({"image_size": list(result.image_hw),
                                       "instances": instances_to_coco(result)}, indent=1))
        paths.append(path)
        return paths


def instances_to_coco(result: Instances, image_id: int | None = None) -> list[dict[str, Any]]:
    """COCO result dicts (one per instance) for ``pycocotools`` ``loadRes`` or JSON output."""
    out = []
    for i in range(len(result)):
        d: dict[str, Any] = {"bbox": bbox_xywh(result.boxes[i]), "score": float(result.scores[i]),
                             "category_id": int(result.labels[i]), "category_name": result.class_names[i]}
        if image_id is not None:
            d["image_id"] = image_id
        if result.masks is not None:
            d["segmentation"] = encode_rle(result.masks[i])
        elif result.mask_crops is not None:
            d["segmentation"] = {"size": list(result.image_hw),
                                 "counts": compress_counts(result.mask_crops.run_lengths(i))}
        if result.keypoints is not None:
            kp = result.keypoints[i]
            d["keypoints"] = [float(v) for xyv in zip(kp[:, 0], kp[:, 1], np.ones(len(kp))) for v in xyv]
            d["keypoint_scores"] = [float(v) for v in kp[:, 2]]
        out.append(d)
    return out


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


def _colour(i: int) -> tuple[int, int, int]:
    """A distinct, stable RGB colour per instance (golden-ratio hue steps)."""
    hue = int((i * 0.618033988749895 % 1.0) * 179)
    hsv = np.array([[[hue, 200, 255]]], dtype=np.uint8)
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def draw_instances(image: np.ndarray, result: Instances, alpha: float = 0.45) -> np.ndarray:
    """uint8 [H, W, 3] RGB overlay of ``result`` on ``image`` (any supported image type)."""
    canvas = to_rgb_uint8(image).copy()
    for i in range(len(result)):
        colour = np.array(_colour(i), dtype=np.float32)
        if result.masks is not None or result.mask_crops is not None:
            if result.masks is not None:
                m, (y0, x0) = result.masks[i], (0, 0)
            else:
                m, (y0, x0) = result.mask_crops.crops[i], (int(v) for v in result.mask_crops.origins[i])
            region = canvas[y0:y0 + m.shape[0], x0:x0 + m.shape[1]]
            region[m] = (region[m] * (1 - alpha) + colour * alpha).astype(np.uint8)
        x1, y1, x2, y2 = (int(round(v)) for v in result.boxes[i])
        c = tuple(int(v) for v in colour)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), c, 1)
        cv2.putText(canvas, f"{result.class_names[i]} {result.scores[i]:.2f}", (x1, max(y1 - 3, 8)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.35, c, 1, cv2.LINE_AA)
        if result.keypoints is not None:
            kp = result.keypoints[i]
            if len(kp) == 17:
                for a, b in COCO_SKELETON:
                    pa, pb = kp[a - 1, :2], kp[b - 1, :2]
                    cv2.line(canvas, (int(pa[0]), int(pa[1])), (int(pb[0]), int(pb[1])), c, 1, cv2.LINE_AA)
            for x, y, _ in kp:
                cv2.circle(canvas, (int(x), int(y)), 2, c, -1)
    return canvas


def evaluate(predictor: Predictor, coco_json: str | Path, image_dir: str | Path) -> dict[str, float]:
    """COCO box and segm metrics of ``predictor`` on a COCO instances file (pycocotools).

    Returns:
        {"bbox_AP", "bbox_AP50", "bbox_AP75", "bbox_APS", "bbox_APM", "bbox_APL", and the same
        with the "segm_" prefix (masks, when the model predicts them), "images": n}; AP in [0, 1],
        -1 where COCO has no ground truth of that size.
    """
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise InputError("COCO evaluation needs pycocotools", "pip install 'segrt[eval]' (or pycocotools)") from None
    import contextlib
    import io

    coco_json, image_dir = Path(coco_json), Path(image_dir)
    if not coco_json.is_file():
        raise DataError(f"COCO annotation file not found: {coco_json}", "check the path")
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(coco_json))
    results: list[dict[str, Any]] = []
    has_masks = True
    missing = [gt.imgs[i]["file_name"] for i in gt.getImgIds()
               if not (image_dir / gt.imgs[i]["file_name"]).is_file()]
    if missing:
        raise DataError(f"{len(missing)} image(s) listed in {coco_json.name} are not in {image_dir}: "
                        f"{', '.join(missing[:5])}", "pass the folder that holds the COCO file's images")
    for img_id in sorted(gt.getImgIds()):
        info = gt.imgs[img_id]
        data = np.fromfile(image_dir / info["file_name"], dtype=np.uint8)
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        if img is None:
            raise DataError(f"cannot decode {image_dir / info['file_name']}", "use PNG/JPEG/TIFF images")
        if img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)
        res = predictor.predict(img)
        has_masks = has_masks and res.has_masks
        results.extend(instances_to_coco(res, image_id=img_id))
    metrics: dict[str, float] = {"images": float(len(gt.getImgIds()))}
    names = ["AP", "AP50", "AP75", "APS", "APM", "APL"]
    for iou_type in (["bbox", "segm"] if has_masks else ["bbox"]):
        if not results:
            metrics.update({f"{iou_type}_{n}": 0.0 for n in names})
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            dt = gt.loadRes([dict(r) for r in results])
            ev = COCOeval(gt, dt, iou_type)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        metrics.update({f"{iou_type}_{n}": float(v) for n, v in zip(names, ev.stats[:6])})
    return metrics
