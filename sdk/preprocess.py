"""Image checks and intensity normalization shared by training and the runtime.

Training (``export``) calls the same functions, so an exported model sees at
inference exactly the intensities it was trained on.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .errors import InputError

DEFAULT_NORMALIZATION: dict[str, Any] = {"mode": "percentile", "low": 1.0, "high": 99.8}


def as_hwc(image: np.ndarray, channels: int, name: str = "image") -> np.ndarray:
    """Check an image and return it as [H, W, C] with C == ``channels``.

    Accepts [H, W] (grey) or [H, W, C]; numeric dtypes only; rejects empty
    images and NaN/inf with an error that says what to do.
    """
    if not isinstance(image, np.ndarray):
        raise InputError(f"{name} must be a numpy array, got {type(image).__name__}",
                         "read it with sdk.datasets.read_image(path) or cv2.imread(path, cv2.IMREAD_UNCHANGED)")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3:
        raise InputError(f"{name} has shape {image.shape}; expected [H, W] or [H, W, C]",
                         "pass one image at a time (drop batch dimensions)")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InputError(f"{name} is empty (shape {image.shape})", "pass an image with at least one pixel")
    if image.shape[2] != channels:
        raise InputError(f"{name} has {image.shape[2]} channel(s) but the model takes {channels}",
                         "convert it first, e.g. cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) for a 1-channel model")
    if image.dtype == np.bool_ or not np.issubdtype(image.dtype, np.number):
        raise InputError(f"{name} has dtype {image.dtype}", "use uint8, uint16 or float pixel values")
    if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
        raise InputError(f"{name} contains NaN or infinite values", "replace them, e.g. np.nan_to_num(img)")
    return image


def normalize(image: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """Map intensities to the range the network was trained on; returns float32 [H, W, C].

    ``spec["mode"]``:
      * ``"percentile"``: per image and channel, ``(x - p_low) / (p_high - p_low)``
        (robust to the very different ranges of uint8/uint16 microscopy images);
      * ``"fixed"``: ``(x * scale - mean) / std`` per channel.
    """
    flat = image.reshape(-1, image.shape[2])
    return fit_normalization(spec, flat[::sample_step(flat.shape[0])])(image)


def sample_step(n_pixels: int) -> int:
    """Percentile normalization looks at every ``sample_step``-th pixel (row-major), <= 2^16 pixels.

    A regular subsample is 10x cheaper on large images, and training calls this same
    rule, so the model sees identical intensities; a streamed image picks the same pixels.
    """
    return max(1, n_pixels >> 16)


def fit_normalization(spec: dict[str, Any], sample: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The per-pixel map of ``spec`` for an image whose :func:`sample_step` subsample is ``sample`` [n, C].

    The returned function maps any block [..., C] of that image to float32, elementwise,
    so blocks of a large image are normalized exactly as the whole image would be.
    """
    mode = spec.get("mode", "fixed")
    if mode == "percentile":
        lo, hi = np.percentile(sample.astype(np.float32, copy=False), [spec["low"], spec["high"]], axis=0)
        span = np.maximum(hi - lo, 1e-6)
        return lambda x: ((x.astype(np.float32, copy=False) - lo) / span).astype(np.float32, copy=False)
    if mode == "fixed":
        mean = np.asarray(spec.get("mean", 0.0), np.float32)
        std = np.asarray(spec.get("std", 1.0), np.float32)
        scale = np.float32(spec.get("scale", 1.0))
        return lambda x: ((x.astype(np.float32, copy=False) * scale - mean) / std).astype(np.float32, copy=False)
    raise InputError(f"unknown normalization mode {mode!r} in model metadata", "re-export the model")
