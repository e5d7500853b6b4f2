"""What a batch run processes: one :class:`Item` per image, from files, folders, globs, COCO files or splits.

Every item has a ``key``: its path relative to the folder it was found in, without the suffix
(``images/**/*.png`` under ``images/`` gives ``a/b/cell`` for ``images/a/b/cell.png``). The key names
the image's results (``OUT/a/b/cell_classes.png``) and its record, so it must be unique: two files
that differ only in suffix are refused before any work.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segrt.errors import DataError, InputError

# Image files a folder contributes (a glob takes whatever files it matches)
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")


@dataclass(frozen=True)
class Item:
    """One image of a batch run.

    Attributes:
        key: results name, relative to the output folder, no suffix (POSIX separators).
        path: the image file, absolute (Ray workers do not share the driver's working folder).
        image_id: its COCO image id (COCO inputs), else 0.
        labels: its label image (U-Net evaluation on a split folder), else "".
    """

    key: str
    path: str
    image_id: int = 0
    labels: str = ""

    def row(self) -> dict[str, Any]:
        """The item as a Ray Data row (plain columns)."""
        return {"key": self.key, "path": self.path, "image_id": self.image_id, "labels": self.labels}


def _magic_base(pattern: str) -> Path:
    """The folder part of a glob pattern before its first wildcard (``images/**/*.png`` -> ``images``)."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _key(path: Path, base: Path) -> str:
    return path.relative_to(base).with_suffix("").as_posix()


def list_images(patterns: Iterable[str | Path]) -> list[Item]:
    """Items for image files, folders (their image files, not recursive) and glob patterns (``**`` recurses).

    Raises:
        DataError: a name that is neither a file, a folder nor a pattern matching a file; no images at all.
        InputError: two images with the same key (see the module doc).
    """
    items: list[Item] = []
    for pattern in map(str, patterns):
        path = Path(pattern)
        if path.is_dir():
            base, files = path, sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            base, files = path.parent, [path]
        elif glob.has_magic(pattern):
            base = _magic_base(pattern)
            files = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
            if not files:
                raise DataError(
                    f"no file matches {pattern!r}",
                    "check the pattern (quote it so the shell leaves it to segrt; `**` matches sub-folders)",
                )
        else:
            raise DataError(f"image not found: {pattern}", "pass image files, folders or a quoted glob pattern")
        items.extend(Item(_key(p, base), os.path.abspath(p)) for p in files)  # workers may run elsewhere
    if not items:
        raise DataError(
            f"no images in {', '.join(map(str, patterns))}",
            f"a folder contributes its {'/'.join(IMAGE_SUFFIXES)} files",
        )
    return unique(items)


def coco_items(coco_json: str | Path, image_dir: str | Path | None = None) -> list[Item]:
    """Items for the images of a COCO file (``images[].file_name`` under ``image_dir``), sorted by image id.

    ``image_dir`` defaults to the folder named like the JSON beside it (``coco/val.json`` -> ``coco/val/``),
    as ``segrt eval`` does. Missing image files are not checked here (``segrt.rcnn.coco.load_ground_truth``
    refuses them for evaluation; prediction records them as errors).
    """
    coco_json = Path(coco_json)
    image_dir = Path(image_dir) if image_dir is not None else coco_json.with_suffix("")
    try:
        images = json.loads(coco_json.read_text())["images"]
        listed = sorted((int(im["id"]), str(im["file_name"])) for im in images)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(
            f"cannot read the image list of COCO file {coco_json}: {exc}",
            "pass a COCO instances JSON with images[].id and images[].file_name",
        ) from None
    return unique(
        [
            Item(Path(name).with_suffix("").as_posix(), os.path.abspath(image_dir / name), image_id=i)
            for i, name in listed
        ]
    )


def split_items(split_dir: str | Path) -> list[Item]:
    """Items for an image/label split folder (``segrt.io.datasets``), with their label files."""
    from segrt.io.datasets import list_pairs

    return unique(
        [
            Item(image.stem, os.path.abspath(image), labels=os.path.abspath(labels))
            for image, labels in list_pairs(split_dir)
        ]
    )


def unique(items: list[Item]) -> list[Item]:
    """``items`` with repeated paths dropped; two different files with the same key are refused."""
    by_key: dict[str, Item] = {}
    for item in items:
        seen = by_key.setdefault(item.key, item)
        if seen.path != item.path:
            raise InputError(
                f"{seen.path} and {item.path} would both write results named {item.key!r}",
                "rename one, or run them into different --out folders",
            )
    return list(by_key.values())
