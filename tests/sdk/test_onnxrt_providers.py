"""ONNX Runtime execution-provider selection (CPU default, "auto", explicit lists with options)."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from segrt.artifact import metadata as md
from segrt.backends import onnxrt
from segrt.backends.onnxrt import OnnxRuntimeBackend, resolve_providers
from segrt.errors import BackendUnavailableError, InputError

ALL = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
CPU_ONLY_ORT = "CUDAExecutionProvider" not in ort.get_available_providers()


def names(resolved):
    return [n for n, _ in resolved[0]]


def test_default_is_cpu_only_whatever_is_available():
    assert names(resolve_providers(None, ALL)) == ["CPUExecutionProvider"]
    assert names(resolve_providers("cpu", ALL)) == ["CPUExecutionProvider"]


@pytest.mark.parametrize(
    "available,expected",
    [
        (ALL, ALL),
        (["CUDAExecutionProvider", "CPUExecutionProvider"], ["CUDAExecutionProvider", "CPUExecutionProvider"]),
        (["AzureExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"]),
    ],
)
def test_auto_takes_the_best_available_in_order(available, expected):
    resolved, auto = resolve_providers("auto", available)
    assert auto and [n for n, _ in resolved] == expected


def test_gpu_providers_get_device_and_cache_defaults_that_explicit_options_override(tmp_path):
    resolved, _ = resolve_providers(
        [("tensorrt", {"trt_fp16_enable": True}), ("cuda", {"device_id": 1}), "cpu"],
        ALL,
        device_id=0,
        cache_dir=tmp_path,
    )
    opts = dict(resolved)
    assert opts["TensorrtExecutionProvider"] == {
        "device_id": 0,
        "trt_fp16_enable": True,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(tmp_path),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(tmp_path),
    }
    assert opts["CUDAExecutionProvider"] == {"device_id": 1}
    assert opts["CPUExecutionProvider"] == {}
    assert [n for n, _ in resolved] == ALL  # the caller's order is kept


def test_an_explicit_provider_this_build_lacks_is_an_error_naming_the_package():
    with pytest.raises(BackendUnavailableError, match="has no CUDAExecutionProvider") as info:
        resolve_providers(["cuda", "cpu"], ["CPUExecutionProvider"])
    assert "onnxruntime-gpu" in info.value.fix


@pytest.mark.parametrize(
    "bad,match",
    [
        (["gpu"], "unknown execution provider"),
        (["cuda", "CUDAExecutionProvider"], "listed twice"),
        ([("cuda", "device 0")], "cannot read"),
    ],
)
def test_malformed_provider_lists_are_input_errors(bad, match):
    with pytest.raises(InputError, match=match):
        resolve_providers(bad, ALL)


@pytest.fixture
def tiny_model(tmp_path):
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3])
    y = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3])
    graph = helper.make_graph([helper.make_node("Softmax", ["image"], ["probs"], axis=1)], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(
        model,
        {
            md.METADATA_KEY: md.encode(
                {
                    "kind": "unet",
                    "class_names": ["a", "b", "c"],
                    "input_channels": 3,
                    "normalization": {"scale": 1.0, "mean": [0, 0, 0], "std": [1, 1, 1]},
                    "padding": "same",
                    "border": 0,
                    "size_min": 8,
                    "size_step": 8,
                    "tile_size": 64,
                }
            )
        },
    )
    path = tmp_path / "tiny.onnx"
    onnx.save(model, str(path))
    return path


def test_real_session_auto_and_default_agree(tiny_model):
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    default = OnnxRuntimeBackend(tiny_model)
    auto = OnnxRuntimeBackend(tiny_model, providers="auto")
    assert default.providers == ("CPUExecutionProvider",)
    if CPU_ONLY_ORT:
        assert auto.providers == ("CPUExecutionProvider",)
    e = np.exp(x - x.max(1, keepdims=True))
    np.testing.assert_allclose(default.run({"image": x})["probs"], e / e.sum(1, keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(
        auto.run({"image": x})["probs"], default.run({"image": x})["probs"], rtol=1e-5, atol=1e-6
    )


@pytest.mark.skipif(not CPU_ONLY_ORT, reason="this onnxruntime has the CUDA provider")
def test_real_session_explicit_cuda_on_a_cpu_build_is_refused(tiny_model):
    with pytest.raises(BackendUnavailableError, match=r"onnxruntime .* has no CUDAExecutionProvider"):
        OnnxRuntimeBackend(tiny_model, providers=["cuda", "cpu"])


@pytest.mark.skipif(not CPU_ONLY_ORT, reason="this onnxruntime has the CUDA provider")
def test_a_provider_onnxruntime_silently_drops_is_detected(tiny_model, monkeypatch):
    """ONNX Runtime falls back to CPU when a GPU provider cannot start (missing CUDA/cuDNN libraries).

    Here the CPU-only build is told CUDA is available, so the real InferenceSession drops it
    exactly as a GPU build with broken CUDA libraries would.
    """
    monkeypatch.setattr(
        onnxrt.ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # onnxruntime's own warning about the provider
        with pytest.raises(BackendUnavailableError, match="could not start CUDAExecutionProvider") as info:
            OnnxRuntimeBackend(tiny_model, providers=["cuda", "cpu"])
    assert "cuDNN" in info.value.fix
    with pytest.warns(UserWarning, match="could not start CUDAExecutionProvider"):
        backend = OnnxRuntimeBackend(tiny_model, providers="auto")
    assert backend.providers == ("CPUExecutionProvider",)


@pytest.mark.gpu
def test_cuda_provider_matches_cpu_on_a_gpu_machine(tiny_model):
    if CPU_ONLY_ORT:
        pytest.skip("needs onnxruntime-gpu (this onnxruntime has no CUDAExecutionProvider)")
    x = np.random.default_rng(1).normal(size=(8, 3)).astype(np.float32)
    gpu = OnnxRuntimeBackend(tiny_model, providers=["cuda", "cpu"])
    assert gpu.providers[0] == "CUDAExecutionProvider"
    np.testing.assert_allclose(
        gpu.run({"image": x})["probs"], OnnxRuntimeBackend(tiny_model).run({"image": x})["probs"], rtol=1e-5, atol=1e-6
    )
