"""Train a U-Net the paper's way: weighted softmax cross-entropy, SGD with momentum 0.99, heavy augmentation.

One flat loop, top to bottom: load the image/label folder, precompute weight
maps, then repeatedly cut random tiles, augment, step. Checkpoints are written
atomically with everything needed to rebuild the model.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from segrt.errors import DataError, SegrtError
from segrt.export.augment import augment
from segrt.export.checkpoint import save_checkpoint
from segrt.export.models.unet import UNet, UNetConfig, geometry
from segrt.export.weightmap import weight_map
from segrt.io.datasets import load_split
from segrt.io.preprocess import DEFAULT_NORMALIZATION, as_hwc, normalize
from segrt.unet.tiling import mirror_pad


class TrainingDiverged(SegrtError):
    """The loss became NaN or infinite."""


@dataclass
class TrainConfig:
    """Training hyperparameters (paper defaults where it gives them)."""

    data: Path = Path("data/dsb2018/train")  # split folder with images/ and labels/
    out: Path = Path("runs/unet.pt")
    model: UNetConfig = field(default_factory=UNetConfig)
    steps: int = 2000
    minutes: float | None = None  # stop early after this wall time
    tile: int = 188  # input tile edge (rounded up to a valid size)
    batch_size: int = 2
    optimizer: str = "sgd"  # "sgd" (paper: momentum 0.99) | "adam"
    lr: float = 0.01
    momentum: float = 0.99
    weight_decay: float = 0.0
    w0: float = 10.0  # weight-map border term (paper: 10)
    sigma: float = 5.0  # (paper: 5 px)
    elastic_sigma: float = 10.0  # elastic displacement std on a 3x3 grid (paper: 10 px)
    seed: int = 0
    threads: int | None = None
    class_names: tuple[str, ...] = ("background", "foreground")
    progress: bool = True


def prepare_samples(data: Path, channels: int, cfg: TrainConfig):
    """Normalized images [H,W,C], foreground/background targets [H,W] and weight maps [H,W]."""
    samples = []
    for image, labels in load_split(data):
        x = normalize(as_hwc(image, channels, name=f"image in {data}"), DEFAULT_NORMALIZATION)
        classes = (labels > 0).astype(np.int64)
        samples.append((x, classes, weight_map(labels, 2, cfg.w0, cfg.sigma)))
    if not samples:
        raise DataError(f"no training images in {data}", "put image/label pairs in images/ and labels/")
    return samples


def pad_samples(samples, tile_in: int):
    """Mirror-pad every (image, target, weights) once, so tiles can be cut anywhere, borders included.

    The slack (tile_in // 2 + 16 px per side) lets a tile centre reach the image edge and
    keeps the elastic warp from sampling outside the padded image.
    """
    pad = tile_in // 2 + 16
    return [tuple(mirror_pad(a, (pad, pad), (pad, pad)) for a in sample) for sample in samples]


def random_batch(padded, tile_in: int, tile_out: int, batch: int, rng: np.random.Generator, elastic_sigma: float):
    """A batch of augmented tiles from ``pad_samples`` output:
    x [B,C,tile_in,tile_in], target [B,o,o], weights [B,o,o] (o = tile_out)."""
    big = tile_in + 2 * 16  # the window that is warped; its 16 px rim is cut off afterwards
    xs, ts, ws = [], [], []
    for _ in range(batch):
        px, pc, pw = padded[int(rng.integers(len(padded)))]
        y0 = int(rng.integers(0, px.shape[0] - big + 1))
        x0 = int(rng.integers(0, px.shape[1] - big + 1))
        win = np.s_[y0 : y0 + big, x0 : x0 + big]
        ax, ac, aw = augment(px[win], pc[win], pw[win], rng, elastic_sigma)
        m, o = 16, 16 + (tile_in - tile_out) // 2
        xs.append(ax[m : m + tile_in, m : m + tile_in].transpose(2, 0, 1))
        ts.append(ac[o : o + tile_out, o : o + tile_out])
        ws.append(aw[o : o + tile_out, o : o + tile_out])
    return (torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ts)).long(), torch.from_numpy(np.stack(ws)))


def weighted_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The paper's energy (Eq. 1): pixel-wise softmax cross-entropy weighted by w(x), averaged over pixels."""
    return (F.cross_entropy(logits, target, reduction="none") * weights).mean()


def train(cfg: TrainConfig) -> Path:
    """Train and write the checkpoint to ``cfg.out``; returns its path."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = UNet(cfg.model)
    g = geometry(cfg.model)
    tile_in = g.valid_at_least(cfg.tile)
    tile_out = tile_in - 2 * g.border
    samples = pad_samples(prepare_samples(Path(cfg.data), cfg.model.in_channels, cfg), tile_in)
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}; use 'sgd' or 'adam'")
    start, losses = time.monotonic(), []
    model.train()
    bar = tqdm(range(cfg.steps), desc="train unet", unit="step", disable=not cfg.progress, dynamic_ncols=True)
    for step in bar:
        x, target, weights = random_batch(samples, tile_in, tile_out, cfg.batch_size, rng, cfg.elastic_sigma)
        loss = weighted_cross_entropy(model(x), target, weights)
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"the loss became {loss.item()} at step {step}",
                f"lower the learning rate (now {cfg.lr}); SGD with momentum 0.99 needs a small one, "
                "or use --optimizer adam --lr 1e-3",
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        if cfg.minutes is not None and time.monotonic() - start > 60 * cfg.minutes:
            break
    bar.close()
    extra = {
        "steps": len(losses),
        "final_loss": float(np.mean(losses[-20:])),
        "seconds": time.monotonic() - start,
        "normalization": DEFAULT_NORMALIZATION,
        "tile_in": tile_in,
        "data": str(cfg.data),
        "train_config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items() if k != "model"},
    }
    return save_checkpoint(cfg.out, "unet", asdict(cfg.model), list(cfg.class_names), model.state_dict(), extra)
