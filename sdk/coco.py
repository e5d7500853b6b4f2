"""COCO run-length encoding in numpy (no pycocotools needed at run time).

COCO stores a binary mask as run lengths over the pixels in column-major
order, starting with a run of zeros, and compresses the counts to an ASCII
string (6 bits per character, deltas against the count two places back).
``encode_rle`` produces exactly what ``pycocotools.mask.encode`` does (tested
against it), with ``counts`` as a ``str`` ready for JSON.
"""
from __future__ import annotations

import numpy as np

from .errors import InputError


def run_lengths(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO counts of a 2-D mask: alternating zero/one run lengths, column-major."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return [0]
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts = [0] + counts  # COCO counts always start with a (possibly empty) run of zeros
    return counts


def compress_counts(counts: list[int]) -> str:
    """COCO's string compression of run lengths (``rleToString`` in the COCO API)."""
    out = []
    for i, x in enumerate(counts):
        if i > 2:
            x -= counts[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5  # arithmetic shift: negative deltas terminate at -1
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def encode_rle(mask: np.ndarray) -> dict:
    """COCO compressed RLE of one binary mask [H, W]: ``{"size": [H, W], "counts": str}``."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise InputError(f"RLE encodes one 2-D mask, got shape {mask.shape}", "encode masks one at a time")
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": compress_counts(run_lengths(mask))}


def bbox_xywh(box_xyxy: np.ndarray) -> list[float]:
    """COCO box [x, y, width, height] from x1y1x2y2."""
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    return [x1, y1, x2 - x1, y2 - y1]
