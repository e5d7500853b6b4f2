"""Bad input to the RoIAlign entry points: a clear InputError naming the problem and a fix."""

from __future__ import annotations

import numpy as np
import pytest

import segrt.ops as ra
from segrt.errors import BackendUnavailableError, InputError
from segrt.ops import _cpu, native

X = np.zeros((2, 3, 8, 8), np.float32)
ROIS = np.array([[0, 0, 4, 4], [1, 1, 6, 7]], np.float32)
IDX = np.array([0, 1])
P = [np.zeros((1, 3, 16, 16), np.float32), np.zeros((1, 3, 8, 8), np.float32)]
SCALES = [1 / 4, 1 / 8]


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(x=X[0]), "4-D"),
        (dict(x=X.astype(np.float64)), "float32"),
        (dict(x=X.tolist()), "numpy array"),
        (dict(x=np.zeros((1, 3, 0, 8), np.float32)), "empty spatial size"),
        (dict(rois=ROIS[:, :3]), "[K, 4]"),
        (dict(rois=np.concatenate([IDX[:, None], ROIS], 1)), "[K, 4]"),
        (dict(rois=ROIS.astype(np.int64)), "floating point"),
        (dict(rois=np.array([[0, 0, np.nan, 4], [1, 1, 6, 7]], np.float32)), "not finite"),
        (dict(rois=np.array([[0, 0, 4, 4], [-1, 1, 6, 7]], np.float32)), "negative coordinate"),
        (dict(rois=np.array([[5, 0, 4, 4], [1, 1, 6, 7]], np.float32)), "x2 < x1"),
        (dict(batch_indices=np.array([0, 2])), "outside [0, 2)"),
        (dict(batch_indices=np.array([0, -1])), "outside [0, 2)"),
        (dict(batch_indices=np.array([0.0, 1.0])), "integers"),
        (dict(batch_indices=np.array([0])), "shape [K]"),
        (dict(output_size=0), "at least 1x1"),
        (dict(output_size=(7, 0)), "at least 1x1"),
        (dict(output_size=(7, 7, 7)), "output_size"),
        (dict(spatial_scale=0.0), "spatial_scale"),
        (dict(spatial_scale=float("nan")), "spatial_scale"),
        (dict(sampling_ratio=-1), "sampling_ratio"),
        (dict(mode="mean"), "mode"),
        (dict(threads=0), "threads"),
    ],
)
def test_roi_align_rejects(kwargs, needle):
    args = dict(x=X, rois=ROIS, batch_indices=IDX, output_size=2, spatial_scale=1.0, sampling_ratio=2)
    args.update(kwargs)
    with pytest.raises(InputError) as err:
        ra.roi_align(**args)
    assert needle in str(err.value)
    assert err.value.fix, "every InputError must say how to fix it"


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(features=P[0]), "list"),
        (dict(features=[]), "1 to 8"),
        (dict(features=P * 5), "1 to 8"),
        (dict(features=[P[0], np.zeros((1, 4, 8, 8), np.float32)]), "same batch size and channel count"),
        (dict(features=[P[0], np.zeros((2, 3, 8, 8), np.float32)]), "same batch size and channel count"),
        (dict(features=[P[0], P[1].astype(np.float16)]), "float32"),
        (dict(spatial_scales=[1 / 4]), "one scale per level"),
        (dict(spatial_scales=[1 / 4, 1 / 16]), "consecutive"),
        (dict(spatial_scales=[1 / 8, 1 / 4]), "consecutive"),
        (dict(spatial_scales=[0.3, 0.15]), "consecutive"),
        (dict(spatial_scales=[1 / 4, -1 / 8]), "spatial_scales[1]"),
        (dict(canonical_scale=0), "canonical_scale"),
        (dict(canonical_level=4.5), "canonical_level"),
        (dict(batch_indices=np.array([0, 1])), "outside [0, 1)"),
    ],
)
def test_multi_scale_rejects(kwargs, needle):
    args = dict(
        features=P, rois=ROIS, batch_indices=np.array([0, 0]), output_size=2, spatial_scales=SCALES, sampling_ratio=2
    )
    args.update(kwargs)
    with pytest.raises(InputError) as err:
        ra.multi_scale_roi_align(**args)
    assert needle in str(err.value)


def test_native_layer_rejects_out_of_range_batch_index_itself():
    """The C ABI re-checks what Python validated: no out-of-bounds read even if called directly."""
    import ctypes

    lib = _cpu._lib()
    y = np.zeros((1, 3, 2, 2), np.float32)
    idx = np.array([5], np.int64)
    f32p, i64p = ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_int64)
    status = lib.segrt_roi_align_cpu_f32(
        X.ctypes.data_as(f32p),
        2,
        3,
        8,
        8,
        ROIS.ctypes.data_as(f32p),
        idx.ctypes.data_as(i64p),
        1,
        2,
        2,
        1.0,
        2,
        0,
        1,
        1,
        y.ctypes.data_as(f32p),
    )
    assert status == 2
    assert b"outside [0, 2)" in lib.segrt_roi_align_last_error()


def test_missing_library_says_where_it_looked_and_how_to_build(monkeypatch, tmp_path):
    monkeypatch.setenv("SEGRT_ROI_ALIGN_LIB", str(tmp_path / "env"))
    monkeypatch.setattr(native, "PACKAGE_LIB_DIR", tmp_path / "pkg")
    monkeypatch.setattr(native, "BUILD_DIR", tmp_path / "build")
    _cpu._lib.cache_clear()
    try:
        with pytest.raises(BackendUnavailableError) as err:
            ra.roi_align(X, ROIS, IDX, 2)
    finally:
        _cpu._lib.cache_clear()
    text = str(err.value)
    for place in ("env", "pkg", "build"):
        assert str(tmp_path / place / "libsegrt_roi_align_cpu.so") in text
    assert "pip install -e ." in text and "cmake -S . -B build" in text and "SEGRT_ROI_ALIGN_LIB" in text


def test_env_var_points_at_library(monkeypatch, tmp_path):
    real = native.find_library(native.CPU_ROI_ALIGN)
    monkeypatch.setenv("SEGRT_ROI_ALIGN_LIB", str(real.parent))
    assert native.search_paths(native.CPU_ROI_ALIGN)[0] == real
    monkeypatch.setenv("SEGRT_ROI_ALIGN_LIB", str(tmp_path / "nowhere.so"))
    assert native.search_paths(native.CPU_ROI_ALIGN)[0] == tmp_path / "nowhere.so"
