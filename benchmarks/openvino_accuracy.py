"""Accuracy of every CPU backend and precision, measured on the held-out half, against fp32 PyTorch.

For the demo U-Net and the demo Mask R-CNN (checkpoints from ``segrt train`` / ``segrt demo``):

* exports the fp32 ``.onnx`` (as ``segrt export``) and its int8 QDQ copy (as ``segrt export --int8``,
  calibrated on the training half);
* runs PyTorch eager fp32 (the reference), ONNX Runtime fp32/int8 and OpenVINO fp32/bf16/int8
  through the same sdk predictor code;
* U-Net: IoU, adapted Rand error, warping error (``sdk.unet.evaluate``), and agreement with
  PyTorch over the 8 flips/rotations of the held-out image (argmax label agreement, max |dprob|);
* Mask R-CNN: COCO segm/bbox AP, AP50, AP75 (``sdk.coco.evaluate``), and agreement with
  torchvision over 4 flips of the held-out image (detections matched by label and box IoU >= 0.5,
  score deltas, mask IoU, and the scores of unmatched detections: near the score threshold means
  threshold flicker, high means NMS or ranking changed);
* end-to-end latency (``predict`` on the held-out image), all variants interleaved round by round
  so that load from other processes hits them alike, and the pick of ``sdk.backends.select``.

    python benchmarks/openvino_accuracy.py --data data/dsb2018 --unet runs/unet.pt \\
        --maskrcnn runs/maskrcnn.pt --out runs/ov_accuracy --threads 2

Prints one table per model and writes everything to ``--out/openvino_accuracy.json``.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sdk  # noqa: E402
from sdk.backends.select import CPU_VARIANTS, Variant, judge  # noqa: E402
from sdk.io import atomic_path  # noqa: E402

# what sdk.load(path, backend="auto") opens (a row of its own, not a candidate of the picker)
AUTO = Variant("backend='auto'", "fp32", "auto")
# Mask R-CNN only: bf16 with RoIAlign kept float32 (the box and mask features sampled in fp32)
MASKRCNN_EXTRA = (Variant("openvino bf16, fp32 RoIAlign", "fp32", "openvino", {"precision": "bf16", "fp32_ops": ["ROIAlign"]}),)

def dihedral(image: np.ndarray) -> list[np.ndarray]:
    """The 8 flips/rotations of an image (more pixels and objects to compare than one view)."""
    return [np.ascontiguousarray(np.rot90(v, k)) for v in (image, image[:, ::-1]) for k in range(4)]


def flips(image: np.ndarray) -> list[np.ndarray]:
    """The 4 flips (shape kept, so every view fits the fixed Mask R-CNN canvas)."""
    return [np.ascontiguousarray(v) for v in (image, image[:, ::-1], image[::-1], image[::-1, ::-1])]


def interleaved_latency(calls: dict[str, Callable[[], Any]], rounds: int, warmup: int = 1) -> dict[str, dict[str, float]]:
    """p50/p90 ms of each call, timed round-robin (one call of each per round) so machine load hits all alike."""
    for _ in range(warmup):
        for fn in calls.values():
            fn()
    samples: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(rounds):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - t0) * 1e3)
    return {k: {"p50_ms": float(np.percentile(v, 50)), "p90_ms": float(np.percentile(v, 90)), "runs": len(v)}
            for k, v in samples.items()}


def measure(predictors: dict[str, Any], metrics: Callable[[Any], dict[str, float]],
            agreement: Callable[[Any], dict[str, float]], image: np.ndarray, rounds: int) -> dict[str, dict[str, Any]]:
    """Per predictor: held-out metrics, agreement with the first (reference) predictor, e2e latency on ``image``."""
    rows: dict[str, dict[str, Any]] = {}
    for i, (label, pred) in enumerate(predictors.items()):
        t = time.perf_counter()
        row = dict(metrics(pred))
        if i:
            row.update(agreement(pred))
        row["eval_s"] = time.perf_counter() - t
        if hasattr(getattr(pred, "backend", None), "precision"):
            row["runs_as"] = pred.backend.name
        rows[label] = row
        print(f"  {label}: " + ", ".join(f"{k} {row[k]:.4f}" for k in ("iou", "segm_AP", "bbox_AP") if k in row), flush=True)
    latency = interleaved_latency({k: (lambda p=p: p.predict(image)) for k, p in predictors.items()}, rounds)
    for k, v in latency.items():
        rows[k]["e2e"] = v
    return rows


# ----------------------------------------------------------------------------------------- U-Net

def unet_agreement(pred, views: list[np.ndarray], ref_results: list) -> dict[str, float]:
    agree, dprob, dcount = [], 0.0, []
    for view, r in zip(views, ref_results):
        p = pred.predict(view)
        agree.append(float((p.classes == r.classes).mean()))
        dprob = max(dprob, float(np.abs(p.probs - r.probs).max()))
        dcount.append(abs(p.count - r.count))
    return {"label_agreement_pct": 100.0 * float(np.mean(agree)), "label_agreement_min_pct": 100.0 * min(agree),
            "max_abs_dprob": dprob, "max_abs_dcount": float(max(dcount)), "views": len(views)}


def run_unet(args, out: Path) -> dict[str, Any]:
    import torch
    from export.checkpoint import load_checkpoint
    from export.quantize import quantize_int8
    from export.api import export_unet
    from export.to_onnx import build_unet
    from export.torch_backend import TorchBackend
    from sdk.datasets import load_split
    from sdk.unet import UNetPredictor, evaluate

    ckpt = load_checkpoint(args.unet)
    paths = {"fp32": export_unet(ckpt, out / "unet.onnx")}
    paths["int8"] = quantize_int8(paths["fp32"], out / "unet.int8.onnx", [im for im, _ in load_split(args.data / "train")])
    meta = sdk.open_backend(paths["fp32"]).metadata
    net = torch.nn.Sequential(build_unet(ckpt), torch.nn.Softmax(dim=1)).eval()  # the exported graph ends in softmax
    torch_pred = UNetPredictor(TorchBackend(net, meta, ["image"], ["probs"], threads=args.threads))
    predictors = {"pytorch fp32": torch_pred}
    for variant in CPU_VARIANTS + (AUTO,):
        predictors[variant.label] = variant.load(paths, threads=args.threads)

    image = load_split(args.data / "val")[0][0]
    views = dihedral(image)
    ref_results = [torch_pred.predict(v) for v in views]
    keys = ("iou", "rand_error", "warping_error", "pixel_error", "objects_predicted", "objects_true")
    rows = measure(predictors, lambda pred: {k: v for k, v in evaluate(pred, args.data / "val").items() if k in keys},
                   lambda pred: unet_agreement(pred, views, ref_results), image, args.rounds)
    return {"rows": rows, "image_hw": list(image.shape[:2]), "artifacts": {k: str(v) for k, v in paths.items()}}


# ------------------------------------------------------------------------------------ Mask R-CNN

def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix [len(a), len(b)] of x1y1x2y2 boxes."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: (x[:, 2] - x[:, 0]).clip(0) * (x[:, 3] - x[:, 1]).clip(0)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def match_detections(run, ref, iou_thresh: float = 0.5) -> dict[str, Any]:
    """Greedy matching in the reference's score order: same label, box IoU >= ``iou_thresh``."""
    ious = box_iou(ref.boxes, run.boxes) if len(ref) and len(run) else np.zeros((len(ref), len(run)))
    used, pairs = set(), []
    for i in np.argsort(-ref.scores):
        cand = [(ious[i, j], j) for j in range(len(run)) if j not in used and run.labels[j] == ref.labels[i]
                and ious[i, j] >= iou_thresh]
        if cand:
            iou, j = max(cand)
            used.add(j)
            pairs.append((int(i), int(j), float(iou)))
    dscore = [abs(float(run.scores[j]) - float(ref.scores[i])) for i, j, _ in pairs]
    mask_iou = []
    if ref.masks is not None and run.masks is not None:
        for i, j, _ in pairs:
            union = (ref.masks[i] | run.masks[j]).sum()
            mask_iou.append(float((ref.masks[i] & run.masks[j]).sum() / union) if union else 1.0)
    matched_ref = {i for i, _, _ in pairs}
    return {"matched": len(pairs), "reference": len(ref), "runtime": len(run),
            "max_abs_dscore": max(dscore, default=0.0), "min_box_iou": min((p[2] for p in pairs), default=1.0),
            "mean_mask_iou": float(np.mean(mask_iou)) if mask_iou else 1.0,
            "unmatched_ref_max_score": max((float(ref.scores[i]) for i in range(len(ref)) if i not in matched_ref),
                                           default=0.0),
            "unmatched_run_max_score": max((float(run.scores[j]) for j in range(len(run)) if j not in used),
                                           default=0.0)}


def maskrcnn_agreement(pred, views, ref_results) -> dict[str, float]:
    per = [match_detections(pred.predict(v), r) for v, r in zip(views, ref_results)]
    return {"matched": sum(p["matched"] for p in per), "reference": sum(p["reference"] for p in per),
            "runtime": sum(p["runtime"] for p in per),
            "max_abs_dscore": max(p["max_abs_dscore"] for p in per),
            "min_box_iou": min(p["min_box_iou"] for p in per),
            "mean_mask_iou": float(np.mean([p["mean_mask_iou"] for p in per])),
            "unmatched_max_score": max(max(p["unmatched_ref_max_score"], p["unmatched_run_max_score"]) for p in per),
            "views": len(views)}


def run_maskrcnn(args, out: Path) -> dict[str, Any]:
    import torch
    from export.checkpoint import load_checkpoint
    from export.maskrcnn.models import model_from_checkpoint
    from export.maskrcnn.onnx_export import torch_to_onnx
    from export.maskrcnn.reference import TorchvisionPredictor
    from export.quantize import calibration_images, quantize_int8
    from sdk.coco import evaluate

    torch.set_num_threads(args.threads)
    coco = args.data / "coco"
    model, cfg, names = model_from_checkpoint(load_checkpoint(args.maskrcnn))
    hw = tuple(args.maskrcnn_input_size)
    paths = {"fp32": torch_to_onnx(model, cfg, names, out / "maskrcnn.onnx", hw)}
    paths["int8"] = quantize_int8(paths["fp32"], out / "maskrcnn.int8.onnx", calibration_images(coco / "train"))
    reference = TorchvisionPredictor(model, names, canvas_hw=hw)
    predictors: dict[str, Any] = {"pytorch fp32": reference}
    for variant in CPU_VARIANTS + MASKRCNN_EXTRA + (AUTO,):
        predictors[variant.label] = variant.load(paths, threads=args.threads)

    from sdk.imageio import read_image
    image = read_image(sorted((coco / "val").glob("*.png"))[0])
    views = flips(image)
    ref_results = [reference.predict(v) for v in views]
    rows = measure(predictors, lambda pred: {k: v for k, v in evaluate(pred, coco / "val.json", coco / "val").items()
                                             if k.startswith(("segm_AP", "bbox_AP")) and k[-1] not in "SML"},
                   lambda pred: maskrcnn_agreement(pred, views, ref_results), image, args.rounds)
    return {"rows": rows, "image_hw": list(image.shape[:2]), "input_size": list(hw),
            "artifacts": {k: str(v) for k, v in paths.items()}}


# ------------------------------------------------------------------------------------ reporting

def print_table(title: str, result: dict[str, Any], keys: list[tuple[str, str]], verdicts: dict[str, Any]) -> None:
    """Markdown table: metrics, agreement, e2e p50 and ratio to PyTorch, and the budget verdict."""
    rows = result["rows"]
    base = rows["pytorch fp32"]["e2e"]["p50_ms"]
    header = ["variant"] + [h for h, _ in keys] + ["e2e p50 ms", "vs PyTorch", "within budget"]
    print(f"\n{title}")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for label, row in rows.items():
        cells = [f"{label} = {row['runs_as']}" if label == AUTO.label and "runs_as" in row else label]
        for _, key in keys:
            v = row.get(key)
            cells.append("" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v)))
        p50 = row["e2e"]["p50_ms"]
        verdict = verdicts.get(label)
        cells += [f"{p50:.1f}", f"{base / p50:.2f}x", "" if verdict is None else ("yes" if verdict.within_budget else "no")]
        print("| " + " | ".join(cells) + " |")


def pick(result: dict[str, Any], variants: tuple[Variant, ...]) -> tuple[str, dict[str, Any]]:
    """(label of the fastest variant within the accuracy budget, verdict per label)."""
    cands = []
    for v in variants:
        row = result["rows"][v.label]
        cands.append(v.candidate(row["e2e"]["p50_ms"], {k: row[k] for k in ("iou", "bbox_AP", "segm_AP") if k in row}))
    verdicts = dict(zip([v.label for v in variants], judge(cands)))
    ok = [label for label, v in verdicts.items() if v.within_budget]
    return min(ok, key=lambda label: verdicts[label].candidate.latency_ms), verdicts


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="dsb2018 root (train/, val/, coco/) from `segrt data dsb2018 --coco`")
    ap.add_argument("--unet", type=Path, help="U-Net checkpoint (.pt)")
    ap.add_argument("--maskrcnn", type=Path, help="Mask R-CNN checkpoint (.pt)")
    ap.add_argument("--maskrcnn-input-size", type=int, nargs=2, default=[512, 256], metavar=("H", "W"),
                    help="graph input of the exported Mask R-CNN (the demo's: 512 256)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds per variant (interleaved)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    from sdk.backends.openvino import cpu_capabilities, import_openvino
    ov = import_openvino()
    report: dict[str, Any] = {"machine": {"cpu": platform.processor() or platform.machine(),
                                          "openvino": ov.__version__, "openvino_capabilities": list(cpu_capabilities()),
                                          "threads": args.threads, "shared": "timings from a shared machine; "
                                          "variants interleaved round by round"}}
    import onnxruntime
    report["machine"]["onnxruntime"] = onnxruntime.__version__
    if args.unet:
        print("U-Net", flush=True)
        report["unet"] = res = run_unet(args, args.out)
        res["pick"], verdicts = pick(res, CPU_VARIANTS)
        print_table("U-Net (held-out half; agreement over 8 views vs PyTorch fp32)", res,
                    [("IoU", "iou"), ("Rand err", "rand_error"), ("warp err", "warping_error"),
                     ("label agree %", "label_agreement_pct"), ("max |dprob|", "max_abs_dprob")], verdicts)
        print(f"pick (fastest with IoU within 0.005 of fp32, either way): {res['pick']}")
    if args.maskrcnn:
        print("Mask R-CNN", flush=True)
        report["maskrcnn"] = res = run_maskrcnn(args, args.out)
        res["pick"], verdicts = pick(res, CPU_VARIANTS + MASKRCNN_EXTRA)
        print_table("Mask R-CNN (held-out half; agreement over 4 flips vs torchvision fp32)", res,
                    [("segm AP", "segm_AP"), ("AP50", "segm_AP50"), ("AP75", "segm_AP75"), ("bbox AP", "bbox_AP"),
                     ("bbox AP50", "bbox_AP50"), ("bbox AP75", "bbox_AP75"), ("matched", "matched"),
                     ("ref dets", "reference"), ("max |dscore|", "max_abs_dscore"),
                     ("unmatched max score", "unmatched_max_score")], verdicts)
        print(f"pick (fastest with segm and bbox AP within 0.005 of fp32, either way): {res['pick']}")
    with atomic_path(args.out / "openvino_accuracy.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out / 'openvino_accuracy.json'}")
    return report


if __name__ == "__main__":
    main()
