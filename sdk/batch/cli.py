"""``segrt predict ... --ray`` and ``segrt eval ... --ray``: the local verbs' options, run on Ray Data."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from segrt.batch import records
from segrt.batch.inputs import Item, coco_items, list_images, split_items
from segrt.batch.run import BatchSummary, model_kind, run_batch
from segrt.errors import DataError, InputError


def add_ray_arguments(p: argparse.ArgumentParser) -> None:
    """--ray [ADDRESS], --actors, --gpus-per-actor, --cpus-per-actor, --max-pixels."""
    from segrt.serve.protocol import DEFAULT_MAX_PIXELS

    g = p.add_argument_group("batch on Ray Data (pip install 'segrt[ray]')")
    g.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="run on Ray Data, resumably, writing a manifest into --out: no ADDRESS starts a local Ray; "
        "'auto' or ray://HOST:10001 joins a cluster",
    )
    g.add_argument("--actors", type=int, default=1, help="with --ray: actors, each with its own model (default: 1)")
    g.add_argument("--gpus-per-actor", type=float, default=0.0, metavar="G", help="with --ray: GPUs per actor")
    g.add_argument(
        "--cpus-per-actor",
        type=float,
        default=None,
        metavar="C",
        help="with --ray: CPUs per actor (default: the cluster's CPUs split between the actors, less "
        "half a CPU for Ray's own tasks; 1 with GPUs)",
    )
    g.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help="with --ray: larger images are recorded as errors (default: %(default)s; 0: no limit)",
    )


def _check(args: argparse.Namespace) -> None:
    if args.server:
        raise InputError("--ray and --server are two ways to run the model", "pass one of them")


def _run(
    args: argparse.Namespace, items: list[Item], mode: str, options: dict[str, Any], predict_options: dict[str, Any]
) -> BatchSummary:
    try:
        summary = run_batch(
            args.model,
            items,
            args.out,
            mode=mode,
            address=args.ray,
            actors=args.actors,
            cpus_per_actor=args.cpus_per_actor,
            gpus_per_actor=args.gpus_per_actor,
            backend=args.backend,
            backend_options=options,
            predict_options=predict_options,
            max_pixels=args.max_pixels or None,
        )
    except KeyboardInterrupt:
        print(f"segrt: finished images are kept in {args.out}: rerun the same command to do the rest", file=sys.stderr)
        raise
    print(summary, flush=True)
    return summary


def predict_on_ray(args: argparse.Namespace, backend_options: dict[str, Any], predict_options: dict[str, Any]) -> None:
    """``segrt predict MODEL IMAGES... --ray``: IMAGES are files, folders, quoted globs or one COCO JSON.

    ``backend_options`` and ``predict_options`` are what the CLI's flags ask for (``segrt.cli``)."""
    _check(args)
    names = [str(p) for p in args.images]
    if len(names) == 1 and names[0].endswith(".json"):
        items = coco_items(names[0])
    else:
        items = list_images(names)
    summary = _run(args, items, "predict", backend_options, predict_options)
    if summary.errors:
        for row in records.read_manifest(args.out):
            if row["status"] == "error":
                print(f"{row['image']}: {row['error']}")


def eval_on_ray(args: argparse.Namespace, backend_options: dict[str, Any]) -> None:
    """``segrt eval MODEL DATA --ray``: the local report, from per-image work done on Ray."""
    from segrt.io.files import atomic_path

    _check(args)
    kind = model_kind(args.model)
    if kind == "unet":
        from segrt.unet.predictor import summarize_scores

        items = split_items(args.data)
        run_options = {"tta": True} if args.tta else {}
        _run(args, items, "eval", backend_options, run_options)
        per_image = [_ok_record(args.out, item)["metrics"] for item in items]
        report: dict[str, Any] = summarize_scores(per_image, tta=bool(args.tta), model=str(args.model))
    else:
        from segrt.rcnn.coco import load_ground_truth, score_results

        if args.tta:
            raise InputError(f"{kind} models take no option 'tta'", "drop --tta")
        image_dir = args.images if args.images is not None else Path(args.data).with_suffix("")
        gt = load_ground_truth(args.data, image_dir)  # refuses missing images before any work
        items = coco_items(args.data, image_dir)
        _run(args, items, "eval", backend_options, {})
        recs = [_ok_record(args.out, item) for item in items]
        results = records.coco_results(args.out, [(item.key, item.image_id) for item in items])
        report = score_results(
            gt,
            results,
            has_masks=all(r["has_masks"] for r in recs),
            has_keypoints=bool(recs) and recs[-1]["has_keypoints"],
        )
    print(json.dumps(report, indent=2))
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n")


def _ok_record(out_dir: Path, item: Item) -> dict[str, Any]:
    record = records.read_record(out_dir, item.key)
    if record is None or record.get("status") != "ok":
        why = record.get("error") if record else "no result"
        raise DataError(
            f"cannot score {item.path}: {why}",
            f"fix that image and rerun the same command: finished images are not redone "
            f"(see {Path(out_dir) / records.MANIFEST})",
        )
    return record
