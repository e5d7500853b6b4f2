"""Mask R-CNN export: deploy wrapper, portable ONNX and TensorRT graphs, parity with torchvision eager.

The small model is trained_maskrcnn briefly on the DSB2018 demo data (train half) once per session,
so scores and masks are not those of random weights; parity is checked on the held-out
half and on resized copies of it, none of which the export traced.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch", reason="needs torch (pip install -e '.[train]')")

import segrt  # noqa: E402
from segrt.errors import ArtifactError, DataError  # noqa: E402
from segrt.export.maskrcnn.coco import load_coco  # noqa: E402
from segrt.export.maskrcnn.deploy import DeployRCNN  # noqa: E402
from segrt.export.maskrcnn.models import MaskRCNNConfig, build_model, load_torchvision_state_dict  # noqa: E402
from segrt.export.maskrcnn.onnx_export import torch_to_onnx  # noqa: E402
from segrt.export.maskrcnn.reference import TorchvisionPredictor  # noqa: E402
from segrt.io.images import read_image  # noqa: E402
from segrt.rcnn.coco import evaluate  # noqa: E402

EXPORT_HW = (512, 512)


@pytest.fixture(scope="session")
def portable(trained_maskrcnn, tmp_path_factory) -> Path:
    model, cfg, names, _ = trained_maskrcnn
    return torch_to_onnx(model, cfg, names, tmp_path_factory.mktemp("onnx") / "small.onnx", EXPORT_HW)


def _val_images(coco_demo: Path) -> list[np.ndarray]:
    """The held-out image, a shrunk and a grey copy: none of them was seen by the export trace."""
    import cv2

    img = read_image(next((coco_demo / "val").glob("*.png")))
    return [img, cv2.resize(img, (200, 400), interpolation=cv2.INTER_AREA), img[:, :, 0]]


def _match(a, b) -> None:
    """Detections ``a`` (segrt) equal ``b`` (torchvision) within the issue's tolerances."""
    assert len(a) == len(b) > 0
    assert np.array_equal(a.labels, b.labels)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-3)
    scale = np.maximum(np.abs(b.boxes), 1.0)
    assert (np.abs(a.boxes - b.boxes) / scale).max() < 1e-3
    inter = (a.masks & b.masks).sum((1, 2))
    union = (a.masks | b.masks).sum((1, 2))
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    assert iou.min() >= 0.99, iou.min()


def test_deploy_wrapper_eager_equals_torchvision(trained_maskrcnn, coco_demo):
    """The wrapper's own torch forward reproduces torchvision's detections before any export."""
    model, _cfg, names, _ = trained_maskrcnn
    img = _val_images(coco_demo)[0]
    ref = TorchvisionPredictor(model, names, canvas_hw=EXPORT_HW).predict(img)
    deploy = DeployRCNN(model, EXPORT_HW)
    x = torch.zeros(1, 3, *EXPORT_HW)
    x[0, :, : img.shape[0], : img.shape[1]] = torch.from_numpy(img.transpose(2, 0, 1)) / 255.0
    with torch.no_grad():
        boxes, scores, _labels, masks, num = deploy(x, torch.tensor(img.shape[:2], dtype=torch.float32))
    n = int(num)
    assert n == len(ref) > 0
    np.testing.assert_allclose(boxes[:n].numpy(), ref.boxes, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(scores[:n].numpy(), ref.scores, atol=1e-6)
    assert masks.shape == (deploy.max_detections, 28, 28) and not scores[n:].any()


def test_portable_onnx_matches_torchvision(trained_maskrcnn, portable, coco_demo):
    model, _cfg, names, _ = trained_maskrcnn
    runtime = segrt.load(portable)
    ref = TorchvisionPredictor(model, names, canvas_hw=EXPORT_HW)
    graph = onnx.load(str(portable))
    ops = {n.op_type for n in graph.graph.node}
    assert {"NonMaxSuppression", "RoiAlign", "TopK"} <= ops and all(
        n.domain in ("", "ai.onnx") for n in graph.graph.node
    )
    assert all(
        a.s == b"output_half_pixel"
        for n in graph.graph.node
        if n.op_type == "RoiAlign"
        for a in n.attribute
        if a.name == "coordinate_transformation_mode"
    )
    for img in _val_images(coco_demo):
        _match(runtime.predict(img), ref.predict(img))
    meta = runtime.metadata
    assert meta["kind"] == "maskrcnn" and meta["class_names"] == names and meta["input_size"] == list(EXPORT_HW)
    assert meta["graph"] == "portable" and meta["mask_size"] == 28 and meta["opset"] >= 17


def test_coco_ap_matches_torchvision(trained_maskrcnn, portable, coco_demo):
    model, _cfg, names, _ = trained_maskrcnn
    ours = segrt.load(portable).evaluate(coco_demo / "val.json")
    theirs = evaluate(
        TorchvisionPredictor(model, names, canvas_hw=EXPORT_HW), coco_demo / "val.json", coco_demo / "val"
    )
    for key in ("bbox_AP", "segm_AP", "segm_AP50"):
        assert abs(ours[key] - theirs[key]) <= 0.005, (key, ours[key], theirs[key])


def test_tensorrt_graph_computes_the_same(portable, coco_demo, tmp_path):
    pytest.importorskip("onnxruntime_extensions", reason="needs onnxruntime_extensions (pip install -e '.[dev]')")
    from segrt.export.maskrcnn.ort_plugin import standin_session
    from segrt.export.maskrcnn.trt_graph import PLUGIN_OP, plugin_nodes, portable_to_tensorrt

    trt_path = portable_to_tensorrt(portable, tmp_path / "small_trt.onnx")
    model = onnx.load(str(trt_path))
    nodes = plugin_nodes(model)
    assert len(nodes) == 2 and all(n.domain == "segrt" for n in nodes)
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in nodes[0].attribute}
    assert attrs["plugin_version"] == b"1" and attrs["plugin_namespace"] == b"segrt"
    assert list(attrs["spatial_scales"]) == [0.25, 0.125, 0.0625, 0.03125] and attrs["aligned"] == 0
    assert not any(n.op_type == "RoiAlign" for n in model.graph.node)
    meta = json.loads({p.key: p.value for p in model.metadata_props}["segrt"])
    assert meta["graph"] == "tensorrt" and meta["plugin"]["ops"] == [PLUGIN_OP]
    # run it with the CPU kernel standing in for the plugin, compare with the portable graph
    session = standin_session(trt_path)
    runtime = segrt.load(portable)
    for img in _val_images(coco_demo)[:2]:
        feed, _ = runtime.preprocess(img)
        want = runtime.backend.run(feed)
        got = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed), strict=True))
        assert int(got["num_detections"][0]) == int(want["num_detections"][0]) > 0
        n = int(want["num_detections"][0])
        assert np.array_equal(got["labels"][:n], want["labels"][:n])
        np.testing.assert_allclose(got["boxes"][:n], want["boxes"][:n], rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(got["scores"][:n], want["scores"][:n], atol=1e-4)
        np.testing.assert_allclose(got["masks"][:n], want["masks"][:n], atol=1e-3)


def test_no_detections_is_an_empty_result(trained_maskrcnn, tmp_path):
    model, cfg, names, _ = trained_maskrcnn
    path = torch_to_onnx(model, cfg, names, tmp_path / "strict.onnx", (256, 256), score_thresh=0.9999)
    res = segrt.load(path).predict(np.zeros((100, 120), np.uint8))
    assert len(res) == 0 and res.masks.shape == (0, 100, 120) and res.boxes.shape == (0, 4)


def test_mask_head_runs_on_the_detections_only(portable, coco_demo):
    """The mask head sees one row per detection, not the max_detections padding; rows past
    num_detections are zeros (the heads' cost grows with the detections, as in torchvision)."""
    import onnxruntime as ort

    graph = onnx.load(str(portable))
    head_input = next(n.input[0] for n in graph.graph.node if n.name.startswith("/mask_head/") and n.op_type == "Conv")
    runtime = segrt.load(portable)
    feed, _ = runtime.preprocess(_val_images(coco_demo)[0])
    graph.graph.output.append(onnx.helper.make_tensor_value_info(head_input, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(graph.SerializeToString())  # the graph, plus the head's input as an output
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed), strict=True))
    n, padded = int(outputs["num_detections"][0]), outputs["masks"].shape[0]
    assert 0 < n < padded == runtime.metadata["max_detections"]
    assert not outputs["masks"][n:].any() and outputs["masks"][:n].max(axis=(1, 2)).min() > 0
    assert outputs[head_input].shape[0] == n


def test_uint8_graph_close_to_float_graph(trained_maskrcnn, portable, coco_demo, tmp_path):
    model, cfg, names, _ = trained_maskrcnn
    path = torch_to_onnx(model, cfg, names, tmp_path / "u8.onnx", EXPORT_HW, input_dtype="uint8")
    img = _val_images(coco_demo)[0]
    a, b = segrt.load(path).predict(img), segrt.load(portable).predict(img)
    assert segrt.load(path).metadata["normalization"]["scale"] == pytest.approx(1 / 255)
    assert abs(len(a) - len(b)) <= max(2, len(b) // 10)


def test_checkpoint_key_mismatch_names_keys(tmp_path):
    sd = build_model(MaskRCNNConfig()).state_dict()
    torch.save(sd, tmp_path / "small.pth")
    with pytest.raises(ArtifactError, match=r"does not fit architecture 'maskrcnn_resnet50_fpn'.*missing keys"):
        load_torchvision_state_dict(tmp_path / "small.pth", "maskrcnn_resnet50_fpn", 2)


def test_coco_missing_images_and_degenerate_annotations(coco_demo, tmp_path):
    doc = json.loads((coco_demo / "val.json").read_text())
    with pytest.raises(DataError, match="missing from"):
        load_coco(coco_demo / "val.json", tmp_path)
    for ann in doc["annotations"]:
        ann["bbox"] = [0, 0, 0, 0]
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match="no usable annotations"):
        load_coco(tmp_path / "bad.json", coco_demo / "val")


def test_keypoint_head_and_decoding_match_torchvision():
    """Keypoint R-CNN: graph heatmaps + segrt decoding (bicubic resize, argmax) equal torchvision's keypoints."""
    from segrt.rcnn.keypoints import heatmaps_to_keypoints

    torch.manual_seed(0)
    cfg = MaskRCNNConfig.paper("keypointrcnn_resnet50_fpn", 2)
    cfg.min_size, cfg.max_size, cfg.rpn_pre_nms_top_n_test, cfg.rpn_post_nms_top_n_test = 256, 320, 200, 100
    model = build_model(cfg).eval()
    img = np.random.default_rng(0).integers(0, 256, (256, 320, 3), dtype=np.uint8)
    ref = TorchvisionPredictor(model, ["__background__", "person"], canvas_hw=(256, 320)).predict(img)
    deploy = DeployRCNN(model, (256, 320))
    x = torch.from_numpy(img.transpose(2, 0, 1)[None].copy()).float() / 255
    with torch.no_grad():
        boxes, _scores, _labels, heatmaps, num = deploy(x, torch.tensor([256.0, 320.0]))
    assert deploy.output_names == ["boxes", "scores", "labels", "keypoint_heatmaps", "num_detections"]
    n = int(num)
    assert n == len(ref) > 0 and heatmaps.shape == (deploy.max_detections, 17, 56, 56)
    kp = heatmaps_to_keypoints(heatmaps[:n].numpy(), boxes[:n].numpy())
    np.testing.assert_allclose(kp[:, :, :2], ref.keypoints[:, :, :2], atol=1e-3)
    np.testing.assert_allclose(kp[:, :, 2], ref.keypoints[:, :, 2], atol=1e-3)


def test_int8_graph_keeps_coco_ap_close(portable, coco_demo, tmp_path):
    """The int8 Mask R-CNN (convolutions quantized, calibrated on the training image) stays within 0.05 AP50."""
    from segrt.export.quantize import calibration_images, quantize_int8

    int8 = quantize_int8(portable, tmp_path / "int8.onnx", calibration_images(coco_demo / "train"))
    assert segrt.load(int8).backend.metadata["quantization"]["ops"] == ["Conv"]
    fp32_ap = segrt.load(portable).evaluate(coco_demo / "val.json")
    int8_ap = segrt.load(int8).evaluate(coco_demo / "val.json")
    assert fp32_ap["segm_AP50"] > 0.1  # a (briefly) trained_maskrcnn model, or the comparison says nothing
    assert abs(int8_ap["segm_AP50"] - fp32_ap["segm_AP50"]) < 0.05
