"""Training commands shared by ``segrt train`` and the demos: their options and handlers."""

from __future__ import annotations

import argparse
from pathlib import Path


def common_train_arguments(p: argparse.ArgumentParser, out: str, steps: int, batch_size: int, lr: float) -> None:
    """Options every ``segrt train`` verb has, with one name and one unit."""
    p.add_argument("--out", type=Path, default=Path(out), help="checkpoint to write (default: %(default)s)")
    p.add_argument("--steps", type=int, default=steps, help="optimizer steps (default: %(default)s)")
    p.add_argument("--minutes", type=float, default=None, help="also stop (and save) after this wall time")
    p.add_argument("--batch-size", type=int, default=batch_size, help="(default: %(default)s)")
    p.add_argument("--lr", type=float, default=lr, help="learning rate (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")


def cmd_train_rcnn(args: argparse.Namespace) -> Path:
    """``segrt train maskrcnn`` / ``segrt train keypointrcnn``; returns the checkpoint written."""
    from segrt.export.maskrcnn.models import SMALL_BODIES, MaskRCNNConfig
    from segrt.export.maskrcnn.train import TrainOptions, train

    cfg = MaskRCNNConfig(arch=args.arch) if args.arch in SMALL_BODIES else MaskRCNNConfig.paper(args.arch)
    cfg.arch, cfg.min_size, cfg.max_size = args.arch, args.min_size, args.max_size
    cfg.anchor_sizes = tuple(args.anchor_sizes)
    cfg.box_batch_size_per_image = args.rois_per_image
    images = args.images or Path(args.data).with_suffix("")
    opts = TrainOptions(
        args.data,
        images,
        args.out,
        model=cfg,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        crop=args.crop,
        flips=args.flips,
        time_budget_s=args.minutes * 60 if args.minutes else None,
        threads=args.threads,
        seed=args.seed,
        progress=args.progress,
    )
    path = train(opts)
    print(f"wrote {path}")
    return path


def add_rcnn_train_arguments(p: argparse.ArgumentParser, kind: str) -> None:
    """Options of ``segrt train maskrcnn`` (``kind="maskrcnn"``) or ``segrt train keypointrcnn``."""
    from segrt.export.maskrcnn.coco import FLIPS
    from segrt.export.maskrcnn.models import ARCHS, MaskRCNNConfig

    keypoints = kind == "keypointrcnn"
    p.add_argument(
        "--data",
        type=Path,
        required=True,
        help="COCO person-keypoints JSON" if keypoints else "COCO instances JSON (polygons or RLE)",
    )
    p.add_argument(
        "--images",
        type=Path,
        default=None,
        help="folder of its images (default: next to the JSON, coco/train.json -> coco/train/)",
    )
    common_train_arguments(p, f"runs/{kind}.pt", steps=600, batch_size=4, lr=0.01)
    p.add_argument(
        "--arch",
        choices=sorted(a for a, k in ARCHS.items() if k == kind),
        default="keypointrcnn_resnet18_fpn" if keypoints else "resnet18_fpn",
    )
    p.add_argument("--min-size", type=int, default=256, help="shorter image side after resize (px)")
    p.add_argument("--max-size", type=int, default=256 if keypoints else 512, help="longer image side cap (px)")
    p.add_argument(
        "--anchor-sizes",
        type=int,
        nargs="+",
        default=[16, 32, 64, 128, 256] if keypoints else list(MaskRCNNConfig().anchor_sizes),
        help="one anchor size per FPN level P2..P6 (px)",
    )
    p.add_argument("--crop", type=int, default=256, help="random square crop side (0 = whole images)")
    p.add_argument(
        "--rois-per-image",
        type=int,
        default=64 if keypoints else 128,
        help="RoIs sampled per image for the heads, 1:3 positive:negative (default: %(default)s)",
    )
    p.add_argument(
        "--flips",
        choices=FLIPS,
        default="horizontal" if keypoints else "all",
        help="random mirror images: all (left-right, up-down, transpose), horizontal, none; "
        "keypoints swap left/right with each mirror (default: %(default)s)",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
