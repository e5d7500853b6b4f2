"""The training side's ``segrt`` verbs: data, train, export, bench, demo.

Registered through the ``segrt.commands`` entry point, so the runtime's CLI
(``segrt.cli``) offers them when this package is installed and never imports
it otherwise. Handlers import torch lazily: ``segrt --help`` stays fast.

Options shared by several verbs have one name and one unit everywhere:
``--out`` (file written), ``--steps``, ``--minutes`` (wall-time budget),
``--batch-size``, ``--lr``, ``--seed``, ``--threads`` (torch and ONNX Runtime).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from segrt.cli import Commands
from segrt.export import DEFAULT_OPSET
from segrt.export.train_commands import add_rcnn_train_arguments, cmd_train_rcnn, common_train_arguments


# -- data -------------------------------------------------------------------------------------
def cmd_data(args: argparse.Namespace) -> None:
    from segrt.export.data.dsb2018 import prepare_dsb2018

    root = prepare_dsb2018(args.root, wheel=args.wheel)
    print(f"wrote {root}/train and {root}/val (image/label folders; provenance in {root}/source.json)")
    if args.coco:
        from segrt.export.maskrcnn.coco import demo_coco

        print(f"wrote COCO instances {demo_coco(root)}")


# -- train ------------------------------------------------------------------------------------
def cmd_train_unet(args: argparse.Namespace) -> None:
    from segrt.export.models.unet import UNetConfig
    from segrt.export.train_unet import TrainConfig, train

    cfg = TrainConfig(
        data=args.data,
        out=args.out,
        steps=args.steps,
        minutes=args.minutes,
        tile=args.tile,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        momentum=args.momentum,
        w0=args.w0,
        sigma=args.sigma,
        seed=args.seed,
        threads=args.threads,
        model=UNetConfig(
            depth=args.depth, base_channels=args.base_channels, padding=args.padding, dropout=args.dropout
        ),
    )
    print(f"wrote {train(cfg)}")


def _add_train(cli: Commands) -> None:
    p = cli.add_sub(
        "train",
        "unet",
        cmd_train_unet,
        help="U-Net on image/label folders",
        description="U-Net, the paper's recipe: weighted cross-entropy (w0 = 10, sigma = 5 px), SGD "
        "with momentum 0.99, elastic deformations.",
    )
    p.add_argument(
        "--data",
        type=Path,
        default=Path("data/dsb2018/train"),
        help="split folder with images/ and labels/ (default: %(default)s)",
    )
    common_train_arguments(p, "runs/unet.pt", steps=2000, batch_size=2, lr=0.01)
    p.add_argument("--depth", type=int, default=5, help="resolution levels (paper: 5)")
    p.add_argument("--base-channels", type=int, default=64, help="channels at level 1 (paper: 64)")
    p.add_argument(
        "--padding", choices=["valid", "same"], default="valid", help="unpadded convs as in the paper, or same"
    )
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--tile", type=int, default=188, help="input tile edge, rounded up to a valid size")
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd", help="sgd = the paper's (momentum 0.99)")
    p.add_argument("--momentum", type=float, default=0.99)
    p.add_argument("--w0", type=float, default=10.0, help="weight-map border weight (paper: 10)")
    p.add_argument("--sigma", type=float, default=5.0, help="weight-map border width in px (paper: 5)")

    add_rcnn_train_arguments(
        cli.add_sub(
            "train",
            "maskrcnn",
            cmd_train_rcnn,
            help="torchvision Mask R-CNN on COCO-format data",
            description="Mask R-CNN (torchvision), the paper's recipe: SGD momentum 0.9, weight decay 1e-4, "
            "warm-up then step LR; options for small CPU runs.",
        ),
        "maskrcnn",
    )
    add_rcnn_train_arguments(
        cli.add_sub(
            "train",
            "keypointrcnn",
            cmd_train_rcnn,
            help="torchvision Keypoint R-CNN on COCO person-keypoints data",
            description="Keypoint R-CNN (resnet18/34/50-FPN) on COCO person keypoints, e.g. the synthetic "
            "figures of `segrt data pose`.",
        ),
        "keypointrcnn",
    )


# -- export -----------------------------------------------------------------------------------
def cmd_export(args: argparse.Namespace) -> None:
    from segrt.export.api import EngineOptions, export_checkpoint
    from segrt.export.checkpoint import load_checkpoint

    ckpt = load_checkpoint(args.checkpoint)
    options: dict = {"opset": args.opset}
    if ckpt["kind"] == "unet":
        options["tile_size"] = args.tile_size
    else:
        options.update(
            graph=args.graph,
            input_hw=args.input_size,
            input_dtype=args.input_dtype,
            score_thresh=args.score_thresh,
            nms_iou=args.nms_iou,
            max_detections=args.max_detections,
        )
    engine = EngineOptions(
        precision=args.precision,
        workspace_gib=args.workspace_gib,
        timing_cache=args.timing_cache,
        max_batch=args.max_batch,
        opt_batch=args.opt_batch,
        max_size=args.max_size,
        min_size=args.min_size,
        fp16_mode=args.fp16_mode,
        device=args.device,
        plugin_dirs=args.plugin_dir,
        verbose=args.verbose,
    )
    from segrt.artifact.formats import format_by_name

    export_checkpoint(
        ckpt,
        args.out or args.checkpoint.with_suffix(format_by_name(args.format).suffixes[0]),
        format=args.format,
        int8_calibration=args.calibration if args.int8 else None,
        engine=engine,
        progress=print,
        **options,
    )


def _add_export(cli: Commands) -> None:
    from segrt.artifact.formats import FORMATS
    from segrt.export.api import EngineOptions

    e = EngineOptions()
    p = cli.add(
        "export",
        cmd_export,
        help="checkpoint -> .onnx (or OpenVINO IR, TensorRT engine)",
        description="Export a segrt checkpoint to a self-describing ONNX file, optionally an int8 ONNX "
        "for the CPU, and an OpenVINO IR or a TensorRT engine built from it.",
    )
    p.add_argument("checkpoint", type=Path, help=".pt from `segrt train`")
    p.add_argument("--out", type=Path, help="output file (default: the checkpoint path with .onnx/.xml/.engine)")
    p.add_argument(
        "--format",
        choices=[f.name for f in FORMATS],
        default="onnx",
        help="onnx; openvino: IR model.xml + model.bin (segrt[openvino]); engine: TensorRT (a GPU)",
    )
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    p.add_argument("--int8", action="store_true", help="also write NAME.int8.onnx, statically quantized for the CPU")
    p.add_argument(
        "--calibration",
        type=Path,
        default=Path("data/dsb2018/train"),
        help="--int8: folder (or split folder) of images that calibrate the activation ranges (default: %(default)s)",
    )
    g = p.add_argument_group("U-Net")
    g.add_argument("--tile-size", type=int, default=None, help="largest input tile (default: fits a 512x512 image)")
    g = p.add_argument_group("Mask R-CNN")
    g.add_argument(
        "--graph",
        choices=["portable", "tensorrt"],
        default="portable",
        help="portable: standard ONNX ops; tensorrt: multi-level RoIAlign as segrt plugin nodes",
    )
    g.add_argument(
        "--input-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="fixed graph input size, multiples of 32 (default: max_size x max_size of the checkpoint)",
    )
    g.add_argument("--input-dtype", choices=["float32", "uint8"], default="float32")
    g.add_argument("--score-thresh", type=float, default=None, help="default: the model's (0.05)")
    g.add_argument("--nms-iou", type=float, default=None, help="default: the model's (0.5)")
    g.add_argument("--max-detections", type=int, default=None, help="default: the model's (100)")
    g = p.add_argument_group("TensorRT engine (--format engine)")
    g.add_argument("--precision", choices=["fp32", "fp16"], default=e.precision, help="(default: %(default)s)")
    g.add_argument("--workspace-gib", type=float, default=e.workspace_gib, help="TensorRT scratch memory limit")
    g.add_argument("--timing-cache", type=Path, default=None, help="timing cache file, reused across builds")
    g.add_argument("--max-batch", type=int, default=None, help="U-Net: largest tile batch of the profile")
    g.add_argument("--opt-batch", type=int, default=None, help="U-Net: batch TensorRT tunes for")
    g.add_argument("--max-size", type=int, default=None, help="U-Net: largest input edge of the profile")
    g.add_argument("--min-size", type=int, default=None, help="U-Net: smallest input edge of the profile")
    g.add_argument(
        "--fp16-mode",
        choices=["auto", "builder_flag", "fp16_onnx"],
        default=e.fp16_mode,
        help="how fp16 is requested (auto: builder flag on TensorRT 10, fp16 ONNX on 11)",
    )
    g.add_argument("--device", type=int, default=e.device, help="CUDA device")
    g.add_argument(
        "--plugin-dir",
        type=Path,
        action="append",
        default=[],
        help="folder holding libsegrt_trt_plugins.so (repeatable)",
    )
    g.add_argument("--verbose", action="store_true", help="TensorRT's verbose log")


# -- bench -----------------------------------------------------------------------------------
def _add_bench(cli: Commands) -> None:
    """Add ``segrt bench unet|maskrcnn|keypointrcnn|large`` (``cli``: ``segrt.cli.Commands``)."""
    from segrt.export import bench_unet
    from segrt.export.maskrcnn import bench as bench_maskrcnn

    commands: list[tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], Any], str]] = [
        (
            "unet",
            bench_unet.add_bench_arguments,
            bench_unet.bench_command,
            "U-Net: PyTorch eager (fp32, bf16) vs the segrt on each runtime",
        ),
        (
            "maskrcnn",
            bench_maskrcnn.add_bench_arguments,
            bench_maskrcnn.bench_command,
            "Mask R-CNN: torchvision eager vs the segrt on each runtime",
        ),
        (
            "keypointrcnn",
            bench_maskrcnn.add_keypoint_bench_arguments,
            bench_maskrcnn.bench_command,
            "Keypoint R-CNN: torchvision eager vs the segrt on each runtime",
        ),
    ]
    from segrt.export import bench_large

    commands.append(
        (
            "large",
            bench_large.add_bench_arguments,
            bench_large.bench_command,
            "large images: Mpixel/s and peak memory against image size (U-Net, Mask R-CNN windows)",
        )
    )
    for name, add, handler, help_text in commands:
        add(cli.add_sub("bench", name, handler, help=help_text))


# -- demo ------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> None:
    from segrt.export.demo import run_demo

    run_demo(args)


def register(cli: Commands) -> None:
    """Add the training side's verbs to ``segrt``; raises ImportError, adding none, without torch."""
    import torch  # noqa: F401 - imported to fail early, before any verb is added
    import torchvision  # noqa: F401 - the same

    p = cli.add_sub(
        "data",
        "dsb2018",
        cmd_data,
        help="the DSB2018 nuclei image from the stardist wheel",
        description="Write the real DSB2018 nuclei image shipped in the stardist 0.9.2 wheel (pip "
        "downloads it, about 3 MB) as train (left half) / val (right half) image+label "
        "folders.",
    )
    p.add_argument(
        "root", type=Path, nargs="?", default=Path("data/dsb2018"), help="output folder (default: %(default)s)"
    )
    p.add_argument("--wheel", type=Path, help="an already downloaded stardist-0.9.2 wheel (default: pip downloads it)")
    p.add_argument("--coco", action="store_true", help="also write COCO instances files for Mask R-CNN")
    from segrt.export.maskrcnn.synthetic_pose import register as register_pose_data

    register_pose_data(cli)

    _add_train(cli)
    _add_export(cli)

    _add_bench(cli)

    p = cli.add(
        "demo",
        cmd_demo,
        help="data -> train -> export -> eval -> predict -> bench, on the CPU",
        description="The whole pipeline on the shipped DSB2018 nuclei image, on ONNX Runtime (CPU).",
    )
    p.add_argument("--out", type=Path, default=Path("demo_out"))
    p.add_argument("--minutes", type=float, default=4.0, help="U-Net training time budget")
    p.add_argument("--skip-maskrcnn", action="store_true", help="U-Net only")
    p.add_argument("--maskrcnn-steps", type=int, default=300, help="Mask R-CNN training steps")
    p.add_argument("--maskrcnn-minutes", type=float, default=8.0, help="Mask R-CNN training time cap")
    p.add_argument(
        "--skip-pose",
        action="store_true",
        help="no Keypoint R-CNN stage (synthetic figures, about 3 minutes; on its own: "
        "python -m segrt.export.pose_demo)",
    )
    p.add_argument("--bench-runs", type=int, default=10)
