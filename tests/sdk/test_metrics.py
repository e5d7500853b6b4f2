"""segrt.unet.metrics: hand-derived cases, scikit-image / scipy as independent oracles, topology properties."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import ndimage as ndi

from segrt.errors import InputError
from segrt.unet import metrics as M

skm = pytest.importorskip("skimage.metrics", reason="needs skimage (pip install -e '.[eval]')")

FOUR = ndi.generate_binary_structure(2, 1)
EIGHT = np.ones((3, 3), bool)


def structures(connectivity: int) -> tuple[np.ndarray, np.ndarray]:
    """(foreground, background) scipy structuring elements of a connectivity pair."""
    return (FOUR, EIGHT) if connectivity == 4 else (EIGHT, FOUR)


def topology(mask: np.ndarray, connectivity: int) -> tuple[int, int]:
    """(#foreground components, #background components), outside the image = background."""
    fg_s, bg_s = structures(connectivity)
    padded = np.pad(mask.astype(bool), 1)
    return ndi.label(padded, fg_s)[1], ndi.label(~padded, bg_s)[1]


def brute_simple(window: np.ndarray, connectivity: int) -> bool:
    """Oracle: flipping the centre of a 3x3 window keeps both component counts of the window."""
    fg_s, bg_s = structures(connectivity)
    flipped = window.copy()
    flipped[1, 1] = ~flipped[1, 1]

    def counts(w: np.ndarray) -> tuple[int, int]:
        return ndi.label(w, fg_s)[1], ndi.label(~w, bg_s)[1]

    return counts(window) == counts(flipped)


def window_of(code: int) -> np.ndarray:
    return np.array([(code >> k) & 1 for k in range(9)], bool).reshape(3, 3)


def rect(shape: tuple[int, int], r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[r0:r1, c0:c1] = True
    return m


# --------------------------------------------------------------------------- simple points


@pytest.mark.parametrize("connectivity", [4, 8])
def test_simple_lut_matches_brute_force_window_component_counts(connectivity):
    lut = M.is_simple_lut(connectivity)
    assert lut.shape == (512,)
    expected = np.array([brute_simple(window_of(c), connectivity) for c in range(512)])
    np.testing.assert_array_equal(lut, expected)
    # simplicity never depends on the centre's own value (same table for adding and removing)
    np.testing.assert_array_equal(lut[np.arange(512) & ~16], lut[np.arange(512) | 16])


def test_simple_lut_duality_and_textbook_cases():
    lut4, lut8 = M.is_simple_lut(4), M.is_simple_lut(8)
    # (4,8) simple for X  <=>  (8,4) simple for the complement of X
    np.testing.assert_array_equal(lut4, lut8[np.arange(512) ^ 0x1FF])
    code = lambda rows: sum(int(v) << k for k, v in enumerate(np.array(rows).ravel()))  # noqa: E731 - a one-line helper of this test
    isolated = code([[0, 0, 0], [0, 1, 0], [0, 0, 0]])
    interior = code([[1, 1, 1], [1, 1, 1], [1, 1, 1]])
    end_point = code([[0, 0, 0], [1, 1, 0], [0, 0, 0]])
    bridge = code([[0, 1, 0], [0, 1, 0], [0, 1, 0]])  # removing it splits N from S
    diagonal = code([[1, 0, 0], [0, 1, 0], [0, 0, 1]])  # a diagonal line through the centre
    for lut in (lut4, lut8):
        assert not lut[isolated] and not lut[interior] and lut[end_point] and not lut[bridge]
    # diagonal neighbours are connected only with 8-connected foreground: there the centre is a
    # bridge (not simple); with 4-connected foreground it is an isolated dot (not simple either)
    assert not lut8[diagonal] and not lut4[diagonal]
    corner_touch = code([[1, 0, 0], [0, 1, 0], [0, 0, 0]])  # a second pixel diagonal to the centre
    assert lut8[corner_touch] and not lut4[corner_touch]


# --------------------------------------------------------------------------- hand-made cases

SHAPE = (10, 15)
N = SHAPE[0] * SHAPE[1]  # 150 pixels


def test_identical_masks_score_perfectly():
    truth = rect(SHAPE, 2, 8, 2, 13)
    assert M.pixel_error(truth, truth) == 0.0
    assert M.iou(truth, truth) == 1.0
    err, warped = M.warping_error(truth, truth)
    assert err == 0.0 and np.array_equal(warped, truth)
    labels = M.connected_components(truth)
    assert M.adapted_rand(labels, labels) == (0.0, 1.0, 1.0)


def test_empty_masks():
    empty = np.zeros(SHAPE, bool)
    assert M.pixel_error(empty, empty) == 0.0
    assert M.iou(empty, empty) == 1.0  # empty union: defined as agreement
    assert M.warping_error(empty, empty)[0] == 0.0
    # all-background truth is fully ignored: nothing to split or merge (skimage gives nan here)
    assert M.adapted_rand(np.zeros(SHAPE, int), np.zeros(SHAPE, int)) == (0.0, 1.0, 1.0)
    # prediction of a 12-pixel object on empty truth: pixel error 12/150, IoU 0/12
    pred = rect(SHAPE, 1, 4, 1, 5)
    assert M.pixel_error(pred, empty) == pytest.approx(12 / N)
    assert M.iou(pred, empty) == 0.0


def test_split_one_object_predicted_as_two():
    # truth: one 6x11 rectangle (rows 2-7, cols 2-12), n = 66 pixels.
    # pred: the same with column 7 cleared -> two 6x5 blocks (30 + 30) and a 6-pixel cut.
    truth = rect(SHAPE, 2, 8, 2, 13)
    pred = truth.copy()
    pred[:, 7] = False
    assert M.pixel_error(pred, truth) == pytest.approx(6 / N)
    assert M.iou(pred, truth) == pytest.approx(60 / 66)
    # Warping: the cut's end pixels are simple (removing a notch); the cut is eaten from its ends
    # until one pixel is left, whose removal would split the object: exactly 1 pixel of error.
    err, warped = M.warping_error(pred, truth)
    assert err == pytest.approx(1 / N)
    assert np.count_nonzero(warped != pred) == 1
    assert topology(warped, 4) == topology(truth, 4) == (1, 1)
    # Rand (truth background ignored): contingency of truth label 1 vs pred {A: 30, B: 30, 0: 6}
    # pairs_both = 30^2 + 30^2 + 6^2 - 66 = 1770, pairs_pred = 1770, pairs_truth = 66^2 - 66 = 4290
    # precision = 1, recall = 1770/4290, error = 1 - 2*1770/(1770 + 4290) = 2520/6060
    err, prec, rec = M.adapted_rand(M.connected_components(pred), M.connected_components(truth))
    assert err == pytest.approx(2520 / 6060, abs=1e-12)
    assert prec == pytest.approx(1.0, abs=1e-12) and rec == pytest.approx(1770 / 4290, abs=1e-12)


def test_split_residual_pixel_follows_priority_order():
    # Same split; the original (Fiji) visits the most confident pixel first, so the removal
    # front runs from the high-priority end and the one pixel it cannot remove is the least
    # confident end of the cut.
    truth = rect(SHAPE, 2, 8, 2, 13)
    pred = truth.copy()
    pred[:, 7] = False
    rows = np.broadcast_to(np.arange(SHAPE[0], dtype=float)[:, None], SHAPE)
    _, warped = M.warping_error(pred, truth, priority=10.0 - rows)  # top most confident
    assert list(zip(*np.nonzero(warped != pred), strict=True)) == [(7, 7)]
    _, warped = M.warping_error(pred, truth, priority=rows)  # bottom most confident
    assert list(zip(*np.nonzero(warped != pred), strict=True)) == [(2, 7)]


def test_merge_two_objects_predicted_as_one():
    # truth: two 6x5 blocks (cols 2-6 and 8-12, n = 30 each) separated by background column 7.
    # pred: one 6x11 block (the gap filled).
    truth = rect(SHAPE, 2, 8, 2, 7) | rect(SHAPE, 2, 8, 8, 13)
    pred = rect(SHAPE, 2, 8, 2, 13)
    assert M.pixel_error(pred, truth) == pytest.approx(6 / N)
    # Warping: every gap pixel has foreground of both objects among its 4-neighbours W and E,
    # so adding any of them would merge: none is simple, all 6 stay wrong.
    err, warped = M.warping_error(pred, truth)
    assert err == pytest.approx(6 / N)
    assert np.array_equal(warped, truth)
    # Rand: truth sizes 30, 30; pred one segment of 60 (gap pixels are truth background: ignored)
    # pairs_both = 2*30^2 - 60 = 1740, pairs_truth = 1740, pairs_pred = 60^2 - 60 = 3540
    # error = 1 - 2*1740/(1740 + 3540) = 1800/5280 = n/(3n-2) with n = 30
    err, prec, rec = M.adapted_rand(M.connected_components(pred), M.connected_components(truth))
    assert err == pytest.approx(30 / 88, abs=1e-12)
    assert prec == pytest.approx(1740 / 3540, abs=1e-12) and rec == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("shift", [(0, 1), (1, 0), (1, 1), (-1, 1)])
@pytest.mark.parametrize("connectivity", [4, 8])
def test_one_pixel_boundary_shift_is_forgiven(shift, connectivity):
    yy, xx = np.mgrid[:24, :24]
    truth = (yy - 11.5) ** 2 + (xx - 11.0) ** 2 <= 6.5**2  # a disk
    pred = np.roll(truth, shift, axis=(0, 1))
    assert M.pixel_error(pred, truth) > 0.02
    err, warped = M.warping_error(pred, truth, connectivity=connectivity)
    assert err == 0.0 and np.array_equal(warped, pred)
    assert M.adapted_rand_error(M.connected_components(pred), M.connected_components(truth)) > 0


def test_hole_inside_object_is_a_topological_error():
    # truth: a filled 7x7 square; pred: the same with its centre pixel cleared (a hole).
    truth = rect(SHAPE, 1, 8, 4, 11)
    pred = truth.copy()
    pred[4, 7] = False
    assert M.pixel_error(pred, truth) == pytest.approx(1 / N)
    # clearing the centre (all 8 neighbours foreground) would create a hole: not simple
    err, warped = M.warping_error(pred, truth)
    assert err == pytest.approx(1 / N) and np.array_equal(warped, truth)


def test_missing_and_extra_objects():
    # Missing object (k = 12): it shrinks pixel by pixel until the last one, whose removal
    # would delete the object: 1 pixel of error. Extra object: no pixel of it can be added
    # (an isolated new pixel creates a component), so all 12 stay wrong.
    obj = rect(SHAPE, 2, 5, 2, 6)
    empty = np.zeros(SHAPE, bool)
    assert M.warping_error(empty, obj)[0] == pytest.approx(1 / N)
    assert M.warping_error(obj, empty)[0] == pytest.approx(12 / N)


def test_iou_counts_the_requested_class():
    truth = np.array([[0, 1, 1, 2], [0, 1, 2, 2]])
    pred = np.array([[0, 1, 2, 2], [1, 1, 2, 2]])
    assert M.iou(pred, truth, cls=1) == pytest.approx(2 / 4)  # inter {(0,1),(1,1)}, union 4
    assert M.iou(pred, truth, cls=2) == pytest.approx(3 / 4)
    assert M.iou(pred, truth, cls=0) == pytest.approx(1 / 2)


# --------------------------------------------------------------------------- scikit-image / scipy oracles


@pytest.mark.parametrize("seed", range(6))
def test_adapted_rand_matches_scikit_image(seed):
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(5, 40, size=2))

    def random_labels(k: int) -> np.ndarray:
        if seed % 2:  # blocky labels: large segments, like real instance maps
            small = rng.integers(0, k, size=(h // 3 + 1, w // 3 + 1))
            return np.kron(small, np.ones((3, 3), np.int64))[:h, :w]
        return rng.integers(0, k, size=(h, w))

    many = seed >= 4  # more labels than pixels/labels: the contingency table is built sparsely
    truth = random_labels(int(rng.integers(300, 600) if many else rng.integers(2, 12)))
    pred = random_labels(int(rng.integers(300, 600) if many else rng.integers(2, 12)))
    if seed % 2:
        pred = pred * 100_003  # large, non-contiguous ids
    ref_err, ref_prec, ref_rec = skm.adapted_rand_error(truth, pred)
    err, prec, rec = M.adapted_rand(pred, truth)
    # scikit-image returns precision and recall swapped w.r.t. its own docs (issue #6485)
    assert err == pytest.approx(ref_err, abs=1e-12)
    assert prec == pytest.approx(ref_rec, abs=1e-12) and rec == pytest.approx(ref_prec, abs=1e-12)
    assert M.adapted_rand_error(pred, truth) == err


def test_adapted_rand_matches_scikit_image_on_blob_instances():
    rng = np.random.default_rng(7)
    field = cv2.GaussianBlur(rng.standard_normal((96, 128)).astype(np.float32), (0, 0), 4)
    truth = M.connected_components(field > 0.3 * field.std())
    pred = M.connected_components(field > 0.1 * field.std(), connectivity=8)
    ref = skm.adapted_rand_error(truth, pred)
    got = M.adapted_rand(pred, truth)
    assert got[0] == pytest.approx(ref[0], abs=1e-12)
    assert 0 < got[0] < 1


@pytest.mark.parametrize("connectivity", [4, 8])
def test_connected_components_match_scipy(connectivity):
    rng = np.random.default_rng(connectivity)
    mask = rng.random((40, 50)) < 0.45
    ours = M.connected_components(mask, connectivity)
    ref, n = ndi.label(mask, FOUR if connectivity == 4 else EIGHT)
    assert ours.dtype == np.int32 and ours.max() == n
    assert np.array_equal(ours == 0, ~mask)
    # same partition: each of our labels maps to exactly one scipy label and back
    pairs = np.unique(np.stack([ours[mask], ref[mask]]), axis=1)
    assert pairs.shape[1] == n


# --------------------------------------------------------------------------- warping properties


def check_valid_warp(pred, truth, warped, err, connectivity):
    """What makes a warp valid, checked without the module's LUT."""
    # 1. topology of the truth kept (component counts, outside = background)
    assert topology(warped, connectivity) == topology(truth, connectivity)
    # 2. only disagreeing pixels were flipped, towards the prediction
    assert np.array_equal(warped[truth == pred], truth[truth == pred])
    # 3. finished: no remaining mismatch is a simple point
    padded = np.pad(warped, 1)
    for r, c in zip(*np.nonzero(warped != pred), strict=True):
        assert not brute_simple(padded[r : r + 3, c : c + 3], connectivity), (r, c)
    # 4. the error is the residual mismatch, never more than the pixel error
    assert err == np.count_nonzero(warped != pred) / pred.size
    assert err <= M.pixel_error(pred, truth)


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    shape=st.tuples(st.integers(1, 12), st.integers(1, 12)),
    connectivity=st.sampled_from([4, 8]),
    use_priority=st.booleans(),
)
def test_warp_preserves_topology_and_only_stops_at_non_simple_points(data, shape, connectivity, use_priority):
    truth = data.draw(hnp.arrays(bool, shape), label="truth")
    pred = data.draw(hnp.arrays(bool, shape), label="pred")
    priority = None
    if use_priority:
        finite = st.floats(allow_nan=False, allow_infinity=False)  # any range: tiny, huge, negative
        priority = data.draw(hnp.arrays(np.float64, shape, elements=finite), label="priority")
    err, warped = M.warping_error(pred, truth, priority=priority, connectivity=connectivity)
    assert warped.dtype == np.bool_ and warped.shape == shape
    check_valid_warp(pred, truth, warped, err, connectivity)


@pytest.mark.parametrize(
    "priority",
    [
        [[1.1e-308, 0.0, 0.0]],  # range below the smallest normal float (found by hypothesis)
        [[-1.7e308, 1.7e308, 0.0]],  # range overflowing float64
        [[0.3, 0.3, 0.3]],  # constant: one level
    ],
)
def test_warp_priority_levels_are_robust_to_extreme_ranges(priority):
    truth = np.array([[True, True, False]])
    pred = np.array([[False, False, True]])
    err, warped = M.warping_error(pred, truth, priority=np.array(priority))
    check_valid_warp(pred, truth, warped, err, 4)


@pytest.mark.parametrize("connectivity", [4, 8])
def test_warp_on_blob_images_is_valid(connectivity):
    # realistic masks: many rounds, long fronts, priority from a probability map
    rng = np.random.default_rng(3)
    field = cv2.GaussianBlur(rng.standard_normal((64, 80)).astype(np.float32), (0, 0), 3)
    noise = cv2.GaussianBlur(rng.standard_normal((64, 80)).astype(np.float32), (0, 0), 2)
    truth = field > 0.4 * field.std()
    prob = 1 / (1 + np.exp(-(field / field.std() * 3 + noise / noise.std())))
    for th in (0.2, 0.5, 0.8):
        pred = prob > th
        err, warped = M.warping_error(pred, truth, priority=np.abs(prob - th), connectivity=connectivity)
        check_valid_warp(pred, truth, warped, err, connectivity)
        assert 0 < err < M.pixel_error(pred, truth)


# --------------------------------------------------------------------------- threshold sweep


def test_threshold_sweep_matches_the_single_metrics():
    rng = np.random.default_rng(5)
    field = cv2.GaussianBlur(rng.standard_normal((48, 64)).astype(np.float32), (0, 0), 3)
    truth_labels = M.connected_components(field > 0.3 * field.std())
    prob = (1 / (1 + np.exp(-(field / field.std() - 0.3) * 4))).astype(np.float32)
    ths = [0.2, 0.5, 0.8]
    res = M.threshold_sweep(prob, truth_labels, ths)
    json.dumps(res)  # plain Python types, ready for a report
    assert res["thresholds"] == ths
    truth_mask = truth_labels > 0
    for i, th in enumerate(ths):
        mask = prob > th
        assert res["pixel_error"][i] == M.pixel_error(mask, truth_mask)
        assert res["iou"][i] == M.iou(mask, truth_mask)
        assert res["rand_error"][i] == M.adapted_rand_error(M.connected_components(mask), truth_labels)
        assert res["warping_error"][i] == M.warping_error(mask, truth_mask, priority=np.abs(prob - th))[0]
    for name in ("pixel_error", "rand_error", "warping_error"):
        assert res["best"][name]["value"] == min(res[name])
        assert res["best"][name]["threshold"] == ths[int(np.argmin(res[name]))]
    assert res["best"]["iou"]["value"] == max(res["iou"])
    # a bool truth mask is turned into instances by its connected components: same numbers
    assert M.threshold_sweep(prob, truth_mask, ths) == res


def test_threshold_sweep_is_perfect_at_the_separating_threshold():
    truth = np.zeros((20, 30), np.int32)
    truth[2:8, 2:10], truth[10:18, 12:28] = 1, 2
    prob = np.where(truth > 0, 0.7, 0.2).astype(np.float32)
    res = M.threshold_sweep(prob, truth)
    assert len(res["thresholds"]) == 10
    for i, th in enumerate(res["thresholds"]):
        if 0.2 <= th < 0.7:
            assert (res["pixel_error"][i], res["rand_error"][i], res["warping_error"][i], res["iou"][i]) == (0, 0, 0, 1)
    for name in ("pixel_error", "rand_error", "warping_error"):
        assert res["best"][name]["value"] == 0.0
    # below 0.2 everything is foreground: one object covering both cells (a merge)
    assert res["rand_error"][0] > 0 and res["warping_error"][0] > 0


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: M.pixel_error(np.zeros((4, 4), bool), np.zeros((4, 5), bool)), "different shapes"),
        (lambda: M.pixel_error(np.zeros((4, 4), np.float32), np.zeros((4, 4), bool)), "threshold"),
        (lambda: M.iou(np.zeros((2, 4, 4), bool), np.zeros((2, 4, 4), bool)), "2-D"),
        (lambda: M.warping_error(np.zeros((0, 4), bool), np.zeros((0, 4), bool)), "empty"),
        (lambda: M.warping_error(np.zeros((4, 4), bool), np.zeros((4, 4), bool), connectivity=6), "4 or 8"),
        (
            lambda: M.warping_error(np.zeros((4, 4), bool), np.zeros((4, 4), bool), priority=np.full((4, 4), np.nan)),
            "NaN",
        ),
        (lambda: M.adapted_rand(np.zeros((4, 4), np.float64), np.zeros((4, 4), int)), "integer"),
        (lambda: M.threshold_sweep(np.full((4, 4), np.inf), np.zeros((4, 4), int)), "NaN or inf"),
        (lambda: M.threshold_sweep(np.zeros((4, 4), np.uint8), np.zeros((4, 4), int)), "float"),
        (lambda: M.threshold_sweep(np.zeros((4, 4), np.float32), np.zeros((4, 4), int), [1.5]), r"\[0, 1\]"),
    ],
)
def test_bad_input_raises_input_error_with_a_fix(call, match):
    with pytest.raises(InputError, match=match) as info:
        call()
    assert info.value.fix
