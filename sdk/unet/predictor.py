"""U-Net runtime: overlap-tile prediction of images of any size.

Metadata keys read (written by ``segrt.export.to_onnx``)::

    padding      "valid" | "same"
    border       output is smaller than the input by this many pixels per side
    size_min, size_step   valid input sizes per axis: size_min + k * size_step
    tile_size    largest input tile to use by default (an engine's opt/max profile)
    margin       output pixels dropped per tile side (context for same-padding nets)
    pool_factor  2 ** (depth - 1): tiles start on this grid (derived from the depth or size_step if absent)
    input_name, output_name   tensors: image float32 [N, C, H, W] -> probs float32 [N, K, h, w]
    foreground_class          class whose connected components are the instances
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segrt.backends.base import Backend
from segrt.errors import ArtifactError, InputError
from segrt.io.images import write_png
from segrt.io.preprocess import as_hwc, check_image
from segrt.io.sources import ArraySource
from segrt.predictor import check_options
from segrt.unet.tiling import AxisPlan
from segrt.viz import overlay_instances


@dataclass
class SegmentationResult:
    """Output of :meth:`UNetPredictor.predict` for one image of size H x W.

    Attributes:
        probs: float32 [K, H, W], per-pixel class probabilities (softmax); None when
            ``predict(probs=None)`` (or ``"auto"`` on a large image) kept none.
        classes: uint8 [H, W], argmax class per pixel.
        instances: int32 [H, W], connected components of the foreground class
            (0 = background, 1..n = objects, e.g. cells to count); None after ``predict(instances=False)``.
        paths: the files written with ``predict(..., out=DIR)``; then ``classes`` and ``instances``
            are the written arrays opened read-only (zarr: [1, H, W] for OME-Zarr, [H, W] for TIFF).
        n_instances: the number of instances, when known without reading ``instances``.
    """

    # numpy arrays in memory; zarr arrays (read-only, array-like) when written to disk with ``out=``
    probs: Any
    classes: Any
    instances: Any
    paths: list[Path] = field(default_factory=list)
    n_instances: int | None = None

    @property
    def count(self) -> int:
        """Number of instances (connected components of the foreground)."""
        if self.n_instances is not None:
            return self.n_instances
        if self.instances is None:
            raise InputError(
                "this result has no instance labels to count (predicted with instances=False)",
                "predict with instances=True",
            )
        return int(self.instances.max())

    @property
    def image_hw(self) -> tuple[int, int]:
        return (int(self.classes.shape[-2]), int(self.classes.shape[-1]))

    def __len__(self) -> int:
        return self.count


class UNetPredictor:
    """Segments images of any size with a U-Net artifact; configured from its metadata.

    Args:
        backend: an opened artifact (see ``segrt.load``).
        max_tile: largest input tile (default: the artifact's ``tile_size``).
        batch_size: tiles per backend call.
        tta: average over the 8 flips/rotations (8x the work; the paper averaged 7 rotations).
    """

    def __init__(self, backend: Backend, max_tile: int | None = None, batch_size: int = 4, tta: bool = False) -> None:
        meta = backend.metadata
        if meta.get("kind") != "unet":
            raise ArtifactError(
                f"{backend.path} holds a {meta.get('kind')!r} model, not a U-Net",
                "load it with segrt.load(path), which picks the right predictor",
            )
        self.backend = backend
        self.kind = "unet"
        self.metadata: dict[str, Any] = meta
        self.last_timings: dict[str, float] = {}
        self.class_names: list[str] = list(meta["class_names"])
        self.channels = int(meta["input_channels"])
        self.size_min, self.size_step = int(meta["size_min"]), int(meta["size_step"])
        self.border, self.margin = int(meta["border"]), int(meta.get("margin", 0))
        self.max_tile = int(max_tile or meta["tile_size"])
        self.batch_size = max(1, int(batch_size))
        self.max_batch: int | None = None  # an engine's profile caps the tiles per call
        profiles = getattr(backend, "profiles", None)  # TensorRT engines: stay inside the built profile
        if profiles and meta.get("input_name", "image") in profiles:
            lo, _, hi = profiles[meta.get("input_name", "image")]  # [N, C, H, W] each
            self.max_tile = min(self.max_tile, int(hi[-2]), int(hi[-1]))
            self.max_batch = int(hi[0])
            self.batch_size = min(self.batch_size, self.max_batch)
            smallest = max(int(lo[-2]), int(lo[-1]))  # tiles below the profile's min are rejected: start there
            self.size_min += -(-max(0, smallest - self.size_min) // self.size_step) * self.size_step
        self.tta = tta
        self.input_name = meta.get("input_name", backend.inputs[0].name)
        self.output_name = meta.get("output_name", backend.outputs[0].name)
        self.foreground = int(meta.get("foreground_class", 1))

    # -- the pipeline -------------------------------------------------------------------------
    def predict(
        self,
        image: Any,
        *,
        tta: bool | None = None,
        tile: int | None = None,
        batch: int | None = None,
        probs: Any = "auto",
        instances: bool = True,
        progress: bool | None = None,
        connectivity: int = 4,
        out: str | Path | None = None,
        out_format: str = "ome-zarr",
        name: str | None = None,
        save_image: bool = True,
        **unknown: Any,
    ) -> SegmentationResult:
        """Segment one image of any size, tile by tile, in memory bounded by the outputs asked for.

        Args:
            image: [H, W] or [H, W, C] uint8/uint16/float array (``np.memmap`` and zarr arrays are
                read a band at a time), or the path of a TIFF / zarr / PNG image (TIFF and zarr read lazily).
            tta: override the predictor's test-time-augmentation setting (in-memory arrays only).
            tile: largest input tile edge (default: the predictor's ``max_tile``). The result does not
                depend on it for valid-padding nets (see ``segrt.unet.tiling``).
            batch: tiles per backend call (default: the predictor's ``batch_size``).
            probs: the probability map to return: ``"auto"`` (float32 up to
                ``segrt.unet.stream.AUTO_PROBS_MAX_PIXELS`` pixels, else None), ``"float32"``,
                ``"float16"``, ``"uint8"`` (p * 255, rounded), None (not kept), a ``.zarr`` /
                ``.npy`` path (float16, written atomically, returned opened read-only), or a
                writable [K, H, W] array.
            instances: label the foreground's connected components (int32, 4 bytes per pixel).
            progress: tqdm bar with tiles done and Mpixel/s (default: for images over 16 Mpixel).
            connectivity: 4 or 8, for the instance labels.
            out: a folder: write the class map, the instance labels and the per-instance table there
                while predicting (``segrt.unet.outputs``), never holding them whole in memory. Checked
                before any compute (writable, writer installed, free disk).
            out_format: with ``out``: "ome-zarr" (``<name>.ome.zarr``, NGFF 0.4 with a pyramid) or
                "tiff" (``<name>_classes.tif``, ``<name>_instances.tif``, tiled BigTIFF); both with
                ``<name>_instances.csv``.
            name: output name stem with ``out`` (default: the image file's stem, or "image").
            save_image: with ``out`` as OME-Zarr, copy the input as the root image (viewers show
                the labels over it).

        Returns:
            :class:`SegmentationResult` with everything at H x W.
        """
        from segrt.unet.stream import segment

        check_options(
            self.kind,
            unknown,
            (
                "tta",
                "tile",
                "batch",
                "probs",
                "instances",
                "progress",
                "connectivity",
                "out",
                "out_format",
                "name",
                "save_image",
            ),
        )
        t0 = time.perf_counter()
        if out is not None:
            return self._predict_to_disk(
                image,
                Path(out),
                out_format,
                name,
                save_image,
                tta=tta,
                tile=tile,
                batch=batch,
                probs=probs,
                instances=instances,
                progress=progress,
                connectivity=connectivity,
            )
        if isinstance(image, np.ndarray) and not isinstance(image, np.memmap):  # memmaps stay on disk
            image = as_hwc(image, self.channels)
        elif not isinstance(image, (str, Path)) and not hasattr(image, "shape"):
            check_image(image)  # refuses it, naming what to pass
        probs_out, classes, model_ms = segment(
            self,
            image,
            tta=self.tta if tta is None else tta,
            max_tile=int(tile or self.max_tile),
            batch=max(1, min(int(batch or self.batch_size), self.max_batch or 1 << 30)),
            probs=probs,
            progress=progress,
        )
        labels = self.instances(classes, connectivity) if instances else None
        self.last_timings = {"model_ms": model_ms, "total_ms": (time.perf_counter() - t0) * 1e3}
        return SegmentationResult(probs_out, classes, labels)

    def _predict_to_disk(
        self,
        image: Any,
        out: Path,
        fmt: str,
        name: str | None,
        save_image: bool,
        *,
        tta: bool | None,
        tile: int | None,
        batch: int | None,
        probs: Any,
        instances: bool,
        progress: bool | None,
        connectivity: int,
    ) -> SegmentationResult:
        """``predict(..., out=DIR)``: checks first, then one streaming pass into ``DiskOutputs``."""
        from segrt.io.sources import open_image
        from segrt.unet.outputs import DiskOutputs
        from segrt.unet.stream import segment

        t0 = time.perf_counter()
        if tta:
            raise InputError(
                "test-time augmentation keeps its outputs in memory", "predict without tta, or without out"
            )
        if connectivity not in (4, 8):
            raise InputError(
                f"connectivity must be 4 or 8, got {connectivity}", "use 4 (edges) or 8 (edges and corners)"
            )
        if isinstance(image, np.ndarray) and not isinstance(image, np.memmap):
            image = as_hwc(image, self.channels)
        source = open_image(image)  # header checks (size limit, truncation) happen here
        H, W, C = source.shape
        if self.channels != C:
            raise InputError(
                f"image has {C} channel(s) but the model takes {self.channels}",
                "convert it first, e.g. to grey for a 1-channel model",
            )
        try:  # the input can be read at both ends: a truncated file fails now, not after hours
            source.read(0, 1, 0, 1)
            source.read(H - 1, H, W - 1, W)
        except Exception as exc:
            raise InputError(f"cannot read the image's pixels: {exc}", "check that the file is complete") from None
        stem = name or (Path(image).name.split(".")[0] if isinstance(image, (str, Path)) else "image")
        probs = None if isinstance(probs, str) and probs == "auto" else probs
        writer = DiskOutputs(
            out,
            stem,
            source,
            self.class_names,
            self.foreground,
            fmt=fmt,
            instances=instances,
            connectivity=connectivity,
            image=save_image,
        )
        try:
            probs_out, _, model_ms = segment(
                self,
                source,
                tta=False,
                max_tile=int(tile or self.max_tile),
                batch=max(1, min(int(batch or self.batch_size), self.max_batch or 1 << 30)),
                probs=probs,
                progress=progress,
                sink=writer.write,
            )
            paths = writer.finish()
        except BaseException:
            writer.abort()
            raise
        classes, labels = _open_written(paths, fmt, instances)
        self.last_timings = {"model_ms": model_ms, "total_ms": (time.perf_counter() - t0) * 1e3}
        return SegmentationResult(probs_out, classes, labels, paths=paths, n_instances=writer.count)

    def plan(self, hw: tuple[int, int], max_tile: int | None = None) -> tuple[AxisPlan, AxisPlan]:
        """Grid-aligned tile plans (rows, columns) for an image of ``hw`` pixels.

        Uses the predictor's ``size_min``, which an engine's optimization profile may raise above
        the artifact's (tiles below the profile's minimum would be refused).
        """
        from segrt.unet.stream import plan_tiles

        return plan_tiles({**self.metadata, "size_min": self.size_min}, hw, int(max_tile or self.max_tile))

    def predict_probs(self, x: np.ndarray, max_tile: int | None = None) -> np.ndarray:
        """Class probabilities float32 [K, H, W] for a normalized float32 [H, W, C] image (overlap-tile)."""
        from segrt.unet.stream import run_tiles

        ys, xs = self.plan(x.shape[:2], max_tile)
        probs = np.empty((len(self.class_names),) + x.shape[:2], np.float32)

        def write(region: tuple[slice, slice], p: np.ndarray) -> None:
            probs[(slice(None),) + region] = p

        run_tiles(
            self.backend,
            (self.input_name, self.output_name),
            ArraySource(x),
            ys,
            xs,
            self.margin,
            lambda block: block.astype(np.float32),
            self.batch_size,
            write,
        )
        return probs

    def instances(self, classes: np.ndarray, connectivity: int = 4) -> np.ndarray:
        """Connected components of the foreground class, int32 [H, W] (0 = background), labelled by bands."""
        from segrt.unet.components import label_components

        return label_components(
            lambda y0, y1: classes[y0:y1] == self.foreground, classes.shape, connectivity=connectivity
        )[0]

    # -- output -------------------------------------------------------------------------------
    def draw(self, image: np.ndarray, result: SegmentationResult) -> np.ndarray:
        """Overlay of the instances on the image, uint8 RGB [H, W, 3] (labelled now if ``result`` has none)."""
        labels = result.instances if result.instances is not None else self.instances(result.classes)
        return overlay_instances(image, labels)

    def save(
        self, result: SegmentationResult, out_dir: str | Path, stem: str, image: np.ndarray | None = None
    ) -> list[Path]:
        """Write ``<stem>_classes.png`` (uint8 class ids), ``<stem>_instances.png`` (uint16 ids)
        and, given the input ``image``, ``<stem>_overlay.png``.

        Large results (over ``segrt.unet.stream.LARGE_OUTPUT_PIXELS`` pixels, or more than 65535
        instances) are written as tiled, zlib-compressed TIFFs instead (``_classes.tif`` uint8,
        ``_instances.tif`` int32), and without an overlay.
        """
        from segrt.unet.stream import LARGE_OUTPUT_PIXELS, write_tiff

        out_dir = Path(out_dir)
        if (result.instances is not None and result.count > 65535) or result.classes.size > LARGE_OUTPUT_PIXELS:
            paths = [write_tiff(out_dir / f"{stem}_classes.tif", result.classes)]
            if result.instances is not None:
                paths.append(write_tiff(out_dir / f"{stem}_instances.tif", result.instances))
            return paths
        paths = [write_png(out_dir / f"{stem}_classes.png", result.classes)]
        if result.instances is not None:
            paths.append(write_png(out_dir / f"{stem}_instances.png", result.instances.astype(np.uint16)))
        if image is not None:
            paths.append(write_png(out_dir / f"{stem}_overlay.png", self.draw(image, result)))
        return paths

    def evaluate(self, data: str | Path, *, tta: bool = False, **unknown: Any) -> dict[str, Any]:
        """Score the model on an image/label split folder (see :func:`evaluate`)."""
        check_options(self.kind, unknown, ("tta",))
        return evaluate(self, data, tta=tta)


def _open_written(paths: list[Path], fmt: str, instances: bool) -> tuple[Any, Any]:
    """(classes, instances or None) of a finished ``predict(..., out=)``, opened read-only from disk."""
    import zarr

    if fmt == "tiff":
        import tifffile

        opened: list[Any] = [zarr.open_array(tifffile.imread(p, aszarr=True), mode="r") for p in paths[: 1 + instances]]
    else:
        root: Any = zarr.open_group(str(paths[0]), mode="r")
        opened = [root["labels/classes/0"]] + ([root["labels/instances/0"]] if instances else [])
    return opened[0], (opened[1] if instances else None)


def evaluate(predictor: UNetPredictor, split_dir: str | Path, tta: bool = False) -> dict[str, Any]:
    """Score a U-Net on an image/label folder with the paper's metrics.

    Per image (:func:`score_image`): at the argmax decision (threshold 0.5 for two classes) pixel
    error, foreground IoU, adapted Rand error of the connected components vs the true instances,
    warping error, and object counts; plus the ISBI-style sweep over 10 thresholds
    (``segrt.unet.metrics.threshold_sweep``) with the best value of each. Results are averaged over
    the images of the split (:func:`summarize_scores`).
    """
    from segrt.io.datasets import load_split

    per_image = [score_image(predictor, image, labels, tta=tta) for image, labels in load_split(split_dir)]
    return summarize_scores(per_image, tta=tta, model=str(predictor.backend.path))


def score_image(predictor: UNetPredictor, image: np.ndarray, labels: np.ndarray, tta: bool = False) -> dict[str, Any]:
    """The metrics of one image ([H, W] or [H, W, C]) against its int32 [H, W] instance labels (0 = background).

    Returns a JSON-ready dict: pixel_error, iou, rand_error, warping_error (floats), objects_predicted,
    objects_true (ints) and best_over_thresholds {metric: value}.
    """
    from segrt.unet.metrics import adapted_rand_error, iou, pixel_error, threshold_sweep, warping_error

    result = predictor.predict(image, tta=tta, probs="float32")
    assert result.probs is not None and result.instances is not None  # asked for both just above
    pred, truth = result.classes == predictor.foreground, labels > 0
    prob = result.probs[predictor.foreground]
    sweep = threshold_sweep(prob, labels)
    return {
        "pixel_error": pixel_error(pred, truth),
        "iou": iou(pred, truth),
        "rand_error": adapted_rand_error(result.instances, labels),
        "warping_error": warping_error(pred, truth, priority=np.abs(prob - 0.5))[0],
        "objects_predicted": result.count,
        "objects_true": int(len(np.unique(labels)) - 1),
        "best_over_thresholds": {k: v["value"] for k, v in sweep["best"].items()},
    }


def summarize_scores(per_image: list[dict[str, Any]], tta: bool, model: str) -> dict[str, Any]:
    """The report of :func:`evaluate`: each metric of :func:`score_image` averaged over ``per_image`` (in order)."""
    keys = ["pixel_error", "iou", "rand_error", "warping_error", "objects_predicted", "objects_true"]
    report: dict[str, Any] = {k: float(np.mean([r[k] for r in per_image])) for k in keys}
    report["best_over_thresholds"] = {
        k: float(np.mean([r["best_over_thresholds"][k] for r in per_image]))
        for k in per_image[0]["best_over_thresholds"]
    }
    report.update(images=len(per_image), tta=tta, model=model)
    return report
