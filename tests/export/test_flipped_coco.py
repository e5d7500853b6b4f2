"""``segrt.export.maskrcnn.coco.flipped_coco``: a held-out COCO set and its 3 flips, checked with pycocotools."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pycocotools", reason="flipped_coco reads and writes COCO masks with pycocotools")
from pycocotools import mask as mask_util

from segrt.errors import DataError
from segrt.export.maskrcnn.coco import flip_views, flipped_coco
from segrt.io.images import read_image, write_png
from segrt.rcnn.coco import run_lengths


def _coco(tmp_path: Path) -> tuple[Path, np.ndarray, list[np.ndarray]]:
    """A 40x60 image with an L-shaped object (polygon) and a blob (uncompressed RLE), off-centre."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)
    write_png(tmp_path / "val" / "a.png", image)
    polygon = [[5.0, 3.0, 20.0, 3.0, 20.0, 8.0, 10.0, 8.0, 10.0, 25.0, 5.0, 25.0]]
    blob = np.zeros((40, 60), np.uint8)
    blob[28:37, 41:57] = 1
    blob[30:33, 38:41] = 1
    rle = mask_util.encode(np.asfortranarray(blob))
    counts = run_lengths(blob)  # COCO's uncompressed RLE: column-major runs, zeros first
    doc = {
        "images": [{"id": 7, "file_name": "a.png", "height": 40, "width": 60}],
        "annotations": [
            {
                "id": 1,
                "image_id": 7,
                "category_id": 1,
                "iscrowd": 0,
                "segmentation": polygon,
                "bbox": [5, 3, 15, 22],
                "area": 0,
            },
            {
                "id": 2,
                "image_id": 7,
                "category_id": 1,
                "iscrowd": 0,
                "segmentation": {"size": [40, 60], "counts": counts},
                "bbox": list(mask_util.toBbox(rle)),
                "area": 0,
            },
        ],
        "categories": [{"id": 1, "name": "nucleus"}],
    }
    (tmp_path / "val.json").write_text(json.dumps(doc))
    poly_mask = mask_util.decode(mask_util.merge(mask_util.frPyObjects(polygon, 40, 60)))
    return tmp_path / "val.json", image, [poly_mask, blob]


def test_each_image_comes_with_its_three_flips(tmp_path):
    val, image, masks = _coco(tmp_path)
    out = flipped_coco(val, tmp_path / "val", tmp_path / "held_out.json")
    doc = json.loads(out.read_text())
    assert [im["file_name"] for im in doc["images"]] == ["a.png", "a_fliplr.png", "a_flipud.png", "a_rot180.png"]
    assert len({im["id"] for im in doc["images"]}) == 4 and len({a["id"] for a in doc["annotations"]}) == 8
    flips = [lambda a: a, lambda a: a[:, ::-1], lambda a: a[::-1], lambda a: a[::-1, ::-1]]
    for im, flip, view in zip(doc["images"], flips, flip_views(image), strict=True):
        np.testing.assert_array_equal(read_image(out.with_suffix("") / im["file_name"]), flip(image))
        np.testing.assert_array_equal(view, flip(image))  # the same views, for agreement on the raw image
        anns = [a for a in doc["annotations"] if a["image_id"] == im["id"]]
        assert len(anns) == 2
        for ann, mask in zip(anns, masks, strict=True):
            decoded = mask_util.decode(
                {"size": ann["segmentation"]["size"], "counts": ann["segmentation"]["counts"].encode()}
            )
            np.testing.assert_array_equal(decoded, flip(mask))
            np.testing.assert_allclose(ann["bbox"], mask_util.toBbox(mask_util.encode(np.asfortranarray(flip(mask)))))
            assert ann["area"] == flip(mask).sum()


def test_keypoint_files_are_refused(tmp_path):
    val, _, _ = _coco(tmp_path)
    doc = json.loads(val.read_text())
    doc["annotations"][0]["keypoints"] = [10, 10, 2] * 17
    val.write_text(json.dumps(doc))
    with pytest.raises(DataError, match="mirror left to right"):
        flipped_coco(val, tmp_path / "val", tmp_path / "held_out.json")
