"""The per-actor work of a batch run: load the model once, then turn batches of items into results on disk.

:class:`BatchWorker` is the callable class Ray Data's ``map_batches`` instantiates once per actor. It
needs no Ray itself (it takes and returns plain column dicts), so it is tested and benchmarked
without a cluster too. Each image is processed by :meth:`BatchWorker.process`:

1. skip it when its record says ``ok`` (a retried task, or a rerun);
2. refuse it when its header says it is larger than ``max_pixels``;
3. predict exactly as local ``segrt predict`` / ``segrt eval`` do, writing results atomically;
4. write its record (the commit; see ``segrt.batch.records``).

Any error of one image (a corrupt file, a wrong rank, a size over the limit) becomes that image's
``error`` record: it never stops the actor or the run.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segrt.batch import records
from segrt.batch.inputs import Item
from segrt.errors import InputError, SegrtError

MODES = ("predict", "eval")


@dataclass(frozen=True)
class CrashOnce:
    """Test hook: the actor process dies (``os._exit``) once, in the middle of committing an image.

    The ``after``-th image an actor processes has its results written, then half of its record goes
    to the temporary file, then the process exits: what a killed worker leaves behind. ``marker`` is a
    file created before dying, so the restarted actor (and every other) does not crash again.
    """

    marker: str
    after: int = 1


def image_hw(path: str | Path) -> tuple[int, int] | None:
    """(H, W) of an image file from its header alone (PNG, JPEG, TIFF), or None when it cannot tell."""
    from segrt.serve.protocol import encoded_size

    with open(path, "rb") as f:
        head = f.read(65536)
    hw = encoded_size(np.frombuffer(head, np.uint8))
    if hw is None and Path(path).suffix.lower() in (".tif", ".tiff") and head[:2] in (b"II", b"MM"):
        from segrt.io.sources import open_image

        source = open_image(path)
        hw = source.shape[0], source.shape[1]
    return hw


def check_size(path: str | Path, max_pixels: int | None) -> None:
    """Refuse (``InputError``) an image larger than ``max_pixels`` pixels before decoding it (None: no limit)."""
    if not max_pixels:
        return
    hw = image_hw(path)
    if hw is not None and hw[0] * hw[1] > max_pixels:
        raise InputError(
            f"image of {hw[0]} x {hw[1]} = {hw[0] * hw[1] / 1e6:.1f} megapixels exceeds the batch "
            f"limit of {max_pixels / 1e6:.1f} megapixels",
            "raise it with --max-pixels (0: no limit; U-Net reads TIFFs a band at a time)",
        )


def error_message(exc: BaseException) -> str:
    """``Type: problem (fix: ...)`` of an exception, on one line, for the manifest."""
    if isinstance(exc, SegrtError):
        text = exc.problem + (f" (fix: {exc.fix})" if exc.fix else "")
    else:
        text = str(exc).strip().replace("\n", " ")
    return f"{type(exc).__name__}: {text}"


class BatchWorker:
    """Loads one artifact and processes batches of items (``segrt.batch.inputs.Item`` rows).

    Args:
        model: the artifact (``.onnx``, OpenVINO IR, TensorRT engine), readable where the actor runs.
        out_dir: the output folder (shared by all actors).
        mode: ``"predict"`` (results as ``segrt predict`` writes them) or ``"eval"`` (U-Net: per-image
            metrics in the record; R-CNN: the COCO results JSON, scored by the driver).
        backend, backend_options: as ``segrt.load`` takes them (e.g. ``threads=2``, ``precision="bf16"``).
        predict_options: passed to ``predict`` (``tta``, ``tile``, ``batch``, ``tiles``).
        max_pixels: larger images are refused (their record holds the InputError); None: no limit.
        crash_once: test hook (:class:`CrashOnce`).
    """

    def __init__(
        self,
        model: str,
        out_dir: str,
        mode: str = "predict",
        backend: str | None = None,
        backend_options: dict[str, Any] | None = None,
        predict_options: dict[str, Any] | None = None,
        max_pixels: int | None = None,
        crash_once: CrashOnce | None = None,
    ) -> None:
        from segrt import load

        if mode not in MODES:
            raise InputError(f"unknown batch mode {mode!r}", f"use one of {', '.join(MODES)}")
        self.predictor = load(model, backend=backend, **(backend_options or {}))
        self.out_dir = Path(out_dir)
        self.mode = mode
        self.predict_options = dict(predict_options or {})
        self.max_pixels = max_pixels
        self.crash_once = crash_once
        self.processed = 0

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        """Process a batch of item rows (columns key, path, image_id, labels); returns one row per item:
        key, status (``ok`` | ``error``), resumed (True when an earlier attempt had finished it)."""
        out: dict[str, list[Any]] = {"key": [], "status": [], "resumed": []}
        for i in range(len(batch["key"])):
            item = Item(str(batch["key"][i]), str(batch["path"][i]), int(batch["image_id"][i]), str(batch["labels"][i]))
            record, resumed = self.process(item)
            out["key"].append(item.key)
            out["status"].append(record["status"])
            out["resumed"].append(resumed)
        return out

    def process(self, item: Item) -> tuple[dict[str, Any], bool]:
        """Process one item unless its record says ``ok``; returns (its record, whether it was already done)."""
        done = records.read_record(self.out_dir, item.key)
        if done is not None and done.get("status") == "ok":
            return done, True
        t0 = time.perf_counter()
        record: dict[str, Any] = {
            "image": item.key,
            "path": item.path,
            "status": "ok",
            "objects": None,
            "model_ms": None,
            "total_ms": None,
            "error": None,
        }
        try:
            check_size(item.path, self.max_pixels)
            record.update(self._run(item))
            record["model_ms"] = float(self.predictor.last_timings.get("model_ms", float("nan")))
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # one bad image never stops the run: it is recorded
            record.update(status="error", error=error_message(exc))
        record["total_ms"] = (time.perf_counter() - t0) * 1e3
        record["finished"] = time.time()  # seconds since the epoch: throughput without actor start-up
        self.processed += 1
        if self.crash_once is not None and self.processed >= self.crash_once.after:
            self._maybe_crash(item, record)
        records.write_record(self.out_dir, item.key, record)
        return record, False

    def _run(self, item: Item) -> dict[str, Any]:
        """Predict (and score) one image; returns the record fields it adds."""
        from segrt.predictor import predict_file

        stem_dir = (self.out_dir / item.key).parent
        stem = Path(item.key).name
        if self.mode == "eval" and self.predictor.kind == "unet":
            from segrt.io.datasets import load_pair
            from segrt.unet.predictor import UNetPredictor, score_image

            assert isinstance(self.predictor, UNetPredictor)  # kind "unet" is loaded as one
            image, labels = load_pair(item.path, item.labels)
            metrics = score_image(self.predictor, image, labels, tta=bool(self.predict_options.get("tta")))
            return {"objects": int(metrics["objects_predicted"]), "metrics": metrics}
        if self.mode == "eval":  # R-CNN: as segrt.rcnn.coco.evaluate predicts (whole image, default options)
            from segrt.io.images import read_image

            result = self.predictor.predict(read_image(item.path))
            self.predictor.save(result, stem_dir, stem)
        else:
            result, _ = predict_file(self.predictor, item.path, stem_dir, stem, **self.predict_options)
        fields: dict[str, Any] = {"objects": len(result)}
        if self.predictor.kind != "unet":
            fields.update(has_masks=bool(result.has_masks), has_keypoints=result.keypoints is not None)
        return fields

    def _maybe_crash(self, item: Item, record: dict[str, Any]) -> None:
        """The :class:`CrashOnce` hook: leave a torn temporary record, then die without cleanup."""
        import json

        try:
            fd = os.open(self.crash_once.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # type: ignore[union-attr]
        except FileExistsError:
            return
        os.close(fd)
        path = records.record_path(self.out_dir, item.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(record)
        (path.parent / f".{path.name}.crash.partial").write_text(text[: len(text) // 2])
        os._exit(1)
