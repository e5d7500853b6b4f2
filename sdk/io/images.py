"""Image files in and out: read any PNG/TIFF unchanged, write PNGs atomically (OpenCV, no torch)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from segrt.errors import DataError
from segrt.io.files import atomic_path


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file unchanged (uint8/uint16, HxW or HxWxC; colour as RGB)."""
    path = Path(path)
    img = decode_image(np.fromfile(path, dtype=np.uint8)) if path.is_file() else None
    if img is None:
        raise DataError(f"cannot read image {path}", "check that the file exists and is a PNG or TIFF")
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
        raise DataError(f"cannot encode {path} as PNG (dtype {array.dtype}, shape {array.shape})",
                        "PNG holds uint8 or uint16 grey/RGB images")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())
    return Path(path)
