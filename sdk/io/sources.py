"""Images read lazily, a block at a time: numpy / memory-mapped arrays, TIFF files, zarr arrays.

Large-image prediction never needs the whole image in memory: it reads one band
of rows at a time through :class:`ImageSource`. ``open_image`` picks the reader:

* ``np.ndarray`` (``np.memmap`` included) and any array-like with ``shape``,
  ``dtype`` and 2-D slicing (a ``zarr`` array): sliced directly;
* ``.tif`` / ``.tiff`` files: an uncompressed, contiguous TIFF is read with
  positioned file reads (no memory map, so reading does not grow the process's
  resident memory); any other TIFF (tiled, compressed) through ``tifffile``'s
  zarr view (``pip install 'segrt[large]'``);
* ``.zarr`` folders: ``zarr.open_array``;
* any other image file (PNG, JPEG): read whole with ``segrt.io.images.read_image``, after its
  header is checked against the in-memory decoding limit (``segrt.io.headers``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from segrt.errors import DataError, InputError


@runtime_checkable
class ImageSource(Protocol):
    """An [H, W, C] image that hands out blocks on request."""

    shape: tuple[int, int, int]
    dtype: np.dtype

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Pixels ``[y0:y1, x0:x1]`` (inside the image) as an [h, w, C] array of ``dtype``."""


class ArraySource:
    """A numpy array (memory-mapped or not) or a zarr-like array of [H, W] or [H, W, C]."""

    def __init__(self, array: Any, name: str = "image") -> None:
        shape = tuple(int(s) for s in array.shape)
        if len(shape) not in (2, 3):
            raise InputError(
                f"{name} has shape {shape}; expected [H, W] or [H, W, C]",
                "pass one image at a time (drop batch dimensions)",
            )
        if shape[0] == 0 or shape[1] == 0:
            raise InputError(f"{name} is empty (shape {shape})", "pass an image with at least one pixel")
        self.array = array
        self.shape = (shape[0], shape[1], shape[2] if len(shape) == 3 else 1)
        self.dtype = np.dtype(array.dtype)

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        block = np.asarray(self.array[y0:y1, x0:x1])
        return block[:, :, None] if block.ndim == 2 else block


class ContiguousTiffSource:
    """The first image of an uncompressed TIFF whose pixels are stored in one contiguous run.

    Rows are fetched with ``os.pread``: the page cache holds the file, not this process.
    """

    def __init__(self, path: Path, offset: int, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.path = path
        self.offset = int(offset)
        self.shape = (int(shape[0]), int(shape[1]), int(shape[2]) if len(shape) == 3 else 1)
        self._stored = np.dtype(dtype)
        self.dtype = self._stored.newbyteorder("=")
        self._row_bytes = self.shape[1] * self.shape[2] * self._stored.itemsize
        self._fd = os.open(path, os.O_RDONLY)

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        n = (y1 - y0) * self._row_bytes
        buf = os.pread(self._fd, n, self.offset + y0 * self._row_bytes)
        if len(buf) != n:
            raise DataError(f"{self.path} ends early (wanted rows {y0}..{y1 - 1})", "the TIFF file is truncated")
        rows = np.frombuffer(buf, self._stored).reshape(y1 - y0, self.shape[1], self.shape[2])
        return rows[:, x0:x1].astype(self.dtype)  # native order, and a copy off the read buffer

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.close()


def _tiff_source(path: Path) -> ImageSource:
    from segrt.io.headers import read_header

    read_header(path)  # every strip/tile inside the file, or an InputError now rather than mid-run
    try:
        import tifffile
    except ImportError:
        raise InputError(f"reading {path.name} lazily needs tifffile", "pip install 'segrt[large]'") from None
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape, offset = series.shape, series.dataoffset
            dtype = np.dtype(series.dtype).newbyteorder(tif.byteorder)  # as stored in the file
            planar = getattr(series.keyframe, "planarconfig", 1)
    except (tifffile.TiffFileError, OSError, IndexError) as exc:
        raise DataError(f"cannot read TIFF {path}: {exc}", "check that the file is a complete TIFF") from None
    shape = tuple(int(v) for v in shape)
    while len(shape) > 2 and shape[0] == 1:  # (1, H, W[, C]): one page
        shape = shape[1:]
    interleaved = len(shape) == 2 or (len(shape) == 3 and int(planar) == 1)  # samples stored per pixel
    if offset is not None and interleaved:
        return ContiguousTiffSource(path, offset, shape, dtype)
    try:
        import zarr
    except ImportError:
        raise InputError(
            f"{path.name} is a tiled or compressed TIFF: reading it lazily needs zarr", "pip install 'segrt[large]'"
        ) from None
    store = tifffile.imread(path, aszarr=True, series=0, level=0)
    return ArraySource(zarr.open_array(store, mode="r"), name=path.name)


def open_image(image: Any) -> ImageSource:
    """An :class:`ImageSource` for an array, an array-like, or an image file path (rules in the module doc)."""
    if isinstance(image, ImageSource) and not isinstance(image, np.ndarray):
        return image
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.exists():
            raise DataError(f"image not found: {path}", "check the path")
        suffix = path.suffix.lower()
        if suffix in (".tif", ".tiff"):
            return _tiff_source(path)
        if suffix == ".zarr":
            try:
                import zarr
            except ImportError:
                raise InputError(f"reading {path.name} needs zarr", "pip install 'segrt[large]'") from None
            return ArraySource(zarr.open_array(str(path), mode="r"), name=path.name)
        from segrt.io.images import read_image

        return ArraySource(read_image(path), name=path.name)  # header checked first: size limit, truncation
    if isinstance(image, np.ndarray) or all(hasattr(image, a) for a in ("shape", "dtype", "__getitem__")):
        return ArraySource(image)
    raise InputError(
        f"image must be a numpy array, an array-like or a file path, got {type(image).__name__}",
        "read it with segrt.io.datasets.read_image(path), or pass the path of a TIFF/zarr image",
    )
