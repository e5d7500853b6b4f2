"""segrt.ops sends numpy arrays to the CPU library and CUDA tensors to the CUDA library.

The CUDA library cannot run here, so the CUDA side is shown by where a call ends up:
with no CUDA library it fails on *that* library (every place searched, the build
command), never on the CPU path. tests/kernels/test_kernels_build.py goes one step
further with a CUDA library compiled by nvcc: the launcher is reached and reports
that there is no GPU.
"""

from __future__ import annotations

import importlib
from typing import ClassVar

import _fake_cuda_tensor as fake
import numpy as np
import pytest

import segrt.ops
from segrt.errors import BackendUnavailableError, InputError
from segrt.ops import native

ops_module = importlib.import_module("segrt.ops.roi_align")  # the module (segrt.ops.roi_align is the function)
cpu = importlib.import_module("segrt.ops._cpu")
cuda = importlib.import_module("segrt.ops._cuda")

X = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
ROIS = np.array([[0, 0, 8, 8], [2, 3, 12, 15]], np.float32)
IDX = np.array([0, 0])
LEVELS = [X, X[:, :, ::2, ::2].copy()]
SCALES = [1 / 4, 1 / 8]


@pytest.fixture
def calls(monkeypatch):
    """Records which binding each op reached (the binding still runs)."""
    seen: list[str] = []
    for module, tag in ((cpu, "cpu"), (cuda, "cuda")):
        for name in ("roi_align", "multi_scale_roi_align"):
            real = getattr(module, name)

            def spy(*args, _real=real, _tag=f"{tag}.{name}", **kwargs):
                seen.append(_tag)
                return _real(*args, **kwargs)

            monkeypatch.setattr(module, name, spy)
    return seen


@pytest.fixture
def no_cuda_library(monkeypatch, tmp_path):
    """Nothing to find for the CUDA library: its variable and both default places point at empty folders."""
    monkeypatch.setenv(native.CUDA_ROI_ALIGN.env_var, str(tmp_path / "env"))
    monkeypatch.setattr(native, "BUILD_DIR", tmp_path / "build")
    monkeypatch.setattr(native, "PACKAGE_LIB_DIR", tmp_path / "pkg")
    cuda._lib.cache_clear()
    yield tmp_path
    cuda._lib.cache_clear()


def test_numpy_runs_on_the_cpu_library(calls):
    y = segrt.ops.roi_align(X, ROIS, IDX, 4, 1.0, 2)
    z = segrt.ops.multi_scale_roi_align(LEVELS, ROIS * 4, IDX, 4, SCALES, 2)
    assert calls == ["cpu.roi_align", "cpu.multi_scale_roi_align"]
    assert isinstance(y, np.ndarray) and y.shape == (2, 3, 4, 4) and np.isfinite(y).all()
    assert isinstance(z, np.ndarray) and z.shape == (2, 3, 4, 4)


def test_cuda_tensor_goes_to_the_cuda_library_not_the_cpu(calls, no_cuda_library):
    x = fake.FakeCudaTensor(X)
    rois, idx = fake.FakeCudaTensor(ROIS), fake.FakeCudaTensor(IDX)
    with pytest.raises(BackendUnavailableError) as err:
        segrt.ops.roi_align(x, rois, idx, 4, 1.0, 2)
    with pytest.raises(BackendUnavailableError):
        segrt.ops.multi_scale_roi_align([fake.FakeCudaTensor(f) for f in LEVELS], rois, idx, 4, SCALES, 2)
    assert calls == ["cuda.roi_align", "cuda.multi_scale_roi_align"]
    text = str(err.value)
    assert "CUDA RoIAlign library libsegrt_roi_align_cuda.so is not built" in text
    for place in ("env", "pkg", "build"):
        assert str(no_cuda_library / place / "libsegrt_roi_align_cuda.so") in text
    assert "-DSEGRT_BUILD_CUDA=ON" in text and "cmake --build build" in text and "SEGRT_ROI_ALIGN_CUDA_LIB" in text


def test_cuda_inputs_are_checked_before_the_library_is_needed(no_cuda_library):
    x = fake.FakeCudaTensor(X)
    rois, idx = fake.FakeCudaTensor(ROIS), fake.FakeCudaTensor(IDX)
    with pytest.raises(InputError, match="rois must be a CUDA tensor on cuda:0"):
        segrt.ops.roi_align(x, ROIS, idx, 4)  # host boxes with device features
    with pytest.raises(InputError, match="rois must be a CUDA tensor on cuda:0"):
        segrt.ops.roi_align(x, fake.FakeCudaTensor(ROIS, "cuda:1"), idx, 4)
    with pytest.raises(InputError, match="float32 or float16"):
        segrt.ops.roi_align(fake.FakeCudaTensor(X.astype(np.float64)), rois, idx, 4)
    with pytest.raises(InputError, match="4-D"):
        segrt.ops.roi_align(fake.FakeCudaTensor(X[0]), rois, idx, 4)
    with pytest.raises(InputError, match="mode"):  # attribute checks are shared by both devices
        segrt.ops.roi_align(x, rois, idx, 4, mode="mean")
    with pytest.raises(InputError, match="consecutive"):
        segrt.ops.multi_scale_roi_align([x, x], rois, idx, 4, [1 / 4, 1 / 16], 2)
    with pytest.raises(InputError, match="same batch size, channel count and dtype"):
        segrt.ops.multi_scale_roi_align([x, fake.FakeCudaTensor(LEVELS[1].astype(np.float16))], rois, idx, 4, SCALES, 2)


def test_other_device_arrays_are_refused_clearly():
    class CupyLike:
        __cuda_array_interface__: ClassVar[dict[str, tuple[int, ...]]] = {"shape": (1, 3, 16, 16)}

    with pytest.raises(InputError, match="torch CUDA tensors"):
        segrt.ops.roi_align(CupyLike(), ROIS, IDX, 4)


def test_the_fake_tensor_offers_only_what_torch_tensors_have():
    """The stand-in keeps to torch.Tensor's contract: same names, same dtype/device text, same method results."""
    torch = pytest.importorskip("torch", reason="needs torch (pip install -e '.[train]')")
    public = {n for n in dir(fake.FakeCudaTensor(X)) if not n.startswith("_")} - {"array"}  # array: its storage
    assert public == set(fake.TENSOR_API)
    for name in fake.TENSOR_API:
        assert hasattr(torch.Tensor, name), name
    real = torch.zeros(2, 3, dtype=torch.float16)
    double = fake.FakeCudaTensor(np.zeros((2, 3), np.float16))
    assert str(real.dtype) == str(double.dtype) and str(real.float().dtype) == str(double.float().dtype)
    assert str(real.int().dtype) == str(double.int().dtype)
    assert tuple(real.new_empty((4, 5)).shape) == double.new_empty((4, 5)).shape
    assert str(real.new_empty((1,)).dtype) == str(double.new_empty((1,)).dtype)
    assert str(torch.device("cuda", 0)) == str(fake.FakeCudaTensor(X).device)
    assert hasattr(torch.cuda, "current_stream") and hasattr(torch.cuda.Stream, "cuda_stream")
    assert ops_module.is_cuda_tensor(fake.FakeCudaTensor(X)) and not ops_module.is_cuda_tensor(real)


def test_the_op_layer_needs_no_torch():
    """segrt.ops runs numpy on the CPU with torch and torchvision unimportable (the runtime never imports them)."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None\n"
        "import numpy as np, segrt.ops\n"
        "y = segrt.ops.roi_align(np.ones((1, 2, 8, 8), np.float32), np.array([[0, 0, 4, 4]], np.float32), [0], 2)\n"
        "print(y.shape, float(y.sum()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["(1,", "2,", "2,", "2)", "8.0"]
