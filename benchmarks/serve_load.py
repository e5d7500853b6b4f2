"""Load test of `segrt serve` on this machine (127.0.0.1 only): Triton vs in-process predict, in one run.

For each instance count (default 1 and 2) a server is started with that many model instances, each
with cores / instances ONNX Runtime threads; in-process predict uses the same layout (that many
predictors with the same threads, each driven by its own thread), so both sides use the same cores.

Each trial: first the in-process reference, then every client count (default 1, 4, 8, 16). Every
client connects and sends one warm-up request, then all wait at a barrier; the clock starts when the
barrier opens and stops when the last of ``--requests`` timed requests (in all) returns. Trials repeat
(``--trials``) with in-process and served runs interleaved, so slow drift of a shared machine's load
shows as spread instead of biasing one side; the table gives the median and the min-max of the trials.

``--client-cpus 1`` also runs the served rows with the client threads pinned to the last core(s) and
the server (and its backend stubs) to the others, to measure whether clients competing with the
server for cores is what limits many clients.

    python benchmarks/serve_load.py                          # random-weight U-Net (depth 4, 16 ch), 256x256
    python benchmarks/serve_load.py --model runs/unet.onnx --size 512 --requests 64 --json load.json

Every request is bounded (``--timeout`` seconds each); errors and results unequal to local predict are counted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import segrt  # noqa: E402
from segrt.serve import RemotePredictor, TritonServer, write_model_repository  # noqa: E402
from segrt.serve.repository import model_name  # noqa: E402
from segrt.serve.server import _stubs, free_ports  # noqa: E402


def random_unet(out: Path, depth: int, channels: int, tile: int) -> Path:
    """A random-weight U-Net exported to ONNX (the speed does not depend on the weights)."""
    import torch

    from segrt.export.models.unet import UNet, UNetConfig
    from segrt.export.to_onnx import unet_to_onnx

    torch.manual_seed(0)
    model = UNet(UNetConfig(depth=depth, base_channels=channels)).eval()
    return unet_to_onnx(model, out, ["background", "nucleus"], tile_size=tile)


def same(got: Any, want: Any) -> bool:
    """Whether a served result equals local predict (classes, instances, and probabilities when fetched)."""
    return all(np.array_equal(getattr(got, k), getattr(want, k)) for k in ("classes", "instances")) and (
        got.probs is None or np.array_equal(got.probs, want.probs)
    )


def timed(workers: list[Callable[[int], Any]], requests: int) -> tuple[float, list[float], int, int]:
    """Run ``requests`` calls spread over the workers (one thread each), clock started at a barrier after
    every worker's warm-up call. Returns (wall s, latencies ms, errors, unequal results)."""
    n = len(workers)
    share = [requests // n + (c < requests % n) for c in range(n)]
    barrier = threading.Barrier(n + 1)
    lats: list[float] = []
    counts = {"errors": 0, "unequal": 0}
    lock = threading.Lock()
    done = [0.0] * n

    def run(c: int) -> None:
        workers[c](-1 - c)  # warm-up: connect, first request
        barrier.wait()
        for k in range(share[c]):
            t = time.perf_counter()
            try:
                ok = workers[c](c + k * n)
            except segrt.SegrtError:
                with lock:
                    counts["errors"] += 1
                continue
            with lock:
                lats.append((time.perf_counter() - t) * 1e3)
                counts["unequal"] += not ok
        done[c] = time.perf_counter()

    threads = [threading.Thread(target=run, args=(c,)) for c in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return max(done) - t0, lats, counts["errors"], counts["unequal"]


def pin_server(server: TritonServer, cpus: set[int]) -> None:
    """Restrict the server and its backend stubs to ``cpus``."""
    for pid in [server.process.pid, *(p for p, _ in _stubs(server.process.pid))]:
        os.sched_setaffinity(pid, cpus)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, help="a U-Net .onnx (default: a random-weight one, --depth/--channels)")
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--size", type=int, default=256, help="image edge, pixels (uint8 grey)")
    p.add_argument("--images", type=int, default=4, help="distinct images, cycled")
    p.add_argument("--requests", type=int, default=48, help="timed requests per row and trial (all clients together)")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8, 16])
    p.add_argument("--instances", type=int, nargs="+", default=[1, 2])
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--max-batch", type=int, default=0)
    p.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    p.add_argument("--probs", action="store_true", help="also fetch the probabilities (K x 4 bytes per pixel)")
    p.add_argument(
        "--client-cpus",
        type=int,
        default=0,
        help="also run the served rows with the clients pinned to this many last cores, the server to the rest",
    )
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--json", type=Path)
    args = p.parse_args()

    work = Path(tempfile.mkdtemp(prefix="serve_load-"))
    model = args.model or random_unet(work / "unet.onnx", args.depth, args.channels, 2 * args.size)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (args.size, args.size), dtype=np.uint8) for _ in range(args.images)]
    all_cpus = sorted(os.sched_getaffinity(0))
    cores = len(all_cpus)
    want = None
    rows: list[dict[str, Any]] = []
    for instances in args.instances:
        threads = max(1, cores // instances)
        locals_ = [segrt.load(model, threads=threads) for _ in range(instances)]
        want = want or [locals_[0].predict(im, probs="float32") for im in images]

        def local_worker(lp: Any, expected: list[Any]) -> Callable[[int], bool]:
            def call(i: int) -> bool:
                return same(
                    lp.predict(images[i % len(images)], probs="float32" if args.probs else None),
                    expected[i % len(images)],
                )

            return call

        repo = write_model_repository(
            [model], work / f"models{instances}", instances=instances, max_batch=args.max_batch, threads=threads
        )
        http, grpc, metrics = free_ports(3)
        with TritonServer(repo, http_port=http, grpc_port=grpc, metrics_port=metrics) as server:
            url = server.grpc_url if args.protocol == "grpc" else server.http_url
            layouts = [("", None)] + (
                [(f" (clients on {args.client_cpus} core(s))", args.client_cpus)] if args.client_cpus else []
            )
            for trial in range(args.trials):
                wall, lats, errors, unequal = timed(
                    [local_worker(locals_[c], want) for c in range(instances)], args.requests
                )
                rows.append(
                    {
                        "instances": instances,
                        "mode": "in-process",
                        "clients": instances,
                        "trial": trial,
                        "rps": len(lats) / wall,
                        "p50_ms": float(np.median(lats)),
                        "errors": errors,
                        "unequal": unequal,
                    }
                )
                for label, pinned in layouts:
                    if pinned:
                        pin_server(server, set(all_cpus[:-pinned]))
                        os.sched_setaffinity(0, set(all_cpus[-pinned:]))
                    for clients in args.clients:
                        remotes = [
                            RemotePredictor(url, model_name(model), timeout_s=args.timeout, probs=args.probs)
                            for _ in range(clients)
                        ]

                        def remote_worker(remote: RemotePredictor, expected: list[Any]) -> Callable[[int], bool]:
                            def call(i: int) -> bool:
                                return same(remote.predict(images[i % len(images)]), expected[i % len(images)])

                            return call

                        wall, lats, errors, unequal = timed([remote_worker(r, want) for r in remotes], args.requests)
                        for r in remotes:
                            r.close()
                        rows.append(
                            {
                                "instances": instances,
                                "mode": f"triton {args.protocol}{label}",
                                "clients": clients,
                                "trial": trial,
                                "rps": len(lats) / wall,
                                "p50_ms": float(np.median(lats)) if lats else float("nan"),
                                "errors": errors,
                                "unequal": unequal,
                            }
                        )
                    if pinned:
                        pin_server(server, set(all_cpus))
                        os.sched_setaffinity(0, set(all_cpus))
                print(f"trial {trial + 1}/{args.trials} with {instances} instance(s) done", file=sys.stderr, flush=True)
        for lp in locals_:
            if hasattr(lp.backend, "close"):
                lp.backend.close()

    arch = f"model {model.name}" if args.model else f"random U-Net depth {args.depth}, {args.channels} channels"
    print(
        f"# {arch}; {args.size}x{args.size} uint8 images; {args.requests} timed requests per row and trial, "
        f"{args.trials} trials; max_batch {args.max_batch}; probs {'on' if args.probs else 'off'}; {cores} CPU cores; "
        f"load average at the end {os.getloadavg()[0]:.1f}"
    )
    print(
        "| instances | mode | clients | req/s median (min-max) | p50 ms median | req/s / in-process | errors | unequal |"
    )
    print("|---|---|---|---|---|---|---|---|")
    summary = []
    for instances in args.instances:
        ref = np.median([r["rps"] for r in rows if r["instances"] == instances and r["mode"] == "in-process"])
        keys = dict.fromkeys((r["mode"], r["clients"]) for r in rows if r["instances"] == instances)
        for mode, clients in keys:
            rs = [r for r in rows if (r["instances"], r["mode"], r["clients"]) == (instances, mode, clients)]
            rps = [r["rps"] for r in rs]
            line = {
                "instances": instances,
                "mode": mode,
                "clients": clients,
                "rps_median": float(np.median(rps)),
                "rps_min": min(rps),
                "rps_max": max(rps),
                "p50_ms": float(np.median([r["p50_ms"] for r in rs])),
                "ratio": float(np.median(rps) / ref),
                "errors": sum(r["errors"] for r in rs),
                "unequal": sum(r["unequal"] for r in rs),
            }
            summary.append(line)
            print(
                f"| {instances} | {mode} | {clients} | {line['rps_median']:.2f} ({line['rps_min']:.2f}-"
                f"{line['rps_max']:.2f}) | {line['p50_ms']:.0f} | {line['ratio']:.2f} | {line['errors']} | "
                f"{line['unequal']} |"
            )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "rows": rows,
                    "summary": summary,
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "platform": platform.platform(),
                },
                indent=1,
            )
        )
    sys.exit(1 if any(r["errors"] or r["unequal"] for r in rows) else 0)


if __name__ == "__main__":
    main()
