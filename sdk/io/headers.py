"""Image sizes from file headers, before any pixel is decoded (PNG IHDR, JPEG SOF, TIFF IFD).

Decoding a file whole costs ``H x W x C`` bytes whatever the file's size on disk
(a 1 MB PNG of zeros can hold 30000 x 30000 pixels), and OpenCV refuses anything
over its own limit with a raw ``cv2.error``. So every image file is first checked
from its header: the size it claims, whether it is complete (PNG ends with IEND,
JPEG with EOI, every TIFF strip or tile lies inside the file), and, for formats
that can only be decoded whole (PNG, JPEG, BMP...), whether the size is within
:data:`MAX_DECODE_PIXELS`. Everything fails with an :class:`~segrt.errors.InputError`
naming the limit and the fix.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

from segrt.errors import InputError

# Largest image (pixels) decoded whole into memory: 16384 x 16384 (256 Mpixel, 768 MB as RGB).
# Override per call (``max_pixels=``) or for the process with SEGRT_MAX_DECODE_PIXELS.
MAX_DECODE_PIXELS = 16384 * 16384
LAZY_SUFFIXES = (".tif", ".tiff", ".zarr")
CONVERT_FIX = (
    "convert it to a tiled TIFF or zarr, which segrt reads a block at a time, e.g. "
    "`vips tiffsave in.png out.tif --tile --bigtiff --compression deflate`, or raise the limit with "
    "SEGRT_MAX_DECODE_PIXELS if the machine has the memory"
)
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header says: ``kind`` ("png", "jpeg", "tiff", "other"), height and width in pixels
    (None where the header was not parsed: "other"), and samples per pixel (None when unknown)."""

    kind: str
    height: int | None
    width: int | None
    channels: int | None = None

    @property
    def pixels(self) -> int | None:
        return None if self.height is None or self.width is None else self.height * self.width


def max_decode_pixels(override: int | None = None) -> int:
    """The in-memory decoding limit in pixels: ``override``, else SEGRT_MAX_DECODE_PIXELS, else the default."""
    if override is not None:
        return int(override)
    env = os.environ.get("SEGRT_MAX_DECODE_PIXELS")
    if env:
        try:
            return int(float(env))
        except ValueError:
            raise InputError(f"SEGRT_MAX_DECODE_PIXELS={env!r} is not a number", "set it to a pixel count") from None
    return MAX_DECODE_PIXELS


def _bad(path: Path, what: str) -> InputError:
    return InputError(
        f"{path.name} is not a readable image: {what}", "check that the file is complete (re-copy or re-export it)"
    )


def _png(path: Path, size: int, head: bytes) -> ImageHeader:
    if len(head) < 33 or head[12:16] != b"IHDR":
        raise _bad(path, "no PNG IHDR header")
    w, h, _depth, colour = struct.unpack(">IIBB", head[16:26])
    if w == 0 or h == 0 or w > 2**31 - 1 or h > 2**31 - 1:
        raise _bad(path, f"PNG header claims {w} x {h} pixels")
    with open(path, "rb") as f:  # a complete PNG ends with the IEND chunk
        f.seek(max(0, size - 12))
        if b"IEND" not in f.read(12):
            raise _bad(path, "the PNG ends early (no IEND chunk: truncated)")
    channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(colour)
    return ImageHeader("png", int(h), int(w), channels)


def _jpeg(path: Path, size: int) -> ImageHeader:
    with open(path, "rb") as f:
        data = f.read(min(size, 1 << 20))  # the SOF marker sits in the first segments
        f.seek(max(0, size - 2))
        tail = f.read(2)
    i, dims = 2, None
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise _bad(path, "broken JPEG marker sequence")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01,) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        seg = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in _JPEG_SOF:
            if i + 10 > len(data):
                break
            h, w, c = struct.unpack(">HHB", data[i + 5 : i + 10])
            dims = (h, w, c)
            break
        if marker == 0xDA:  # start of scan before any frame header
            break
        i += 2 + seg
    if dims is None:
        raise _bad(path, "no JPEG frame header (SOF)")
    h, w, c = dims
    if h == 0 or w == 0:
        raise _bad(path, f"JPEG header claims {w} x {h} pixels")
    if tail != b"\xff\xd9":
        raise _bad(path, "the JPEG ends early (no end-of-image marker: truncated)")
    return ImageHeader("jpeg", int(h), int(w), int(c))


def _tiff(path: Path, size: int) -> ImageHeader:
    try:
        import tifffile
    except ImportError:
        raise InputError(f"reading {path.name} needs tifffile", "pip install 'segrt[large]'") from None
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            # every strip/tile of the first image must lie inside the file: a lying IFD fails here, not mid-run
            if len(page.dataoffsets) != len(page.databytecounts):
                raise _bad(path, "the TIFF's strip offsets and byte counts disagree in number")
            ends = [int(o) + int(n) for o, n in zip(page.dataoffsets, page.databytecounts, strict=True) if n]
            h, w = int(page.imagelength), int(page.imagewidth)
            spp = int(page.samplesperpixel)
    except InputError:
        raise
    except Exception as exc:  # tifffile raises many kinds on a corrupt IFD
        raise _bad(path, f"TIFF header: {exc}") from None
    if h == 0 or w == 0:
        raise _bad(path, f"TIFF header claims {w} x {h} pixels")
    if ends and max(ends) > size:
        raise _bad(path, f"TIFF strips/tiles point to byte {max(ends)} but the file has {size} bytes (truncated)")
    return ImageHeader("tiff", h, w, spp)


def read_header(path: str | Path) -> ImageHeader:
    """The size a file claims, read from its header only (a few KB), checked for completeness.

    Raises:
        InputError: missing/empty file, a header that does not parse, or a file that ends before
            its data (PNG without IEND, JPEG without EOI, TIFF strips past the end).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"image not found: {path}", "check the path")
    size = path.stat().st_size
    if size == 0:
        raise _bad(path, "the file is empty")
    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return _png(path, size, head)
    if head.startswith(b"\xff\xd8"):
        return _jpeg(path, size)
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return _tiff(path, size)
    return ImageHeader("other", None, None)


def check_decodable(path: str | Path, max_pixels: int | None = None) -> ImageHeader:
    """The header of a file about to be decoded whole; InputError if it claims more than the limit."""
    header = read_header(path)
    limit = max_decode_pixels(max_pixels)
    if header.pixels is not None and header.pixels > limit:
        raise InputError(
            f"{Path(path).name} is {header.width} x {header.height} = {header.pixels / 1e6:.0f} Mpixel, "
            f"over the {limit / 1e6:.0f} Mpixel limit for decoding a {header.kind.upper()} whole "
            "into memory",
            CONVERT_FIX,
        )
    if header.kind == "other" and Path(path).stat().st_size > limit:  # unknown format: bound by file size
        raise InputError(f"{Path(path).name}: unknown image format of {Path(path).stat().st_size} bytes", CONVERT_FIX)
    return header
