"""Image/label folders: the one plain dataset format segrt reads, and the shipped demo data.

A dataset split is a folder with two sub-folders of files with the same stems::

    <split>/images/<stem>.png|.tif   uint8 or uint16, HxW (grey) or HxWx3
    <split>/labels/<stem>.png|.tif   uint16 instance labels, 0 = background, one id per object
                                     (a semantic mask with values {0, 1} is a valid label image too)

Demo data: ``prepare_dsb2018`` writes the one real 2018 Data Science Bowl
fluorescence-nuclei image that the ``stardist`` 0.9.2 wheel ships
(``stardist/data/images/img2d.tif`` + ``mask2d.tif``, 512x512, 125 nuclei, from
BBBC038 / DSB2018 stage 1, CC0) as ``train`` (left half, columns 0..255) and
``val`` (right half, columns 256..511). Always the same split.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import cv2
import numpy as np

from .errors import DataError
from .io import atomic_path

IMAGE_SUFFIXES = (".png", ".tif", ".tiff")
STARDIST_WHEEL = "stardist==0.9.2"
_WHEEL_MEMBERS = {"image": "stardist/data/images/img2d.tif", "labels": "stardist/data/images/mask2d.tif"}
SPLIT_COLUMN = 256


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file unchanged (uint8/uint16, HxW or HxWxC; colour as RGB)."""
    path = Path(path)
    data = np.fromfile(path, dtype=np.uint8) if path.is_file() else None
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data is not None and data.size else None
    if img is None:
        raise DataError(f"cannot read image {path}", "check that the file exists and is a PNG or TIFF")
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return img


def write_png(path: str | Path, array: np.ndarray) -> Path:
    """Write a uint8/uint16 PNG atomically (RGB input is stored as a normal colour PNG)."""
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise DataError(f"cannot encode {path} as PNG (dtype {array.dtype}, shape {array.shape})",
                        "PNG holds uint8 or uint16 grey/RGB images")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())
    return Path(path)


def list_pairs(split_dir: str | Path) -> list[tuple[Path, Path]]:
    """Image/label path pairs of a split folder, sorted by stem; errors name unpaired files."""
    split_dir = Path(split_dir)
    image_dir, label_dir = split_dir / "images", split_dir / "labels"
    for d in (image_dir, label_dir):
        if not d.is_dir():
            raise DataError(f"{split_dir} has no {d.name}/ folder",
                            "a split folder holds images/ and labels/ with files of the same names "
                            "(run `segrt data dsb2018 DIR` for an example)")
    images = {p.stem: p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    labels = {p.stem: p for p in label_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    if not images:
        raise DataError(f"{image_dir} holds no .png/.tif images", "put the training images there")
    unpaired = sorted(set(images) ^ set(labels))
    if unpaired:
        raise DataError(f"{split_dir}: {len(unpaired)} file(s) without a partner: {', '.join(unpaired[:5])}",
                        "every images/<name> needs a labels/<name> (and vice versa)")
    return [(images[s], labels[s]) for s in sorted(images)]


def load_split(split_dir: str | Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Load every (image, labels) pair of a split; labels as int32 [H, W]."""
    pairs = []
    for image_path, label_path in list_pairs(split_dir):
        image, labels = read_image(image_path), read_image(label_path)
        if labels.ndim != 2:
            raise DataError(f"{label_path} has shape {labels.shape}; label images must be single-channel",
                            "store instance ids (or 0/1 masks) as a grey uint16/uint8 PNG")
        if image.shape[:2] != labels.shape:
            raise DataError(f"{image_path.name}: image is {image.shape[:2]} but its labels are {labels.shape}",
                            "image and label must have the same height and width")
        pairs.append((image, labels.astype(np.int32)))
    return pairs


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Consecutive ids 1..n (ids of nuclei cut by the split may vanish from one half)."""
    ids = np.unique(labels)
    ids = ids[ids != 0]
    lut = np.zeros(int(labels.max()) + 1, dtype=np.uint16)
    lut[ids] = np.arange(1, len(ids) + 1, dtype=np.uint16)
    return lut[labels]


def _download_wheel(dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", STARDIST_WHEEL, "--no-deps", "--only-binary=:all:",
           "-d", str(dest), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("stardist-0.9.2-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise DataError(f"could not download the {STARDIST_WHEEL} wheel with pip: "
                        f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:] or 'no wheel found'}",
                        f"check access to PyPI, or download it elsewhere (`pip download {STARDIST_WHEEL} --no-deps`) "
                        "and pass it with --wheel")
    return wheels[0]


def prepare_dsb2018(root: str | Path, wheel: str | Path | None = None) -> Path:
    """Write the DSB2018 demo image as ``root/train`` and ``root/val`` image/label folders.

    Args:
        root: output folder (created).
        wheel: a downloaded ``stardist-0.9.2-*.whl``; by default pip downloads it (about 3 MB).

    Returns:
        ``root``. Writing is idempotent: the same bytes every time.
    """
    root = Path(root)
    with tempfile.TemporaryDirectory() as tmp:
        wheel_path = Path(wheel) if wheel else _download_wheel(Path(tmp))
        try:
            with zipfile.ZipFile(wheel_path) as zf:
                raw = {k: zf.read(member) for k, member in _WHEEL_MEMBERS.items()}
        except (zipfile.BadZipFile, KeyError, FileNotFoundError) as exc:
            raise DataError(f"{wheel_path} is not the stardist 0.9.2 wheel with its sample data ({exc})",
                            f"pass the wheel from `pip download {STARDIST_WHEEL} --no-deps`") from None
    image = cv2.imdecode(np.frombuffer(raw["image"], np.uint8), cv2.IMREAD_UNCHANGED)
    labels = cv2.imdecode(np.frombuffer(raw["labels"], np.uint8), cv2.IMREAD_UNCHANGED)
    halves = {"train": np.s_[:, :SPLIT_COLUMN], "val": np.s_[:, SPLIT_COLUMN:]}
    for split, cols in halves.items():
        write_png(root / split / "images" / "dsb2018_img2d.png", np.ascontiguousarray(image[cols]))
        write_png(root / split / "labels" / "dsb2018_img2d.png", _relabel(np.ascontiguousarray(labels[cols])))
    source = {
        "source": f"{STARDIST_WHEEL} wheel (PyPI), members {list(_WHEEL_MEMBERS.values())}",
        "origin": "2018 Data Science Bowl stage 1 training set (BBBC038v1, Caicedo et al. 2019, CC0)",
        "sha256": {k: hashlib.sha256(v).hexdigest() for k, v in raw.items()},
        "split": {"train": f"columns 0..{SPLIT_COLUMN - 1}", "val": f"columns {SPLIT_COLUMN}..511"},
        "nuclei": int(len(np.unique(labels)) - 1),
    }
    with atomic_path(root / "source.json") as tmp:
        tmp.write_text(json.dumps(source, indent=2) + "\n")
    return root
