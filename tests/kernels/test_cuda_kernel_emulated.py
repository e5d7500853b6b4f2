"""The CUDA kernel's body, run on the CPU by cuda_kernel_emulator.cpp, against torchvision and our CPU op.

This is how CI (no GPU) checks the kernel's own code: block/thread indexing,
the shared tap tables (poisoned between blocks), the on-the-fly fallback for
huge adaptive grids, per-RoI level choice and the zero output for a bad batch
index. The gpu-marked tests in test_roi_align_cuda.py cover the rest.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from _roi_align_cases import EDGE_BOXES, boxes_all_levels, pyramid, random_boxes

from segrt.ops import multi_scale_roi_align, roi_align

torch = pytest.importorskip("torch", reason="needs torch (pip install -e '.[train]')")
torchvision = pytest.importorskip("torchvision", reason="needs torchvision (pip install -e '.[train]')")

HERE = Path(__file__).resolve().parent
KERNELS = HERE.parents[1] / "kernels" / "roi_align"
THREADS = 256  # kThreads of the real kernel
f32p, i32p = ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_int32)


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler to build the kernel emulator")
    lib_path = tmp_path_factory.mktemp("emu") / "libemu.so"
    cmd = [
        cxx,
        "-std=c++17",
        "-O2",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-shared",
        "-fPIC",
        f"-I{KERNELS}",
        str(HERE / "cuda_kernel_emulator.cpp"),
        "-o",
        str(lib_path),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return ctypes.CDLL(str(lib_path))


def _emulate(emu, x, rois, idx, out, scale, ratio, mode, aligned):
    x = np.ascontiguousarray(x, np.float32)
    rois = np.ascontiguousarray(rois, np.float32)
    idx = np.ascontiguousarray(idx, np.int32)
    oh, ow = (out, out) if isinstance(out, int) else out
    y = np.full((len(rois), x.shape[1], oh, ow), np.nan, np.float32)
    status = emu.emulate_roi_align(
        x.ctypes.data_as(f32p),
        *[ctypes.c_int64(v) for v in x.shape],
        rois.ctypes.data_as(f32p),
        idx.ctypes.data_as(i32p),
        ctypes.c_int64(len(rois)),
        ctypes.c_int32(oh),
        ctypes.c_int32(ow),
        ctypes.c_float(scale),
        ctypes.c_int32(ratio),
        ctypes.c_int32({"avg": 0, "max": 1}[mode]),
        ctypes.c_int32(int(aligned)),
        y.ctypes.data_as(f32p),
        ctypes.c_int32(THREADS),
    )
    assert status == 0
    return y


def _emulate_multi(emu, feats, rois, idx, out, scales, ratio, aligned=False):
    feats = [np.ascontiguousarray(f, np.float32) for f in feats]
    rois = np.ascontiguousarray(rois, np.float32)
    idx = np.ascontiguousarray(idx, np.int32)
    num = len(feats)
    y = np.full((len(rois), feats[0].shape[1], out, out), np.nan, np.float32)
    status = emu.emulate_multi_level(
        (ctypes.c_void_p * num)(*[f.ctypes.data for f in feats]),
        (ctypes.c_int64 * num)(*[f.shape[2] for f in feats]),
        (ctypes.c_int64 * num)(*[f.shape[3] for f in feats]),
        (ctypes.c_float * num)(*scales),
        ctypes.c_int32(num),
        ctypes.c_int64(feats[0].shape[0]),
        ctypes.c_int64(feats[0].shape[1]),
        rois.ctypes.data_as(f32p),
        idx.ctypes.data_as(i32p),
        ctypes.c_int64(len(rois)),
        ctypes.c_int32(out),
        ctypes.c_int32(out),
        ctypes.c_int32(ratio),
        ctypes.c_int32(int(aligned)),
        ctypes.c_float(224),
        ctypes.c_int32(4),
        y.ctypes.data_as(f32p),
        ctypes.c_int32(THREADS),
    )
    assert status == 0
    return y


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_kernel_body_matches_torchvision(emu, aligned, sampling_ratio):
    rng = np.random.default_rng(200)
    scale = 0.25
    x = rng.standard_normal((2, 21, 30, 40)).astype(np.float32)  # 21 channels: uneven chunks
    rois = np.concatenate([random_boxes(rng, 30, (120, 160)), EDGE_BOXES[:6] / 4 / scale])
    idx = rng.integers(0, 2, len(rois))
    boxes = torch.from_numpy(np.concatenate([idx[:, None].astype(np.float32), rois], 1))
    for out in [7, (5, 3)]:
        got = _emulate(emu, x, rois, idx, out, scale, sampling_ratio, "avg", aligned)
        want = torchvision.ops.roi_align(torch.from_numpy(x), boxes, out, scale, sampling_ratio, aligned).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("aligned", [True, False])
def test_kernel_body_max_mode_matches_cpu_op(emu, aligned):
    rng = np.random.default_rng(201)
    x = rng.standard_normal((1, 3, 20, 24)).astype(np.float32)
    rois = np.concatenate([random_boxes(rng, 20, (20, 24)), EDGE_BOXES / 8])
    idx = np.zeros(len(rois), np.int64)
    got = _emulate(emu, x, rois, idx, 4, 1.0, 0, "max", aligned)
    np.testing.assert_allclose(got, roi_align(x, rois, idx, 4, 1.0, 0, "max", aligned), rtol=1e-6, atol=1e-6)


def test_kernel_body_fallback_for_huge_adaptive_grid(emu):
    """A 1500-px box at scale 1 with 7 bins needs 7 x 215 samples per axis: past the 512-entry table."""
    rng = np.random.default_rng(202)
    x = rng.standard_normal((1, 2, 24, 24)).astype(np.float32)
    rois = np.array([[0, 0, 1500, 1500], [3, 4, 9, 900]], np.float32)
    idx = np.zeros(2, np.int64)
    got = _emulate(emu, x, rois, idx, 7, 1.0, 0, "avg", True)
    np.testing.assert_allclose(got, roi_align(x, rois, idx, 7, 1.0, 0, "avg", True), rtol=1e-4, atol=1e-5)


def test_kernel_body_writes_zeros_for_a_bad_batch_index(emu):
    x = np.ones((1, 3, 8, 8), np.float32)
    rois = np.array([[0, 0, 4, 4], [0, 0, 4, 4]], np.float32)
    got = _emulate(emu, x, rois, np.array([0, 7]), 2, 1.0, 2, "avg", True)
    np.testing.assert_array_equal(got[1], 0)
    np.testing.assert_allclose(got[0], 1.0)


@pytest.mark.parametrize("output_size", [7, 14])
def test_kernel_body_multi_level_matches_torchvision(emu, output_size):
    rng = np.random.default_rng(203)
    feats = pyramid(rng, 2, 5, (128, 160))
    rois = boxes_all_levels(rng, 40, (128, 160))
    idx = np.sort(rng.integers(0, 2, len(rois)))
    names = ["p2", "p3", "p4", "p5"]
    pooler = torchvision.ops.MultiScaleRoIAlign(names, output_size, 2)
    want = pooler(
        OrderedDict(zip(names, map(torch.from_numpy, feats), strict=True)),
        [torch.from_numpy(rois[idx == i]) for i in range(2)],
        [(128, 160)] * 2,
    ).numpy()
    got = _emulate_multi(emu, feats, rois, idx, output_size, pooler.scales, 2)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    cpu = multi_scale_roi_align(feats, rois, idx, output_size, pooler.scales, 2)
    np.testing.assert_allclose(got, cpu, rtol=1e-6, atol=1e-6)
