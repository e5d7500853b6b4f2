"""Both predictors refuse the same bad images with the same InputError (segrt.io.preprocess.check_image)."""

from __future__ import annotations

import numpy as np
import pytest

import segrt
from segrt.errors import InputError
from segrt.predictor import Result

GOOD = np.full((64, 64), 100, np.uint8)
BAD = {
    "nan": (np.full((64, 64), np.nan, np.float32), "NaN or infinite"),
    "inf": (np.full((64, 64, 3), np.inf, np.float32), "NaN or infinite"),
    "bool": (np.ones((64, 64), bool), "dtype bool"),
    "complex": (np.ones((64, 64), np.complex64), "dtype complex64"),
    "object": (np.empty((64, 64), object), "dtype object"),
    "string": (np.full((64, 64), "a"), "dtype <U1"),
    "rank 1": (np.ones(64, np.uint8), "expected [H, W] or [H, W, C]"),
    "rank 4": (np.ones((1, 64, 64, 3), np.uint8), "expected [H, W] or [H, W, C]"),
    "empty": (np.ones((0, 64), np.uint8), "empty"),
    "no channels": (np.ones((64, 64, 0), np.uint8), "empty"),
    "a list": ([[1, 2], [3, 4]], "must be a numpy array"),
}


@pytest.fixture(scope="module", params=["unet", "maskrcnn"])
def predictor(request, tiny_unet, tiny_maskrcnn):
    return segrt.load(tiny_unet[1] if request.param == "unet" else tiny_maskrcnn)


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_image_is_refused_with_the_same_message(predictor, case):
    image, message = BAD[case]
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")) as info:
        predictor.predict(image)
    assert info.value.fix  # every refusal says what to do


def test_good_image_passes_both(predictor):
    result = predictor.predict(GOOD)
    assert isinstance(result, Result) and tuple(result.image_hw) == GOOD.shape
    assert predictor.last_timings["model_ms"] <= predictor.last_timings["total_ms"]


def test_unknown_option_is_refused(predictor):
    with pytest.raises(InputError, match="take no option 'colour'"):
        predictor.predict(GOOD, colour=True)


# -- hostile image files: each refused from its header with an InputError, before any compute ----------------
def _png_bytes(array):
    import cv2

    return cv2.imencode(".png", array)[1].tobytes()


def _tiff_claiming(path, h, w, strip_bytes):
    """A hand-made little-endian TIFF whose one strip claims ``strip_bytes`` bytes of an h x w uint8 image."""
    import struct

    data_at = 8 + 2 + 12 * 9 + 4  # the pixels would start right after the IFD
    entries = [
        (256, 4, w),
        (257, 4, h),
        (258, 3, 8),
        (259, 3, 1),
        (262, 3, 1),
        (273, 4, data_at),
        (277, 3, 1),
        (278, 4, h),
        (279, 4, strip_bytes),
    ]  # (tag, type SHORT=3/LONG=4, value), sorted
    ifd = (
        struct.pack("<H", len(entries))
        + b"".join(
            struct.pack("<HHI", tag, typ, 1) + (struct.pack("<HH", val, 0) if typ == 3 else struct.pack("<I", val))
            for tag, typ, val in entries
        )
        + struct.pack("<I", 0)
    )
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00" * 64)
    return path


def _hostile(kind, tmp_path):
    """(path, message the InputError must contain, environment) for one hostile file."""
    import struct
    import zlib

    import cv2

    small = (np.arange(64 * 48) % 251).astype(np.uint8).reshape(64, 48)
    if kind == "png header claims 100000 x 100000":
        body = struct.pack(">IIBBBBB", 100000, 100000, 8, 0, 0, 0, 0)
        ihdr = struct.pack(">I", 13) + b"IHDR" + body + struct.pack(">I", zlib.crc32(b"IHDR" + body))
        iend = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
        data = b"\x89PNG\r\n\x1a\n" + ihdr + iend
        return data, "over the", {}
    if kind == "png header smaller than its data":  # IHDR patched (CRC now wrong): libpng must refuse
        data = bytearray(_png_bytes(small))
        data[16:24] = struct.pack(">II", 16, 16)
        return bytes(data), "cannot decode", {}
    if kind == "png decompression bomb":  # a real 4000 x 4000 PNG of zeros, a few KB, over a 1 Mpixel limit
        return (
            _png_bytes(np.zeros((4000, 4000), np.uint8)),
            "over the 1 Mpixel limit",
            {"SEGRT_MAX_DECODE_PIXELS": "1000000"},
        )
    if kind == "png truncated":
        data = _png_bytes(small)
        return data[: len(data) // 2], "truncated", {}
    if kind == "jpeg header claims 60000 x 60000":
        data = bytearray(cv2.imencode(".jpg", small)[1].tobytes())
        sof = data.index(b"\xff\xc0")
        data[sof + 5 : sof + 9] = struct.pack(">HH", 60000, 60000)
        return bytes(data), "over the", {}
    if kind == "jpeg truncated":
        data = cv2.imencode(".jpg", small)[1].tobytes()
        return data[: len(data) // 2], "truncated", {}
    if kind == "tiff strips point past the end":
        return (
            _tiff_claiming(tmp_path / "f.tif", 100000, 100000, 100000 * 100000 % 2**32).read_bytes(),
            "point to byte",
            {},
        )
    if kind == "tiff truncated":
        import tifffile

        tifffile.imwrite(tmp_path / "t.tif", np.ones((512, 512), np.uint8), tile=(128, 128), compression="zlib")
        data = (tmp_path / "t.tif").read_bytes()
        return data[: len(data) // 2], "not a readable image", {}
    if kind == "empty file":
        return b"", "empty", {}
    raise KeyError(kind)


HOSTILE = [
    "png header claims 100000 x 100000",
    "png header smaller than its data",
    "png decompression bomb",
    "png truncated",
    "jpeg header claims 60000 x 60000",
    "jpeg truncated",
    "tiff strips point past the end",
    "tiff truncated",
    "empty file",
]
SUFFIX = {"png": ".png", "jpe": ".jpg", "tif": ".tif", "emp": ".png"}


@pytest.mark.parametrize("kind", HOSTILE)
@pytest.mark.parametrize("to_disk", [False, True], ids=["in memory", "out="])
def test_hostile_file_is_refused_before_any_compute(tiny_unet, tmp_path, monkeypatch, kind, to_disk):
    pytest.importorskip("tifffile", reason="TIFF cases need the large extra (tifffile)")
    if to_disk:
        pytest.importorskip("ome_zarr", reason="out= needs the large extra (ome-zarr)")
    data, message, env = _hostile(kind, tmp_path)
    path = tmp_path / f"hostile{SUFFIX[kind[:3]]}"
    path.write_bytes(data)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    predictor = segrt.load(tiny_unet[1])
    calls = []
    real_run = predictor.backend.run
    monkeypatch.setattr(predictor.backend, "run", lambda feed: calls.append(1) or real_run(feed))
    with pytest.raises(InputError, match=message) as info:
        predictor.predict(str(path), **({"out": tmp_path / "out"} if to_disk else {}))
    assert not calls and info.value.fix
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_hostile_files_are_refused_in_bounded_memory(tmp_path):
    """All hostile files in one fresh process: the peak RSS grows by less than 64 MB (the 100000 x 100000
    claims would need 10 GB decoded)."""
    import json
    import subprocess
    import sys

    pytest.importorskip("tifffile", reason="TIFF cases need the large extra (tifffile)")
    paths = {}
    for kind in HOSTILE:
        data, _, env = _hostile(kind, tmp_path)
        if env:
            continue  # the bomb is refused by a lowered limit: by the default limit it is a legal image
        paths[kind] = tmp_path / f"{len(paths)}{SUFFIX[kind[:3]]}"
        paths[kind].write_bytes(data)
    script = f"""
import json
from segrt.errors import InputError
from segrt.io.sources import open_image
def status(key):
    return next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith(key))
paths = {json.dumps({k: str(v) for k, v in paths.items()})}
import segrt.io.images, tifffile  # imports are not what is measured
base = status('VmRSS:')
open('/proc/self/clear_refs', 'w').write('5')
refused = []
for kind, path in paths.items():
    try:
        open_image(path)
    except InputError:
        refused.append(kind)
print(json.dumps({{'refused': refused, 'grew': status('VmHWM:') - base}}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["refused"] == list(paths)
    assert report["grew"] < 64 * 2**20
