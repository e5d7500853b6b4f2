"""Image files in and out: read any PNG/TIFF unchanged, write PNGs atomically (OpenCV, no torch)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from segrt.errors import DataError, InputError
from segrt.io.files import atomic_path
from segrt.io.headers import CONVERT_FIX, check_decodable


def read_image(path: str | Path, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file whole and unchanged (uint8/uint16, HxW or HxWxC; colour as RGB).

    The header is checked first (``segrt.io.headers.check_decodable``): a file claiming more
    than ``max_pixels`` (default ``segrt.io.headers.MAX_DECODE_PIXELS``), or one that is
    truncated or corrupt, is refused with an InputError before anything is decoded.
    """
    path = Path(path)
    header = check_decodable(path, max_pixels)
    try:
        img = decode_image(np.fromfile(path, dtype=np.uint8))
    except cv2.error as exc:  # OpenCV's own limits and decoder failures: never a raw traceback
        raise InputError(f"cannot decode {path.name}: {str(exc).strip().splitlines()[-1]}", CONVERT_FIX) from None
    if img is None:
        raise InputError(
            f"cannot decode image {path.name} ({header.kind})", "check that the file is a complete PNG, JPEG or TIFF"
        )
    if header.height is not None and img.shape[:2] != (header.height, header.width):
        raise InputError(
            f"{path.name} decodes to {img.shape[1]} x {img.shape[0]} pixels but its header says "
            f"{header.width} x {header.height}",
            "re-export the file: it is corrupt",
        )
    return img


def decode_image(data: np.ndarray) -> np.ndarray | None:
    """Decode image file bytes (uint8 [n]) as :func:`read_image` reads a file; None if they do not decode."""
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is not None and img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return img


def write_png(path: str | Path, array: np.ndarray) -> Path:
    """Write a uint8/uint16 PNG atomically (RGB input is stored as a normal colour PNG)."""
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise DataError(
            f"cannot encode {path} as PNG (dtype {array.dtype}, shape {array.shape})",
            "PNG holds uint8 or uint16 grey/RGB images",
        )
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())
    return Path(path)
