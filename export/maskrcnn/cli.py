"""`segrt` sub-command hooks for Mask R-CNN (the lead's ``sdk/cli.py`` wires them).

    segrt train maskrcnn --train-json J --train-images D --out ckpt.pt [--steps N ...]
    segrt train keypointrcnn --train-json pose/train.json --out kp.pt [--time-budget S ...]
    segrt data pose ROOT
    segrt export CKPT --format onnx [--graph portable|tensorrt] --input-size H W ...
    segrt bench maskrcnn ...
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sdk.errors import InputError

from .coco import FLIPS
from .models import ARCHS, MaskRCNNConfig


def add_train_arguments(parser: argparse.ArgumentParser, kind: str = "maskrcnn") -> None:
    """Options of ``segrt train maskrcnn`` (``kind="maskrcnn"``) or ``segrt train keypointrcnn``."""
    archs = sorted(a for a, k in ARCHS.items() if k == kind)
    keypoints = kind == "keypointrcnn"
    data = "COCO person-keypoints file" if keypoints else "COCO instances file"
    parser.add_argument("--train-json", type=Path, required=True, help=data)
    parser.add_argument("--train-images", type=Path, default=None,
                        help="folder of the COCO file's images (default: next to the JSON, named like it)")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint to write (.pt)")
    parser.add_argument("--arch", choices=archs, default="keypointrcnn_resnet18_fpn" if keypoints else "resnet18_fpn")
    parser.add_argument("--min-size", type=int, default=256, help="shorter image side after resize (px)")
    parser.add_argument("--max-size", type=int, default=256 if keypoints else 512, help="longer image side cap (px)")
    parser.add_argument("--anchor-sizes", type=int, nargs="+",
                        default=[16, 32, 64, 128, 256] if keypoints else list(MaskRCNNConfig().anchor_sizes),
                        help="one anchor size per FPN level P2..P6 (px)")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--crop", type=int, default=256, help="random square crop side (0 = whole images)")
    parser.add_argument("--rois-per-image", type=int, default=64 if keypoints else 128,
                        help="RoIs sampled per image for the heads, 1:3 positive:negative (default: %(default)s)")
    parser.add_argument("--flips", choices=FLIPS, default="horizontal" if keypoints else "all",
                        help="random mirror images: all (left-right, up-down, transpose), horizontal, none; "
                             "keypoints swap left/right with each mirror (default: %(default)s)")
    parser.add_argument("--time-budget", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def train_command(args: argparse.Namespace) -> Path:
    """Run ``segrt train maskrcnn`` / ``segrt train keypointrcnn``; returns the checkpoint path."""
    from .models import SMALL_BODIES
    from .train import TrainOptions, train
    cfg = MaskRCNNConfig(arch=args.arch) if args.arch in SMALL_BODIES else MaskRCNNConfig.paper(args.arch)
    cfg.arch, cfg.min_size, cfg.max_size = args.arch, args.min_size, args.max_size
    cfg.anchor_sizes = tuple(args.anchor_sizes)
    cfg.box_batch_size_per_image = args.rois_per_image
    images = args.train_images or Path(args.train_json).with_suffix("")
    opts = TrainOptions(args.train_json, images, args.out, model=cfg, steps=args.steps,
                        batch_size=args.batch_size, lr=args.lr, crop=args.crop, flips=args.flips,
                        time_budget_s=args.time_budget, threads=args.threads, seed=args.seed,
                        progress=getattr(args, "progress", True))
    return train(opts)


def register_keypoints(cli) -> None:
    """Command provider for ``sdk.cli``: ``segrt data pose`` and ``segrt train keypointrcnn``."""
    from .synthetic_pose import register as register_data
    register_data(cli)
    parser = cli.add_sub("train", "keypointrcnn", lambda args: print(f"wrote {train_command(args)}"),
                         help="torchvision Keypoint R-CNN on COCO person-keypoints data",
                         description="Keypoint R-CNN (resnet18/34/50-FPN) on COCO person keypoints, "
                                     "e.g. the synthetic figures of `segrt data pose`.")
    add_train_arguments(parser, kind="keypointrcnn")


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """Mask R-CNN options of ``segrt export`` (the lead adds CKPT, --format, --out)."""
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                        help="fixed graph input size, multiples of 32 (default: max_size x max_size "
                             "of the checkpoint, rounded up to 32)")
    parser.add_argument("--input-dtype", choices=["float32", "uint8"], default="float32")
    parser.add_argument("--score-thresh", type=float, default=None, help="default: the model's (0.05)")
    parser.add_argument("--nms-iou", type=float, default=None, help="default: the model's (0.5)")
    parser.add_argument("--max-detections", type=int, default=None, help="default: the model's (100)")
    parser.add_argument("--graph", choices=["portable", "tensorrt"], default="portable",
                        help="portable: standard ONNX ops; tensorrt: multi-level RoIAlign as segrt plugin nodes")



def default_input_size(cfg: MaskRCNNConfig) -> tuple[int, int]:
    side = -(-cfg.max_size // 32) * 32
    return side, side


def export_command(args: argparse.Namespace, ckpt: dict[str, Any]) -> Path:
    """Run ``segrt export`` for a Mask R-CNN checkpoint; returns the written .onnx path.

    ``args.out`` (set by the lead's parser) is the output file; with ``--graph tensorrt``
    the portable graph is written next to it as ``<stem>.portable.onnx`` first.
    """
    from .models import model_from_checkpoint
    from .onnx_export import torch_to_onnx
    from .trt_graph import portable_to_tensorrt
    model, cfg, names = model_from_checkpoint(ckpt)
    size = tuple(args.input_size) if args.input_size else default_input_size(cfg)
    out = Path(getattr(args, "out", None) or f"{cfg.kind}.onnx")
    if out.suffix != ".onnx":
        raise InputError(f"{out}: Mask R-CNN graphs are written as .onnx", "name the output *.onnx "
                         "(build a TensorRT engine from the tensorrt graph with `segrt export --format engine`)")
    graph = getattr(args, "graph", "portable")
    portable = out if graph == "portable" else out.with_name(out.stem + ".portable.onnx")
    torch_to_onnx(model, cfg, names, portable, size, args.input_dtype, args.score_thresh, args.nms_iou,
                  args.max_detections, args.opset)
    if graph == "tensorrt":
        return portable_to_tensorrt(portable, out)
    return out


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


def demo_coco(data_root: str | Path) -> Path:
    """Write the DSB2018 demo COCO files under ``data_root/coco`` (see ``export.maskrcnn.coco.demo_coco``)."""
    from .coco import demo_coco as _demo
    return _demo(data_root)


__all__ = ["add_train_arguments", "train_command", "register_keypoints", "add_export_arguments", "export_command",
           "add_bench_arguments", "bench_command", "demo_coco"]
