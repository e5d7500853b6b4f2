"""CUDA kernels (libsegrt_roi_align_cuda.so, through segrt.ops on torch CUDA tensors) against
torchvision's CUDA ops; GPU only.

fp32 must match torchvision to float rounding; fp16 features (fp32 boxes, fp32
maths inside) are compared with torchvision in fp32 on the same fp16-rounded
inputs, within fp16 output rounding. Max mode (not in torchvision) is compared
with our CPU implementation, itself checked against ONNX's expected outputs.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict

import numpy as np
import pytest
from _roi_align_cases import EDGE_BOXES, boxes_all_levels, pyramid, random_boxes

from segrt.errors import BackendUnavailableError
from segrt.ops import native

torch = pytest.importorskip("torch", reason="needs torch (pip install -e '.[train]')")
torchvision = pytest.importorskip("torchvision", reason="needs torchvision (pip install -e '.[train]')")

pytestmark = pytest.mark.gpu

FP16_TOL = dict(rtol=2e-3, atol=2e-3)


@pytest.fixture(scope="module")
def ops():
    """segrt.ops, once the CUDA library is found (numpy inputs still run on the CPU library)."""
    try:
        native.find_library(native.CUDA_ROI_ALIGN)
    except BackendUnavailableError as exc:
        if os.environ.get("SEGRT_REQUIRE_GPU_TESTS"):  # set by scripts/gpu_check.sh: a skip there is a failure
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    import segrt.ops

    return segrt.ops


def _cuda(a, dtype=None):
    t = torch.from_numpy(np.ascontiguousarray(a)).cuda()
    return t if dtype is None else t.to(dtype)


def _tv_boxes(rois, idx):
    return torch.cat([idx[:, None].float(), rois], dim=1)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
@pytest.mark.parametrize("scale", [1.0, 0.25, 1 / 16])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_roi_align_matches_torchvision_cuda(ops, aligned, sampling_ratio, scale, dtype):
    rng = np.random.default_rng(100)
    x = rng.standard_normal((2, 33, 120, 160)).astype(np.float32)
    rois = np.concatenate([random_boxes(rng, 200, (120 / scale, 160 / scale)), EDGE_BOXES / scale])
    idx = rng.integers(0, 2, len(rois)).astype(np.int32)
    xt = _cuda(x, getattr(torch, dtype))
    rt, it = _cuda(rois), _cuda(idx)
    for out in [(7, 7), (14, 14), (5, 3)]:
        got = ops.roi_align(xt, rt, it, out, scale, sampling_ratio, "avg", aligned).float()
        want = torchvision.ops.roi_align(xt.float(), _tv_boxes(rt, it), out, scale, sampling_ratio, aligned)
        torch.cuda.synchronize()
        tol = dict(rtol=1e-5, atol=1e-5) if dtype == "float32" else FP16_TOL
        torch.testing.assert_close(got, want, **tol)


@pytest.mark.parametrize("aligned", [True, False])
def test_max_mode_matches_cpu_implementation(ops, aligned):
    rng = np.random.default_rng(101)
    x = rng.standard_normal((2, 9, 40, 50)).astype(np.float32)
    rois = np.concatenate([random_boxes(rng, 50, (40, 50)), EDGE_BOXES / 4])
    idx = rng.integers(0, 2, len(rois))
    want = ops.roi_align(x, rois, idx, (6, 5), 1.0, 0, "max", aligned)
    got = ops.roi_align(_cuda(x), _cuda(rois), _cuda(idx.astype(np.int32)), (6, 5), 1.0, 0, "max", aligned)
    np.testing.assert_allclose(got.cpu().numpy(), want, rtol=1e-5, atol=1e-5)


def test_huge_adaptive_grid_uses_the_fallback_path(ops):
    """sampling_ratio=0 on a 3000-px box: 7 x 429 samples per axis, more than the shared table holds."""
    rng = np.random.default_rng(102)
    x = rng.standard_normal((1, 2, 64, 64)).astype(np.float32)
    rois = np.array([[0, 0, 3000, 3000], [10, 10, 2000, 40]], np.float32)
    idx = np.zeros(2, np.int32)
    xt, rt, it = _cuda(x), _cuda(rois), _cuda(idx)
    got = ops.roi_align(xt, rt, it, 7, 1.0, 0, "avg", True)
    want = torchvision.ops.roi_align(xt, _tv_boxes(rt, it), 7, 1.0, 0, True)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_zero_rois_and_bad_batch_index(ops):
    x = torch.randn(1, 4, 16, 16, device="cuda")
    empty = ops.roi_align(
        x, torch.zeros(0, 4, device="cuda"), torch.zeros(0, dtype=torch.int32, device="cuda"), 7, 1.0, 2
    )
    assert empty.shape == (0, 4, 7, 7)
    rois = torch.tensor([[0, 0, 8, 8], [0, 0, 8, 8]], dtype=torch.float32, device="cuda")
    out = ops.roi_align(x, rois, torch.tensor([0, 3], dtype=torch.int32, device="cuda"), 7, 1.0, 2)
    torch.cuda.synchronize()
    assert torch.isfinite(out[0]).all() and (out[1] == 0).all(), "an out-of-range image index must give zeros"


def _tv_pooler(features, rois, idx, image_sizes, output_size, sampling_ratio):
    names = [f"p{i}" for i in range(len(features))]
    pooler = torchvision.ops.MultiScaleRoIAlign(names, output_size, sampling_ratio)
    boxes = [rois[idx == i] for i in range(features[0].shape[0])]
    return pooler, names, boxes


@pytest.mark.parametrize("output_size", [7, 14])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_multi_level_matches_torchvision_cuda(ops, output_size, dtype):
    rng = np.random.default_rng(103)
    image_hw = (200, 336)
    feats = [_cuda(f, getattr(torch, dtype)) for f in pyramid(rng, 2, 32, image_hw)]
    rois_np = boxes_all_levels(rng, 400, image_hw)
    idx_np = np.sort(rng.integers(0, 2, len(rois_np))).astype(np.int32)  # sorted: torchvision groups per image
    rois, idx = _cuda(rois_np), _cuda(idx_np)
    pooler, names, boxes = _tv_pooler(feats, rois, idx, [(200, 336), (190, 300)], output_size, 2)
    want = pooler(OrderedDict(zip(names, [f.float() for f in feats], strict=True)), boxes, [(200, 336), (190, 300)])
    got = ops.multi_scale_roi_align(feats, rois, idx, output_size, pooler.scales, 2).float()
    torch.cuda.synchronize()
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == "float32" else FP16_TOL
    torch.testing.assert_close(got, want, **tol)


def test_multi_level_matches_cpu_implementation(ops):
    rng = np.random.default_rng(104)
    feats = pyramid(rng, 2, 5, (96, 128))
    rois = np.concatenate([boxes_all_levels(rng, 60, (96, 128)), EDGE_BOXES])
    idx = rng.integers(0, 2, len(rois))
    scales = [1 / 4, 1 / 8, 1 / 16, 1 / 32]
    want = ops.multi_scale_roi_align(feats, rois, idx, 7, scales, 0, aligned=True)
    got = ops.multi_scale_roi_align(
        [_cuda(f) for f in feats], _cuda(rois), _cuda(idx.astype(np.int32)), 7, scales, 0, aligned=True
    )
    np.testing.assert_allclose(got.cpu().numpy(), want, rtol=1e-5, atol=1e-5)


def _median_ms(fn, repeats=20):
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def test_fused_multi_level_is_faster_than_torchvision(ops):
    """Mask R-CNN sized: 1000 RoIs, 256 channels, P2..P5 of 800x1344, 14x14. The goal is 2x; require > 1x here."""
    rng = np.random.default_rng(105)
    feats = [torch.randn(1, 256, 800 // s, 1344 // s, device="cuda") for s in (4, 8, 16, 32)]
    rois = _cuda(boxes_all_levels(rng, 1000, (800, 1344)).clip(0, 1344))
    idx = torch.zeros(1000, dtype=torch.int32, device="cuda")
    pooler, names, boxes = _tv_pooler(feats, rois, idx, [(800, 1344)], 14, 2)
    fmap = OrderedDict(zip(names, feats, strict=True))
    pooler(fmap, boxes, [(800, 1344)])
    ours = _median_ms(lambda: ops.multi_scale_roi_align(feats, rois, idx, 14, pooler.scales, 2))
    theirs = _median_ms(lambda: pooler(fmap, boxes, [(800, 1344)]))
    print(f"\nfused multi-level 14x14: ours {ours:.3f} ms, torchvision {theirs:.3f} ms, x{theirs / ours:.2f}")
    assert ours < theirs
