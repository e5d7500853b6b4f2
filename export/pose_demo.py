"""Keypoint R-CNN demo: synthetic pose data -> train -> export -> OKS AP (fp32, int8, eager) -> picture -> benchmark.

    python -m segrt.export.pose_demo --out pose_demo_out [--minutes 6] [--r50]

The last stage of ``segrt demo`` (into ``demo_out/pose``; ``--skip-pose`` leaves it out), about
3 minutes on 2 cores. Everything it reports is written to ``<out>/pose_summary.json``; the picture
to ``<out>/keypoint_demo.png``, the benchmark to ``<out>/bench_keypointrcnn.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

import segrt
from segrt.io.files import atomic_path
from segrt.io.images import read_image, write_png
from segrt.rcnn.coco import evaluate
from segrt.rcnn.instances import Instances
from segrt.rcnn.viz import draw_instances

# the recipe of the README's Keypoint R-CNN table (`segrt train keypointrcnn` options)
SIZE = 128
RECIPE = [
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
    "--batch-size",
    "2",
    "--lr",
    "0.02",
]


def _confident(result: Instances, min_score: float) -> Instances:
    keep = result.scores >= min_score
    return Instances(
        result.boxes[keep],
        result.scores[keep],
        result.labels[keep],
        [n for n, k in zip(result.class_names, keep, strict=True) if k],
        None,
        None if result.keypoints is None else result.keypoints[keep],
        result.image_hw,
        result.image,
    )


def _scaled(result: Instances, f: float) -> Instances:
    kp = None if result.keypoints is None else result.keypoints * np.array([f, f, 1], np.float32)
    return Instances(
        result.boxes * f,
        result.scores,
        result.labels,
        result.class_names,
        None,
        kp,
        (int(result.image_hw[0] * f), int(result.image_hw[1] * f)),
    )


def picture(
    predictor, val_json: Path, val_images: Path, out: Path, count: int = 3, scale: int = 2, min_score: float = 0.9
) -> Path:
    """Held-out images: ground-truth skeletons (top), predicted ones with score >= ``min_score`` (bottom)."""
    import cv2

    doc = json.loads(Path(val_json).read_text())
    by_image: dict[int, list] = {}
    for a in doc["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    chosen = [im for im in doc["images"] if len(by_image.get(im["id"], [])) >= 2][:count]
    columns = []
    for im in chosen:
        img = read_image(Path(val_images) / im["file_name"])
        big = cv2.resize(img, (img.shape[1] * scale, img.shape[0] * scale), interpolation=cv2.INTER_NEAREST)
        anns = by_image[im["id"]]
        kp = np.array([a["keypoints"] for a in anns], np.float32).reshape(len(anns), -1, 3)
        boxes = np.array(
            [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]] for a in anns],
            np.float32,
        )
        gt = Instances(
            boxes,
            np.ones(len(anns), np.float32),
            np.ones(len(anns), np.int64),
            ["truth"] * len(anns),
            None,
            kp,
            img.shape[:2],
        )
        pred = _confident(predictor.predict(img), min_score)
        columns.append(
            np.concatenate(
                [
                    _draw_labelled(big, _scaled(gt, scale)),
                    np.full((4, big.shape[1], 3), 255, np.uint8),
                    draw_instances(big, _scaled(pred, scale)),
                ],
                0,
            )
        )
        columns.append(np.full((columns[-1].shape[0], 4, 3), 255, np.uint8))
    return write_png(out, np.concatenate(columns[:-1], 1))


def _draw_labelled(image: np.ndarray, gt: Instances) -> np.ndarray:
    """Ground-truth skeletons; unlabelled keypoints (visibility 0) and their limbs are left out."""
    from segrt.rcnn.keypoints import draw_skeleton
    from segrt.viz import instance_colour

    canvas = image.copy()
    for i in range(len(gt)):
        draw_skeleton(canvas, gt.keypoints[i], instance_colour(i), min_score=0.5)
    return canvas


def run_pose_demo(
    out: Path,
    minutes: float = 6.0,
    steps: int = 600,
    n_train: int = 600,
    n_val: int = 100,
    checkpoint: Path | None = None,
    bench_runs: int = 10,
    threads: int = 2,
    r50: bool = False,
) -> dict[str, Any]:
    from segrt.bench.report import summarize
    from segrt.export.bench_common import demo_bench_args
    from segrt.export.checkpoint import load_checkpoint
    from segrt.export.maskrcnn.bench import add_keypoint_bench_arguments, bench_command
    from segrt.export.maskrcnn.models import model_from_checkpoint
    from segrt.export.maskrcnn.onnx_export import torch_to_onnx
    from segrt.export.maskrcnn.reference import TorchvisionPredictor
    from segrt.export.maskrcnn.synthetic_pose import write_pose_dataset
    from segrt.export.quantize import calibration_images, quantize_int8
    from segrt.export.train_commands import add_rcnn_train_arguments, cmd_train_rcnn

    out = Path(out)
    summary: dict[str, Any] = {}
    print(
        f"== pose: synthetic COCO person keypoints ({n_train} train / {n_val} val, {SIZE}x{SIZE}) -> {out / 'pose'}",
        flush=True,
    )
    data = write_pose_dataset(out / "pose", n_train, n_val, SIZE, seed=0)
    if checkpoint is None:
        args = [
            f"--data={data['train_json']}",
            f"--out={out / 'keypointrcnn.pt'}",
            f"--steps={steps}",
            f"--minutes={minutes}",
            f"--threads={threads}",
            *RECIPE,
        ]
        print("== pose: segrt train keypointrcnn " + " ".join(args), flush=True)
        parser = argparse.ArgumentParser()
        add_rcnn_train_arguments(parser, "keypointrcnn")
        checkpoint = cmd_train_rcnn(parser.parse_args(args))
    ckpt = load_checkpoint(checkpoint)
    summary["train"] = {k: ckpt["extra"].get(k) for k in ("steps", "seconds", "final_loss", "cpu_seconds")}
    model, cfg, names = model_from_checkpoint(ckpt)
    print(f"   {summary['train']}", flush=True)

    onnx_path = torch_to_onnx(model, cfg, names, out / "keypointrcnn.onnx", (SIZE, SIZE))
    predictor = segrt.load(onnx_path, threads=threads)
    print("== pose: COCO evaluation on val.json (segrt on ONNX Runtime; torchvision eager; int8)", flush=True)
    summary["eval"] = evaluate(predictor, data["val_json"], data["val_images"])
    summary["eval_torchvision"] = evaluate(
        TorchvisionPredictor(model, names, canvas_hw=(SIZE, SIZE)), data["val_json"], data["val_images"]
    )
    calibration = calibration_images(data["train_images"])[:16]
    int8_path = quantize_int8(onnx_path, out / "keypointrcnn.int8.onnx", calibration)
    summary["eval_int8"] = evaluate(segrt.load(int8_path, threads=threads), data["val_json"], data["val_images"])
    for key in ("eval", "eval_torchvision", "eval_int8"):
        print(f"   {key}: " + ", ".join(f"{k} {v:.3f}" for k, v in summary[key].items() if k != "images"), flush=True)
    summary["picture"] = str(picture(predictor, data["val_json"], data["val_images"], out / "keypoint_demo.png"))
    print(f"   {summary['picture']}", flush=True)

    print("== pose: benchmark, torchvision eager vs the segrt on each runtime (segrt bench keypointrcnn)", flush=True)
    more = ["--checkpoint", str(checkpoint), "--models", "small", *(["r50", "--int8"] if r50 else [])]
    args = demo_bench_args(add_keypoint_bench_arguments, out / "bench_keypointrcnn.json", bench_runs, *more)
    summary["bench"] = summarize(bench_command(args, onnx_path, int8_path))
    with atomic_path(out / "pose_summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("pose_demo_out"))
    parser.add_argument(
        "--minutes",
        type=float,
        default=6.0,
        help="training time cap, wall clock (600 steps take about 2.5 min on 2 idle cores)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=600,
        help="most training steps (the LR schedule follows steps or the time budget, whichever ends first)",
    )
    parser.add_argument("--train", type=int, default=600, help="synthetic training images")
    parser.add_argument("--val", type=int, default=100, help="synthetic held-out images")
    parser.add_argument("--checkpoint", type=Path, default=None, help="skip training: use this checkpoint")
    parser.add_argument("--bench-runs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--r50",
        action="store_true",
        help="also time a random-weight keypointrcnn_resnet50_fpn at 800x1344 (int8 calibrated on the benchmark image)",
    )


def demo_command(args: argparse.Namespace) -> dict[str, Any]:
    t = time.monotonic()
    summary = run_pose_demo(
        args.out,
        args.minutes,
        args.steps,
        args.train,
        args.val,
        args.checkpoint,
        args.bench_runs,
        args.threads,
        args.r50,
    )
    print(f"== pose demo done in {(time.monotonic() - t) / 60:.1f} min; {args.out / 'pose_summary.json'}")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m segrt.export.pose_demo", description=__doc__.split("\n\n")[0])
    add_demo_arguments(parser)
    demo_command(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
