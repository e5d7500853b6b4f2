"""The state of a batch run on disk: one record per image, the job it belongs to, the manifest.

Layout of an output folder ``OUT``::

    OUT/<key>_classes.png ...          results, as ``predictor.save`` writes them (see segrt.batch.inputs for keys)
    OUT/.segrt-batch/job.json          what produced them: mode, model (name, size, SHA-256), options
    OUT/.segrt-batch/records/<key>.json   one per image: {"image", "status", "objects", "model_ms",
                                       "total_ms", "error", "finished", ...}; written atomically AFTER the results
    OUT/manifest.jsonl                 the records of every image of the run, one line each, sorted by key
    OUT/results.json                   R-CNN: the per-image results merged into one COCO results list

A record is the commit of its image: results without a record are redone (and overwritten atomically
with the same bytes), so a worker killed at any point leaves nothing torn under a final name, and a
rerun skips exactly the images whose record says ``ok``. Images whose record says ``error`` are tried
again (the file may have been fixed).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from segrt.errors import InputError
from segrt.io.files import atomic_path

STATE_DIR = ".segrt-batch"
MANIFEST = "manifest.jsonl"
MERGED_RESULTS = "results.json"
# the columns of every manifest line, in order
MANIFEST_FIELDS = ("image", "status", "objects", "model_ms", "total_ms", "error")


def record_path(out_dir: str | Path, key: str) -> Path:
    """Where the record of the image ``key`` lives."""
    return Path(out_dir) / STATE_DIR / "records" / f"{key}.json"


def read_record(out_dir: str | Path, key: str) -> dict[str, Any] | None:
    """The record of ``key``, or None when there is none (a record is only ever seen whole: atomic rename)."""
    try:
        return json.loads(record_path(out_dir, key).read_text())
    except FileNotFoundError:
        return None


def write_record(out_dir: str | Path, key: str, record: dict[str, Any]) -> Path:
    """Write the record of ``key`` atomically (temporary name, then rename); returns its path."""
    path = record_path(out_dir, key)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record))
    return path


def is_done(out_dir: str | Path, key: str) -> bool:
    """Whether ``key`` has a record with status ``ok`` (its results are complete)."""
    record = read_record(out_dir, key)
    return record is not None and record.get("status") == "ok"


def file_digest(path: str | Path) -> str:
    """SHA-256 (hex) of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def claim_job(out_dir: str | Path, job: dict[str, Any]) -> None:
    """Record that ``out_dir`` holds the results of ``job``, or refuse when it holds another job's.

    Resuming is only right when the model and options are the same: results of another model would
    otherwise be skipped as done.
    """
    path = Path(out_dir) / STATE_DIR / "job.json"
    if path.is_file():
        held = json.loads(path.read_text())
        if held != job:
            changed = sorted(k for k in set(held) | set(job) if held.get(k) != job.get(k))
            raise InputError(
                f"{out_dir} holds the results of another batch job (different {', '.join(changed)})",
                "choose another --out folder, or delete that one to start over",
            )
        return
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(job, indent=1))


def write_manifest(out_dir: str | Path, keys: Iterable[str]) -> list[dict[str, Any]]:
    """Write ``OUT/manifest.jsonl`` (atomically) from the records of ``keys``; returns its rows.

    Every key gives exactly one line (one record per key by construction); a key without a record
    (a run that was interrupted) is listed with status ``missing``.
    """
    rows = []
    for key in sorted(set(keys)):
        record = read_record(out_dir, key) or {"image": key, "status": "missing"}
        rows.append({**{f: record.get(f) for f in MANIFEST_FIELDS}, "image": key})
    with atomic_path(Path(out_dir) / MANIFEST) as tmp:
        tmp.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return rows


def read_manifest(out_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of ``OUT/manifest.jsonl``."""
    return [json.loads(line) for line in (Path(out_dir) / MANIFEST).read_text().splitlines() if line]


def coco_results(out_dir: str | Path, items: Iterable[tuple[str, int]]) -> list[dict[str, Any]]:
    """The COCO results (``instances_to_coco`` with ``image_id``, plus ``image``: the key) of ``(key, image_id)``
    pairs, from the per-image ``<key>.json`` files R-CNN ``save`` wrote, in the order given; images without
    one are left out. ``image_id`` is the COCO file's id, 0 for images given as files or globs."""
    results: list[dict[str, Any]] = []
    for key, image_id in items:
        path = Path(out_dir) / f"{key}.json"
        if path.is_file():
            results.extend({**r, "image_id": image_id, "image": key} for r in json.loads(path.read_text())["instances"])
    return results


def write_merged_results(out_dir: str | Path, results: list[dict[str, Any]]) -> Path:
    """Write ``OUT/results.json`` (a COCO results list, for ``COCO.loadRes``) atomically."""
    path = Path(out_dir) / MERGED_RESULTS
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(results))
    return path


def remove_partials(out_dir: str | Path) -> int:
    """Delete the temporary files (``.NAME.*.partial``, see ``atomic_path``) a killed worker left in ``out_dir``.

    Only call it when no worker writes into ``out_dir`` any more (the end of a run). Returns how many.
    """
    removed = 0
    for root, _dirs, files in os.walk(out_dir):
        for name in files:
            if name.startswith(".") and name.endswith(".partial"):
                os.unlink(os.path.join(root, name))
                removed += 1
    return removed
