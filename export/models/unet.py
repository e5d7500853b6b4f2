"""U-Net (Ronneberger, Fischer, Brox, MICCAI 2015), as in the paper's Fig. 1.

Contracting path: per level two 3x3 convs + ReLU, then 2x2 max-pool (channels
double). Expanding path: 2x2 up-conv (channels halve), concatenation with the
centre-cropped skip, two 3x3 convs + ReLU. A final 1x1 conv maps to the classes.
With ``depth=5, base_channels=64`` that is the paper's 23 conv layers; with
``padding="valid"`` a 572x572 input gives a 388x388 output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn


@dataclass
class UNetConfig:
    """Hyperparameters; stored in checkpoints and ONNX metadata."""

    in_channels: int = 1
    num_classes: int = 2
    depth: int = 5  # resolution levels (paper: 5, i.e. 4 max-pools)
    base_channels: int = 64  # channels at the first level (paper: 64)
    padding: Literal["valid", "same"] = "valid"
    dropout: float = 0.5  # at the end of the contracting path (paper, Sec. 3.1)


class DoubleConv(nn.Sequential):
    """Two 3x3 convs, each followed by ReLU; unpadded in ``valid`` mode (each trims 1 px per side)."""

    def __init__(self, cin: int, cout: int, pad: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=pad),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=pad),
            nn.ReLU(inplace=True),
        )


class Down(nn.Sequential):
    """2x2 max-pool, then a DoubleConv that doubles the channels."""

    def __init__(self, cin: int, cout: int, pad: int) -> None:
        super().__init__(nn.MaxPool2d(2), DoubleConv(cin, cout, pad))


def center_crop(skip: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Crop ``skip`` [N,C,H,W] to the spatial size of ``like`` (the paper's crop before concat).

    In valid mode the size difference is a constant of the level (independent of the
    input size) and even, so the crop is written as fixed offsets from both ends:
    a traced ONNX graph then stays correct for every input size.
    """
    dy = (skip.shape[2] - like.shape[2]) // 2
    dx = (skip.shape[3] - like.shape[3]) // 2
    return skip[:, :, dy : skip.shape[2] - dy if dy == 0 else -dy, dx : skip.shape[3] - dx if dx == 0 else -dx]


class Up(nn.Module):
    """2x2 up-conv halving the channels, concat with the cropped skip, DoubleConv."""

    def __init__(self, cin: int, cout: int, pad: int, crop: bool) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, 2, stride=2)
        self.conv = DoubleConv(2 * cout, cout, pad)
        self.crop = crop

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        if self.crop:  # only valid mode shrinks; skipping the no-op keeps the ONNX graph clean
            skip = center_crop(skip, x)
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """``forward(x: Tensor[N, C_in, H, W]) -> logits Tensor[N, num_classes, H', W']``.

    ``H' = H - 2 * border`` in valid mode (see :func:`geometry`), ``H' = H`` in same mode.
    H and W must be valid sizes (``size_min + k * size_step``).
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        if config.depth < 2:
            raise ValueError("UNetConfig.depth must be >= 2 (one pooling level at least)")
        self.config = config
        pad = 1 if config.padding == "same" else 0
        ch = [config.base_channels * 2**i for i in range(config.depth)]
        self.inc = DoubleConv(config.in_channels, ch[0], pad)
        self.downs = nn.ModuleList(Down(ch[i], ch[i + 1], pad) for i in range(config.depth - 1))
        self.dropout = nn.Dropout2d(config.dropout) if config.dropout > 0 else nn.Identity()
        self.ups = nn.ModuleList(Up(ch[i + 1], ch[i], pad, crop=not pad) for i in reversed(range(config.depth - 1)))
        self.head = nn.Conv2d(ch[0], config.num_classes, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He init as in the paper: weights ~ N(0, sqrt(2/N)), N = fan-in (k*k*C_in)."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                fan_in = m.weight[0].numel() if isinstance(m, nn.Conv2d) else m.weight.shape[0] * 4
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_in))
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = self.dropout(skips.pop())
        for up in self.ups:
            x = up(x, skips.pop())
        return self.head(x)


@dataclass(frozen=True)
class Geometry:
    """Which input sizes a U-Net accepts and how much it trims.

    Valid input sizes per axis are ``size_min + k * size_step`` (k >= 0); the output
    is ``input - 2 * border`` per axis.
    """

    size_min: int
    size_step: int
    border: int

    def is_valid(self, size: int) -> bool:
        return size >= self.size_min and (size - self.size_min) % self.size_step == 0

    def valid_at_least(self, size: int) -> int:
        """Smallest valid input size >= ``size``."""
        k = max(0, math.ceil((size - self.size_min) / self.size_step))
        return self.size_min + k * self.size_step


def output_size(config: UNetConfig, size: int) -> int | None:
    """Output size for an input ``size``, or None if ``size`` is not valid for the architecture."""
    trim = 0 if config.padding == "same" else 4
    s = size
    for _ in range(config.depth - 1):
        s -= trim
        if s <= 0 or s % 2:
            return None
        s //= 2
    s -= trim
    if s <= 0:
        return None
    for _ in range(config.depth - 1):
        s = 2 * s - trim
    return s if s > 0 else None


def geometry(config: UNetConfig) -> Geometry:
    """Valid-size rule and border of an architecture (paper: size_min 188, step 16, border 92; 572 -> 388)."""
    step = 2 ** (config.depth - 1)
    size_min = next(s for s in range(1, 64 * step) if output_size(config, s) is not None)
    border = (size_min - output_size(config, size_min)) // 2
    return Geometry(size_min=size_min, size_step=step, border=border)
