"""Static int8 quantization of a segrt ONNX file (U-Net or Mask R-CNN) for ONNX Runtime on the CPU.

Calibrated on real images: the calibration reader feeds exactly what the segrt
predictor would feed (U-Net: the same normalized overlap tiles; Mask R-CNN: the
same resized, padded canvas), so the activation ranges are those seen in
deployment. Weights are int8 per
channel, activations uint8 (ONNX Runtime's U8S8 kernels, which use AVX-512
VNNI / AVX-VNNI where the CPU has them). Only convolutions are quantized; the
softmax and everything after it stay float. The result carries the same segrt
metadata plus a ``quantization`` entry, so ``segrt.load`` treats it like any
other U-Net file. Always check the accuracy of the quantized model on held-out
data (``segrt eval``): ``segrt demo`` reports both.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import onnx

from segrt.artifact import metadata as md
from segrt.errors import BackendUnavailableError, InputError
from segrt.io.files import atomic_path


def calibration_images(folder: str | Path) -> list[np.ndarray]:
    """The images of a split folder (``folder/images``) or of a plain folder of .png/.tif/.jpg files."""
    from segrt.io.images import read_image

    folder = Path(folder)
    folder = folder / "images" if (folder / "images").is_dir() else folder
    paths = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".png", ".tif", ".tiff", ".jpg", ".jpeg"))
    if not paths:
        raise InputError(f"no calibration images in {folder}", "pass a folder of images like the deployment data")
    return [read_image(p) for p in paths]


def _calibration_feeds(onnx_path: Path, images: list[np.ndarray], max_tile: int | None) -> list[dict]:
    """The feeds the predictor gives its backend for the calibration images, exactly as at inference.

    The predictor runs on every image, so calibration always sees what ``predict`` feeds
    (U-Net tiles, one per feed; the Mask R-CNN canvas). More varied activations from few
    images: U-Net sees the 4 rotations, Mask R-CNN the image and its mirror.
    """
    import segrt
    from segrt.predictor import FeedRecorder

    predictor = segrt.load(onnx_path)
    if predictor.kind == "unet":
        views = [np.ascontiguousarray(np.rot90(image, k)) for image in images for k in range(4)]
        options = {"batch": 1, **({"tile": max_tile} if max_tile else {})}
    else:
        views = [v for image in images for v in (image, np.ascontiguousarray(image[:, ::-1]))]
        options = {}
    with FeedRecorder(predictor) as recorder:
        for view in views:
            predictor.predict(view, **options)
    return recorder.feeds


def quantize_int8(
    onnx_path: str | Path, out: str | Path, calibration_images: list[np.ndarray], max_tile: int | None = None
) -> Path:
    """Write an int8 (QDQ, per-channel) copy of a segrt ``.onnx`` calibrated on ``calibration_images``.

    Only convolutions are quantized. For Mask R-CNN that is the backbone, FPN, RPN
    head and mask head; the box head (fully connected), NMS and RoIAlign stay float.

    Args:
        onnx_path: fp32 model written by ``segrt export`` (U-Net, or a portable Mask R-CNN graph).
        out: the int8 ``.onnx`` to write (atomically).
        calibration_images: [H, W] or [H, W, C] images like the deployment data (e.g. the training split).
        max_tile: calibrate at this tile size (default: the model's ``tile_size``).
    """
    try:
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as exc:
        raise BackendUnavailableError(
            f"onnxruntime.quantization is not available ({exc})", "pip install -U onnxruntime"
        ) from None
    onnx_path, out = Path(onnx_path), Path(out)
    if not calibration_images:
        raise InputError(
            "int8 quantization needs at least one calibration image",
            "pass images like the ones the model will see (e.g. the training split)",
        )
    source = onnx.load(str(onnx_path))
    meta = md.decode({p.key: p.value for p in source.metadata_props}.get(md.METADATA_KEY), str(onnx_path))
    if meta.get("graph") == "tensorrt":
        raise InputError(f"{onnx_path} is a TensorRT graph (plugin nodes)", "quantize the portable graph instead")
    feeds = _calibration_feeds(onnx_path, calibration_images, max_tile)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self):
            return next(self._it, None)

    with tempfile.TemporaryDirectory() as tmp, atomic_path(out) as tmp_out:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(onnx_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(tmp_out),
            Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["Conv"],
            extra_options={"ActivationSymmetric": False},
        )
        model = onnx.load(str(tmp_out))
        meta["quantization"] = {
            "format": "QDQ",
            "weights": "int8 per-channel",
            "activations": "uint8",
            "ops": ["Conv"],
            "calibration_feeds": len(feeds),
            "method": "MinMax",
        }
        del model.metadata_props[:]
        onnx.helper.set_model_props(model, {md.METADATA_KEY: json.dumps(meta, sort_keys=True)})
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp_out))
    return out
