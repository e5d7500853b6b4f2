"""Accuracy of every CPU backend and precision, measured on the held-out half, against fp32 PyTorch.

For the demo U-Net and the demo Mask R-CNN (checkpoints from ``segrt train`` / ``segrt demo``):

* exports the fp32 ``.onnx`` (as ``segrt export``) and its int8 QDQ copy (as ``segrt export --int8``,
  calibrated on the training half);
* runs PyTorch eager fp32 (the reference), ONNX Runtime fp32/int8 and OpenVINO fp32/bf16/int8
  through the same segrt predictor code;
* U-Net: IoU, adapted Rand error, warping error (``segrt.unet.predictor.evaluate``), and agreement with
  PyTorch over the 8 flips/rotations of the held-out image (argmax label agreement, max |dprob|);
* Mask R-CNN: COCO segm/bbox AP, AP50, AP75 (``segrt.rcnn.coco.evaluate``) on the held-out image and its
  3 flips as 4 test images (``segrt.export.maskrcnn.coco.flipped_coco``: one small image alone moves AP
  by the whole budget between runtimes that barely differ), and agreement with
  torchvision over the same 4 views (detections matched by label and box IoU >= 0.5,
  score deltas, mask IoU, and the scores of unmatched detections: near the score threshold means
  threshold flicker, high means NMS or ranking changed);
* end-to-end latency (``predict`` on the held-out image), all variants interleaved round by round
  so that load from other processes hits them alike;
* the pick (``segrt.bench.pick``): the fastest runtime whose IoU (U-Net) or segm and bbox AP
  (Mask R-CNN) is within 0.005 of PyTorch fp32's, either way.

The runtimes are the rows of ``segrt.bench.artifacts.RUNTIMES``; the agreement numbers are the
harness's (``segrt.bench.agreement``), taken per view and summarized over the views; the results
are ``segrt-bench/1`` reports, one per model.

    python benchmarks/openvino_accuracy.py --data data/dsb2018 --unet runs/unet.pt \\
        --maskrcnn runs/maskrcnn.pt --out runs/ov_accuracy --threads 2

Prints one table per model and writes everything to ``--out/openvino_accuracy.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

import segrt
from segrt.bench import Report, Row, Within, pick, timing_from_samples
from segrt.bench.agreement import detection_matching, instances_agreement, segmentation_agreement
from segrt.bench.artifacts import Runtime, runtimes_for
from segrt.bench.core import interleaved_samples
from segrt.io.files import atomic_path

REFERENCE = "pytorch fp32"
# what segrt.load(path, backend="auto") opens (a row of its own, not a candidate of the pick)
AUTO = Runtime("backend='auto'", "fp32", {"backend": "auto"})
# the accuracy budget of the pick, per model kind: each metric within 0.005 of PyTorch fp32's, either way
BUDGETS = {"unet": {"iou": Within(0.005)}, "maskrcnn": {"segm_AP": Within(0.005), "bbox_AP": Within(0.005)}}


def dihedral(image: np.ndarray) -> list[np.ndarray]:
    """The 8 flips/rotations of an image (more pixels and objects to compare than one view)."""
    return [np.ascontiguousarray(np.rot90(v, k)) for v in (image, image[:, ::-1]) for k in range(4)]


def measure(
    title: str,
    predictors: dict[str, Any],
    metrics: Callable[[Any], dict[str, float]],
    agreement: Callable[[Any], dict[str, float]],
    image: np.ndarray,
    rounds: int,
) -> Report:
    """One row per predictor: held-out ``metrics``, ``agreement`` with the first (reference) predictor,
    end-to-end latency on ``image`` and the speedup over the reference."""
    scores: dict[str, tuple[dict[str, float], dict[str, float], dict[str, Any]]] = {}
    for i, (label, pred) in enumerate(predictors.items()):
        t = time.perf_counter()
        m = {k: float(v) for k, v in metrics(pred).items()}
        a = agreement(pred) if i else {}
        info: dict[str, Any] = {"eval_s": time.perf_counter() - t}
        if hasattr(getattr(pred, "backend", None), "precision"):
            info["runs_as"] = pred.backend.name
        scores[label] = (m, a, info)
        print(
            f"  {label}: " + ", ".join(f"{k} {m[k]:.4f}" for k in ("iou", "segm_AP", "bbox_AP") if k in m), flush=True
        )
    warmup = 1
    samples = interleaved_samples({k: (lambda p=p: p.predict(image)) for k, p in predictors.items()}, rounds, warmup)
    timings = {
        k: timing_from_samples(v, warmup, pixels_per_call=float(image.shape[0] * image.shape[1]))
        for k, v in samples.items()
    }
    ref_p50 = timings[next(iter(predictors))].p50_ms
    rows = [
        Row(
            **asdict(timings[label]),
            variant=label,
            mode="end_to_end",
            reference=i == 0,
            speedup=ref_p50 / timings[label].p50_ms,
            agreement=a,
            metrics=m,
            info=info,
        )
        for i, (label, (m, a, info)) in enumerate(scores.items())
    ]
    return Report(title, rows)


def load_runtimes(kind: str, paths: dict[str, Path], threads: int) -> dict[str, Any]:
    """The predictor of every installed runtime of ``RUNTIMES`` for ``kind``, then the ``backend='auto'`` row."""
    return {rt.name: rt.load(paths, threads) for rt in runtimes_for(paths, kind) + [AUTO]}


# ----------------------------------------------------------------------------------------- U-Net


def unet_agreement(pred, views: list[np.ndarray], ref_results: list) -> dict[str, float]:
    """``segrt.bench.agreement.segmentation_agreement`` on each view, summarized over the views."""
    per = [segmentation_agreement(pred.predict(v), r) for v, r in zip(views, ref_results, strict=True)]
    agree = [p["label_agreement"] for p in per]
    return {
        "label_agreement_pct": 100.0 * float(np.mean(agree)),
        "label_agreement_min_pct": 100.0 * min(agree),
        "min_iou": min(p["iou"] for p in per),
        "max_abs_dprob": max(p["max_abs_dprob"] for p in per),
        "max_abs_dcount": max(p["abs_dcount"] for p in per),
        "views": float(len(views)),
    }


def run_unet(args, out: Path) -> dict[str, Any]:
    import torch

    from segrt.export.api import export_unet
    from segrt.export.checkpoint import load_checkpoint
    from segrt.export.quantize import quantize_int8
    from segrt.export.to_onnx import build_unet
    from segrt.export.torch_backend import TorchBackend
    from segrt.io.datasets import load_split
    from segrt.unet.predictor import UNetPredictor, evaluate

    ckpt = load_checkpoint(args.unet)
    paths = {"fp32": export_unet(ckpt, out / "unet.onnx")}
    paths["int8"] = quantize_int8(
        paths["fp32"], out / "unet.int8.onnx", [im for im, _ in load_split(args.data / "train")]
    )
    meta = segrt.open_backend(paths["fp32"]).metadata
    net = torch.nn.Sequential(build_unet(ckpt), torch.nn.Softmax(dim=1)).eval()  # the exported graph ends in softmax
    torch_pred = UNetPredictor(TorchBackend(net, meta, ["image"], ["probs"], threads=args.threads))
    predictors = {REFERENCE: torch_pred, **load_runtimes("unet", paths, args.threads)}

    image = load_split(args.data / "val")[0][0]
    views = dihedral(image)
    ref_results = [torch_pred.predict(v) for v in views]
    keys = ("iou", "rand_error", "warping_error", "pixel_error", "objects_predicted", "objects_true")
    report = measure(
        "U-Net (held-out half; agreement over 8 views vs PyTorch fp32)",
        predictors,
        lambda pred: {k: v for k, v in evaluate(pred, args.data / "val").items() if k in keys},
        lambda pred: unet_agreement(pred, views, ref_results),
        image,
        args.rounds,
    )
    report.context = {
        "threads": args.threads,
        "image_hw": list(image.shape[:2]),
        "views": len(views),
        "artifacts": {k: str(v) for k, v in paths.items()},
    }
    return report


# ------------------------------------------------------------------------------------ Mask R-CNN


def maskrcnn_agreement(pred, views, ref_results) -> dict[str, float]:
    """``instances_agreement`` and ``detection_matching`` (``segrt.bench.agreement``) on each view,
    summarized over the views."""
    per = [
        instances_agreement(out, r) | detection_matching(out, r)
        for out, r in ((pred.predict(v), r) for v, r in zip(views, ref_results, strict=True))
    ]
    numbers = {
        "matched": sum(p["matched"] for p in per),
        "reference": sum(p["reference_detections"] for p in per),
        "runtime": sum(p["detections"] for p in per),
        "max_abs_dscore": max(p["max_abs_dscore"] for p in per),
        "min_box_iou": min(p["min_box_iou"] for p in per),
        "mean_mask_iou": float(np.mean([p["mean_mask_iou"] for p in per])),
        "unmatched_max_score": max(max(p["unmatched_reference_max_score"], p["unmatched_max_score"]) for p in per),
        "views": float(len(views)),
    }
    for k in ("bbox_ap", "segm_ap"):  # AP against the reference's detections (needs pycocotools)
        if all(k in p for p in per):
            numbers[f"min_{k}"] = min(p[k] for p in per)
    return numbers


def run_maskrcnn(args, out: Path) -> dict[str, Any]:
    import torch

    from segrt.export.checkpoint import load_checkpoint
    from segrt.export.maskrcnn.coco import flip_views, flipped_coco
    from segrt.export.maskrcnn.models import model_from_checkpoint
    from segrt.export.maskrcnn.onnx_export import torch_to_onnx
    from segrt.export.maskrcnn.reference import TorchvisionPredictor
    from segrt.export.quantize import calibration_images, quantize_int8
    from segrt.rcnn.coco import evaluate

    torch.set_num_threads(args.threads)
    coco = args.data / "coco"
    model, cfg, names = model_from_checkpoint(load_checkpoint(args.maskrcnn))
    hw = tuple(args.maskrcnn_input_size)
    paths = {"fp32": torch_to_onnx(model, cfg, names, out / "maskrcnn.onnx", hw)}
    paths["int8"] = quantize_int8(paths["fp32"], out / "maskrcnn.int8.onnx", calibration_images(coco / "train"))
    reference = TorchvisionPredictor(model, names, canvas_hw=hw)
    predictors = {REFERENCE: reference, **load_runtimes("maskrcnn", paths, args.threads)}

    from segrt.io.images import read_image

    image = read_image(sorted((coco / "val").glob("*.png"))[0])
    views = flip_views(image)  # the views of flipped_coco; shape kept, so each fits the fixed canvas
    ref_results = [reference.predict(v) for v in views]
    held_out = flipped_coco(coco / "val.json", coco / "val", out / "val_flips.json")
    report = measure(
        "Mask R-CNN (held-out half and its 3 flips; agreement over the 4 views vs torchvision fp32)",
        predictors,
        lambda pred: {
            k: v
            for k, v in evaluate(pred, held_out, held_out.with_suffix("")).items()
            if k.startswith(("segm_AP", "bbox_AP")) and k[-1] not in "SML"
        },
        lambda pred: maskrcnn_agreement(pred, views, ref_results),
        image,
        args.rounds,
    )
    report.context = {
        "threads": args.threads,
        "image_hw": list(image.shape[:2]),
        "input_size": list(hw),
        "views": len(views),
        "artifacts": {k: str(v) for k, v in paths.items()},
    }
    return report


# ------------------------------------------------------------------------------------ reporting


def choose(report: Report, kind: str) -> dict[str, Any]:
    """The pick among the runtimes (not PyTorch, not the ``backend='auto'`` row), kept in ``report.pick``."""
    answer = pick(
        report,
        BUDGETS[kind],
        "end_to_end",
        among=[r.variant for r in report.rows if not r.reference and r.variant != AUTO.name],
    )
    report.pick = [answer]
    return answer


def print_table(report: Report, keys: list[tuple[str, str]], answer: dict[str, Any]) -> None:
    """Markdown table: metrics, agreement, e2e p50 and ratio to PyTorch, and the budget verdict."""
    header = ["variant"] + [h for h, _ in keys] + ["e2e p50 ms", "vs PyTorch", "within budget"]
    print(f"\n{report.title}")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in report.rows:
        runs_as = row.info.get("runs_as")
        cells = [f"{row.variant} = {runs_as}" if row.variant == AUTO.name and runs_as else row.variant]
        for _, key in keys:
            v = row.metrics.get(key, row.agreement.get(key))
            cells.append("" if v is None else f"{v:.4g}")
        verdict = "yes" if row.variant in answer["qualified"] else "no" if row.variant in answer["rejected"] else ""
        cells += [f"{row.p50_ms:.1f}", f"{row.speedup:.2f}x", verdict]
        print("| " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--data", type=Path, required=True, help="dsb2018 root (train/, val/, coco/) from `segrt data dsb2018 --coco`"
    )
    ap.add_argument("--unet", type=Path, help="U-Net checkpoint (.pt)")
    ap.add_argument("--maskrcnn", type=Path, help="Mask R-CNN checkpoint (.pt)")
    ap.add_argument(
        "--maskrcnn-input-size",
        type=int,
        nargs=2,
        default=[512, 256],
        metavar=("H", "W"),
        help="graph input of the exported Mask R-CNN (the demo's: 512 256)",
    )
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds per variant (interleaved)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    from segrt.backends.openvino import cpu_capabilities, import_openvino

    ov = import_openvino()
    report: dict[str, Any] = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "openvino": ov.__version__,
            "openvino_capabilities": list(cpu_capabilities()),
            "threads": args.threads,
            "shared": "timings from a shared machine; variants interleaved round by round",
        }
    }
    import onnxruntime

    report["machine"]["onnxruntime"] = onnxruntime.__version__
    if args.unet:
        print("U-Net", flush=True)
        res = run_unet(args, args.out)
        answer = choose(res, "unet")
        report["unet"] = res.to_dict()
        print_table(
            res,
            [
                ("IoU", "iou"),
                ("Rand err", "rand_error"),
                ("warp err", "warping_error"),
                ("label agree %", "label_agreement_pct"),
                ("max |dprob|", "max_abs_dprob"),
            ],
            answer,
        )
        print(f"pick (fastest with IoU within 0.005 of fp32, either way): {answer['variant']}")
    if args.maskrcnn:
        print("Mask R-CNN", flush=True)
        res = run_maskrcnn(args, args.out)
        answer = choose(res, "maskrcnn")
        report["maskrcnn"] = res.to_dict()
        print_table(
            res,
            [
                ("segm AP", "segm_AP"),
                ("AP50", "segm_AP50"),
                ("AP75", "segm_AP75"),
                ("bbox AP", "bbox_AP"),
                ("bbox AP50", "bbox_AP50"),
                ("bbox AP75", "bbox_AP75"),
                ("matched", "matched"),
                ("ref dets", "reference"),
                ("max |dscore|", "max_abs_dscore"),
                ("unmatched max score", "unmatched_max_score"),
            ],
            answer,
        )
        print(f"pick (fastest with segm and bbox AP within 0.005 of fp32, either way): {answer['variant']}")
    with atomic_path(args.out / "openvino_accuracy.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out / 'openvino_accuracy.json'}")
    return report


if __name__ == "__main__":
    main()
