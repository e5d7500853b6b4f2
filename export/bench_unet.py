"""``segrt bench unet``: the U-Net's benchmark variants, timed by the shared harness (``segrt.bench``).

All variants use the same weights, the same image and the same thread count, in one run:

* ``pytorch eager fp32`` (the reference) and ``pytorch eager bf16`` (CPU autocast): the model in
  PyTorch behind the segrt's Backend interface (``segrt.export.torch_backend``). Model only = the network
  on the predictor's tile batches; end to end = the segrt pipeline (normalize, overlap-tile, stitch,
  argmax, components) with PyTorch inside.
* every installed runtime of ``segrt.bench.artifacts.RUNTIMES`` on the exported ONNX (and its int8
  copy with ``--int8``): model only = ``backend.run`` on the same tile batches, end to end =
  ``segrt.load(onnx).predict(image)``, what an application gets.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segrt.bench.agreement import BY_KIND, segmentation_agreement
from segrt.bench.artifacts import bench_image, load, predictor_variants
from segrt.bench.cli import publish
from segrt.bench.core import Report, Variant, run_variants
from segrt.export import bench_common
from segrt.export.checkpoint import load_checkpoint
from segrt.export.models.unet import UNet, UNetConfig
from segrt.export.to_onnx import _WithSoftmax, build_unet, unet_to_onnx
from segrt.export.torch_backend import TorchBackend
from segrt.predictor import record_feeds
from segrt.unet.predictor import UNetPredictor

# PyTorch precisions declared as variants: name -> autocast dtype (None = plain fp32, the reference)
TORCH_PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16}


def torch_variants(model: UNet, metadata: dict[str, Any], image: np.ndarray, threads: int) -> list[Variant]:
    """PyTorch eager at each of :data:`TORCH_PRECISIONS`, model only and end to end (fp32 = reference)."""
    variants: list[Variant] = []
    for precision, dtype in TORCH_PRECISIONS.items():

        def make(dtype: torch.dtype | None = dtype) -> UNetPredictor:
            return UNetPredictor(TorchBackend(_WithSoftmax(model), metadata, ["image"], ["probs"], threads, dtype))

        variants += predictor_variants(
            f"pytorch eager {precision}",
            make,
            image,
            agreement=segmentation_agreement,
            model_agreement=segmentation_agreement,
            reference=dtype is None,
            info={"backend": "pytorch", "precision": precision},
        )
    return variants


def run_bench(
    model: UNet,
    class_names: list[str],
    image: np.ndarray,
    args: argparse.Namespace,
    onnx_path: Path | None = None,
    int8_path: Path | None = None,
    normalization: dict | None = None,
) -> Report:
    """Export (unless ``onnx_path`` is given), declare the variants and time them on ``image``.

    ``args`` carries the shared options (runs, warmup, threads, rss, int8, workdir). A given
    ``int8_path`` is timed as is; otherwise ``--int8`` quantizes the export.
    """
    threads = bench_common.setup(args)
    model = model.eval()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.workdir or tmp)
        onnx_path = onnx_path or unet_to_onnx(model, workdir / "unet.onnx", class_names, normalization, check=False)
        int8_path = int8_path or bench_common.int8_artifact(Path(onnx_path), args, image)
        predictor = load(onnx_path, threads)
        metadata = dict(predictor.metadata)
        tiles = np.concatenate([f[predictor.input_name] for f in record_feeds(predictor, image)])
        del predictor
        variants = torch_variants(model, metadata, image, threads)
        variants += bench_common.runtime_variants("unet", Path(onnx_path), int8_path, image, threads)
        cfg = model.config
        gflop = unet_gflop(cfg, tiles.shape[2], tiles.shape[3]) * tiles.shape[0]
        ctx = bench_common.context(
            threads,
            image=list(image.shape),
            tiles=list(tiles.shape),
            gflop_per_image=round(gflop, 3),
            model={
                "depth": cfg.depth,
                "base_channels": cfg.base_channels,
                "padding": cfg.padding,
                "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
            },
        )
        title = (
            f"U-Net depth {cfg.depth}, {cfg.base_channels} channels, image {image.shape[0]}x{image.shape[1]}, "
            f"tiles {list(tiles.shape)}, {gflop:.3g} GFLOP/image, {threads} threads"
        )
        return run_variants(variants, args.runs, args.warmup, rss=args.rss, title=title, context=ctx)


def unet_gflop(cfg: UNetConfig, h: int, w: int) -> float:
    """Multiply-adds x 2 of one forward pass at input h x w (convs and up-convs), in GFLOP."""
    model = UNet(cfg)
    flop = 0

    def hook(m, inp, out):
        nonlocal flop
        # MACs per output element: C_in*k*k for a conv; C_in for a stride-2 2x2 up-conv (one tap per output)
        macs = m.weight[0].numel() if isinstance(m, torch.nn.Conv2d) else m.weight.shape[0]
        flop += 2 * out.numel() * macs

    hooks = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))
    ]
    with torch.inference_mode():
        model.eval()(torch.zeros(1, cfg.in_channels, h, w))
    for hk in hooks:
        hk.remove()
    return flop / 1e9


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``segrt bench unet``."""
    p.add_argument("--checkpoint", type=Path, help="a U-Net checkpoint (default: a He-initialised paper-size U-Net)")
    p.add_argument("--depth", type=int, default=5, help="for the default model (paper: 5)")
    p.add_argument("--base-channels", type=int, default=64, help="for the default model (paper: 64)")
    p.add_argument("--size", type=int, default=512, help="image edge in pixels (default: %(default)s)")
    bench_common.add_arguments(p, "runs/bench_unet.json")


def bench_command(args: argparse.Namespace) -> Report:
    """Run ``segrt bench unet``: time, print the table, write the JSON report and the plot."""
    if args.checkpoint:
        ckpt = load_checkpoint(args.checkpoint)
        model, names, norm = build_unet(ckpt), ckpt["class_names"], ckpt.get("extra", {}).get("normalization")
    else:
        torch.manual_seed(0)
        model = UNet(UNetConfig(depth=args.depth, base_channels=args.base_channels)).eval()
        names, norm = ["background", "foreground"], None
    image = bench_image((args.size, args.size), model.config.in_channels, args.image)
    report = run_bench(model, names, image, args, normalization=norm)
    return publish(report, args, {"": BY_KIND["unet"][2]})
