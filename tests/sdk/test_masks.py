"""segrt.rcnn.masks.paste_masks equals torchvision's paste_masks_in_image (the oracle), and is fast."""

from __future__ import annotations

import time

import numpy as np
import pytest

from segrt.errors import InputError
from segrt.rcnn.masks import paste_masks

torch = pytest.importorskip("torch", reason="needs torch (pip install -e '.[train]')")
from torchvision.models.detection.roi_heads import paste_masks_in_image  # noqa: E402


def _case(seed: int, n: int, h: int, w: int):
    rng = np.random.default_rng(seed)
    x1 = rng.uniform(0, w, n)
    y1 = rng.uniform(0, h, n)
    # detections are clipped to the image (as Mask R-CNN's are); sizes from sub-pixel to the
    # whole image, so the expanded boxes hang over every border
    boxes = np.stack([x1, y1, x1 + rng.uniform(0.1, w, n), y1 + rng.uniform(0.1, h, n)], 1)
    boxes = np.minimum(boxes, [w, h, w, h])
    smooth = torch.nn.functional.interpolate(
        torch.rand(n, 1, 7, 7, generator=torch.Generator().manual_seed(seed)), size=(28, 28), mode="bilinear"
    )
    return smooth[:, 0].numpy(), boxes.astype(np.float32)


@pytest.mark.parametrize("seed,n,h,w", [(0, 40, 96, 128), (1, 25, 300, 200), (2, 1, 17, 33)])
def test_paste_matches_torchvision(seed, n, h, w):
    masks, boxes = _case(seed, n, h, w)
    ref = paste_masks_in_image(torch.from_numpy(masks)[:, None], torch.from_numpy(boxes), (h, w))[:, 0].numpy()
    probs = paste_masks(masks, boxes, (h, w), threshold=None)
    assert probs.shape == ref.shape
    # same sample positions and weights; only float rounding of the bilinear weights differs
    assert np.abs(probs - ref).max() < 1e-5
    binary = paste_masks(masks, boxes, (h, w))
    assert binary.dtype == np.bool_
    assert np.array_equal(binary, ref > 0.5)


def test_paste_zero_masks_and_outside_boxes():
    assert paste_masks(np.zeros((0, 28, 28), np.float32), np.zeros((0, 4), np.float32), (10, 20)).shape == (0, 10, 20)
    # a box completely outside the image pastes nothing (torchvision: all-zero mask)
    out = paste_masks(np.ones((1, 28, 28), np.float32), np.array([[50, 50, 60, 60]], np.float32), (10, 20))
    assert out.shape == (1, 10, 20) and not out.any()


def test_paste_rejects_bad_shapes():
    with pytest.raises(InputError, match=r"\[N, M, M\]"):
        paste_masks(np.zeros((2, 28, 14)), np.zeros((2, 4)), (8, 8))
    with pytest.raises(InputError, match="one x1y1x2y2 box per mask"):
        paste_masks(np.zeros((2, 28, 28)), np.zeros((3, 4)), (8, 8))


def test_paste_is_fast_compared_with_torchvision():
    """100 masks into 800x1333: the runtime's paste must be much cheaper than torchvision's loop."""
    masks, boxes = _case(3, 100, 800, 1333)
    boxes[:, 2:] = boxes[:, :2] + (boxes[:, 2:] - boxes[:, :2]) * 0.2  # realistic object sizes
    t = time.perf_counter()
    paste_masks(masks, boxes, (800, 1333))
    ours = time.perf_counter() - t
    t = time.perf_counter()
    paste_masks_in_image(torch.from_numpy(masks)[:, None], torch.from_numpy(boxes), (800, 1333))
    theirs = time.perf_counter() - t
    assert ours < theirs, (ours, theirs)
