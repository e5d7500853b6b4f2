"""``segrt bench model ARTIFACT...``: time exported artifacts (no PyTorch), and the options every bench shares.

The options (``--runs``, ``--warmup``, ``--threads``, ``--image``, ``--out``, ``--plot``, ``--rss``,
``--pick``) have the same names, units and defaults in ``segrt bench model``, ``segrt bench unet``,
``segrt bench maskrcnn`` and ``benchmarks/roi_align_bench.py``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from segrt.bench.core import MODES, Report, Variant, pick, run_variants
from segrt.bench.report import format_table, plot, write_json
from segrt.errors import InputError


def default_threads() -> int:
    """The one default thread count of every benchmark: the CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def add_common_arguments(p: argparse.ArgumentParser, out: str, images: bool = True) -> None:
    """The options every benchmark command shares (names, units and defaults).

    ``images=False`` leaves out ``--image`` and ``--pick`` (benchmarks of ops, not of models).
    """
    p.add_argument("--runs", type=int, default=10, help="timed calls per variant (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls before them (default: %(default)s)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help=f"CPU threads for every variant alike (default: the CPUs available, here {default_threads()})",
    )
    p.add_argument("--out", type=Path, default=Path(out), help="JSON report (default: %(default)s)")
    p.add_argument("--plot", type=Path, default=None, help="PNG bar chart (default: the --out path with .png)")
    p.add_argument("--rss", action="store_true", help="also report the peak resident memory of each variant")
    if images:
        p.add_argument(
            "--image", type=Path, default=None, help="image file to run on (default: synthetic nuclei-like blobs)"
        )
        p.add_argument(
            "--pick",
            action="store_true",
            help="report the fastest end-to-end variant within the accuracy budget against the reference's "
            "output (U-Net: IoU >= 0.995; Mask R-CNN: segm AP >= 0.995)",
        )


def check_counts(args: argparse.Namespace) -> None:
    """Refuse run, warm-up and thread counts out of range (InputError: exit code 2 on the CLI)."""
    if args.runs < 1 or args.warmup < 0 or (args.threads is not None and args.threads < 1):
        raise InputError(
            f"--runs {args.runs}, --warmup {args.warmup}, --threads {args.threads}: out of range",
            "use --runs >= 1, --warmup >= 0 and --threads >= 1",
        )


def environment() -> dict[str, Any]:
    """What a report was measured on (CPU, library versions), for the JSON's context."""
    import numpy

    import segrt

    ctx: dict[str, Any] = {
        "cpu": platform.processor() or platform.machine(),
        "cpus": default_threads(),
        "segrt": segrt.__version__,
        "numpy": numpy.__version__,
    }
    for module in ("onnxruntime", "openvino", "torch"):  # the versions of the runtimes this process loaded
        if module in sys.modules:
            ctx[module] = getattr(sys.modules[module], "__version__", "?")
    return ctx


def publish(
    report: Report, args: argparse.Namespace, budgets: Mapping[str, Mapping[str, float]] | None = None, log: Any = print
) -> Report:
    """Add the ``--pick`` answers, print the table, write the JSON (``--out``) and the plot.

    ``budgets`` maps each group to its accuracy budget (agreement floors, see ``core.pick``).
    """
    if getattr(args, "pick", False):
        groups = list(dict.fromkeys(r.group for r in report.rows))
        report.pick = [
            pick(report, (budgets or {}).get(g, {}), "end_to_end", g)
            for g in groups
            if any(r.mode == "end_to_end" and r.group == g for r in report.rows)
        ]
    log(format_table(report))
    write_json(report, args.out)
    png = plot(report, args.plot or Path(args.out).with_suffix(".png"), log=log)
    log(f"wrote {args.out}" + (f" and {png}" if png else ""))
    return report


# -- segrt bench model ------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "artifacts",
        type=Path,
        nargs="+",
        metavar="ARTIFACT",
        help="artifacts of one model kind (.onnx, engine); the first is the reference",
    )
    p.add_argument(
        "--backend",
        nargs="+",
        default=None,
        metavar="NAME[:PRECISION]",
        help="run each artifact on these backends, e.g. onnxruntime openvino:bf16 (default: the one its suffix picks)",
    )
    p.add_argument(
        "--size",
        type=int,
        nargs=2,
        action="append",
        default=None,
        metavar=("H", "W"),
        help="image size; repeat it to compare sizes, one group each (with --rss: peak memory "
        "against size). Default: U-Net 512 512, Mask R-CNN the export size",
    )
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="what to time (default: both)")
    add_common_arguments(p, "runs/bench_model.json")


def _backend_options(spec: str) -> dict[str, str]:
    name, _, precision = spec.partition(":")
    return {"backend": name, **({"precision": precision} if precision else {})}


def run(args: argparse.Namespace) -> Report:
    """Handler of ``segrt bench model``."""
    from segrt.bench import artifacts as art
    from segrt.bench.agreement import BY_KIND

    check_counts(args)
    threads = args.threads or default_threads()
    missing = [str(p) for p in args.artifacts if not Path(p).is_file()]
    if missing:
        raise InputError(f"artifact not found: {', '.join(missing)}", "pass .onnx or engine files from `segrt export`")
    first = art.load(args.artifacts[0], threads)
    meta = dict(first.metadata)
    kinds = {p: art.load(p, threads).metadata.get("kind") for p in args.artifacts[1:]}
    other = {str(p): k for p, k in kinds.items() if k != meta.get("kind")}
    if other:
        raise InputError(
            f"the artifacts hold different model kinds ({meta.get('kind')} and {other})",
            "compare artifacts of one model",
        )
    del first
    agreement, model_agreement, budget = BY_KIND.get(str(meta.get("kind")), (None, None, {}))
    sizes = [tuple(hw) for hw in args.size] if args.size else [art.default_image_hw(meta)]
    specs = args.backend or [None]
    variants: list[Variant] = []
    for h, w in sizes:
        # one group per image size; its reference: the first artifact on the first backend
        group = f"{h}x{w}" if len(sizes) > 1 else ""
        image = art.bench_image((h, w), art.image_channels(meta), args.image)
        first_of_group = len(variants)
        for path in args.artifacts:
            for spec in specs:
                options = _backend_options(spec) if spec else {}
                name = Path(path).name + (f" {spec}" if spec else "")
                variants += art.artifact_variants(
                    name,
                    path,
                    image,
                    threads=threads,
                    options=options,
                    agreement=agreement,
                    model_agreement=model_agreement,
                    group=group,
                    reference=len(variants) == first_of_group,
                    modes=tuple(args.modes),
                )
    shown = ", ".join(f"{h}x{w}" for h, w in sizes)
    report = run_variants(
        variants,
        args.runs,
        args.warmup,
        rss=args.rss,
        title=f"{meta.get('kind')} artifacts, image {shown}, {threads} threads",
        context={"threads": threads, "images": [list(hw) for hw in sizes], "kind": meta.get("kind"), **environment()},
    )
    return publish(report, args, {v.group: budget for v in variants})


def register(cli: Any) -> None:
    """Add ``segrt bench model`` to the command line (``cli``: ``segrt.cli.Commands``)."""
    add_arguments(cli.add_sub("bench", "model", run, help="time exported artifacts (no PyTorch needed)"))
