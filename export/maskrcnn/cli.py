"""`segrt` sub-command hooks for Mask R-CNN (the lead's ``sdk/cli.py`` wires them).

    segrt train maskrcnn --train-json J --train-images D --out ckpt.pt [--steps N ...]
    segrt export CKPT --format onnx [--graph portable|tensorrt] --input-size H W ...
    segrt bench maskrcnn ...
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sdk.errors import InputError

from .bench import add_bench_arguments, bench_command  # `segrt bench maskrcnn`, declared with its variants
from .models import ARCHS, MaskRCNNConfig


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``segrt train maskrcnn``."""
    d = MaskRCNNConfig()
    parser.add_argument("--train-json", type=Path, required=True, help="COCO instances file")
    parser.add_argument("--train-images", type=Path, required=True, help="folder of the COCO file's images")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint to write (.pt)")
    parser.add_argument("--arch", choices=sorted(ARCHS), default=d.arch)
    parser.add_argument("--min-size", type=int, default=256, help="shorter image side after resize (px)")
    parser.add_argument("--max-size", type=int, default=512, help="longer image side cap (px)")
    parser.add_argument("--anchor-sizes", type=int, nargs="+", default=list(d.anchor_sizes),
                        help="one anchor size per FPN level P2..P6 (px)")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--crop", type=int, default=256, help="random square crop side (0 = whole images)")
    parser.add_argument("--time-budget", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)


def train_command(args: argparse.Namespace) -> Path:
    """Run ``segrt train maskrcnn``; returns the checkpoint path."""
    from .train import TrainOptions, train
    cfg = MaskRCNNConfig() if args.arch in ("resnet18_fpn", "resnet34_fpn") else MaskRCNNConfig.paper(args.arch)
    cfg.arch, cfg.min_size, cfg.max_size = args.arch, args.min_size, args.max_size
    cfg.anchor_sizes = tuple(args.anchor_sizes)
    opts = TrainOptions(args.train_json, args.train_images, args.out, model=cfg, steps=args.steps,
                        batch_size=args.batch_size, lr=args.lr, crop=args.crop, time_budget_s=args.time_budget,
                        threads=args.threads, seed=args.seed)
    return train(opts)


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


def demo_coco(data_root: str | Path) -> Path:
    """Write the DSB2018 demo COCO files under ``data_root/coco`` (see ``export.maskrcnn.coco.demo_coco``)."""
    from .coco import demo_coco as _demo
    return _demo(data_root)


__all__ = ["add_train_arguments", "train_command", "add_export_arguments", "export_command",
           "add_bench_arguments", "bench_command", "demo_coco"]
