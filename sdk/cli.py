"""The ``segrt`` command line, assembled from command providers.

The runtime registers the verbs that need only ``segrt``: predict, eval, info (and
those of its optional parts). Other installed packages add theirs through the
``segrt.commands`` entry point group: a provider is a function
``register(cli: Commands) -> None``. The training side (``pip install
'segrt[train]'``) adds data, train, export, bench and demo that way, so the
runtime never imports it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from segrt.errors import SegrtError

if TYPE_CHECKING:
    from segrt.predictor import Predictor
    from segrt.serve.client import RemotePredictor

ENTRY_POINT_GROUP = "segrt.commands"
# verbs (and `bench` sub-verbs) that other segrt extras provide, for the message when one is missing
EXTRA_VERBS = {
    "data": "train",
    "train": "train",
    "export": "train",
    "demo": "train",
    "bench unet": "train",
    "bench maskrcnn": "train",
    "bench large": "train",
}

DESCRIPTION = (
    "segrt: U-Net and Mask R-CNN from training to low-latency inference. Every command has --help; "
    "errors say what is wrong and how to fix it, with exit code 2."
)
GROUP_HELP = {
    "data": "write training data (the DSB2018 demo image, synthetic pose figures)",
    "train": "train a model on your data",
    "bench": "latency benchmarks (p50/p90, throughput, speedups)",
}

Handler = Callable[[argparse.Namespace], Any]

EPILOG = """examples:
  segrt demo                                   # the whole pipeline on the shipped DSB2018 nuclei image
  segrt data dsb2018 data/dsb2018              # write the demo image/label folders
  segrt train unet --data data/dsb2018/train --out runs/unet.pt
  segrt export runs/unet.pt --out runs/unet.onnx
  segrt info runs/unet.onnx
  segrt predict runs/unet.onnx image.png --out predictions/
  segrt eval runs/unet.onnx data/dsb2018/val
  segrt predict runs/unet.onnx 'images/**/*.png' --out predictions/ --ray --actors 2   # Ray Data, resumable
  segrt bench unet --checkpoint runs/unet.pt
"""


class Commands:
    """The verbs of ``segrt``; providers add theirs with :meth:`add` and :meth:`add_sub`."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser
        self._verbs = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
        self._groups: dict[str, argparse._SubParsersAction] = {}

    def add(
        self, name: str, handler: Handler | None, help: str, description: str | None = None
    ) -> argparse.ArgumentParser:
        """A verb ``segrt NAME``; returns its parser for the provider's options."""
        p = self._verbs.add_parser(
            name, help=help, description=description or help, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        if handler is not None:
            p.set_defaults(func=handler)
        return p

    def add_sub(
        self, group: str, name: str, handler: Handler, help: str, description: str | None = None
    ) -> argparse.ArgumentParser:
        """A nested verb ``segrt GROUP NAME`` (e.g. ``train unet``); ``GROUP`` is created on first use."""
        if group not in self._groups:
            parent = self._verbs.choices.get(group) or self.add(group, None, help=GROUP_HELP.get(group, group))
            self._groups[group] = parent.add_subparsers(dest=f"{group}_what", required=True, metavar="WHAT")
        p = self._groups[group].add_parser(
            name, help=help, description=description or help, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        p.set_defaults(func=handler)
        return p

    def has(self, name: str) -> bool:
        """Whether ``name`` ("predict", or "bench unet" for a nested verb) is registered."""
        verb, _, sub = name.partition(" ")
        if not sub:
            return verb in self._verbs.choices
        return verb in self._groups and sub in self._groups[verb].choices


# -- runtime verbs ----------------------------------------------------------------------------
def load_predictor(args: argparse.Namespace) -> Predictor[Any] | RemotePredictor:
    """The predictor of ``args.model``: local with the CLI's backend options (--backend, --precision,
    --threads), or the model of that name on a Triton server (--server)."""
    if args.server:
        from segrt.serve.client import RemotePredictor

        return RemotePredictor(args.server, Path(args.model).stem)
    from segrt import load

    return load(args.model, backend=args.backend, **backend_options(args))


def backend_options(args: argparse.Namespace) -> dict[str, Any]:
    """``segrt.load``'s backend options from --threads and --precision (refused without a backend that has it)."""
    options: dict[str, Any] = {}
    if args.threads and Path(args.model).suffix == ".onnx":
        options["threads"] = args.threads
    if args.precision:
        if args.backend not in ("openvino", "auto"):
            raise SegrtError(
                f"--precision {args.precision} needs --backend openvino (or auto)",
                "ONNX Runtime runs the precision the file was exported in (use the .int8.onnx for int8)",
            )
        options["precision"] = args.precision
    return options


def add_backend_arguments(p: argparse.ArgumentParser) -> None:
    """--backend, --precision and --threads: how a predictor runs its artifact."""
    from segrt.artifact.formats import FORMATS
    from segrt.backends.openvino import PRECISIONS  # a constant: openvino itself is imported only to run

    names = list(dict.fromkeys(r.name for f in FORMATS for r in f.runtimes)) + ["auto"]  # IR and .onnx share one
    p.add_argument(
        "--backend",
        choices=names,
        default=None,
        help="runtime (default: the file's default: onnxruntime for .onnx, tensorrt for engines; "
        "auto: the fastest measured within the accuracy budget on this CPU)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="OpenVINO compute precision (mixed: Mask/Keypoint R-CNN heads and FPN outputs in bf16; "
        "ResNet, scores and NMS in fp32; auto: bf16 where the CPU has it natively)",
    )
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument(
        "--server",
        default=None,
        metavar="URL",
        help="run on a Triton server (`segrt serve`) instead: MODEL is the served model's name "
        "(or its file: the stem is used), e.g. --server http://localhost:8000",
    )


def _plan_predict(args: argparse.Namespace, unet: bool) -> list[tuple[Path, str]]:
    """Check every input and the output folder before the first image is computed.

    Returns (image, how) per image: "lazy" (read a block at a time), "memory" (decoded whole) or
    "disk" (U-Net outputs streamed to ``--out`` as OME-Zarr/TIFF). Raises InputError/OSError naming
    the first problem: unreadable or oversized image, output folder not writable, writer missing,
    not enough free disk.
    """
    import tempfile

    from segrt.io.headers import check_decodable, read_header
    from segrt.io.sources import open_image
    from segrt.predictor import LAZY_SUFFIXES
    from segrt.unet.stream import LARGE_OUTPUT_PIXELS

    args.out.mkdir(parents=True, exist_ok=True)  # an OSError here is reported as "cannot use <path>"
    with tempfile.NamedTemporaryFile(dir=args.out, prefix=".segrt-write-check."):
        pass
    plans = []
    for image_path in args.images:
        suffix = image_path.suffix.lower()
        lazy = suffix in LAZY_SUFFIXES and not args.tta and not args.server
        if suffix == ".zarr":
            pixels = math.prod(open_image(str(image_path)).shape[:2]) if lazy else 0
        else:
            header = read_header(image_path)
            pixels = header.pixels or 0
        to_disk = (
            unet
            and not args.server
            and not args.tta
            and (args.format in ("ome-zarr", "tiff") or (args.format == "auto" and pixels > LARGE_OUTPUT_PIXELS))
        )
        if to_disk:
            source = open_image(str(image_path))  # lazy formats open by header; others are checked and decoded
            from segrt.unet.outputs import estimate_bytes, preflight

            H, W, C = source.shape
            fmt = "tiff" if args.format == "tiff" else "ome-zarr"
            preflight(args.out, fmt, estimate_bytes((H, W), C, source.dtype.itemsize, fmt, fmt == "ome-zarr", True))
            plans.append((image_path, "disk"))
        elif lazy:
            open_image(str(image_path))
            plans.append((image_path, "lazy"))
        else:
            check_decodable(image_path)
            plans.append((image_path, "memory"))
    return plans


def cmd_predict(args: argparse.Namespace) -> None:
    if args.ray is not None:
        from segrt.batch.cli import predict_on_ray

        return predict_on_ray(args, backend_options(args), predict_options(args))
    from segrt.predictor import predict_file

    predictor = load_predictor(args)
    unet = getattr(predictor, "kind", None) == "unet"
    if args.format != "auto" and not unet:
        raise SegrtError(f"--format {args.format} is for U-Net models", "leave --format out for this model")
    plans = _plan_predict(args, unet)  # every check before the first tile
    options = predict_options(args)
    for image_path, how in plans:
        if how == "disk":  # only local U-Nets are planned to disk (_plan_predict)
            assert not args.server
            result = cast("Predictor[Any]", predictor).predict(
                str(image_path), out=args.out, out_format="tiff" if args.format == "tiff" else "ome-zarr", **options
            )
            print(f"{image_path}: {len(result)} objects -> {', '.join(str(p) for p in result.paths)}")
            continue
        result, written = predict_file(
            predictor, image_path, args.out, Path(image_path).stem, remote=bool(args.server), **options
        )
        print(f"{image_path}: {len(result)} objects -> {', '.join(str(p) for p in written)}")


def predict_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``predict`` options the CLI's flags ask for (only those given)."""
    return {
        k: v
        for k, v in (
            ("tta", args.tta or None),
            ("tile", args.tile),
            ("batch", args.batch),
            ("tiles", {"on": True, "off": False}.get(args.windows)),
        )
        if v is not None
    }


def cmd_eval(args: argparse.Namespace) -> None:
    if args.ray is not None:
        from segrt.batch.cli import eval_on_ray

        return eval_on_ray(args, backend_options(args))
    predictor = load_predictor(args)
    options = {k: v for k, v in (("tta", args.tta or None), ("images", args.images)) if v}
    report = predictor.evaluate(args.data, **options)
    print(json.dumps(report, indent=2))
    if args.json:
        from segrt.io.files import atomic_path

        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n")


def cmd_info(args: argparse.Namespace) -> None:
    from segrt.artifact.info import describe, format_info

    info = describe(args.model)
    print(json.dumps(info, indent=2) if args.json else format_info(info))


def register_runtime(cli: Commands) -> None:
    """The verbs that need only the runtime."""
    from segrt.batch.cli import add_ray_arguments  # the options only: Ray is imported when --ray runs

    p = cli.add(
        "predict",
        cmd_predict,
        help="segment images; write masks and an overlay PNG per image",
        description="Run a model on images and write its masks (U-Net: class and instance label PNGs; "
        "Mask R-CNN: COCO-style JSON with RLE masks) plus an overlay picture per image.",
    )
    p.add_argument("model", type=Path, help=".onnx or TensorRT engine from `segrt export`")
    p.add_argument(
        "images",
        type=Path,
        nargs="+",
        help="PNG/TIFF/JPEG files (with --ray also folders, quoted globs like 'images/**/*.png', "
        "or a COCO JSON with its image folder beside it)",
    )
    p.add_argument("--out", type=Path, default=Path("predictions"), help="output folder (default: %(default)s)")
    p.add_argument("--tta", action="store_true", help="U-Net: average the 8 flips/rotations")
    p.add_argument(
        "--format",
        choices=["auto", "png", "ome-zarr", "tiff"],
        default="auto",
        help="U-Net outputs: png (classes/instances PNGs in memory, TIFFs when large), ome-zarr or tiff "
        "(written to disk while predicting, with an instance table CSV; memory does not grow "
        "with the image); auto: ome-zarr for images over 8192 x 8192, else png",
    )
    p.add_argument("--tile", type=int, default=None, help="U-Net: largest input tile edge (default: the model's)")
    p.add_argument("--batch", type=int, default=None, help="U-Net: tiles per network call (default: 4)")
    p.add_argument(
        "--windows",
        choices=["auto", "on", "off"],
        default=None,
        help="Mask R-CNN: sliding windows at native resolution for large images (default auto: when "
        "fitting the image into the model input would shrink it more than 2x)",
    )
    add_backend_arguments(p)
    add_ray_arguments(p)

    p = cli.add(
        "eval",
        cmd_eval,
        help="score a model on held-out data",
        description="U-Net: pixel error, IoU, adapted Rand error and warping error (and their best over "
        "10 thresholds) on an image/label split folder. Mask R-CNN: COCO box/segm AP on an "
        "instances JSON. Keypoint R-CNN: COCO box and OKS keypoint AP on a person-keypoints "
        "JSON.",
    )
    p.add_argument("model", type=Path, help=".onnx or TensorRT engine from `segrt export`")
    p.add_argument(
        "data",
        type=Path,
        help="U-Net: split folder (images/, labels/); Mask R-CNN: COCO instances JSON; "
        "Keypoint R-CNN: COCO person-keypoints JSON",
    )
    p.add_argument("--images", type=Path, default=None, help="Mask R-CNN: image folder (default: next to the JSON)")
    p.add_argument("--tta", action="store_true", help="U-Net: average the 8 flips/rotations")
    add_backend_arguments(p)
    p.add_argument("--json", type=Path, help="also write the report here")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("predictions"),
        help="with --ray: folder for the per-image results, records and manifest (default: %(default)s)",
    )
    add_ray_arguments(p)

    p = cli.add(
        "info",
        cmd_info,
        help="show what an artifact holds, without loading it",
        description="Metadata, inputs/outputs, opsets, engine header and plugin of an .onnx or engine "
        "file, read from the file alone: no backend, TensorRT or GPU needed.",
    )
    p.add_argument("model", type=Path, help=".onnx or TensorRT engine")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")

    from segrt.bench.cli import register as register_bench
    from segrt.serve.cli import register as register_serve

    register_bench(cli)
    register_serve(cli)


# -- assembly ---------------------------------------------------------------------------------
def providers() -> list[Callable[[Commands], None]]:
    """Every installed ``segrt.commands`` entry point, by name (the runtime's own verbs come first)."""
    found = []
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            found.append(ep.load())
        except ImportError:
            continue  # its package's own dependencies are missing: its verbs are not offered
    return found


def build_commands(verb: str | None = None) -> Commands:
    """The CLI; for a runtime-only ``verb`` the other providers (which may import torch) are skipped."""
    parser = argparse.ArgumentParser(
        prog="segrt", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    cli = Commands(parser)
    register_runtime(cli)
    if verb is None or not cli.has(verb) or verb in {v.split()[0] for v in EXTRA_VERBS}:
        for register in providers():
            try:
                register(cli)
            except ImportError:
                continue  # that extra's dependencies (e.g. torch) are missing: its verbs are not offered
    return cli


def build_parser() -> argparse.ArgumentParser:
    return build_commands().parser


def _report(problem: str, fix: str | None) -> int:
    print(f"segrt: error: {problem}", file=sys.stderr)
    if fix:
        print(f"  fix: {fix}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    words = [a for a in argv if not a.startswith("-")][:2]
    cli = build_commands(words[0] if words else None)
    for name in (" ".join(words), words[0] if words else ""):
        if name in EXTRA_VERBS and not cli.has(name):
            extra = EXTRA_VERBS[name]
            return _report(
                f"`segrt {name}` is part of the segrt[{extra}] extra, which is not installed",
                f"pip install 'segrt[{extra}]'",
            )
    args = cli.parser.parse_args(argv)
    try:
        args.func(args)
    except SegrtError as exc:
        return _report(exc.problem, exc.fix)
    except OSError as exc:  # a path that cannot be created, read or written
        where = f" {exc.filename}" if exc.filename else ""
        return _report(
            f"cannot use{where}: {exc.strerror or exc}",
            "check that the path exists, is spelled right, and is writable (e.g. choose another --out)",
        )
    except KeyboardInterrupt:
        print("segrt: interrupted (nothing half-written was left behind)", file=sys.stderr)
        return 130
    return 0


__all__ = ["Commands", "build_commands", "build_parser", "main"]


if __name__ == "__main__":
    sys.exit(main())
