"""The ``segrt`` command line: data -> train -> export -> predict / eval / bench, and ``demo`` for all of it.

Runtime commands (predict, eval) need only the ``sdk`` package; data prep too.
Training, export and benchmarking against PyTorch import the ``export``
package (``pip install 'segrt[train]'``) lazily, inside their handlers.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import BackendUnavailableError, SegrtError

EPILOG = """examples:
  segrt demo                                   # everything below on the shipped DSB2018 nuclei image
  segrt data dsb2018 data/dsb2018              # write the demo image/label folders
  segrt train unet --data data/dsb2018/train --out runs/unet.pt
  segrt export runs/unet.pt --out runs/unet.onnx
  segrt predict runs/unet.onnx image.png --out predictions/
  segrt eval runs/unet.onnx data/dsb2018/val
  segrt bench unet --checkpoint runs/unet.pt
"""


def _need_export():
    try:
        import export  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailableError(f"this command needs the training/export extra ({exc})",
                                      "pip install 'segrt[train]'") from None


# -- data -------------------------------------------------------------------------------------
def cmd_data(args) -> None:
    from .datasets import prepare_dsb2018
    root = prepare_dsb2018(args.root, wheel=args.wheel)
    print(f"wrote {root}/train and {root}/val (image/label folders; provenance in {root}/source.json)")
    if args.coco:
        _need_export()
        from export.maskrcnn.cli import demo_coco
        print(f"wrote COCO instances {demo_coco(root)}")


# -- train ------------------------------------------------------------------------------------
def add_unet_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, default=Path("data/dsb2018/train"), help="split folder with images/ and labels/ (default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path("runs/unet.pt"), help="checkpoint to write (default: %(default)s)")
    p.add_argument("--depth", type=int, default=5, help="resolution levels (paper: 5)")
    p.add_argument("--base-channels", type=int, default=64, help="channels at level 1 (paper: 64)")
    p.add_argument("--padding", choices=["valid", "same"], default="valid", help="unpadded convs as in the paper, or same")
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--minutes", type=float, default=None, help="stop after this wall time")
    p.add_argument("--tile", type=int, default=188, help="input tile edge, rounded up to a valid size")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd", help="sgd = the paper's (momentum 0.99)")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--momentum", type=float, default=0.99)
    p.add_argument("--w0", type=float, default=10.0, help="weight-map border weight (paper: 10)")
    p.add_argument("--sigma", type=float, default=5.0, help="weight-map border width in px (paper: 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)


def cmd_train(args) -> None:
    _need_export()
    if args.model == "unet":
        from export.models.unet import UNetConfig
        from export.train_unet import TrainConfig, train
        cfg = TrainConfig(data=args.data, out=args.out, steps=args.steps, minutes=args.minutes, tile=args.tile,
                          batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr, momentum=args.momentum,
                          w0=args.w0, sigma=args.sigma, seed=args.seed, threads=args.threads,
                          model=UNetConfig(depth=args.depth, base_channels=args.base_channels,
                                           padding=args.padding, dropout=args.dropout))
        print(f"wrote {train(cfg)}")
    else:
        from export.maskrcnn.cli import train_command
        print(f"wrote {train_command(args)}")


# -- export -----------------------------------------------------------------------------------
def cmd_export(args) -> None:
    _need_export()
    from export.checkpoint import load_checkpoint
    from .formats import format_by_name
    fmt = format_by_name(args.format)
    ckpt = load_checkpoint(args.checkpoint)
    onnx_out = args.out if fmt.name == "onnx" and args.out else Path(args.checkpoint).with_suffix(".onnx")
    if ckpt["kind"] == "unet":
        from export.to_onnx import checkpoint_to_onnx
        path = checkpoint_to_onnx(ckpt, onnx_out, tile_size=args.tile_size, opset=args.opset)
    else:
        from export.maskrcnn.cli import export_command
        path = export_command(argparse.Namespace(**{**vars(args), "out": onnx_out}), ckpt)
    print(f"wrote {path}")
    if args.int8:
        from export.quantize import calibration_images, quantize_int8
        images = calibration_images(args.calibration)
        print(f"wrote {quantize_int8(path, path.with_suffix('.int8.onnx'), images)} "
              f"(int8, calibrated on {len(images)} image(s) of {args.calibration}; check its accuracy with `segrt eval`)")
    if fmt.name == "engine":
        from export.to_engine import onnx_to_engine
        engine = onnx_to_engine(path, args.out or path.with_suffix(".engine"), precision=args.precision,
                                timing_cache=args.timing_cache, max_size=args.max_size, max_batch=args.max_batch,
                                workspace_gib=args.workspace_gib)
        print(f"wrote {engine}")


# -- predict / eval ---------------------------------------------------------------------------
def _load(path: Path, threads: int | None):
    from . import load
    return load(path, threads=threads) if Path(path).suffix == ".onnx" else load(path)


def cmd_predict(args) -> None:
    from .datasets import read_image
    predictor = _load(args.model, args.threads)
    for image_path in args.images:
        image = read_image(image_path)
        result = predictor.predict(image, **({"tta": True} if args.tta else {}))
        written = predictor.save(result, args.out, Path(image_path).stem, image=image)
        print(f"{image_path}: {len(result)} objects -> {', '.join(str(p) for p in written)}")


def cmd_eval(args) -> None:
    predictor = _load(args.model, args.threads)
    if predictor.meta["kind"] == "unet":
        from .unet import evaluate
        report = evaluate(predictor, args.data, tta=args.tta)
    else:
        from .maskrcnn import evaluate
        # default image folder: the one named like the JSON beside it (coco/val.json -> coco/val/)
        report = evaluate(predictor, args.data, args.images or Path(args.data).with_suffix(""))
    print(json.dumps(report, indent=2))
    if args.json:
        from .io import atomic_path
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n")


# -- bench ------------------------------------------------------------------------------------
def cmd_bench(args) -> None:
    _need_export()
    if args.model == "unet":
        from export.bench_unet import bench_command
    else:
        from export.maskrcnn.cli import bench_command
    bench_command(args)


def cmd_demo(args) -> None:
    _need_export()
    from export.demo import run_demo
    run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segrt", description=__doc__.split("\n\n")[0],
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("data", help="write demo data (DSB2018 nuclei from the stardist wheel)",
                       description="Write the real DSB2018 nuclei image shipped in the stardist 0.9.2 wheel as "
                                   "train (left half) / val (right half) image+label folders.")
    p.add_argument("dataset", choices=["dsb2018"])
    p.add_argument("root", type=Path, nargs="?", default=Path("data/dsb2018"), help="output folder (default: %(default)s)")
    p.add_argument("--wheel", type=Path, help="an already downloaded stardist-0.9.2 wheel (default: pip downloads it)")
    p.add_argument("--coco", action="store_true", help="also write COCO instances files for Mask R-CNN")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("train", help="train a model (needs segrt[train])", description="Train a model on your data.")
    models = p.add_subparsers(dest="model", required=True, metavar="MODEL")
    add_unet_train_arguments(models.add_parser("unet", help="U-Net on image/label folders",
                                               description="U-Net, the paper's recipe: weighted cross-entropy, SGD momentum 0.99, elastic deformations."))
    try:
        from export.maskrcnn.cli import add_train_arguments as add_maskrcnn_train
        add_maskrcnn_train(models.add_parser("maskrcnn", help="torchvision Mask R-CNN on COCO-format data"))
    except ImportError:
        pass  # without torch/the maskrcnn module, `segrt train maskrcnn` is simply not offered
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("export", help="checkpoint -> .onnx (or TensorRT engine)",
                       description="Export a segrt checkpoint to a self-describing ONNX file (and optionally a TensorRT engine).")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--out", type=Path, help="output file (default: the checkpoint path with .onnx/.engine)")
    p.add_argument("--format", choices=["onnx", "engine"], default="onnx")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--tile-size", type=int, default=None, help="U-Net: largest input tile (default: fits a 512x512 image)")
    p.add_argument("--int8", action="store_true", help="also write NAME.int8.onnx, statically quantized for the CPU")
    p.add_argument("--calibration", type=Path, default=Path("data/dsb2018/train"),
                   help="--int8: folder (or split folder) of images that calibrate the activation ranges (default: %(default)s)")
    p.add_argument("--precision", choices=["fp32", "fp16"], default="fp16", help="engine precision")
    p.add_argument("--timing-cache", type=Path, default=None, help="engine: TensorRT timing cache file, reused across builds")
    p.add_argument("--max-size", type=int, default=None, help="engine (U-Net): largest input edge of the profile")
    p.add_argument("--max-batch", type=int, default=None, help="engine (U-Net): largest tile batch of the profile")
    p.add_argument("--workspace-gib", type=float, default=4.0, help="engine: TensorRT workspace limit")
    try:
        from export.maskrcnn.cli import add_export_arguments
        add_export_arguments(p)
    except ImportError:
        pass
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("predict", help="segment images; write label masks and an overlay PNG",
                       description="Run a model on images and write masks plus an overlay picture per image.")
    p.add_argument("model", type=Path, help=".onnx or TensorRT engine from `segrt export`")
    p.add_argument("images", type=Path, nargs="+")
    p.add_argument("--out", type=Path, default=Path("predictions"))
    p.add_argument("--tta", action="store_true", help="U-Net: average the 8 flips/rotations")
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("eval", help="score a model on held-out data",
                       description="U-Net: pixel error, IoU, adapted Rand error and warping error over thresholds on an "
                                   "image/label folder. Mask R-CNN: COCO box/segm AP on an instances JSON.")
    p.add_argument("model", type=Path)
    p.add_argument("data", type=Path, help="U-Net: split folder; Mask R-CNN: COCO instances JSON")
    p.add_argument("--images", type=Path, default=None, help="Mask R-CNN: image folder (default: next to the JSON)")
    p.add_argument("--tta", action="store_true")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", type=Path, help="also write the report here")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("bench", help="latency: PyTorch eager vs ONNX Runtime vs the sdk predictor",
                       description="Time, in one run with the same weights and threads, PyTorch eager, the raw ONNX "
                                   "Runtime session and the sdk predictor end to end. Writes JSON and a PNG plot.")
    models = p.add_subparsers(dest="model", required=True, metavar="MODEL")
    try:
        from export.bench_unet import add_bench_arguments as add_unet_bench
        add_unet_bench(models.add_parser("unet", help="U-Net (paper size by default)"))
        from export.maskrcnn.cli import add_bench_arguments as add_maskrcnn_bench
        add_maskrcnn_bench(models.add_parser("maskrcnn", help="Mask R-CNN"))
    except ImportError:
        pass  # runtime-only install: `segrt bench` then says to install segrt[train]
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("demo", help="data -> train -> export -> eval -> predict -> bench, on the CPU",
                       description="The whole pipeline on the shipped DSB2018 nuclei image, on ONNX Runtime (CPU).")
    p.add_argument("--out", type=Path, default=Path("demo_out"))
    p.add_argument("--minutes", type=float, default=4.0, help="U-Net training time budget")
    p.add_argument("--skip-maskrcnn", action="store_true", help="U-Net only")
    p.add_argument("--maskrcnn-steps", type=int, default=300, help="Mask R-CNN training steps")
    p.add_argument("--maskrcnn-minutes", type=float, default=8.0, help="Mask R-CNN training time cap")
    p.add_argument("--bench-runs", type=int, default=10)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except SegrtError as exc:
        print(f"segrt: error: {exc.problem}", file=sys.stderr)
        if exc.fix:
            print(f"  fix: {exc.fix}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("segrt: interrupted (nothing half-written was left behind)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
