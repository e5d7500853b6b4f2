"""CPU RoIAlign (segrt.ops.roi_align on numpy arrays) against references nobody here wrote.

* the ONNX backend test cases for RoiAlign (case generator shipped with `onnx`);
* torchvision.ops.roi_align on random and edge-case boxes;
* the plain-Python loop oracle (itself checked against ONNX and torchvision here).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from _roi_align_cases import EDGE_BOXES, random_boxes
from _roi_align_oracle import roi_align_loop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segrt.ops import roi_align

torch = pytest.importorskip("torch", reason="needs torch (pip install -e '.[train]')")
torchvision = pytest.importorskip("torchvision", reason="needs torchvision (pip install -e '.[train]')")


def _onnx_roialign_cases():
    """The RoiAlign cases of onnx's node test-case generator.

    collect_testcases("RoiAlign") imports every op's generator (~15 s on a busy
    2-core runner); importing only roialign.py under the same op filter runs the
    same generator code in well under a second. Falls back to the public call.
    """
    import importlib

    import onnx.backend.test.case.node as node_cases

    cases = []
    try:
        node_cases._TargetOpType = "RoiAlign"  # the filter collect_testcases() sets
        importlib.import_module("onnx.backend.test.case.node.roialign")
        cases = [c for c in node_cases._NodeTestCases if c.name.startswith("test_roialign")]
    except (ImportError, AttributeError):
        cases = []
    finally:
        node_cases._TargetOpType = None
    if not cases:
        with warnings.catch_warnings():  # other ops' generators warn on import (divide by zero)
            warnings.simplefilter("ignore")
            cases = [c for c in node_cases.collect_testcases("RoiAlign") if c.name.startswith("test_roialign")]
    return cases


def _onnx_attrs(node) -> dict:
    """All RoiAlign attributes: the node's, else the schema's defaults (never our own guesses)."""
    import onnx

    schema = onnx.defs.get_schema("RoiAlign")
    attrs = {
        name: onnx.helper.get_attribute_value(a.default_value)
        for name, a in schema.attributes.items()
        if a.default_value.name
    }
    attrs.update({a.name: onnx.helper.get_attribute_value(a) for a in node.attribute})
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}


ONNX_CASES = _onnx_roialign_cases()


def test_onnx_generator_still_ships_the_three_cases():
    assert sorted(c.name for c in ONNX_CASES) == [
        "test_roialign_aligned_false",
        "test_roialign_aligned_true",
        "test_roialign_mode_max",
    ]


@pytest.mark.parametrize("case", ONNX_CASES, ids=lambda c: c.name)
@pytest.mark.parametrize("impl", ["native", "oracle"])
def test_onnx_backend_case(case, impl):
    """Ours (and the oracle) reproduce ONNX's expected outputs (stored rounded to 4 decimals)."""
    a = _onnx_attrs(case.model.graph.node[0])
    (x, rois, idx), (expected,) = case.data_sets[0]
    aligned = {"half_pixel": True, "output_half_pixel": False}[a["coordinate_transformation_mode"]]
    kwargs = dict(spatial_scale=a["spatial_scale"], sampling_ratio=a["sampling_ratio"], mode=a["mode"], aligned=aligned)
    if impl == "native":
        got = roi_align(x, rois, idx, (a["output_height"], a["output_width"]), threads=1, **kwargs)
    else:
        got = roi_align_loop(x, rois, idx, a["output_height"], a["output_width"], **kwargs)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)


# ------------------------------------------------------------------ torchvision


def _tv_roi_align(x, rois, idx, out, scale, ratio, aligned):
    boxes = torch.from_numpy(np.concatenate([idx[:, None].astype(np.float32), rois], axis=1))
    return torchvision.ops.roi_align(torch.from_numpy(x), boxes, out, scale, ratio, aligned).numpy()


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
@pytest.mark.parametrize("scale", [1.0, 0.25, 1 / 16])
def test_matches_torchvision_random_and_edge_boxes(aligned, sampling_ratio, scale):
    rng = np.random.default_rng(hash((aligned, sampling_ratio, scale)) % 2**32)
    n, c = 2, 5
    fh, fw = 120, 160  # feature map; boxes live in image pixels = feature / scale
    x = rng.standard_normal((n, c, fh, fw)).astype(np.float32)
    rois = np.concatenate([random_boxes(rng, 60, (fh / scale, fw / scale)), EDGE_BOXES / scale])
    idx = rng.integers(0, n, len(rois))
    for out in [(7, 7), (14, 14), (5, 3)]:
        got = roi_align(x, rois, idx, out, scale, sampling_ratio, "avg", aligned, threads=2)
        want = _tv_roi_align(x, rois, idx, out, scale, sampling_ratio, aligned)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_oracle_matches_torchvision():
    """The oracle itself agrees with torchvision, edge cases included (so it can judge max mode)."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 2, 12, 16)).astype(np.float32)
    rois = np.concatenate([random_boxes(rng, 6, (12, 16)), EDGE_BOXES / 10])
    idx = np.zeros(len(rois), dtype=np.int64)
    for aligned in (True, False):
        for ratio in (0, 2):
            want = _tv_roi_align(x, rois, idx, (3, 4), 1.0, ratio, aligned)
            got = roi_align_loop(x, rois, idx, 3, 4, 1.0, ratio, "avg", aligned)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_zero_rois_gives_empty_output_like_torchvision():
    x = np.ones((1, 3, 8, 8), np.float32)
    got = roi_align(x, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), (7, 7), 1.0, 2)
    want = _tv_roi_align(x, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), (7, 7), 1.0, 2, True)
    assert got.shape == want.shape == (0, 3, 7, 7)


def test_thread_count_does_not_change_results():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 19, 30, 40)).astype(np.float32)  # 19: not a multiple of the 16-channel block
    rois = random_boxes(rng, 5, (60, 80))
    idx = rng.integers(0, 2, 5)
    ref = roi_align(x, rois, idx, 7, 0.5, 0, threads=1)
    for threads in (2, 3, 16):
        np.testing.assert_array_equal(roi_align(x, rois, idx, 7, 0.5, 0, threads=threads), ref)


def test_non_contiguous_and_other_int_dtypes_are_accepted():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 4, 20, 30)).astype(np.float32)
    rois = random_boxes(rng, 4, (20, 30))
    idx = np.array([0, 1, 1, 0])
    ref = roi_align(x, rois, idx, 4, 1.0, 2)
    x_t = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)  # same values, F-ordered planes
    assert not x_t.flags.c_contiguous
    np.testing.assert_array_equal(roi_align(x_t, rois.astype(np.float64), idx.astype(np.int32), 4, 1.0, 2), ref)


# -------------------------------------------------------- property: vs oracle


@st.composite
def _problems(draw):
    n = draw(st.integers(1, 2))
    c = draw(st.integers(1, 3))
    h = draw(st.integers(1, 9))
    w = draw(st.integers(1, 9))
    scale = draw(st.sampled_from([1.0, 0.5, 2.0]))
    k = draw(st.integers(0, 4))
    coord = st.floats(0, 12, allow_nan=False, width=32)
    boxes = []
    for _ in range(k):
        x1, x2 = sorted([draw(coord), draw(coord)])
        y1, y2 = sorted([draw(coord), draw(coord)])
        boxes.append([x1, y1, x2, y2])
    seed = draw(st.integers(0, 2**31))
    x = np.random.default_rng(seed).standard_normal((n, c, h, w)).astype(np.float32)
    idx = np.array([draw(st.integers(0, n - 1)) for _ in range(k)], dtype=np.int64)
    out = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    return x, np.array(boxes, np.float32).reshape(k, 4), idx, out, scale


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_problems(), st.sampled_from(["avg", "max"]), st.booleans(), st.sampled_from([0, 1, 2, 3]))
def test_matches_loop_oracle(problem, mode, aligned, sampling_ratio):
    x, rois, idx, out, scale = problem
    got = roi_align(x, rois, idx, out, scale, sampling_ratio, mode, aligned, threads=2)
    want = roi_align_loop(x, rois, idx, out[0], out[1], scale, sampling_ratio, mode, aligned)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
