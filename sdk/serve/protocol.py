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
TRITON_DTYPES: dict[str, str] = {"image": "UINT8", "image_uint16": "UINT16", "image_float32": "FP32",
                                 "encoded": "UINT8", "tta": "UINT8"}

UNET_OUTPUTS: dict[str, tuple[str, list[int]]] = {
    "classes": ("UINT8", [-1, -1]), "instances": ("INT32", [-1, -1]), "probs": ("FP32", [-1, -1, -1])}
RCNN_OUTPUTS: dict[str, tuple[str, list[int]]] = {
    "boxes": ("FP32", [-1, 4]), "scores": ("FP32", [-1]), "labels": ("INT64", [-1]),
    "image_size": ("INT32", [2]), "mask_boxes": ("INT32", [-1, 4]), "mask_bits": ("UINT8", [-1])}
KEYPOINT_OUTPUTS: dict[str, tuple[str, list[int]]] = {"keypoints": ("FP32", [-1, -1, 3])}

# A pipeline model refuses images above this many pixels unless configured otherwise
# (`max_pixels` in its config): one request must not take a server's memory.
DEFAULT_MAX_PIXELS = 40_000_000


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
        raise InputError(f"a served model takes uint8, uint16 or float32 images, not {image.dtype}",
                         "convert it first, e.g. image.astype(np.uint16), or send the file bytes with predict_encoded")
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
        raise InputError(f"image of {h} x {w} = {h * w / 1e6:.1f} megapixels exceeds this server's limit of "
                         f"{max_pixels / 1e6:.1f} megapixels",
                         "split the image into tiles, or raise max_pixels when writing the model repository")


def check_request_image(image: np.ndarray, max_pixels: int) -> np.ndarray:
    """Server-side checks of an [H, W, C] request array: the predictors' own check, then the size limit."""
    check_image(image)
    check_pixels(image.shape[0], image.shape[1], max_pixels)
    return image


def encoded_size(data: bytes | np.ndarray) -> tuple[int, int] | None:
    """(H, W) read from a PNG or JPEG header without decoding, or None for other formats.

    Lets a server refuse a small file that would decode to a huge image.
    """
    b = bytes(data[:65536]) if isinstance(data, (bytes, bytearray)) else np.asarray(data[:65536]).tobytes()
    if b[:8] == b"\x89PNG\r\n\x1a\n" and len(b) >= 24 and b[12:16] == b"IHDR":
        w, h = struct.unpack(">II", b[16:24])
        return int(h), int(w)
    if b[:2] == b"\xff\xd8":  # JPEG: walk the segments to the first start-of-frame marker
        i = 2
        while i + 9 < len(b):
            if b[i] != 0xFF:
                return None
            marker, length = b[i + 1], struct.unpack(">H", b[i + 2:i + 4])[0]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                h, w = struct.unpack(">HH", b[i + 5:i + 9])
                return int(h), int(w)
            i += 2 + length
    return None


def decode_request_image(data: np.ndarray, max_pixels: int) -> np.ndarray:
    """Decode PNG/JPEG/TIFF bytes (uint8 [n]) as ``read_image`` reads a file: unchanged depth, colour as RGB."""
    data = np.ascontiguousarray(np.asarray(data, dtype=np.uint8).reshape(-1))
    if data.size == 0:
        raise InputError("the encoded image is empty (0 bytes)", "send the bytes of a PNG, JPEG or TIFF file")
    hw = encoded_size(data)
    if hw is not None:
        check_pixels(*hw, max_pixels)
    img = decode_image(data)
    if img is None:
        raise InputError(f"the encoded image ({data.size} bytes) cannot be decoded",
                         "send the complete bytes of a PNG, JPEG or TIFF file")
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
            masks[i, y0:y0 + h, x0:x0 + w] = flat[at:at + h * w].reshape(h, w)
            at += h * w
    return masks


def encode_result(kind: str, result: Any, with_probs: bool = True) -> dict[str, np.ndarray]:
    """A predictor's result -> the response tensors (no batch dimension)."""
    if kind == "unet":
        out = {"classes": result.classes.astype(np.uint8, copy=False),
               "instances": result.instances.astype(np.int32, copy=False)}
        if with_probs:
            out["probs"] = result.probs.astype(np.float32, copy=False)
        return out
    out = {"boxes": result.boxes.astype(np.float32, copy=False), "scores": result.scores.astype(np.float32, copy=False),
           "labels": result.labels.astype(np.int64, copy=False),
           "image_size": np.asarray(result.image_hw, np.int32)}
    masks = result.masks if result.masks is not None else np.zeros((len(result), 0, 0), bool)
    out["mask_boxes"], out["mask_bits"] = masks_to_crops(masks)
    if kind == "keypointrcnn":
        out["keypoints"] = result.keypoints.astype(np.float32, copy=False)
    return out


def decode_result(kind: str, tensors: dict[str, np.ndarray], class_names: list[str],
                  image: np.ndarray | None = None) -> Any:
    """Response tensors (no batch dimension) -> ``SegmentationResult`` or ``Instances``, as local predict returns."""
    if kind == "unet":
        from segrt.unet.predictor import SegmentationResult
        return SegmentationResult(tensors.get("probs"), tensors["classes"], tensors["instances"])
    from segrt.rcnn.instances import Instances
    h, w = (int(v) for v in tensors["image_size"])
    labels = tensors["labels"].astype(np.int64)
    names = [class_names[i] if 0 <= i < len(class_names) else str(i) for i in labels]
    masks = crops_to_masks(tensors["mask_boxes"], tensors["mask_bits"], (h, w)) if kind == "maskrcnn" else None
    return Instances(tensors["boxes"], tensors["scores"], labels, names, masks, tensors.get("keypoints"), (h, w),
                     image)
