"""U-Net runtime: overlap-tile prediction of images of any size.

Metadata keys read (written by ``export.to_onnx``)::

    padding      "valid" | "same"
    border       output is smaller than the input by this many pixels per side
    size_min, size_step   valid input sizes per axis: size_min + k * size_step
    tile_size    largest input tile to use by default (an engine's opt/max profile)
    margin       output pixels dropped per tile side (context for same-padding nets)
    input_name, output_name   tensors: image float32 [N, C, H, W] -> probs float32 [N, K, h, w]
    foreground_class          class whose connected components are the instances
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .backends.base import Backend
from .errors import ArtifactError, InputError
from .imageio import write_png
from .predictor import Timer, check_options
from .preprocess import as_hwc, normalize
from .tiling import AxisPlan, extract_tiles, mirror_pad, plan_axis, stitch
from .viz import overlay_instances

# The 8 symmetries of the square: (rot90 count, horizontal flip); each is undone after prediction.
DIHEDRAL = [(k, f) for f in (False, True) for k in range(4)]


@dataclass
class SegmentationResult:
    """Output of :meth:`UNetPredictor.predict` for one image of size H x W.

    Attributes:
        probs: float32 [K, H, W], per-pixel class probabilities (softmax).
        classes: uint8 [H, W], argmax class per pixel.
        instances: int32 [H, W], connected components of the foreground class
            (0 = background, 1..n = objects, e.g. cells to count).
    """

    probs: np.ndarray
    classes: np.ndarray
    instances: np.ndarray

    @property
    def count(self) -> int:
        """Number of instances (connected components of the foreground)."""
        return int(self.instances.max())

    @property
    def image_hw(self) -> tuple[int, int]:
        return (int(self.classes.shape[0]), int(self.classes.shape[1]))

    def __len__(self) -> int:
        return self.count


class UNetPredictor:
    """Segments images of any size with a U-Net artifact; configured from its metadata.

    Args:
        backend: an opened artifact (see ``sdk.load``).
        max_tile: largest input tile (default: the artifact's ``tile_size``).
        batch_size: tiles per backend call.
        tta: average over the 8 flips/rotations (8x the work; the paper averaged 7 rotations).
    """

    def __init__(self, backend: Backend, max_tile: int | None = None, batch_size: int = 4, tta: bool = False) -> None:
        meta = backend.metadata
        if meta.get("kind") != "unet":
            raise ArtifactError(f"{backend.path} holds a {meta.get('kind')!r} model, not a U-Net",
                                "load it with sdk.load(path), which picks the right predictor")
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
        profiles = getattr(backend, "profiles", None)  # TensorRT engines: stay inside the built profile
        if profiles and meta.get("input_name", "image") in profiles:
            lo, _, hi = profiles[meta.get("input_name", "image")]  # [N, C, H, W] each
            self.max_tile = min(self.max_tile, int(hi[-2]), int(hi[-1]))
            self.batch_size = min(self.batch_size, int(hi[0]))
            smallest = max(int(lo[-2]), int(lo[-1]))  # tiles below the profile's min are rejected: start there
            self.size_min += -(-max(0, smallest - self.size_min) // self.size_step) * self.size_step
        self.tta = tta
        self.input_name = meta.get("input_name", backend.inputs[0].name)
        self.output_name = meta.get("output_name", backend.outputs[0].name)
        self.foreground = int(meta.get("foreground_class", 1))

    # -- the pipeline -------------------------------------------------------------------------
    def predict(self, image: np.ndarray, *, tta: bool | None = None, tile: int | None = None,
                batch: int | None = None, **unknown: Any) -> SegmentationResult:
        """Segment one image.

        Args:
            image: [H, W] or [H, W, C] uint8/uint16/float array, any H and W.
            tta: override the predictor's test-time-augmentation setting.
            tile: largest input tile edge for this call (default: the predictor's ``max_tile``).
            batch: tiles per backend call for this call (default: the predictor's ``batch_size``).

        Returns:
            :class:`SegmentationResult` with everything at H x W.
        """
        check_options(self.kind, unknown, ("tta", "tile", "batch"))
        timer = Timer(self.backend)
        x = normalize(as_hwc(image, self.channels), self.metadata["normalization"])
        run = lambda t: self.predict_probs(t, max_tile=tile, batch_size=batch, run=timer.run)  # noqa: E731
        if self.tta if tta is None else tta:
            probs = np.zeros((len(self.class_names),) + x.shape[:2], np.float32)
            for k, flip in DIHEDRAL:
                t = np.rot90(x[:, ::-1] if flip else x, k)
                p = np.rot90(run(np.ascontiguousarray(t)), -k, axes=(1, 2))
                probs += p[:, :, ::-1] if flip else p
            probs /= len(DIHEDRAL)
        else:
            probs = run(x)
        # two classes: one comparison instead of a strided argmax (ties go to class 0 in both)
        classes = (probs[1] > probs[0]).view(np.uint8) if len(probs) == 2 else probs.argmax(axis=0).astype(np.uint8)
        result = SegmentationResult(probs, classes, self.instances(classes))
        self.last_timings = timer.timings()
        return result

    def tile(self, x: np.ndarray, max_tile: int | None = None) -> tuple[np.ndarray, AxisPlan, AxisPlan]:
        """The tile batch float32 [T, C, h, w] fed to the backend for a normalized [H, W, C] image, and its plans."""
        ys, xs = (plan_axis(n, self.size_min, self.size_step, self.border, max_tile or self.max_tile, self.margin)
                  for n in x.shape[:2])
        padded = mirror_pad(x, (ys.pad_before, ys.pad_after), (xs.pad_before, xs.pad_after))
        return extract_tiles(padded, ys, xs), ys, xs

    def predict_probs(self, x: np.ndarray, max_tile: int | None = None, batch_size: int | None = None,
                      run=None) -> np.ndarray:
        """Class probabilities float32 [K, H, W] for a normalized float32 [H, W, C] image (overlap-tile)."""
        tiles, ys, xs = self.tile(x, max_tile)
        run, batch = run or self.backend.run, max(1, int(batch_size or self.batch_size))
        outs = [run({self.input_name: tiles[i:i + batch]})[self.output_name] for i in range(0, len(tiles), batch)]
        return stitch(np.concatenate(outs), ys, xs, self.margin)

    def instances(self, classes: np.ndarray, connectivity: int = 4) -> np.ndarray:
        """Connected components of the foreground class, int32 [H, W] (0 = background)."""
        _, labels = cv2.connectedComponents((classes == self.foreground).astype(np.uint8), connectivity=connectivity)
        return labels.astype(np.int32)

    # -- output -------------------------------------------------------------------------------
    def draw(self, image: np.ndarray, result: SegmentationResult) -> np.ndarray:
        """Overlay of the instances on the image, uint8 RGB [H, W, 3]."""
        return overlay_instances(image, result.instances)

    def save(self, result: SegmentationResult, out_dir: str | Path, stem: str,
             image: np.ndarray | None = None) -> list[Path]:
        """Write ``<stem>_classes.png`` (uint8 class ids), ``<stem>_instances.png`` (uint16 ids)
        and, given the input ``image``, ``<stem>_overlay.png``."""
        out_dir = Path(out_dir)
        if result.count > 65535:
            raise InputError(f"{result.count} instances do not fit a uint16 label PNG", "save result.instances yourself")
        paths = [write_png(out_dir / f"{stem}_classes.png", result.classes),
                 write_png(out_dir / f"{stem}_instances.png", result.instances.astype(np.uint16))]
        if image is not None:
            paths.append(write_png(out_dir / f"{stem}_overlay.png", self.draw(image, result)))
        return paths

    def evaluate(self, data: str | Path, *, tta: bool = False, **unknown: Any) -> dict[str, Any]:
        """Score the model on an image/label split folder (see :func:`evaluate`)."""
        check_options(self.kind, unknown, ("tta",))
        return evaluate(self, data, tta=tta)


def evaluate(predictor: UNetPredictor, split_dir: str | Path, tta: bool = False) -> dict[str, Any]:
    """Score a U-Net on an image/label folder with the paper's metrics.

    Per image: at the argmax decision (threshold 0.5 for two classes) pixel error,
    foreground IoU, adapted Rand error of the connected components vs the true
    instances, warping error, and object counts; plus the ISBI-style sweep over
    10 thresholds (``sdk.metrics.threshold_sweep``) with the best value of each.
    Results are averaged over the images of the split.
    """
    from .datasets import load_split
    from .metrics import adapted_rand_error, iou, pixel_error, threshold_sweep, warping_error

    per_image = []
    for image, labels in load_split(split_dir):
        result = predictor.predict(image, tta=tta)
        pred, truth = result.classes == predictor.foreground, labels > 0
        prob = result.probs[predictor.foreground]
        sweep = threshold_sweep(prob, labels)
        per_image.append({
            "pixel_error": pixel_error(pred, truth), "iou": iou(pred, truth),
            "rand_error": adapted_rand_error(result.instances, labels),
            "warping_error": warping_error(pred, truth, priority=np.abs(prob - 0.5))[0],
            "objects_predicted": result.count, "objects_true": int(len(np.unique(labels)) - 1),
            "best_over_thresholds": {k: v["value"] for k, v in sweep["best"].items()},
        })
    keys = ["pixel_error", "iou", "rand_error", "warping_error", "objects_predicted", "objects_true"]
    report: dict[str, Any] = {k: float(np.mean([r[k] for r in per_image])) for k in keys}
    report["best_over_thresholds"] = {k: float(np.mean([r["best_over_thresholds"][k] for r in per_image]))
                                      for k in per_image[0]["best_over_thresholds"]}
    report.update(images=len(per_image), tta=tta, model=str(predictor.backend.path))
    return report
