"""OpenVINO backend: fp32 equals ONNX Runtime, bf16 within a stated bound, int8 QDQ files run,
precision/backend selection, and the errors a user sees (bad names, bad feeds, no openvino).

Models: the tiny random U-Net of ``conftest.tiny_unet`` and a small random-init Mask R-CNN
portable graph exported here (no training: parity needs equal weights, not good ones).
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("openvino", reason="the OpenVINO backend needs `pip install 'segrt[openvino]'`")
torch = pytest.importorskip("torch", reason="the test models are exported from PyTorch (segrt[train])")

import segrt  # noqa: E402
from segrt.artifact.formats import format_for_path  # noqa: E402
from segrt.backends import openvino as ovb  # noqa: E402
from segrt.backends.onnxrt import OnnxRuntimeBackend  # noqa: E402
from segrt.backends.openvino import OpenVINOBackend, cpu_capabilities, resolve_precision  # noqa: E402
from segrt.backends.select import measured_precision  # noqa: E402
from segrt.errors import ArtifactError, BackendUnavailableError, InputError  # noqa: E402

HAS_BF16 = "BF16" in cpu_capabilities()
# bf16 keeps 8 bits of mantissa: a probability moves by a few 1e-3 through the tiny U-Net;
# 0.05 leaves room for other CPUs' bf16 kernels (measured here: ~0.01)
BF16_MAX_DPROB = 0.05
MASKRCNN_HW = (128, 128)


def _open(path, **kw) -> OpenVINOBackend:
    """Open with OpenVINO; on CPUs without native bf16 an explicit bf16 warns (checked elsewhere)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return OpenVINOBackend(path, threads=2, **kw)


def _blobs(h: int, w: int, seed: int) -> np.ndarray:
    """uint8 grey image with bright blobs (nuclei-like), deterministic."""
    import cv2

    rng = np.random.default_rng(seed)
    img = np.full((h, w), 20, np.uint8)
    for _ in range(12):
        cv2.circle(
            img, (int(rng.integers(w)), int(rng.integers(h))), int(rng.integers(4, 12)), int(rng.integers(120, 255)), -1
        )
    return img


@pytest.fixture(scope="module")
def unet_int8(tiny_unet, tmp_path_factory):
    from segrt.export.quantize import quantize_int8

    _, path = tiny_unet
    return quantize_int8(
        path, tmp_path_factory.mktemp("int8") / "tiny.int8.onnx", [_blobs(96, 96, s) for s in range(2)], max_tile=124
    )


@pytest.fixture(scope="module")
def tiny_maskrcnn(tmp_path_factory):
    """A small random-init resnet18-FPN Mask R-CNN as the portable ONNX graph (128x128 input)."""
    from segrt.export.maskrcnn.models import MaskRCNNConfig, build_model
    from segrt.export.maskrcnn.onnx_export import torch_to_onnx

    torch.manual_seed(0)
    cfg = MaskRCNNConfig(
        min_size=128,
        max_size=128,
        fpn_channels=16,
        box_head_dim=32,
        mask_head_channels=16,
        rpn_pre_nms_top_n_test=100,
        rpn_post_nms_top_n_test=50,
        box_detections_per_img=20,
    )
    model = build_model(cfg).eval()
    with torch.no_grad():  # spread the class scores: random init leaves them tied near 0.5
        model.roi_heads.box_predictor.cls_score.weight.normal_(0, 0.5)
    return torch_to_onnx(
        model, cfg, ["__background__", "cell"], tmp_path_factory.mktemp("mrcnn") / "tiny.onnx", MASKRCNN_HW
    )


# ------------------------------------------------------------------------------ parity: U-Net


def test_unet_fp32_equals_onnxruntime_dynamic_shapes(tiny_unet):
    """Batch, height and width stay dynamic; every output equals ONNX Runtime's to float rounding."""
    _, path = tiny_unet
    ov, ort = _open(path, precision="fp32"), OnnxRuntimeBackend(path, threads=2)
    assert [t.name for t in ov.inputs] == [t.name for t in ort.inputs] == ["image"]
    assert ov.inputs[0].shape == (None, 1, None, None) and ov.metadata == ort.metadata
    rng = np.random.default_rng(0)
    for shape in [(1, 1, 124, 124), (3, 1, 140, 172)]:
        x = rng.standard_normal(shape).astype(np.float32)
        got, want = ov.run({"image": x})["probs"], ort.run({"image": x})["probs"]
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_unet_predictor_through_sdk_load(tiny_unet):
    _, path = tiny_unet
    image = _blobs(150, 110, seed=3)
    ov = segrt.load(path, backend="openvino", precision="fp32", threads=2)
    ort = segrt.load(path, threads=2)
    assert type(ov.backend).__name__ == "OpenVINOBackend" and type(ort.backend).__name__ == "OnnxRuntimeBackend"
    a, b = ov.predict(image), ort.predict(image)
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-5)
    assert (a.classes != b.classes).mean() < 1e-3  # only exact ties at 0.5 may differ


def test_unet_bf16_within_bound(tiny_unet):
    _, path = tiny_unet
    x = np.random.default_rng(1).standard_normal((2, 1, 124, 156)).astype(np.float32)
    want = OnnxRuntimeBackend(path).run({"image": x})["probs"]
    ov = _open(path, precision="bf16")
    got = ov.run({"image": x})["probs"]
    assert ov.precision == "bf16"
    dprob = np.abs(got - want).max()
    assert dprob <= BF16_MAX_DPROB, dprob
    if HAS_BF16:  # really bf16 kernels (not a silent fp32 run), so the bound above means something
        assert "bf16" in set(ov.runtime_precisions().values())
        assert dprob > 1e-5


def test_unet_int8_qdq_runs_int8(tiny_unet, unet_int8):
    """The QDQ file from `segrt export --int8` runs with int8 convolutions and stays near fp32."""
    ov = _open(unet_int8, precision="fp32")
    assert ov.metadata["quantization"]["format"] == "QDQ"
    layer_precisions: dict[str, set[str]] = {}
    for node in ov.compiled.get_runtime_model().get_ops():
        info = node.get_rt_info()
        layer_precisions.setdefault(str(info["layerType"].astype(str)), set()).add(
            str(info["runtimePrecision"].astype(str))
        )
    assert layer_precisions["Convolution"] & {"u8", "i8"}, layer_precisions["Convolution"]
    # on an image like the calibration ones, OpenVINO and ONNX Runtime run the same quantized
    # model (same scales and zero points); only their int8 kernels' rounding differs
    image = _blobs(120, 100, seed=7)
    got = segrt.load(unet_int8, backend="openvino", threads=2).predict(image)
    want = segrt.load(unet_int8, threads=2).predict(image)
    assert np.abs(got.probs - want.probs).max() < 0.1
    assert (got.classes == want.classes).mean() > 0.99


# -------------------------------------------------------------------------- parity: Mask R-CNN


def _maskrcnn_image() -> np.ndarray:
    return np.repeat(_blobs(110, 128, seed=5)[:, :, None], 3, axis=2)


def test_maskrcnn_fp32_equals_onnxruntime(tiny_maskrcnn):
    """NonMaxSuppression, RoiAlign, TopK and the padded outputs run on OpenVINO as on ONNX Runtime."""
    ov = segrt.load(tiny_maskrcnn, backend="openvino", precision="fp32", threads=2)
    ort = segrt.load(tiny_maskrcnn, threads=2)
    image = _maskrcnn_image()
    feed, _ = ort.preprocess(image)
    raw_ov, raw_ort = ov.backend.run(feed), ort.backend.run(feed)
    assert {k: (v.shape, v.dtype) for k, v in raw_ov.items()} == {k: (v.shape, v.dtype) for k, v in raw_ort.items()}
    a, b = ov.predict(image), ort.predict(image)
    assert len(a) == len(b) > 0
    assert np.array_equal(a.labels, b.labels)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
    np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-2)
    inter, union = (a.masks & b.masks).sum((1, 2)), (a.masks | b.masks).sum((1, 2))
    assert np.where(union > 0, inter / np.maximum(union, 1), 1.0).min() >= 0.99


def test_maskrcnn_bf16_warns_and_stays_close(tiny_maskrcnn):
    """bf16 warns for Mask R-CNN (scores move) and its detections still overlap the fp32 ones."""
    with pytest.warns(UserWarning, match="bf16 moves Mask R-CNN detection scores"):
        ov = segrt.load(tiny_maskrcnn, backend="openvino", precision="bf16", threads=2)
    ref = segrt.load(tiny_maskrcnn, threads=2)
    image = _maskrcnn_image()
    a, b = ov.predict(image), ref.predict(image)
    assert len(a) > 0 and len(b) > 0
    # every confident fp32 detection has a bf16 one of the same class over it, with a close score
    for i in np.flatnonzero(b.scores > 0.5):
        x1, y1 = np.maximum(a.boxes[:, :2], b.boxes[i, :2]).T
        x2, y2 = np.minimum(a.boxes[:, 2:], b.boxes[i, 2:]).T
        inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        area = lambda r: (r[..., 2] - r[..., 0]) * (r[..., 3] - r[..., 1])  # noqa: E731 - a one-line helper of this test
        iou = inter / (area(a.boxes) + area(b.boxes[i]) - inter)
        j = int(np.argmax(np.where(a.labels == b.labels[i], iou, -1)))
        assert iou[j] >= 0.5 and abs(a.scores[j] - b.scores[i]) <= 0.15, (i, iou[j], a.scores[j], b.scores[i])


def test_convert_to_bf16_runs_a_convolution_on_bf16_inputs():
    """A converted convolution runs in bf16 inside a float32 compile: its outputs are bf16 numbers
    within bf16's error of a numpy reference, and the graph's output type stays float32."""
    import ml_dtypes
    import openvino as ov

    from segrt.backends.openvino_mixed import convert_to_bf16, heavy_nodes

    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 64, 6, 5)).astype(np.float32)
    w = rng.standard_normal((32, 64, 1, 1)).astype(np.float32)
    opset = ov.opset13
    param = opset.parameter(list(x.shape), np.float32, name="x")
    conv = opset.convolution(param, opset.constant(w), [1, 1], [0, 0], [0, 0], [1, 1], name="/head/conv")
    model = ov.Model([opset.relu(conv)], [param])
    assert [n.get_friendly_name() for n in heavy_nodes(model, ("/head/",))] == ["/head/conv"]
    assert heavy_nodes(model, ("/backbone/",)) == []
    assert convert_to_bf16(model, heavy_nodes(model, ("/head/",))) == 1
    assert model.outputs[0].get_element_type() == ov.Type.f32
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got = compiled(x)[0]
    ref = np.maximum(np.einsum("oi,bihw->bohw", w[:, :, 0, 0].astype(np.float64), x), 0)
    # bf16 keeps 8 bits of mantissa on the inputs and the result (the CPU's bf16 dot products sum in float32)
    np.testing.assert_allclose(got, ref, rtol=0, atol=2**-6 * np.abs(ref).max())
    if HAS_BF16:  # the CPU plugin runs it on its bf16 kernels: every output is a bf16 number, unlike fp32's
        assert np.array_equal(got, got.astype(ml_dtypes.bfloat16).astype(np.float32))
        assert not np.array_equal(ref.astype(np.float32), ref.astype(ml_dtypes.bfloat16).astype(np.float32))


def test_maskrcnn_mixed_runs_the_fpn_outputs_and_heads_in_bf16_and_the_resnet_in_fp32(tiny_maskrcnn):
    """precision='mixed': the FPN's output convolutions and the RPN, box and mask heads' layers in bf16,
    the ResNet and the FPN's lateral convolutions in fp32, and the detections close to fp32's."""
    mixed = _open(tiny_maskrcnn, precision="mixed")
    fp32 = _open(tiny_maskrcnn, precision="fp32")
    assert mixed.bf16_layers > 0
    feed, _ = segrt.load(tiny_maskrcnn).preprocess(_maskrcnn_image())
    a, b = mixed.run(feed), fp32.run(feed)
    assert int(a["num_detections"][0]) > 0 and a["masks"].dtype == np.float32
    assert abs(int(a["num_detections"][0]) - int(b["num_detections"][0])) <= 2
    if HAS_BF16:  # where bf16 is native, the runtime model shows it on the FPN outputs' and heads' layers only
        precisions = mixed.runtime_precisions()
        bf16_layers = {n for n, p in precisions.items() if p == "bf16"}
        assert any(n.startswith("/head/") for n in bf16_layers), sorted(bf16_layers)
        assert any(n.startswith("/mask_head/") for n in bf16_layers), sorted(bf16_layers)
        assert any(n.startswith("/backbone/fpn/layer_blocks.") for n in bf16_layers), sorted(bf16_layers)
        assert not any(
            n.startswith(("/backbone/body/", "/backbone/fpn/inner_blocks.")) and "Conv" in n for n in bf16_layers
        ), sorted(bf16_layers)
        assert any(n.startswith("/backbone/body/") and p == "f32" for n, p in precisions.items())


def test_maskrcnn_mixed_on_the_heads_keeps_the_whole_backbone_fp32(tiny_maskrcnn):
    """bf16_scopes=HEAD_SCOPES: no backbone or FPN convolution runs in bf16."""
    mixed = _open(tiny_maskrcnn, precision="mixed", bf16_scopes=ovb.HEAD_SCOPES)
    assert 0 < mixed.bf16_layers < _open(tiny_maskrcnn, precision="mixed").bf16_layers
    if HAS_BF16:
        bf16_layers = {n for n, p in mixed.runtime_precisions().items() if p == "bf16"}
        assert any(n.startswith("/head/") for n in bf16_layers), sorted(bf16_layers)
        assert not any(n.startswith("/backbone/") and "Conv" in n for n in bf16_layers), sorted(bf16_layers)


def test_maskrcnn_mixed_on_the_mask_head_keeps_fp32_detections(tiny_maskrcnn):
    """bf16_scopes=MASK_HEAD_SCOPES: boxes, scores and labels are fp32's exactly; masks close."""
    mixed = _open(tiny_maskrcnn, precision="mixed", bf16_scopes=ovb.MASK_HEAD_SCOPES)
    fp32 = _open(tiny_maskrcnn, precision="fp32")
    feed, _ = segrt.load(tiny_maskrcnn).preprocess(_maskrcnn_image())
    a, b = mixed.run(feed), fp32.run(feed)
    assert int(a["num_detections"][0]) > 0
    for name in ("boxes", "scores", "labels", "num_detections"):
        assert np.array_equal(a[name], b[name]), name
    assert np.abs(a["masks"] - b["masks"]).max() < 0.05
    if HAS_BF16:
        bf16_layers = {n for n, p in mixed.runtime_precisions().items() if p == "bf16"}
        assert bf16_layers and all(
            n.startswith(("/mask_head/", "/mask_predictor/")) or "Backprop" in n or "Reorder" in n or "Convert" in n
            for n in bf16_layers
        ), sorted(bf16_layers)


def test_mixed_is_refused_for_a_unet_and_for_int8_files(tiny_unet, tiny_maskrcnn, tmp_path):
    with pytest.raises(InputError, match="precision='mixed' runs the detection heads in bf16"):
        _open(tiny_unet[1], precision="mixed")
    with pytest.raises(ArtifactError, match="has no convolutions named"):
        _open(tiny_maskrcnn, precision="mixed", bf16_scopes=("/nothing/",))
    import json

    import onnx

    proto = onnx.load(str(tiny_maskrcnn))  # the same graph, labelled as `segrt export --int8` labels its files
    entry = next(p for p in proto.metadata_props if p.key == "segrt")
    entry.value = json.dumps({**json.loads(entry.value), "quantization": {"format": "QDQ"}})
    onnx.save(proto, str(tmp_path / "labelled.int8.onnx"))
    with pytest.raises(InputError, match="is an int8 file"):
        _open(tmp_path / "labelled.int8.onnx", precision="mixed")


def test_fp32_ops_keep_roialign_in_fp32_under_bf16(tiny_maskrcnn):
    """The per-node fp32 mark reaches the CPU plugin (the README lists which ops it honours)."""
    if not HAS_BF16:
        pytest.skip("this CPU has no native bf16 (OpenVINO lacks the BF16 capability): nothing to keep in fp32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the Mask R-CNN bf16 warning, tested above
        plain = OpenVINOBackend(tiny_maskrcnn, precision="bf16", threads=2)
        marked = OpenVINOBackend(tiny_maskrcnn, precision="bf16", threads=2, fp32_ops=["ROIAlign"])

    def roialign_precisions(backend):
        return {
            str(n.get_rt_info()["runtimePrecision"].astype(str))
            for n in backend.compiled.get_runtime_model().get_ops()
            if str(n.get_rt_info()["layerType"].astype(str)) == "ROIAlign"
        }

    assert marked.fp32_nodes > 0 and roialign_precisions(marked) == {"f32"}
    assert "bf16" in roialign_precisions(plain)


# ------------------------------------------------------------------------------ OpenVINO IR


def test_ir_export_loads_with_the_same_metadata_and_outputs(tiny_unet, tiny_maskrcnn, tmp_path):
    """`segrt export --format openvino` writes model.xml + model.bin; segrt.load runs it as the .onnx runs,
    and `segrt info` reads it without OpenVINO, as OpenVINO itself reads it."""
    import openvino

    from segrt.artifact.info import describe
    from segrt.export.to_openvino import onnx_to_openvino_ir

    unet_feed = {"image": np.random.default_rng(0).random((1, 1, 124, 124), np.float32)}
    maskrcnn_feed = segrt.load(tiny_maskrcnn).preprocess(_maskrcnn_image())[0]
    for onnx_path, feed in ((tiny_unet[1], unet_feed), (tiny_maskrcnn, maskrcnn_feed)):
        xml = onnx_to_openvino_ir(onnx_path, tmp_path / f"{onnx_path.stem}.xml")
        assert xml.is_file() and xml.with_suffix(".bin").is_file() and not list(tmp_path.glob(".segrt_ir_*"))
        ir, onnx = _open(xml, precision="fp32"), _open(onnx_path, precision="fp32")
        assert ir.metadata == onnx.metadata and ir.inputs == onnx.inputs and ir.outputs == onnx.outputs
        a, b = ir.run(feed), onnx.run(feed)
        assert all(np.array_equal(a[k], b[k]) for k in b)
        info = describe(xml)
        assert info["format"] == "openvino" and info["metadata"] == onnx.metadata
        read = openvino.Core().read_model(str(xml))
        assert [(t["name"], t["shape"]) for t in info["inputs"]] == [
            (p.get_any_name(), [d.get_length() if d.is_static else None for d in p.get_partial_shape()])
            for p in read.inputs
        ]
        assert [t["name"] for t in info["outputs"]] == [o.get_any_name() for o in read.outputs]
    assert segrt.load(xml, threads=2).kind == "maskrcnn"  # the suffix picks OpenVINO
    mixed = segrt.load(xml, backend="auto", threads=2).backend  # the measured rule applies to IR files too
    assert isinstance(mixed, OpenVINOBackend) and mixed.precision == ("mixed" if HAS_BF16 else "fp32")


def test_ir_without_its_weights_is_a_clear_error(tiny_unet, tmp_path):
    from segrt.errors import ArtifactError
    from segrt.export.to_openvino import onnx_to_openvino_ir

    xml = onnx_to_openvino_ir(tiny_unet[1], tmp_path / "unet.xml")
    xml.with_suffix(".bin").unlink()
    with pytest.raises(ArtifactError, match=r"without its \.bin"):
        segrt.load(xml)


# --------------------------------------------------------------------- precision and selection


def test_precision_auto_resolves_from_the_bf16_capability(tiny_unet, monkeypatch):
    assert resolve_precision("auto", ("BF16", "FP32", "INT8")) == "bf16"
    assert resolve_precision("AUTO", ("FP32", "INT8")) == "fp32"
    assert resolve_precision("fp32", ("BF16",)) == "fp32"
    with pytest.warns(UserWarning, match="no native bf16"):
        assert resolve_precision("bf16", ("FP32",)) == "bf16"
    _, path = tiny_unet
    assert _open(path, precision="auto").precision == ("bf16" if HAS_BF16 else "fp32")
    monkeypatch.setattr(ovb, "cpu_capabilities", lambda core=None: ("FP32", "INT8"))  # a CPU without bf16
    assert _open(path, precision="auto").precision == "fp32"


def test_backend_auto_applies_the_measured_rule(tiny_unet, unet_int8):
    _, path = tiny_unet
    for file in (path, unet_int8):
        backend = segrt.open_backend(file, backend="auto", threads=2)
        assert isinstance(backend, OpenVINOBackend) and backend.precision == ("bf16" if HAS_BF16 else "fp32")
    caps = ("BF16", "FP32")
    assert measured_precision({"kind": "unet"}, caps) == "bf16"
    assert (
        measured_precision({"kind": "maskrcnn"}, caps) == measured_precision({"kind": "keypointrcnn"}, caps) == "mixed"
    )
    assert measured_precision({"kind": "maskrcnn", "quantization": {"format": "QDQ"}}, caps) == "fp32"
    assert measured_precision({"kind": "maskrcnn"}, ("FP32",)) == "fp32"
    assert measured_precision({"kind": "unet", "quantization": {"format": "QDQ"}}, caps) == "bf16"
    assert measured_precision({"kind": "unet"}, ("FP32",)) == "fp32"
    # an explicit precision wins over the rule
    assert segrt.open_backend(path, backend="auto", precision="fp32").precision == "fp32"


def test_format_table_lists_both_onnx_runtimes():
    fmt = format_for_path("model.onnx")
    assert [r.name for r in fmt.runtimes] == ["onnxruntime", "openvino"]
    assert fmt.backend_class() is OnnxRuntimeBackend  # ONNX Runtime stays the default
    assert fmt.backend_class("openvino") is OpenVINOBackend


def test_bad_precision_and_backend_names(tiny_unet):
    _, path = tiny_unet
    with pytest.raises(InputError, match="unknown precision 'fp16'") as exc:
        segrt.load(path, backend="openvino", precision="fp16")
    assert "fp32, bf16, mixed, auto" in exc.value.fix
    with pytest.raises(InputError, match="no backend 'tensorflow' for onnx files") as exc:
        segrt.load(path, backend="tensorflow")
    assert "onnxruntime, openvino" in exc.value.fix
    with pytest.raises(InputError, match="no backend 'openvino' for engine files"):
        segrt.load("model.engine", backend="openvino")
    with pytest.raises(InputError, match="threads must be >= 1"):
        OpenVINOBackend(path, threads=0)


def test_feed_errors_match_onnxruntime(tiny_unet):
    """Missing inputs, wrong dtype and wrong rank: the same InputError from both backends."""
    _, path = tiny_unet
    backends = [_open(path), OnnxRuntimeBackend(path)]
    x = np.zeros((1, 1, 124, 124), np.float32)
    for feed, pattern in [
        ({}, "missing model input"),
        ({"image": x.astype(np.float64)}, "has dtype float64, the model expects float32"),
        ({"image": x[0]}, "has shape \\[1, 124, 124\\], the model takes 4 dimensions"),
    ]:
        messages = set()
        for backend in backends:
            with pytest.raises(InputError, match=pattern) as exc:
                backend.run(feed)
            messages.add(str(exc.value))
        assert len(messages) == 1, messages


def test_missing_openvino_says_what_to_install(tiny_unet, monkeypatch):
    _, path = tiny_unet
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now raises ImportError
    with pytest.raises(BackendUnavailableError) as exc:
        segrt.load(path, backend="openvino")
    assert "pip install 'segrt[openvino]'" in exc.value.fix
    assert isinstance(segrt.open_backend(path, backend="auto"), OnnxRuntimeBackend)  # auto falls back
    with pytest.raises(BackendUnavailableError, match="needs the OpenVINO backend"):
        segrt.open_backend(path, backend="auto", precision="bf16")
