"""Which parts of Mask R-CNN can run in bf16 and keep fp32's detections? Measured part by part.

OpenVINO's CPU plugin ignores the per-node float32 mark on the box head's FullyConnected layers
(README, OpenVINO section), so this script mixes precisions the way ``precision="mixed"`` does
(``segrt.backends.openvino_mixed``): the convolutions and matmuls whose ONNX node names start with
one of a variant's prefixes get their inputs converted to bf16, and run on the CPU's bf16 kernels;
everything else stays fp32, in one compiled model.

Variants (whole-graph fp32 is the reference, whole-graph bf16 the other end):

* ``backbone + FPN``: ResNet + FPN in bf16, everything after them in fp32 (the "fp32 tail");
* ``FPN + heads``: the FPN and every head in bf16, the ResNet in fp32;
* ``heads``: ``bf16_scopes=HEAD_SCOPES``, every head (RPN, box, mask) in bf16;
* ``mask head``: ``bf16_scopes=MASK_HEAD_SCOPES``, only the mask head (detections exactly fp32's);
* ``mixed``: the backend's ``precision="mixed"``, the FPN's output convolutions and every head in bf16.

``--variant NAME=PREFIX,...`` adds others (``--only``: those alone, against fp32).

With a COCO held-out split it prints segm/bbox AP on its images and their 3 flips
(``segrt.export.maskrcnn.coco.flipped_coco``); always the detections matched to fp32's over
the 4 flips of the image (label and box IoU >= 0.5), the largest score change, the best fp32
score left unmatched, the AP of each variant scored against fp32's detections, and end-to-end p50.

    python benchmarks/openvino_bf16_split.py demo_out/maskrcnn.onnx --val demo_out/data/coco/val.json
    python benchmarks/openvino_bf16_split.py r50_800x1344.onnx      # synthetic 800x1333 image
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from segrt.backends.openvino import HEAD_SCOPES, MASK_HEAD_SCOPES, OpenVINOBackend
from segrt.bench.agreement import detection_matching, instances_agreement
from segrt.bench.artifacts import bench_image
from segrt.export.maskrcnn.coco import flip_views, flipped_coco
from segrt.io.images import read_image
from segrt.rcnn.predictor import MaskRCNNPredictor

VARIANTS = {
    "backbone + FPN": ("/backbone/",),
    "FPN + heads": ("/backbone/fpn/",) + HEAD_SCOPES,
    "heads": HEAD_SCOPES,
    "mask head": MASK_HEAD_SCOPES,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("onnx", type=Path, help="a Mask R-CNN .onnx written by segrt export (portable graph)")
    parser.add_argument(
        "--val",
        type=Path,
        default=None,
        help="COCO held-out split (images in the folder of the same name); its first image is timed",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="timed predict calls per variant")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=PREFIX[,PREFIX...]",
        help="a further split: nodes whose names start with a PREFIX run in bf16 (repeatable), "
        "e.g. 'fpn+rpn=/backbone/fpn/,/head/,/mask_head/,/mask_predictor/'",
    )
    parser.add_argument("--only", action="store_true", help="run only the --variant splits (and fp32, the reference)")
    args = parser.parse_args()
    variants = {} if args.only else dict(VARIANTS)
    for spec in args.variant:
        name, sep, prefixes = spec.partition("=")
        if not sep or not prefixes:
            parser.error(f"--variant {spec!r}: expected NAME=PREFIX[,PREFIX...]")
        variants[name] = tuple(prefixes.split(","))
    backends = {"fp32": OpenVINOBackend(args.onnx, "fp32", threads=args.threads)}
    if not args.only:
        backends["bf16"] = OpenVINOBackend(args.onnx, "bf16", threads=args.threads)
    # precision="mixed" (segrt.backends.openvino_mixed) over other parts of the graph
    for name, prefixes in variants.items():
        backends[name] = OpenVINOBackend(args.onnx, "mixed", threads=args.threads, bf16_scopes=prefixes)
    if not args.only:
        backends["mixed"] = OpenVINOBackend(args.onnx, "mixed", threads=args.threads)
    for name, backend in backends.items():
        if backend.bf16_layers:
            print(f"{name}: {backend.bf16_layers} layers in bf16")
    held_out = None
    if args.val:
        first = json.loads(args.val.read_text())["images"][0]["file_name"]
        image = read_image(args.val.with_suffix("") / first)
        scratch = tempfile.TemporaryDirectory(prefix="segrt_flips_")  # removed at exit
        held_out = flipped_coco(args.val, args.val.with_suffix(""), Path(scratch.name) / "held_out.json")
    else:
        h, w = backends["fp32"].metadata["input_size"]
        image = bench_image((h, min(w, h * 5 // 3)), 3)
    views = flip_views(image)
    predictors = {k: MaskRCNNPredictor(b) for k, b in backends.items()}
    references = [predictors["fp32"].predict(v) for v in views]
    print(
        f"{'variant':<24}{'segm AP':>8}{'bbox AP':>8}{'matched':>9}{'max dscore':>11}{'unmatched':>10}"
        f"{'bbox AP vs fp32':>16}{'segm AP vs fp32':>16}{'p50 ms':>8}"
    )
    for name, predictor in predictors.items():
        scores = {"segm_AP": float("nan"), "bbox_AP": float("nan")}
        if held_out:
            from segrt.rcnn.coco import evaluate

            scores = evaluate(predictor, held_out, held_out.with_suffix(""))
        outs = [predictor.predict(v) for v in views]
        match = [detection_matching(o, r) for o, r in zip(outs, references, strict=True)]
        agree = [instances_agreement(o, r) for o, r in zip(outs, references, strict=True)]
        times = []
        for _ in range(args.rounds):
            t = time.perf_counter()
            predictor.predict(image)
            times.append(time.perf_counter() - t)
        print(
            f"{name:<24}{scores['segm_AP']:>8.4f}{scores['bbox_AP']:>8.4f}"
            f"{sum(m['matched'] for m in match):>5.0f}/{sum(len(r) for r in references):<4}"
            f"{max(m['max_abs_dscore'] for m in match):>10.3f}"
            f"{max(m['unmatched_reference_max_score'] for m in match):>10.2f}"
            f"{np.mean([a['bbox_ap'] for a in agree]):>16.4f}{np.mean([a['segm_ap'] for a in agree]):>16.4f}"
            f"{1000 * np.median(times):>8.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
