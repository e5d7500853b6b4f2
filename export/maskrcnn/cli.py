"""``segrt bench maskrcnn`` options and handler (registered by ``export.cli``)."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``segrt bench maskrcnn``."""
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="segrt checkpoint of the small model (default: random-weight resnet18-FPN)")
    parser.add_argument("--models", nargs="+", default=["small", "r50"], choices=["small", "r50"],
                        help="small: the demo model at 512x512; r50: random-weight maskrcnn_resnet50_fpn at 800x1344")
    parser.add_argument("--image", type=Path, default=None, help="image to run on (default: a synthetic one)")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="threads for torch and ONNX Runtime alike")
    parser.add_argument("--workdir", type=Path, default=Path("runs/bench_maskrcnn"))
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--int8", type=Path, default=None, metavar="IMAGES",
                        help="also time the int8 ONNX model, calibrated on the images in this folder")


def bench_command(args: argparse.Namespace) -> dict:
    """Run ``segrt bench maskrcnn``; returns the result dict (also printed / written as JSON)."""
    from .bench import run_bench
    from export.quantize import calibration_images
    result = run_bench(checkpoint=args.checkpoint, models=args.models, image_path=args.image, runs=args.runs,
                       warmup=args.warmup, threads=args.threads, workdir=args.workdir, json_path=args.json,
                       int8_calibration=calibration_images(args.int8) if args.int8 else None)
    print(f"Mask R-CNN, {result['threads']} threads ({result['cpu']})")
    print(f"{'model':<7}{'variant':<20}{'p50 ms':>10}{'p90 ms':>10}{'img/s':>8}")
    for name, r in result["models"].items():
        for variant in ("torchvision_model", "torchvision_e2e", "sdk_model", "sdk_e2e", "sdk_int8_model", "sdk_int8_e2e"):
            if variant not in r:
                continue
            v = r[variant]
            print(f"{name:<7}{variant:<20}{v['p50_ms']:>10.1f}{v['p90_ms']:>10.1f}{v['images_per_s']:>8.2f}")
        print(f"{name:<7}sdk end to end is {r['speedup_e2e_p50']:.2f}x faster than torchvision eager "
              f"(input {r['input_size']}, {r['detections_sdk']} detections)")
        if "speedup_int8_e2e_p50" in r:
            print(f"{name:<7}sdk int8 end to end is {r['speedup_int8_e2e_p50']:.2f}x faster than torchvision eager")
    if args.json:
        print(f"wrote {args.json}")
    return result


__all__ = ["add_bench_arguments", "bench_command"]
