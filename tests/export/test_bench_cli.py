"""`segrt bench unet|maskrcnn|model` at tiny sizes: each writes a segrt-bench/1 report with every variant.

One timed run of tiny random models: the assertions are on the report's shape and on the
agreement numbers (which compare outputs, not times), never on speed.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from segrt.bench import SCHEMA, read_json
from segrt.cli import main

ROW_KEYS = {
    "variant",
    "group",
    "mode",
    "reference",
    "p50_ms",
    "p90_ms",
    "mean_ms",
    "min_ms",
    "runs",
    "warmup",
    "throughput",
    "mpixel_per_s",
    "peak_rss_mb",
    "speedup",
    "agreement",
    "info",
}
TINY = ["--runs", "1", "--warmup", "0", "--threads", "1"]


def _check_schema(path: Path) -> dict:
    raw = json.loads(path.read_text())
    assert raw["schema"] == SCHEMA and raw["context"]["threads"] == 1
    for row in raw["rows"]:
        assert set(row) == ROW_KEYS and row["mode"] in ("model", "end_to_end") and row["runs"] == 1
        assert row["p50_ms"] > 0 and row["throughput"] > 0
        if row["reference"]:
            assert row["speedup"] == 1.0
    return raw


def _rows(raw: dict) -> dict[tuple[str, str], dict]:
    return {(r["variant"], r["mode"]): r for r in raw["rows"]}


def test_bench_unet_writes_the_report(tmp_path, capsys):
    out = tmp_path / "unet.json"
    assert (
        main(
            [
                "bench",
                "unet",
                "--depth",
                "3",
                "--base-channels",
                "4",
                "--size",
                "48",
                "--int8",
                "--pick",
                "--out",
                str(out),
                *TINY,
            ]
        )
        == 0
    )
    raw = _check_schema(out)
    rows = _rows(raw)
    names = {"pytorch eager fp32", "pytorch eager bf16", "onnxruntime fp32", "onnxruntime int8"}
    assert {v for v, _ in rows} >= names and {(v, m) for v in names for m in ("model", "end_to_end")} <= set(rows)
    assert rows[("pytorch eager fp32", "model")]["reference"]
    # ONNX Runtime fp32 computes what PyTorch fp32 computes: the same classes, probabilities within float error
    for mode in ("model", "end_to_end"):
        agree = rows[("onnxruntime fp32", mode)]["agreement"]
        assert agree["label_agreement"] > 0.999 and agree["max_abs_dprob"] < 1e-4
    assert raw["pick"][0]["mode"] == "end_to_end" and raw["pick"][0]["budget"] == {"iou": 0.995}
    assert raw["pick"][0]["variant"] is not None
    assert "pick (end to end, iou >= 0.995)" in capsys.readouterr().out
    assert out.with_suffix(".png").is_file() or "matplotlib" in capsys.readouterr().out


@pytest.fixture(scope="module")
def tiny_maskrcnn(tmp_path_factory) -> Path:
    """A random-weight resnet18-FPN Mask R-CNN shrunk to 64-96 px images and few proposals."""
    import torch

    from segrt.export.checkpoint import save_checkpoint
    from segrt.export.maskrcnn.models import MaskRCNNConfig, build_model

    torch.manual_seed(0)
    cfg = MaskRCNNConfig(
        min_size=64,
        max_size=96,
        rpn_pre_nms_top_n_test=50,
        rpn_post_nms_top_n_test=20,
        box_detections_per_img=10,
        box_score_thresh=0.0,
        fpn_channels=16,
        box_head_dim=32,
        mask_head_channels=8,
    )
    return save_checkpoint(
        tmp_path_factory.mktemp("maskrcnn") / "tiny.pt",
        cfg.kind,
        asdict(cfg),
        ["__background__", "nucleus"],
        build_model(cfg).state_dict(),
    )


def test_bench_maskrcnn_writes_the_report(tiny_maskrcnn, tmp_path, capsys, monkeypatch):
    import cv2

    from segrt.bench.artifacts import bench_image

    image = tmp_path / "image.png"
    cv2.imwrite(str(image), bench_image((64, 96), 3))
    out = tmp_path / "maskrcnn.json"
    assert (
        main(
            [
                "bench",
                "maskrcnn",
                "--models",
                "small",
                "--checkpoint",
                str(tiny_maskrcnn),
                "--image",
                str(image),
                "--pick",
                "--out",
                str(out),
                *TINY,
            ]
        )
        == 0
    )
    raw = _check_schema(out)
    rows = _rows(raw)
    assert {("torchvision eager fp32", m) for m in ("model", "end_to_end")} <= set(rows)
    assert {("onnxruntime fp32", m) for m in ("model", "end_to_end")} <= set(rows)
    assert {r["group"] for r in raw["rows"]} == {"small 64x96"}
    e2e = rows[("onnxruntime fp32", "end_to_end")]["agreement"]
    assert e2e["reference_detections"] == rows[("onnxruntime fp32", "end_to_end")]["agreement"]["detections"] == 10
    assert 0.0 <= e2e["bbox_ap"] <= 1.0 and "segm_ap" in e2e
    assert raw["context"]["groups"]["small 64x96"]["input_size"] == [64, 96]
    assert raw["pick"][0]["group"] == "small 64x96" and raw["pick"][0]["budget"] == {"segm_ap": 0.995}
    # random-weight R50 cannot judge runtimes that move proposals: its --pick says so, the small model's does not
    from segrt.export.maskrcnn import bench as maskrcnn_bench

    assert maskrcnn_bench.R50_PICK_NOTE not in capsys.readouterr().out
    monkeypatch.setattr(maskrcnn_bench, "run_bench", lambda *args: read_json(out))  # the timing is not the point
    assert main(["bench", "maskrcnn", "--models", "r50", "--pick", "--out", str(tmp_path / "r50.json"), *TINY]) == 0
    assert maskrcnn_bench.R50_PICK_NOTE in capsys.readouterr().out


def test_bench_model_times_artifacts_without_pytorch(tiny_unet, tmp_path):
    from segrt.bench import cli as bench_cli

    _, onnx_path = tiny_unet
    parser = argparse.ArgumentParser()
    bench_cli.add_arguments(parser)
    args = parser.parse_args(
        [str(onnx_path), str(onnx_path), "--size", "40", "40", "--pick", "--out", str(tmp_path / "model.json"), *TINY]
    )
    report = bench_cli.run(args)
    assert read_json(tmp_path / "model.json") == report
    assert [(r.variant, r.mode, r.reference) for r in report.rows] == [
        (onnx_path.name, "model", True),
        (onnx_path.name, "model", False),
        (onnx_path.name, "end_to_end", True),
        (onnx_path.name, "end_to_end", False),
    ]
    # the same file twice: exactly the same output
    for row in report.rows[1::2]:
        assert row.agreement["iou"] == 1.0 and row.agreement["max_abs_dprob"] == 0.0
    assert report.pick[0]["variant"] == onnx_path.name


def test_bench_model_compares_image_sizes(tiny_unet, tmp_path):
    from segrt.bench import cli as bench_cli

    _, onnx_path = tiny_unet
    parser = argparse.ArgumentParser()
    bench_cli.add_arguments(parser)
    report = bench_cli.run(
        parser.parse_args(
            [
                str(onnx_path),
                "--size",
                "24",
                "24",
                "--size",
                "40",
                "48",
                "--rss",
                "--modes",
                "end_to_end",
                "--out",
                str(tmp_path / "s.json"),
                *TINY,
            ]
        )
    )
    assert [(r.group, r.reference, r.mpixel_per_s is not None) for r in report.rows] == [
        ("24x24", True, True),
        ("40x48", True, True),
    ]
    assert report.rows[1].mpixel_per_s / report.rows[1].throughput == pytest.approx(40 * 48 / 1e6)
    assert all(r.peak_rss_mb is None or r.peak_rss_mb >= 0 for r in report.rows)


def test_bench_model_refuses_what_it_cannot_time(tiny_unet, tmp_path):
    from segrt.bench import cli as bench_cli
    from segrt.errors import InputError

    parser = argparse.ArgumentParser()
    bench_cli.add_arguments(parser)
    with pytest.raises(InputError, match="artifact not found"):
        bench_cli.run(parser.parse_args([str(tmp_path / "missing.onnx")]))
    with pytest.raises(InputError, match="--runs 0"):
        bench_cli.run(parser.parse_args([str(tiny_unet[1]), "--runs", "0"]))


def test_bench_model_runs_with_torch_blocked(tiny_unet, tmp_path):
    import subprocess
    import sys

    _, onnx_path = tiny_unet
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None; sys.modules['segrt.export'] = None\n"
        "import argparse\nfrom segrt.bench import cli\np = argparse.ArgumentParser(); cli.add_arguments(p)\n"
        f"cli.run(p.parse_args([{str(onnx_path)!r}, '--size', '40', '40', '--runs', '1', '--warmup', '0', "
        f"'--out', {str(tmp_path / 'm.json')!r}]))\nprint('ok')"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert run.stdout.strip().endswith("ok"), run.stderr
    assert np.isfinite(json.loads((tmp_path / "m.json").read_text())["rows"][0]["p50_ms"])
