"""What the ``segrt bench`` commands of the training side share: options, threads, int8, runtime rows.

The timing, schema, printer and plot are the runtime's (``segrt.bench``); this module adds only
what needs the training side: PyTorch threads and int8 quantization. The model kinds declare
their variants in ``segrt.export.bench_unet`` and ``segrt.export.maskrcnn.bench``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segrt.bench.agreement import BY_KIND
from segrt.bench.artifacts import artifact_variants, runtimes_for
from segrt.bench.cli import add_common_arguments, check_counts, default_threads, environment
from segrt.bench.core import Variant


def add_arguments(p: argparse.ArgumentParser, out: str) -> None:
    """The shared benchmark options plus the training side's ``--int8`` and ``--workdir``."""
    add_common_arguments(p, out)
    p.add_argument(
        "--int8",
        nargs="?",
        type=Path,
        const=True,
        default=None,
        metavar="IMAGES",
        help="also time the int8 ONNX model (static, per-channel), calibrated on the images in the "
        "folder IMAGES (a split folder's images/ is used), or on the benchmark image if no folder is given",
    )
    p.add_argument(
        "--workdir", type=Path, default=None, help="keep the exported .onnx files here (default: a temporary folder)"
    )


def setup(args: argparse.Namespace) -> int:
    """Check the counts and give PyTorch the thread count every variant runs with; returns it."""
    check_counts(args)
    threads = args.threads or default_threads()
    torch.set_num_threads(threads)
    return threads


def int8_artifact(onnx_path: Path, args: argparse.Namespace, image: np.ndarray) -> Path | None:
    """With ``--int8``: the int8 copy of ``onnx_path`` (``NAME.int8.onnx`` beside it), else None."""
    if args.int8 is None:
        return None
    from segrt.export.quantize import calibration_images, quantize_int8

    images = [image] if args.int8 is True else calibration_images(args.int8)
    return quantize_int8(onnx_path, onnx_path.with_suffix(".int8.onnx"), images)


def runtime_variants(
    kind: str, fp32: Path, int8: Path | None, image: np.ndarray, threads: int, group: str = ""
) -> list[Variant]:
    """The rows of every installed runtime (``segrt.bench.artifacts.RUNTIMES``) for the exported files."""
    agreement, model_agreement, _ = BY_KIND[kind]
    variants: list[Variant] = []
    for rt in runtimes_for({"fp32": fp32, "int8": int8}, kind):
        variants += artifact_variants(
            rt.name,
            fp32 if rt.artifact == "fp32" else int8,
            image,
            threads=threads,
            options=rt.options,
            agreement=agreement,
            model_agreement=model_agreement,
            group=group,
        )
    return variants


def context(threads: int, **more: Any) -> dict[str, Any]:
    import onnxruntime  # noqa: F401  (so environment() reports its version)

    return {"threads": threads, **more, **environment()}


def demo_bench_args(
    add_arguments: Callable[[argparse.ArgumentParser], None], out: Path, runs: int, *more: str
) -> argparse.Namespace:
    """The options of a ``segrt bench`` command as ``segrt demo`` runs it: 2 threads, 2 warm-up calls, --pick."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(
        ["--runs", str(runs), "--warmup", "2", "--threads", "2", "--pick", "--out", str(out), *more]
    )
