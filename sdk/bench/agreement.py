"""How close a variant's output is to its reference's: named numbers for the report and ``--pick``.

* :func:`segmentation_agreement` (U-Net): ``iou`` is the mean over foreground classes of the
  IoU between the variant's and the reference's class maps. IoU distance (1 - IoU) is a metric,
  so ``|IoU(variant, truth) - IoU(reference, truth)| <= 1 - iou`` for any ground truth: a
  budget of ``iou >= 0.995`` keeps the accuracy within 0.005 IoU of the reference's.
* :func:`instances_agreement` (Mask R-CNN): COCO AP (IoU 0.50:0.95) of the variant's
  detections scored against the reference's detections as ground truth (pycocotools). For
  ``segm_ap`` a detection with an empty mask is no object on either side (COCO scores two
  empty masks as IoU 0, which would count agreeing empty masks as misses).
* :func:`detection_matching` (Mask R-CNN): detections paired one to one with the reference's,
  and how far the pairs moved (score, box, mask) and what was left unpaired: a high unpaired
  score means NMS or the ranking changed, one near the score threshold means threshold flicker.
* :func:`array_agreement` (ops): largest absolute difference.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any, Literal

import numpy as np

from segrt.bench.core import Agreement
from segrt.rcnn.coco import bbox_xywh, encode_rle


def _probs(out: Any) -> np.ndarray:
    """Class probabilities [..., K, H, W] from a SegmentationResult, a backend output dict or a list of them."""
    if hasattr(out, "probs"):
        return np.asarray(out.probs)
    if isinstance(out, dict):
        return np.asarray(out["probs"] if "probs" in out else next(iter(out.values())))
    if isinstance(out, (list, tuple)):
        return np.concatenate([_probs(o) for o in out])
    return np.asarray(out)


def segmentation_agreement(out: Any, ref: Any) -> dict[str, float]:
    """``iou`` (mean foreground-class IoU of the argmax maps), ``label_agreement`` (fraction of
    pixels with the same class) and ``max_abs_dprob`` between two probability outputs; between two
    ``segrt.unet.predictor.SegmentationResult`` also ``abs_dcount``, the difference in objects counted."""
    p, q = _probs(out).astype(np.float32), _probs(ref).astype(np.float32)
    if p.shape != q.shape:
        raise ValueError(f"outputs differ in shape: {p.shape} vs reference {q.shape}")
    a, b = p.argmax(axis=-3), q.argmax(axis=-3)
    ious = []
    for k in range(1, p.shape[-3]):
        union = np.count_nonzero((a == k) | (b == k))
        if union:
            ious.append(np.count_nonzero((a == k) & (b == k)) / union)
    numbers = {
        "iou": float(np.mean(ious)) if ious else 1.0,
        "label_agreement": float((a == b).mean()),
        "max_abs_dprob": float(np.abs(p - q).max()) if p.size else 0.0,
    }
    if hasattr(out, "instances") and hasattr(ref, "instances"):  # two SegmentationResults: objects counted
        numbers["abs_dcount"] = float(abs(out.count - ref.count))
    return numbers


def _coco_ap(result: Any, reference: Any, iou_type: Literal["bbox", "segm"]) -> float:
    """AP@[.5:.95] of ``result`` against ``reference`` as ground truth (both ``segrt.rcnn.predictor.Instances``)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    keep_ref, keep_out = list(range(len(reference))), list(range(len(result)))
    if iou_type == "segm":  # an empty mask is no object: COCO would score two empty masks as IoU 0
        keep_ref = [i for i in keep_ref if reference.masks[i].any()]
        keep_out = [i for i in keep_out if result.masks[i].any()]
    if len(keep_ref) == 0:
        return 1.0 if len(keep_out) == 0 else 0.0
    if len(keep_out) == 0:
        return 0.0
    h, w = reference.image_hw
    anns: list[Any] = []  # COCO annotation dicts (pycocotools' stubs type them as TypedDicts)
    for i in keep_ref:
        box = bbox_xywh(reference.boxes[i])
        ann = {
            "id": i + 1,
            "image_id": 1,
            "category_id": int(reference.labels[i]),
            "bbox": box,
            "area": float(box[2] * box[3]),
            "iscrowd": 0,
        }
        if iou_type == "segm":
            ann["segmentation"] = encode_rle(reference.masks[i])
            ann["area"] = float(np.count_nonzero(reference.masks[i]))
        anns.append(ann)
    cats = sorted({int(c) for c in reference.labels} | {int(c) for c in result.labels})
    dets: list[dict[str, Any]] = []
    for i in keep_out:
        d = {
            "image_id": 1,
            "category_id": int(result.labels[i]),
            "bbox": bbox_xywh(result.boxes[i]),
            "score": float(result.scores[i]),
        }
        if iou_type == "segm":
            d["segmentation"] = encode_rle(result.masks[i])
        dets.append(d)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {
            "images": [{"id": 1, "height": int(h), "width": int(w), "file_name": ""}],
            "annotations": anns,
            "categories": [{"id": c, "name": str(c), "supercategory": ""} for c in cats],
        }
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(dets), iou_type)
        ev.params.maxDets = [1, 10, max(100, len(keep_out))]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return max(float(ev.stats[0]), 0.0)


def instances_agreement(out: Any, ref: Any) -> dict[str, float]:
    """``detections`` and ``reference_detections`` (counts), ``bbox_ap`` and, with masks on both sides,
    ``segm_ap``: COCO AP of ``out`` against ``ref`` as ground truth (1.0 = the same detections)."""
    numbers = {"detections": float(len(out)), "reference_detections": float(len(ref))}
    try:
        import pycocotools  # noqa: F401 - imported only to learn whether it is installed
    except ImportError:  # counts only: AP needs the eval extra
        return numbers
    numbers["bbox_ap"] = _coco_ap(out, ref, "bbox")
    if out.masks is not None and ref.masks is not None:
        numbers["segm_ap"] = _coco_ap(out, ref, "segm")
    return numbers


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix float [len(a), len(b)] of boxes [N, 4] and [M, 4], x1y1x2y2 in pixels."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2] - a[:, 0]).clip(0) * (a[:, 3] - a[:, 1]).clip(0)
    area_b = (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def detection_matching(out: Any, ref: Any, iou_thresh: float = 0.5) -> dict[str, float]:
    """How ``out``'s detections pair with ``ref``'s (both ``segrt.rcnn.predictor.Instances``).

    Greedy, in the reference's score order: each reference detection takes the unpaired detection of
    the same label with the highest box IoU, if that IoU is at least ``iou_thresh``.

    Returns:
        ``matched`` (pairs), ``max_abs_dscore`` and ``min_box_iou`` over the pairs, ``mean_mask_iou``
        (with masks on both sides; 1.0 without pairs), and the highest score left unpaired on each
        side: ``unmatched_reference_max_score``, ``unmatched_max_score`` (0.0 if none).
    """
    n, m = len(ref), len(out)
    ious = box_iou(ref.boxes, out.boxes) if n and m else np.zeros((n, m))
    used: set[int] = set()
    pairs: list[tuple[int, int, float]] = []
    for i in np.argsort(-np.asarray(ref.scores)):
        free = [
            (ious[i, j], j)
            for j in range(m)
            if j not in used and out.labels[j] == ref.labels[i] and ious[i, j] >= iou_thresh
        ]
        if free:
            iou, j = max(free)
            used.add(j)
            pairs.append((int(i), int(j), float(iou)))
    mask_ious = []
    if ref.masks is not None and out.masks is not None:
        for i, j, _ in pairs:
            union = np.count_nonzero(ref.masks[i] | out.masks[j])
            mask_ious.append(np.count_nonzero(ref.masks[i] & out.masks[j]) / union if union else 1.0)
    paired_ref = {i for i, _, _ in pairs}
    return {
        "matched": float(len(pairs)),
        "max_abs_dscore": max((abs(float(out.scores[j]) - float(ref.scores[i])) for i, j, _ in pairs), default=0.0),
        "min_box_iou": min((iou for _, _, iou in pairs), default=1.0),
        "mean_mask_iou": float(np.mean(mask_ious)) if mask_ious else 1.0,
        "unmatched_reference_max_score": max(
            (float(ref.scores[i]) for i in range(n) if i not in paired_ref), default=0.0
        ),
        "unmatched_max_score": max((float(out.scores[j]) for j in range(m) if j not in used), default=0.0),
    }


def array_agreement(out: Any, ref: Any) -> dict[str, float]:
    """``max_abs_diff`` between two arrays (anything ``np.asarray`` takes, e.g. CPU tensors)."""
    a, b = np.asarray(out, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"outputs differ in shape: {a.shape} vs reference {b.shape}")
    return {"max_abs_diff": float(np.abs(a - b).max()) if a.size else 0.0}


# per artifact kind: the agreement of end-to-end outputs, of model-only outputs (None: not
# compared, e.g. padded detection tensors), and the default --pick budget
# model kind -> (agreement of predict results, of backend outputs, minimum scores of the agreement)
BY_KIND: dict[str, tuple[Agreement | None, Agreement | None, dict[str, float]]] = {
    "unet": (segmentation_agreement, segmentation_agreement, {"iou": 0.995}),
    "maskrcnn": (instances_agreement, None, {"segm_ap": 0.995}),
    "keypointrcnn": (instances_agreement, None, {"bbox_ap": 0.995}),
}
