"""The TensorRT/CUDA contracts the execution double enforces (issue 20), one test per defect it caught.

Each test drives segrt's real code through ``tests/doubles`` (see their docstrings for the rule
and its source in TensorRT's headers or CUDA's documentation). The oracle for results is ONNX
Runtime on the same ONNX file; what is checked beyond results is that segrt never does what real
TensorRT or CUDA leave undefined, deprecate or refuse (the ``trt_double`` fixture fails a test that
leaves a contract violation behind). Nothing here is a TensorRT result.
"""

from __future__ import annotations

import numpy as np
import pytest

import segrt
from segrt.artifact import engine_file as ef
from segrt.backends import cuda_rt
from segrt.backends.onnxrt import OnnxRuntimeBackend
from segrt.backends.tensorrt import TensorRTBackend
from segrt.errors import ArtifactError
from segrt.export.to_engine import onnx_to_engine
from tests.doubles import cudart_double, tensorrt_double
from tests.sdk.test_tensorrt_double import _fake_cuda_tensor, _image

X2 = np.random.default_rng(2).normal(size=(2, 1, 76, 76)).astype(np.float32)
X1 = np.random.default_rng(1).normal(size=(1, 1, 76, 76)).astype(np.float32)


@pytest.fixture
def unet_engine(trt_double, unet_onnx, tmp_path):
    return onnx_to_engine(unet_onnx, tmp_path / "unet.engine", max_batch=2, max_size=108)


def _reference(engine):
    onnx_path = ef.read_engine_metadata(engine)["engine"]["build"]["onnx"]
    return OnnxRuntimeBackend(onnx_path)


# ----------------------------------------------------------------------------- defect 1: one logger per process


def test_builds_and_backends_share_one_process_logger_and_errors_name_their_model(trt_double, unet_onnx, tmp_path):
    """Two builds and two open backends, then a damaged plan: TensorRT's reason reaches the exception
    through that engine's error recorder, prefixed with its file name, and no second logger was given."""
    first = onnx_to_engine(unet_onnx, tmp_path / "first.engine", max_batch=2, max_size=108)
    second = onnx_to_engine(unet_onnx, tmp_path / "second.engine", max_batch=1, max_size=92)
    meta, plan = ef.read_engine_file(first)
    junk = ef.write_engine_file(tmp_path / "junk.engine", meta, b"not a plan" + bytes(plan[10:]))
    with TensorRTBackend(first) as a, TensorRTBackend(second) as b:
        with pytest.raises(ArtifactError, match=r"junk\.engine: The engine plan file is not compatible") as info:
            TensorRTBackend(junk)
        assert "first.engine:" not in str(info.value) and "second.engine:" not in str(info.value)
        np.testing.assert_allclose(a.run({"image": X1})["probs"], b.run({"image": X1})["probs"])
    assert not cudart_double.STATE.violations


# ----------------------------------------------------------------------------- defect 2: graphs and changed state


def test_a_graph_is_not_replayed_after_the_context_switched_shapes_and_back(unet_engine):
    ref = _reference(unet_engine)
    with TensorRTBackend(unet_engine, use_cuda_graph=True) as be:
        for x in (X2, X2, X1, X2, X2, X2):  # the second X2 run replays; after the switch back no old graph
            np.testing.assert_allclose(be.run({"image": x})["probs"], ref.run({"image": x})["probs"], atol=1e-5)
        assert cudart_double.STATE.counts["graph_launch"] >= 2  # graphs are still used where valid


def _aligned_fake_cuda(torch, shape, dtype):
    """A fake CUDA tensor (host memory = the double's device memory) at a 256-byte aligned address."""
    n = int(np.prod(shape))
    item = torch.empty(0, dtype=dtype).element_size()
    storage = torch.zeros(n + 256 // item, dtype=dtype)
    start = (-storage.data_ptr() % 256) // item
    return _fake_cuda_tensor(torch, storage[start : start + n].view(shape))


@pytest.fixture
def torch_on_the_double(monkeypatch):
    """torch with its CUDA stream calls and allocations answered on the host (the double's device memory)."""
    torch = pytest.importorskip("torch", reason="needs torch (pip install -e '.[train]')")

    class _Stream:
        def __init__(self, *args, **kwargs) -> None:
            pass

        def wait_stream(self, other) -> None:
            pass

        def synchronize(self) -> None:
            pass

    real_empty = torch.empty

    def empty(*shape, dtype=None, device=None, **kwargs):
        if device is not None and "cuda" in str(device):
            dims = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
            return _aligned_fake_cuda(torch, dims, dtype or torch.float32)
        return real_empty(*shape, dtype=dtype, device=device, **kwargs)

    monkeypatch.setattr(torch.cuda, "ExternalStream", _Stream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda *a, **k: _Stream())
    monkeypatch.setattr(torch, "empty", empty)
    monkeypatch.setattr(torch.Tensor, "record_stream", lambda self, stream: None)
    return torch


def test_run_after_run_torch_does_not_replay_a_graph_captured_on_other_addresses(unet_engine, torch_on_the_double):
    torch = torch_on_the_double
    ref = _reference(unet_engine).run({"image": X2})["probs"]
    with TensorRTBackend(unet_engine, use_cuda_graph=True) as be:
        be.run({"image": X2})
        be.run({"image": X2})  # a graph exists for this context now
        x = _aligned_fake_cuda(torch, X2.shape, torch.float32)
        x.copy_(torch.from_numpy(X2))
        out = be.run_torch({"image": x})["probs"]  # binds the tensors' own addresses
        np.testing.assert_allclose(be.run({"image": X2})["probs"], ref, atol=1e-5)
        be._pool.created[0].stream.synchronize()
        np.testing.assert_allclose(out.numpy(), ref, atol=1e-5)


# ----------------------------------------------------------------------------- defect 3: destroy after synchronize


def test_closing_right_after_run_torch_waits_for_the_queued_inference(unet_engine, torch_on_the_double):
    torch = torch_on_the_double
    x = _aligned_fake_cuda(torch, X1.shape, torch.float32)
    x.copy_(torch.from_numpy(X1))
    be = TensorRTBackend(unet_engine)
    out = be.run_torch({"image": x})["probs"]  # queued, not run: nothing synchronized the host
    be.close()  # frees the stream and the context: must wait for the work first
    np.testing.assert_allclose(out.numpy(), _reference(unet_engine).run({"image": X1})["probs"], atol=1e-5)
    assert cudart_double.pending_work() == 0


# ----------------------------------------------------------------------------- defect 4: failed capture


def test_a_failed_capture_leaves_no_cuda_error_for_the_next_enqueue(unet_engine):
    ref = _reference(unet_engine).run({"image": X1})["probs"]
    with TensorRTBackend(unet_engine, use_cuda_graph=True) as be:
        cudart_double.STATE.fail["cudaStreamEndCapture"] = 1
        with pytest.warns(UserWarning, match="CUDA graph capture failed"):
            for _ in range(2):  # the capture happens on the first or second call with these shapes
                be.run({"image": X1})
        assert cudart_double.STATE.last_error == 0  # read with cudaGetLastError, as trtexec does
        assert not cudart_double.STATE.graphs  # nothing half-captured is kept
        np.testing.assert_allclose(be.run({"image": X1})["probs"], ref, atol=1e-5)  # the same context still runs


# ----------------------------------------------------------------------------- defect 7: native handles


def test_stream_handles_go_through_the_cuda_bindings_accessor(unet_engine):
    with TensorRTBackend(unet_engine, use_cuda_graph=True) as be:
        for _ in range(3):
            be.run({"image": X1})
    assert not cudart_double.STATE.violations  # the double's handles refuse int()


def test_native_handle_of_a_real_cuda_bindings_stream_without_int():
    runtime = pytest.importorskip("cuda.bindings.runtime", reason="needs cuda (pip install -e '.[dev]')")
    pytest.importorskip("cuda.bindings.utils", reason="needs cuda (pip install -e '.[dev]')")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cuda_rt.native_handle(runtime.cudaStream_t(0x1234)) == 0x1234


# ----------------------------------------------------------------------------- defect 8: both releases execute


@pytest.mark.parametrize("trt_double", tensorrt_double.VERSIONS, indirect=True)
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_onnx_to_engine_and_predict_under_each_tensorrt_release(trt_double, unet_onnx, tmp_path, precision):
    """The build path each release takes (10: BuilderFlag.FP16; 11: strongly typed, fp16 through the
    converted ONNX) and segrt.load(engine).predict; the double computes in fp32 from the ONNX it was
    given, so the fp16 engine is compared with ONNX Runtime on the converted fp16 ONNX."""
    fp16_onnx = tmp_path / "unet.fp16.onnx"
    engine = onnx_to_engine(
        unet_onnx,
        tmp_path / "unet.engine",
        max_batch=2,
        max_size=108,
        precision=precision,
        save_fp16_onnx=fp16_onnx if precision == "fp16" else None,
    )
    eng = ef.read_engine_metadata(engine)["engine"]
    assert eng["tensorrt_version"] == trt_double.__version__
    expected_mode = {"fp32": None, "fp16": "builder_flag" if trt_double.__version__.startswith("10.") else "fp16_onnx"}
    assert eng["fp16_mode"] == expected_mode[precision]
    ref_path = fp16_onnx if eng["fp16_mode"] == "fp16_onnx" else unet_onnx
    image = _image(90, 130)
    got = segrt.load(engine).predict(image)
    ref = OnnxRuntimeBackend(ref_path).run
    want = segrt.load(unet_onnx)
    want.backend.run = ref  # the same predictor around the ONNX the engine was built from
    np.testing.assert_allclose(got.probs, want.predict(image).probs, atol=1e-5)


@pytest.mark.parametrize("ci, outcome", [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_contract_bindings_that_cannot_be_fetched_fail_ci_and_skip_elsewhere(monkeypatch, ci, outcome):
    from tests.conftest import real_bindings_or_skip
    from tests.doubles import trt_api

    def unreachable(version):
        raise trt_api.Unavailable(f"pip download tensorrt-cu12-bindings=={version} failed: no network")

    monkeypatch.setattr(trt_api, "describe", unreachable)
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="no network"):
        real_bindings_or_skip()
