"""Triton model repository writer and wire format, without a server: configs parse under Triton's own
ModelConfig schema, writes are atomic, masks survive the crop encoding bit for bit."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="needs tritonclient (pip install 'segrt[serve]')")

from segrt.errors import ArtifactError, InputError
from segrt.serve import protocol
from segrt.serve.repository import (
    config_text,
    network_config,
    parse_config,
    pipeline_config,
    pipeline_models,
    write_model_repository,
)


def test_repository_layout_and_configs(tiny_unet, tmp_path):
    _, onnx_path = tiny_unet
    repo = write_model_repository([onnx_path], tmp_path / "repo", instances=2, max_batch=4)
    assert sorted(p.name for p in repo.iterdir()) == ["tiny", "tiny_net"]
    assert (repo / "tiny/1/tiny.onnx").read_bytes() == onnx_path.read_bytes()
    assert "segrt.serve.triton_model" in (repo / "tiny/1/model.py").read_text()
    pipe = parse_config((repo / "tiny/config.pbtxt").read_text())
    assert pipe.backend == "python" and pipe.max_batch_size == 4 and pipe.dynamic_batching is not None
    assert [(g.kind, g.count) for g in pipe.instance_group] == [(2, 2)]  # KIND_CPU = 2 in model_config.proto
    assert {i.name for i in pipe.input} == {"image", "image_uint16", "image_float32", "encoded", "tta"}
    assert all(i.optional for i in pipe.input)
    assert [o.name for o in pipe.output] == ["classes", "instances", "probs"]
    assert json.loads(pipe.parameters["segrt_metadata"].string_value)["kind"] == "unet"
    net = parse_config((repo / "tiny_net/config.pbtxt").read_text())
    assert net.platform == "onnxruntime_onnx" and (repo / "tiny_net/1/model.onnx").is_file()
    assert [(i.name, list(i.dims)) for i in net.input] == [("image", [-1, 1, -1, -1])]
    assert pipeline_models(repo) == ["tiny"]


def test_bls_pipeline_names_its_network_model(tiny_unet, tmp_path):
    _, onnx_path = tiny_unet
    repo = write_model_repository([onnx_path], tmp_path / "repo", bls_network=True, max_batch=0)
    pipe = parse_config((repo / "tiny/config.pbtxt").read_text())
    assert pipe.parameters["segrt_network_model"].string_value == "tiny_net"
    io = json.loads(pipe.parameters["segrt_network_io"].string_value)
    assert io["inputs"] == [["image", "float32", [-1, 1, -1, -1]]] and io["outputs"][0][0] == "probs"
    assert pipe.max_batch_size == 0 and pipe.dynamic_batching.max_queue_delay_microseconds == 0


def test_queue_policy_limits_and_fixed_channels(tiny_unet, tmp_path):
    """Every pipeline model has a bounded queue that rejects (not delays) when full or timed out, its limits, a
    U-Net image input with the network's channel count fixed, and no thread count baked in by the writing machine."""
    from segrt.serve.repository import ServingLimits

    limits = ServingLimits(max_queue=5, queue_timeout_s=2.5, max_probs_pixels=123, max_tta_pixels=45)
    repo = write_model_repository([tiny_unet[1]], tmp_path / "repo", limits=limits)
    pipe = parse_config((repo / "tiny/config.pbtxt").read_text())
    policy = pipe.dynamic_batching.default_queue_policy
    assert pipe.max_batch_size == 0
    assert (policy.max_queue_size, policy.default_timeout_microseconds, policy.allow_timeout_override) == (
        5,
        2_500_000,
        True,
    )
    assert policy.timeout_action == 0  # REJECT in model_config.proto
    assert {i.name: list(i.dims) for i in pipe.input}["image"] == [-1, -1, 1]
    p = {k: v.string_value for k, v in pipe.parameters.items()}
    assert (p["max_probs_pixels"], p["max_tta_pixels"], p["threads"]) == ("123", "45", "0")
    with pytest.raises(InputError, match="serving limits"):
        write_model_repository([tiny_unet[1]], tmp_path / "bad", limits=ServingLimits(max_queue=-1))


def test_bls_pipeline_of_an_engine_loads_without_a_gpu(tiny_unet, tmp_path):
    """Engines: the BLS pipeline's network inputs, outputs and optimization profile come from the engine header,
    and the pipeline model's predictor builds on them (it used to fail on an empty input list) and keeps its tiles
    inside the profile. No TensorRT is needed: the plan bytes are never read."""
    from google.protobuf import json_format

    import segrt
    from segrt.artifact.engine_file import write_engine_file
    from segrt.serve.bls import BLSBackend
    from segrt.serve.triton_model import _predictor_for

    meta = dict(segrt.load(tiny_unet[1]).metadata)
    meta["engine"] = {
        "tensorrt_version": "10.8.0.43",
        "compute_capability": [9, 0],
        "precision": "fp16",
        "profile": {"image": [[1, 1, 44, 44], [4, 1, 124, 124], [8, 1, 92, 92]]},
    }
    engine = write_engine_file(tmp_path / "u.engine", meta, b"plan bytes, never deserialized here")
    repo = write_model_repository([engine], tmp_path / "repo", bls_network=True)
    pipe = parse_config((repo / "u/config.pbtxt").read_text())
    config = json.loads(json_format.MessageToJson(pipe, preserving_proto_field_name=True))  # as Triton hands it over
    backend = BLSBackend(repo / "u/1/u.engine", "u_net", config, pb_utils=None)
    assert [(t.name, t.shape) for t in backend.inputs] == [("image", (None, 1, None, None))]
    assert [t.name for t in backend.outputs] == ["probs"]
    assert backend.profiles["image"][2] == (8, 1, 92, 92)
    predictor = _predictor_for(backend)
    assert predictor.kind == "unet" and predictor.max_tile == 92 and predictor.max_batch == 8


def test_engine_network_model_names_the_plugin(tmp_path):
    """A segrt engine becomes a tensorrt_plan model holding the bare plan; the config says how to load the plugin."""
    from segrt.artifact.engine_file import read_engine_file, write_engine_file

    meta = {
        "format_version": 1,
        "kind": "maskrcnn",
        "class_names": ["__background__", "cell"],
        "input_channels": 3,
        "normalization": {"scale": 1.0},
        "input_size": [64, 64],
        "engine": {
            "tensorrt_version": "10.8.0.43",
            "compute_capability": [9, 0],
            "precision": "fp16",
            "plugin": {
                "library": "libsegrt_trt_plugins.so",
                "version": "1",
                "namespace": "segrt",
                "ops": ["MultiLevelRoIAlign"],
            },
        },
    }
    engine = write_engine_file(tmp_path / "m.engine", meta, b"not-a-real-plan")
    repo = write_model_repository([engine], tmp_path / "repo", instances=3)
    pipe = parse_config((repo / "m/config.pbtxt").read_text())
    assert [(g.kind, g.count) for g in pipe.instance_group] == [(1, 3)]  # KIND_GPU, count per GPU
    text = (repo / "m_net/config.pbtxt").read_text()
    net = parse_config(text)
    assert net.platform == "tensorrt_plan" and "--backend-config=tensorrt,plugins=" in text
    assert (repo / "m_net/1/model.plan").read_bytes() == bytes(read_engine_file(engine)[1])


def test_invalid_config_is_refused():
    with pytest.raises(ArtifactError, match="not a valid Triton model config"):
        parse_config('name: "x" instance_group [{kind: KIND_TPU}]')
    with pytest.raises(ArtifactError, match="invalid Triton model config"):
        config_text({"name": "x", "max_batch": 3})
    assert "KIND_GPU" in config_text(network_config("n", True, [], [], 1))
    meta = {"kind": "maskrcnn", "class_names": ["bg", "a"]}
    cfg = parse_config(
        config_text(pipeline_config("m", "m.onnx", meta, gpu=False, instances=1, max_batch=2, max_pixels=10, threads=1))
    )
    assert [o.name for o in cfg.output] == list(protocol.RCNN_OUTPUTS)


def test_write_is_atomic_and_replaces(tiny_unet, tmp_path):
    _, onnx_path = tiny_unet
    repo = tmp_path / "repo"
    write_model_repository([onnx_path], repo, max_batch=2)
    with pytest.raises(ArtifactError, match="artifact not found"):
        write_model_repository([onnx_path, tmp_path / "missing.onnx"], repo)
    assert parse_config((repo / "tiny/config.pbtxt").read_text()).max_batch_size == 2  # old one untouched
    write_model_repository([onnx_path], repo, max_batch=0)
    assert parse_config((repo / "tiny/config.pbtxt").read_text()).max_batch_size == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]  # no temporary left behind
    with pytest.raises(InputError, match="same model name"):
        write_model_repository([onnx_path, onnx_path], tmp_path / "other")


def test_mask_crops_round_trip():
    rng = np.random.default_rng(0)
    masks = rng.random((5, 37, 53)) > 0.7
    masks[1] = False  # an empty mask
    masks[2, :, :] = False
    masks[2, 36, 52] = True  # one corner pixel
    boxes, bits = protocol.masks_to_crops(masks)
    assert boxes[1].tolist() == [0, 0, 0, 0] and boxes[2].tolist() == [52, 36, 53, 37]
    assert bits.nbytes < masks.size // 8 + 5
    np.testing.assert_array_equal(protocol.crops_to_masks(boxes, bits, (37, 53)), masks)
    empty = np.zeros((0, 10, 10), bool)
    np.testing.assert_array_equal(protocol.crops_to_masks(*protocol.masks_to_crops(empty), (10, 10)), empty)


def test_encoded_size_and_decode():
    img = np.zeros((30, 70, 3), np.uint8)
    png = cv2.imencode(".png", img)[1]
    jpg = cv2.imencode(".jpg", img)[1]
    tif = cv2.imencode(".tiff", img)[1]
    tif16 = cv2.imencode(".tiff", np.zeros((30, 70), np.uint16))[1]
    assert protocol.encoded_size(png) == (30, 70) == protocol.encoded_size(jpg)
    # sizes and channels from each header, as OpenCV then decodes them
    for data, fmt in ((png, "png"), (jpg, "jpeg"), (tif, "tiff"), (tif16, "tiff")):
        decoded = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        channels = decoded.shape[2] if decoded.ndim == 3 else 1
        assert protocol.encoded_header(data) == (fmt, *decoded.shape[:2], channels)
    for other in (cv2.imencode(".bmp", img)[1], cv2.imencode(".webp", img)[1], np.frombuffer(b"GIF89a....", np.uint8)):
        assert protocol.encoded_size(other) is None
        with pytest.raises(InputError, match="not a PNG, JPEG or TIFF"):
            protocol.decode_request_image(other, 10_000)
    assert protocol.decode_request_image(png, 10_000).shape == (30, 70, 3)
    with pytest.raises(InputError, match="exceeds this server's limit"):
        protocol.decode_request_image(png, 2000)
    with pytest.raises(InputError, match="cannot be decoded"):
        protocol.decode_request_image(png[:40], 10_000)
    with pytest.raises(InputError, match="uint8, uint16 or float32"):
        protocol.as_request_image(np.zeros((4, 4), np.int32))
    assert protocol.as_request_image(np.zeros((4, 4))).dtype == np.float32


def test_cli_errors_name_problem_and_fix(tmp_path, capsys, tiny_unet):
    from segrt.cli import main

    assert main(["serve", str(tmp_path / "missing.onnx")]) == 2
    err = capsys.readouterr().err
    assert "artifact not found" in err and "fix:" in err
    (tmp_path / "empty").mkdir()
    assert main(["serve", str(tmp_path / "empty")]) == 2
    assert "holds no segrt pipeline model" in capsys.readouterr().err
    assert main(["serve", str(tiny_unet[1]), "--write-repo", str(tmp_path / "repo"), "--max-batch", "0"]) == 0
    assert parse_config((tmp_path / "repo/tiny/config.pbtxt").read_text()).max_batch_size == 0


@pytest.mark.parametrize("kind", ["maskrcnn", "keypointrcnn"])
def test_instances_survive_the_wire_format(kind):
    """encode_result -> decode_result gives back the same Instances (masks as crops, keypoints as is)."""
    from segrt.rcnn.instances import Instances

    rng = np.random.default_rng(0)
    n, hw = 4, (40, 50)
    masks = rng.random((n, *hw)) > 0.8 if kind == "maskrcnn" else None
    keypoints = rng.random((n, 17, 3)).astype(np.float32) if kind == "keypointrcnn" else None
    inst = Instances(
        rng.random((n, 4)).astype(np.float32) * 40,
        rng.random(n).astype(np.float32),
        np.array([1, 2, 1, 7]),
        ["a", "b", "a", "7"],
        masks,
        keypoints,
        hw,
    )
    tensors = protocol.encode_result(kind, inst)
    assert set(tensors) == set(protocol.outputs_for(kind))
    back = protocol.decode_result(kind, tensors, ["bg", "a", "b"])
    assert back.class_names == inst.class_names and back.image_hw == hw
    for k in ("boxes", "scores", "labels", "masks", "keypoints"):
        a, b = getattr(back, k), getattr(inst, k)
        assert (a is None and b is None) or np.array_equal(a, b), k
