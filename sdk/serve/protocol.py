"""The wire format of a segrt pipeline model: tensor names, image checks, result (de)serialization.

One module, used by both ends: the Triton Python-backend model (``segrt.serve.triton_model``)
encodes results with it and the client (``segrt.serve.client``) decodes them, so the two
cannot drift.

Request: exactly one image input, the batch dimension first when the model batches
(``max_batch_size > 0``; the batch must then be 1, Triton's dynamic batcher groups
requests server-side):

    image          UINT8   [H, W, C]  \\
    image_uint16   UINT16  [H, W, C]   } pixel arrays, any H and W, C as the model takes
    image_float32  FP32    [H, W, C]  /  (values as local predict takes them)
    encoded        UINT8   [n]        PNG/JPEG/TIFF file bytes (a UINT8 vector, not a BYTES
                                      tensor: no length prefix, and it travels zero-copy)
    tta            UINT8   [1]        U-Net only, optional: 1 = average the 8 flips/rotations

Response, U-Net (``SegmentationResult``):

    classes    UINT8 [H, W]; instances INT32 [H, W]; probs FP32 [K, H, W] (only when requested)

Response, Mask R-CNN / Keypoint R-CNN (``Instances``); masks travel as per-instance crops,
never as a dense [N, H, W]:

    boxes FP32 [N, 4] x1y1x2y2 px; scores FP32 [N]; labels INT64 [N]; image_size INT32 [2] (H, W)
    mask_boxes INT32 [N, 4]   x0, y0, x1, y1 (end exclusive): the tight box of each mask's pixels
    mask_bits  UINT8 [m]      np.packbits of the crops, each flattened row-major, concatenated
    keypoints  FP32 [N, K, 3] keypointrcnn only
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from segrt.errors import InputError
from segrt.io.images import decode_image
from segrt.io.preprocess import check_image

IMAGE_INPUTS: dict[str, str] = {"uint8": "image", "uint16": "image_uint16", "float32": "image_float32"}
ENCODED_INPUT = "encoded"
TTA_INPUT = "tta"
TRITON_DTYPES: dict[str, str] = {
    "image": "UINT8",
    "image_uint16": "UINT16",
    "image_float32": "FP32",
    "encoded": "UINT8",
    "tta": "UINT8",
}

UNET_OUTPUTS: dict[str, tuple[str, list[int]]] = {
    "classes": ("UINT8", [-1, -1]),
    "instances": ("INT32", [-1, -1]),
    "probs": ("FP32", [-1, -1, -1]),
}
RCNN_OUTPUTS: dict[str, tuple[str, list[int]]] = {
    "boxes": ("FP32", [-1, 4]),
    "scores": ("FP32", [-1]),
    "labels": ("INT64", [-1]),
    "image_size": ("INT32", [2]),
    "mask_boxes": ("INT32", [-1, 4]),
    "mask_bits": ("UINT8", [-1]),
}
KEYPOINT_OUTPUTS: dict[str, tuple[str, list[int]]] = {"keypoints": ("FP32", [-1, -1, 3])}

# A pipeline model refuses images above this many pixels unless configured otherwise
# (`max_pixels` in its config): one request must not take a server's memory.
DEFAULT_MAX_PIXELS = 40_000_000
# U-Net probabilities (K x 4 bytes per pixel in the response) and test-time augmentation (8 passes)
# have their own limits (`max_probs_pixels`, `max_tta_pixels`); above them a request asking for
# them is refused before any work.
DEFAULT_MAX_PROBS_PIXELS = 40_000_000
DEFAULT_MAX_TTA_PIXELS = 16_000_000
# Header that unlocks the operator's APIs of a segrt server (repository, shared memory, logging, ...)
ADMIN_HEADER = "segrt-admin-key"
# Channels an image may have (grey, grey+alpha, RGB, RGBA), checked before any pass over the pixels.
MAX_CHANNELS = 4


def outputs_for(kind: str) -> dict[str, tuple[str, list[int]]]:
    """Output tensors (name -> (Triton dtype, dims without batch)) of a pipeline model of ``kind``."""
    if kind == "unet":
        return dict(UNET_OUTPUTS)
    return {**RCNN_OUTPUTS, **(KEYPOINT_OUTPUTS if kind == "keypointrcnn" else {})}


def image_input_name(image: np.ndarray) -> str:
    """The request input that carries an array of this dtype (client side; float64 is sent as float32)."""
    if image.dtype == np.float64:
        return IMAGE_INPUTS["float32"]
    name = IMAGE_INPUTS.get(str(image.dtype))
    if name is None:
        raise InputError(
            f"a served model takes uint8, uint16 or float32 images, not {image.dtype}",
            "convert it first, e.g. image.astype(np.uint16), or send the file bytes with predict_encoded",
        )
    return name


def as_request_image(image: np.ndarray) -> np.ndarray:
    """An image as the [H, W, C] array a request carries: grey gains a channel axis, float64 becomes float32.

    The conversions change no value local ``predict`` would compute: both predictors take
    [H, W] and [H, W, 1] alike and convert floats to float32 first.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.dtype == np.float64:
        image = image.astype(np.float32)
    image_input_name(image)
    return np.ascontiguousarray(image)


def check_pixels(h: int, w: int, max_pixels: int) -> None:
    """Refuse an image of more than ``max_pixels`` pixels (before any decoding or processing)."""
    if h * w > max_pixels:
        raise InputError(
            f"image of {h} x {w} = {h * w / 1e6:.1f} megapixels exceeds this server's limit of "
            f"{max_pixels / 1e6:.1f} megapixels",
            "split the image into tiles, or raise max_pixels when writing the model repository",
        )


def check_request_image(image: np.ndarray, max_pixels: int, channels: int | None = None) -> np.ndarray:
    """Server-side checks of an [H, W, C] request array, cheapest first: rank, size limit and channel
    count from the shape alone, then the predictors' own check (which reads every value for NaN).

    ``channels``: the count the model takes (None: 1 to :data:`MAX_CHANNELS`).
    """
    if image.ndim != 3:
        raise InputError(
            f"a request image has shape [H, W, C], got {list(image.shape)}", "send one [H, W, C] image per request"
        )
    h, w, c = image.shape
    check_pixels(h, w, max_pixels)
    if channels is not None and c != channels:
        raise InputError(
            f"this model takes {channels}-channel images, got {c} channels",
            "convert the image (e.g. grey to RGB with np.repeat) before sending it",
        )
    if not 1 <= c <= MAX_CHANNELS and image.size:
        raise InputError(f"an image has 1 to {MAX_CHANNELS} channels, got {c}", "send [H, W, C] with C <= 4")
    check_image(image)
    return image


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
TIFF_MAGICS = (b"II*\x00", b"MM\x00*")
# JPEG start-of-frame markers (SOF0..SOF15 except DHT C4, JPG C8, DAC CC): they carry the frame size
_JPEG_SOF = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_TIFF_WIDTH, _TIFF_LENGTH, _TIFF_SAMPLES = 256, 257, 277


def encoded_format(data: bytes | np.ndarray) -> str | None:
    """'png', 'jpeg' or 'tiff' from the file's magic bytes; None for anything else."""
    head = bytes(data[:8]) if isinstance(data, (bytes, bytearray)) else np.asarray(data[:8]).tobytes()
    if head.startswith(PNG_MAGIC):
        return "png"
    if head.startswith(JPEG_MAGIC):
        return "jpeg"
    if head[:4] in TIFF_MAGICS:
        return "tiff"
    return None


def _jpeg_size(b: memoryview) -> tuple[int, int, int] | None:
    """(H, W, channels) from the first start-of-frame segment, wherever it lies (EXIF may come first)."""
    i, n = 2, len(b)
    while i + 4 <= n:
        if b[i] != 0xFF:
            return None
        marker = b[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            i += 2
            continue
        length = struct.unpack(">H", b[i + 2 : i + 4])[0]
        if marker in _JPEG_SOF:
            if i + 10 > n:
                return None
            h, w = struct.unpack(">HH", b[i + 5 : i + 9])
            return int(h), int(w), int(b[i + 9])
        if marker == 0xDA or length < 2:  # scan data before any frame header: malformed
            return None
        i += 2 + length
    return None


def _tiff_size(b: memoryview) -> tuple[int, int, int] | None:
    """(H, W, samples per pixel) from the first IFD of a classic TIFF (the page OpenCV decodes)."""
    if len(b) < 8:
        return None
    end = "<" if bytes(b[:2]) == b"II" else ">"
    (ifd,) = struct.unpack(end + "I", b[4:8])
    if ifd + 2 > len(b):
        return None
    (count,) = struct.unpack(end + "H", b[ifd : ifd + 2])
    tags: dict[int, int] = {}
    for k in range(count):
        at = ifd + 2 + 12 * k
        if at + 12 > len(b):
            return None
        tag, typ, num = struct.unpack(end + "HHI", b[at : at + 8])
        if tag in (_TIFF_WIDTH, _TIFF_LENGTH, _TIFF_SAMPLES) and num == 1:
            tags[tag] = struct.unpack(end + ("H" if typ == 3 else "I"), b[at + 8 : at + (10 if typ == 3 else 12)])[0]
    if _TIFF_WIDTH not in tags or _TIFF_LENGTH not in tags:
        return None
    return int(tags[_TIFF_LENGTH]), int(tags[_TIFF_WIDTH]), int(tags.get(_TIFF_SAMPLES, 1))


def encoded_header(data: bytes | np.ndarray) -> tuple[str, int, int, int]:
    """(format, H, W, channels) read from a PNG, JPEG or TIFF header without decoding anything.

    InputError for any other format, and for a header that does not give the size: a server
    decodes only what it has sized first.
    """
    fmt = encoded_format(data)
    if fmt is None:
        raise InputError(
            "the encoded image is not a PNG, JPEG or TIFF file (by its first bytes)",
            "send the bytes of a PNG, JPEG or TIFF file, or the pixels as an array",
        )
    raw: Any = data if isinstance(data, (bytes, bytearray)) else np.ascontiguousarray(data).view(np.uint8)
    b = memoryview(raw).cast("B")
    size: tuple[int, int, int] | None
    if fmt == "png":
        size = None
        if len(b) >= 26 and bytes(b[12:16]) == b"IHDR":
            w, h = struct.unpack(">II", b[16:24])
            size = (int(h), int(w), {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(int(b[25]), 0))
    elif fmt == "jpeg":
        size = _jpeg_size(b)
    else:
        size = _tiff_size(b)
    if size is None:
        raise InputError(
            f"the {fmt.upper()} header gives no image size (truncated or malformed file)",
            "send the complete bytes of the file",
        )
    return (fmt, *size)


def encoded_size(data: bytes | np.ndarray) -> tuple[int, int] | None:
    """(H, W) read from a PNG, JPEG or TIFF header without decoding; None when the header does not give it."""
    try:
        return encoded_header(data)[1:3]
    except InputError:
        return None


def decode_request_image(data: np.ndarray, max_pixels: int) -> np.ndarray:
    """Decode PNG/JPEG/TIFF bytes (uint8 [n]) as ``read_image`` reads a file: unchanged depth, colour as RGB.

    Only these three formats (by magic bytes) are decoded, and only after their header gave a size
    and channel count within the limits.
    """
    data = np.ascontiguousarray(np.asarray(data, dtype=np.uint8).reshape(-1))
    if data.size == 0:
        raise InputError("the encoded image is empty (0 bytes)", "send the bytes of a PNG, JPEG or TIFF file")
    fmt, h, w, c = encoded_header(data)
    check_pixels(h, w, max_pixels)
    if not 1 <= c <= MAX_CHANNELS:
        raise InputError(f"the {fmt.upper()} image has {c} channels", f"send 1 to {MAX_CHANNELS} channels")
    img = decode_image(data)
    if img is None:
        raise InputError(
            f"the encoded image ({data.size} bytes) cannot be decoded",
            "send the complete bytes of a PNG, JPEG or TIFF file",
        )
    check_pixels(img.shape[0], img.shape[1], max_pixels)
    return img


# -- Mask R-CNN masks as crops ----------------------------------------------------------------
def masks_to_crops(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """bool [N, H, W] -> (mask_boxes int32 [N, 4] x0y0x1y1 end-exclusive, mask_bits uint8 [m])."""
    n = masks.shape[0]
    boxes = np.zeros((n, 4), np.int32)
    crops = []
    for i in range(n):
        rows, cols = np.flatnonzero(masks[i].any(axis=1)), np.flatnonzero(masks[i].any(axis=0))
        if rows.size:
            y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
            boxes[i] = (x0, y0, x1, y1)
            crops.append(masks[i, y0:y1, x0:x1].ravel())
    bits = np.packbits(np.concatenate(crops)) if crops else np.zeros(0, np.uint8)
    return boxes, bits


def crops_to_masks(mask_boxes: np.ndarray, mask_bits: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`masks_to_crops`: bool [N, H, W]."""
    n = mask_boxes.shape[0]
    sizes = [(int(b[3] - b[1]), int(b[2] - b[0])) for b in mask_boxes]
    total = sum(h * w for h, w in sizes)
    flat = np.unpackbits(np.asarray(mask_bits, np.uint8), count=total).astype(bool)
    masks = np.zeros((n, image_hw[0], image_hw[1]), bool)
    at = 0
    for i, (h, w) in enumerate(sizes):
        if h * w:
            x0, y0 = int(mask_boxes[i][0]), int(mask_boxes[i][1])
            masks[i, y0 : y0 + h, x0 : x0 + w] = flat[at : at + h * w].reshape(h, w)
            at += h * w
    return masks


def encode_result(kind: str, result: Any, with_probs: bool = True) -> dict[str, np.ndarray]:
    """A predictor's result -> the response tensors (no batch dimension); U-Net outputs left None are left out."""
    if kind == "unet":
        out = {"classes": result.classes.astype(np.uint8, copy=False)}
        if result.instances is not None:
            out["instances"] = result.instances.astype(np.int32, copy=False)
        if with_probs and result.probs is not None:
            out["probs"] = result.probs.astype(np.float32, copy=False)
        return out
    out = {
        "boxes": result.boxes.astype(np.float32, copy=False),
        "scores": result.scores.astype(np.float32, copy=False),
        "labels": result.labels.astype(np.int64, copy=False),
        "image_size": np.asarray(result.image_hw, np.int32),
    }
    masks = result.masks if result.masks is not None else np.zeros((len(result), 0, 0), bool)
    out["mask_boxes"], out["mask_bits"] = masks_to_crops(masks)
    if kind == "keypointrcnn":
        out["keypoints"] = result.keypoints.astype(np.float32, copy=False)
    return out


def decode_result(
    kind: str, tensors: dict[str, np.ndarray], class_names: list[str], image: np.ndarray | None = None
) -> Any:
    """Response tensors (no batch dimension) -> ``SegmentationResult`` or ``Instances``, as local predict returns."""
    if kind == "unet":
        from segrt.unet.predictor import SegmentationResult

        return SegmentationResult(tensors.get("probs"), tensors["classes"], tensors.get("instances"))
    from segrt.rcnn.instances import Instances

    h, w = (int(v) for v in tensors["image_size"])
    labels = tensors["labels"].astype(np.int64)
    names = [class_names[i] if 0 <= i < len(class_names) else str(i) for i in labels]
    masks = crops_to_masks(tensors["mask_boxes"], tensors["mask_bits"], (h, w)) if kind == "maskrcnn" else None
    return Instances(tensors["boxes"], tensors["scores"], labels, names, masks, tensors.get("keypoints"), (h, w), image)
