"""torchvision Mask R-CNN / Keypoint R-CNN -> portable ONNX graph (standard ops only), with metadata.

``torch_to_onnx(model, cfg, class_names, path, ...)`` traces ``DeployRCNN`` with
the TorchScript exporter (it records the exact ONNX ops we ask for, including
RoiAlign's ``coordinate_transformation_mode`` at opset >= 16 and our explicit
``NonMaxSuppression``), writes the file atomically, checks it, and embeds the
segrt metadata. The TensorRT variant is derived from this file by
``segrt.export.maskrcnn.trt_graph.portable_to_tensorrt``.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

import segrt
from segrt.artifact import metadata as md
from segrt.errors import InputError
from segrt.export import DEFAULT_OPSET
from segrt.export.maskrcnn.deploy import DeployRCNN
from segrt.export.maskrcnn.models import MaskRCNNConfig
from segrt.io.files import atomic_path
from segrt.rcnn.keypoints import COCO_KEYPOINT_NAMES

# A fixed example the trace runs on; parity is always checked on other images.
_TRACE_SEED = 1234


def build_metadata(
    deploy: DeployRCNN, cfg: MaskRCNNConfig, class_names: list[str], graph: str, opset: int
) -> dict[str, Any]:
    """The segrt metadata of a Mask R-CNN artifact (keys documented in ``segrt.rcnn.predictor``)."""
    model = deploy.model
    meta: dict[str, Any] = {
        "kind": cfg.kind,
        "arch": cfg.arch,
        "class_names": list(class_names),
        "input_channels": 3,
        "normalization": {
            "scale": deploy.pixel_scale,
            "mean": list(model.transform.image_mean),
            "std": list(model.transform.image_std),
        },
        "input_size": list(deploy.input_hw),
        "input_dtype": deploy.input_dtype,
        "resize": {"min_size": int(model.transform.min_size[-1]), "max_size": int(model.transform.max_size)},
        "score_thresh": deploy.score_thresh,
        "nms_iou": deploy.nms_iou,
        "max_detections": deploy.max_detections,
        "num_proposals": deploy.num_proposals,
        "graph": graph,
        "outputs": deploy.output_names,
        "segrt_version": segrt.__version__,
        "opset": opset,
    }
    if deploy.has_masks:
        meta["mask_size"] = 2 * int(deploy.mask_pool.output_size[0])  # the predictor upsamples 2x
    if deploy.has_keypoints:
        k = int(model.roi_heads.keypoint_predictor.kps_score_lowres.out_channels)
        meta["num_keypoints"] = k
        names = list(cfg.keypoint_names) or (list(COCO_KEYPOINT_NAMES) if k == len(COCO_KEYPOINT_NAMES) else [])
        if names:
            meta["keypoint_names"] = names
    return meta


def write_onnx(model_proto: onnx.ModelProto, meta: dict[str, Any], path: str | Path) -> Path:
    """Embed ``meta`` under ``metadata_props["segrt"]``, write atomically, then run the ONNX checker."""
    del model_proto.metadata_props[:]
    entry = model_proto.metadata_props.add()
    entry.key, entry.value = md.METADATA_KEY, md.encode(meta)
    path = Path(path)
    with atomic_path(path) as tmp:
        onnx.save(model_proto, str(tmp))
        onnx.checker.check_model(str(tmp))
    return path


def trace_to_proto(deploy: DeployRCNN, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """Trace the deploy wrapper to an in-memory ONNX model (portable ops only)."""
    if opset < 16:
        raise InputError(
            f"opset {opset} is too old for Mask R-CNN export",
            "use opset >= 17 (RoiAlign needs >= 16 to carry torchvision's aligned flag)",
        )
    H, W = deploy.input_hw
    g = torch.Generator().manual_seed(_TRACE_SEED)
    if deploy.input_dtype == "uint8":
        image = torch.randint(0, 256, (1, 3, H, W), generator=g, dtype=torch.uint8)
    else:
        image = torch.rand(1, 3, H, W, generator=g)
    size = torch.tensor([float(H), float(W)])
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about data-dependent shapes are expected here
        torch.onnx.export(
            deploy,
            (image, size),
            buf,
            dynamo=False,
            opset_version=opset,
            input_names=["image", "image_size"],
            output_names=deploy.output_names,
            do_constant_folding=True,
        )
    return onnx.load_from_string(buf.getvalue())


def torch_to_onnx(
    model: nn.Module,
    cfg: MaskRCNNConfig,
    class_names: list[str],
    path: str | Path,
    input_size: tuple[int, int] = (512, 512),
    input_dtype: str = "float32",
    score_thresh: float | None = None,
    nms_iou: float | None = None,
    max_detections: int | None = None,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Export the portable ONNX graph of a torchvision Mask R-CNN / Keypoint R-CNN.

    Args:
        model: torchvision ``MaskRCNN`` / ``KeypointRCNN`` (weights loaded).
        cfg: its config (kind, arch and resize rule go into the metadata).
        class_names: index 0 is "__background__"; length = num_classes.
        path: output ``.onnx`` file (written atomically).
        input_size: fixed graph input (H, W), multiples of 32.
        input_dtype: "float32" ([0, 1]) or "uint8".
        score_thresh, nms_iou, max_detections: None = the model's own settings.

    Returns:
        ``path``.
    """
    if len(class_names) != cfg.num_classes:
        raise InputError(
            f"{len(class_names)} class names for a model with {cfg.num_classes} classes",
            "pass one name per class, '__background__' first",
        )
    deploy = DeployRCNN(model.eval(), input_size, input_dtype, score_thresh, nms_iou, max_detections)
    proto = trace_to_proto(deploy, opset)
    return write_onnx(proto, build_metadata(deploy, cfg, class_names, "portable", opset), path)
