"""Deploy wrapper: torchvision's Mask R-CNN inference path as one static-shape graph.

``DeployRCNN(model, input_hw)`` calls the torchvision model's own modules
(backbone + FPN, RPN head, box coder, box head/predictor, mask and keypoint
heads) and replaces only the data-dependent glue by export-friendly
equivalents that compute the same numbers:

* normalization inside the graph, padding zeroed *after* normalization (as
  ``GeneralizedRCNNTransform.batch_images`` does);
* anchors precomputed as a constant for the fixed input size;
* RPN: per-level top-k, decode, clip to the valid image size, small boxes
  dropped, per-level NMS as one multi-class ONNX ``NonMaxSuppression`` (class =
  FPN level), then a fixed number of proposals sorted by score, padded ones
  flagged invalid instead of removed;
* multi-level RoIAlign (``MultiLevelRoIAlign``, its own module so the
  TensorRT rewrite can find it by name scope);
* class-wise NMS as ONNX ``NonMaxSuppression`` over class-offset boxes
  (torchvision's ``batched_nms`` coordinate trick), then exactly
  ``max_detections`` outputs sorted by score with ``num_detections``;
* mask and keypoint heads on the final detections only (not on the padding), each
  detection's own class mask.

Graph (batch 1; H, W fixed at export, multiples of 32)::

    inputs:  image       float32|uint8 [1, 3, H, W]  RGB, top-left aligned, zero padded
             image_size  float32 [2]                  (h, w) of the valid region, pixels
    outputs: boxes       float32 [D, 4]   x1y1x2y2 in input pixels (zeros past num_detections)
             scores      float32 [D]
             labels      int64   [D]      class ids (0 past num_detections)
             masks       float32 [D, 28, 28]          probabilities (maskrcnn)
             keypoint_heatmaps float32 [D, K, 56, 56] logits (keypointrcnn)
             num_detections int64 [1]
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection import KeypointRCNN, MaskRCNN
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import roi_align

from segrt.errors import InputError


class OnnxNMS(torch.autograd.Function):
    """ONNX ``NonMaxSuppression`` with an eager implementation (torchvision.ops.nms) for tracing.

    boxes [1, N, 4] x1y1x2y2, scores [1, C, N] -> selected int64 [S, 3] (batch, class, box),
    per class at most ``max_out`` boxes with score > ``score_thresh``, in decreasing score order.
    """

    @staticmethod
    def forward(ctx, boxes: Tensor, scores: Tensor, max_out: int, iou: float, score_thresh: float) -> Tensor:
        from torchvision.ops import nms

        out = []
        for c in range(scores.shape[1]):
            s = scores[0, c]
            cand = torch.where(s > score_thresh)[0]
            keep = cand[nms(boxes[0, cand], s[cand], iou)][:max_out]
            out.append(torch.stack([torch.zeros_like(keep), torch.full_like(keep, c), keep], 1))
        return torch.cat(out, 0) if out else torch.zeros(0, 3, dtype=torch.int64)

    @staticmethod
    def symbolic(g, boxes, scores, max_out: int, iou: float, score_thresh: float):
        return g.op(
            "NonMaxSuppression",
            boxes,
            scores,
            g.op("Constant", value_t=torch.tensor([max_out], dtype=torch.int64)),
            g.op("Constant", value_t=torch.tensor([iou], dtype=torch.float32)),
            g.op("Constant", value_t=torch.tensor([score_thresh], dtype=torch.float32)),
            center_point_box_i=0,
        )


def level_of_boxes(
    boxes: Tensor, k_min: int, k_max: int, canonical_scale: float = 224.0, canonical_level: int = 4, eps: float = 1e-6
) -> Tensor:
    """FPN level index (0 = finest) per box, eqn. (1) of the FPN paper, as torchvision's LevelMapper."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    s = torch.sqrt(area)
    lvl = torch.floor(canonical_level + torch.log2(s / canonical_scale) + torch.tensor(eps, dtype=s.dtype))
    return (torch.clamp(lvl, min=k_min, max=k_max) - k_min).to(torch.int64)


class MultiLevelRoIAlign(nn.Module):
    """RoIAlign of each box on its FPN level (torchvision ``MultiScaleRoIAlign`` semantics).

    forward(features: list of Tensor[1, C, Hl, Wl] (finest first), boxes: Tensor[K, 4] x1y1x2y2
    in input pixels) -> Tensor[K, C, h, w]. Exported as NonZero/Gather/RoiAlign/ScatterND per
    level under this module's name scope; ``segrt.export.maskrcnn.trt_graph`` collapses that scope into
    one ``SegrtMultiLevelRoiAlign`` node.
    """

    def __init__(
        self,
        output_size: tuple[int, int],
        sampling_ratio: int,
        scales: list[float],
        canonical_scale: int = 224,
        canonical_level: int = 4,
        aligned: bool = False,
    ) -> None:
        super().__init__()
        self.output_size = tuple(output_size)
        self.sampling_ratio = int(sampling_ratio)
        self.scales = [float(s) for s in scales]
        self.canonical_scale = int(canonical_scale)
        self.canonical_level = int(canonical_level)
        self.aligned = bool(aligned)
        self.k_min = int(round(-math.log2(self.scales[0])))
        self.k_max = int(round(-math.log2(self.scales[-1])))

    def forward(self, features: list[Tensor], boxes: Tensor) -> Tensor:
        levels = level_of_boxes(boxes, self.k_min, self.k_max, self.canonical_scale, self.canonical_level)
        rois = torch.cat([torch.zeros_like(boxes[:, :1]), boxes], 1)
        out = torch.zeros((boxes.shape[0], features[0].shape[1]) + self.output_size, dtype=boxes.dtype)
        # features may hold more levels than the pooler uses (the FPN's extra 'pool' level): those are unused
        for lvl, (feat, scale) in enumerate(zip(features[: len(self.scales)], self.scales, strict=True)):
            idx = torch.where(levels == lvl)[0]
            pooled = roi_align(
                feat,
                rois[idx],
                self.output_size,
                spatial_scale=scale,
                sampling_ratio=self.sampling_ratio,
                aligned=self.aligned,
            )
            out = out.index_put((idx,), pooled)
        return out

    def attributes(self) -> dict:
        """Every attribute of the equivalent ``SegrtMultiLevelRoiAlign`` plugin node."""
        return {
            "output_height": self.output_size[0],
            "output_width": self.output_size[1],
            "sampling_ratio": self.sampling_ratio,
            "spatial_scales": self.scales,
            "canonical_scale": self.canonical_scale,
            "canonical_level": self.canonical_level,
            "coordinate_transformation_mode": "half_pixel" if self.aligned else "output_half_pixel",
            "mode": "avg",
        }


def _pooler_to_module(pooler, scales: list[float]) -> MultiLevelRoIAlign:
    """Our MultiLevelRoIAlign with the settings of a torchvision MultiScaleRoIAlign."""
    n = len(pooler.featmap_names)
    size = pooler.output_size if isinstance(pooler.output_size, (tuple, list)) else (pooler.output_size,) * 2
    return MultiLevelRoIAlign(
        tuple(size), pooler.sampling_ratio, scales[:n], pooler.canonical_scale, pooler.canonical_level, aligned=False
    )


class DeployRCNN(nn.Module):
    """Exportable inference path of a torchvision ``MaskRCNN`` or ``KeypointRCNN`` (see module doc).

    Args:
        model: the torchvision model (its weights are shared, not copied); put in eval mode.
        input_hw: fixed graph input size (H, W); multiples of the model's size_divisible (32).
        input_dtype: "float32" (values in [0, 1]) or "uint8" (0..255, scaled by 1/255 in the graph).
        score_thresh, nms_iou, max_detections: detection post-processing (torchvision's
            box_score_thresh, box_nms_thresh, box_detections_per_img); None = the model's own.
    """

    def __init__(
        self,
        model: MaskRCNN | KeypointRCNN,
        input_hw: tuple[int, int],
        input_dtype: str = "float32",
        score_thresh: float | None = None,
        nms_iou: float | None = None,
        max_detections: int | None = None,
    ) -> None:
        super().__init__()
        model = model.eval()
        self.model = model
        H, W = int(input_hw[0]), int(input_hw[1])
        div = model.transform.size_divisible
        if H % div or W % div or H <= 0 or W <= 0:
            raise InputError(
                f"export size {H}x{W} is not a positive multiple of {div}",
                f"pick sizes divisible by {div}, e.g. {math.ceil(max(H, 1) / div) * div}x"
                f"{math.ceil(max(W, 1) / div) * div}",
            )
        if input_dtype not in ("float32", "uint8"):
            raise InputError(f"input dtype {input_dtype!r} is not supported", "use float32 or uint8")
        self.input_hw = (H, W)
        self.input_dtype = input_dtype
        self.pixel_scale = 1.0 / 255.0 if input_dtype == "uint8" else 1.0
        heads = model.roi_heads
        self.score_thresh = float(heads.score_thresh if score_thresh is None else score_thresh)
        self.nms_iou = float(heads.nms_thresh if nms_iou is None else nms_iou)
        self.max_detections = int(heads.detections_per_img if max_detections is None else max_detections)
        self.has_masks = heads.has_mask()
        self.has_keypoints = heads.has_keypoint()
        self.register_buffer("mean", torch.tensor(model.transform.image_mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(model.transform.image_std, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("rows", torch.arange(H, dtype=torch.float32).view(1, 1, H, 1))
        self.register_buffer("cols", torch.arange(W, dtype=torch.float32).view(1, 1, 1, W))

        # Anchors and feature geometry depend only on the (fixed) padded input size.
        with torch.no_grad():
            dummy = torch.zeros(1, 3, H, W)
            feats = list(model.backbone(dummy).values())
            anchors = model.rpn.anchor_generator(ImageList(dummy, [(H, W)]), feats)[0]
        self.num_anchors_per_level = [f.shape[2] * f.shape[3] * model.rpn.head.cls_logits.out_channels for f in feats]
        self.register_buffer("anchors", anchors.float())
        scales = [2.0 ** round(math.log2(f.shape[-1] / W)) for f in feats]
        self.pre_nms_top_n = [min(model.rpn._pre_nms_top_n["testing"], n) for n in self.num_anchors_per_level]
        self.num_proposals = min(model.rpn._post_nms_top_n["testing"], sum(self.pre_nms_top_n))
        self.box_pool = _pooler_to_module(heads.box_roi_pool, scales)
        if self.has_masks:
            self.mask_pool = _pooler_to_module(heads.mask_roi_pool, scales)
        if self.has_keypoints:
            self.keypoint_pool = _pooler_to_module(heads.keypoint_roi_pool, scales)
        self.num_classes = heads.box_predictor.cls_score.out_features
        if self.max_detections > self.num_proposals * (self.num_classes - 1):
            self.max_detections = self.num_proposals * (self.num_classes - 1)

    @property
    def output_names(self) -> list[str]:
        names = ["boxes", "scores", "labels"]
        if self.has_masks:
            names.append("masks")
        if self.has_keypoints:
            names.append("keypoint_heatmaps")
        return names + ["num_detections"]

    def _clip(self, boxes: Tensor, image_size: Tensor) -> Tensor:
        """Clip x to [0, w] and y to [0, h] (boxes [..., 4]); bounds come from the image_size input."""
        x = boxes[..., 0::2].clamp(min=0.0)
        y = boxes[..., 1::2].clamp(min=0.0)
        x = torch.min(x, image_size[1])
        y = torch.min(y, image_size[0])
        return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], -1)

    def proposals(self, feats: list[Tensor], image_size: Tensor) -> tuple[Tensor, Tensor]:
        """RPN: (proposals [P, 4] sorted by objectness, valid [P] bool) for the fixed count P."""
        rpn = self.model.rpn
        objectness, deltas = rpn.head(feats)
        boxes, logits, levels = [], [], []
        start = 0
        for lvl, (obj, dlt, n, k) in enumerate(
            zip(objectness, deltas, self.num_anchors_per_level, self.pre_nms_top_n, strict=True)
        ):
            # [1, A, h, w] -> [h*w*A] in the anchor generator's (y, x, anchor) order
            a = obj.shape[1]
            obj = obj.permute(0, 2, 3, 1).reshape(-1)
            dlt = dlt.view(1, a, 4, dlt.shape[2], dlt.shape[3]).permute(0, 3, 4, 1, 2).reshape(-1, 4)
            top, idx = obj.topk(k)
            anchors = self.anchors[start : start + n][idx]
            boxes.append(rpn.box_coder.decode_single(dlt[idx], anchors))
            logits.append(top)
            levels.append(torch.full((k,), lvl, dtype=torch.int64))
            start += n
        boxes = self._clip(torch.cat(boxes), image_size)
        prob = torch.sigmoid(torch.cat(logits))
        levels = torch.cat(levels)
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        ok = (w >= rpn.min_size) & (h >= rpn.min_size) & (prob >= rpn.score_thresh)
        # one NMS "class" per FPN level: a box scores only in its own level's row
        nlev = len(self.num_anchors_per_level)
        onehot = levels[None, :] == torch.arange(nlev)[:, None]
        per_level = torch.where(onehot & ok[None, :], prob[None, :], torch.full_like(prob[None, :], -1.0))
        sel = OnnxNMS.apply(boxes[None], per_level[None], self.num_proposals, float(rpn.nms_thresh), -0.5)
        kept = torch.zeros_like(prob).index_put((sel[:, 2],), torch.ones_like(sel[:, 2], dtype=prob.dtype))
        ranked = torch.where(kept > 0, prob, torch.full_like(prob, -1.0))
        top, idx = ranked.topk(self.num_proposals)
        return boxes[idx], top > -0.5

    def detections(
        self, box_feats: Tensor, proposals: Tensor, valid: Tensor, image_size: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Box head + class-wise NMS: (boxes [D, 4], scores [D], labels [D], num_detections [1])."""
        heads = self.model.roi_heads
        class_logits, box_regression = heads.box_predictor(heads.box_head(box_feats))
        P, C = class_logits.shape
        boxes = heads.box_coder.decode_single(box_regression, proposals).view(P, C, 4)
        boxes = self._clip(boxes, image_size)[:, 1:].reshape(-1, 4)
        scores = F.softmax(class_logits, -1)[:, 1:]
        scores = torch.where(valid[:, None], scores, torch.zeros_like(scores)).reshape(-1)
        labels = torch.arange(1, C).repeat(P)
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        scores = torch.where((w >= 1e-2) & (h >= 1e-2), scores, torch.zeros_like(scores))
        # class-wise NMS as one NMS over boxes shifted apart per class (torchvision's batched_nms trick)
        offset = float(max(self.input_hw) + 1)
        shifted = boxes + (labels.to(boxes.dtype) * offset)[:, None]
        sel = OnnxNMS.apply(shifted[None], scores[None, None], self.max_detections, self.nms_iou, self.score_thresh)
        kept = torch.zeros_like(scores).index_put((sel[:, 2],), torch.ones_like(sel[:, 2], dtype=scores.dtype))
        ranked = torch.where(kept > 0, scores, torch.full_like(scores, -1.0))
        top, idx = ranked.topk(self.max_detections)
        ok = top > -0.5
        det_boxes = torch.where(ok[:, None], boxes[idx], torch.zeros_like(boxes[idx]))
        det_scores = torch.where(ok, top, torch.zeros_like(top))
        det_labels = torch.where(ok, labels[idx], torch.zeros_like(labels[idx]))
        return det_boxes, det_scores, det_labels, ok.sum().reshape(1)

    def forward(self, image: Tensor, image_size: Tensor) -> tuple[Tensor, ...]:
        x = image.to(torch.float32)
        if self.pixel_scale != 1.0:
            x = x * self.pixel_scale
        x = (x - self.mean) / self.std
        # torchvision pads with zeros after normalization: zero everything outside the valid region
        inside = (self.rows < image_size[0]) & (self.cols < image_size[1])
        x = torch.where(inside, x, torch.zeros_like(x))
        feats = list(self.model.backbone(x).values())
        proposals, valid = self.proposals(feats, image_size)
        box_feats = self.box_pool(feats, proposals)
        boxes, scores, labels, num = self.detections(box_feats, proposals, valid, image_size)
        heads = self.model.roi_heads
        outputs = [boxes, scores, labels]
        if self.has_masks or self.has_keypoints:
            # The heads run on the detections only, as torchvision's do, not on the padding (their
            # convolutions cost per row: 100 padded rows through the R50 mask head take ~0.4 s on
            # 2 cores). At least one row, so that no convolution sees an empty batch.
            rank = torch.arange(self.max_detections)
            rows = torch.nonzero(rank < num.clamp(min=1)).reshape(-1)
            real = (rank < num).to(torch.float32)
            head_boxes, head_labels = boxes[rows], labels[rows]
        if self.has_masks:
            mask_logits = heads.mask_predictor(heads.mask_head(self.mask_pool(feats, head_boxes)))
            n, _, M, _ = mask_logits.shape
            own = torch.sigmoid(torch.gather(mask_logits, 1, head_labels.view(n, 1, 1, 1).expand(n, 1, M, M))[:, 0])
            outputs.append(_pad_rows(own, rows, self.max_detections) * real[:, None, None])
        if self.has_keypoints:
            kp = heads.keypoint_predictor(heads.keypoint_head(self.keypoint_pool(feats, head_boxes)))
            outputs.append(_pad_rows(kp, rows, self.max_detections) * real[:, None, None, None])
        outputs.append(num)
        return tuple(outputs)


def _pad_rows(values: Tensor, rows: Tensor, count: int) -> Tensor:
    """``values`` ([n, ...]) written into rows ``rows`` of zeros [count, ...]."""
    return torch.zeros((count, *values.shape[1:]), dtype=values.dtype).index_put((rows,), values)
