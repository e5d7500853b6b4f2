"""Offline batch inference on Ray Data: any segrt artifact over folders, globs or COCO files of images.

``pip install 'segrt[ray]'``; Ray is imported only when a run starts, so the runtime without the
extra is unchanged. Results are written by the workers, one set per image, atomically, with a record
per image as its commit (``segrt.batch.records``): runs resume, retries are harmless, bad images
are recorded, never fatal. The CLI is ``segrt predict|eval ... --ray [ADDRESS]`` (``segrt.batch.cli``).

    inputs    Item, list_images, coco_items, split_items
    worker    BatchWorker (the per-actor callable class), CrashOnce (test hook)
    records   records, job claim, manifest, merged COCO results
    run       run_batch, connect, BatchSummary
"""

from __future__ import annotations

from segrt.batch.inputs import Item, coco_items, list_images, split_items
from segrt.batch.run import BatchSummary, connect, run_batch

__all__ = ["BatchSummary", "Item", "coco_items", "connect", "list_images", "run_batch", "split_items"]
