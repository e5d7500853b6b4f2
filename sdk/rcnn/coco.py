"""COCO formats: run-length encoded masks, result dicts, and evaluation with pycocotools.

Encoding needs numpy only; evaluation imports pycocotools when called.

COCO stores a binary mask as run lengths over the pixels in column-major
order, starting with a run of zeros, and compresses the counts to an ASCII
string (6 bits per character, deltas against the count two places back).
``encode_rle`` produces exactly what ``pycocotools.mask.encode`` does (tested
against it), with ``counts`` as a ``str`` ready for JSON.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from segrt.errors import DataError, InputError
from segrt.io.images import read_image
from segrt.rcnn.keypoints import keypoint_metrics
from segrt.rcnn.masks import run_lengths

if TYPE_CHECKING:
    from segrt.predictor import Predictor
    from segrt.rcnn.instances import Instances


def compress_counts(counts: list[int]) -> str:
    """COCO's string compression of run lengths (``rleToString`` in the COCO API)."""
    out = []
    for i, x in enumerate(counts):
        if i > 2:
            x -= counts[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5  # arithmetic shift: negative deltas terminate at -1
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def encode_rle(mask: np.ndarray) -> dict:
    """COCO compressed RLE of one binary mask [H, W]: ``{"size": [H, W], "counts": str}``."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise InputError(f"RLE encodes one 2-D mask, got shape {mask.shape}", "encode masks one at a time")
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": compress_counts(run_lengths(mask))}


def bbox_xywh(box_xyxy: np.ndarray) -> list[float]:
    """COCO box [x, y, width, height] from x1y1x2y2."""
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    return [x1, y1, x2 - x1, y2 - y1]


def instances_to_coco(result: Instances, image_id: int | None = None) -> list[dict[str, Any]]:
    """COCO result dicts (one per instance) for ``pycocotools`` ``loadRes`` or JSON output."""
    out = []
    for i in range(len(result)):
        d: dict[str, Any] = {
            "bbox": bbox_xywh(result.boxes[i]),
            "score": float(result.scores[i]),
            "category_id": int(result.labels[i]),
            "category_name": result.class_names[i],
        }
        if image_id is not None:
            d["image_id"] = image_id
        if result.masks is not None:
            d["segmentation"] = encode_rle(result.masks[i])
        elif result.mask_crops is not None:
            d["segmentation"] = {
                "size": list(result.image_hw),
                "counts": compress_counts(result.mask_crops.run_lengths(i)),
            }
        if result.keypoints is not None:
            kp = result.keypoints[i]
            d["keypoints"] = [float(v) for xyv in zip(kp[:, 0], kp[:, 1], np.ones(len(kp)), strict=True) for v in xyv]
            d["keypoint_scores"] = [float(v) for v in kp[:, 2]]
        out.append(d)
    return out


def evaluate(predictor: Predictor[Instances], coco_json: str | Path, image_dir: str | Path) -> dict[str, float]:
    """COCO box, segm and keypoint metrics of ``predictor`` on a COCO instances file (pycocotools).

    Returns:
        {"bbox_AP", "bbox_AP50", "bbox_AP75", "bbox_APS", "bbox_APM", "bbox_APL", and the same
        with the "segm_" prefix (masks, when the model predicts them), keypoint OKS AP as
        "keypoints_AP", "_AP50", "_AP75", "_APM", "_APL" (Keypoint R-CNN), "images": n}; AP in [0, 1],
        -1 where COCO has no ground truth of that size.
    """
    gt = load_ground_truth(coco_json, image_dir)
    image_dir = Path(image_dir)
    results: list[dict[str, Any]] = []
    has_masks, has_keypoints = True, False
    for img_id in sorted(gt.getImgIds()):
        res = predictor.predict(read_image(image_dir / gt.imgs[img_id]["file_name"]))
        has_masks = has_masks and res.has_masks
        has_keypoints = res.keypoints is not None
        results.extend(instances_to_coco(res, image_id=img_id))
    return score_results(gt, results, has_masks, has_keypoints)


def load_ground_truth(coco_json: str | Path, image_dir: str | Path) -> Any:
    """The ``pycocotools.coco.COCO`` of an instances file, after checking that ``image_dir`` holds all its images."""
    try:
        from pycocotools.coco import COCO
    except ImportError:
        raise InputError("COCO evaluation needs pycocotools", "pip install 'segrt[eval]' (or pycocotools)") from None
    coco_json, image_dir = Path(coco_json), Path(image_dir)
    if not coco_json.is_file():
        raise DataError(f"COCO annotation file not found: {coco_json}", "check the path")
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(coco_json))
    missing = [gt.imgs[i]["file_name"] for i in gt.getImgIds() if not (image_dir / gt.imgs[i]["file_name"]).is_file()]
    if missing:
        raise DataError(
            f"{len(missing)} image(s) listed in {coco_json.name} are not in {image_dir}: {', '.join(missing[:5])}",
            "pass the folder that holds the COCO file's images",
        )
    return gt


def score_results(gt: Any, results: list[dict[str, Any]], has_masks: bool, has_keypoints: bool) -> dict[str, float]:
    """The metrics of :func:`evaluate` for COCO result dicts (``instances_to_coco`` with ``image_id``) against ``gt``.

    ``has_masks``: every prediction carried masks (segm AP is computed); ``has_keypoints``: the model
    predicts keypoints (OKS AP is computed).
    """
    from pycocotools.cocoeval import COCOeval

    metrics: dict[str, float] = {"images": float(len(gt.getImgIds()))}
    names = ["AP", "AP50", "AP75", "APS", "APM", "APL"]
    iou_types: list[Literal["bbox", "segm"]] = ["bbox", "segm"] if has_masks else ["bbox"]
    for iou_type in iou_types:
        if not results:
            metrics.update({f"{iou_type}_{n}": 0.0 for n in names})
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            dt = gt.loadRes([dict(r) for r in results])
            ev = COCOeval(gt, dt, iou_type)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        metrics.update({f"{iou_type}_{n}": float(v) for n, v in zip(names, ev.stats[:6], strict=True)})
    if has_keypoints:
        metrics.update(keypoint_metrics(gt, results))
    return metrics
