"""COCO instances data for training: reading (polygons and RLE) and the DSB2018 demo files.

Labels are COCO category ids used directly as class ids (torchvision's COCO
convention: 91 classes with unused ids for COCO itself; ids 1..K for custom data),
so predictions carry the category ids the JSON uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from segrt.errors import DataError
from segrt.io.datasets import list_pairs
from segrt.io.files import atomic_path
from segrt.io.images import read_image, write_png
from segrt.io.preprocess import to_rgb_uint8


def _mask_api():
    try:
        from pycocotools import mask as mask_util
    except ImportError:
        raise DataError("reading COCO masks needs pycocotools", "pip install 'segrt[train]'") from None
    return mask_util


def decode_segmentation(seg: Any, h: int, w: int) -> np.ndarray:
    """uint8 [h, w] mask of a COCO ``segmentation`` (polygon list, RLE dict, compressed or not)."""
    mask_util = _mask_api()
    if isinstance(seg, list):
        polys = [p for p in seg if len(p) >= 6]
        if not polys:
            return np.zeros((h, w), np.uint8)
        rle = mask_util.merge(mask_util.frPyObjects(polys, h, w))
    elif isinstance(seg, dict) and isinstance(seg.get("counts"), list):
        rle = mask_util.frPyObjects(seg, h, w)
    elif isinstance(seg, dict):
        rle = dict(seg)
        if isinstance(rle["counts"], str):
            rle["counts"] = rle["counts"].encode()
    else:
        raise DataError(
            f"unknown COCO segmentation of type {type(seg).__name__}",
            "use polygons ([[x1, y1, ...]]) or RLE ({'size': [h, w], 'counts': ...})",
        )
    return mask_util.decode(rle).astype(np.uint8)


@dataclass
class CocoSet:
    """A COCO instances file with its images: records [(image path, image info, annotations)]."""

    records: list[tuple[Path, dict[str, Any], list[dict[str, Any]]]]
    class_names: list[str]  # index = category id; "__background__" at 0, "N/A" for unused ids
    dropped: int  # degenerate annotations skipped (crowd, empty mask, box < 1 px)
    keypoint_names: list[str] | None = None  # the categories' "keypoints" (person keypoints files)


def load_coco(json_path: str | Path, image_dir: str | Path) -> CocoSet:
    """Read and check a COCO instances file; errors name missing images and unusable annotations."""
    json_path, image_dir = Path(json_path), Path(image_dir)
    if not json_path.is_file():
        raise DataError(f"COCO annotation file not found: {json_path}", "check the path")
    try:
        data = json.loads(json_path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{json_path} is not valid JSON ({exc})", "fix or regenerate the file") from None
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise DataError(
                f"{json_path} has no '{key}' list", "a COCO instances file has images, annotations, categories"
            )
    cats = {int(c["id"]): str(c["name"]) for c in data["categories"]}
    if not cats or min(cats) < 1:
        raise DataError(f"{json_path}: categories must have ids >= 1 (0 is background)", "renumber the categories")
    class_names = ["__background__"] + [cats.get(i, "N/A") for i in range(1, max(cats) + 1)]
    images = {int(im["id"]): im for im in data["images"]}
    missing = [im["file_name"] for im in images.values() if not (image_dir / im["file_name"]).is_file()]
    if missing:
        raise DataError(
            f"{len(missing)} image(s) of {json_path.name} are missing from {image_dir}: {', '.join(missing[:5])}",
            "pass the image folder that belongs to this COCO file",
        )
    by_image: dict[int, list[dict[str, Any]]] = {i: [] for i in images}
    dropped = 0
    for ann in data["annotations"]:
        if int(ann["image_id"]) not in images:
            raise DataError(
                f"annotation {ann.get('id')} refers to unknown image id {ann['image_id']}",
                "fix the COCO file (every annotation's image_id must be in 'images')",
            )
        if int(ann["category_id"]) not in cats:
            raise DataError(
                f"annotation {ann.get('id')} has unknown category_id {ann['category_id']}",
                "add the category to 'categories'",
            )
        _, _, w, h = ann.get("bbox", (0, 0, 0, 0))
        if ann.get("iscrowd", 0) or w < 1 or h < 1 or not ann.get("segmentation"):
            dropped += 1
            continue
        by_image[int(ann["image_id"])].append(ann)
    if not any(by_image.values()):
        raise DataError(
            f"{json_path} has no usable annotations ({dropped} degenerate or crowd ones dropped)",
            "each object needs a non-empty segmentation and a bbox of at least 1x1 px",
        )
    records = [(image_dir / images[i]["file_name"], images[i], by_image[i]) for i in sorted(images)]
    kp_names = {tuple(c["keypoints"]) for c in data["categories"] if c.get("keypoints")}
    if len(kp_names) > 1:
        raise DataError(
            f"{json_path}: categories define different keypoint lists",
            "Keypoint R-CNN predicts one keypoint set: give every category the same 'keypoints'",
        )
    return CocoSet(records, class_names, dropped, list(next(iter(kp_names))) if kp_names else None)


def targets_from_masks(
    masks: np.ndarray, labels: np.ndarray, keypoints: np.ndarray | None = None
) -> dict[str, torch.Tensor]:
    """torchvision training target from instance masks [N, H, W]; drops masks smaller than 2x2 px.

    ``keypoints`` float32 [N, K, 3] (x, y, visibility; image pixels) become ``target["keypoints"]``.
    """
    boxes, keep = [], []
    for i, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        if len(xs) and xs.max() > xs.min() and ys.max() > ys.min():
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            keep.append(i)
    h, w = masks.shape[1:] if masks.ndim == 3 else (0, 0)
    target = {
        "boxes": torch.tensor(np.array(boxes, np.float32).reshape(-1, 4)),
        "labels": torch.tensor(np.asarray(labels)[keep], dtype=torch.int64),
        "masks": torch.from_numpy(masks[keep].astype(np.uint8)) if keep else torch.zeros((0, h, w), dtype=torch.uint8),
    }
    if keypoints is not None:
        target["keypoints"] = torch.from_numpy(np.ascontiguousarray(keypoints[keep], dtype=np.float32))
    return target


def flip_permutation(names: list[str] | None, k: int) -> np.ndarray:
    """Keypoint order after a mirror image: ``left_*`` and ``right_*`` swap (identity without names)."""
    perm = np.arange(k)
    if names:
        index = {n: i for i, n in enumerate(names)}
        for i, n in enumerate(names):
            for a, b in (("left_", "right_"), ("right_", "left_")):
                if n.startswith(a) and b + n[len(a) :] in index:
                    perm[i] = index[b + n[len(a) :]]
    return perm


FLIPS = ("all", "horizontal", "none")


class CocoTrainSet:
    """Decoded images (float32 [3, H, W] in [0, 1]) with instance masks (and keypoints), kept in memory.

    ``sample(rng, crop, flips)`` returns one random crop (side ``crop``, 0 = whole image) with
    random mirror images: ``flips="all"`` left-right, up-down and (square crops) transposes (what
    a few-image nuclei demo needs to not overfit), ``"horizontal"`` left-right only (people),
    ``"none"``. Keypoints follow every step: a mirror image swaps ``left_*``/``right_*``
    keypoints, and a keypoint outside the crop gets visibility 0.
    """

    def __init__(self, coco: CocoSet, keypoints: bool = False) -> None:
        self.items = []
        self.keypoint_names = coco.keypoint_names
        k = len(coco.keypoint_names or [])
        if keypoints and not k:
            raise DataError(
                "this COCO file has no keypoint names (category 'keypoints')",
                "train Keypoint R-CNN on a person-keypoints file (e.g. `segrt data pose`)",
            )
        self.flip_perm = flip_permutation(coco.keypoint_names, k)
        for path, _info, anns in coco.records:
            img = read_image(path)
            rgb = to_rgb_uint8(img).astype(np.float32) / 255.0
            h, w = rgb.shape[:2]
            masks = (
                np.stack([decode_segmentation(a["segmentation"], h, w) for a in anns])
                if anns
                else np.zeros((0, h, w), np.uint8)
            )
            labels = np.array([int(a["category_id"]) for a in anns], np.int64)
            kps = None
            if keypoints:
                kps = np.zeros((len(anns), k, 3), np.float32)
                for i, a in enumerate(anns):
                    if a.get("keypoints"):
                        kps[i] = np.asarray(a["keypoints"], np.float32).reshape(k, 3)
                kps[kps[:, :, 2] <= 0] = 0.0
            self.items.append((rgb, masks, labels, kps))

    def __len__(self) -> int:
        return len(self.items)

    def sample(
        self, rng: np.random.Generator, crop: int = 0, flips: str = "all"
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        rgb, masks, labels, kps = self.items[int(rng.integers(len(self.items)))]
        kps = None if kps is None else kps.copy()
        h, w = rgb.shape[:2]
        if crop and (h > crop or w > crop):
            ch, cw = min(crop, h), min(crop, w)
            y0, x0 = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
            rgb, masks = rgb[y0 : y0 + ch, x0 : x0 + cw], masks[:, y0 : y0 + ch, x0 : x0 + cw]
            if kps is not None:
                kps[:, :, 0] -= x0
                kps[:, :, 1] -= y0
                x, y = kps[:, :, 0], kps[:, :, 1]
                kps[(x < 0) | (y < 0) | (x >= cw) | (y >= ch)] = 0.0  # out of the crop: not labelled
        h, w = rgb.shape[:2]
        if flips not in FLIPS:
            raise DataError(f"unknown flips setting {flips!r}", f"use one of {', '.join(FLIPS)}")
        labelled = None if kps is None else kps[:, :, 2:] > 0
        mirrors = 0
        if flips != "none" and rng.random() < 0.5:
            rgb, masks, mirrors = rgb[:, ::-1], masks[:, :, ::-1], mirrors + 1
            if kps is not None:
                kps[:, :, 0] = w - kps[:, :, 0]
        if flips == "all" and rng.random() < 0.5:
            rgb, masks, mirrors = rgb[::-1], masks[:, ::-1], mirrors + 1
            if kps is not None:
                kps[:, :, 1] = h - kps[:, :, 1]
        if flips == "all" and h == w and rng.random() < 0.5:
            rgb, masks, mirrors = rgb.transpose(1, 0, 2), masks.transpose(0, 2, 1), mirrors + 1
            if kps is not None:
                kps[:, :, :2] = kps[:, :, 1::-1].copy()
        if kps is not None:
            kps = np.where(labelled, kps, 0.0).astype(np.float32)
            if mirrors % 2:  # a mirror image of a person swaps its left and right keypoints
                kps = kps[:, self.flip_perm]
        image = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
        return image, targets_from_masks(np.ascontiguousarray(masks), labels, kps)


# -- demo data ---------------------------------------------------------------


def _polygons(mask: np.ndarray) -> list[list[float]]:
    """COCO polygons (outer contours, pixel-corner coordinates) of a binary mask."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    polys = []
    for c in contours:
        if len(c) >= 3:
            polys.append([float(v) + 0.5 for v in c.reshape(-1)])
    return polys


def _mask_box(mask: np.ndarray) -> list[float]:
    """COCO box [x, y, w, h] around the pixels of a non-empty binary mask."""
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def labels_to_coco(label_images: list[tuple[str, np.ndarray]], category: str, use_rle: bool) -> dict[str, Any]:
    """COCO instances dict from (file name, uint16 instance label image) pairs; one category (id 1)."""
    from segrt.rcnn.coco import encode_rle

    images, anns = [], []
    for img_id, (name, labels) in enumerate(label_images, start=1):
        h, w = labels.shape
        images.append({"id": img_id, "file_name": name, "height": int(h), "width": int(w)})
        for obj in np.unique(labels):
            if obj == 0:
                continue
            m = labels == obj
            seg: Any = encode_rle(m) if use_rle else _polygons(m)
            if not seg:
                continue
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": img_id,
                    "category_id": 1,
                    "iscrowd": 0,
                    "area": float(m.sum()),
                    "bbox": _mask_box(m),
                    "segmentation": seg,
                }
            )
    return {
        "info": {"description": "DSB2018 nuclei demo (segrt)"},
        "images": images,
        "annotations": anns,
        "categories": [{"id": 1, "name": category, "supercategory": "cell"}],
    }


# flipped_coco's views: file name suffix -> (flip rows, flip columns)
VIEW_FLIPS = {"": (False, False), "fliplr": (False, True), "flipud": (True, False), "rot180": (True, True)}


def _flip(a: np.ndarray, rows: bool, columns: bool) -> np.ndarray:
    return np.ascontiguousarray(a[:: -1 if rows else 1, :: -1 if columns else 1])


def flip_views(image: np.ndarray) -> list[np.ndarray]:
    """``image`` [H, W, ...] and its 3 flips, in the order of :func:`flipped_coco`'s images (shape kept)."""
    return [_flip(image, *flips) for flips in VIEW_FLIPS.values()]


def flipped_coco(coco_json: str | Path, image_dir: str | Path, out_json: str | Path) -> Path:
    """Each image of a COCO instances file with its 3 flips, as 4 test images: ``out_json`` and its images.

    An accuracy budget of 0.005 AP is at the noise floor of one small held-out image; its flips are
    different inputs to the network with the same objects, so AP over all 4 is steadier than AP on
    one. Masks are written as compressed RLE, boxes recomputed from them. Keypoint files are
    refused: a flip swaps left and right. Images go to the folder named like ``out_json``
    (``<stem>_<flip>.png``); returns ``out_json``.
    """
    from segrt.rcnn.coco import encode_rle

    coco_json, image_dir, out_json = Path(coco_json), Path(image_dir), Path(out_json)
    doc = json.loads(coco_json.read_text())
    if any("keypoints" in a for a in doc["annotations"]):
        raise DataError(
            f"{coco_json.name} has keypoints, which a flip would mirror left to right",
            "evaluate keypoint models on their own held-out images",
        )
    by_image: dict[int, list[dict[str, Any]]] = {}
    for a in doc["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    images, anns = [], []
    for info in doc["images"]:
        image = read_image(image_dir / info["file_name"])
        h, w = image.shape[:2]
        for suffix, flips in VIEW_FLIPS.items():
            name = f"{Path(info['file_name']).stem}{'_' + suffix if suffix else ''}.png"
            write_png(out_json.with_suffix("") / name, _flip(image, *flips))
            images.append({**info, "id": len(images) + 1, "file_name": name})
            for a in by_image.get(info["id"], []):
                m = _flip(decode_segmentation(a["segmentation"], h, w), *flips).astype(bool)
                if m.any():
                    anns.append(
                        {
                            **a,
                            "id": len(anns) + 1,
                            "image_id": images[-1]["id"],
                            "area": float(m.sum()),
                            "bbox": _mask_box(m),
                            "segmentation": encode_rle(m),
                        }
                    )
    with atomic_path(out_json) as tmp:
        tmp.write_text(json.dumps({**doc, "images": images, "annotations": anns}))
    return out_json


def demo_coco(data_root: str | Path) -> Path:
    """Write COCO files for the prepared DSB2018 folders (``segrt.export.data.dsb2018.prepare_dsb2018``).

    Layout written under ``data_root/coco``::

        train.json  polygons (the common COCO form), images in train/*.png
        val.json    compressed RLE (exact masks for evaluation), images in val/*.png

    Images are 8-bit RGB PNGs (grey replicated; uint16 scaled by the image's maximum, the same
    rule the runtime applies). Returns ``data_root/coco``.
    """
    data_root = Path(data_root)
    out = data_root / "coco"
    for split, use_rle in (("train", False), ("val", True)):
        split_dir = data_root / split
        if not split_dir.is_dir():
            raise DataError(f"{split_dir} does not exist", "run `segrt data dsb2018 DIR` first")
        pairs = []
        for img_path, lbl_path in list_pairs(split_dir):
            name = img_path.stem + ".png"
            write_png(out / split / name, to_rgb_uint8(read_image(img_path)))
            pairs.append((name, read_image(lbl_path).astype(np.int64)))
        doc = labels_to_coco(pairs, "nucleus", use_rle)
        with atomic_path(out / f"{split}.json") as tmp:
            tmp.write_text(json.dumps(doc))
    return out
