"""The shipped demo data: one real DSB2018 nuclei image, from the stardist wheel on PyPI.

``prepare_dsb2018`` writes the one real 2018 Data Science Bowl fluorescence-nuclei
image that the ``stardist`` 0.9.2 wheel ships (``stardist/data/images/img2d.tif`` +
``mask2d.tif``, 512x512, 125 nuclei, from BBBC038 / DSB2018 stage 1, CC0) as
``train`` (left half, columns 0..255) and ``val`` (right half, columns 256..511)
image/label folders (``segrt.io.datasets``). Always the same split. pip downloads the
wheel (about 3 MB); stardist itself is never installed.
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

from segrt.errors import DataError
from segrt.io.files import atomic_path
from segrt.io.images import write_png

STARDIST_WHEEL = "stardist==0.9.2"
_WHEEL_MEMBERS = {"image": "stardist/data/images/img2d.tif", "labels": "stardist/data/images/mask2d.tif"}
SPLIT_COLUMN = 256


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Consecutive ids 1..n (ids of nuclei cut by the split may vanish from one half)."""
    ids = np.unique(labels)
    ids = ids[ids != 0]
    lut = np.zeros(int(labels.max()) + 1, dtype=np.uint16)
    lut[ids] = np.arange(1, len(ids) + 1, dtype=np.uint16)
    return lut[labels]


def _download_wheel(dest: Path) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        STARDIST_WHEEL,
        "--no-deps",
        "--only-binary=:all:",
        "-d",
        str(dest),
        "--quiet",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("stardist-0.9.2-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise DataError(
            f"could not download the {STARDIST_WHEEL} wheel with pip: "
            f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:] or 'no wheel found'}",
            f"check access to PyPI, or download it elsewhere (`pip download {STARDIST_WHEEL} --no-deps`) "
            "and pass it with --wheel",
        )
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
            raise DataError(
                f"{wheel_path} is not the stardist 0.9.2 wheel with its sample data ({exc})",
                f"pass the wheel from `pip download {STARDIST_WHEEL} --no-deps`",
            ) from None
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
