"""Keypoint R-CNN: synthetic pose data, training, heatmap decoding, export parity, OKS AP, drawing.

References: torchvision's ``heatmaps_to_keypoints`` and ``F.interpolate`` for the decoding,
torchvision eager for the exported graphs, pycocotools for the COCO files and OKS AP.
The model is a small keypointrcnn_resnet18_fpn trained for a few steps on the synthetic data
(so BatchNorm statistics and weights are not an untouched init), at 128x128.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs torch (pip install -e '.[train]')")

import segrt  # noqa: E402
from segrt.export.checkpoint import load_checkpoint  # noqa: E402
from segrt.export.cli import add_rcnn_train_arguments, cmd_train_rcnn  # noqa: E402
from segrt.export.maskrcnn.coco import CocoTrainSet, load_coco  # noqa: E402
from segrt.export.maskrcnn.models import model_from_checkpoint  # noqa: E402
from segrt.export.maskrcnn.onnx_export import torch_to_onnx  # noqa: E402
from segrt.export.maskrcnn.reference import TorchvisionPredictor  # noqa: E402
from segrt.export.maskrcnn.synthetic_pose import write_pose_dataset  # noqa: E402
from segrt.io.images import read_image  # noqa: E402
from segrt.rcnn.coco import evaluate  # noqa: E402
from segrt.rcnn.keypoints import (  # noqa: E402
    COCO_KEYPOINT_NAMES,
    COCO_SKELETON,
    bicubic_resize,
    draw_skeleton,
    heatmaps_to_keypoints,
)

SIZE = 128
HW = (SIZE, SIZE)


@pytest.fixture(scope="module")
def pose(tmp_path_factory) -> dict[str, Path]:
    return write_pose_dataset(tmp_path_factory.mktemp("pose"), n_train=8, n_val=6, size=SIZE, seed=3)


@pytest.fixture(scope="module")
def trained(pose, tmp_path_factory):
    """(model, cfg, class names, checkpoint path): 3 SGD steps through `segrt train keypointrcnn`'s code."""
    parser = argparse.ArgumentParser()
    add_rcnn_train_arguments(parser, "keypointrcnn")
    out = tmp_path_factory.mktemp("kp") / "kp.pt"
    args = parser.parse_args(
        [
            "--data",
            str(pose["train_json"]),
            "--out",
            str(out),
            "--steps",
            "3",
            "--batch-size",
            "2",
            "--min-size",
            str(SIZE),
            "--max-size",
            str(SIZE),
            "--anchor-sizes",
            "8",
            "16",
            "32",
            "64",
            "128",
            "--crop",
            "0",
            "--flips",
            "none",
            "--no-progress",
        ]
    )
    ckpt = load_checkpoint(cmd_train_rcnn(args))
    model, cfg, names = model_from_checkpoint(ckpt)
    return model, cfg, names, out


@pytest.fixture(scope="module")
def portable(trained, tmp_path_factory) -> Path:
    model, cfg, names, _ = trained
    return torch_to_onnx(model, cfg, names, tmp_path_factory.mktemp("onnx") / "kp.onnx", HW)


def _val_images(pose) -> list[np.ndarray]:
    return [read_image(p) for p in sorted(pose["val_images"].glob("*.png"))]


# -- decoding --------------------------------------------------------------------------------


def test_bicubic_reference_equals_torch_interpolate():
    """PyTorch's CPU bicubic (align_corners=False) reproduced in numpy, up and down, to 1e-6."""
    F = torch.nn.functional
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(3, 56, 56)).astype(np.float32)
    for hw in [(120, 300), (37, 91), (3, 1), (56, 56), (9, 200)]:
        want = F.interpolate(torch.from_numpy(maps)[:, None], size=hw, mode="bicubic", align_corners=False)[:, 0]
        np.testing.assert_allclose(bicubic_resize(maps, hw), want.numpy(), rtol=0, atol=1e-6)


def test_decoding_equals_torchvision_heatmaps_to_keypoints():
    """Same argmax cell (so identical x, y) and the same score as torchvision, noisy and smooth maps."""
    from torchvision.models.detection.roi_heads import heatmaps_to_keypoints as tv_decode

    rng = np.random.default_rng(1)
    for trial in range(6):
        n = 6
        maps = rng.normal(size=(n, 17, 56, 56)).astype(np.float32)
        if trial % 2:  # smooth, peaked maps like a trained head's
            maps = 8 * torch.nn.functional.avg_pool2d(torch.from_numpy(maps), 7, 1, 3).numpy()
        x1, y1 = rng.uniform(0, 300, n), rng.uniform(0, 300, n)
        w, h = rng.uniform(0.2, 400, n), rng.uniform(0.2, 400, n)  # includes boxes under 1 px
        rois = np.stack([x1, y1, x1 + w, y1 + h], 1).astype(np.float32)
        xy, scores = tv_decode(torch.from_numpy(maps), torch.from_numpy(rois))
        ours = heatmaps_to_keypoints(maps, rois)
        np.testing.assert_array_equal(ours[:, :, :2], xy[:, :, :2].numpy())
        np.testing.assert_allclose(ours[:, :, 2], scores.numpy(), rtol=1e-6, atol=1e-6)


# -- data ------------------------------------------------------------------------------------


def test_pose_dataset_is_deterministic_coco_keypoints(pose, tmp_path):
    from pycocotools.coco import COCO

    again = write_pose_dataset(tmp_path / "more", n_train=9, n_val=6, size=SIZE, seed=3)
    for name in ("000000.png", "000007.png"):  # image i depends only on (seed, split, i)
        assert (again["train_images"] / name).read_bytes() == (pose["train_images"] / name).read_bytes()
    assert again["val_json"].read_text() == pose["val_json"].read_text()
    doc = json.loads(pose["train_json"].read_text())
    (cat,) = doc["categories"]
    assert cat["name"] == "person" and cat["keypoints"] == COCO_KEYPOINT_NAMES
    assert [tuple(p) for p in cat["skeleton"]] == COCO_SKELETON
    gt = COCO(str(pose["train_json"]))
    seen = set()
    for ann in doc["annotations"]:
        kp = np.asarray(ann["keypoints"], np.float32).reshape(17, 3)
        v = kp[:, 2]
        seen |= set(v.tolist())
        assert set(v.tolist()) <= {0, 1, 2} and ann["num_keypoints"] == int((v > 0).sum())
        assert (kp[v == 0, :2] == 0).all() and ((kp[v > 0, :2] >= 0) & (kp[v > 0, :2] < SIZE)).all()
        mask = gt.annToMask(ann)
        assert abs(int(mask.sum()) - ann["area"]) <= 0.25 * ann["area"] + 20  # polygons of the visible silhouette
        x, y, _w, _h = ann["bbox"]
        ys, xs = np.nonzero(mask)
        assert abs(xs.min() - x) <= 1 and abs(ys.min() - y) <= 1
    assert len({a["image_id"] for a in doc["annotations"]}) == 8 and 2 in seen
    assert 1 in seen or 0 in seen  # some keypoints occluded by a figure in front or out of frame


def test_pose_dataset_trains_mask_rcnn_unchanged(pose):
    """The same files are an ordinary COCO instances set for Mask R-CNN."""
    data = CocoTrainSet(load_coco(pose["train_json"], pose["train_images"]))
    image, target = data.sample(np.random.default_rng(0), crop=96)
    assert image.shape == (3, 96, 96) and target["masks"].shape[1:] == (96, 96) and "keypoints" not in target
    assert len(target["boxes"]) == len(target["labels"]) == len(target["masks"])


def _coded_dataset(tmp_path: Path) -> dict[str, Path]:
    """One 64x64 image whose red = x and green = y, one figure with all 17 keypoints labelled."""
    from segrt.io.images import write_png

    yy, xx = np.mgrid[0:64, 0:64]
    write_png(tmp_path / "img" / "a.png", np.stack([xx * 4, yy * 4, np.zeros_like(xx)], -1).astype(np.uint8))
    rng = np.random.default_rng(0)
    kp = np.concatenate([rng.uniform(10, 54, (17, 2)), np.full((17, 1), 2)], 1)
    doc = {
        "images": [{"id": 1, "file_name": "a.png", "height": 64, "width": 64}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "area": 2000.0,
                "bbox": [5, 5, 54, 54],
                "segmentation": [[5, 5, 59, 5, 59, 59, 5, 59]],
                "keypoints": kp.reshape(-1).round(2).tolist(),
                "num_keypoints": 17,
            }
        ],
        "categories": [
            {"id": 1, "name": "person", "keypoints": COCO_KEYPOINT_NAMES, "skeleton": [list(p) for p in COCO_SKELETON]}
        ],
    }
    (tmp_path / "a.json").write_text(json.dumps(doc))
    return {"json": tmp_path / "a.json", "images": tmp_path / "img", "kp": kp.round(2)}


def test_crops_and_flips_keep_keypoints_consistent(tmp_path):
    """Crop offset and mirroring read back from the coded image; left/right swap on a mirror; out of crop -> v 0."""
    d = _coded_dataset(tmp_path)
    data = CocoTrainSet(load_coco(d["json"], d["images"]), keypoints=True)
    swap = [
        COCO_KEYPOINT_NAMES.index(n.replace("left_", "T").replace("right_", "left_").replace("T", "right_"))
        for n in COCO_KEYPOINT_NAMES
    ]
    rng = np.random.default_rng(0)
    seen_flip = seen_out = 0
    for _ in range(12):
        image, target = data.sample(rng, crop=40, flips="horizontal")
        red = image[0].numpy() * 255 / 4
        flipped = red[0, 0] > red[0, -1]
        x0 = round(red[0, -1] if flipped else red[0, 0])
        y0 = round(float(image[1, 0, 0]) * 255 / 4)
        want = d["kp"].copy()
        want[:, 0] -= x0
        want[:, 1] -= y0
        out = (want[:, 0] < 0) | (want[:, 1] < 0) | (want[:, 0] >= 40) | (want[:, 1] >= 40)
        want[out] = 0
        if flipped:
            want[~out, 0] = 40 - want[~out, 0]
            want = want[swap]
        got = target["keypoints"].numpy()[0]
        np.testing.assert_allclose(got, want, atol=1e-4)
        seen_flip += int(flipped)
        seen_out += int(out.any())
    assert seen_flip and seen_out


# -- training, export, parity --------------------------------------------------------------


def test_training_writes_a_keypoint_checkpoint(trained):
    _model, cfg, names, path = trained
    ckpt = load_checkpoint(path)
    assert ckpt["kind"] == "keypointrcnn" and ckpt["extra"]["steps"] == 3 and names == ["__background__", "person"]
    assert cfg.arch == "keypointrcnn_resnet18_fpn" and list(cfg.keypoint_names) == COCO_KEYPOINT_NAMES


def _match(a, b) -> None:
    assert len(a) == len(b) > 0
    assert np.array_equal(a.labels, b.labels)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
    np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-2)
    assert np.abs(a.keypoints[:, :, :2] - b.keypoints[:, :, :2]).max() <= 0.5
    np.testing.assert_allclose(a.keypoints[:, :, 2], b.keypoints[:, :, 2], atol=1e-3)


def test_portable_graph_matches_torchvision(trained, portable, pose):
    import cv2

    model, _cfg, names, _ = trained
    runtime = segrt.load(portable)
    meta = runtime.metadata
    assert (
        meta["kind"] == "keypointrcnn" and meta["num_keypoints"] == 17 and meta["keypoint_names"] == COCO_KEYPOINT_NAMES
    )
    ref = TorchvisionPredictor(model, names, canvas_hw=HW)
    images = _val_images(pose)[:3]
    images.append(cv2.resize(images[0], (100, 100), interpolation=cv2.INTER_AREA))  # another size
    for img in images:
        _match(runtime.predict(img), ref.predict(img))


def _self_gt(predictions: list, pose, path: Path) -> Path:
    """A keypoint GT file made of eager's confident detections: AP near 1, so any keypoint drift lowers it."""
    doc = json.loads(pose["val_json"].read_text())
    anns = []
    for img_id, res in enumerate(predictions, start=1):
        for i in np.argsort(-res.scores, kind="stable")[:10]:  # COCO keypoint AP counts 20 detections per image
            x1, y1, x2, y2 = (float(v) for v in res.boxes[i])
            kp = res.keypoints[i].copy()
            kp[:, 2] = 2
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": img_id,
                    "category_id": 1,
                    "iscrowd": 0,
                    "area": (x2 - x1) * (y2 - y1),
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "keypoints": kp.reshape(-1).tolist(),
                    "num_keypoints": 17,
                }
            )
    doc["annotations"] = anns
    path.write_text(json.dumps(doc))
    return path


def test_oks_ap_identical_to_torchvision(trained, portable, pose, tmp_path):
    model, _cfg, names, _ = trained
    runtime, ref = segrt.load(portable), TorchvisionPredictor(model, names, canvas_hw=HW)
    ours = evaluate(runtime, pose["val_json"], pose["val_images"])
    theirs = evaluate(ref, pose["val_json"], pose["val_images"])
    keys = ["keypoints_AP", "keypoints_AP50", "keypoints_AP75", "keypoints_APM", "keypoints_APL", "bbox_AP"]
    assert set(keys) <= set(ours) and "segm_AP" not in ours
    assert all(abs(ours[k] - theirs[k]) < 1e-9 for k in keys), {k: (ours[k], theirs[k]) for k in keys}
    gt = _self_gt([ref.predict(img) for img in _val_images(pose)], pose, tmp_path / "self.json")
    ours, theirs = evaluate(runtime, gt, pose["val_images"]), evaluate(ref, gt, pose["val_images"])
    assert theirs["keypoints_AP"] > 0.5  # a GT this sensitive is only worth comparing on if eager scores high on it
    assert all(abs(ours[k] - theirs[k]) < 1e-9 for k in keys[:3]), {k: (ours[k], theirs[k]) for k in keys}


def test_tensorrt_graph_computes_the_same(portable, pose, tmp_path):
    pytest.importorskip("onnxruntime_extensions", reason="needs onnxruntime_extensions (pip install -e '.[dev]')")
    import onnx

    from segrt.export.maskrcnn.ort_plugin import standin_session
    from segrt.export.maskrcnn.trt_graph import plugin_nodes, portable_to_tensorrt

    trt_path = portable_to_tensorrt(portable, tmp_path / "kp_trt.onnx")
    nodes = plugin_nodes(onnx.load(str(trt_path)))
    assert sorted(n.name.split("_Segrt")[0] for n in nodes) == ["box_pool", "keypoint_pool"]
    session = standin_session(trt_path)
    runtime = segrt.load(portable)
    names = [o.name for o in session.get_outputs()]
    for img in _val_images(pose)[:2]:
        feed, geometry = runtime.preprocess(img)
        want = runtime.backend.run(feed)
        got = dict(zip(names, session.run(None, feed), strict=True))
        n = int(want["num_detections"][0])
        assert int(got["num_detections"][0]) == n > 0
        assert np.array_equal(got["labels"][:n], want["labels"][:n])
        np.testing.assert_allclose(got["scores"][:n], want["scores"][:n], atol=1e-4)
        a, b = runtime.postprocess(got, geometry), runtime.postprocess(want, geometry)
        assert np.abs(a.keypoints[:, :, :2] - b.keypoints[:, :, :2]).max() <= 0.5


# -- drawing ---------------------------------------------------------------------------------


def test_skeleton_drawn_in_the_person_colour():
    canvas = np.zeros((64, 64, 3), np.uint8)
    kp = np.zeros((17, 3), np.float32)
    kp[:, :2] = 32.5
    kp[COCO_KEYPOINT_NAMES.index("left_shoulder"), :2] = (10.5, 10.5)
    kp[COCO_KEYPOINT_NAMES.index("left_elbow"), :2] = (50.5, 10.5)
    draw_skeleton(canvas, kp, (255, 0, 0))
    assert (canvas[10, 20:40] == (255, 0, 0)).all()  # the shoulder-elbow limb
    assert not canvas[50:, :20].any()


def test_predictor_draws_skeletons(portable, pose):
    runtime = segrt.load(portable)
    img = _val_images(pose)[0]
    res = runtime.predict(img)
    out = runtime.draw(img, res)
    assert out.shape == img.shape and out.dtype == np.uint8 and (out != img).any()


def test_lr_schedule_follows_the_time_budget_when_it_ends_first():
    from segrt.export.maskrcnn.train import TrainOptions, lr_at

    opts = TrainOptions(
        Path("t.json"), Path("t"), Path("o.pt"), steps=1000, lr=0.02, warmup_steps=10, time_budget_s=100.0
    )
    assert lr_at(50, opts, elapsed_s=10.0) == pytest.approx(0.02)
    assert lr_at(50, opts, elapsed_s=75.0) == pytest.approx(0.002)  # 75% of the budget: first drop
    assert lr_at(50, opts, elapsed_s=95.0) == pytest.approx(0.0002)
    assert lr_at(950, opts, elapsed_s=0.0) == pytest.approx(0.0002)  # or by steps, as before


def test_bench_keypointrcnn_writes_the_shared_report(trained, tmp_path):
    """`segrt bench keypointrcnn` runs on the shared harness: torchvision is the reference of every runtime row."""
    from segrt.bench import SCHEMA, read_json
    from segrt.cli import main

    out = tmp_path / "kp.json"
    assert (
        main(
            [
                "bench",
                "keypointrcnn",
                "--models",
                "small",
                "--checkpoint",
                str(trained[3]),
                "--pick",
                "--runs",
                "1",
                "--warmup",
                "0",
                "--threads",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = read_json(out)
    assert report.schema == SCHEMA and {r.group for r in report.rows} == {f"small {SIZE}x{SIZE}"}
    rows = {(r.variant, r.mode): r for r in report.rows}
    assert rows[("torchvision eager fp32", "end_to_end")].reference
    ort = rows[("onnxruntime fp32", "end_to_end")]
    assert ort.agreement["detections"] == ort.agreement["reference_detections"]
    assert ort.agreement["detections"] > 0 and ort.agreement["bbox_ap"] == pytest.approx(1.0)
    assert report.pick[0]["budget"] == {"bbox_ap": 0.995}


def test_bench_keypointrcnn_refuses_a_mask_rcnn_checkpoint(tmp_path, capsys):
    from dataclasses import asdict

    from segrt.cli import main
    from segrt.export.checkpoint import save_checkpoint
    from segrt.export.maskrcnn.models import MaskRCNNConfig

    ckpt = save_checkpoint(tmp_path / "m.pt", "maskrcnn", asdict(MaskRCNNConfig()), ["__background__", "x"], {})
    assert (
        main(
            [
                "bench",
                "keypointrcnn",
                "--models",
                "small",
                "--checkpoint",
                str(ckpt),
                "--runs",
                "1",
                "--out",
                str(tmp_path / "kp.json"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "holds a maskrcnn model, not a keypointrcnn" in err and "segrt bench maskrcnn" in err
