"""The Mask R-CNN half of ``segrt demo``: COCO files -> train -> export -> COCO AP -> picture -> benchmark."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import sdk
from sdk.imageio import write_png
from sdk.io import atomic_path


def run_maskrcnn_demo(out: Path, data: Path, args) -> dict[str, Any]:
    """Train a small resnet18-FPN Mask R-CNN on the left half, evaluate on the right half."""
    from .bench import run_bench
    from export.api import export_maskrcnn
    from .coco import demo_coco
    from .models import MaskRCNNConfig
    from .train import TrainOptions, train
    from export.checkpoint import load_checkpoint

    summary: dict[str, Any] = {}
    print(f"\n== Mask R-CNN: COCO instances files from the same image -> {data / 'coco'}", flush=True)
    coco = demo_coco(data)

    budget = 60 * args.maskrcnn_minutes
    print(f"\n== Mask R-CNN: train a random-init resnet18-FPN on coco/train.json "
          f"({args.maskrcnn_steps} steps, at most {args.maskrcnn_minutes:g} min)", flush=True)
    t = time.monotonic()
    ckpt_path = train(TrainOptions(coco / "train.json", coco / "train", out / "maskrcnn.pt",
                                   model=MaskRCNNConfig(min_size=256, max_size=512), steps=args.maskrcnn_steps,
                                   time_budget_s=budget))
    ckpt = load_checkpoint(ckpt_path)
    summary["train"] = {k: ckpt["extra"][k] for k in ("steps", "seconds", "final_loss")}
    print(f"   {summary['train']['steps']} steps in {time.monotonic() - t:.0f} s -> {ckpt_path}")

    print("\n== Mask R-CNN: export the portable ONNX graph at the held-out image's size (512x256)", flush=True)
    onnx_path = export_maskrcnn(ckpt, out / "maskrcnn.onnx", input_hw=(512, 256))
    print(f"   {onnx_path}")

    print("\n== Mask R-CNN: COCO evaluation on coco/val.json with the sdk runtime (pycocotools)", flush=True)
    predictor = sdk.load(onnx_path)
    metrics = predictor.evaluate(coco / "val.json")
    summary["eval"] = metrics
    print("   " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if k.startswith(("segm", "bbox"))))

    print("\n== Mask R-CNN: int8 ONNX (convolutions quantized, calibrated on the training image), evaluated alike", flush=True)
    from export.quantize import calibration_images, quantize_int8
    calibration = calibration_images(coco / "train")
    int8_path = quantize_int8(onnx_path, out / "maskrcnn.int8.onnx", calibration)
    summary["eval_int8"] = sdk.load(int8_path).evaluate(coco / "val.json")
    print("   " + ", ".join(f"{k} {v:.3f}" for k, v in summary["eval_int8"].items() if k.startswith(("segm_AP", "bbox_AP"))))

    val_image = next(iter(sorted((coco / "val").glob("*.png"))))
    from sdk.imageio import read_image
    image = read_image(val_image)
    result = predictor.predict(image)
    summary["picture"] = str(write_png(out / "maskrcnn_demo.png", predictor.draw(image, result)))
    print(f"   {summary['picture']}: {len(result)} instances")

    print("\n== Mask R-CNN: benchmark (torchvision eager vs sdk on ONNX Runtime, same weights and threads)", flush=True)
    bench = run_bench(checkpoint=ckpt_path, models=["small"], image_path=val_image, runs=args.bench_runs, warmup=2,
                      threads=2, workdir=out / "bench_maskrcnn", json_path=out / "bench_maskrcnn.json",
                      int8_calibration=calibration)
    small = bench["models"]["small"]
    summary["bench"] = {k: small[k]["p50_ms"] for k in ("torchvision_e2e", "torchvision_model", "sdk_e2e", "sdk_model")}
    summary["bench"].update(sdk_int8_e2e=small["sdk_int8_e2e"]["p50_ms"], speedup_e2e_p50=small["speedup_e2e_p50"],
                            speedup_int8_e2e_p50=small["speedup_int8_e2e_p50"])
    print(f"   p50 end to end: torchvision {small['torchvision_e2e']['p50_ms']:.0f} ms, sdk fp32 {small['sdk_e2e']['p50_ms']:.0f} ms "
          f"({small['speedup_e2e_p50']:.2f}x), sdk int8 {small['sdk_int8_e2e']['p50_ms']:.0f} ms ({small['speedup_int8_e2e_p50']:.2f}x)")
    with atomic_path(out / "maskrcnn_summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    return summary
