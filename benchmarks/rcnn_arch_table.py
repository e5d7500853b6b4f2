"""Parameters and GFLOPs of the paper-size Mask R-CNN / Keypoint R-CNN architectures at 800x1344.

    python benchmarks/rcnn_arch_table.py

Counts with ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add is 2 FLOPs; convolutions
and matrix products only) on the meta device, so nothing is computed and no weights are needed.
Per part, as the graph runs it at an 800x1344 input (the paper's test size, padded to 32):
body + FPN and the RPN head on the whole image; the box head on 1000 proposals (the paper's
``rpn_post_nms_top_n_test``); the mask or keypoint head per 100 detections (its cost grows with the
detections, from 0 to ``box_detections_per_img`` = 100). Prints a Markdown table.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from segrt.export.maskrcnn.models import ARCHS, MaskRCNNConfig, build_model

HW = (800, 1344)
PROPOSALS, DETECTIONS = 1000, 100
# the R50 archs (v2 aside: its own RPN head and box head) and the bodies of FPN_BODIES
BODIES = ("_resnet50_fpn", "_resnext50_32x4d_fpn", "_resnet101_fpn", "_resnext101_32x8d_fpn")
ARCH_ORDER = [f"{kind}{body}" for kind in ("maskrcnn", "keypointrcnn") for body in BODIES]


def gflops(fn: Callable[..., Any], *args: Any) -> float:
    """GFLOPs of ``fn(*args)`` on meta tensors."""
    with FlopCounterMode(display=False) as counter:
        fn(*args)
    return counter.get_total_flops() / 1e9


@torch.no_grad()
def row(arch: str) -> str:
    """One Markdown table row of ``arch`` (COCO sizes: 91 classes, or 2 with 17 keypoints)."""
    cfg = MaskRCNNConfig.paper(arch, 2 if ARCHS[arch] == "keypointrcnn" else 91)
    model = build_model(cfg).eval()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    model = model.to("meta")
    image = torch.zeros(1, 3, *HW, device="meta")
    body = gflops(model.backbone, image)
    feats = model.backbone(image)
    rpn = gflops(model.rpn.head, list(feats.values()))
    heads = model.roi_heads
    width = model.backbone.out_channels
    box = gflops(lambda x: heads.box_predictor(heads.box_head(x)), torch.zeros(PROPOSALS, width, 7, 7, device="meta"))
    if cfg.kind == "keypointrcnn":
        name, head = "keypoint", lambda x: heads.keypoint_predictor(heads.keypoint_head(x))
    else:
        name, head = "mask", lambda x: heads.mask_predictor(heads.mask_head(x))
    per_det = gflops(head, torch.zeros(DETECTIONS, width, 14, 14, device="meta"))
    body_name = arch.split("_", 1)[1] if arch.startswith(("maskrcnn_", "keypointrcnn_")) else arch
    total = body + rpn + box + per_det
    return (
        f"| {cfg.kind} | {body_name} | {width} | box + {name} | {params:.1f} | {body:.0f} | {rpn:.0f} | "
        f"{box:.0f} | {per_det:.0f} | {total:.0f} |"
    )


if __name__ == "__main__":
    print(
        f"| model | body | FPN width | heads | parameters (M) | body + FPN | RPN head | box head ({PROPOSALS} RoIs) "
        f"| mask/keypoint head ({DETECTIONS} detections) | total (GFLOPs) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for arch in ARCH_ORDER:
        print(row(arch), flush=True)
