"""``segrt bench unet``: PyTorch eager vs raw ONNX Runtime vs the sdk predictor, in one run.

All four timings use the same weights, the same image and the same thread count:

* ``torch_model``     eager forward of the tile batch (model only)
* ``ort_model``       the raw ``InferenceSession.run`` on the same tile batch (model only)
* ``torch_e2e``       the sdk pipeline (normalize, overlap-tile, stitch, argmax, components) with PyTorch inside
* ``sdk_e2e``         ``sdk.load(onnx).predict(image)``: what an application gets
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

import sdk
from sdk.errors import DataError
from sdk.io import atomic_path
from sdk.timing import time_call
from sdk.unet import UNetPredictor

from .checkpoint import load_checkpoint
from .models.unet import UNet, UNetConfig
from .to_onnx import _WithSoftmax, build_unet, unet_to_onnx
from .torch_backend import TorchBackend


def bench_image(size: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A ``size`` x ``size`` test image: the real DSB2018 image (repeated to fill the size) if prepared, else noise."""
    try:
        from sdk.datasets import load_split
        root = Path("data/dsb2018")
        halves = [load_split(root / s)[0][0] for s in ("train", "val")]
        img = np.concatenate(halves, axis=1)
        reps = int(np.ceil(size / img.shape[0]))
        img = np.tile(img, (reps, reps))[:size, :size]
    except DataError:  # no prepared demo data here: benchmark on noise instead
        img = np.random.default_rng(seed).integers(0, 255, (size, size)).astype(np.uint16)
    return np.repeat(img[:, :, None], channels, axis=2) if channels > 1 else img


def run_bench(model: UNet, class_names: list[str], size: int = 512, runs: int = 10, warmup: int = 2,
              threads: int = 2, onnx_path: Path | None = None, normalization: dict | None = None,
              int8_calibration: list[np.ndarray] | None = None, int8_path: Path | None = None) -> dict[str, Any]:
    """Time the variants on one ``size`` x ``size`` image; returns a JSON-able report.

    With ``int8_calibration`` images (or a ready ``int8_path``), the int8 ONNX model
    (``export.quantize``) is timed too, model-only and end to end.
    """
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = onnx_path or unet_to_onnx(model, Path(tmp) / "unet.onnx", class_names, normalization, check=False)
        if int8_path is None and int8_calibration:
            from .quantize import quantize_int8
            int8_path = quantize_int8(onnx_path, Path(tmp) / "unet.int8.onnx", int8_calibration)
        predictor = sdk.load(onnx_path, threads=threads)
        meta = predictor.metadata
        torch_predictor = UNetPredictor(TorchBackend(_WithSoftmax(model), meta, ["image"], ["probs"]))
        image = bench_image(size, model.config.in_channels)

        # the exact tile batch the predictor feeds its backend, for the model-only timings
        from sdk.preprocess import as_hwc, normalize
        tiles = predictor.tile(normalize(as_hwc(image, predictor.channels), meta["normalization"]))[0]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        wrapped = _WithSoftmax(model).eval()
        tiles_t = torch.from_numpy(tiles)

        def torch_model():
            with torch.inference_mode():
                wrapped(tiles_t)

        results = {
            "torch_model": time_call(torch_model, runs, warmup),
            "ort_model": time_call(lambda: session.run(None, {"image": tiles}), runs, warmup),
            "torch_e2e": time_call(lambda: torch_predictor.predict(image), runs, warmup),
            "sdk_e2e": time_call(lambda: predictor.predict(image), runs, warmup),
        }
        if int8_path is not None:
            int8_predictor = sdk.load(int8_path, threads=threads)
            int8_session = ort.InferenceSession(str(int8_path), opts, providers=["CPUExecutionProvider"])
            results["ort_int8_model"] = time_call(lambda: int8_session.run(None, {"image": tiles}), runs, warmup)
            results["sdk_int8_e2e"] = time_call(lambda: int8_predictor.predict(image), runs, warmup)
        # same answer from both: the comparison is only meaningful if they agree
        reference = torch_predictor.predict(image).classes
        agree = float((reference == predictor.predict(image).classes).mean())
        agree_int8 = float((reference == int8_predictor.predict(image).classes).mean()) if int8_path else None
    cfg = model.config
    gflop = unet_gflop(cfg, tiles.shape[2], tiles.shape[3]) * tiles.shape[0]
    return {
        "model": {"depth": cfg.depth, "base_channels": cfg.base_channels, "padding": cfg.padding,
                  "params_m": sum(p.numel() for p in model.parameters()) / 1e6},
        "image": [size, size], "tiles": list(tiles.shape), "gflop_per_image": gflop, "threads": threads,
        "results": results,
        "ratios": {
            "sdk_e2e_speedup_vs_torch_e2e": results["torch_e2e"]["p50_ms"] / results["sdk_e2e"]["p50_ms"],
            "ort_model_speedup_vs_torch_model": results["torch_model"]["p50_ms"] / results["ort_model"]["p50_ms"],
            "sdk_e2e_overhead_vs_ort_model": results["sdk_e2e"]["p50_ms"] / results["ort_model"]["p50_ms"] - 1,
            **({"sdk_int8_e2e_speedup_vs_torch_e2e": results["torch_e2e"]["p50_ms"] / results["sdk_int8_e2e"]["p50_ms"]}
               if int8_path else {}),
        },
        "achieved_gflops": {k: gflop / (v["p50_ms"] / 1e3) for k, v in results.items() if k.endswith("model")},
        "label_agreement_torch_vs_sdk": agree,
        "label_agreement_torch_vs_sdk_int8": agree_int8,
        "versions": {"torch": torch.__version__, "onnxruntime": ort.__version__, "segrt": sdk.__version__},
        "cpu": platform.processor() or platform.machine(),
    }


def unet_gflop(cfg: UNetConfig, h: int, w: int) -> float:
    """Multiply-adds x 2 of one forward pass at input h x w (convs and up-convs), in GFLOP."""
    model = UNet(cfg)
    flop = 0

    def hook(m, inp, out):
        nonlocal flop
        # MACs per output element: C_in*k*k for a conv; C_in for a stride-2 2x2 up-conv (one tap per output)
        macs = m.weight[0].numel() if isinstance(m, torch.nn.Conv2d) else m.weight.shape[0]
        flop += 2 * out.numel() * macs

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    with torch.inference_mode():
        model.eval()(torch.zeros(1, cfg.in_channels, h, w))
    for hk in hooks:
        hk.remove()
    return flop / 1e9


def plot(report: dict[str, Any], path: Path) -> Path:
    """Bar chart of p50 latency with p90 whiskers, model-only and end-to-end side by side."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = [("torch_model", "PyTorch eager\nmodel only", "#999"), ("ort_model", "ONNX Runtime\nmodel only", "#4a90d9"),
                ("ort_int8_model", "ORT int8\nmodel only", "#7fb3e6"), ("torch_e2e", "PyTorch eager\nend to end", "#999"),
                ("sdk_e2e", "segrt sdk fp32\nend to end", "#e8702a"), ("sdk_int8_e2e", "segrt sdk int8\nend to end", "#f2a86b")]
    res = report["results"]
    variants = [v for v in variants if v[0] in res]
    p50 = [res[n]["p50_ms"] for n, _, _ in variants]
    p90 = [res[n]["p90_ms"] for n, _, _ in variants]
    fig, ax = plt.subplots(figsize=(1.3 * len(variants) + 1.5, 4))
    bars = ax.bar([v[1] for v in variants], p50, color=[v[2] for v in variants],
                  yerr=[np.zeros(len(p50)), np.subtract(p90, p50)], capsize=4)
    ax.tick_params(axis="x", labelsize=8)
    for b, v in zip(bars, p50):
        ax.text(b.get_x() + b.get_width() / 2, v, f"{v:.0f} ms", ha="center", va="bottom", fontsize=9)
    m = report["model"]
    ax.set_ylabel("latency per image, ms (p50, whisker p90)")
    ax.set_title(f"U-Net depth {m['depth']}, {m['base_channels']} ch, {report['image'][0]}x{report['image'][1]} image, "
                 f"{report['threads']} CPU threads", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, help="a U-Net checkpoint (default: a He-initialised paper-size U-Net)")
    p.add_argument("--depth", type=int, default=5, help="for the default model (paper: 5)")
    p.add_argument("--base-channels", type=int, default=64, help="for the default model (paper: 64)")
    p.add_argument("--size", type=int, default=512, help="image edge in pixels (default: %(default)s)")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="threads for both PyTorch and ONNX Runtime")
    p.add_argument("--no-int8", action="store_true", help="skip the int8 (static, calibrated) ONNX variant")
    p.add_argument("--calibration", type=Path, default=Path("data/dsb2018/train"),
                   help="split folder of images to calibrate int8 on (default: %(default)s; else the bench image)")
    p.add_argument("--json", type=Path, default=Path("runs/bench_unet.json"))
    p.add_argument("--plot", type=Path, default=Path("runs/bench_unet.png"))


def bench_command(args) -> dict[str, Any]:
    if args.checkpoint:
        ckpt = load_checkpoint(args.checkpoint)
        model, names, norm = build_unet(ckpt), ckpt["class_names"], ckpt.get("extra", {}).get("normalization")
    else:
        torch.manual_seed(0)
        model, names, norm = UNet(UNetConfig(depth=args.depth, base_channels=args.base_channels)).eval(), ["background", "foreground"], None
    calibration = None
    if not args.no_int8:
        from .quantize import calibration_images
        calibration = (calibration_images(args.calibration) if args.calibration.is_dir()
                       else [bench_image(args.size, model.config.in_channels)])
    report = run_bench(model, names, args.size, args.runs, args.warmup, args.threads, normalization=norm,
                       int8_calibration=calibration)
    with atomic_path(args.json) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.plot)
    print(format_report(report))
    print(f"wrote {args.json} and {args.plot}")
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [f"U-Net {report['model']}, image {report['image']}, tiles {report['tiles']}, "
             f"{report['gflop_per_image']:.0f} GFLOP/image, {report['threads']} threads",
             f"{'variant':<14}{'p50 ms':>10}{'p90 ms':>10}{'img/s':>9}"]
    for name, r in report["results"].items():
        lines.append(f"{name:<14}{r['p50_ms']:>10.1f}{r['p90_ms']:>10.1f}{r['images_per_s']:>9.2f}")
    ratios = report["ratios"]
    if "sdk_int8_e2e_speedup_vs_torch_e2e" in ratios:
        lines.append(f"sdk int8 end-to-end is {ratios['sdk_int8_e2e_speedup_vs_torch_e2e']:.2f}x faster than PyTorch "
                     f"end-to-end (labels agree with PyTorch on {100 * report['label_agreement_torch_vs_sdk_int8']:.2f}% of pixels)")
    lines.append(f"sdk end-to-end is {ratios['sdk_e2e_speedup_vs_torch_e2e']:.2f}x faster than PyTorch end-to-end; "
                 f"ONNX Runtime model {ratios['ort_model_speedup_vs_torch_model']:.2f}x PyTorch model; "
                 f"sdk overhead over raw ORT {100 * ratios['sdk_e2e_overhead_vs_ort_model']:+.1f}%")
    return "\n".join(lines)
