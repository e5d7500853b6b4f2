"""Mask R-CNN runtime pieces without a model: COCO RLE, image conversion, resize rule."""

from __future__ import annotations

import numpy as np
import pytest

from segrt.errors import InputError
from segrt.io.preprocess import to_rgb_float
from segrt.rcnn.coco import encode_rle, instances_to_coco
from segrt.rcnn.instances import Instances
from segrt.rcnn.predictor import resized_size
from segrt.rcnn.viz import draw_instances


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (64, 48), (203, 301)])
@pytest.mark.parametrize("p", [0.0, 0.02, 0.5, 0.97, 1.0])
def test_rle_matches_pycocotools(shape, p):
    mask_util = pytest.importorskip("pycocotools.mask", reason="needs pycocotools (pip install -e '.[eval]')")
    m = np.random.default_rng(hash((shape, p)) % 2**32).random(shape) < p
    ref = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
    ours = encode_rle(m)
    assert ours["counts"] == ref["counts"].decode() and ours["size"] == list(ref["size"])
    assert np.array_equal(mask_util.decode({"size": ours["size"], "counts": ours["counts"].encode()}), m)


def test_image_conversions_grey_rgba_uint16():
    rgb = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    assert np.allclose(to_rgb_float(rgb), rgb / 255.0)
    rgba = np.concatenate([rgb, np.full((6, 5, 1), 7, np.uint8)], 2)
    assert np.array_equal(to_rgb_float(rgba), to_rgb_float(rgb))  # alpha dropped
    grey = rgb[:, :, 0]
    assert np.array_equal(to_rgb_float(grey), np.repeat((grey / np.float32(255))[:, :, None], 3, 2))
    u16 = grey.astype(np.uint16) * 3
    assert np.isclose(to_rgb_float(u16).max(), 1.0)  # scaled by the image's own maximum
    with pytest.raises(InputError, match=r"expected \[H, W\] or \[H, W, C\]"):
        to_rgb_float(np.zeros((2, 3, 4, 5)))


@pytest.mark.parametrize("hw", [(512, 256), (480, 640), (1000, 300), (37, 2000)])
def test_resize_rule_matches_torchvision(hw):
    torch = pytest.importorskip("torch", reason="needs torch (pip install -e '.[train]')")
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    t = GeneralizedRCNNTransform(800, 1333, [0.0] * 3, [1.0] * 3).eval()
    images, _ = t([torch.zeros(3, *hw)])
    expect = tuple(images.image_sizes[0])
    got = resized_size(hw, (4096, 4096), 800, 1333)  # a canvas large enough: pure torchvision rule
    assert got == expect
    # with a smaller canvas the image is shrunk to fit, aspect kept
    small = resized_size(hw, (256, 256), 800, 1333)
    assert small[0] <= 256 and small[1] <= 256 and max(small) >= 255


def test_instances_to_coco_and_draw():
    masks = np.zeros((1, 8, 9), bool)
    masks[0, 2:5, 3:7] = True
    res = Instances(
        np.array([[3, 2, 7, 5]], np.float32),
        np.array([0.9], np.float32),
        np.array([1]),
        ["nucleus"],
        masks,
        None,
        (8, 9),
    )
    coco = instances_to_coco(res, image_id=4)
    assert coco[0]["bbox"] == [3.0, 2.0, 4.0, 3.0] and coco[0]["image_id"] == 4
    assert coco[0]["segmentation"] == encode_rle(masks[0])
    overlay = draw_instances(np.zeros((8, 9), np.uint16), res)
    assert overlay.shape == (8, 9, 3) and overlay.dtype == np.uint8 and overlay[3, 4].any()
