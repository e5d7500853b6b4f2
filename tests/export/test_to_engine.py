"""ONNX -> TensorRT engine builder: everything that needs no GPU, plus real builds where TensorRT exists.

Oracles: the U-Net's own geometry (``segrt.export.models.unet.output_size``, which simulates
the layers) for valid sizes; ONNX Runtime for numerics (fp16 conversion, engines).
"""

from __future__ import annotations

import importlib.util
import json
import shlex
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from segrt.artifact import metadata as md
from segrt.errors import ArtifactError, BackendUnavailableError, InputError
from segrt.export import to_engine as te
from segrt.export.models.unet import UNetConfig, geometry, output_size

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def unet_meta(config: UNetConfig, tile: int) -> dict:
    g = geometry(config)
    return {
        "kind": "unet",
        "class_names": ["bg", "fg"],
        "input_channels": config.in_channels,
        "normalization": {"scale": 1.0, "mean": [0.0], "std": [1.0]},
        "size_min": g.size_min,
        "size_step": g.size_step,
        "border": g.border,
        "tile_size": tile,
        "input_name": "image",
    }


PAPER = UNetConfig()  # depth 5, valid padding: 572 -> 388


def test_paper_unet_profile_spans_valid_sizes_up_to_the_tile():
    meta = unet_meta(PAPER, 572)
    prof = te.engine_profile_from_metadata(meta, input_shapes={"image": (None, 1, None, None)})
    assert prof == {"image": ((1, 1, 188, 188), (4, 1, 572, 572), (4, 1, 572, 572))}
    for shape in prof["image"]:
        assert output_size(PAPER, shape[2]) is not None and output_size(PAPER, shape[3]) is not None
    assert output_size(PAPER, 572) == 388


def test_off_grid_sizes_are_snapped_inwards_to_valid_sizes():
    meta = unet_meta(PAPER, 572)
    prof = te.engine_profile_from_metadata(meta, max_size=1000, min_size=200, max_batch=8, opt_batch=2)
    lo, opt, hi = prof["image"]
    assert output_size(PAPER, 1000) is None and output_size(PAPER, 200) is None
    # largest valid <= 1000 and smallest valid >= 200, found by brute force with the model's own geometry
    assert hi[2] == max(s for s in range(1, 1001) if output_size(PAPER, s) is not None) == 988
    assert lo[2] == min(s for s in range(200, 400) if output_size(PAPER, s) is not None) == 204
    assert (lo[0], opt[0], hi[0]) == (1, 2, 8)
    assert opt[2] == 572


def test_same_padding_unet_profile():
    cfg = UNetConfig(padding="same", depth=4)
    g = geometry(cfg)
    meta = unet_meta(cfg, 256)
    lo, opt, hi = te.engine_profile_from_metadata(meta, max_size=300)["image"]
    assert (lo[2], opt[2], hi[2]) == (g.size_min, 256, 296)
    assert all(output_size(cfg, s) == s for s in (lo[2], opt[2], hi[2]))


def test_max_below_min_is_an_input_error():
    with pytest.raises(InputError, match="below"):
        te.engine_profile_from_metadata(unet_meta(PAPER, 572), min_size=572, max_size=400)


def test_invalid_tile_in_metadata_is_an_artifact_error():
    with pytest.raises(ArtifactError, match="tile_size 570 is not a valid"):
        te.engine_profile_from_metadata(unet_meta(PAPER, 570))


def test_channel_mismatch_between_onnx_and_metadata():
    with pytest.raises(ArtifactError, match="3 channels"):
        te.engine_profile_from_metadata(unet_meta(PAPER, 572), input_shapes={"image": (None, 3, None, None)})


def test_metadata_input_name_must_exist_in_the_graph():
    with pytest.raises(ArtifactError, match="names input 'image'"):
        te.engine_profile_from_metadata(unet_meta(PAPER, 572), input_shapes={"x": (None, 1, None, None), "y": (2,)})


def test_maskrcnn_static_export_gives_a_fixed_profile():
    meta = {"kind": "maskrcnn", "input_channels": 3, "input_size": [800, 1344]}
    prof = te.engine_profile_from_metadata(meta, input_shapes={"image": (1, 3, 800, 1344), "image_size": (2,)})
    assert prof == {"image": ((1, 3, 800, 1344),) * 3, "image_size": ((2,),) * 3}


def test_maskrcnn_dynamic_batch_and_size_get_the_export_size():
    meta = {"kind": "maskrcnn", "input_channels": 3, "input_size": [800, 1344]}
    prof = te.engine_profile_from_metadata(meta, input_shapes={"image": (None, 3, None, None)}, max_batch=2)
    assert prof["image"] == ((1, 3, 800, 1344), (2, 3, 800, 1344), (2, 3, 800, 1344))


def test_unknown_dynamic_extra_input_needs_an_explicit_profile():
    meta = {"kind": "maskrcnn", "input_channels": 3, "input_size": [800, 1344]}
    with pytest.raises(ArtifactError, match="'scale' has dynamic dims"):
        te.engine_profile_from_metadata(meta, input_shapes={"image": (1, 3, 800, 1344), "scale": (None,)})


def test_normalize_profile_checks_order_and_accepts_a_bare_triple():
    p = te.normalize_profile(((1, 1, 188, 188), (2, 1, 380, 380), (2, 1, 572, 572)), ["image"])
    assert p["image"][1] == (2, 1, 380, 380)
    with pytest.raises(InputError, match="min <= opt <= max"):
        te.normalize_profile({"image": ((1, 1, 572, 572), (1, 1, 188, 188), (1, 1, 572, 572))}, ["image"])
    with pytest.raises(InputError, match="ambiguous"):
        te.normalize_profile(((1,), (1,), (1,)), ["a", "b"])


def test_profile_must_fit_the_graph_inputs():
    prof = {"image": ((1, 1, 188, 188), (1, 1, 188, 188), (1, 1, 188, 188))}
    with pytest.raises(InputError, match="does not fit input"):
        te.check_profile_against_inputs(prof, {"image": (None, 3, None, None)})
    with pytest.raises(InputError, match="no profile"):
        te.check_profile_against_inputs({}, {"image": (None, 1, None, None)})


def test_parse_profile_arg_round_trips_the_rebuild_form():
    from segrt.artifact.engine_file import profile_arg

    triple = ((1, 1, 188, 188), (2, 1, 380, 380), (2, 1, 572, 572))
    assert te.parse_profile_arg(profile_arg("image", triple)) == ("image", triple)
    with pytest.raises(InputError, match="NAME:MIN:OPT:MAX"):
        te.parse_profile_arg("image:1x1")


def test_trtexec_command_for_tensorrt_10_and_11():
    prof = {"image": ((1, 1, 188, 188), (4, 1, 572, 572), (4, 1, 572, 572))}
    cmd = te.trtexec_command(
        "unet.onnx", "unet.plan", prof, precision="fp16", workspace_gib=2, timing_cache="trt.cache", tensorrt_major=10
    )
    assert cmd == [
        "trtexec",
        "--onnx=unet.onnx",
        "--saveEngine=unet.plan",
        "--minShapes=image:1x1x188x188",
        "--optShapes=image:4x1x572x572",
        "--maxShapes=image:4x1x572x572",
        "--memPoolSize=workspace:2048M",
        "--fp16",
        "--timingCacheFile=trt.cache",
        "--skipInference",
    ]
    cmd11 = te.trtexec_command(
        "unet.onnx", "unet.plan", prof, precision="fp16", tensorrt_major=11, fp16_onnx="unet.fp16.onnx"
    )
    assert "--fp16" not in cmd11 and "--onnx=unet.fp16.onnx" in cmd11  # TensorRT 11: the ONNX carries fp16
    with pytest.raises(InputError, match=r"no --fp16.*fp32 engine"):  # no fp16 line from the fp32 ONNX
        te.trtexec_command("unet.onnx", "unet.plan", prof, precision="fp16", tensorrt_major=11)
    static = {"image": ((1, 3, 800, 1344),) * 3}
    cmd_rcnn = te.trtexec_command("m.onnx", "m.plan", static, plugin_library="libsegrt_trt_plugins.so")
    assert not any(c.startswith("--minShapes") for c in cmd_rcnn)
    assert "--dynamicPlugins=libsegrt_trt_plugins.so" in cmd_rcnn  # loadLibrary: TensorRT owns the creators


class _ParserError:
    """Plain record with the accessor names of TensorRT's IParserError, to test message formatting."""

    def __init__(self, node, name, op, desc):
        self._v = (node, name, op, desc)

    def node(self):
        return self._v[0]

    def node_name(self):
        return self._v[1]

    def node_operator(self):
        return self._v[2]

    def desc(self):
        return self._v[3]


def test_parser_errors_name_the_node_and_the_fix():
    problem, fix = te.format_parser_errors(
        [_ParserError(17, "/roi/MultiLevelRoiAlign", "SegrtMultiLevelRoiAlign", "Plugin not found")],
        plugin_ops=["SegrtMultiLevelRoiAlign"],
        plugin_loaded=False,
    )
    assert "node #17 '/roi/MultiLevelRoiAlign' (op SegrtMultiLevelRoiAlign): Plugin not found" in problem
    assert "plugin library" in fix
    problem, fix = te.format_parser_errors([_ParserError(3, "/up/Resize", "Resize", "unsupported mode")])
    assert "node #3" in problem and "not supported by this TensorRT" in fix


def conv_relu_model(path, channels=2, meta=None, dynamic=True):
    """Two layers (Conv 3x3 + Relu, Conv 1x1) with fixed random weights and segrt metadata."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(0, 0.5, (4, channels, 3, 3)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.normal(0, 0.1, 4).astype(np.float32), "b1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.5, (2, 4, 1, 1)).astype(np.float32), "w2")
    h = ["N", channels, "H", "W"] if dynamic else [1, channels, 32, 32]
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
            helper.make_node("Relu", ["c1"], ["r1"]),
            helper.make_node("Conv", ["r1", "w2"], ["probs"], kernel_shape=[1, 1]),
        ],
        "two_layers",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, h)],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 2, "H", "W"] if dynamic else [1, 2, 32, 32])],
        initializer=[w1, b1, w2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    meta = meta or {
        "kind": "unet",
        "class_names": ["bg", "fg"],
        "input_channels": channels,
        "normalization": {"scale": 1.0, "mean": [0.0] * channels, "std": [1.0] * channels},
        "size_min": 8,
        "size_step": 8,
        "border": 0,
        "tile_size": 64,
        "padding": "same",
        "input_name": "image",
        "output_name": "probs",
    }
    helper.set_model_props(model, {md.METADATA_KEY: md.encode(meta)})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_onnx_input_shapes_reads_dynamic_dims(tmp_path):
    model = onnx.load(str(conv_relu_model(tmp_path / "m.onnx")))
    assert te.onnx_input_shapes(model) == {"image": (None, 2, None, None)}


def test_fp16_conversion_keeps_float32_io_and_matches_onnxruntime(tmp_path):
    import onnxruntime as ort

    pytest.importorskip("onnxconverter_common", reason="needs onnxconverter_common (pip install -e '.[train]')")
    model = onnx.load(str(conv_relu_model(tmp_path / "m.onnx")))
    half = te.convert_to_fp16(model)
    assert half.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert half.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert {i.data_type for i in half.graph.initializer} == {TensorProto.FLOAT16}
    x = np.random.default_rng(1).normal(size=(2, 2, 24, 40)).astype(np.float32)
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    got = ort.InferenceSession(half.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=1e-2, atol=1e-2)
    assert np.abs(got - ref).max() > 0  # it really computed in fp16


def test_fp16_conversion_leaves_blocked_ops_in_fp32(tmp_path):
    pytest.importorskip("onnxconverter_common", reason="needs onnxconverter_common (pip install -e '.[train]')")
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("TopK", ["r", "k"], ["v", "i"], axis=-1)],
        "topk",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10])],
        [
            helper.make_tensor_value_info("v", TensorProto.FLOAT, [1, 3]),
            helper.make_tensor_value_info("i", TensorProto.INT64, [1, 3]),
        ],
        initializer=[numpy_helper.from_array(np.array([3], dtype=np.int64), "k")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    half = te.convert_to_fp16(model)
    topk = next(n for n in half.graph.node if n.op_type == "TopK")
    producer = {o: n for n in half.graph.node for o in n.output}[topk.input[0]]
    assert producer.op_type == "Cast" and helper.get_attribute_value(producer.attribute[0]) == TensorProto.FLOAT


def test_bad_inputs_fail_before_tensorrt_is_needed(tmp_path):
    with pytest.raises(ArtifactError, match="not found"):
        te.onnx_to_engine(tmp_path / "missing.onnx")
    plain = tmp_path / "plain.onnx"
    model = onnx.load(str(conv_relu_model(tmp_path / "m.onnx")))
    del model.metadata_props[:]
    onnx.save(model, str(plain))
    with pytest.raises(ArtifactError, match="no segrt metadata"):
        te.onnx_to_engine(plain)
    with pytest.raises(InputError, match="int8 is not supported"):
        te.onnx_to_engine(tmp_path / "m.onnx", precision="int8")
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07garbage")
    with pytest.raises(ArtifactError):
        te.onnx_to_engine(tmp_path / "junk.onnx")


@pytest.mark.skipif(HAS_TRT, reason="checks the message shown when TensorRT is NOT installed")
def test_without_tensorrt_the_builder_says_what_to_install(tmp_path):
    path = conv_relu_model(tmp_path / "m.onnx")
    with pytest.raises(BackendUnavailableError, match="TensorRT") as info:
        te.onnx_to_engine(path)
    assert "pip install" in info.value.fix and "tensorrt" in info.value.fix
    assert not (tmp_path / "m.engine").exists()


def test_cli_prints_the_trtexec_equivalent(tmp_path, capsys):
    path = conv_relu_model(tmp_path / "m.onnx")
    assert (
        te.main([str(path), "--print-trtexec", "--tensorrt-major", "10", "--precision", "fp16", "--max-batch", "2"])
        == 0
    )
    cmd = shlex.split(capsys.readouterr().out.strip())
    assert cmd[0] == "trtexec" and "--fp16" in cmd
    assert "--minShapes=image:1x2x8x8" in cmd and "--maxShapes=image:2x2x64x64" in cmd


def test_cli_fp16_trtexec_line_for_tensorrt_11_builds_from_the_fp16_onnx(tmp_path, capsys):
    """TensorRT 11's trtexec has no --fp16: the printed line must name an ONNX that computes in fp16."""
    pytest.importorskip("onnxconverter_common", reason="needs onnxconverter_common (pip install -e '.[train]')")
    path = conv_relu_model(tmp_path / "m.onnx")
    assert (
        te.main([str(path), "--print-trtexec", "--tensorrt-major", "11", "--precision", "fp16", "--max-batch", "2"])
        == 0
    )
    cmd = shlex.split(capsys.readouterr().out.strip())
    source = Path(next(c for c in cmd if c.startswith("--onnx=")).split("=", 1)[1])
    assert "--fp16" not in cmd and source != path and source.is_file()
    model = onnx.load(str(source))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)


@pytest.mark.parametrize("trt_double", ["11.4.0.106"], indirect=True)
def test_wrap_plan_refuses_to_call_a_tensorrt_11_plan_fp16_without_its_fp16_onnx(trt_double, tmp_path):
    pytest.importorskip("onnxconverter_common", reason="needs onnxconverter_common (pip install -e '.[train]')")
    from segrt.artifact.engine_file import read_engine_file, read_engine_metadata

    path = conv_relu_model(tmp_path / "m.onnx")
    engine = te.onnx_to_engine(path, tmp_path / "m.engine", max_batch=2)  # fp32: what trtexec builds from m.onnx
    (tmp_path / "m.plan").write_bytes(bytes(read_engine_file(engine)[1]))
    with pytest.raises(InputError, match="builds fp16 only from an fp16 ONNX"):
        te.wrap_plan(tmp_path / "m.plan", path, tmp_path / "w.engine", precision="fp16")
    fp16 = tmp_path / "m.fp16.onnx"
    onnx.save(te.convert_to_fp16(onnx.load(str(path))), str(fp16))
    wrapped = te.wrap_plan(tmp_path / "m.plan", path, tmp_path / "w.engine", precision="fp16", fp16_onnx=fp16)
    eng = read_engine_metadata(wrapped)["engine"]
    assert eng["fp16_mode"] == "fp16_onnx" and eng["source_fp16_onnx"] == "m.fp16.onnx"


def test_every_flag_of_the_rebuild_command_is_accepted_by_the_cli(tmp_path, capsys):
    from segrt.artifact.engine_file import rebuild_command

    path = conv_relu_model(tmp_path / "m.onnx")
    meta = json.loads(
        md.encode(
            {
                **md.decode(dict((p.key, p.value) for p in onnx.load(str(path)).metadata_props)["segrt"], "t"),
                "engine": {},
            }
        )
    )
    meta["engine"] = {
        "tensorrt_version": "10.8.0",
        "compute_capability": [9, 0],
        "precision": "fp16",
        "build": {
            "onnx": str(path),
            "engine": str(tmp_path / "m.engine"),
            "precision": "fp16",
            "workspace_gib": 1.5,
            "max_batch": 2,
            "opt_batch": 1,
            "max_size": 40,
            "min_size": 16,
            "timing_cache": str(tmp_path / "c.cache"),
            "profile": {"image": [[1, 2, 8, 8], [1, 2, 16, 16], [2, 2, 32, 32]]},
        },
    }
    argv = shlex.split(rebuild_command(meta))[3:]
    assert te.main(argv + ["--print-trtexec", "--tensorrt-major", "10"]) == 0
    out = capsys.readouterr().out
    assert "--maxShapes=image:2x2x32x32" in out and "--memPoolSize=workspace:1536M" in out


# ----------------------------------------------------------------------------- TensorRT + GPU


@pytest.mark.tensorrt
@pytest.mark.parametrize("precision,tol", [("fp32", 1e-3), ("fp16", 2e-2)])
def test_two_layer_engine_matches_onnxruntime(tmp_path, precision, tol):
    pytest.importorskip("tensorrt", reason="needs TensorRT and a CUDA GPU (pip install -e '.[gpu]' on a GPU machine)")
    from segrt.backends.onnxrt import OnnxRuntimeBackend
    from segrt.backends.tensorrt import TensorRTBackend

    onnx_path = conv_relu_model(tmp_path / "m.onnx")
    cache = tmp_path / "trt.cache"
    engine = te.onnx_to_engine(onnx_path, precision=precision, timing_cache=cache, max_batch=2, workspace_gib=1)
    assert cache.stat().st_size > 0
    x = np.random.default_rng(3).normal(size=(2, 2, 40, 24)).astype(np.float32)
    ref = OnnxRuntimeBackend(onnx_path).run({"image": x})["probs"]
    with TensorRTBackend(engine) as be:
        assert be.metadata["engine"]["precision"] == precision
        got = be.run({"image": x})["probs"]
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol)
    # the timing cache is reused: a second build reads it and leaves it readable
    te.onnx_to_engine(onnx_path, tmp_path / "again.engine", precision=precision, timing_cache=cache, max_batch=2)
    assert cache.stat().st_size > 0


@pytest.mark.tensorrt
def test_unet_engine_matches_onnxruntime_on_sizes_it_was_not_built_at(tiny_unet, tmp_path):
    pytest.importorskip("tensorrt", reason="needs TensorRT and a CUDA GPU (pip install -e '.[gpu]' on a GPU machine)")
    from segrt.backends.onnxrt import OnnxRuntimeBackend
    from segrt.backends.tensorrt import TensorRTBackend

    _, onnx_path = tiny_unet
    engine = te.onnx_to_engine(onnx_path, tmp_path / "u.engine", max_size=204, max_batch=2)
    ort_be, meta = OnnxRuntimeBackend(onnx_path), None
    with TensorRTBackend(engine) as be:
        meta = be.metadata
        for hw in [(meta["size_min"], meta["size_min"]), (meta["size_min"] + meta["size_step"], 204)]:
            x = np.random.default_rng(hw[1]).normal(size=(2, 1, *hw)).astype(np.float32)
            np.testing.assert_allclose(be.run({"image": x})["probs"], ort_be.run({"image": x})["probs"], atol=1e-3)
        with pytest.raises(InputError, match="outside the engine's optimization profile"):
            be.run({"image": np.zeros((1, 1, 220, 220), np.float32)})


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of x1y1x2y2 boxes a [n, 4] and b [m, 4]."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731 - a one-line helper of this test
    return inter / (area(a)[:, None] + area(b)[None, :] - inter + 1e-9)


@pytest.mark.tensorrt
@pytest.mark.slow
def test_maskrcnn_engine_with_the_plugin_matches_onnxruntime(tmp_path):
    """Portable graph on ONNX Runtime vs the TensorRT graph (segrt RoIAlign plugin) as an engine.

    Random weights give many near-tied scores, so detections are matched by IoU and label
    rather than by index; at least 95% must match, with close scores and masks.
    """
    pytest.importorskip("tensorrt", reason="needs TensorRT and a CUDA GPU (pip install -e '.[gpu]' on a GPU machine)")
    trt_graph = pytest.importorskip(
        "segrt.export.maskrcnn.trt_graph", reason="needs onnx-graphsurgeon (pip install -e '.[train]')"
    )
    import torch

    from segrt.backends.onnxrt import OnnxRuntimeBackend
    from segrt.backends.tensorrt import TensorRTBackend
    from segrt.export.maskrcnn.models import MaskRCNNConfig, build_model
    from segrt.export.maskrcnn.onnx_export import torch_to_onnx

    torch.manual_seed(0)
    cfg = MaskRCNNConfig()
    portable = torch_to_onnx(
        build_model(cfg).eval(),
        cfg,
        ["__background__", "nucleus"],
        tmp_path / "m.onnx",
        input_size=(256, 256),
        score_thresh=0.0,
    )
    trt_onnx = trt_graph.portable_to_tensorrt(portable, tmp_path / "m_trt.onnx")
    engine = te.onnx_to_engine(trt_onnx, tmp_path / "m.engine", workspace_gib=2)
    rng = np.random.default_rng(5)
    feed = {"image": rng.random((1, 3, 256, 256), dtype=np.float32), "image_size": np.array([256.0, 200.0], np.float32)}
    ref = OnnxRuntimeBackend(portable).run(feed)
    with TensorRTBackend(engine) as be:
        assert be.plugin_library is not None and be.metadata["engine"]["plugin"]["namespace"] == "segrt"
        got = be.run(feed)
    n_ref, n_got = int(ref["num_detections"][0]), int(got["num_detections"][0])
    assert abs(n_ref - n_got) <= max(1, n_ref // 20)
    iou = _iou(got["boxes"][:n_got], ref["boxes"][:n_ref])
    same_label = got["labels"][:n_got, None] == ref["labels"][None, :n_ref]
    match = np.where(same_label, iou, 0).argmax(1)
    ok = np.where(same_label, iou, 0).max(1) > 0.99
    assert ok.mean() >= 0.95
    np.testing.assert_allclose(got["scores"][:n_got][ok], ref["scores"][match[ok]], atol=1e-3)
    np.testing.assert_allclose(got["masks"][:n_got][ok], ref["masks"][match[ok]], atol=1e-2)
