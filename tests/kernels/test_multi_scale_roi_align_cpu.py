"""Fused FPN RoIAlign (segrt.ops.multi_scale_roi_align on numpy arrays) against torchvision.ops.MultiScaleRoIAlign."""

from __future__ import annotations

from collections import OrderedDict

import _roi_align_oracle as oracle
import numpy as np
import pytest
from _roi_align_cases import boxes_all_levels, pyramid
from _roi_align_oracle import fpn_levels_loop, multi_scale_roi_align_loop

from segrt.ops import fpn_scales, multi_scale_roi_align, roi_align

torch = pytest.importorskip("torch", reason="needs torch (pip install -e '.[train]')")
torchvision = pytest.importorskip("torchvision", reason="needs torchvision (pip install -e '.[train]')")

NAMES = ["p2", "p3", "p4", "p5"]


def _torchvision(features, rois, idx, image_sizes, output_size, sampling_ratio, names=NAMES):
    pooler = torchvision.ops.MultiScaleRoIAlign(names, output_size, sampling_ratio)
    fmap = OrderedDict((name, torch.from_numpy(f)) for name, f in zip(names, features, strict=True))
    boxes = [torch.from_numpy(rois[idx == i]) for i in range(features[0].shape[0])]
    out = pooler(fmap, boxes, image_sizes).numpy()
    # torchvision returns boxes grouped per image; put them back in our row order
    order = np.concatenate([np.flatnonzero(idx == i) for i in range(features[0].shape[0])])
    result = np.empty_like(out)
    result[order] = out
    return result, pooler.scales


@pytest.mark.parametrize("output_size", [7, 14, (5, 3)])
def test_matches_torchvision_mask_rcnn_pooler(output_size):
    """Mask R-CNN setting: P2..P5, sampling_ratio=2, aligned=False, two images of different sizes."""
    rng = np.random.default_rng(11)
    image_sizes = [(200, 336), (184, 300)]  # (h, w) before batching; padded batch is 200x336
    feats = pyramid(rng, 2, 6, (200, 336))
    rois = boxes_all_levels(rng, 150, (200, 336))
    idx = np.sort(rng.integers(0, 2, len(rois)))
    want, scales = _torchvision(feats, rois, idx, image_sizes, output_size, 2)
    assert scales == fpn_scales([f.shape[2:] for f in feats], (200, 336)) == [1 / 4, 1 / 8, 1 / 16, 1 / 32]
    levels = fpn_levels_loop(rois, 2, 5)
    assert set(levels.tolist()) == {0, 1, 2, 3}, "the boxes must exercise every level"
    got = multi_scale_roi_align(feats, rois, idx, output_size, scales, sampling_ratio=2, threads=2)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sampling_ratio", [0, 3])
def test_matches_torchvision_three_levels_other_sampling(sampling_ratio):
    rng = np.random.default_rng(12)
    feats = pyramid(rng, 1, 3, (96, 128), strides=(8, 16, 32))
    rois = boxes_all_levels(rng, 80, (96, 128))
    idx = np.zeros(len(rois), dtype=np.int64)
    want, scales = _torchvision(feats, rois, idx, [(96, 128)], 4, sampling_ratio, names=["a", "b", "c"])
    got = multi_scale_roi_align(feats, rois, idx, 4, scales, sampling_ratio=sampling_ratio)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_single_level_is_plain_roi_align():
    rng = np.random.default_rng(13)
    (feat,) = pyramid(rng, 1, 4, (64, 64), strides=(4,))
    rois = boxes_all_levels(rng, 30, (64, 64))
    idx = np.zeros(len(rois), dtype=np.int64)
    got = multi_scale_roi_align([feat], rois, idx, 7, [0.25], 2)
    np.testing.assert_array_equal(got, roi_align(feat, rois, idx, 7, 0.25, 2, aligned=False))


def test_zero_area_and_huge_boxes_clamp_to_end_levels():
    """Zero area -> log2(0) = -inf -> k_min; far larger than 224 * 2^(k_max-4) -> k_max."""
    rng = np.random.default_rng(14)
    feats = pyramid(rng, 1, 3, (128, 128))
    rois = np.array([[10, 10, 10, 10], [5, 5, 5, 40], [0, 0, 4000, 4000]], dtype=np.float32)
    idx = np.zeros(3, dtype=np.int64)
    got = multi_scale_roi_align(feats, rois, idx, 3, [1 / 4, 1 / 8, 1 / 16, 1 / 32], 2)
    np.testing.assert_array_equal(got[:2], roi_align(feats[0], rois[:2], idx[:2], 3, 1 / 4, 2, aligned=False))
    np.testing.assert_array_equal(got[2:], roi_align(feats[3], rois[2:], idx[2:], 3, 1 / 32, 2, aligned=False))


@pytest.mark.parametrize("aligned", [True, False])
def test_matches_loop_oracle_with_custom_canonical_level(aligned):
    """aligned=True and a non-default mapping are not reachable through torchvision: use the oracle."""
    rng = np.random.default_rng(15)
    feats = pyramid(rng, 2, 2, (48, 48), strides=(2, 4, 8))
    rois = boxes_all_levels(rng, 12, (48, 48))
    idx = rng.integers(0, 2, len(rois))
    scales = [1 / 2, 1 / 4, 1 / 8]
    got = multi_scale_roi_align(feats, rois, idx, 3, scales, 0, aligned=aligned, canonical_scale=32, canonical_level=2)
    # canonical (32, 2): the oracle's LevelMapper with the same numbers
    levels = oracle.fpn_levels_loop(rois, 1, 3, canonical_scale=32, canonical_level=2)
    want = np.stack(
        [
            oracle.roi_align_loop(feats[lv], rois[i : i + 1], idx[i : i + 1], 3, 3, scales[lv], 0, "avg", aligned)[0]
            for i, lv in enumerate(levels)
        ]
    )
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert len(set(levels.tolist())) > 1


def test_oracle_multi_level_matches_torchvision():
    rng = np.random.default_rng(16)
    feats = pyramid(rng, 1, 2, (64, 64))
    rois = boxes_all_levels(rng, 10, (64, 64))
    idx = np.zeros(len(rois), dtype=np.int64)
    want, scales = _torchvision(feats, rois, idx, [(64, 64)], 3, 2)
    got = multi_scale_roi_align_loop(feats, rois, idx, 3, 3, scales, 2)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_zero_rois():
    feats = pyramid(np.random.default_rng(0), 1, 3, (64, 64))
    out = multi_scale_roi_align(
        feats, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), 7, [1 / 4, 1 / 8, 1 / 16, 1 / 32], 2
    )
    assert out.shape == (0, 3, 7, 7)
