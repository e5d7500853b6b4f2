"""Which parts of Mask R-CNN can run in bf16 and keep fp32's detections? Graph splits, measured.

OpenVINO's CPU plugin ignores the per-node float32 mark on the box head's FullyConnected layers
(README, OpenVINO section), so this script mixes precisions another way: it cuts the exported
``.onnx`` graph into stages, each compiled by OpenVINO in one precision, and runs them in turn
(``sdk.backends.openvino_stages``). Nodes whose names start with one of a variant's prefixes run
in bf16, the others in fp32.

Variants (whole-graph fp32 is the reference, whole-graph bf16 the other end):

* ``backbone bf16``: ResNet + FPN in bf16, everything after them in fp32 (the "fp32 tail");
* ``rpn + mask heads bf16``: the RPN head's and the mask head's convolutions in bf16; the
  backbone, the box head, scores and NMS in fp32;
* ``mixed``: the backend's ``precision="mixed"``, only the mask head's convolutions in bf16.

With a COCO held-out split it prints segm/bbox AP; always the detections matched to fp32's over
the 4 flips of the image (label and box IoU >= 0.5), the largest score change, the best fp32
score left unmatched, the AP of each variant scored against fp32's detections, and end-to-end p50.

    python benchmarks/openvino_bf16_split.py demo_out/maskrcnn.onnx --val demo_out/data/coco/val.json
    python benchmarks/openvino_bf16_split.py r50_800x1344.onnx      # synthetic 800x1333 image
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from sdk.backends.openvino import OpenVINOBackend
from sdk.bench.agreement import detection_matching, instances_agreement
from sdk.bench.artifacts import bench_image
from sdk.imageio import read_image
from sdk.maskrcnn import MaskRCNNPredictor

VARIANTS = {"backbone bf16": ("/backbone/",),
            "rpn + mask heads bf16": ("/head/", "/mask_head/", "/mask_predictor/")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("onnx", type=Path, help="a Mask R-CNN .onnx written by segrt export (portable graph)")
    parser.add_argument("--val", type=Path, default=None,
                        help="COCO held-out split (images in the folder of the same name); its first image is timed")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="timed predict calls per variant")
    args = parser.parse_args()
    backends = {"fp32": OpenVINOBackend(args.onnx, "fp32", threads=args.threads),
                "bf16": OpenVINOBackend(args.onnx, "bf16", threads=args.threads)}
    # the stages of precision="mixed" (sdk.backends.openvino_stages), over other parts of the graph
    for name, prefixes in VARIANTS.items():
        backends[name] = OpenVINOBackend(args.onnx, "mixed", threads=args.threads, bf16_scopes=prefixes)
    backends["mixed"] = OpenVINOBackend(args.onnx, "mixed", threads=args.threads)
    for name, backend in backends.items():
        if backend.stages:
            print(f"{name}: stages " + ", ".join(f"{st.precision} ({st.nodes} nodes)" for st in backend.stages))
    if args.val:
        first = json.loads(args.val.read_text())["images"][0]["file_name"]
        image = read_image(args.val.with_suffix("") / first)
    else:
        h, w = backends["fp32"].metadata["input_size"]
        image = bench_image((h, min(w, h * 5 // 3)), 3)
    views = [np.ascontiguousarray(v) for v in (image, image[:, ::-1], image[::-1], image[::-1, ::-1])]
    predictors = {k: MaskRCNNPredictor(b) for k, b in backends.items()}
    references = [predictors["fp32"].predict(v) for v in views]
    print(f"{'variant':<24}{'segm AP':>8}{'bbox AP':>8}{'matched':>9}{'max dscore':>11}{'unmatched':>10}"
          f"{'bbox AP vs fp32':>16}{'segm AP vs fp32':>16}{'p50 ms':>8}")
    for name, predictor in predictors.items():
        scores = {"segm_AP": float("nan"), "bbox_AP": float("nan")}
        if args.val:
            from sdk.coco import evaluate
            scores = evaluate(predictor, args.val, args.val.with_suffix(""))
        outs = [predictor.predict(v) for v in views]
        match = [detection_matching(o, r) for o, r in zip(outs, references)]
        agree = [instances_agreement(o, r) for o, r in zip(outs, references)]
        times = []
        for _ in range(args.rounds):
            t = time.perf_counter()
            predictor.predict(image)
            times.append(time.perf_counter() - t)
        print(f"{name:<24}{scores['segm_AP']:>8.4f}{scores['bbox_AP']:>8.4f}"
              f"{sum(m['matched'] for m in match):>5.0f}/{sum(len(r) for r in references):<4}"
              f"{max(m['max_abs_dscore'] for m in match):>10.3f}"
              f"{max(m['unmatched_reference_max_score'] for m in match):>10.2f}"
              f"{np.mean([a['bbox_ap'] for a in agree]):>16.4f}{np.mean([a['segm_ap'] for a in agree]):>16.4f}"
              f"{1000 * np.median(times):>8.0f}", flush=True)


if __name__ == "__main__":
    main()
