"""The Mask R-CNN half of ``segrt demo``: COCO files -> train -> export -> COCO AP -> picture -> benchmark."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import segrt
from segrt.io.files import atomic_path
from segrt.io.images import write_png


def run_maskrcnn_demo(out: Path, data: Path, args) -> dict[str, Any]:
    """Train a small resnet18-FPN Mask R-CNN on the left half, evaluate on the right half."""
    from segrt.export.api import export_maskrcnn
    from segrt.export.checkpoint import load_checkpoint
    from segrt.export.maskrcnn.bench import add_bench_arguments, run_bench
    from segrt.export.maskrcnn.coco import demo_coco
    from segrt.export.maskrcnn.models import MaskRCNNConfig
    from segrt.export.maskrcnn.train import TrainOptions, train

    summary: dict[str, Any] = {}
    print(f"\n== Mask R-CNN: COCO instances files from the same image -> {data / 'coco'}", flush=True)
    coco = demo_coco(data)

    budget = 60 * args.maskrcnn_minutes
    print(
        f"\n== Mask R-CNN: train a random-init resnet18-FPN on coco/train.json "
        f"({args.maskrcnn_steps} steps, at most {args.maskrcnn_minutes:g} min)",
        flush=True,
    )
    t = time.monotonic()
    ckpt_path = train(
        TrainOptions(
            coco / "train.json",
            coco / "train",
            out / "maskrcnn.pt",
            model=MaskRCNNConfig(min_size=256, max_size=512),
            steps=args.maskrcnn_steps,
            time_budget_s=budget,
        )
    )
    ckpt = load_checkpoint(ckpt_path)
    summary["train"] = {k: ckpt["extra"][k] for k in ("steps", "seconds", "final_loss")}
    print(f"   {summary['train']['steps']} steps in {time.monotonic() - t:.0f} s -> {ckpt_path}")

    print("\n== Mask R-CNN: export the portable ONNX graph at the held-out image's size (512x256)", flush=True)
    onnx_path = export_maskrcnn(ckpt, out / "maskrcnn.onnx", input_hw=(512, 256))
    print(f"   {onnx_path}")

    print("\n== Mask R-CNN: COCO evaluation on coco/val.json with the segrt runtime (pycocotools)", flush=True)
    predictor = segrt.load(onnx_path)
    metrics = predictor.evaluate(coco / "val.json")
    summary["eval"] = metrics
    print("   " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if k.startswith(("segm", "bbox"))))

    print(
        "\n== Mask R-CNN: int8 ONNX (convolutions quantized, calibrated on the training image), evaluated alike",
        flush=True,
    )
    from segrt.export.quantize import calibration_images, quantize_int8

    calibration = calibration_images(coco / "train")
    int8_path = quantize_int8(onnx_path, out / "maskrcnn.int8.onnx", calibration)
    summary["eval_int8"] = segrt.load(int8_path).evaluate(coco / "val.json")
    print(
        "   "
        + ", ".join(f"{k} {v:.3f}" for k, v in summary["eval_int8"].items() if k.startswith(("segm_AP", "bbox_AP")))
    )

    val_image = next(iter(sorted((coco / "val").glob("*.png"))))
    from segrt.io.images import read_image

    image = read_image(val_image)
    result = predictor.predict(image)
    summary["picture"] = str(write_png(out / "maskrcnn_demo.png", predictor.draw(image, result)))
    print(f"   {summary['picture']}: {len(result)} instances")

    print(
        "\n== Mask R-CNN: benchmark (torchvision eager vs segrt on ONNX Runtime, same weights and threads)", flush=True
    )
    from segrt.bench.agreement import BY_KIND
    from segrt.bench.cli import publish
    from segrt.bench.report import summarize
    from segrt.export.bench_common import demo_bench_args

    bench_opts = demo_bench_args(
        add_bench_arguments,
        out / "bench_maskrcnn.json",
        args.bench_runs,
        "--image",
        str(val_image),
        "--models",
        "small",
        "--checkpoint",
        str(ckpt_path),
    )
    report = run_bench(bench_opts, onnx_path=onnx_path, int8_path=int8_path)
    report = publish(report, bench_opts, {g: BY_KIND["maskrcnn"][2] for g in {r.group for r in report.rows}})
    summary["bench"] = summarize(report)
    with atomic_path(out / "maskrcnn_summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    return summary
