"""RoIAlign speed: segrt vs torchvision, as ratios measured in one run.

Mask R-CNN sized work: 1000 RoIs, 256 channels, P2..P5 of an 800x1344 input,
7x7 (box head) and 14x14 (mask head), sampling_ratio=2, aligned=False.

CPU: ``sdk.ops`` on numpy arrays vs ``torchvision.ops.roi_align`` (all RoIs on P2) and vs
``torchvision.ops.MultiScaleRoIAlign``, at equal thread counts (torch.set_num_threads
and our ``threads=`` get the same number). GPU (when CUDA is present and
libsegrt_roi_align_cuda.so is built): ``sdk.ops`` on CUDA tensors vs torchvision's CUDA
ops, fp32 and fp16, plus achieved bandwidth against a device-to-device copy.

    python benchmarks/roi_align_bench.py --device cpu --threads 1 2 --json out.json
    python benchmarks/roi_align_bench.py --device cuda --json gpu.json

Prints one line per case and writes every number (p50 ms, ratio) to --json.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np


STRIDES = (4, 8, 16, 32)


def make_problem(rng: np.random.Generator, k: int, c: int, image_hw: tuple[int, int]):
    """P2..P5 features (float32), boxes log-uniform from 8 px to the image size (all levels used), batch of 1."""
    h, w = image_hw
    feats = [rng.standard_normal((1, c, math.ceil(h / s), math.ceil(w / s))).astype(np.float32) for s in STRIDES]
    side = np.exp(rng.uniform(np.log(8), np.log(max(h, w)), size=(k, 1)))
    aspect = np.exp(rng.uniform(-0.7, 0.7, size=(k, 1)))
    wh = np.concatenate([side * aspect, side / aspect], axis=1)
    xy = rng.uniform(0, 1, size=(k, 2)) * (np.array([w, h]) - wh).clip(0)
    rois = np.concatenate([xy, xy + wh], axis=1).clip(0, [w, h, w, h]).astype(np.float32)
    return feats, rois, np.zeros(k, np.int64)


def p50(fn, repeats: int, sync=lambda: None) -> float:
    fn()  # warm-up
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def bench_cpu(feats, rois, idx, image_hw, output_sizes, threads_list, repeats):
    import torch
    import torchvision

    from sdk.ops import multi_scale_roi_align, roi_align
    names = [f"p{i + 2}" for i in range(len(feats))]
    scales = [1.0 / s for s in STRIDES]
    tfeats = OrderedDict((n, torch.from_numpy(f)) for n, f in zip(names, feats))
    tboxes = torch.from_numpy(np.concatenate([idx[:, None].astype(np.float32), rois], 1))
    rows = []
    for threads in threads_list:
        torch.set_num_threads(threads)
        for out in output_sizes:
            pooler = torchvision.ops.MultiScaleRoIAlign(names, out, 2)
            with torch.inference_mode():
                cases = {
                    "roi_align P2": (
                        lambda: roi_align(feats[0], rois, idx, out, 0.25, 2, "avg", False, threads=threads),
                        lambda: torchvision.ops.roi_align(tfeats["p2"], tboxes, out, 0.25, 2, False)),
                    "multi_scale P2-P5": (
                        lambda: multi_scale_roi_align(feats, rois, idx, out, scales, 2, threads=threads),
                        lambda: pooler(tfeats, [torch.from_numpy(rois)], [image_hw])),
                }
                for op, (ours, theirs) in cases.items():
                    t_ours, t_tv = p50(ours, repeats), p50(theirs, repeats)
                    rows.append(dict(device="cpu", op=op, output=out, threads=threads, dtype="float32",
                                     ours_ms=t_ours, torchvision_ms=t_tv, speedup=t_tv / t_ours))
                    print(f"cpu  {op:18s} {out:2d}x{out:<2d} threads={threads:<2d} ours {t_ours:9.2f} ms  "
                          f"torchvision {t_tv:9.2f} ms  x{t_tv / t_ours:.2f}", flush=True)
    return rows


def fpn_levels(rois: np.ndarray) -> np.ndarray:
    """torchvision LevelMapper level index (0 = P2) of each box."""
    area = np.maximum((rois[:, 2] - rois[:, 0]) * (rois[:, 3] - rois[:, 1]), 0)
    with np.errstate(divide="ignore"):
        k = np.floor(4 + np.log2(np.sqrt(area) / 224) + 1e-6)
    return (np.clip(k, 2, 5) - 2).astype(int)


def bytes_moved(rois: np.ndarray, levels: np.ndarray, shapes, c: int, out: int, elem: int) -> int:
    """Bytes a kernel must move: per RoI its feature window (rows x cols covered by its taps, clipped
    to the map, all channels; overlapping RoIs counted again) plus the output it writes."""
    total = 0
    for (x1, y1, x2, y2), lv in zip(rois, levels):
        h, w = shapes[lv]
        s = 1.0 / STRIDES[lv]
        rows = min(h, math.ceil(max((y2 - y1) * s, 1)) + 1)
        cols = min(w, math.ceil(max((x2 - x1) * s, 1)) + 1)
        total += rows * cols * c * elem
    return total + len(rois) * c * out * out * elem


def copy_bandwidth_gbs() -> float:
    """Device-to-device copy of 1 GiB (read + write): the practical bandwidth ceiling."""
    import torch
    src = torch.empty(256 * 2**20, dtype=torch.float32, device="cuda")
    dst = torch.empty_like(src)
    ms = p50(lambda: dst.copy_(src), 20, torch.cuda.synchronize)
    return 2 * src.numel() * 4 / (ms * 1e-3) / 1e9


def bench_gpu(feats_np, rois_np, idx_np, image_hw, output_sizes, repeats):
    import torch
    import torchvision

    from sdk import native, ops
    from sdk.errors import BackendUnavailableError
    try:
        native.find_library(native.CUDA_ROI_ALIGN)
    except BackendUnavailableError as exc:
        print(f"gpu: skipped: {exc}")
        return [], {}
    names = [f"p{i + 2}" for i in range(len(feats_np))]
    scales = [1.0 / s for s in STRIDES]
    rois = torch.from_numpy(rois_np).cuda()
    idx = torch.from_numpy(idx_np.astype(np.int32)).cuda()
    tboxes = torch.cat([idx[:, None].float(), rois], 1)
    sync = torch.cuda.synchronize
    copy_gbs = copy_bandwidth_gbs()
    info = dict(gpu=torch.cuda.get_device_name(), copy_bandwidth_gbs=copy_gbs)
    print(f"gpu: {info['gpu']}, device copy bandwidth {copy_gbs:.0f} GB/s")
    rows = []
    for dtype in (torch.float32, torch.float16):
        feats = [torch.from_numpy(f).cuda().to(dtype) for f in feats_np]
        fmap = OrderedDict(zip(names, feats))
        elem = feats[0].element_size()
        c = feats[0].shape[1]
        for out in output_sizes:
            pooler = torchvision.ops.MultiScaleRoIAlign(names, out, 2)
            with torch.inference_mode():
                pooler(fmap, [rois], [image_hw])
                cases = {
                    "roi_align P2": (
                        lambda: ops.roi_align(feats[0], rois, idx, out, 0.25, 2, "avg", False),
                        lambda: torchvision.ops.roi_align(feats[0], tboxes.to(dtype), out, 0.25, 2, False)),
                    "multi_scale P2-P5": (
                        lambda: ops.multi_scale_roi_align(feats, rois, idx, out, scales, 2),
                        lambda: pooler(fmap, [rois.to(dtype)], [image_hw])),
                }
                for op, (ours, theirs) in cases.items():
                    t_ours, t_tv = p50(ours, repeats, sync), p50(theirs, repeats, sync)
                    shapes = [tuple(f.shape[2:]) for f in feats]
                    levels = fpn_levels(rois_np) if op.startswith("multi") else np.zeros(len(rois_np), int)
                    moved = bytes_moved(rois_np, levels, shapes, c, out, elem)
                    gbs = moved / (t_ours * 1e-3) / 1e9
                    rows.append(dict(device="cuda", op=op, output=out, dtype=str(dtype).split(".")[-1],
                                     ours_ms=t_ours, torchvision_ms=t_tv, speedup=t_tv / t_ours,
                                     bytes_moved=moved, achieved_gbs=gbs, fraction_of_copy_bw=gbs / copy_gbs))
                    print(f"cuda {op:18s} {out:2d}x{out:<2d} {rows[-1]['dtype']:8s} ours {t_ours:8.3f} ms  "
                          f"torchvision {t_tv:8.3f} ms  x{t_tv / t_ours:5.2f}  {gbs:6.0f} GB/s "
                          f"({100 * gbs / copy_gbs:.0f}% of copy)", flush=True)
    return rows, info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    ap.add_argument("--threads", type=int, nargs="+", default=None,
                    help="CPU thread counts to compare at (default: 1 and all CPUs)")
    ap.add_argument("--rois", type=int, default=1000)
    ap.add_argument("--channels", type=int, default=256)
    ap.add_argument("--image", type=int, nargs=2, default=(800, 1344), metavar=("H", "W"))
    ap.add_argument("--outputs", type=int, nargs="+", default=[7, 14])
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per case (default: cpu 5, cuda 50)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    import os
    rng = np.random.default_rng(0)
    image_hw = tuple(args.image)
    feats, rois, idx = make_problem(rng, args.rois, args.channels, image_hw)
    result = dict(command=" ".join([sys.executable] + sys.argv), host=platform.node(), cpu=platform.processor(),
                  rois=args.rois, channels=args.channels, image=list(image_hw), sampling_ratio=2, aligned=False,
                  rows=[])
    if args.device in ("cpu", "all"):
        ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        threads = args.threads or sorted({1, ncpu})
        result["rows"] += bench_cpu(feats, rois, idx, image_hw, args.outputs, threads, args.repeats or 5)
    if args.device in ("cuda", "all"):
        try:
            import torch
            has_cuda = torch.cuda.is_available()
        except ImportError:
            has_cuda = False
        if has_cuda:
            rows, info = bench_gpu(feats, rois, idx, image_hw, args.outputs, args.repeats or 50)
            result["rows"] += rows
            result.update(info)
        elif args.device == "cuda":
            print("cuda: no CUDA device; skipped")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
