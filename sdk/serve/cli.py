"""``segrt serve``: write a model repository for artifacts (or take one) and run Triton on it.

Registered into ``segrt`` by :func:`register` (``python -m segrt.serve`` runs the same command).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segrt.errors import InputError, SegrtError, ServerError
from segrt.serve import protocol

if TYPE_CHECKING:
    from segrt.serve.server import TritonServer
DESCRIPTION = (
    "Serve segrt models on NVIDIA Triton Inference Server (HTTP/gRPC, KServe v2 protocol). "
    "Pass .onnx/.engine artifacts (a model repository is written for them) or a model repository "
    "folder (segrt serve --write-repo writes one). Ctrl-C finishes the requests in flight, then stops."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "models",
        type=Path,
        nargs="+",
        metavar="MODEL_OR_REPO",
        help=".onnx / .engine artifacts, or one model repository folder",
    )
    p.add_argument("--host", default="127.0.0.1", help="listen address (default: %(default)s; 0.0.0.0 for all)")
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--metrics-port", type=int, default=8002)
    p.add_argument(
        "--instances",
        type=int,
        default=1,
        help="model instances (per GPU for engines); this and the options below apply to artifacts, "
        "a repository keeps its own configs",
    )
    p.add_argument(
        "--max-batch",
        type=int,
        default=0,
        help="requests Triton may group into one execute call (default 0: each free instance takes the "
        "next request; the pipeline runs grouped requests one after another anyway)",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=protocol.DEFAULT_MAX_PIXELS,
        help="refuse larger images (default: %(default)s)",
    )
    p.add_argument(
        "--max-probs-pixels",
        type=int,
        default=protocol.DEFAULT_MAX_PROBS_PIXELS,
        help="U-Net: refuse probabilities for larger images (default: %(default)s)",
    )
    p.add_argument(
        "--max-tta-pixels",
        type=int,
        default=protocol.DEFAULT_MAX_TTA_PIXELS,
        help="U-Net: refuse test-time augmentation for larger images (default: %(default)s)",
    )
    p.add_argument(
        "--max-queue",
        type=int,
        default=32,
        help="requests waiting per model beyond which new ones are rejected at once (default: %(default)s)",
    )
    p.add_argument(
        "--queue-timeout",
        type=float,
        default=60.0,
        help="seconds a request may wait in the queue before it is rejected (default: %(default)s)",
    )
    p.add_argument(
        "--bls-timeout", type=float, default=60.0, help="--bls: seconds per network call (default: %(default)s)"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="ONNX Runtime threads per instance (default: decided at load time: cores / instances)",
    )
    p.add_argument("--log-file", default="-", help="server log: a path, or - for stdout (default)")
    p.add_argument(
        "--exit-timeout",
        type=int,
        default=20,
        help="seconds requests in flight may take to finish on stop (at most 25: the whole stop fits in 30 s)",
    )
    p.add_argument(
        "--bls",
        action="store_true",
        help="written repository: pipeline models call the network model by BLS (official Triton container only)",
    )
    p.add_argument(
        "--write-repo",
        type=Path,
        default=None,
        metavar="REPO",
        help="only write the model repository for the artifacts here, do not start a server",
    )
    p.add_argument("--startup-timeout", type=float, default=120.0, help="seconds to wait for readiness")


def cmd_serve(args: argparse.Namespace) -> None:
    from segrt.serve.repository import ServingLimits, write_model_repository
    from segrt.serve.server import TritonServer

    paths = list(args.models)
    is_repo = len(paths) == 1 and paths[0].is_dir()
    if is_repo and args.write_repo:
        raise InputError(f"{paths[0]} is already a model repository", "pass .onnx/.engine files with --write-repo")
    limits = ServingLimits(
        max_pixels=args.max_pixels,
        max_probs_pixels=args.max_probs_pixels,
        max_tta_pixels=args.max_tta_pixels,
        max_queue=args.max_queue,
        queue_timeout_s=args.queue_timeout,
        bls_timeout_s=args.bls_timeout,
    )
    options = dict(
        instances=args.instances, max_batch=args.max_batch, bls_network=args.bls, threads=args.threads, limits=limits
    )
    if args.write_repo:
        print(f"wrote {write_model_repository(paths, args.write_repo, **options)}")
        return
    tmp = None if is_repo else Path(tempfile.mkdtemp(prefix="segrt-repo-"))
    try:
        repo = paths[0] if tmp is None else write_model_repository(paths, tmp / "models", **options)
        _run(
            TritonServer(
                repo,
                host=args.host,
                http_port=args.http_port,
                grpc_port=args.grpc_port,
                metrics_port=args.metrics_port,
                log_file=args.log_file,
                exit_timeout_s=args.exit_timeout,
            ),
            repo,
            args.startup_timeout,
        )
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _run(server: TritonServer, repo: Path, startup_timeout: float) -> None:
    """Start ``server``, print its endpoints, block until Ctrl-C/SIGTERM, then stop it draining requests.

    Raises ServerError (a non-zero exit) when the drain failed and the server had to be killed.
    """
    # SIGTERM (docker stop, kubernetes) drains like Ctrl-C does
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.start(timeout_s=startup_timeout)
        print(
            f"serving {', '.join(server.models)} from {repo}\n"
            f"  HTTP    {server.http_url}   (health: {server.http_url}/v2/health/ready)\n"
            f"  gRPC    {server.grpc_url}\n"
            f"  metrics {server.metrics_url}\n"
            f"  log     {'stdout' if server.log_to_stdout else server.log_file}\n"
            "Ctrl-C stops (requests in flight finish first)",
            flush=True,
        )
        code = server.wait()
        raise SegrtError(f"tritonserver exited on its own with code {code}:\n{server.log_tail()}", "see the log above")
    except KeyboardInterrupt:
        print("stopping: finishing requests in flight...", file=sys.stderr, flush=True)
        stopped = server.stop()
        print(f"tritonserver stopped (exit code {stopped})", file=sys.stderr)
        if stopped or not server.drained:
            print(server.log_tail(), file=sys.stderr)
            raise ServerError(
                f"tritonserver did not stop cleanly (exit code {stopped}"
                f"{', killed after the drain timed out' if not server.drained else ''})",
                "requests in flight may have been lost; see the log",
            ) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.stop()
        server.cleanup()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def register(cli: Any) -> None:
    """Add ``segrt serve`` to the command line (``cli.add(name, handler, help=..., description=...)``)."""
    add_arguments(
        cli.add("serve", cmd_serve, help="serve models on Triton Inference Server (HTTP/gRPC)", description=DESCRIPTION)
    )
