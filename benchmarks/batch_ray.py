"""Batch throughput: the plain local loop (`segrt predict`) vs segrt.batch on Ray Data with 1 and 2 actors.

    python benchmarks/batch_ray.py --images 64 --rounds 3 --json runs/batch_ray.json

Same images, same artifact, same output files, same CPU threads in total (``--threads``, default 2):
the local loop and the 1-actor pool run ``threads`` ONNX Runtime threads, the 2-actor pool
``threads / 2`` each. One local Ray (``--threads`` CPUs) serves every Ray run. The three runs are
interleaved in a rotating order for ``--rounds`` rounds, because the machine is shared: the table
gives the median and the spread (min..max) of each.

Two figures per run:

* ``end_to_end``: images / wall time of the whole run (Ray: dataset start to the last result at the
  driver, actor start-up and model loading included; local: the loop after ``segrt.load``);
* ``steady``: images after the first / time from the first image finished to the last (from the
  records' ``finished`` times for Ray, per-image times for the local loop): the rate once started.

``overhead`` is the per-image time of a Ray run over the local loop's, minus 1 (steady rates):
Ray's scheduling, serialization and the records. The goal is 1 actor >= 90% of the local loop.
On a shared machine the load changes between runs, so each run also measures its overhead within
itself, under one load: ``in_run_overhead`` = (actors x the steady span) / (the time the actors spent
in their per-image work, ``total_ms`` of the records) - 1, i.e. the share of an actor's time spent
outside segrt's own work (Ray scheduling, serialization, waiting for work); for the local loop it
is the loop's time outside ``predict_file``.

Without ``--model``, a random-weight U-Net (depth 4, 16 base channels, valid padding) is exported
into ``--workdir`` (needs the train extra); images are synthetic uint16 grey (``--size`` square).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_model(workdir: Path) -> Path:
    """A random-weight U-Net exported to ONNX (throughput does not depend on the weights)."""
    path = workdir / "unet_d4_c16.onnx"
    if not path.exists():
        import torch

        from segrt.export.models.unet import UNet, UNetConfig
        from segrt.export.to_onnx import unet_to_onnx

        torch.manual_seed(0)
        unet_to_onnx(UNet(UNetConfig(depth=4, base_channels=16)).eval(), path, ["background", "nucleus"], tile_size=252)
    return path


def make_images(folder: Path, n: int, size: int) -> list[Path]:
    """``n`` synthetic uint16 grey images of ``size`` x ``size`` with bright discs (objects to label)."""
    import cv2

    from segrt.io.images import write_png

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"img{i:04d}.png"
        if not path.exists():
            image = rng.integers(0, 500, (size, size)).astype(np.uint16)
            for _ in range(12):
                cv2.circle(
                    image, (int(rng.integers(0, size)), int(rng.integers(0, size))), int(rng.integers(5, 15)), 3000, -1
                )
            write_png(path, image)
        paths.append(path)
    return paths


def run_local(model: Path, images: list[Path], out: Path, threads: int) -> dict[str, float]:
    """The `segrt predict` loop: one predictor, one image after another."""
    from segrt import load
    from segrt.predictor import predict_file

    predictor = load(model, threads=threads)
    finished, busy = [], []
    t0 = time.perf_counter()
    for path in images:
        t = time.perf_counter()
        predict_file(predictor, path, out, path.stem)
        finished.append(time.perf_counter())
        busy.append(finished[-1] - t)
    wall = finished[-1] - t0
    span = finished[-1] - finished[0]
    return {
        "end_to_end": len(images) / wall,
        "steady": (len(images) - 1) / span,
        "in_run_overhead": span / sum(busy[1:]) - 1,
    }


def run_ray(model: Path, images: list[Path], out: Path, actors: int, threads: int) -> dict[str, float]:
    """segrt.batch with ``actors`` actors of ``threads / actors`` threads and CPUs each."""
    from segrt.batch import list_images, records, run_batch

    per_actor = threads / actors
    summary = run_batch(
        model,
        list_images(images),
        out,
        actors=actors,
        backend_options={"threads": max(1, int(per_actor))},
        progress=False,
    )
    assert summary.processed == len(images) and summary.errors == 0, summary
    recs = sorted((records.read_record(out, p.stem) for p in images), key=lambda r: r["finished"])
    span = recs[-1]["finished"] - recs[0]["finished"]
    busy = sum(r["total_ms"] for r in recs[1:]) / 1e3  # the actors' own per-image work, same time, same load
    return {
        "end_to_end": summary.images_per_s,
        "steady": (len(recs) - 1) / span,
        "in_run_overhead": actors * span / busy - 1,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None, help="artifact (default: a random-weight U-Net)")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--size", type=int, default=256, help="image edge, pixels")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads in total, for every run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=Path("runs/batch_ray"))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    model = args.model or make_model(args.workdir)
    images = make_images(args.workdir / "images", args.images, args.size)

    import ray

    ray.init(num_cpus=args.threads, include_dashboard=False, log_to_driver=False)
    runs = {
        "local loop": lambda out: run_local(model, images, out, args.threads),
        "Ray, 1 actor": lambda out: run_ray(model, images, out, 1, args.threads),
        "Ray, 2 actors": lambda out: run_ray(model, images, out, 2, args.threads),
    }
    names = list(runs)
    measured: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate the order every round
            out = args.workdir / "out"
            shutil.rmtree(out, ignore_errors=True)
            measured[name].append(runs[name](out))
            print(f"round {r + 1} {name}: {measured[name][-1]}", flush=True)
    ray.shutdown()

    def stats(name: str, key: str) -> dict[str, float]:
        values = [m[key] for m in measured[name]]
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    local = stats("local loop", "steady")["median"]
    table: dict[str, Any] = {}
    print(
        f"\n{args.images} images {args.size}x{args.size}, {args.threads} threads in total, {args.rounds} rounds "
        f"(median, min..max)"
    )
    print("| run | steady images/s | end-to-end images/s | vs local (steady) | overhead | in-run overhead |")
    print("|---|---|---|---|---|---|")
    for name in names:
        steady, e2e, inrun = stats(name, "steady"), stats(name, "end_to_end"), stats(name, "in_run_overhead")
        ratio = steady["median"] / local
        table[name] = {
            "steady": steady,
            "end_to_end": e2e,
            "vs_local": ratio,
            "overhead": 1 / ratio - 1,
            "in_run_overhead": inrun,
        }
        print(
            f"| {name} | {steady['median']:.2f} ({steady['min']:.2f}..{steady['max']:.2f})"
            f" | {e2e['median']:.2f} ({e2e['min']:.2f}..{e2e['max']:.2f}) | {ratio:.0%} | {1 / ratio - 1:+.1%}"
            f" | {inrun['median']:+.1%} ({inrun['min']:+.1%}..{inrun['max']:+.1%}) |"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "images": args.images,
                    "size": args.size,
                    "threads": args.threads,
                    "rounds": args.rounds,
                    "runs": measured,
                    "table": table,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
