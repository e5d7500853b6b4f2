#!/usr/bin/env python
"""GPU baseline a TensorRT engine must beat: the models in PyTorch on the GPU, no TensorRT.

Times, per model, eager fp32, eager fp16 (autocast), and the same replayed as CUDA
graphs (``torch.cuda.CUDAGraph``), and checks that the graph replay gives the same
output as eager on an input that was not the capture input:

* U-Net (paper configuration: depth 5, 64 base channels, valid padding) at 572x572
  (the paper's input tile; output 388x388). Its shapes are static, so the whole
  forward is captured.
* torchvision ``maskrcnn_resnet50_fpn`` (random weights, eval) at 800x1344. Its
  eager forward is data dependent (proposal counts, NMS, ``nonzero``), so it cannot
  be captured whole: only the backbone + FPN (static shapes, most of the FLOPs) is
  captured, RPN and heads stay eager. Random weights give near-uniform class scores,
  so the score threshold is 0: the box and mask heads then work on the full 100
  detections, as on a busy real image, instead of on none.

Output: a table on stdout and JSON in ``--out`` (default ``$OUT/gpu_baseline.json``,
else ``./gpu_baseline.json``). Needs torch + torchvision (+ a CUDA GPU for the real
run; about a minute on an H100). ``--device cpu --quick`` runs the CPU-safe parts on
tiny inputs to check the script itself.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from segrt.bench import measure  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def precision_ctx(device: torch.device, precision: str, cache_enabled: bool = True):
    """fp32: nothing; fp16: autocast (the autocast cache must be off while capturing a graph)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.float16, cache_enabled=cache_enabled)


def capture(fn: Callable[[], Any], device: torch.device) -> tuple[torch.cuda.CUDAGraph, Any]:
    """Warm ``fn`` up on a side stream (as PyTorch's CUDA-graph docs require), then capture it."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    return graph, out


def compare(a: Any, b: Any) -> dict[str, Any]:
    """Bitwise equality and max |diff| of two tensors or (nested) dict/list/tuple of tensors."""
    if isinstance(a, dict):
        parts = [compare(a[k], b[k]) for k in a]
    elif isinstance(a, (list, tuple)):
        if len(a) != len(b):
            return {"equal": False, "max_abs_diff": float("inf"), "note": f"lengths {len(a)} vs {len(b)}"}
        parts = [compare(x, y) for x, y in zip(a, b, strict=True)]
    else:
        if a.shape != b.shape:
            return {
                "equal": False,
                "max_abs_diff": float("inf"),
                "note": f"shapes {tuple(a.shape)} vs {tuple(b.shape)}",
            }
        diff = (a.float() - b.float()).abs().max().item() if a.numel() else 0.0
        return {"equal": bool(torch.equal(a, b)), "max_abs_diff": float(diff)}
    return {
        "equal": all(p["equal"] for p in parts),
        "max_abs_diff": max((p["max_abs_diff"] for p in parts), default=0.0),
    }


def timed(fn: Callable[[], Any], device: torch.device, runs: int, warmup: int, images: int) -> dict[str, float]:
    # latency = until the result is ready, as a TensorRT run() would measure
    timing, _ = measure(fn, runs, warmup, sync=lambda: sync(device), images_per_call=images)
    return {k: v for k, v in vars(timing).items() if v is not None}


# ----------------------------------------------------------------------------- U-Net


def bench_unet(device: torch.device, quick: bool, runs: int, warmup: int, size: int | None, batch: int) -> list[dict]:
    from segrt.export.models.unet import UNet, UNetConfig, geometry, output_size

    config = (
        UNetConfig(depth=3, base_channels=8)
        if quick
        else UNetConfig(in_channels=1, num_classes=2, depth=5, base_channels=64, padding="valid")
    )
    geo = geometry(config)
    size = geo.valid_at_least(size or (92 if quick else 572))
    torch.manual_seed(0)
    model = UNet(config).eval().to(device)
    x = torch.randn(batch, config.in_channels, size, size, device=device)
    x2 = torch.randn_like(x)  # for the graph check: an input the graph was not captured with
    rows = []
    for precision in ("fp32", "fp16"):
        for graphed in (False, True):
            row = {
                "model": "unet",
                "input": [batch, config.in_channels, size, size],
                "output_hw": [output_size(config, size)] * 2,
                "precision": precision,
                "mode": "cuda_graph" if graphed else "eager",
            }
            rows.append(row)
            if device.type != "cuda" and (precision == "fp16" or graphed):
                row["skipped"] = "fp16 autocast and CUDA graphs are GPU-only here"
                continue
            with torch.no_grad():
                if not graphed:

                    def fn():
                        with precision_ctx(device, precision):  # noqa: B023 - called within this iteration, before the loop variable changes
                            return model(x)

                    row.update(timed(fn, device, runs, warmup, batch))
                    continue
                static_x = x.clone()

                def body():
                    with precision_ctx(device, precision, cache_enabled=False):  # noqa: B023 - called within this iteration, before the loop variable changes
                        return model(static_x)  # noqa: B023 - called within this iteration, before the loop variable changes

                graph, static_y = capture(body, device)
                row.update(timed(graph.replay, device, runs, warmup, batch))
                static_x.copy_(x2)
                graph.replay()
                sync(device)
                with precision_ctx(device, precision):
                    eager = model(x2)
                row["graph_vs_eager"] = compare(static_y, eager)
    return rows


# ----------------------------------------------------------------------------- Mask R-CNN


class GraphedBackbone(torch.nn.Module):
    """Replays a CUDA graph of ``backbone`` (ResNet-50 + FPN) for one fixed input shape."""

    def __init__(self, backbone: torch.nn.Module, example: torch.Tensor, precision: str) -> None:
        super().__init__()
        self.backbone, self.out_channels = backbone, backbone.out_channels
        self.static_x = example.clone()
        device = example.device

        def body():
            with precision_ctx(device, precision, cache_enabled=False):
                return backbone(self.static_x)

        self.graph, self.static_out = capture(body, device)

    def forward(self, x: torch.Tensor):
        if x.shape != self.static_x.shape:
            raise ValueError(f"graph captured for {tuple(self.static_x.shape)}, got {tuple(x.shape)}")
        self.static_x.copy_(x)
        self.graph.replay()
        return dict(self.static_out)


def bench_maskrcnn(device: torch.device, quick: bool, runs: int, warmup: int, hw: tuple[int, int]) -> list[dict]:
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    h, w = (128, 160) if quick else hw
    torch.manual_seed(0)
    # min_size/max_size = the input size: GeneralizedRCNNTransform keeps the image as it is (scale 1)
    model = (
        maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, min_size=h, max_size=w, box_score_thresh=0.0)
        .eval()
        .to(device)
    )
    img = torch.rand(3, h, w, device=device)
    img2 = torch.rand(3, h, w, device=device)
    rows = []
    for precision in ("fp32", "fp16"):
        for graphed in (False, True):
            row = {
                "model": "maskrcnn_resnet50_fpn",
                "input": [3, h, w],
                "precision": precision,
                "mode": "cuda_graph_backbone" if graphed else "eager",
            }
            rows.append(row)
            if device.type != "cuda" and (precision == "fp16" or graphed):
                row["skipped"] = "fp16 autocast and CUDA graphs are GPU-only here"
                continue
            with torch.no_grad():
                if not graphed:

                    def fn():
                        with precision_ctx(device, precision):  # noqa: B023 - called within this iteration, before the loop variable changes
                            return model([img])

                    row.update(timed(fn, device, runs, warmup, 1))
                    out = fn()
                    row["detections"] = int(out[0]["boxes"].shape[0])
                    continue
                padded = model.transform([img])[0].tensors  # the backbone's static input shape
                eager_backbone = model.backbone
                model.backbone = GraphedBackbone(eager_backbone, padded, precision)
                try:

                    def fn():
                        with precision_ctx(device, precision):  # noqa: B023 - called within this iteration, before the loop variable changes
                            return model([img])

                    row.update(timed(fn, device, runs, warmup, 1))
                    # same output as eager on an input the graph was not captured with
                    images = model.transform([img2])[0].tensors
                    with precision_ctx(device, precision):
                        feats_graph = {k: v.clone() for k, v in model.backbone(images).items()}
                        out_graph = model([img2])
                    model.backbone = eager_backbone
                    with precision_ctx(device, precision):
                        feats_eager = eager_backbone(images)
                        out_eager = model([img2])
                    row["graph_vs_eager_features"] = compare(feats_graph, dict(feats_eager))
                    row["graph_vs_eager_detections"] = compare(out_graph[0], out_eager[0])
                finally:
                    model.backbone = eager_backbone
    return rows


# ----------------------------------------------------------------------------- main


def environment(device: torch.device) -> dict[str, Any]:
    env = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
    }
    try:
        import torchvision

        env["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        env.update(
            gpu=p.name,
            compute_capability=f"{p.major}.{p.minor}",
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            gpu_memory_gib=round(p.total_memory / 2**30, 1),
        )
    else:
        env["cpu_threads"] = torch.get_num_threads()
    return env


def print_table(rows: list[dict]) -> None:
    head = f"{'model':<22} {'input':<20} {'prec':<5} {'mode':<20} {'p50 ms':>8} {'p90 ms':>8} {'img/s':>8}  check"
    print(head)
    print("-" * len(head))
    for r in rows:
        shape = "x".join(str(d) for d in r["input"])
        if "skipped" in r:
            print(
                f"{r['model']:<22} {shape:<20} {r['precision']:<5} {r['mode']:<20} {'-':>8} {'-':>8} {'-':>8}  skipped: {r['skipped']}"
            )
            continue
        checks = [v for k, v in r.items() if k.startswith("graph_vs_eager")]
        check = ", ".join(("equal" if c["equal"] else f"max|d|={c['max_abs_diff']:.2e}") for c in checks) or ""
        print(
            f"{r['model']:<22} {shape:<20} {r['precision']:<5} {r['mode']:<20} {r['p50_ms']:>8.2f} "
            f"{r['p90_ms']:>8.2f} {r['throughput']:>8.1f}  {check}"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--quick", action="store_true", help="tiny models/inputs, few runs: checks the script, not speed")
    p.add_argument("--runs", type=int, default=None, help="timed runs per variant (default 50; quick: 2)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs first (default 10; quick: 1)")
    p.add_argument("--unet-size", type=int, default=None, help="U-Net input size, rounded up to a valid size (572)")
    p.add_argument("--unet-batch", type=int, default=1)
    p.add_argument("--rcnn-size", type=int, nargs=2, default=(800, 1344), metavar=("H", "W"))
    p.add_argument("--skip-unet", action="store_true")
    p.add_argument("--skip-rcnn", action="store_true")
    p.add_argument("--out", type=Path, default=None, help="JSON file (default $OUT/gpu_baseline.json)")
    a = p.parse_args(argv)
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA GPU visible to PyTorch; use --device cpu --quick to check the script", file=sys.stderr)
        return 2
    runs = a.runs or (2 if a.quick else 50)
    warmup = a.warmup if a.warmup is not None else (1 if a.quick else 10)
    torch.backends.cudnn.benchmark = True  # pick the fastest conv kernels for these fixed shapes, as TensorRT does
    start = time.perf_counter()
    rows: list[dict] = []
    if not a.skip_unet:
        rows += bench_unet(device, a.quick, runs, warmup, a.unet_size, a.unet_batch)
    if not a.skip_rcnn:
        rows += bench_maskrcnn(device, a.quick, runs, warmup, tuple(a.rcnn_size))
    result = {
        "environment": environment(device),
        "quick": a.quick,
        "runs": runs,
        "warmup": warmup,
        "seconds": round(time.perf_counter() - start, 1),
        "results": rows,
    }
    print_table(rows)
    out = a.out or Path(os.environ.get("OUT", ".")) / "gpu_baseline.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float))
    print(f"\n{result['seconds']} s; wrote {out}")
    failed = [r for r in rows for k, v in r.items() if k.startswith("graph_vs_eager") and not _close(r, v)]
    if failed:
        print(
            "CUDA-graph output differs from eager beyond tolerance:",
            [(r["model"], r["precision"]) for r in failed],
            file=sys.stderr,
        )
        return 1
    return 0


def _close(row: dict, check: dict) -> bool:
    """Graph replay runs the same kernels as eager: fp32 must agree to 1e-4, fp16 to 1e-2 (abs)."""
    return check["equal"] or check["max_abs_diff"] <= (1e-4 if row["precision"] == "fp32" else 1e-2)


if __name__ == "__main__":
    sys.exit(main())
