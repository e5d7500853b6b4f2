"""TensorRT backend: the checks that need no GPU run everywhere; real engines only where TensorRT and a GPU exist."""

from __future__ import annotations

import importlib
import importlib.util
import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import segrt
from segrt.artifact import engine_file as ef
from segrt.backends import cuda_rt
from segrt.backends import tensorrt as trt_backend
from segrt.errors import ArtifactError, BackendUnavailableError, InputError

HAS_TRT = importlib.util.find_spec("tensorrt") is not None
HAS_CUDA_PYTHON = importlib.util.find_spec("cuda") is not None and importlib.util.find_spec("cuda.bindings") is not None


def engine_meta(**eng) -> dict:
    base = {
        "tensorrt_version": "10.8.0.43",
        "compute_capability": [8, 9],
        "gpu_name": "NVIDIA L4",
        "precision": "fp32",
        "plugin": None,
        "build": {
            "onnx": "m/unet.onnx",
            "engine": "m/unet.engine",
            "precision": "fp32",
            "max_size": 572,
            "max_batch": 4,
        },
    }
    base.update(eng)
    return {
        "format_version": 1,
        "kind": "unet",
        "class_names": ["bg", "fg"],
        "input_channels": 1,
        "normalization": {"scale": 1.0, "mean": [0.0], "std": [1.0]},
        "size_min": 188,
        "size_step": 16,
        "border": 92,
        "tile_size": 572,
        "input_name": "image",
        "padding": "valid",
        "engine": base,
    }


# ----------------------------------------------------------------------------- imports and availability


def test_sdk_and_the_backend_modules_import_without_loading_tensorrt_or_cuda():
    """Importing must not need TensorRT or a GPU: they are loaded only when an engine is opened or built."""
    code = (
        "import sys, segrt, segrt.backends.tensorrt, segrt.backends.cuda_rt, segrt.export.to_engine; "
        "from segrt.artifact.formats import format_for_path; "
        "assert format_for_path('m.engine').backend_class() is segrt.backends.tensorrt.TensorRTBackend; "
        "bad = [m for m in ('tensorrt', 'cuda.bindings', 'torch') if m in sys.modules]; "
        "assert not bad, bad"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(HAS_TRT, reason="checks the message shown when TensorRT is NOT installed")
def test_constructing_without_tensorrt_says_what_to_install(tmp_path):
    path = ef.write_engine_file(tmp_path / "m.engine", engine_meta(), b"\x01" * 64)
    with pytest.raises(BackendUnavailableError, match="TensorRT's Python package is not installed") as info:
        trt_backend.TensorRTBackend(path)
    assert "pip install" in info.value.fix and "cuda-python" in info.value.fix
    with pytest.raises(BackendUnavailableError):  # the same through the public entry point
        segrt.load(path)


def test_a_damaged_engine_is_reported_before_tensorrt_is_needed(tmp_path):
    data = ef.encode_engine_file(engine_meta(), b"\x02" * 100)
    path = tmp_path / "cut.engine"
    path.write_bytes(data[:-10])
    with pytest.raises(ArtifactError, match="truncated"):
        trt_backend.TensorRTBackend(path)


def test_missing_cuda_python_is_named(monkeypatch):
    for name in ("cuda", "cuda.bindings", "cuda.cudart"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import` fail as if not installed
    with pytest.raises(BackendUnavailableError, match="cuda-python is not installed") as info:
        cuda_rt.import_cudart()
    assert "pip install" in info.value.fix


@pytest.mark.skipif(not HAS_CUDA_PYTHON, reason="cuda-python is not installed")
def test_no_gpu_is_a_clear_backend_unavailable_error():
    cudart = cuda_rt.import_cudart()
    err, count = cudart.cudaGetDeviceCount()
    if int(err) == 0 and count > 0:
        pytest.skip("this machine has a GPU")
    with pytest.raises(BackendUnavailableError, match=r"no NVIDIA driver|no usable NVIDIA GPU") as info:
        cuda_rt.device_info(0)
    assert "ONNX Runtime" in info.value.fix


@pytest.mark.skipif(not HAS_CUDA_PYTHON, reason="cuda-python is not installed")
def test_cuda_wrappers_pass_argument_types_cuda_python_accepts():
    """Without a driver every call returns an error code, but only after cuda-python has converted
    our arguments: a wrong type would raise TypeError here instead of the segrt error."""
    cudart = cuda_rt.import_cudart()
    err, count = cudart.cudaGetDeviceCount()
    if int(err) == 0 and count > 0:
        pytest.skip("this machine has a GPU (the real calls are exercised by the tensorrt tests)")
    for make in (
        lambda: cuda_rt.DeviceBuffer(64),
        lambda: cuda_rt.PinnedBuffer((2, 3), np.float16),
        cuda_rt.Stream,
        lambda: cuda_rt.set_device(0),
    ):
        with pytest.raises(BackendUnavailableError):
            make()
    stream = object.__new__(cuda_rt.Stream)  # a stream object around the default-stream handle
    stream._cudart, stream.handle = cudart, cudart.cudaStream_t(0)
    host = np.zeros(4, np.float32)
    for call in (
        lambda: stream.copy_htod(0, host),
        lambda: stream.copy_dtoh(host, 0),
        lambda: stream.copy_dtod(0, 0, 16),
        stream.synchronize,
        lambda: cuda_rt.CudaGraph().capture(stream, lambda: None),
    ):
        with pytest.raises(BackendUnavailableError):
            call()


def test_cuda_error_codes_are_translated():
    if not HAS_CUDA_PYTHON:
        pytest.skip("cuda-python is not installed")
    cudart = cuda_rt.import_cudart()
    with pytest.raises(cuda_rt.CudaError, match="cudaErrorMemoryAllocation"):
        cuda_rt.check((cudart.cudaError_t.cudaErrorMemoryAllocation, None), "cudaMalloc(1 TB)")
    with pytest.raises(BackendUnavailableError, match="cudaErrorNoDevice"):
        cuda_rt.check((cudart.cudaError_t.cudaErrorNoDevice,), "cudaSetDevice")
    assert cuda_rt.check((cudart.cudaError_t.cudaSuccess, 7), "x") == 7


# ----------------------------------------------------------------------------- version / GPU checks


def test_engine_from_another_tensorrt_version_is_refused_with_the_rebuild_command():
    with pytest.raises(ArtifactError) as info:
        trt_backend.check_engine_compatibility(
            engine_meta(),
            tensorrt_version="10.9.0.34",
            compute_capability=(8, 9),
            gpu_name="NVIDIA L4",
            path="m/unet.engine",
        )
    msg = str(info.value)
    assert "TensorRT 10.8.0.43" in msg and "TensorRT 10.9.0.34" in msg
    cmd = info.value.fix.split(": ", 1)[1].split("   (")[0]
    assert shlex.split(cmd)[:6] == ["python", "-m", "segrt.export.to_engine", "m/unet.onnx", "-o", "m/unet.engine"]


def test_engine_for_another_gpu_architecture_is_refused():
    with pytest.raises(ArtifactError, match=r"compute capability 8\.9.*compute capability 9\.0") as info:
        trt_backend.check_engine_compatibility(
            engine_meta(),
            tensorrt_version="10.8.0.43",
            compute_capability=(9, 0),
            gpu_name="NVIDIA H100 80GB HBM3",
            path="m/unet.engine",
        )
    assert "rebuild it on this GPU" in info.value.fix and "segrt.export.to_engine" in info.value.fix


def test_same_architecture_other_gpu_only_warns_and_exact_match_is_silent():
    notes = trt_backend.check_engine_compatibility(
        engine_meta(),
        tensorrt_version="10.8.0.43",
        compute_capability=(8, 9),
        gpu_name="NVIDIA RTX 4090",
        path="m/unet.engine",
    )
    assert len(notes) == 1 and "NVIDIA L4" in notes[0] and "RTX 4090" in notes[0]
    assert (
        trt_backend.check_engine_compatibility(
            engine_meta(), tensorrt_version="10.8.0.43", compute_capability=(8, 9), gpu_name="NVIDIA L4", path="x"
        )
        == []
    )


# ----------------------------------------------------------------------------- input shapes

PROFILE = ((1, 1, 188, 188), (4, 1, 572, 572), (4, 1, 572, 572))


def test_shapes_inside_the_profile_on_the_valid_grid_pass():
    for shape in [(1, 1, 188, 188), (4, 1, 572, 380), (2, 1, 204, 572)]:
        trt_backend.check_input_shape("image", shape, PROFILE, (188, 16))


def test_out_of_profile_shape_names_the_allowed_range():
    with pytest.raises(InputError, match=r"dim 2: 588 not in 188\.\.572") as info:
        trt_backend.check_input_shape(
            "image", (1, 1, 588, 572), PROFILE, (188, 16), rebuild_hint="python -m segrt.export.to_engine m.onnx"
        )
    assert "segrt.export.to_engine" in info.value.fix
    with pytest.raises(InputError, match=r"dim 0: 5 not in 1\.\.4"):
        trt_backend.check_input_shape("image", (5, 1, 572, 572), PROFILE)
    with pytest.raises(InputError, match="rank 4"):
        trt_backend.check_input_shape("image", (1, 572, 572), PROFILE)


def test_off_grid_unet_size_names_the_nearest_valid_sizes():
    with pytest.raises(InputError, match=r"size 200 on axis 3 .* nearest: 188, 204"):
        trt_backend.check_input_shape("image", (1, 1, 188, 200), PROFILE, (188, 16))


# ----------------------------------------------------------------------------- context pool


def test_context_pool_lends_each_context_to_one_thread_at_a_time():
    made, active, peak, lock = [], [0], [0], threading.Lock()

    def factory():
        made.append(object())
        return made[-1]

    pool = trt_backend.ContextPool(factory, size=2)
    users: dict[int, int] = {}

    def work():
        slot = pool.acquire()
        with lock:
            assert id(slot) not in users  # never lent twice at once
            users[id(slot)] = 1
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.02)
        with lock:
            active[0] -= 1
            del users[id(slot)]
        pool.release(slot)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 2 and peak[0] == 2


def test_context_pool_gives_back_the_place_when_creation_fails():
    calls = []

    def factory():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("out of memory")
        return "ctx"

    pool = trt_backend.ContextPool(factory, size=1)
    with pytest.raises(RuntimeError):
        pool.acquire()
    assert pool.acquire() == "ctx"
    with pytest.raises(InputError):
        trt_backend.ContextPool(factory, size=0)


def test_a_creation_failure_wakes_a_thread_waiting_for_a_context():
    """Thread A creates the only context and fails while thread B waits: B must not wait forever."""
    started, fail = threading.Event(), threading.Event()

    def factory():
        if not started.is_set():
            started.set()
            fail.wait(5)
            raise RuntimeError("out of memory")
        return "ctx"

    pool = trt_backend.ContextPool(factory, size=1)
    results: dict[str, object] = {}

    def creator():
        try:
            pool.acquire()
        except RuntimeError as exc:
            results["a"] = exc

    def waiter():
        results["b"] = pool.acquire()

    a = threading.Thread(target=creator, daemon=True)
    a.start()
    started.wait(5)
    b = threading.Thread(target=waiter, daemon=True)
    b.start()
    time.sleep(0.05)  # B is waiting now
    fail.set()
    a.join(5)
    b.join(5)
    assert isinstance(results.get("a"), RuntimeError)
    assert not b.is_alive() and results.get("b") == "ctx"


class _Closable:
    def __init__(self):
        self.closed = False

    def close(self):
        self.closed = True


def test_closing_the_pool_frees_idle_slots_now_and_lent_ones_on_release():
    pool = trt_backend.ContextPool(_Closable, size=2)
    lent, idle = pool.acquire(), pool.acquire()
    pool.release(idle)
    pool.close()
    assert idle.closed and not lent.closed  # a running call keeps its context
    pool.release(lent)
    assert lent.closed
    with pytest.raises(trt_backend.PoolClosedError, match="was closed"):
        pool.acquire()


def test_threads_waiting_for_a_context_fail_clearly_when_the_pool_closes():
    pool = trt_backend.ContextPool(_Closable, size=1)
    held = pool.acquire()
    errors = []

    def waiter():
        try:
            pool.acquire()
        except trt_backend.PoolClosedError as exc:
            errors.append(exc)

    t = threading.Thread(target=waiter, daemon=True)
    t.start()
    time.sleep(0.05)
    pool.close()
    t.join(5)
    assert not t.is_alive() and len(errors) == 1
    pool.release(held)
    assert held.closed


def test_alignment_rule():
    assert trt_backend.is_aligned(0x7F0000000100) and not trt_backend.is_aligned(0x7F0000000104)


# ----------------------------------------------------------------------------- plugins


def test_missing_plugin_library_names_the_library_and_ops(tmp_path, monkeypatch):
    plugin = {
        "library": "libsegrt_trt_plugins.so",
        "version": "1",
        "namespace": "segrt",
        "ops": ["SegrtRoiAlign", "SegrtMultiLevelRoiAlign"],
    }
    try:
        plugins = importlib.import_module("segrt.ops.plugins")
    except ImportError:
        plugins = None
    if plugins is not None:
        monkeypatch.setenv("SEGRT_PLUGIN_PATH", str(tmp_path / "nowhere"))
        try:
            plugins.find_plugin_library(extra_dirs=(tmp_path,))
            pytest.skip("a built plugin library is installed in the package, so nothing is missing")
        except BackendUnavailableError:
            pass
    with pytest.raises(BackendUnavailableError, match=r"libsegrt_trt_plugins\.so") as info:
        trt_backend.load_engine_plugins(None, plugin, extra_dirs=[tmp_path])
    assert "SegrtMultiLevelRoiAlign" in str(info.value)


def test_no_plugin_needed_means_nothing_is_loaded():
    assert trt_backend.load_engine_plugins(None, None, extra_dirs=[]) is None


# ----------------------------------------------------------------------------- TensorRT + GPU


@pytest.fixture
def two_layer_engine(tmp_path):
    pytest.importorskip("tensorrt", reason="needs TensorRT and a CUDA GPU (pip install -e '.[gpu]' on a GPU machine)")
    from segrt.export.to_engine import onnx_to_engine
    from tests.export.test_to_engine import conv_relu_model

    onnx_path = conv_relu_model(tmp_path / "m.onnx")
    return onnx_path, onnx_to_engine(onnx_path, max_batch=2, workspace_gib=1)


@pytest.mark.tensorrt
def test_cuda_graph_replay_equals_the_plain_run(two_layer_engine):
    from segrt.backends.tensorrt import TensorRTBackend

    _, engine = two_layer_engine
    x = np.random.default_rng(0).normal(size=(1, 2, 64, 64)).astype(np.float32)
    with TensorRTBackend(engine) as plain, TensorRTBackend(engine, use_cuda_graph=True) as graphed:
        ref = plain.run({"image": x})["probs"]
        for _ in range(3):  # first call captures, later ones replay
            np.testing.assert_array_equal(graphed.run({"image": x})["probs"], ref)
        y = x[:, :, :32, :48].copy()  # a new shape captures its own graph
        ref_y = plain.run({"image": y})["probs"]
        for _ in range(3):  # alternating shapes replay each shape's graph after a switch
            np.testing.assert_array_equal(graphed.run({"image": y})["probs"], ref_y)
            np.testing.assert_array_equal(graphed.run({"image": x})["probs"], ref)


@pytest.mark.tensorrt
def test_threads_share_a_pool_of_contexts(two_layer_engine):
    from segrt.backends.onnxrt import OnnxRuntimeBackend
    from segrt.backends.tensorrt import TensorRTBackend

    onnx_path, engine = two_layer_engine
    ort_be = OnnxRuntimeBackend(onnx_path)
    xs = [np.random.default_rng(i).normal(size=(1, 2, 16 + 8 * (i % 3), 24)).astype(np.float32) for i in range(12)]
    results = [None] * len(xs)
    with TensorRTBackend(engine, contexts=3) as be:

        def work(i):
            results[i] = be.run({"image": xs[i]})["probs"]

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for x, got in zip(xs, results, strict=True):
        np.testing.assert_allclose(got, ort_be.run({"image": x})["probs"], atol=1e-3)


@pytest.mark.tensorrt
def test_torch_cuda_tensors_are_used_in_place(two_layer_engine):
    torch = pytest.importorskip("torch", reason="needs torch (pip install -e '.[train]')")
    from segrt.backends.tensorrt import TensorRTBackend

    _, engine = two_layer_engine
    x = torch.randn(2, 2, 32, 32, device="cuda")
    with TensorRTBackend(engine) as be:
        via_numpy = be.run({"image": x.cpu().numpy()})["probs"]
        via_torch = be.run_torch({"image": x})["probs"]
        assert via_torch.is_cuda
        np.testing.assert_allclose(via_torch.cpu().numpy(), via_numpy, atol=1e-5)
        np.testing.assert_allclose(be.run({"image": x})["probs"], via_numpy, atol=1e-5)


@pytest.mark.tensorrt
def test_engine_with_a_foreign_version_is_refused_on_load(two_layer_engine, tmp_path):
    from segrt.backends.tensorrt import TensorRTBackend

    _, engine = two_layer_engine
    meta, plan = ef.read_engine_file(engine)
    meta["engine"]["tensorrt_version"] = "9.0.0.0"
    forged = ef.write_engine_file(tmp_path / "old.engine", meta, plan)
    with pytest.raises(ArtifactError, match=r"TensorRT 9\.0\.0\.0"):
        TensorRTBackend(forged)
