"""Model builders: torchvision Mask R-CNN / Keypoint R-CNN from a config dataclass.

torchvision is the model definition; this module only picks constructor
arguments. No weights are ever downloaded: every builder passes
``weights=None, weights_backbone=None``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models import resnet18, resnet34
from torchvision.models.detection import (
    KeypointRCNN,
    MaskRCNN,
    keypointrcnn_resnet50_fpn,
    maskrcnn_resnet50_fpn,
    maskrcnn_resnet50_fpn_v2,
)
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN, resnet_fpn_backbone
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.keypoint_rcnn import KeypointRCNNHeads, KeypointRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from segrt.errors import ArtifactError, InputError

# arch name -> model kind written into checkpoints and artifacts
ARCHS: dict[str, str] = {
    "resnet18_fpn": "maskrcnn",
    "resnet34_fpn": "maskrcnn",
    "maskrcnn_resnet50_fpn": "maskrcnn",
    "maskrcnn_resnet50_fpn_v2": "maskrcnn",
    "keypointrcnn_resnet18_fpn": "keypointrcnn",
    "keypointrcnn_resnet34_fpn": "keypointrcnn",
    "keypointrcnn_resnet50_fpn": "keypointrcnn",
    "maskrcnn_resnet101_fpn": "maskrcnn",
    "maskrcnn_resnext50_32x4d_fpn": "maskrcnn",
    "maskrcnn_resnext101_32x8d_fpn": "maskrcnn",
    "keypointrcnn_resnet101_fpn": "keypointrcnn",
    "keypointrcnn_resnext50_32x4d_fpn": "keypointrcnn",
    "keypointrcnn_resnext101_32x8d_fpn": "keypointrcnn",
}
# the small archs: our narrow resnet-FPN, one body per name
SMALL_BODIES = {
    "resnet18_fpn": resnet18,
    "resnet34_fpn": resnet34,
    "keypointrcnn_resnet18_fpn": resnet18,
    "keypointrcnn_resnet34_fpn": resnet34,
}

# the paper's other bodies (Mask R-CNN, He et al. 2017, tables 2a and 3): torchvision's
# resnet_fpn_backbone(backbone_name=...) under torchvision's own R50 heads, so a state dict saved from
# MaskRCNN(resnet_fpn_backbone(backbone_name=body, ...), num_classes) loads key for key
FPN_BODIES: dict[str, str] = {
    "maskrcnn_resnet101_fpn": "resnet101",
    "maskrcnn_resnext50_32x4d_fpn": "resnext50_32x4d",
    "maskrcnn_resnext101_32x8d_fpn": "resnext101_32x8d",
    "keypointrcnn_resnet101_fpn": "resnet101",
    "keypointrcnn_resnext50_32x4d_fpn": "resnext50_32x4d",
    "keypointrcnn_resnext101_32x8d_fpn": "resnext101_32x8d",
}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class MaskRCNNConfig:
    """Hyperparameters of a torchvision Mask R-CNN / Keypoint R-CNN (all torchvision names).

    ``arch`` picks the model: ``resnet18_fpn``/``resnet34_fpn`` (Mask R-CNN) and
    ``keypointrcnn_resnet18_fpn``/``keypointrcnn_resnet34_fpn`` are narrow resnet-FPNs
    (``fpn_channels`` wide, lighter heads); the ``*_resnet50_fpn*`` archs are torchvision's own;
    the ``*_resnet101_fpn``, ``*_resnext50_32x4d_fpn`` and ``*_resnext101_32x8d_fpn`` archs are
    torchvision's ``resnet_fpn_backbone`` of that body with the R50 archs' heads (``FPN_BODIES``).

    The defaults are the small demo model: resnet18-FPN from random init with
    BatchNorm (trainable from scratch, folded into the convs on export), small
    anchors for ~10-30 px nuclei, and fewer RPN proposals than the paper so a
    CPU step is cheap. For the paper's model use ``arch="maskrcnn_resnet50_fpn"``
    and ``MaskRCNNConfig.paper()``.
    """

    arch: str = "resnet18_fpn"
    num_classes: int = 2  # including background
    num_keypoints: int = 17  # keypointrcnn only
    keypoint_names: tuple[str, ...] = ()  # keypointrcnn: from the training data (empty: COCO's 17)
    min_size: int = 512  # shorter image side after resize
    max_size: int = 512  # longer side cap
    image_mean: tuple[float, ...] = IMAGENET_MEAN
    image_std: tuple[float, ...] = IMAGENET_STD
    anchor_sizes: tuple[int, ...] = (8, 16, 32, 64, 128)  # one per FPN level P2..P6
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    rpn_pre_nms_top_n_train: int = 1000
    rpn_post_nms_top_n_train: int = 300
    rpn_pre_nms_top_n_test: int = 500
    rpn_post_nms_top_n_test: int = 300
    rpn_batch_size_per_image: int = 256
    box_batch_size_per_image: int = 128  # RoIs sampled per image (1:3 positive:negative)
    box_score_thresh: float = 0.05
    box_nms_thresh: float = 0.5
    box_detections_per_img: int = 100
    norm: str = "batchnorm"  # backbone norm for small archs: batchnorm | frozen
    # widths of the small archs (resnet18/34-FPN); the resnet50 archs keep torchvision's 256/1024/256
    fpn_channels: int = 64
    box_head_dim: int = 256
    mask_head_channels: int = 64
    keypoint_head_channels: int = 64  # torchvision's R50 keypoint head: 8 x 512
    keypoint_head_layers: int = 4

    @staticmethod
    def paper(arch: str = "maskrcnn_resnet50_fpn", num_classes: int = 91) -> MaskRCNNConfig:
        """torchvision's own defaults (the paper's test settings: 1000 proposals, 800/1333)."""
        return MaskRCNNConfig(
            arch=arch,
            num_classes=num_classes,
            min_size=800,
            max_size=1333,
            anchor_sizes=(32, 64, 128, 256, 512),
            rpn_pre_nms_top_n_train=2000,
            rpn_post_nms_top_n_train=2000,
            rpn_pre_nms_top_n_test=1000,
            rpn_post_nms_top_n_test=1000,
            box_batch_size_per_image=512,
            norm="frozen",
        )

    @property
    def kind(self) -> str:
        return ARCHS[self.arch]

    @staticmethod
    def from_dict(d: dict[str, Any]) -> MaskRCNNConfig:
        known = {f for f in MaskRCNNConfig.__dataclass_fields__}
        kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in known}
        return MaskRCNNConfig(**kwargs)


def _torchvision_kwargs(cfg: MaskRCNNConfig) -> dict[str, Any]:
    anchors = AnchorGenerator(
        tuple((s,) for s in cfg.anchor_sizes), (tuple(cfg.aspect_ratios),) * len(cfg.anchor_sizes)
    )
    return dict(
        min_size=cfg.min_size,
        max_size=cfg.max_size,
        image_mean=list(cfg.image_mean),
        image_std=list(cfg.image_std),
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=cfg.rpn_pre_nms_top_n_train,
        rpn_post_nms_top_n_train=cfg.rpn_post_nms_top_n_train,
        rpn_pre_nms_top_n_test=cfg.rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_test=cfg.rpn_post_nms_top_n_test,
        rpn_batch_size_per_image=cfg.rpn_batch_size_per_image,
        box_batch_size_per_image=cfg.box_batch_size_per_image,
        box_score_thresh=cfg.box_score_thresh,
        box_nms_thresh=cfg.box_nms_thresh,
        box_detections_per_img=cfg.box_detections_per_img,
    )


def build_model(cfg: MaskRCNNConfig) -> MaskRCNN | KeypointRCNN:
    """A torchvision model for ``cfg`` with random weights (nothing downloaded)."""
    if cfg.arch not in ARCHS:
        raise InputError(f"unknown Mask R-CNN architecture {cfg.arch!r}", f"use one of: {', '.join(ARCHS)}")
    kwargs = _torchvision_kwargs(cfg)
    if cfg.arch in SMALL_BODIES:
        norm = {"batchnorm": nn.BatchNorm2d}.get(cfg.norm)
        if norm is None:
            from torchvision.ops.misc import FrozenBatchNorm2d

            norm = FrozenBatchNorm2d
        body = SMALL_BODIES[cfg.arch](weights=None, norm_layer=norm)
        c = cfg.fpn_channels
        # torchvision's resnet-FPN recipe (C2..C5 -> P2..P5 + max-pooled P6) with a narrower pyramid
        backbone = BackboneWithFPN(
            body,
            {f"layer{i}": str(i - 1) for i in range(1, 5)},
            [64, 128, 256, 512],
            c,
            extra_blocks=LastLevelMaxPool(),
        )
        box = dict(
            box_head=TwoMLPHead(c * 7 * 7, cfg.box_head_dim),
            box_predictor=FastRCNNPredictor(cfg.box_head_dim, cfg.num_classes),
        )
        if cfg.kind == "keypointrcnn":
            k = cfg.keypoint_head_channels
            return KeypointRCNN(
                backbone,
                num_classes=None,
                **box,
                keypoint_head=KeypointRCNNHeads(c, (k,) * cfg.keypoint_head_layers),
                keypoint_predictor=KeypointRCNNPredictor(k, cfg.num_keypoints),
                **kwargs,
            )
        return MaskRCNN(
            backbone,
            num_classes=None,
            **box,
            mask_head=MaskRCNNHeads(c, (cfg.mask_head_channels,) * 4, 1),
            mask_predictor=MaskRCNNPredictor(cfg.mask_head_channels, cfg.mask_head_channels, cfg.num_classes),
            **kwargs,
        )
    if cfg.arch in FPN_BODIES:
        return _fpn_body_model(cfg, kwargs)
    builder = {
        "maskrcnn_resnet50_fpn": maskrcnn_resnet50_fpn,
        "maskrcnn_resnet50_fpn_v2": maskrcnn_resnet50_fpn_v2,
        "keypointrcnn_resnet50_fpn": keypointrcnn_resnet50_fpn,
    }[cfg.arch]
    extra = {"num_keypoints": cfg.num_keypoints} if cfg.kind == "keypointrcnn" else {}
    if cfg.arch == "maskrcnn_resnet50_fpn_v2":
        # torchvision's v2 builder passes its own anchor generator (and an RPN head sized for it):
        # it can only take torchvision's anchors, so other anchors are refused rather than ignored
        if tuple(cfg.anchor_sizes) != (32, 64, 128, 256, 512) or tuple(cfg.aspect_ratios) != (0.5, 1.0, 2.0):
            raise InputError(
                "maskrcnn_resnet50_fpn_v2 uses torchvision's anchors (sizes 32..512, aspect ratios 0.5, 1, 2)",
                "leave --anchor-sizes at 32 64 128 256 512, or use maskrcnn_resnet50_fpn",
            )
        del kwargs["rpn_anchor_generator"]
    return builder(weights=None, weights_backbone=None, num_classes=cfg.num_classes, **kwargs, **extra)


def _fpn_body_model(cfg: MaskRCNNConfig, kwargs: dict[str, Any]) -> MaskRCNN | KeypointRCNN:
    """torchvision's detection class on ``resnet_fpn_backbone(FPN_BODIES[cfg.arch])``, random weights.

    Norm layer and trainable layers follow torchvision's ``maskrcnn_resnet50_fpn`` without
    pretrained weights (BatchNorm2d, all 5 stages trainable), so these archs train like the R50 ones.
    The FPN is 256 channels wide on C2..C5 (P2..P5 plus a max-pooled P6); the heads are torchvision's
    defaults: a 1024-wide two-layer box head, 4 x 256 mask convs, 8 x 512 keypoint convs.
    """
    backbone = resnet_fpn_backbone(
        backbone_name=FPN_BODIES[cfg.arch], weights=None, norm_layer=nn.BatchNorm2d, trainable_layers=5
    )
    if cfg.kind == "keypointrcnn":
        return KeypointRCNN(backbone, num_classes=cfg.num_classes, num_keypoints=cfg.num_keypoints, **kwargs)
    return MaskRCNN(backbone, num_classes=cfg.num_classes, **kwargs)


@torch.no_grad()
def calibrate_batchnorm(model: MaskRCNN | KeypointRCNN, images: list[torch.Tensor]) -> MaskRCNN | KeypointRCNN:
    """Set every BatchNorm's running statistics to those of ``images``; returns ``model`` in eval mode.

    A data-dependent init for random-weight models (tests, benchmarks): with BatchNorm's initial
    statistics (mean 0, var 1) a random ResNet-101's stage-4 activations grow to ~1e4 and the
    RPN's boxes degenerate, so the heads see no proposals at all. One pass of the model with its
    BatchNorms in training mode (cumulative average, ``momentum=None``) gives statistics like a
    trained model's. Weights are left as they are; FrozenBatchNorm2d is left alone.

    Args:
        images: float RGB ``Tensor[3, H, W]`` in [0, 1], any sizes (the model's transform resizes them).
    """
    if not images:
        raise InputError("calibrate_batchnorm needs at least one image", "pass one or more Tensor[3, H, W] images")
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    model.eval()
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        model(list(images))  # eval-mode inference path: no targets needed
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
            m.eval()
    return model


def _without_bn_counters(keys: list[str]) -> list[str]:
    """``keys`` less BatchNorm's ``num_batches_tracked``: FrozenBatchNorm2d (torchvision's default in
    ``resnet_fpn_backbone`` and in pretrained models) saves none, BatchNorm2d does, and both modules'
    loaders accept either, so a missing or extra counter is no mismatch."""
    return [k for k in keys if not k.endswith(".num_batches_tracked")]


def load_state_dict_checked(model: nn.Module, state_dict: dict[str, torch.Tensor], arch: str, source: str) -> None:
    """Load ``state_dict`` strictly; on mismatch raise ``ArtifactError`` listing the keys."""
    own = model.state_dict()
    missing = _without_bn_counters([k for k in own if k not in state_dict])
    unexpected = _without_bn_counters([k for k in state_dict if k not in own])
    wrong_shape = [
        f"{k}: file {tuple(state_dict[k].shape)} vs {arch} {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or wrong_shape:

        def show(keys: list[str]) -> str:
            return ", ".join(keys[:6]) + (f" (+{len(keys) - 6} more)" if len(keys) > 6 else "")

        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {show(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {show(unexpected)}")
        if wrong_shape:
            parts.append(f"{len(wrong_shape)} keys with another shape: {show(wrong_shape)}")
        raise ArtifactError(
            f"{source} does not fit architecture {arch!r}: " + "; ".join(parts),
            "pass the architecture and num_classes the weights were trained with "
            "(e.g. --arch maskrcnn_resnet50_fpn_v2, --num-classes 91)",
        )
    # BatchNorm2d refills a missing counter only for old state-dict versions: give it a zero one here
    state_dict = {
        **{k: v for k, v in own.items() if k.endswith(".num_batches_tracked")},
        **{k: v for k, v in state_dict.items() if k in own},
    }
    model.load_state_dict(state_dict, strict=True)


def load_torchvision_state_dict(
    path: str | Path, arch: str, num_classes: int, cfg: MaskRCNNConfig | None = None
) -> tuple[nn.Module, MaskRCNNConfig]:
    """Build ``arch`` and load a plain torchvision state dict (``weights_only=True``).

    Args:
        path: a ``.pth`` holding ``model.state_dict()`` of a torchvision detection model
            (or a dict with a ``"model"`` entry holding one, as torchvision's reference scripts save).
        arch: one of ``ARCHS`` (e.g. ``"maskrcnn_resnet50_fpn"``).
        num_classes: including background (91 for COCO).
        cfg: sizes/thresholds; default ``MaskRCNNConfig.paper(arch, num_classes)``.

    Returns:
        (model in eval mode, the config used).
    """
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"state dict not found: {path}", "check the path")
    cfg = cfg or MaskRCNNConfig.paper(arch, num_classes)
    cfg.arch, cfg.num_classes = arch, num_classes
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ArtifactError(
            f"{path} is not a readable torch state dict: {str(exc).splitlines()[0][:200]}",
            "save it with torch.save(model.state_dict(), path)",
        ) from None
    if isinstance(sd, dict) and "model" in sd and isinstance(sd["model"], dict):
        sd = sd["model"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ArtifactError(
            f"{path} does not hold a state dict (name -> tensor)", "save it with torch.save(model.state_dict(), path)"
        )
    model = build_model(cfg)
    load_state_dict_checked(model, sd, arch, str(path))
    return model.eval(), cfg


def model_from_checkpoint(ckpt: dict[str, Any]) -> tuple[nn.Module, MaskRCNNConfig, list[str]]:
    """(eval model, config, class names) from a checkpoint dict read by ``segrt.export.checkpoint.load_checkpoint``."""
    if ckpt.get("kind") not in ("maskrcnn", "keypointrcnn"):
        raise ArtifactError(
            f"checkpoint kind is {ckpt.get('kind')!r}, not maskrcnn/keypointrcnn",
            "use the exporter of that model kind (segrt export dispatches by kind)",
        )
    cfg = MaskRCNNConfig.from_dict(ckpt["config"])
    model = build_model(cfg)
    load_state_dict_checked(model, ckpt["model"], cfg.arch, "checkpoint")
    names = list(ckpt.get("class_names") or ["__background__"] + [f"class{i}" for i in range(1, cfg.num_classes)])
    return model.eval(), cfg, names
