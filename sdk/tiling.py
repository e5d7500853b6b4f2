"""The overlap-tile strategy (U-Net paper, Fig. 2), as pure numpy functions.

A valid-padding U-Net predicts an output tile ``border`` pixels smaller than its
input on every side, so to segment a region it needs the context around it; at
the image border that context is the mirrored image. We pick, per axis, the
fewest tiles whose inputs are valid sizes no larger than ``max_tile``, cut them
from the mirror-padded image, run them as one batch, and stitch the outputs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AxisPlan:
    """How one axis of length ``length`` is covered.

    Tile ``i`` reads padded-image pixels ``[starts[i], starts[i] + tile_in)`` and its
    output (after dropping ``margin`` px per side) covers image pixels
    ``[starts[i], starts[i] + step)`` (the last one clipped to ``length``).
    """

    length: int
    tile_in: int
    step: int        # output pixels each tile contributes
    count: int
    pad_before: int  # mirror padding before pixel 0 (= border + margin)
    pad_after: int

    @property
    def starts(self) -> list[int]:
        return [i * self.step for i in range(self.count)]


def plan_axis(length: int, size_min: int, size_step: int, border: int, max_tile: int, margin: int = 0) -> AxisPlan:
    """Fewest tiles of one valid input size that cover ``length`` pixels.

    Args:
        length: image size along this axis (pixels, >= 1).
        size_min, size_step: valid input sizes are ``size_min + k * size_step``.
        border: pixels the network trims per side (0 for same padding).
        max_tile: largest input tile to use (memory / engine-profile limit).
        margin: extra output pixels discarded per side (for same-padding nets, whose
            outputs near a tile edge lack context).
    """
    context = border + margin
    largest = size_min + max(0, (max_tile - size_min) // size_step) * size_step
    for count in range(1, length + 1):
        need = math.ceil(length / count) + 2 * context
        k = max(0, math.ceil((need - size_min) / size_step))
        tile_in = size_min + k * size_step
        if tile_in <= largest or count == length:
            break
    step = tile_in - 2 * context
    total_in = (count - 1) * step + tile_in
    return AxisPlan(length, tile_in, step, count, pad_before=context, pad_after=total_in - length - context)


def mirror_pad(image: np.ndarray, ph: tuple[int, int], pw: tuple[int, int]) -> np.ndarray:
    """Reflect-pad an [H, W, ...] array (pixels mirrored without repeating the edge pixel).

    Handles pads larger than the image by reflecting repeatedly, as the paper's
    overlap-tile strategy needs for small images.
    """
    pads = [ph, pw] + [(0, 0)] * (image.ndim - 2)
    # np.pad 'reflect' already folds back and forth for pads wider than the array, but
    # needs length >= 2; a 1-pixel axis just repeats (the only sensible mirror).
    mode = "reflect" if min(image.shape[:2]) > 1 else "edge"
    return np.pad(image, pads, mode=mode)


def extract_tiles(padded: np.ndarray, ys: AxisPlan, xs: AxisPlan) -> np.ndarray:
    """Tiles [T, C, tile_h, tile_w] from a padded [H, W, C] image (row-major tile order)."""
    tiles = [padded[y:y + ys.tile_in, x:x + xs.tile_in] for y in ys.starts for x in xs.starts]
    return np.ascontiguousarray(np.stack(tiles).transpose(0, 3, 1, 2))


def stitch(outputs: np.ndarray, ys: AxisPlan, xs: AxisPlan, margin: int = 0) -> np.ndarray:
    """Assemble tile outputs [T, K, h, w] into [K, H, W] for the original image."""
    k = outputs.shape[1]
    if len(outputs) == 1:  # one tile: a view, no copy
        return outputs[0, :, margin:margin + ys.length, margin:margin + xs.length]
    full = np.empty((k, ys.count * ys.step, xs.count * xs.step), dtype=outputs.dtype)
    inner = outputs[:, :, margin:margin + ys.step, margin:margin + xs.step]
    t = 0
    for y in ys.starts:
        for x in xs.starts:
            full[:, y:y + ys.step, x:x + xs.step] = inner[t]
            t += 1
    return full[:, :ys.length, :xs.length]
