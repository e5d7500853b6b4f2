"""Load test of `segrt serve` on this machine (127.0.0.1 only): Triton vs in-process predict, in one run.

For 1, 4 and 16 concurrent clients (each with its own connection, HTTP and gRPC), a fixed
number of requests in all: throughput, p50/p99 latency, errors (must be 0) and whether every
result equals local predict on the same image. In-process ``predict`` of the same model on
the same images is timed in the same run, so the serving overhead is a measured ratio.

    python benchmarks/serve_load.py                          # random-weight U-Net (depth 4, 16 ch), 256x256
    python benchmarks/serve_load.py --model runs/unet.onnx --size 512 --requests 64 --json load.json

Every request is bounded (``--requests`` in all per row, ``--timeout`` seconds each).
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import segrt  # noqa: E402
from segrt.serve import RemotePredictor, TritonServer, write_model_repository  # noqa: E402
from segrt.serve.server import free_ports  # noqa: E402


def random_unet(out: Path, depth: int, channels: int, tile: int) -> Path:
    import torch
    from segrt.export.models.unet import UNet, UNetConfig
    from segrt.export.to_onnx import unet_to_onnx
    torch.manual_seed(0)
    model = UNet(UNetConfig(depth=depth, base_channels=channels)).eval()
    return unet_to_onnx(model, out, ["background", "nucleus"], tile_size=tile)


def stats(latencies_ms: list[float], wall_s: float) -> dict[str, float]:
    a = np.asarray(latencies_ms)
    return {"throughput_rps": len(a) / wall_s, "p50_ms": float(np.percentile(a, 50)),
            "p99_ms": float(np.percentile(a, 99))}


def same(got, want) -> bool:
    return all(np.array_equal(getattr(got, k), getattr(want, k)) for k in ("classes", "instances")) and (
        got.probs is None or np.array_equal(got.probs, want.probs))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, help="a U-Net .onnx (default: a random-weight one, --depth/--channels)")
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--size", type=int, default=256, help="image edge, pixels (uint8 grey)")
    p.add_argument("--images", type=int, default=4, help="distinct images, cycled")
    p.add_argument("--requests", type=int, default=48, help="requests per row (all clients together)")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--instances", type=int, default=1)
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--probs", action="store_true", help="also fetch the probabilities (K x 4 bytes per pixel)")
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--json", type=Path)
    args = p.parse_args()

    work = Path(tempfile.mkdtemp(prefix="serve_load-"))
    model = args.model or random_unet(work / "unet.onnx", args.depth, args.channels, 2 * args.size)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (args.size, args.size), dtype=np.uint8) for _ in range(args.images)]
    threads = max(1, (os.cpu_count() or 1) // args.instances)

    local = segrt.load(model, threads=threads)  # the same intra-op threads as one server instance
    expected = [local.predict(im) for im in images]  # also the warm-up

    def in_process(label: str) -> dict:
        lat = []
        t0 = time.perf_counter()
        for i in range(args.requests):
            t = time.perf_counter()
            local.predict(images[i % len(images)])
            lat.append((time.perf_counter() - t) * 1e3)
        return {"mode": label, "clients": 1, "requests": args.requests, **stats(lat, time.perf_counter() - t0),
                "errors": 0, "equal": True}

    rows = [in_process("in-process, before")]

    repo = write_model_repository([model], work / "models", instances=args.instances, max_batch=args.max_batch,
                                  threads=threads)
    http, grpc, metrics = free_ports(3)
    with TritonServer(repo, http_port=http, grpc_port=grpc, metrics_port=metrics) as server:
        for scheme, url in (("http", server.http_url), ("grpc", server.grpc_url)):
            for clients in args.clients:
                per_client = [args.requests // clients + (c < args.requests % clients) for c in range(clients)]

                def run(c: int) -> tuple[list[float], int, int]:
                    remote = RemotePredictor(url, timeout_s=args.timeout, probs=args.probs)  # noqa: B023 - called within this iteration, before the loop variable changes
                    remote.predict(images[0])  # connect and warm up outside the timed loop
                    lats, errors, unequal = [], 0, 0
                    for k in range(per_client[c]):  # noqa: B023 - called within this iteration, before the loop variable changes
                        i = (c + k * clients) % len(images)  # noqa: B023 - called within this iteration, before the loop variable changes
                        t = time.perf_counter()
                        try:
                            got = remote.predict(images[i])
                        except segrt.SegrtError:
                            errors += 1
                            continue
                        lats.append((time.perf_counter() - t) * 1e3)
                        unequal += not same(got, expected[i])
                    remote.close()
                    return lats, errors, unequal

                with cf.ThreadPoolExecutor(clients) as pool:
                    t0 = time.perf_counter()
                    results = list(pool.map(run, range(clients)))
                    wall = time.perf_counter() - t0
                lats = [x for r in results for x in r[0]]
                rows.append({"mode": f"triton {scheme}", "clients": clients, "requests": args.requests,
                             **stats(lats, wall), "errors": sum(r[1] for r in results),
                             "equal": sum(r[2] for r in results) == 0 and len(lats) == args.requests})
    rows.append(in_process("in-process, after"))
    # the reference is the mean of the in-process runs before and after the server rows, so slow drift of a
    # shared machine's load shows in the two rows instead of biasing every ratio one way
    inproc = {k: (rows[0][k] + rows[-1][k]) / 2 for k in ("p50_ms", "throughput_rps")}
    for r in rows:
        r["p50_vs_inprocess"] = r["p50_ms"] / inproc["p50_ms"]
        r["throughput_vs_inprocess"] = r["throughput_rps"] / inproc["throughput_rps"]

    arch = f"model {model.name}" if args.model else f"random U-Net depth {args.depth}, {args.channels} channels"
    print(f"# {arch}; {args.size}x{args.size} uint8 images; {args.instances} instance(s) x {threads} ORT thread(s); "
          f"max_batch {args.max_batch}; probs {'on' if args.probs else 'off'}; {os.cpu_count()} CPU cores")
    print("| mode | clients | requests | req/s | p50 ms | p99 ms | errors | equal to local | p50 / in-process | req/s / in-process |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['clients']} | {r['requests']} | {r['throughput_rps']:.1f} | {r['p50_ms']:.1f} | "
              f"{r['p99_ms']:.1f} | {r['errors']} | {'yes' if r['equal'] else 'NO'} | {r['p50_vs_inprocess']:.2f} | "
              f"{r['throughput_vs_inprocess']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "args": {k: str(v) for k, v in vars(args).items()},
                                         "platform": platform.platform()}, indent=1))
    bad = [r for r in rows if r["errors"] or not r["equal"]]
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
