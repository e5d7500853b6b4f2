"""The one protocol every predictor implements, so callers never ask which model they hold.

``segrt.load(path)`` returns a predictor for the artifact's model kind. The CLI, the
benchmarks, int8 calibration and the demo use only what is declared here::

    predictor.kind            "unet" | "maskrcnn" | "keypointrcnn"
    predictor.metadata        the artifact's metadata (validated, see segrt.artifact.metadata)
    predictor.backend         the runtime that runs the network (segrt.backends.base.Backend)
    predictor.predict(image, **options) -> Result
    predictor.draw(image, result)       -> uint8 RGB [H, W, 3]
    predictor.save(result, out_dir, stem, image=None) -> list[Path]
    predictor.evaluate(data, **options) -> dict[str, float]
    predictor.last_timings    {"model_ms", "total_ms"} of the last predict: network calls alone,
                              and the whole pipeline (model_ms <= total_ms)

Results (``segrt.unet.predictor.SegmentationResult``, ``segrt.rcnn.predictor.Instances``) are typed
dataclasses; ``len(result)`` is the number of objects found. :class:`FeedRecorder` records the
feeds ``predict`` gives ``predictor.backend`` (for model-only benchmarks and int8 calibration).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

import numpy as np

from segrt.backends.base import Backend
from segrt.errors import InputError


@runtime_checkable
class Result(Protocol):
    """What every prediction result offers."""

    def __len__(self) -> int:
        """Number of objects found (instances or connected components)."""


# The result type a predictor returns and takes back (``draw``, ``save``): invariant, because it is both.
ResultT = TypeVar("ResultT", bound=Result)


@runtime_checkable
class Predictor(Protocol, Generic[ResultT]):
    """A loaded model that turns images into results (see the module docstring).

    ``Predictor[Instances]`` is a Mask R-CNN predictor, ``Predictor[SegmentationResult]`` a U-Net one;
    code that serves every kind takes ``Predictor[Any]``.
    """

    kind: str
    metadata: dict[str, Any]
    backend: Backend
    last_timings: dict[str, float]

    def predict(self, image: Any, **options: Any) -> ResultT:
        """Run the whole pipeline on one image ([H, W] or [H, W, C] numpy array; predictors that read
        large images lazily also take an image path or a memory-mapped / zarr array)."""

    def draw(self, image: np.ndarray, result: ResultT) -> np.ndarray:
        """uint8 RGB [H, W, 3] picture of ``result`` over ``image``."""

    def save(self, result: ResultT, out_dir: str | Path, stem: str, image: np.ndarray | None = None) -> list[Path]:
        """Write the result's files (atomically) into ``out_dir``; return their paths."""

    def evaluate(self, data: str | Path, **options: Any) -> dict[str, Any]:
        """Score the model on a held-out dataset; returns named metrics."""


def check_options(kind: str, options: dict[str, Any], allowed: tuple[str, ...]) -> None:
    """Refuse ``predict``/``evaluate`` options this model kind does not take, naming those it does."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise InputError(
            f"{kind} models take no option {', '.join(map(repr, unknown))}",
            f"options for {kind}: {', '.join(allowed) or 'none'}",
        )


class Timer:
    """Times one ``predict``: the backend calls alone (``model_ms``) and the whole call (``total_ms``)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.model_s = 0.0
        self.start = time.perf_counter()

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``backend.run(feed)``, with its time added to ``model_ms``."""
        t = time.perf_counter()
        try:
            return self.backend.run(feed)
        finally:
            self.model_s += time.perf_counter() - t

    def timings(self) -> dict[str, float]:
        return {"model_ms": self.model_s * 1e3, "total_ms": (time.perf_counter() - self.start) * 1e3}


class FeedRecorder:
    """Records the feeds a predictor gives its backend: every ``backend.run(feed)`` while it is active.

    ``with FeedRecorder(predictor) as rec: predictor.predict(image, **options)`` leaves in
    ``rec.feeds`` a copy of each feed, in call order (``{input name: array}``, e.g. U-Net tile
    batches ``float32 [T, C, h, w]``; the Mask R-CNN canvas). The backend still runs every call,
    and the real backend is put back on exit. The model-only benchmark replays these feeds, and
    int8 calibration reads its activation ranges from them, so both see exactly what ``predict``
    sends at inference.
    """

    def __init__(self, predictor: Any) -> None:
        self.predictor = predictor
        self.feeds: list[dict[str, np.ndarray]] = []
        self._backend: Any = None

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.feeds.append({k: np.array(v, copy=True) for k, v in feed.items()})
        return self._backend.run(feed)

    def __getattr__(self, name: str) -> Any:  # the predictor may read its backend's facts (inputs, names)
        if name.startswith("__") or self.__dict__.get("_backend") is None:
            raise AttributeError(name)
        return getattr(self._backend, name)

    def __enter__(self) -> FeedRecorder:
        self._backend, self.predictor.backend = self.predictor.backend, self
        return self

    def __exit__(self, *exc: object) -> None:
        self.predictor.backend, self._backend = self._backend, None


# TIFF and zarr inputs are read lazily, tile by tile: images larger than memory work
LAZY_SUFFIXES = (".tif", ".tiff", ".zarr")


def predict_file(
    predictor: Any, image_path: str | Path, out_dir: str | Path, stem: str, *, remote: bool = False, **options: Any
) -> tuple[Result, list[Path]]:
    """What ``segrt predict`` does for one image file: read it, ``predict``, ``save`` into ``out_dir``.

    TIFF and zarr files go to ``predict`` as paths (read lazily, a band at a time) unless ``tta`` is asked
    for or the predictor is ``remote`` (a Triton server takes arrays); other files are read whole with
    ``segrt.io.images.read_image``.
    The batch runner (``segrt.batch``) calls this too, so its files equal local ``predict``'s byte for byte.

    Returns:
        the result and the paths ``save`` wrote (written atomically).
    """
    from segrt.io.images import read_image

    lazy = Path(image_path).suffix.lower() in LAZY_SUFFIXES and not options.get("tta") and not remote
    image = str(image_path) if lazy else read_image(image_path)
    result = predictor.predict(image, **options)
    return result, predictor.save(result, out_dir, stem, image=None if lazy else image)


def record_feeds(predictor: Any, image: np.ndarray, **options: Any) -> list[dict[str, np.ndarray]]:
    """The feeds ``predictor.predict(image, **options)`` passes to ``predictor.backend.run``, in order."""
    with FeedRecorder(predictor) as recorder:
        predictor.predict(image, **options)
    return recorder.feeds
