"""Benchmark variants of exported artifacts (no torch): which runtimes exist, and how each is timed.

:data:`RUNTIMES` is the extension point: one line per backend and precision. A line whose
``needs`` module is not installed, whose ``kinds`` leave the model out, or whose artifact (fp32 or
int8) was not given, is left out.
:func:`artifact_variants` turns an artifact and a runtime into two variants: ``model``
(``backend.run`` on the exact feeds the predictor builds for the image) and ``end_to_end``
(``predictor.predict(image)``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from segrt.bench.core import MODES, Agreement, Variant
from segrt.errors import InputError
from segrt.predictor import record_feeds

if TYPE_CHECKING:
    from segrt.predictor import Predictor


@dataclass(frozen=True)
class Runtime:
    """One backend and precision to run an artifact with.

    name: the row label; artifact: which exported file it runs ("fp32": ``NAME.onnx``, "int8": its
    ``NAME.int8.onnx`` QDQ copy); options: ``segrt.load`` options besides ``threads``; needs: modules
    that must be importable; kinds: the model kinds it applies to (empty: every kind).
    """

    name: str
    artifact: str
    options: Mapping[str, Any] = field(default_factory=dict)
    needs: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()

    @property
    def available(self) -> bool:
        return all(importlib.util.find_spec(m) is not None for m in self.needs)

    def applies_to(self, kind: str | None) -> bool:
        return not self.kinds or kind is None or kind in self.kinds

    def load(self, artifacts: Mapping[str, str | Path], threads: int | None) -> Predictor[Any]:
        """The predictor of this runtime for the exported files ``artifacts`` ({"fp32": path, "int8": path})."""
        return load(artifacts[self.artifact], threads, self.options)


OPENVINO = ("openvino", "segrt.backends.openvino")  # the library and segrt's backend for it

# Every CPU way to run a segrt .onnx export (and its int8 copy): the rows of `segrt bench unet|maskrcnn`,
# the candidates of their --pick, and the rows of benchmarks/openvino_accuracy.py.
RUNTIMES: tuple[Runtime, ...] = (
    Runtime("onnxruntime fp32", "fp32"),
    Runtime("onnxruntime int8", "int8"),
    Runtime("openvino fp32", "fp32", {"backend": "openvino", "precision": "fp32"}, OPENVINO),
    Runtime("openvino bf16", "fp32", {"backend": "openvino", "precision": "bf16"}, OPENVINO),
    Runtime("openvino int8", "int8", {"backend": "openvino", "precision": "fp32"}, OPENVINO),
    Runtime("openvino int8+bf16", "int8", {"backend": "openvino", "precision": "bf16"}, OPENVINO),
    # the FPN outputs' and heads' convolutions and matmuls in bf16; the ResNet, RoiAlign, scores and NMS in fp32
    Runtime(
        "openvino mixed", "fp32", {"backend": "openvino", "precision": "mixed"}, OPENVINO, ("maskrcnn", "keypointrcnn")
    ),
)


def runtimes_for(artifacts: Mapping[str, Path | None], kind: str | None = None) -> list[Runtime]:
    """The installed runtimes for model ``kind`` whose artifact ("fp32"/"int8") is present in ``artifacts``."""
    return [r for r in RUNTIMES if r.available and r.applies_to(kind) and artifacts.get(r.artifact) is not None]


def load(path: str | Path, threads: int | None, options: Mapping[str, Any] | None = None) -> Predictor[Any]:
    """``segrt.load(path, threads=threads, **options)``, with a clear error for options this segrt lacks."""
    import segrt
    from segrt.artifact.formats import format_for_path

    kwargs = dict(options or {})
    if threads is not None and format_for_path(path).name != "engine":  # engines have no CPU thread pool
        kwargs["threads"] = threads
    try:
        return segrt.load(path, **kwargs)
    except TypeError as exc:
        raise InputError(
            f"{path}: the backend does not take the options {dict(options or {})} ({exc})",
            "install the backend's extra, or leave --backend out",
        ) from None


def model_call(backend: Any, feeds: list[dict[str, np.ndarray]]) -> Callable[[], list[dict[str, np.ndarray]]]:
    """A callable that runs every feed through ``backend`` (the model-only work of one image)."""
    return lambda: [backend.run(f) for f in feeds]


def predictor_variants(
    name: str,
    make_predictor: Callable[[], Any],
    image: np.ndarray,
    *,
    agreement: Agreement | None,
    model_agreement: Agreement | None = None,
    group: str = "",
    reference: bool = False,
    modes: tuple[str, ...] = MODES,
    info: Mapping[str, Any] | None = None,
) -> list[Variant]:
    """Model-only and end-to-end variants of any predictor (``backend`` + ``predict``) on ``image``.

    ``agreement`` compares ``predict`` results, ``model_agreement`` the lists of backend outputs.
    """
    pixels = float(image.shape[0] * image.shape[1])

    def model_factory() -> Callable[[], Any]:
        predictor = make_predictor()
        return model_call(predictor.backend, record_feeds(predictor, image))

    def e2e_factory() -> Callable[[], Any]:
        predictor = make_predictor()
        return lambda: predictor.predict(image)

    factories = {"model": model_factory, "end_to_end": e2e_factory}
    agreements = {"model": model_agreement, "end_to_end": agreement}
    return [
        Variant(
            name,
            factories[m],
            mode=m,
            reference=reference,
            agreement=agreements[m],
            group=group,
            pixels_per_call=pixels,
            info=dict(info or {}),
        )
        for m in modes
    ]


def artifact_variants(
    name: str,
    path: str | Path,
    image: np.ndarray,
    *,
    threads: int | None,
    options: Mapping[str, Any] | None = None,
    agreement: Agreement | None = None,
    model_agreement: Agreement | None = None,
    group: str = "",
    reference: bool = False,
    modes: tuple[str, ...] = MODES,
) -> list[Variant]:
    """Variants of one artifact on one runtime (loaded with ``segrt.load(path, threads=, **options)``)."""
    return predictor_variants(
        name,
        lambda: load(path, threads, options),
        image,
        agreement=agreement,
        model_agreement=model_agreement,
        group=group,
        reference=reference,
        modes=modes,
        info={"artifact": Path(path).name, **{k: str(v) for k, v in (options or {}).items()}},
    )


def bench_image(
    hw: tuple[int, int] | None, channels: int = 1, path: str | Path | None = None, seed: int = 0
) -> np.ndarray:
    """The benchmark input, uint8 [H, W] (channels 1) or [H, W, channels].

    With ``path``: that image, repeated or cropped to H x W (``hw=None``: at its own size). Without:
    bright blobs on a dark background, nuclei-like, deterministic for a ``seed``. The run time of the
    dense networks does not depend on the content; detection counts and agreement numbers do.
    """
    import cv2

    if path is not None:
        from segrt.io.images import read_image

        img = read_image(path)
        if img.ndim == 3 and channels == 1:
            img = img[..., :3].mean(axis=2).astype(img.dtype)
        elif img.ndim == 2 and channels > 1:
            img = np.repeat(img[:, :, None], channels, axis=2)
        elif img.ndim == 3:
            img = img[..., :channels]
        if hw is None:
            return np.ascontiguousarray(img)
        h, w = int(hw[0]), int(hw[1])
        reps = (-(-h // img.shape[0]), -(-w // img.shape[1])) + (1,) * (img.ndim - 2)
        return np.ascontiguousarray(np.tile(img, reps)[:h, :w])
    if hw is None:
        raise InputError("no image size and no image file for the benchmark", "pass an image or a size")
    h, w = int(hw[0]), int(hw[1])
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 20, np.uint8)
    for _ in range(max(h * w // 4000, 10)):
        centre = (int(rng.integers(w)), int(rng.integers(h)))
        axes = (int(rng.integers(5, 15)), int(rng.integers(5, 15)))
        angle = float(rng.integers(180))
        colour = tuple(int(v) for v in rng.integers(120, 255, 3))
        cv2.ellipse(img, centre, axes, angle, 0, 360, colour, -1)
    if channels == 1:
        return np.ascontiguousarray(img[..., 0])
    return np.ascontiguousarray(np.repeat(img[..., :1], channels, axis=2) if channels != 3 else img)


def default_image_hw(metadata: Mapping[str, Any]) -> tuple[int, int]:
    """Benchmark image size for an artifact: Mask R-CNN its export size, U-Net 512 x 512."""
    if "input_size" in metadata and metadata.get("kind") != "unet":
        h, w = metadata["input_size"]
        return int(h), int(w)
    return 512, 512


def image_channels(metadata: Mapping[str, Any]) -> int:
    return int(metadata.get("input_channels", 3 if metadata.get("kind") != "unet" else 1))
