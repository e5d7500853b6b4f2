"""Train a torchvision Mask R-CNN or Keypoint R-CNN on COCO-format data: one short loop, read top to bottom.

Recipe (the paper's defaults, via torchvision): SGD momentum 0.9, weight decay
1e-4, linear warm-up then step LR (x0.1 at 70% and 90% of the steps), RoI
positives at IoU >= 0.5 sampled 1:3 positive:negative, shorter side resized
to ``min_size``. For small CPU runs: random crops, fewer RPN proposals (see
``MaskRCNNConfig``), a step count and an optional wall-clock budget.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from segrt.export.checkpoint import save_checkpoint
from segrt.export.maskrcnn.coco import CocoTrainSet, load_coco
from segrt.export.maskrcnn.models import MaskRCNNConfig, build_model


@dataclass
class TrainOptions:
    """What to train on and for how long (model hyperparameters live in ``MaskRCNNConfig``)."""

    train_json: Path
    train_images: Path
    out: Path  # checkpoint file
    model: MaskRCNNConfig = field(default_factory=MaskRCNNConfig)
    steps: int = 600
    batch_size: int = 4
    lr: float = 0.01
    clip_grad_norm: float | None = 5.0  # from-scratch training is unstable in its first steps without it
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    lr_drops: tuple[float, ...] = (0.7, 0.9)  # fractions of `steps` where LR is multiplied by 0.1
    crop: int = 256  # random square crops of this side (0 = whole images)
    flips: str = "all"  # mirror images: all | horizontal | none (see CocoTrainSet)
    time_budget_s: float | None = None  # stop early (and save) after this many seconds
    seed: int = 0
    threads: int | None = None
    progress: bool = True


def lr_at(step: int, opts: TrainOptions, elapsed_s: float = 0.0) -> float:
    """Warm-up (linear from 0.001x) then step decay.

    Progress is the larger of step / steps and, with a time budget, elapsed / budget: on a slow
    or shared machine the budget ends the run, and the LR drops still happen before it does.
    """
    if step < opts.warmup_steps:
        return opts.lr * (0.001 + 0.999 * step / max(opts.warmup_steps, 1))
    progress = step / max(opts.steps, 1)
    if opts.time_budget_s:
        progress = max(progress, elapsed_s / opts.time_budget_s)
    drops = sum(progress >= f for f in opts.lr_drops)
    return opts.lr * (0.1**drops)


def train(opts: TrainOptions) -> Path:
    """Train and write a segrt checkpoint (atomically) to ``opts.out``; returns its path."""
    if opts.threads:
        torch.set_num_threads(opts.threads)
    torch.manual_seed(opts.seed)
    rng = np.random.default_rng(opts.seed)
    coco = load_coco(opts.train_json, opts.train_images)
    cfg = opts.model
    cfg.num_classes = len(coco.class_names)
    keypoints = cfg.kind == "keypointrcnn"
    data = CocoTrainSet(coco, keypoints=keypoints)
    if keypoints:
        cfg.keypoint_names = tuple(coco.keypoint_names or ())
        cfg.num_keypoints = len(cfg.keypoint_names)
    model = build_model(cfg)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=opts.lr, momentum=opts.momentum, weight_decay=opts.weight_decay)
    start, cpu_start = time.perf_counter(), time.process_time()
    history: list[float] = []
    bar = tqdm(range(opts.steps), desc=f"train {cfg.kind}", disable=not opts.progress, dynamic_ncols=True)
    step = 0
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, opts, time.perf_counter() - start)
        batch = [data.sample(rng, opts.crop, opts.flips) for _ in range(opts.batch_size)]
        images, targets = [b[0] for b in batch], [b[1] for b in batch]
        losses = model(images, targets)
        loss = sum(losses.values())
        if not math.isfinite(float(loss.detach())):
            raise FloatingPointError(f"loss became {float(loss.detach())} at step {step}; lower --lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if opts.clip_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, opts.clip_grad_norm)
        optimizer.step()
        history.append(float(loss.detach()))
        bar.set_postfix(loss=f"{np.mean(history[-20:]):.3f}", lr=f"{optimizer.param_groups[0]['lr']:.4f}")
        if opts.time_budget_s and time.perf_counter() - start > opts.time_budget_s:
            break
    bar.close()
    model.eval()
    extra: dict[str, Any] = {
        "steps": step + 1,
        "seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu_start,
        "final_loss": float(np.mean(history[-20:])) if history else None,
        "train_json": str(opts.train_json),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items() if k != "model"},
    }
    return save_checkpoint(
        opts.out,
        kind=cfg.kind,
        config=asdict(cfg),
        class_names=coco.class_names,
        state_dict=model.state_dict(),
        extra=extra,
    )
