"""Image checks and intensity normalization shared by training and the runtime.

Training (``export``) calls the same functions, so an exported model sees at
inference exactly the intensities it was trained on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from segrt.errors import InputError

DEFAULT_NORMALIZATION: dict[str, Any] = {"mode": "percentile", "low": 1.0, "high": 99.8}


def check_image(image: Any, name: str = "image") -> np.ndarray:
    """The one input check every predictor runs first; returns ``image`` unchanged.

    Accepts a numpy array of shape [H, W] or [H, W, C] with H, W >= 1 and an integer
    or floating dtype. Refuses, with an ``InputError`` that names the fix: other
    types, bool/complex/object/string dtypes, any other rank, empty images, and
    NaN or infinite values.
    """
    if not isinstance(image, np.ndarray):
        raise InputError(
            f"{name} must be a numpy array, got {type(image).__name__}",
            "read it with segrt.io.images.read_image(path) or cv2.imread(path, cv2.IMREAD_UNCHANGED)",
        )
    if image.dtype == np.bool_ or not (
        np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)
    ):
        raise InputError(
            f"{name} has dtype {image.dtype}; pixels must be integers or real floats",
            "convert it, e.g. image.astype(np.uint8) for a mask, np.abs(z) for complex data",
        )
    if image.ndim not in (2, 3):
        raise InputError(
            f"{name} has shape {image.shape}; expected [H, W] or [H, W, C]",
            "pass one image at a time (drop batch dimensions)",
        )
    if image.shape[0] == 0 or image.shape[1] == 0 or (image.ndim == 3 and image.shape[2] == 0):
        raise InputError(f"{name} is empty (shape {image.shape})", "pass an image with at least one pixel")
    if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
        raise InputError(f"{name} contains NaN or infinite values", "replace them, e.g. np.nan_to_num(image)")
    return image


def as_hwc(image: np.ndarray, channels: int, name: str = "image") -> np.ndarray:
    """Check an image (``check_image``) and return it as [H, W, C] with C == ``channels``."""
    image = check_image(image, name)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] != channels:
        raise InputError(
            f"{name} has {image.shape[2]} channel(s) but the model takes {channels}",
            "convert it first, e.g. cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) for a 1-channel model",
        )
    return image


def normalize(image: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """Map intensities to the range the network was trained on; returns float32 [H, W, C].

    ``spec["mode"]``:
      * ``"percentile"``: per image and channel, ``(x - p_low) / (p_high - p_low)``
        (robust to the very different ranges of uint8/uint16 microscopy images);
      * ``"fixed"``: ``(x * scale - mean) / std`` per channel.
    """
    flat = image.reshape(-1, image.shape[2])
    return fit_normalization(spec, flat[:: sample_step(flat.shape[0])])(image)


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


def to_rgb_float(image: np.ndarray, peak: float | None = None) -> np.ndarray:
    """Any checked image (``check_image``) -> float32 [H, W, 3] RGB in [0, 1].

    [H, W] and [H, W, 1] grey is replicated to RGB; [H, W, 4] drops alpha; [H, W, 3] is taken
    as RGB. uint8 is divided by 255; other integer types by the image's own maximum
    (microscopy images rarely use the full 16-bit range, and training data is converted
    the same way); float images are taken as [0, 1] and clipped.

    ``peak``: the maximum integer images are divided by (default: this image's own; a window
    of a larger image passes the whole image's).
    """
    image = check_image(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    elif image.shape[2] != 3:
        raise InputError(
            f"image has {image.shape[2]} channels; this model takes grey, RGB or RGBA",
            "pass an [H, W], [H, W, 3] or [H, W, 4] image",
        )
    if image.dtype == np.uint8:
        return image.astype(np.float32) / np.float32(255.0)
    if np.issubdtype(image.dtype, np.integer):
        peak = float(image.max()) if peak is None else float(peak)
        return image.astype(np.float32) / np.float32(peak if peak > 0 else 1.0)
    return np.clip(image.astype(np.float32), 0.0, 1.0)


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Any supported image -> uint8 [H, W, 3] RGB (same conversion as the model input)."""
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        return image
    return np.round(to_rgb_float(image) * 255.0).astype(np.uint8)
