"""Connected components of images too large to label at once: band-wise labelling + union-find.

The mask is labelled one band of rows at a time with OpenCV. Components that
touch across a band boundary are merged with a union-find over the label pairs
that meet there (4- or 8-connected, as asked), then every label is replaced by
its component's number. Components are numbered 1..n in raster order of their
first pixel, which is the numbering ``cv2.connectedComponents`` gives the whole
image (``tests/segrt/test_components.py`` checks equality).

Memory: the int32 output (4 bytes per pixel, which may be a memory-mapped or
zarr array) plus one band of about 4 Mpixel.
"""
from __future__ import annotations

from typing import Any, Callable

import cv2
import numpy as np

from segrt.errors import InputError


def _roots(parent: np.ndarray) -> np.ndarray:
    """Resolve a parent array to its roots by pointer jumping."""
    while True:
        nxt = parent[parent]
        if np.array_equal(nxt, parent):
            return parent
        parent = nxt


def merge_pairs(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Union-find over labels 0..n: each label's smallest equivalent label, given equal pairs (a[i], b[i])."""
    parent = np.arange(n + 1, dtype=np.int64)
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    while a.size:
        ra, rb = _roots(parent)[a], _roots(parent)[b]
        keep = ra != rb
        if not keep.any():
            break
        ra, rb = ra[keep], rb[keep]
        lo, hi = np.minimum(ra, rb), np.maximum(ra, rb)
        np.minimum.at(parent, hi, lo)  # link the larger root under the smaller one
        parent = _roots(parent)
        a, b = lo, hi
    return _roots(parent)


def label_components(mask: Callable[[int, int], np.ndarray] | np.ndarray, shape: tuple[int, int],
                     out: Any = None, connectivity: int = 4, band: int | None = None) -> tuple[Any, int]:
    """Label the connected components of a large binary mask.

    Args:
        mask: bool/uint8 [H, W] array, or a function ``(y0, y1) -> rows y0..y1-1 of the mask``.
        shape: (H, W).
        out: int32 [H, W] array to write the labels into (numpy, memory-mapped or zarr);
            default a new numpy array.
        connectivity: 4 or 8.
        band: rows labelled at once (default: about 4 Mpixel worth, so the working set does
            not grow with the image; rounded down to even: OpenCV scans rows in pairs, and
            even bands keep its numbering).

    Returns:
        (labels int32 [H, W], 0 = background, 1..n in raster order of first pixel; n).
    """
    if connectivity not in (4, 8):
        raise InputError(f"connectivity must be 4 or 8, got {connectivity}", "use 4 (edges) or 8 (edges and corners)")
    H, W = int(shape[0]), int(shape[1])
    band = max(2, int(band or (1 << 22) // max(W, 1)) // 2 * 2)
    rows = mask if callable(mask) else (lambda y0, y1, m=mask: np.asarray(m[y0:y1]))
    labels = np.zeros((H, W), np.int32) if out is None else out
    offset = 0
    pairs_a, pairs_b = [], []
    prev_last: np.ndarray | None = None
    for y0 in range(0, H, band):
        y1 = min(y0 + band, H)
        m = np.asarray(rows(y0, y1)).astype(np.uint8, copy=False)
        n, lab = cv2.connectedComponents(m, connectivity=connectivity, ltype=cv2.CV_32S)
        lab[lab > 0] += offset
        if prev_last is not None:  # pairs of labels touching across the boundary above this band
            first = lab[0]
            shifts = (0,) if connectivity == 4 else (-1, 0, 1)
            for s in shifts:
                up = prev_last[max(0, s):W + min(0, s)]
                down = first[max(0, -s):W - max(0, s)]
                touch = (up > 0) & (down > 0)
                if touch.any():
                    pairs_a.append(up[touch])
                    pairs_b.append(down[touch])
        labels[y0:y1] = lab
        prev_last = lab[-1].copy()
        offset += n - 1
    if offset > np.iinfo(np.int32).max:
        raise InputError(f"{offset} components do not fit int32 labels", "label a smaller region at a time")
    root = merge_pairs(offset, np.concatenate(pairs_a) if pairs_a else np.zeros(0, np.int64),
                       np.concatenate(pairs_b) if pairs_b else np.zeros(0, np.int64))
    # roots are each component's smallest band label = its first pixel in raster order: number them 1..n
    is_root = root == np.arange(offset + 1)
    number = np.cumsum(is_root) - 1
    lut = number[root].astype(np.int32)
    count = int(number[-1])
    if pairs_a:  # relabel only when a merge happened (lut is the identity otherwise)
        for y0 in range(0, H, band):
            y1 = min(y0 + band, H)
            labels[y0:y1] = lut[np.asarray(labels[y0:y1])]
    return labels, count
