"""Checkpoints: a state dict plus everything needed to rebuild the model.

Layout (a plain dict, loadable with ``torch.load(..., weights_only=True)``)::

    {"kind": "unet" | "maskrcnn" | "keypointrcnn",
     "config": {...},            # the model's config dataclass as a dict
     "class_names": [...],
     "model": state_dict,
     "extra": {...}}             # training step, metrics, data split, ...
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from segrt.errors import ArtifactError
from segrt.io.files import atomic_path


def save_checkpoint(
    path: str | Path,
    kind: str,
    config: dict[str, Any],
    class_names: list[str],
    state_dict: dict[str, torch.Tensor],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (temporary file, then rename)."""
    payload = {
        "kind": kind,
        "config": config,
        "class_names": list(class_names),
        "model": state_dict,
        "extra": extra or {},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a segrt checkpoint safely (``weights_only=True``: no arbitrary unpickling)."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"checkpoint not found: {path}", "train one with `segrt train`, or check the path")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:300]
        raise ArtifactError(
            f"{path} is not a readable checkpoint: {first}",
            "the file may be truncated or not written by segrt; retrain or re-download it",
        ) from None
    if not isinstance(ckpt, dict) or not {"kind", "config", "model"} <= set(ckpt):
        raise ArtifactError(
            f"{path} is not a segrt checkpoint (expected keys kind/config/model)",
            "for a bare torchvision state dict, use segrt.export.maskrcnn.models.load_torchvision_state_dict",
        )
    return ckpt
