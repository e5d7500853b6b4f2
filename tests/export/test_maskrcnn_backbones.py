"""The paper's other bodies (ResNet-101, ResNeXt-50/101 FPN): built from torchvision, loaded key for key,
exported, and equal to torchvision eager; their TensorRT graphs equal their portable graphs on the CPU.

Random weights (nothing can be downloaded here), BatchNorm statistics from two synthetic images
(``calibrate_batchnorm``: with the initial ones a random 101-layer body gives no proposals).
The graphs are exported once per architecture at 128x128 with few proposals and detections, so
the big bodies stay cheap; parity is checked on images the export trace did not see.
References: torchvision's ``resnet_fpn_backbone`` + ``MaskRCNN``/``KeypointRCNN`` (the models and
their state dicts), torchvision eager (the detections), ONNX Runtime (both graphs).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs torch (pip install -e '.[train]')")

import segrt  # noqa: E402
from segrt.errors import ArtifactError, InputError  # noqa: E402
from segrt.export.maskrcnn.models import (  # noqa: E402
    ARCHS,
    FPN_BODIES,
    MaskRCNNConfig,
    build_model,
    calibrate_batchnorm,
    load_torchvision_state_dict,
)
from segrt.export.maskrcnn.onnx_export import torch_to_onnx  # noqa: E402
from segrt.export.maskrcnn.reference import TorchvisionPredictor  # noqa: E402
from segrt.export.maskrcnn.synthetic_pose import render_image  # noqa: E402

HW = (128, 128)
NAMES = ["__background__", "person", "other"]
# In the default run: the deeper ResNet (R101) and the grouped-convolution ResNeXt body (X50), with the
# mask head. Behind `slow`: X101 (the same blocks as X50, 4x the weights: ~3 CPU minutes, ~5 GB) and the
# keypoint head on each body (a head the resnet18/R50 keypoint tests cover).
FAST = ["maskrcnn_resnet101_fpn", "maskrcnn_resnext50_32x4d_fpn"]
SLOW = [
    "maskrcnn_resnext101_32x8d_fpn",
    "keypointrcnn_resnet101_fpn",
    "keypointrcnn_resnext50_32x4d_fpn",
    "keypointrcnn_resnext101_32x8d_fpn",
]
EXPORTED = FAST + [pytest.param(a, marks=pytest.mark.slow) for a in SLOW]


def _images(seed: int) -> list[np.ndarray]:
    """Synthetic pose scenes: one at the export size, one smaller (padded by both sides alike)."""
    big, _ = render_image(np.random.default_rng([seed, 0]), HW[0])
    small, _ = render_image(np.random.default_rng([seed, 1]), HW[0])
    return [big, np.ascontiguousarray(small[:100, :120])]


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float() / 255.0


@pytest.fixture(scope="module")
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """(eval model, portable graph at 128x128, its segrt predictor) of the architecture ``request.param``."""
    arch = request.param
    torch.manual_seed(0)
    cfg = MaskRCNNConfig.paper(arch, len(NAMES))
    cfg.min_size, cfg.max_size = HW
    cfg.rpn_pre_nms_top_n_test, cfg.rpn_post_nms_top_n_test, cfg.box_detections_per_img = 200, 50, 8
    model = calibrate_batchnorm(build_model(cfg), [_tensor(im) for im in _images(7)])
    path = torch_to_onnx(model, cfg, NAMES, tmp_path_factory.mktemp(arch) / f"{arch}.onnx", HW)
    return model, path, segrt.load(path)


@torch.no_grad()
def _torchvision_heads(model: torch.nn.Module, image: np.ndarray) -> dict[str, torch.Tensor]:
    """torchvision's own RoI-head output for ``image`` on the export's 128x128 canvas, before pasting:
    boxes in the resized image's pixels, masks ``[N, 1, 28, 28]`` probabilities of the predicted class."""
    ref = TorchvisionPredictor(model, NAMES, canvas_hw=HW)
    images, _ = ref.transform([_tensor(image)])
    features = model.backbone(images.tensors)
    proposals, _ = model.rpn(images, features)
    detections, _ = model.roi_heads(features, proposals, images.image_sizes)
    return detections[0]


def _match(a: Any, b: Any, kind: str) -> None:
    """Detections ``a`` (segrt) equal ``b`` (torchvision eager, end to end): same labels, scores within 1e-3
    (test_maskrcnn_export's), boxes within 0.05 px, keypoint positions within 0.5 px (test_keypointrcnn's),
    keypoint scores within 1e-2.

    Boxes: the trained resnet18's tests allow 1e-3 relative / 1e-2 px; through 100+ random layers
    float32 rounding (ONNX Runtime's convolutions with BatchNorm folded in, against PyTorch's) moves the
    boxes of these untrained bodies by up to 0.016 px measured, 1e-4 of the box coordinates.
    """
    assert len(a) == len(b) > 0
    assert np.array_equal(a.labels, b.labels)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-3)
    np.testing.assert_allclose(a.boxes, b.boxes, rtol=0, atol=5e-2)
    if kind == "keypointrcnn":
        assert np.abs(a.keypoints[:, :, :2] - b.keypoints[:, :, :2]).max() <= 0.5
        # scores are heatmap logits (~0.3 to 6 here) read at boxes that moved by up to 0.016 px: 4e-3 off measured
        np.testing.assert_allclose(a.keypoints[:, :, 2], b.keypoints[:, :, 2], rtol=0, atol=1e-2)


@pytest.mark.parametrize("exported", EXPORTED, indirect=True)
def test_portable_graph_matches_torchvision(exported: tuple) -> None:
    """End to end: labels, scores, boxes (and keypoints) as torchvision's. Masks: each 28x28 mask the graph
    gives, thresholded at 0.5, has IoU >= 0.99 with torchvision's before pasting. (Pasted masks are compared
    on the trained resnet18 in test_maskrcnn_export: pasting truncates each box to whole pixels, so a
    ~4e-3 px box difference that crosses an integer moves a random net's speckled mask by a pixel.)"""
    model, _path, runtime = exported
    kind = runtime.metadata["kind"]
    assert runtime.metadata["arch"] in FPN_BODIES and kind == ARCHS[runtime.metadata["arch"]]
    ref = TorchvisionPredictor(model, NAMES, canvas_hw=HW)
    for image in _images(1):
        _match(runtime.predict(image), ref.predict(image), kind)
        if kind != "maskrcnn":
            continue
        feed, _ = runtime.preprocess(image)
        out = runtime.backend.run(feed)
        theirs = _torchvision_heads(model, image)
        n = int(out["num_detections"][0])
        assert n == len(theirs["boxes"]) > 0
        np.testing.assert_allclose(out["boxes"][:n], theirs["boxes"].numpy(), rtol=0, atol=5e-2)
        a, b = out["masks"][:n] > 0.5, theirs["masks"][:, 0].numpy() > 0.5
        iou = (a & b).sum((1, 2)) / np.maximum((a | b).sum((1, 2)), 1)
        assert iou.min() >= 0.99, iou


@pytest.mark.parametrize("exported", EXPORTED, indirect=True)
def test_tensorrt_graph_computes_the_same(exported: tuple, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime_extensions", reason="needs onnxruntime_extensions (pip install -e '.[dev]')")
    import onnx

    from segrt.export.maskrcnn.ort_plugin import standin_session
    from segrt.export.maskrcnn.trt_graph import plugin_nodes, portable_to_tensorrt

    _, path, runtime = exported
    trt_path = portable_to_tensorrt(path, tmp_path / "trt.onnx")
    nodes = plugin_nodes(onnx.load(str(trt_path)))
    head = "mask_pool" if runtime.metadata["kind"] == "maskrcnn" else "keypoint_pool"
    assert sorted(n.name.split("_Segrt")[0] for n in nodes) == sorted(["box_pool", head])
    session = standin_session(trt_path)
    names = [o.name for o in session.get_outputs()]
    for image in _images(2):
        feed, _ = runtime.preprocess(image)
        want = runtime.backend.run(feed)
        got = dict(zip(names, session.run(None, feed), strict=True))
        n = int(want["num_detections"][0])
        assert int(got["num_detections"][0]) == n > 0
        assert np.array_equal(got["labels"][:n], want["labels"][:n])
        np.testing.assert_allclose(got["boxes"][:n], want["boxes"][:n], rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(got["scores"][:n], want["scores"][:n], atol=1e-4)
        out = "masks" if "masks" in want else "keypoint_heatmaps"
        np.testing.assert_allclose(got[out][:n], want[out][:n], atol=1e-3)


@pytest.mark.parametrize(
    "arch", [a if ARCHS[a] == "maskrcnn" else pytest.param(a, marks=pytest.mark.slow) for a in FPN_BODIES]
)
def test_torchvision_state_dict_loads_key_for_key(arch: str, tmp_path: Path) -> None:
    """A model built the torchvision way (``resnet_fpn_backbone`` with its default FrozenBatchNorm2d, which
    saves no ``num_batches_tracked``) loads into ``arch`` with every tensor intact."""
    from torchvision.models.detection import KeypointRCNN, MaskRCNN
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

    torch.manual_seed(1)
    backbone = resnet_fpn_backbone(backbone_name=FPN_BODIES[arch], weights=None)
    theirs = (
        KeypointRCNN(backbone, num_classes=2, num_keypoints=17)
        if ARCHS[arch] == "keypointrcnn"
        else MaskRCNN(backbone, num_classes=2)
    )
    torch.save(theirs.state_dict(), tmp_path / "tv.pth")
    ours, _ = load_torchvision_state_dict(tmp_path / "tv.pth", arch, 2)
    mine = ours.state_dict()
    for key, value in theirs.state_dict().items():
        assert torch.equal(mine[key], value), key


def test_resnet50_fpn_v2_builds_as_torchvision_does(tmp_path: Path) -> None:
    """torchvision's v2 builder brings its own anchors: segrt's v2 has torchvision's keys and shapes, and
    refuses other anchors instead of ignoring them."""
    from torchvision.models.detection import maskrcnn_resnet50_fpn_v2

    ours = build_model(MaskRCNNConfig.paper("maskrcnn_resnet50_fpn_v2", 2)).state_dict()
    theirs = maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=2).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    cfg = MaskRCNNConfig.paper("maskrcnn_resnet50_fpn_v2", 2)
    cfg.anchor_sizes = (16, 32, 64, 128, 256)
    with pytest.raises(InputError, match="uses torchvision's anchors"):
        build_model(cfg)


def test_another_body_is_refused_naming_the_keys(tmp_path: Path) -> None:
    torch.save(build_model(MaskRCNNConfig.paper("maskrcnn_resnet101_fpn", 2)).state_dict(), tmp_path / "r101.pth")
    with pytest.raises(
        ArtifactError,
        match=r"does not fit architecture 'maskrcnn_resnext101_32x8d_fpn'.*"
        r"another shape: backbone\.body\.layer1\.0\.conv1\.weight",
    ):
        load_torchvision_state_dict(tmp_path / "r101.pth", "maskrcnn_resnext101_32x8d_fpn", 2)
    with pytest.raises(ArtifactError, match=r"unexpected keys: backbone\.body\.layer3\.6\."):
        load_torchvision_state_dict(tmp_path / "r101.pth", "maskrcnn_resnet50_fpn", 2)


def test_train_offers_the_new_archs(capsys: pytest.CaptureFixture[str]) -> None:
    from segrt.cli import main

    for kind in ("maskrcnn", "keypointrcnn"):
        with pytest.raises(SystemExit):
            main(["train", kind, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for arch in (a for a in FPN_BODIES if ARCHS[a] == kind):
            assert arch in text, (kind, arch)


def test_train_maskrcnn_arch_writes_a_checkpoint_of_that_arch(tmp_path: Path) -> None:
    """One SGD step of `segrt train maskrcnn --arch maskrcnn_resnet101_fpn` (the R50 recipe) on synthetic
    scenes; the checkpoint rebuilds that architecture."""
    from segrt.export.checkpoint import load_checkpoint
    from segrt.export.cli import add_rcnn_train_arguments, cmd_train_rcnn
    from segrt.export.maskrcnn.models import model_from_checkpoint
    from segrt.export.maskrcnn.synthetic_pose import write_pose_dataset

    data = write_pose_dataset(tmp_path / "pose", n_train=2, n_val=1, size=96, seed=0)
    parser = argparse.ArgumentParser()
    add_rcnn_train_arguments(parser, "maskrcnn")
    args = parser.parse_args(
        [
            "--arch",
            "maskrcnn_resnet101_fpn",
            "--data",
            str(data["train_json"]),
            "--out",
            str(tmp_path / "r101.pt"),
            "--steps",
            "1",
            "--batch-size",
            "1",
            "--min-size",
            "96",
            "--max-size",
            "96",
            "--crop",
            "0",
            "--no-progress",
        ]
    )
    model, cfg, _names = model_from_checkpoint(load_checkpoint(cmd_train_rcnn(args)))
    assert cfg.arch == "maskrcnn_resnet101_fpn" and cfg.box_batch_size_per_image == 128
    assert sum(p.numel() for p in model.parameters()) == sum(
        p.numel() for p in build_model(MaskRCNNConfig.paper("maskrcnn_resnet101_fpn", cfg.num_classes)).parameters()
    )


def test_calibrate_batchnorm_sets_the_images_statistics() -> None:
    """The first BatchNorm's running mean/var become the per-channel moments of its input on the image
    (computed here with plain torch), and every BatchNorm is back in eval mode with its momentum."""
    torch.manual_seed(0)
    model = build_model(MaskRCNNConfig(min_size=96, max_size=96))
    image = _tensor(_images(3)[0])
    calibrate_batchnorm(model, [image])
    body = model.backbone.body
    with torch.no_grad():
        x = body.conv1(model.transform([image])[0].tensors)
    np.testing.assert_allclose(body.bn1.running_mean.numpy(), x.mean((0, 2, 3)).numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(body.bn1.running_var.numpy(), x.var((0, 2, 3), unbiased=True).numpy(), rtol=1e-4)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and not model.training and all(not m.training and m.momentum == 0.1 for m in norms)
    with pytest.raises(InputError, match="at least one image"):
        calibrate_batchnorm(model, [])
