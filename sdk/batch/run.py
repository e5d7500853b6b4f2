"""Run a segrt artifact over many images on Ray Data (``pip install 'segrt[ray]'``).

::

    from segrt.batch import list_images, run_batch
    summary = run_batch("unet.onnx", list_images(["images/**/*.png"]), "out/", actors=2)

The items become a Ray dataset; ``map_batches`` runs :class:`segrt.batch.worker.BatchWorker` in a pool
of ``actors`` actors (the model is loaded once per actor), each reserving ``cpus_per_actor`` CPUs and
``gpus_per_actor`` GPUs. Ray retries the tasks of a killed actor (``max_restarts=-1`` and
``max_task_retries=-1`` are Ray Data's defaults for actor pools); the records make every retry
harmless (``segrt.batch.records``). Ray itself is imported only here, when a run starts.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from segrt.batch import records
from segrt.batch.inputs import Item
from segrt.batch.worker import CrashOnce
from segrt.errors import BackendUnavailableError, InputError

LOCAL = "local"
# images per map_batches call: a retried task redoes at most this many images' bookkeeping
DEFAULT_BATCH_SIZE = 4


@dataclass
class BatchSummary:
    """What a batch run did. ``images``: items of the run; ``processed``: predicted in this run;
    ``skipped``: done before it started; ``errors``: items whose record says ``error``;
    ``seconds``: wall time of the Ray execution; ``images_per_s``: processed / seconds."""

    images: int
    processed: int
    skipped: int
    ok: int
    errors: int
    seconds: float
    images_per_s: float
    out_dir: str

    def __str__(self) -> str:
        return (
            f"{self.images} images: {self.processed} processed in {self.seconds:.1f} s "
            f"({self.images_per_s:.2f} images/s), {self.skipped} already done, {self.errors} errors; "
            f"manifest: {Path(self.out_dir) / records.MANIFEST}"
        )


def import_ray() -> Any:
    """``ray`` (with Ray Data), or a BackendUnavailableError naming the extra."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise BackendUnavailableError(
            "running on Ray needs Ray Data, which is not installed", "pip install 'segrt[ray]'"
        ) from None
    return ray


def connect(address: str | None = LOCAL, num_cpus: int | None = None) -> Any:
    """Connect to Ray: ``local`` (or None) starts one on this machine (``num_cpus``: default all cores);
    ``auto``, ``HOST:6379`` or ``ray://HOST:10001`` joins a running cluster. Reuses a live connection."""
    ray = import_ray()
    if not ray.is_initialized():
        if address in (None, LOCAL):
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=True)
        else:
            ray.init(address=address)
    return ray


def actor_resources(ray: Any, actors: int, cpus_per_actor: float | None, gpus_per_actor: float) -> tuple[float, float]:
    """(CPUs, GPUs) each actor reserves. CPUs default to what the cluster has, split between the actors,
    minus half a CPU for Ray Data's own tasks: actors that take every CPU leave none for reading the
    items, and the run deadlocks (seen with two 1-CPU actors on 2 cores). With GPUs, one CPU each."""
    total = float(ray.cluster_resources().get("CPU", 1.0))
    if gpus_per_actor > float(ray.cluster_resources().get("GPU", 0.0)):
        raise InputError(
            f"--gpus-per-actor {gpus_per_actor:g} but the Ray cluster has "
            f"{ray.cluster_resources().get('GPU', 0):g} GPUs",
            "join a cluster with GPU workers, or drop --gpus-per-actor",
        )
    if cpus_per_actor is None:
        cpus_per_actor = min(1.0, total / actors) if gpus_per_actor else max(0.1, (total - 0.5) / actors)
    if cpus_per_actor * actors > total:
        raise InputError(
            f"{actors} actors x {cpus_per_actor:g} CPUs need more than the cluster's {total:g} CPUs",
            "lower --actors or the CPUs per actor",
        )
    return round(cpus_per_actor, 2), float(gpus_per_actor)


def model_kind(model: str | Path) -> str:
    """The artifact's model kind (``unet``, ``maskrcnn``, ``keypointrcnn``), read from its metadata alone."""
    from segrt.artifact.info import describe

    return str(describe(model)["metadata"]["kind"])


def job_description(
    model: str | Path, mode: str, backend: str | None, backend_options: dict[str, Any], predict_options: dict[str, Any]
) -> dict[str, Any]:
    """What makes results of one run reusable by another (``records.claim_job``): threads do not count."""
    model = Path(model)
    if not model.is_file():
        from segrt.errors import ArtifactError

        raise ArtifactError(f"model file not found: {model}", "check the path (export one with `segrt export`)")
    options = {k: v for k, v in backend_options.items() if k != "threads"}
    return {
        "mode": mode,
        "model": model.name,
        "model_bytes": model.stat().st_size,
        "model_sha256": records.file_digest(model),
        "backend": backend,
        "backend_options": options,
        "predict_options": predict_options,
    }


def run_batch(
    model: str | Path,
    items: list[Item],
    out_dir: str | Path,
    *,
    mode: str = "predict",
    address: str | None = LOCAL,
    actors: int = 1,
    cpus_per_actor: float | None = None,
    gpus_per_actor: float = 0.0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    backend: str | None = None,
    backend_options: dict[str, Any] | None = None,
    predict_options: dict[str, Any] | None = None,
    max_pixels: int | None = None,
    progress: bool = True,
    on_batch: Callable[[int], None] | None = None,
    crash_once: CrashOnce | None = None,
) -> BatchSummary:
    """Run ``model`` over ``items`` on Ray Data, writing results, records and the manifest into ``out_dir``.

    Args:
        model: artifact path, readable by every worker (shared storage on a cluster).
        items: from ``segrt.batch.inputs`` (``list_images``, ``coco_items``, ``split_items``).
        out_dir: output folder, writable by every worker; a rerun into it skips finished images.
        mode: ``"predict"`` or ``"eval"`` (see ``segrt.batch.worker.BatchWorker``).
        address: ``"local"`` starts Ray here; ``"auto"`` / ``"ray://HOST:10001"`` joins a cluster.
        actors: actor pool size (one loaded model each).
        cpus_per_actor, gpus_per_actor: resources each actor reserves (CPUs: see :func:`actor_resources`).
            Without ``threads`` in ``backend_options``, an ``.onnx`` model runs ``max(1, round(cpus))`` threads.
        batch_size: images per ``map_batches`` call.
        backend, backend_options: as ``segrt.load``.
        predict_options: as ``predict`` takes them.
        max_pixels: larger images are recorded as errors without being decoded; None: no limit.
        progress: Ray Data's progress bars.
        on_batch: called with the number of items finished so far after each result batch reaches the driver.
        crash_once: test hook (``segrt.batch.worker.CrashOnce``).

    Returns:
        :class:`BatchSummary`; ``out_dir/manifest.jsonl`` lists every item once (R-CNN predict also
        writes ``out_dir/results.json``).
    """
    from segrt.batch.worker import MODES, BatchWorker

    if mode not in MODES:
        raise InputError(f"unknown batch mode {mode!r}", f"use one of {', '.join(MODES)}")
    if actors < 1 or batch_size < 1:
        raise InputError(f"actors ({actors}) and batch_size ({batch_size}) must be at least 1", "pass positive counts")
    backend_options, predict_options = dict(backend_options or {}), dict(predict_options or {})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records.claim_job(out_dir, job_description(model, mode, backend, backend_options, predict_options))
    todo = [item for item in items if not records.is_done(out_dir, item.key)]
    seconds = 0.0
    if todo:
        ray = connect(address)
        cpus, gpus = actor_resources(ray, actors, cpus_per_actor, gpus_per_actor)
        if "threads" not in backend_options and Path(model).suffix == ".onnx":
            backend_options["threads"] = max(1, round(cpus))
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = progress
        ctx.print_on_execution_start = progress
        kwargs = dict(
            model=os.fspath(Path(model).resolve()),
            out_dir=os.fspath(out_dir.resolve()),
            mode=mode,
            backend=backend,
            backend_options=backend_options,
            predict_options=predict_options,
            max_pixels=max_pixels,
            crash_once=crash_once,
        )
        # one block per batch: blocks are the unit the actors are handed
        ds = ray.data.from_items([item.row() for item in todo], override_num_blocks=-(-len(todo) // batch_size))
        ds = ds.map_batches(
            BatchWorker,
            fn_constructor_kwargs=kwargs,
            batch_size=batch_size,
            concurrency=actors,
            num_cpus=cpus,
            num_gpus=gpus or None,
            batch_format="numpy",
        )
        t0 = time.perf_counter()
        finished = 0
        batches = iter(ds.iter_batches(batch_size=None, batch_format="numpy"))
        try:
            for batch in batches:
                finished += len(batch["key"])
                if on_batch is not None:
                    on_batch(finished)
        finally:  # on Ctrl-C, stop the execution (and its actors) now, not when the generator is collected
            close = getattr(batches, "close", None)
            if close is not None:
                close()
        seconds = time.perf_counter() - t0
    rows = records.write_manifest(out_dir, [item.key for item in items])
    if mode == "predict" and model_kind(model) != "unet":  # R-CNN: one COCO results file for the run
        records.write_merged_results(out_dir, records.coco_results(out_dir, [(i.key, i.image_id) for i in items]))
    records.remove_partials(out_dir)
    errors = sum(r["status"] == "error" for r in rows)
    return BatchSummary(
        images=len(items),
        processed=len(todo),
        skipped=len(items) - len(todo),
        ok=sum(r["status"] == "ok" for r in rows),
        errors=errors,
        seconds=seconds,
        images_per_s=len(todo) / seconds if seconds > 0 else 0.0,
        out_dir=str(out_dir),
    )


def summary_json(summary: BatchSummary) -> str:
    """The summary as one JSON line."""
    return json.dumps(asdict(summary))
