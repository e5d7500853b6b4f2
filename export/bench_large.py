"""Large images: throughput (Mpixel/s) and peak memory against image size, U-Net and Mask R-CNN.

    python -m segrt.export.bench_large unet --sizes 2048 8192 16384 --out runs/large_unet.json
    python -m segrt.export.bench_large maskrcnn --model runs/maskrcnn_256x256.onnx --sizes 1024 2048 4096 \\
        --coco data/dsb2018/coco --out runs/large_maskrcnn.json

(``bench_command`` / ``add_bench_arguments`` are the hooks for a ``segrt bench large`` verb.)

Every measurement runs in a fresh child process on a uint16 TIFF written beforehand:
the child loads the model and opens the image lazily, then resets the kernel's peak-RSS
counter (``/proc/self/clear_refs``), so "peak RSS above baseline" is what prediction (and,
for the U-Net, saving the outputs as ``segrt predict`` does) added on top of the
loaded model. Throughput = image pixels / wall time of ``predict``.

U-Net: the demo architecture (depth 4, 16 channels, valid padding) with random weights
(memory and speed do not depend on the weights), classes and int32 instances asked for,
no probability map unless ``--probs``. Mask R-CNN: a mosaic of the held-out DSB2018 half
(``segrt data dsb2018 --coco``) tiled to the size, through sliding windows; COCO AP
against the mosaic's tiled ground truth.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _status() -> dict[str, int]:
    """VmRSS and VmHWM (peak) of this process, in bytes."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            out[line.split(":")[0]] = int(line.split()[1]) * 1024
    return out


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


# -- children: one measurement each ----------------------------------------------------------
def _measured(args, run):
    """Load the model, open the image lazily, reset the peak counter, then ``run(predictor, source)``.

    Returns (predictor, (H, W), what run returned, seconds, baseline RSS bytes).
    """
    import segrt
    from segrt.io.sources import open_image

    predictor = segrt.load(args.model, backend=getattr(args, "backend", None), threads=args.threads)
    source = open_image(args.image)
    base = _status()["VmRSS"]
    _PEAK_BEFORE[0] = _status()["VmHWM"]
    _reset_peak()
    t0 = time.perf_counter()
    out = run(predictor, source)
    return predictor, source.shape[:2], out, time.perf_counter() - t0, base


def _row(hw, seconds, base, peak) -> dict:
    H, W = hw
    return {
        "image": [H, W],
        "megapixels": H * W / 1e6,
        "predict_s": seconds,
        "mpixel_per_s": H * W / 1e6 / seconds,
        "baseline_rss_mb": base / 2**20,
        "peak_above_baseline_mb": (peak - base) / 2**20,
    }


def child_unet(args) -> dict:
    if args.to_disk:
        return child_unet_to_disk(args)
    predictor, hw, result, seconds, base = _measured(
        args, lambda p, src: p.predict(src, tile=args.tile, batch=args.batch, probs=args.probs, progress=args.progress)
    )
    predict_peak = _status()["VmHWM"]
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:  # what `segrt predict` writes
        t1 = time.perf_counter()
        predictor.save(result, tmp, "out")
        save_s = time.perf_counter() - t1
    return {
        **_row(hw, seconds, base, _status()["VmHWM"]),
        "tile": args.tile,
        "batch": args.batch,
        "probs": args.probs,
        "save_s": save_s,
        "predict_peak_above_baseline_mb": (predict_peak - base) / 2**20,
        "instances": result.count,
        "timings_ms": predictor.last_timings,
    }


def child_unet_to_disk(args) -> dict:
    """``predict(image_path, out=DIR)``: outputs streamed to disk (OME-Zarr or TIFF), as ``segrt predict --out``
    does for large images; reports the whole process's peak RSS too (model, libraries and all)."""
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        predictor, hw, result, seconds, base = _measured(
            args,
            lambda p, src: p.predict(
                str(args.image),
                tile=args.tile,
                batch=args.batch,
                probs=None,
                progress=args.progress,
                out=tmp,
                out_format=args.to_disk,
                save_image=not args.no_image,
            ),
        )
        on_disk = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file())
    H, W = hw
    timings = predictor.last_timings
    return {
        **_row(hw, seconds, base, _status()["VmHWM"]),
        "tile": args.tile,
        "batch": args.batch,
        "to_disk": args.to_disk,
        "backend": predictor.backend.__class__.__name__,
        "whole_process_peak_mb": max(_status()["VmHWM"], _PEAK_BEFORE[0]) / 2**20,
        "network_only_mpixel_per_s": H * W / 1e6 / (timings["model_ms"] / 1e3),
        "instances": result.count,
        "outputs_mb": on_disk / 2**20,
        "timings_ms": timings,
    }


_PEAK_BEFORE = [0]  # the whole process's peak before the counter was reset (loading the model)


def child_maskrcnn(args) -> dict:
    predictor, hw, result, seconds, base = _measured(
        args, lambda p, src: p.predict(src, tiles=True, overlap=args.overlap, progress=args.progress)
    )
    report = {
        **_row(hw, seconds, base, _status()["VmHWM"]),
        "window": list(predictor.input_hw),
        "overlap": args.overlap,
        "instances": len(result),
        "timings_ms": predictor.last_timings,
    }
    if args.gt:
        report.update(coco_ap(result, args.gt))
    return report


def coco_ap(result, gt_json: str) -> dict:
    """COCO box/segm AP of one image's Instances against a one-image COCO file."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from segrt.rcnn.coco import instances_to_coco

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_json)
        dets = instances_to_coco(result, image_id=gt.getImgIds()[0])
        out = {}
        for kind in ("bbox", "segm"):
            ev = COCOeval(gt, gt.loadRes(dets), kind)
            ev.params.maxDets = [max(100, len(dets))]  # thousands of objects in one image
            ev.evaluate()
            ev.accumulate()
            # COCO's AP (area "all", the one maxDets): mean precision over IoU 0.5:0.95 and recall
            p = ev.eval["precision"][:, :, :, 0, -1]
            out[f"{kind}_AP"] = float(p[p > -1].mean())
            p50 = p[0]
            out[f"{kind}_AP50"] = float(p50[p50 > -1].mean())
    return out


# -- parent: build inputs, run children -----------------------------------------------------
def _run_child(argv: list[str], timeout: float) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "segrt.export.bench_large", *argv], capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child failed: {' '.join(argv)}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def unet_image(path: Path, size: int, seed: int = 0, tiled: bool = False, rows: int | None = None) -> Path:
    """A uint16 TIFF of smooth blobs, ``size`` wide and ``rows`` (default ``size``) tall, written a band at
    a time (never whole in memory): contiguous and uncompressed, or (``tiled``) 512 x 512 zlib-compressed
    tiles in a BigTIFF."""
    height = int(rows or size)
    import cv2
    import tifffile

    rng = np.random.default_rng(seed)
    band = 512 if tiled else 1024

    def bands():
        for y0 in range(0, height, band):
            h = min(band, height - y0)
            noise = cv2.GaussianBlur(rng.random((h, size), dtype=np.float32), (0, 0), 6)
            yield (np.clip((noise - 0.5) * 8 + 0.5, 0, 1) * 4000).astype(np.uint16)

    def tiles():
        for rows in bands():
            for x0 in range(0, size, band):
                tile = np.zeros((band, band), np.uint16)
                block = rows[:, x0 : x0 + band]
                tile[: block.shape[0], : block.shape[1]] = block
                yield tile

    if tiled:
        tifffile.imwrite(
            path,
            data=tiles(),
            shape=(height, size),
            dtype=np.uint16,
            tile=(band, band),
            compression="zlib",
            bigtiff=True,
        )
    else:
        tifffile.imwrite(path, data=bands(), shape=(height, size), dtype=np.uint16)  # contiguous, uncompressed
    return path


def demo_unet(path: Path) -> Path:
    import torch

    from segrt.export.models.unet import UNet, UNetConfig
    from segrt.export.to_onnx import unet_to_onnx

    torch.manual_seed(0)
    model = UNet(UNetConfig(depth=4, base_channels=16, padding="valid", dropout=0.5)).eval()
    return unet_to_onnx(model, path, ["background", "nucleus"], check=False)


def run_unet(args) -> dict:
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    model = demo_unet(work / "unet_demo_random.onnx")
    rows = []
    for size in args.sizes:
        rows_tag = f"x{args.rows}" if args.rows else ""
        image = work / f"unet_{size}{rows_tag}{'_tiled' if args.tiled else ''}.tif"
        if not image.exists():
            unet_image(image, size, tiled=args.tiled, rows=args.rows)
        for probs in args.probs:
            argv = [
                "--child",
                "unet",
                "--model",
                str(model),
                "--image",
                str(image),
                "--tile",
                str(args.tile),
                "--batch",
                str(args.batch),
                "--threads",
                str(args.threads),
                "--probs",
                probs,
                "--workdir",
                str(work),
            ]
            argv += (["--to-disk", args.to_disk] if args.to_disk else []) + (["--no-image"] if args.no_image else [])
            argv += ["--backend", args.backend] if args.backend else []
            row = _run_child(argv, args.timeout)
            print(json.dumps(row), flush=True)
            rows.append(row)
        if not args.keep:
            image.unlink()
    return {"model": "unet depth 4, 16 channels, valid (random weights)", "threads": args.threads, "rows": rows}


def mosaic(coco_dir: Path, size: int, out_image: Path, out_json: Path) -> None:
    """Tile the held-out image (and its instances) into a size x size mosaic; COCO ground truth."""
    import tifffile
    from pycocotools import mask as mask_utils

    from segrt.io.images import read_image
    from segrt.rcnn.coco import compress_counts
    from segrt.rcnn.masks import MaskCrops

    gt = json.loads((coco_dir / "val.json").read_text())
    info = gt["images"][0]
    img = read_image(coco_dir / "val" / info["file_name"])
    h, w = img.shape[:2]
    reps = (-(-size // h), -(-size // w))
    tiled = np.tile(img, (reps[0], reps[1]) + (1,) * (img.ndim - 2))[:size, :size]
    tifffile.imwrite(out_image, tiled)
    masks = [
        mask_utils.decode(a["segmentation"]).astype(bool) for a in gt["annotations"] if a["image_id"] == info["id"]
    ]
    boxes = [np.argwhere(m) for m in masks]
    crops, origins = [], []
    for ry in range(reps[0]):
        for rx in range(reps[1]):
            for m, yx in zip(masks, boxes, strict=True):
                (y0, x0), (y1, x1) = yx.min(0), yx.max(0) + 1
                gy, gx = ry * h + y0, rx * w + x0
                c = m[y0:y1, x0:x1][: max(0, size - gy), : max(0, size - gx)]
                if c.any():
                    crops.append(c)
                    origins.append((gy, gx))
    sparse = MaskCrops(crops, np.asarray(origins), (size, size))  # full-size RLE from crops, no full masks
    anns = []
    for i, c in enumerate(crops):
        rle = {"size": [size, size], "counts": compress_counts(sparse.run_lengths(i))}
        ys, xs = np.nonzero(c)
        gy, gx = origins[i]
        anns.append(
            {
                "id": i + 1,
                "image_id": 1,
                "category_id": 1,
                "segmentation": rle,
                "area": float(c.sum()),
                "bbox": [
                    float(gx + xs.min()),
                    float(gy + ys.min()),
                    float(xs.max() - xs.min() + 1),
                    float(ys.max() - ys.min() + 1),
                ],
                "iscrowd": 0,
            }
        )
    out_json.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": out_image.name, "height": size, "width": size}],
                "annotations": anns,
                "categories": gt["categories"],
            }
        )
    )


def run_maskrcnn(args) -> dict:
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes:
        image, gt = work / f"mosaic_{size}.tif", work / f"mosaic_{size}.json"
        mosaic(Path(args.coco), size, image, gt)
        argv = [
            "--child",
            "maskrcnn",
            "--model",
            str(args.model),
            "--image",
            str(image),
            "--threads",
            str(args.threads),
            "--overlap",
            str(args.overlap),
        ]
        if size <= args.ap_max_size:  # pycocotools' IoU matrix grows as objects^2: minutes at 4096 px
            argv += ["--gt", str(gt)]
        row = _run_child(argv, args.timeout)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return {"model": str(args.model), "threads": args.threads, "rows": rows}


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for label, rows in report["series"].items():
        mp = [r["megapixels"] for r in rows]
        a.plot(mp, [r["mpixel_per_s"] for r in rows], "o-", label=label)
        b.plot(mp, [r["peak_above_baseline_mb"] for r in rows], "o-", label=label)
    a.set(xscale="log", xlabel="image (Mpixel)", ylabel="Mpixel/s", title="throughput")
    b.set(xscale="log", ylim=(0, None), xlabel="image (Mpixel)", ylabel="MiB", title="peak RSS above baseline")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    """Options of the large-image benchmark (``model_kind`` first: unet | maskrcnn)."""
    p.add_argument("model_kind", nargs="?", choices=["unet", "maskrcnn"])
    p.add_argument("--child", choices=["unet", "maskrcnn"], help=argparse.SUPPRESS)
    p.add_argument("--model", type=Path, help="maskrcnn: the .onnx to run through windows")
    p.add_argument("--image", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--gt", help=argparse.SUPPRESS)
    p.add_argument("--sizes", type=int, nargs="+", default=[2048, 8192, 16384], help="square image edges (px)")
    p.add_argument("--tile", type=int, default=512, help="unet: largest tile")
    p.add_argument("--batch", type=int, default=4, help="unet: tiles per call")
    p.add_argument("--probs", nargs="+", default=["none"], help="unet: none | float16 | uint8 | float32 (one run each)")
    p.add_argument(
        "--to-disk",
        choices=["ome-zarr", "tiff"],
        default=None,
        help="unet: stream the outputs to disk (predict(..., out=)) instead of keeping them in memory",
    )
    p.add_argument("--no-image", action="store_true", help="unet --to-disk: do not copy the input into the OME-Zarr")
    p.add_argument(
        "--rows",
        type=int,
        default=None,
        help="unet: image height (default: square); a full-width strip has the working set of the square",
    )
    p.add_argument("--tiled", action="store_true", help="unet: input as a tiled, zlib-compressed BigTIFF")
    p.add_argument("--backend", default=None, help="unet: runtime (default the file's; auto: fastest on this CPU)")
    p.add_argument("--overlap", type=int, default=64, help="maskrcnn: window overlap (px)")
    p.add_argument("--ap-max-size", type=int, default=2048, help="maskrcnn: COCO AP for mosaics up to this size")
    p.add_argument("--coco", type=Path, default=Path("data/dsb2018/coco"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--timeout", type=float, default=3600, help="seconds per measurement")
    p.add_argument("--workdir", type=Path, default=Path("runs/large_image"))
    p.add_argument("--keep", action="store_true", help="keep the generated TIFFs")
    p.add_argument("--progress", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=None, help="JSON report (a PNG plot is written next to it)")


def bench_command(args) -> dict:
    """Run the benchmark (or, with ``--child``, one measurement); writes JSON and a plot."""
    if args.child:
        if isinstance(args.probs, list):
            args.probs = None if args.probs[0] == "none" else args.probs[0]
        row = child_unet(args) if args.child == "unet" else child_maskrcnn(args)
        print(json.dumps(row))
        return row
    if args.model_kind is None:
        raise SystemExit("say which model: unet or maskrcnn")
    report = run_unet(args) if args.model_kind == "unet" else run_maskrcnn(args)
    series: dict[str, list] = {}
    for r in report["rows"]:
        label = (
            (
                f"{args.model_kind} to_disk={r['to_disk']}"
                if r.get("to_disk")
                else f"{args.model_kind} probs={r.get('probs')}"
            )
            if args.model_kind == "unet"
            else "maskrcnn windows"
        )
        series.setdefault(label, []).append(r)
    out = args.out or Path(f"runs/large_{args.model_kind}.json")
    from segrt.io.files import atomic_path

    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    plot({"series": series}, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_bench_arguments(p)
    bench_command(p.parse_args())


if __name__ == "__main__":
    main()
