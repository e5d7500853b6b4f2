"""What system shared memory saves a client on the server's machine: socket vs /dev/shm, one large image.

One server (the bundled tritonserver, 127.0.0.1), one U-Net, one uint8 image of ``--size`` x ``--size``;
each trial sends it once over the socket and once through shared memory (interleaved, gRPC), with and
without the probabilities, and reports the median round trip and its min-max. The network itself is a
2-level, 2-channel random U-Net so that the transfer is a visible part of the round trip.

    python benchmarks/serve_shm.py --size 4096 --trials 5
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from segrt.serve import RemotePredictor, TritonServer, write_model_repository  # noqa: E402
from segrt.serve.server import free_ports  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    args = p.parse_args()
    import torch

    from segrt.export.models.unet import UNet, UNetConfig
    from segrt.export.to_onnx import unet_to_onnx

    work = Path(tempfile.mkdtemp(prefix="serve_shm-"))
    torch.manual_seed(0)
    model = unet_to_onnx(
        UNet(UNetConfig(depth=2, base_channels=2, padding="same")).eval(),
        work / "mini.onnx",
        ["background", "nucleus"],
        tile_size=512,
    )
    repo = write_model_repository([model], work / "models")
    image = np.random.default_rng(0).integers(0, 256, (args.size, args.size), dtype=np.uint8)
    http, grpc, metrics = free_ports(3)
    with TritonServer(repo, http_port=http, grpc_port=grpc, metrics_port=metrics) as server:
        url = server.grpc_url if args.protocol == "grpc" else server.http_url
        print(
            f"# {args.size}x{args.size} uint8, 2-level 2-channel U-Net, {args.protocol}, {args.trials} trials; "
            f"round trip ms, median (min-max)"
        )
        print("| outputs | socket | shared memory | saved |")
        print("|---|---|---|---|")
        for probs in (False, True):
            clients = {
                shm: RemotePredictor(
                    url, "mini", timeout_s=600, probs=probs, shared_memory=shm, admin_key=server.admin_key
                )
                for shm in (False, True)
            }
            for c in clients.values():
                c.predict(image)  # warm-up (and the shared-memory region's registration)
            times: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(args.trials):
                for shm, c in clients.items():
                    t = time.perf_counter()
                    c.predict(image)
                    times[shm].append((time.perf_counter() - t) * 1e3)
            for c in clients.values():
                c.close()
            med = {k: float(np.median(v)) for k, v in times.items()}
            label = "classes, instances, probs" if probs else "classes, instances"
            print(
                f"| {label} | {med[False]:.0f} ({min(times[False]):.0f}-{max(times[False]):.0f}) | "
                f"{med[True]:.0f} ({min(times[True]):.0f}-{max(times[True]):.0f}) | {med[False] - med[True]:.0f} ms |"
            )


if __name__ == "__main__":
    main()
