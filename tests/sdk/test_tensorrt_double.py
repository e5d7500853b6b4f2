"""The TensorRT path end to end on the CPU: segrt's builder and backend driven by the execution double.

``tests/doubles`` stands in for TensorRT and the CUDA runtime (ONNX Runtime executes the
graph on host memory; see ``tensorrt_double``'s docstring). What these tests prove is the
orchestration: engine build calls and file header, loading and refusals, plugin loading,
profiles and shapes, buffers, addresses, streams, CUDA graphs, the output allocator and
the context pool. The oracle is the ONNX Runtime backend on the same ONNX file. Nothing
here says anything about TensorRT's kernels, precision or speed.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from onnx import TensorProto, helper

import segrt
from segrt.artifact import engine_file as ef
from segrt.artifact import metadata as md
from segrt.backends.onnxrt import OnnxRuntimeBackend
from segrt.backends.tensorrt import PoolClosedError, TensorRTBackend
from segrt.errors import ArtifactError, BackendUnavailableError, InputError
from segrt.export.to_engine import onnx_to_engine
from segrt.unet.predictor import UNetPredictor
from tests.doubles import cudart_double


@pytest.fixture
def unet_engine(trt_double, unet_onnx, tmp_path):
    return onnx_to_engine(unet_onnx, tmp_path / "unet.engine", max_batch=2, max_size=108)


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)


# ----------------------------------------------------------------------------- build, header, load


def test_unet_engine_file_carries_the_build_and_predicts_like_onnxruntime(unet_engine, unet_onnx):
    meta, plan = ef.read_engine_file(unet_engine)
    eng = meta["engine"]
    assert eng["tensorrt_version"] == "10.13.3.9" and eng["gpu_name"] == "segrt CPU test double (no GPU)"
    lo, _opt, hi = eng["profile"]["image"]
    assert hi[0] == 2 and hi[2] == hi[3] <= 108 and lo[2] == meta["size_min"]
    assert len(plan) > 0 and eng["build"]["max_batch"] == 2
    ref = segrt.load(unet_onnx)
    with segrt.load(unet_engine).backend as backend:
        assert isinstance(backend, TensorRTBackend)
    got = segrt.load(unet_engine)
    for hw in [(50, 70), (130, 90)]:  # several tiles, a remainder batch
        a, b = got.predict(_image(*hw)), ref.predict(_image(*hw))
        np.testing.assert_allclose(a.probs, b.probs, atol=1e-5)
        np.testing.assert_array_equal(a.instances, b.instances)


def test_unet_predictor_follows_the_engine_profile(unet_engine, unet_onnx):
    """An engine built with max batch 2 and min size above the model's smallest valid size still
    predicts every image: the predictor takes both limits from the profile."""
    engine2 = onnx_to_engine(unet_onnx, unet_engine.with_name("big_min.engine"), max_batch=2, max_size=108, min_size=60)
    for path in (unet_engine, engine2):
        predictor = UNetPredictor(segrt.open_backend(path), batch_size=4)
        lo, _, hi = predictor.backend.profiles["image"]
        assert predictor.batch_size <= hi[0] and predictor.size_min >= lo[-1]
        ref = segrt.load(unet_onnx).predict(_image(30, 200, 3))
        np.testing.assert_allclose(predictor.predict(_image(30, 200, 3)).probs, ref.probs, atol=1e-5)


def test_a_wrong_dtype_is_the_same_input_error_in_both_backends(unet_engine, unet_onnx):
    x = np.zeros((1, 1, 44, 44), np.float64)
    errors = []
    for backend in (OnnxRuntimeBackend(unet_onnx), TensorRTBackend(unet_engine)):
        with pytest.raises(InputError) as info:
            backend.run({"image": x})
        errors.append(str(info.value))
    assert errors[0] == errors[1] and "float64" in errors[0] and "float32" in errors[0]


# ----------------------------------------------------------------------------- refusals


def test_engine_from_another_tensorrt_version_or_gpu_is_refused(unet_engine, tmp_path):
    meta, plan = ef.read_engine_file(unet_engine)
    meta["engine"]["tensorrt_version"] = "10.8.0.43"
    old = ef.write_engine_file(tmp_path / "old.engine", meta, plan)
    with pytest.raises(
        ArtifactError, match=r"built with TensorRT 10\.8\.0\.43, but this machine has TensorRT 10\.13\.3\.9"
    ):
        segrt.load(old)
    meta["engine"].update(tensorrt_version="10.13.3.9", compute_capability=[9, 0])
    other = ef.write_engine_file(tmp_path / "other.engine", meta, plan)
    with pytest.raises(ArtifactError, match=r"compute capability 9\.0.*compute capability 8\.9") as info:
        segrt.load(other)
    assert "segrt.export.to_engine" in info.value.fix


def test_a_plan_the_runtime_cannot_deserialize_names_tensorrt_reason(unet_engine, tmp_path):
    meta, plan = ef.read_engine_file(unet_engine)
    forged = ef.write_engine_file(tmp_path / "junk.engine", meta, b"not a plan" + bytes(plan[10:]))
    with pytest.raises(ArtifactError, match=r"could not deserialize.*not compatible with this version"):
        TensorRTBackend(forged)


# ----------------------------------------------------------------------------- buffers, graphs, pool


def test_alternating_shapes_reuse_buffers_and_graphs(unet_engine):
    """Tiles of three images: full, full, remainder batch each. Buffers are kept per shape; a graph is
    valid only for the context state it was captured in (the double refuses anything else), so after
    each switch one plain enqueue runs, the next call with the same shape captures and replays, and
    a shape seen once costs no capture; no call infers twice."""
    xs = {n: np.random.default_rng(n).normal(size=(n, 1, 76, 76)).astype(np.float32) for n in (2, 1)}
    onnx_be = OnnxRuntimeBackend(ef.read_engine_metadata(unet_engine)["engine"]["build"]["onnx"])
    ref = {n: onnx_be.run({"image": x})["probs"] for n, x in xs.items()}
    with TensorRTBackend(unet_engine, use_cuda_graph=True) as be:
        for _ in range(3):
            for n in (2, 2, 1):
                np.testing.assert_allclose(be.run({"image": xs[n]})["probs"], ref[n], atol=1e-5)
        counts = cudart_double.STATE.counts
        assert counts["capture"] == 3  # the second full batch of each image: captured and replayed
        assert counts["graph_launch"] == 3
        assert counts["inference"] == 9  # one per call
        allocs = counts["cudaMalloc"]
        be.run({"image": xs[2]})
        assert counts["cudaMalloc"] == allocs  # buffers reused
    assert cudart_double.live_allocations() == 0  # close() freed everything


def test_shape_cache_is_bounded_and_least_recently_used_goes_first(unet_engine):
    with TensorRTBackend(unet_engine, use_cuda_graph=True, cached_shapes=2) as be:
        shapes = [(1, 1, 44, 44), (1, 1, 60, 60), (1, 1, 76, 76)]
        for s in shapes:
            be.run({"image": np.zeros(s, np.float32)})
        slot = be._pool.created[0]
        assert list(slot.entries) == [((1, 1, 60, 60),), ((1, 1, 76, 76),)]
        be.run({"image": np.zeros(shapes[1], np.float32)})  # a hit: becomes most recent
        be.run({"image": np.zeros(shapes[0], np.float32)})  # evicts 76, not 60
        assert list(slot.entries) == [((1, 1, 60, 60),), ((1, 1, 44, 44),)]


def test_a_failed_capture_disables_graphs_for_that_context_only(unet_engine):
    x = np.zeros((1, 1, 44, 44), np.float32)
    with TensorRTBackend(unet_engine, use_cuda_graph=True, contexts=2) as be:
        first = be._pool.acquire()
        second = be._pool.acquire()
        be._pool.release(second)
        be._pool.release(first)  # LIFO: the next run gets `first`
        cudart_double.STATE.fail["cudaStreamEndCapture"] = 1
        out = be.run({"image": x})["probs"]  # the first call with a shape is a plain enqueue
        with pytest.warns(UserWarning, match="CUDA graph capture failed"):
            np.testing.assert_allclose(be.run({"image": x})["probs"], out)  # the second captures, and fails
        assert be.use_cuda_graph  # the backend-wide setting stays: other threads' contexts keep graphs
        assert not first.use_graph
        be._pool.acquire()  # hold `first`: the next runs use `second`, which still captures
        be.run({"image": x})
        be.run({"image": x})
        assert second.use_graph and second.graph is not None
        np.testing.assert_allclose(be.run({"image": x})["probs"], out)


def test_eight_threads_share_the_context_pool_with_identical_results(unet_engine):
    xs = [
        np.random.default_rng(i).normal(size=(1 + i % 2, 1, 44 + 16 * (i % 3), 44)).astype(np.float32) for i in range(6)
    ]
    with TensorRTBackend(unet_engine, contexts=3, use_cuda_graph=True) as be:
        want = [be.run({"image": x})["probs"] for x in xs]
        bad: list[str] = []

        def work(t: int) -> None:
            for i in range(200):
                k = (t + i) % len(xs)
                if not np.array_equal(be.run({"image": xs[k]})["probs"], want[k]):
                    bad.append(f"thread {t} call {i}")

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not bad, bad[:5]
        assert len(be._pool.created) == 3


def test_run_after_close_is_a_clear_error(unet_engine):
    be = TensorRTBackend(unet_engine)
    be.run({"image": np.zeros((1, 1, 44, 44), np.float32)})
    be.close()
    with pytest.raises(PoolClosedError, match="was closed") as info:
        be.run({"image": np.zeros((1, 1, 44, 44), np.float32)})
    assert "segrt.load" in info.value.fix
    assert cudart_double.live_allocations() == 0


# ----------------------------------------------------------------------------- zero-copy torch inputs


def _fake_cuda_tensor(torch, t):
    """A CPU tensor that says it is on cuda:0: its memory is host memory, the double's device memory."""

    class FakeCuda(torch.Tensor):
        @property
        def is_cuda(self):
            return True

        @property
        def device(self):
            return torch.device("cuda", 0)

    FakeCuda.__module__ = "torch"  # what code that recognises torch tensors by their module sees
    return t.as_subclass(FakeCuda)


@pytest.mark.parametrize("offset_bytes", [0, 4])
def test_torch_inputs_are_read_in_place_only_when_aligned(unet_engine, unet_onnx, monkeypatch, offset_bytes):
    torch = pytest.importorskip("torch", reason="needs torch (pip install -e '.[train]')")
    monkeypatch.setattr(torch.cuda, "current_stream", lambda *a, **k: type("S", (), {"synchronize": lambda s: None})())
    x = np.random.default_rng(0).normal(size=(1, 1, 44, 44)).astype(np.float32)
    storage = torch.zeros(x.size + 128)
    start = (-storage.data_ptr() % 256) // 4 + offset_bytes // 4  # first element at an address = offset (mod 256)
    view = storage[start : start + x.size].view(x.shape)
    view.copy_(torch.from_numpy(x))
    assert view.data_ptr() % 256 == offset_bytes
    with TensorRTBackend(unet_engine) as be:
        before = cudart_double.STATE.counts.get("memcpy", 0)
        got = be.run({"image": _fake_cuda_tensor(torch, view)})["probs"]
        copies = cudart_double.STATE.counts["memcpy"] - before
    np.testing.assert_allclose(got, OnnxRuntimeBackend(unet_onnx).run({"image": x})["probs"], atol=1e-5)
    assert copies == (1 if offset_bytes == 0 else 2)  # the output copy, plus the input copy when misaligned


# ----------------------------------------------------------------------------- output allocator


def _nonzero_model(path):
    """x float32 [N] -> indices of its nonzero entries int64 [1, K]: K is known only after running."""
    graph = helper.make_graph(
        [helper.make_node("NonZero", ["x"], ["idx"])],
        "nz",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"])],
        [helper.make_tensor_value_info("idx", TensorProto.INT64, [1, "K"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    meta = {
        "kind": "maskrcnn",
        "class_names": ["bg", "x"],
        "input_channels": 1,
        "input_size": [8, 8],
        "normalization": {"scale": 1.0, "mean": [0.0], "std": [1.0]},
        "input_name": "x",
    }
    helper.set_model_props(model, {md.METADATA_KEY: md.encode(meta)})
    import onnx

    onnx.save(model, str(path))
    return path


def _nonzero_engine(tmp_path):
    path = _nonzero_model(tmp_path / "nz.onnx")
    return onnx_to_engine(path, tmp_path / "nz.engine", profile={"x": ((1,), (8,), (16,))})


def test_data_dependent_outputs_go_through_the_output_allocator(trt_double, tmp_path):
    engine = _nonzero_engine(tmp_path)
    with TensorRTBackend(engine) as be:
        for x in (np.array([0, 1, 0, 2], np.float32), np.zeros(3, np.float32), np.arange(16, dtype=np.float32)):
            np.testing.assert_array_equal(be.run({"x": x})["idx"], np.nonzero(x)[0][None])


def test_an_allocation_failure_in_the_output_allocator_is_reported_not_raised_into_tensorrt(trt_double, tmp_path):
    engine = _nonzero_engine(tmp_path)
    with TensorRTBackend(engine) as be:
        assert be.run({"x": np.zeros(8, np.float32)})["idx"].shape == (1, 0)  # buffers for shape (8,) exist now
        cudart_double.STATE.fail["cudaMalloc"] = 1  # the allocator's next cudaMalloc runs out of memory
        with pytest.raises(segrt.backends.cuda_rt.CudaError, match="could not allocate 64 bytes for output 'idx'"):
            be.run({"x": np.ones(8, np.float32)})
        np.testing.assert_array_equal(be.run({"x": np.ones(8, np.float32)})["idx"], [np.arange(8)])  # it recovers


# ----------------------------------------------------------------------------- Mask R-CNN with the plugin


@pytest.fixture(scope="module")
def maskrcnn_onnx(tmp_path_factory):
    """(portable ONNX, TensorRT-graph ONNX) of a random-weight resnet18-FPN Mask R-CNN at 128x128."""
    pytest.importorskip("onnxruntime_extensions", reason="needs onnxruntime_extensions (pip install -e '.[dev]')")
    import torch

    from segrt.export.maskrcnn.models import MaskRCNNConfig, build_model
    from segrt.export.maskrcnn.onnx_export import torch_to_onnx
    from segrt.export.maskrcnn.trt_graph import portable_to_tensorrt

    torch.manual_seed(0)
    cfg = MaskRCNNConfig(
        min_size=128, max_size=128, rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_test=50, box_detections_per_img=20
    )
    folder = tmp_path_factory.mktemp("mrcnn")
    portable = torch_to_onnx(
        build_model(cfg).eval(),
        cfg,
        ["__background__", "nucleus"],
        folder / "m.onnx",
        input_size=(128, 128),
        score_thresh=0.0,
    )
    return portable, portable_to_tensorrt(portable, folder / "m_trt.onnx")


@pytest.fixture
def maskrcnn_trt_onnx(maskrcnn_onnx):
    return maskrcnn_onnx[1]


def test_maskrcnn_tensorrt_graph_builds_loads_its_plugin_and_predicts_like_onnxruntime(
    trt_double, maskrcnn_onnx, tmp_path, plugin_library_standin
):
    portable, trt_onnx = maskrcnn_onnx
    engine = onnx_to_engine(trt_onnx, tmp_path / "m.engine", plugin_dirs=[plugin_library_standin])
    meta = ef.read_engine_metadata(engine)
    assert meta["engine"]["plugin"] == {
        "library": "libsegrt_trt_plugins.so",
        "version": "1",
        "namespace": "segrt",
        "ops": ["SegrtMultiLevelRoiAlign"],
    }
    (tmp_path / "libsegrt_trt_plugins.so").write_bytes(
        (plugin_library_standin / "libsegrt_trt_plugins.so").read_bytes()
    )
    trt_double.reset()  # as in a new process: the engine's folder holds the library, nothing is registered yet
    got = segrt.load(engine)
    assert got.backend.plugin_library == tmp_path / "libsegrt_trt_plugins.so"
    ref = segrt.load(portable)
    image = np.random.default_rng(1).integers(0, 256, (100, 120, 3), dtype=np.uint8)
    a, b = got.predict(image), ref.predict(image)
    assert len(a) == len(b) > 0
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
    np.testing.assert_allclose(a.boxes, b.boxes, rtol=1e-4, atol=1e-3)
    assert (a.masks == b.masks).mean() > 0.999


# ----------------------------------------------------------------------------- plugin


def test_missing_plugin_library_is_named_when_building_and_loading(
    trt_double, tmp_path, maskrcnn_trt_onnx, plugin_library_standin
):
    with pytest.raises(BackendUnavailableError, match=r"libsegrt_trt_plugins\.so") as info:
        onnx_to_engine(maskrcnn_trt_onnx, tmp_path / "m.engine")
    assert "SegrtMultiLevelRoiAlign" in str(info.value)
    engine = onnx_to_engine(maskrcnn_trt_onnx, tmp_path / "m.engine", plugin_dirs=[plugin_library_standin])
    trt_double.reset()  # a new process: nothing registered
    with pytest.raises(BackendUnavailableError, match="needs the segrt TensorRT plugin library"):
        TensorRTBackend(engine)
