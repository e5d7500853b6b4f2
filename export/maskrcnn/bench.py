"""``segrt bench maskrcnn|keypointrcnn``: the R-CNN benchmark variants, timed by the shared harness (``segrt.bench``).

Per model, same weights, image and threads:

* Mask R-CNN (nuclei-like blobs): ``small``, the demo resnet18-FPN (or ``--checkpoint``) at the
  image's size rounded up to 32; ``r50``, ``r101``, ``x50``, ``x101``: random-weight
  ``maskrcnn_resnet50_fpn``, ``maskrcnn_resnet101_fpn``, ``maskrcnn_resnext50_32x4d_fpn``,
  ``maskrcnn_resnext101_32x8d_fpn`` at 800x1344 (``LARGE``).
* Keypoint R-CNN (a synthetic pose image, ``segrt data pose``): ``small``, a resnet18-FPN at its
  training size (``--checkpoint``, default 128x128 with random weights); ``r50`` ... ``x101``, the
  random-weight ``keypointrcnn_*`` of the same bodies at 800x1344.

Variants:

* ``torchvision eager fp32`` (the reference): end to end = ``model([image])`` with its own
  transform and postprocessing (``paste_masks_in_image``) plus the mask threshold, from a
  numpy image; model only = transform + backbone + RPN + RoI heads (no paste, no un-resize).
* every installed runtime of ``segrt.bench.artifacts.RUNTIMES`` on the exported portable ONNX (and
  its int8 copy with ``--int8``): model only = ``backend.run`` on the predictor's feed, end to end
  = ``segrt.load(onnx).predict(image)`` (resize/pad, the network, mask pasting).

End-to-end agreement: COCO AP of each variant's detections against torchvision's.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segrt.bench.agreement import BY_KIND
from segrt.bench.artifacts import bench_image
from segrt.bench.cli import publish
from segrt.bench.core import Report, Variant, run_variants
from segrt.errors import InputError
from segrt.export import bench_common
from segrt.export.checkpoint import load_checkpoint
from segrt.export.maskrcnn.models import MaskRCNNConfig, build_model, calibrate_batchnorm, model_from_checkpoint
from segrt.export.maskrcnn.onnx_export import torch_to_onnx
from segrt.export.maskrcnn.reference import TorchvisionPredictor
from segrt.io.preprocess import to_rgb_uint8

# --models name -> the body of its random-weight paper-size arch (maskrcnn_<body> / keypointrcnn_<body>)
LARGE: dict[str, str] = {
    "r50": "resnet50_fpn",
    "r101": "resnet101_fpn",
    "x50": "resnext50_32x4d_fpn",
    "x101": "resnext101_32x8d_fpn",
}
MODELS = ("small", *LARGE)
R50_PICK_NOTE = (
    "note (r50 and the other paper-size models): with random weights every score is a near tie, "
    "so a runtime that moves the RPN's proposals at all (bf16, int8, mixed) disagrees with torchvision whatever its accuracy; judge those "
    "on a trained checkpoint (benchmarks/openvino_accuracy.py, README OpenVINO section)"
)


def torchvision_model_call(model: torch.nn.Module, image: np.ndarray) -> Callable[[], Any]:
    """torchvision's network alone on a uint8 RGB [H, W, 3] image: transform, backbone, RPN, RoI heads."""
    model.eval()  # exporting may leave the model in training mode
    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float() / 255.0

    @torch.no_grad()
    def call() -> Any:
        images, _ = model.transform([tensor])
        feats = model.backbone(images.tensors)
        props, _ = model.rpn(images, feats)
        return model.roi_heads(feats, props, images.image_sizes)

    return call


def torchvision_variants(model: torch.nn.Module, names: list[str], image: np.ndarray, group: str) -> list[Variant]:
    """torchvision eager fp32, end to end and model only: the references of ``group``."""
    pixels = float(image.shape[0] * image.shape[1])
    info = {"backend": "pytorch", "precision": "fp32"}

    def e2e() -> Callable[[], Any]:
        predictor = TorchvisionPredictor(model, names)
        return lambda: predictor.predict(image)

    return [
        Variant(
            "torchvision eager fp32",
            lambda: torchvision_model_call(model, image),
            "model",
            reference=True,
            group=group,
            pixels_per_call=pixels,
            info=info,
        ),
        Variant(
            "torchvision eager fp32", e2e, "end_to_end", reference=True, group=group, pixels_per_call=pixels, info=info
        ),
    ]


def model_variants(
    name: str,
    model: torch.nn.Module,
    cfg: MaskRCNNConfig,
    names: list[str],
    input_size: tuple[int, int],
    image: np.ndarray,
    workdir: Path,
    args: argparse.Namespace,
    threads: int,
    onnx_path: Path | None = None,
    int8_path: Path | None = None,
) -> tuple[list[Variant], dict[str, Any]]:
    """Export ``model`` at ``input_size`` (unless ``onnx_path`` is given) and declare its variants.

    A given ``int8_path`` is timed as is; otherwise ``--int8`` quantizes the export.
    """
    model = model.eval()
    group = f"{name} {input_size[0]}x{input_size[1]}"
    facts: dict[str, Any] = {"input_size": list(input_size), "image_hw": list(image.shape[:2])}
    if onnx_path is None:
        onnx_path = workdir / f"{name}_{input_size[0]}x{input_size[1]}.onnx"
        t = time.perf_counter()
        torch_to_onnx(model, cfg, names, onnx_path, input_size)
        facts["export_s"] = round(time.perf_counter() - t, 2)
    int8 = int8_path or bench_common.int8_artifact(onnx_path, args, image)
    variants = torchvision_variants(model, names, image, group)
    variants += bench_common.runtime_variants(cfg.kind, onnx_path, int8, image, threads, group)
    return variants, facts


def _small(checkpoint: Path | None, kind: str) -> tuple[torch.nn.Module, MaskRCNNConfig, list[str]]:
    if checkpoint:
        ckpt = load_checkpoint(checkpoint)
        if ckpt["kind"] != kind:
            raise InputError(
                f"{checkpoint} holds a {ckpt['kind']} model, not a {kind}",
                f"use `segrt bench {ckpt['kind']} --checkpoint {checkpoint}`",
            )
        return model_from_checkpoint(ckpt)
    torch.manual_seed(0)
    if kind == "keypointrcnn":
        cfg = MaskRCNNConfig(
            arch="keypointrcnn_resnet18_fpn", min_size=128, max_size=128, anchor_sizes=(8, 16, 32, 64, 128)
        )
        return build_model(cfg).eval(), cfg, ["__background__", "person"]
    cfg = MaskRCNNConfig(min_size=256, max_size=512)
    return build_model(cfg).eval(), cfg, ["__background__", "nucleus"]


def _large(name: str, kind: str, image: np.ndarray) -> tuple[torch.nn.Module, MaskRCNNConfig, list[str]]:
    """(eval model, config, class names) of ``--models name`` (a ``LARGE`` key), paper settings:
    Keypoint R-CNN with one class (person), Mask R-CNN with COCO's 91 (background included).

    Random weights, BatchNorm statistics from the benchmark image, for every body alike (``calibrate_batchnorm``:
    with the initial ones a random 101-layer body gives no proposals, and the heads would be timed on nothing).
    """
    torch.manual_seed(0)
    arch = f"{kind}_{LARGE[name]}"
    if kind == "keypointrcnn":
        cfg, names = MaskRCNNConfig.paper(arch, 2), ["__background__", "person"]
    else:
        cfg, names = MaskRCNNConfig.paper(arch), ["__background__"] + [f"class{i}" for i in range(1, 91)]
    model = build_model(cfg)
    calibrate_batchnorm(model, [torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float() / 255.0])
    return model, cfg, names


def _image(kind: str, hw: tuple[int, int], path: Path | None) -> np.ndarray:
    """The benchmark image: ``path`` (at its own size) or a synthetic one of size ``hw``."""
    if path is not None or kind != "keypointrcnn":
        return to_rgb_uint8(bench_image(None if path else hw, 3, path))
    from segrt.export.maskrcnn.synthetic_pose import render_image

    square, _ = render_image(np.random.default_rng([0, 2, 0]), max(hw))
    return np.ascontiguousarray(square[: hw[0], : hw[1]])


def run_bench(args: argparse.Namespace, onnx_path: Path | None = None, int8_path: Path | None = None) -> Report:
    """Declare and time the variants of every model in ``args.models`` (``args.kind``: maskrcnn | keypointrcnn).

    ``onnx_path`` / ``int8_path``: the small model's exports, when they exist already.
    """
    threads = bench_common.setup(args)
    kind = getattr(args, "kind", "maskrcnn")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        variants: list[Variant] = []
        groups: dict[str, Any] = {}
        for name in args.models:
            if name == "small":
                model, cfg, names = _small(args.checkpoint, kind)
                image = _image(kind, (512, 256) if kind == "maskrcnn" else (cfg.min_size, cfg.max_size), args.image)
                # export at the image's own size (rounded up to 32): torchvision pads to that too,
                # so both sides process the same pixels
                size = (-(-image.shape[0] // 32) * 32, -(-image.shape[1] // 32) * 32)
                found, found8 = onnx_path, int8_path
            else:  # r50 ... x101: the image is resized to 800 on its short side and padded to 1344, as by torchvision
                image = _image(kind, (800, 1333), args.image)
                model, cfg, names = _large(name, kind, image)
                size, found, found8 = (800, 1344), None, None
            vs, facts = model_variants(name, model, cfg, names, size, image, workdir, args, threads, found, found8)
            variants += vs
            groups[vs[0].group] = facts
        ctx = bench_common.context(threads, groups=groups)
        title = {"maskrcnn": "Mask R-CNN", "keypointrcnn": "Keypoint R-CNN"}[kind]
        return run_variants(
            variants,
            args.runs,
            args.warmup,
            rss=args.rss,
            title=f"{title}, torchvision eager vs the segrt, {threads} threads",
            context=ctx,
        )


# per kind: help of --checkpoint, help of --models
_HELP = {
    "maskrcnn": (
        "segrt checkpoint of the small model (default: random-weight resnet18-FPN)",
        (
            "small: the demo model at the image's size (512x256); "
            "r50, r101, x50, x101: random-weight maskrcnn_resnet50_fpn, maskrcnn_resnet101_fpn, "
            "maskrcnn_resnext50_32x4d_fpn, maskrcnn_resnext101_32x8d_fpn at 800x1344"
        ),
    ),
    "keypointrcnn": (
        (
            "segrt Keypoint R-CNN checkpoint of the small model (`segrt train keypointrcnn`; "
            "default: random-weight resnet18-FPN at 128x128)"
        ),
        (
            "small: the checkpoint at its training size on a synthetic pose image; "
            "r50, r101, x50, x101: random-weight keypointrcnn_resnet50_fpn, keypointrcnn_resnet101_fpn, "
            "keypointrcnn_resnext50_32x4d_fpn, keypointrcnn_resnext101_32x8d_fpn at 800x1344"
        ),
    ),
}


def add_bench_arguments(p: argparse.ArgumentParser, kind: str = "maskrcnn") -> None:
    """Options of ``segrt bench maskrcnn`` (or ``keypointrcnn``)."""
    p.set_defaults(kind=kind)
    checkpoint_help, models_help = _HELP[kind]
    p.add_argument("--checkpoint", type=Path, default=None, help=checkpoint_help)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS, help=models_help)
    bench_common.add_arguments(p, f"runs/bench_{kind}.json")


def add_keypoint_bench_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``segrt bench keypointrcnn``."""
    add_bench_arguments(p, "keypointrcnn")


def bench_command(args: argparse.Namespace, onnx_path: Path | None = None, int8_path: Path | None = None) -> Report:
    """Run ``segrt bench maskrcnn|keypointrcnn``: time, print the table, write the JSON report and the plot.

    ``onnx_path`` / ``int8_path``: the small model's exports, when they exist already (see ``run_bench``).
    """
    report = run_bench(args, onnx_path, int8_path)
    budget = BY_KIND[getattr(args, "kind", "maskrcnn")][2]
    report = publish(report, args, {g: budget for g in dict.fromkeys(r.group for r in report.rows)})
    if getattr(args, "pick", False) and set(LARGE) & set(args.models):
        print(R50_PICK_NOTE)
    return report


__all__ = [
    "add_bench_arguments",
    "add_keypoint_bench_arguments",
    "bench_command",
    "model_variants",
    "run_bench",
    "torchvision_variants",
]
