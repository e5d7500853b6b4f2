"""The overlap-tile strategy (U-Net paper, Fig. 2), as pure numpy geometry.

A valid-padding U-Net predicts an output tile ``border`` pixels smaller than its
input on every side, so to segment a region it needs the context around it; at
the image border that context is the mirrored image.

Tile invariance. A U-Net with ``depth`` levels max-pools ``depth - 1`` times, so
its output is equivariant only to shifts by multiples of the pooling factor
``grid = 2 ** (depth - 1)``. Every tile here starts on that grid of the padded
image (the image mirror-padded by ``context = border + margin`` pixels): a tile
keeps ``step`` output pixels, ``step`` a multiple of ``grid``, and discards the
rest. For a valid-padding net each tile's output is then exactly the matching
crop of one pass over the whole padded image, whatever the tile size, so the
tiled result does not depend on the tile size, the engine profile or ``--tile``
(to float rounding; ``tests/segrt/test_tiling.py`` checks max |dp| <= 1e-5).
Same-padding nets zero-pad at every tile edge; the ``margin`` of output dropped
per tile side bounds that effect (see ``segrt.export.to_onnx.same_padding_margin``).

Coordinates: tile ``i`` of an axis reads image pixels
``[i * step - context, i * step - context + tile_in)`` (mirrored where outside
the image) and writes image pixels ``[i * step, min((i + 1) * step, length))``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from segrt.errors import InputError


def pool_factor(metadata: Mapping[str, Any]) -> int:
    """The pooling factor ``2 ** (depth - 1)`` of a U-Net artifact.

    Read from ``pool_factor``; artifacts written before that key existed give it
    through ``architecture.depth``, or else ``size_step`` (which equals it for every
    segrt U-Net: valid input sizes step by the total pooling factor).
    """
    if "pool_factor" in metadata:
        return int(metadata["pool_factor"])
    depth = (metadata.get("architecture") or {}).get("depth")
    return 2 ** (int(depth) - 1) if depth else int(metadata["size_step"])


@dataclass(frozen=True)
class AxisPlan:
    """How one axis of ``length`` pixels is covered by ``count`` tiles of ``tile_in`` input pixels.

    Tile ``i`` reads image pixels ``[in_start(i), in_start(i) + tile_in)`` and keeps its
    output pixels ``[margin, margin + out_len(i))``, which land on image pixels
    ``[starts[i], starts[i] + out_len(i))``.
    """

    length: int
    tile_in: int
    step: int  # output pixels each tile contributes (a multiple of the pooling grid)
    count: int
    context: int  # border + margin: image pixels read before the first kept output pixel

    @property
    def starts(self) -> list[int]:
        return [i * self.step for i in range(self.count)]

    def in_start(self, i: int) -> int:
        return i * self.step - self.context

    def out_len(self, i: int) -> int:
        return min(self.step, self.length - i * self.step)

    # the padded image these tiles cut, for a whole-image reference pass
    @property
    def pad_before(self) -> int:
        return self.context

    @property
    def pad_after(self) -> int:
        return (self.count - 1) * self.step + self.tile_in - self.length - self.context


def valid_size(size: int, size_min: int, size_step: int) -> int:
    """Smallest valid input size (``size_min + k * size_step``) >= ``size``."""
    return size_min + max(0, math.ceil((size - size_min) / size_step)) * size_step


def smallest_tile(size_min: int, size_step: int, border: int, margin: int, grid: int) -> int:
    """The smallest input tile that keeps at least one grid cell of output per side."""
    return valid_size(grid + 2 * (border + margin), size_min, size_step)


def plan_axis(
    length: int, size_min: int, size_step: int, border: int, max_tile: int, margin: int = 0, grid: int | None = None
) -> AxisPlan:
    """Fewest grid-aligned tiles of one valid input size, no larger than ``max_tile``, covering ``length``.

    Args:
        length: image size along this axis (pixels, >= 1).
        size_min, size_step: valid input sizes are ``size_min + k * size_step``.
        border: pixels the network trims per side (0 for same padding).
        max_tile: largest input tile to use (memory / engine-profile limit); must be at
            least :func:`smallest_tile`.
        margin: extra output pixels discarded per side (for same-padding nets, whose
            outputs near a tile edge lack context).
        grid: pooling factor the tile origins must be multiples of (default ``size_step``).

    Raises:
        InputError: ``max_tile`` is too small for this network.
    """
    grid = grid or size_step
    context = border + margin
    low = smallest_tile(size_min, size_step, border, margin, grid)
    if max_tile < low:
        raise InputError(
            f"tile {max_tile} is too small for this network: it needs input tiles of at least {low} px "
            f"({2 * border} px trimmed, {2 * margin} px margin, output in steps of {grid})",
            f"use a tile of {low} px or more",
        )
    largest = size_min + (max_tile - size_min) // size_step * size_step
    step_max = (largest - 2 * context) // grid * grid
    count = max(1, math.ceil(length / step_max))
    # same tile count with the smallest tile: less work, and the tile plan depends only on (length, count)
    step = math.ceil(math.ceil(length / count) / grid) * grid
    return AxisPlan(length, valid_size(step + 2 * context, size_min, size_step), step, count, context)


def reflect_indices(start: int, stop: int, n: int) -> np.ndarray:
    """Source indices of positions ``start..stop-1`` of an axis of ``n`` pixels, mirrored outside it.

    The mirror does not repeat the edge pixel (numpy ``np.pad(mode="reflect")``, folding back and
    forth for pads wider than the axis); a 1-pixel axis repeats its one pixel.
    """
    idx = np.arange(start, stop)
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    idx = np.mod(idx, period)
    return np.where(idx < n, idx, period - idx)


def mirror_pad(image: np.ndarray, ph: tuple[int, int], pw: tuple[int, int]) -> np.ndarray:
    """Reflect-pad an [H, W, ...] array (pixels mirrored without repeating the edge pixel).

    Handles pads larger than the image by reflecting repeatedly, as the paper's
    overlap-tile strategy needs for small images.
    """
    rows = reflect_indices(-ph[0], image.shape[0] + ph[1], image.shape[0])
    cols = reflect_indices(-pw[0], image.shape[1] + pw[1], image.shape[1])
    return image[rows][:, cols]
