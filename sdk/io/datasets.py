"""Image/label folders: the one plain dataset format segrt reads.

A dataset split is a folder with two sub-folders of files with the same stems::

    <split>/images/<stem>.png|.tif   uint8 or uint16, HxW (grey) or HxWx3
    <split>/labels/<stem>.png|.tif   uint16 instance labels, 0 = background, one id per object
                                     (a semantic mask with values {0, 1} is a valid label image too)

``segrt data dsb2018`` (the training side) writes the demo data in this layout.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segrt.errors import DataError
from segrt.io.images import read_image

IMAGE_SUFFIXES = (".png", ".tif", ".tiff")


def list_pairs(split_dir: str | Path) -> list[tuple[Path, Path]]:
    """Image/label path pairs of a split folder, sorted by stem; errors name unpaired files."""
    split_dir = Path(split_dir)
    image_dir, label_dir = split_dir / "images", split_dir / "labels"
    for d in (image_dir, label_dir):
        if not d.is_dir():
            raise DataError(
                f"{split_dir} has no {d.name}/ folder",
                "a split folder holds images/ and labels/ with files of the same names "
                "(run `segrt data dsb2018 DIR` for an example)",
            )
    images = {p.stem: p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    labels = {p.stem: p for p in label_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    if not images:
        raise DataError(f"{image_dir} holds no .png/.tif images", "put the training images there")
    unpaired = sorted(set(images) ^ set(labels))
    if unpaired:
        raise DataError(
            f"{split_dir}: {len(unpaired)} file(s) without a partner: {', '.join(unpaired[:5])}",
            "every images/<name> needs a labels/<name> (and vice versa)",
        )
    return [(images[s], labels[s]) for s in sorted(images)]


def load_split(split_dir: str | Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Load every (image, labels) pair of a split; labels as int32 [H, W]."""
    return [load_pair(image_path, label_path) for image_path, label_path in list_pairs(split_dir)]


def load_pair(image_path: str | Path, label_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One image ([H, W] or [H, W, C], as stored) and its labels (int32 [H, W]); errors name a mismatch."""
    image_path, label_path = Path(image_path), Path(label_path)
    image, labels = read_image(image_path), read_image(label_path)
    if labels.ndim != 2:
        raise DataError(
            f"{label_path} has shape {labels.shape}; label images must be single-channel",
            "store instance ids (or 0/1 masks) as a grey uint16/uint8 PNG",
        )
    if image.shape[:2] != labels.shape:
        raise DataError(
            f"{image_path.name}: image is {image.shape[:2]} but its labels are {labels.shape}",
            "image and label must have the same height and width",
        )
    return image, labels.astype(np.int32)
