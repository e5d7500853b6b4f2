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

from collections.abc import Callable
from typing import Any

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


class BandLabeller:
    """Label a mask band by band, top to bottom, without ever holding the whole image.

    ``add`` labels one band of rows with OpenCV and returns its provisional labels (unique
    over the whole image: each band's are offset past the previous ones); the label pairs
    that touch across the band boundary are kept for the union-find. ``finish`` resolves
    them into a lookup table ``lut[provisional] -> final`` numbering components 1..n in the
    order ``cv2.connectedComponents`` gives the whole image, and (with ``stats``) a
    per-instance table merged from the bands' own statistics, so no second pass over the
    pixels is needed for it.

    Memory: the previous band's last row, the boundary pairs, and with ``stats`` 7 numbers
    per provisional label.

    Args:
        width: W, pixels per row.
        connectivity: 4 or 8.
        stats: also collect area, bounding box and centroid per component.
    """

    def __init__(self, width: int, connectivity: int = 4, stats: bool = False) -> None:
        if connectivity not in (4, 8):
            raise InputError(
                f"connectivity must be 4 or 8, got {connectivity}", "use 4 (edges) or 8 (edges and corners)"
            )
        self.width, self.connectivity, self.stats = int(width), connectivity, stats
        self.offset = 0  # provisional labels used so far
        self.next_row = 0
        self._pairs_a: list[np.ndarray] = []
        self._pairs_b: list[np.ndarray] = []
        self._prev_last: np.ndarray | None = None
        self._parts: list[np.ndarray] = []  # per band: float64 [n, 7] = x0, y0, x1, y1, area, sum_x, sum_y

    def add(self, rows: np.ndarray) -> np.ndarray:
        """Provisional labels int32 [h, W] of the next ``h`` mask rows (bool/uint8 [h, W]).

        Bands must start on even rows (all but the last must have an even height): OpenCV scans
        rows in pairs, and pair-aligned bands keep the whole image's numbering order.
        """
        if self.next_row % 2:
            raise InputError(f"band starts at odd row {self.next_row}", "feed bands of an even height (but the last)")
        W = self.width
        m = np.asarray(rows).astype(np.uint8, copy=False)
        if self.stats:
            n, lab, st, cen = cv2.connectedComponentsWithStats(m, connectivity=self.connectivity, ltype=cv2.CV_32S)
            area = st[1:, cv2.CC_STAT_AREA].astype(np.float64)
            x0, y0 = st[1:, cv2.CC_STAT_LEFT], st[1:, cv2.CC_STAT_TOP] + self.next_row
            part = np.stack(
                [
                    x0,
                    y0,
                    x0 + st[1:, cv2.CC_STAT_WIDTH],
                    y0 + st[1:, cv2.CC_STAT_HEIGHT],
                    area,
                    cen[1:, 0] * area,
                    (cen[1:, 1] + self.next_row) * area,
                ],
                axis=1,
            ).astype(np.float64)
            self._parts.append(part)
        else:
            n, lab = cv2.connectedComponents(m, connectivity=self.connectivity, ltype=cv2.CV_32S)
        lab[lab > 0] += self.offset
        if self._prev_last is not None and len(lab):  # label pairs touching across the boundary above
            first = lab[0]
            for s in (0,) if self.connectivity == 4 else (-1, 0, 1):
                up = self._prev_last[max(0, s) : W + min(0, s)]
                down = first[max(0, -s) : W - max(0, s)]
                touch = (up > 0) & (down > 0)
                if touch.any():
                    self._pairs_a.append(up[touch])
                    self._pairs_b.append(down[touch])
        if len(lab):
            self._prev_last = lab[-1].copy()
        self.offset += n - 1
        self.next_row += len(lab)
        return lab

    @property
    def merged(self) -> bool:
        """Whether any component spans a band boundary (else the provisional labels are final)."""
        return bool(self._pairs_a)

    def finish(self) -> tuple[np.ndarray, int]:
        """(lut int32 [offset + 1]: provisional -> final label, 0 stays 0; number of components n)."""
        if self.offset > np.iinfo(np.int32).max:
            raise InputError(f"{self.offset} components do not fit int32 labels", "label a smaller region at a time")
        root = merge_pairs(
            self.offset,
            np.concatenate(self._pairs_a) if self._pairs_a else np.zeros(0, np.int64),
            np.concatenate(self._pairs_b) if self._pairs_b else np.zeros(0, np.int64),
        )
        # roots are each component's smallest band label = its first pair of rows in scan order: number them 1..n
        is_root = root == np.arange(self.offset + 1)
        number = np.cumsum(is_root) - 1
        return number[root].astype(np.int32), int(number[-1])

    def table(self, lut: np.ndarray, count: int) -> dict[str, np.ndarray]:
        """Per final label 1..n: label, area (pixels), bbox_x0/y0/x1/y1 (pixels, end exclusive),
        centroid_x/y (pixels, mean of the pixel indices). Needs ``stats=True``; call it once
        (the bands' statistics are released as they are merged)."""
        if not self.stats:
            raise InputError("this labeller collected no statistics", "create it with stats=True")
        lo = np.full((count, 2), np.inf)
        hi = np.full((count, 2), -np.inf)
        sums = np.zeros((count, 3))
        start = 1
        while self._parts:  # band by band, each freed once merged: no second copy of all the bands' stats
            part = self._parts.pop(0)
            final = lut[start : start + len(part)].astype(np.int64) - 1  # provisional label -> final row
            start += len(part)
            np.minimum.at(lo, final, part[:, 0:2])
            np.maximum.at(hi, final, part[:, 2:4])
            np.add.at(sums, final, part[:, 4:7])
        area = np.maximum(sums[:, 0], 1)
        return {
            "label": np.arange(1, count + 1, dtype=np.int64),
            "area": sums[:, 0].astype(np.int64),
            "bbox_x0": lo[:, 0].astype(np.int64),
            "bbox_y0": lo[:, 1].astype(np.int64),
            "bbox_x1": hi[:, 0].astype(np.int64),
            "bbox_y1": hi[:, 1].astype(np.int64),
            "centroid_x": sums[:, 1] / area,
            "centroid_y": sums[:, 2] / area,
        }


def label_components(
    mask: Callable[[int, int], np.ndarray] | np.ndarray,
    shape: tuple[int, int],
    out: Any = None,
    connectivity: int = 4,
    band: int | None = None,
) -> tuple[Any, int]:
    """Label the connected components of a large binary mask.

    Args:
        mask: bool/uint8 [H, W] array, or a function ``(y0, y1) -> rows y0..y1-1 of the mask``.
        shape: (H, W).
        out: int32 [H, W] array to write the labels into (numpy, memory-mapped or zarr);
            default a new numpy array.
        connectivity: 4 or 8.
        band: rows labelled at once (default: about 4 Mpixel worth, so the working set does
            not grow with the image; rounded down to even, see :meth:`BandLabeller.add`).

    Returns:
        (labels int32 [H, W], 0 = background, 1..n in the order cv2.connectedComponents gives; n).
    """
    H, W = int(shape[0]), int(shape[1])
    labeller = BandLabeller(W, connectivity)
    band = max(2, int(band or (1 << 22) // max(W, 1)) // 2 * 2)
    rows = mask if callable(mask) else (lambda y0, y1, m=mask: np.asarray(m[y0:y1]))
    labels = np.zeros((H, W), np.int32) if out is None else out
    for y0 in range(0, H, band):
        y1 = min(y0 + band, H)
        labels[y0:y1] = labeller.add(rows(y0, y1))
    lut, count = labeller.finish()
    if labeller.merged:  # relabel only when a merge happened (lut is the identity otherwise)
        relabel(labels, lut, band)
    return labels, count


def relabel(labels: Any, lut: np.ndarray, band: int) -> None:
    """Replace every label by ``lut[label]`` in place, ``band`` rows at a time (numpy, memmap or zarr)."""
    for y0 in range(0, int(labels.shape[0]), band):
        y1 = min(y0 + band, int(labels.shape[0]))
        labels[y0:y1] = lut[np.asarray(labels[y0:y1])]
