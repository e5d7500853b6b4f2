"""RoIAlign speed: segrt vs torchvision, as ratios measured in one run (the shared harness, ``segrt.bench``).

Mask R-CNN sized work: 1000 RoIs, 256 channels, P2..P5 of an 800x1344 input,
7x7 (box head) and 14x14 (mask head), sampling_ratio=2, aligned=False.

CPU: ``segrt.ops`` on numpy arrays vs ``torchvision.ops.roi_align`` (all RoIs on P2) and vs
``torchvision.ops.MultiScaleRoIAlign``, at the same thread count (torch.set_num_threads
and our ``threads=`` get ``--threads``). GPU (when CUDA is present and
libsegrt_roi_align_cuda.so is built): ``segrt.ops`` on CUDA tensors vs torchvision's CUDA
ops, fp32 and fp16, plus achieved bandwidth against a device-to-device copy.

    python benchmarks/roi_align_bench.py --device cpu --threads 1 --out runs/roi_align_cpu.json
    python benchmarks/roi_align_bench.py --device cuda --out gpu.json

Each (op, output size, threads or dtype) is one group: torchvision is its reference, and the
segrt row carries the speedup and the largest difference from torchvision's output. Prints the
table and writes the report (``segrt-bench/1`` JSON, see ``segrt.bench.core``) and a plot.
"""

from __future__ import annotations

import argparse
import math
from collections import OrderedDict
from typing import Any

import numpy as np

from segrt.bench.agreement import array_agreement
from segrt.bench.cli import add_common_arguments, check_counts, default_threads, environment, publish
from segrt.bench.core import Variant, run_variants

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


def _agree(out: Any, ref: Any) -> dict[str, float]:
    """Largest |segrt - torchvision| (tensors brought to the host as float32 first)."""

    def host(x: Any) -> np.ndarray:
        return x.float().cpu().numpy() if hasattr(x, "cpu") else np.asarray(x)

    return array_agreement(host(out), host(ref))


def cpu_variants(feats, rois, idx, image_hw, output_sizes, threads: int) -> list[Variant]:
    import torch
    import torchvision

    from segrt.ops import multi_scale_roi_align, roi_align

    names = [f"p{i + 2}" for i in range(len(feats))]
    scales = [1.0 / s for s in STRIDES]
    tfeats = OrderedDict((n, torch.from_numpy(f)) for n, f in zip(names, feats, strict=True))
    tboxes = torch.from_numpy(np.concatenate([idx[:, None].astype(np.float32), rois], 1))
    variants = []
    for out in output_sizes:
        pooler = torchvision.ops.MultiScaleRoIAlign(names, out, 2)
        cases = {
            "roi_align P2": (
                lambda out=out: roi_align(feats[0], rois, idx, out, 0.25, 2, "avg", False, threads=threads),
                lambda out=out: torchvision.ops.roi_align(tfeats["p2"], tboxes, out, 0.25, 2, False),
            ),
            "multi_scale P2-P5": (
                lambda out=out: multi_scale_roi_align(feats, rois, idx, out, scales, 2, threads=threads),
                lambda pooler=pooler: pooler(tfeats, [torch.from_numpy(rois)], [image_hw]),
            ),
        }
        for op, (ours, theirs) in cases.items():
            group = f"cpu {op} {out}x{out} threads={threads}"

            def torch_call(theirs=theirs):
                torch.set_num_threads(threads)  # set when this variant is timed, whatever ran before

                def call():
                    with torch.inference_mode():
                        return theirs()

                return call

            info = {"device": "cpu", "op": op, "output": out, "threads": threads, "dtype": "float32"}
            variants += [
                Variant("torchvision", torch_call, "model", reference=True, group=group, info=info),
                Variant("segrt", lambda ours=ours: ours, "model", agreement=_agree, group=group, info=info),
            ]
    return variants


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
    for (x1, y1, x2, y2), lv in zip(rois, levels, strict=True):
        h, w = shapes[lv]
        s = 1.0 / STRIDES[lv]
        rows = min(h, math.ceil(max((y2 - y1) * s, 1)) + 1)
        cols = min(w, math.ceil(max((x2 - x1) * s, 1)) + 1)
        total += rows * cols * c * elem
    return total + len(rois) * c * out * out * elem


def copy_bandwidth_gbs(runs: int) -> float:
    """Device-to-device copy of 1 GiB (read + write): the practical bandwidth ceiling."""
    import torch

    from segrt.bench.core import measure

    src = torch.empty(256 * 2**20, dtype=torch.float32, device="cuda")
    dst = torch.empty_like(src)
    timing, _ = measure(lambda: dst.copy_(src), runs, 2, sync=torch.cuda.synchronize)
    return 2 * src.numel() * 4 / (timing.p50_ms * 1e-3) / 1e9


def gpu_variants(feats_np, rois_np, idx_np, image_hw, output_sizes) -> list[Variant]:
    import torch
    import torchvision

    from segrt import native, ops
    from segrt.errors import BackendUnavailableError

    try:
        native.find_library(native.CUDA_ROI_ALIGN)
    except BackendUnavailableError as exc:
        print(f"gpu: skipped: {exc}")
        return []
    names = [f"p{i + 2}" for i in range(len(feats_np))]
    scales = [1.0 / s for s in STRIDES]
    rois = torch.from_numpy(rois_np).cuda()
    idx = torch.from_numpy(idx_np.astype(np.int32)).cuda()
    tboxes = torch.cat([idx[:, None].float(), rois], 1)
    variants = []
    for dtype in (torch.float32, torch.float16):
        feats = [torch.from_numpy(f).cuda().to(dtype) for f in feats_np]
        fmap = OrderedDict(zip(names, feats, strict=True))
        elem, c = feats[0].element_size(), feats[0].shape[1]
        shapes = [tuple(f.shape[2:]) for f in feats]
        for out in output_sizes:
            pooler = torchvision.ops.MultiScaleRoIAlign(names, out, 2)
            cases = {
                "roi_align P2": (
                    lambda out=out, feats=feats: ops.roi_align(feats[0], rois, idx, out, 0.25, 2, "avg", False),
                    lambda out=out, feats=feats, dtype=dtype: torchvision.ops.roi_align(
                        feats[0], tboxes.to(dtype), out, 0.25, 2, False
                    ),
                ),
                "multi_scale P2-P5": (
                    lambda out=out, feats=feats: ops.multi_scale_roi_align(feats, rois, idx, out, scales, 2),
                    lambda pooler=pooler, fmap=fmap, dtype=dtype: pooler(fmap, [rois.to(dtype)], [image_hw]),
                ),
            }
            for op, (ours, theirs) in cases.items():
                levels = fpn_levels(rois_np) if op.startswith("multi") else np.zeros(len(rois_np), int)
                dt = str(dtype).split(".")[-1]
                info = {
                    "device": "cuda",
                    "op": op,
                    "output": out,
                    "dtype": dt,
                    "bytes_moved": bytes_moved(rois_np, levels, shapes, c, out, elem),
                }
                group = f"cuda {op} {out}x{out} {dt}"

                def torch_call(theirs=theirs):
                    def call():
                        with torch.inference_mode():
                            return theirs()

                    return call

                variants += [
                    Variant(
                        "torchvision",
                        torch_call,
                        "model",
                        reference=True,
                        group=group,
                        sync=torch.cuda.synchronize,
                        info=info,
                    ),
                    Variant(
                        "segrt",
                        lambda ours=ours: ours,
                        "model",
                        agreement=_agree,
                        group=group,
                        sync=torch.cuda.synchronize,
                        info=info,
                    ),
                ]
    return variants


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    ap.add_argument("--rois", type=int, default=1000)
    ap.add_argument("--channels", type=int, default=256)
    ap.add_argument("--image-size", type=int, nargs=2, default=(800, 1344), metavar=("H", "W"))
    ap.add_argument("--outputs", type=int, nargs="+", default=[7, 14])
    add_common_arguments(ap, "runs/roi_align_bench.json", images=False)
    args = ap.parse_args(argv)
    check_counts(args)

    threads = args.threads or default_threads()
    image_hw = tuple(args.image_size)
    feats, rois, idx = make_problem(np.random.default_rng(0), args.rois, args.channels, image_hw)
    variants: list[Variant] = []
    context: dict[str, Any] = {
        "rois": args.rois,
        "channels": args.channels,
        "image": list(image_hw),
        "sampling_ratio": 2,
        "aligned": False,
        "threads": threads,
    }
    if args.device in ("cpu", "all"):
        variants += cpu_variants(feats, rois, idx, image_hw, args.outputs, threads)
    if args.device in ("cuda", "all"):
        try:
            import torch

            has_cuda = torch.cuda.is_available()
        except ImportError:
            has_cuda = False
        if has_cuda:
            gpu = gpu_variants(feats, rois, idx, image_hw, args.outputs)
            if gpu:
                context.update(gpu=torch.cuda.get_device_name(), copy_bandwidth_gbs=copy_bandwidth_gbs(args.runs))
            variants += gpu
        elif args.device == "cuda":
            print("cuda: no CUDA device; skipped")
    if not variants:
        print("nothing to time")
        return 0
    report = run_variants(
        variants,
        args.runs,
        args.warmup,
        rss=args.rss,
        title=f"RoIAlign: segrt vs torchvision, {args.rois} RoIs x {args.channels} channels, "
        f"P2..P5 of {image_hw[0]}x{image_hw[1]}",
        context={**context, **environment()},
    )
    for row in report.rows:  # achieved bandwidth of the GPU kernels against a plain device copy
        if "bytes_moved" in row.info:
            gbs = row.info["bytes_moved"] / (row.p50_ms * 1e-3) / 1e9
            row.info.update(
                achieved_gbs=round(gbs, 1), fraction_of_copy_bw=round(gbs / report.context["copy_bandwidth_gbs"], 4)
            )
    publish(report, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
