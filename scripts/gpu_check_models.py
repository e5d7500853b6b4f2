#!/usr/bin/env python
"""Both models on the GPU runtimes, against ONNX Runtime on the CPU (a step of ``scripts/gpu_check.sh``).

    python scripts/gpu_check_models.py ort  --out DIR   # ONNX Runtime CUDA EP vs CPU, U-Net and Mask R-CNN
    python scripts/gpu_check_models.py trt  --out DIR   # TensorRT engines: build, parity vs CPU, segrt bench rows

The models are small random-weight ones exported here (no downloads, no weights): a depth-3
U-Net (16 base channels, 188x188 tile) and torchvision's resnet18-FPN Mask R-CNN at 256x256.
Random weights still exercise every op; the oracle is ONNX Runtime's CPU result on the same
ONNX file and an image the export did not see. Writes ``DIR/<what>.json`` with one row per
check: the largest differences and whether they are within the stated tolerance.
Exit status 0 only when every check passed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

UNET_ATOL = {"fp32": 1e-3, "fp16": 2e-2}  # probabilities, absolute
RCNN_SCORE_ATOL = {"fp32": 1e-2, "fp16": 5e-2}  # detection scores; boxes within 2 px at 256x256


def export_models(folder: Path) -> dict[str, Path]:
    """Tiny U-Net and Mask R-CNN ONNX files (portable graph, and the TensorRT graph with plugin ops)."""
    import torch

    from segrt.export.maskrcnn.models import MaskRCNNConfig, build_model
    from segrt.export.maskrcnn.onnx_export import torch_to_onnx
    from segrt.export.maskrcnn.trt_graph import portable_to_tensorrt
    from segrt.export.models.unet import UNet, UNetConfig
    from segrt.export.to_onnx import unet_to_onnx

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    unet = unet_to_onnx(
        UNet(UNetConfig(depth=3, base_channels=16)).eval(), folder / "unet.onnx", ["background", "cell"], tile_size=188
    )
    cfg = MaskRCNNConfig(
        min_size=256, max_size=256, rpn_pre_nms_top_n_test=200, rpn_post_nms_top_n_test=100, box_detections_per_img=50
    )
    rcnn = torch_to_onnx(
        build_model(cfg).eval(),
        cfg,
        ["__background__", "cell"],
        folder / "maskrcnn.onnx",
        input_size=(256, 256),
        score_thresh=0.0,
    )
    return {"unet": unet, "maskrcnn": rcnn, "maskrcnn_trt": portable_to_tensorrt(rcnn, folder / "maskrcnn_trt.onnx")}


def _image(kind: str) -> np.ndarray:
    rng = np.random.default_rng(7)  # not the export's input
    return rng.integers(0, 256, (300, 260) if kind == "unet" else (240, 250, 3), dtype=np.uint8)


def compare(kind: str, got: Any, ref: Any, precision: str) -> dict[str, Any]:
    """Largest differences of two predictions of one image, and whether they are within tolerance."""
    if kind == "unet":
        diff = float(np.abs(got.probs - ref.probs).max())
        return {"max_abs_prob_diff": diff, "ok": diff <= UNET_ATOL[precision]}
    row: dict[str, Any] = {"detections": [len(got), len(ref)]}
    n = min(len(got), len(ref))
    if n:  # random weights give near-equal scores, so the order may differ: compare sorted scores, nearest boxes
        row["max_score_diff"] = float(np.abs(np.sort(got.scores)[::-1][:n] - np.sort(ref.scores)[::-1][:n]).max())
        gaps = np.abs(np.asarray(got.boxes)[:, None, :] - np.asarray(ref.boxes)[None, :, :]).max(axis=2)
        row["max_box_diff_px"] = float(gaps.min(axis=1).max())  # each box to its nearest reference box
        row["labels_equal"] = bool(np.array_equal(np.sort(got.labels), np.sort(ref.labels)))
    row["ok"] = bool(
        abs(len(got) - len(ref)) <= max(1, len(ref) // 20)
        and (n == 0 or (row["max_score_diff"] <= RCNN_SCORE_ATOL[precision] and row["max_box_diff_px"] <= 2.0))
    )
    return row


def check_ort(models: dict[str, Path]) -> list[dict[str, Any]]:
    import onnxruntime as ort

    import segrt

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return [
            {
                "check": "onnxruntime CUDA EP",
                "skipped": "onnxruntime has no CUDAExecutionProvider (pip install onnxruntime-gpu)",
                "ok": True,
            }
        ]
    rows = []
    for kind in ("unet", "maskrcnn"):
        cpu = segrt.load(models[kind], providers=["CPUExecutionProvider"])
        gpu = segrt.load(models[kind], providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
        image = _image(kind)
        start = time.perf_counter()
        got = gpu.predict(image)
        rows.append(
            {
                "check": f"{kind}: onnxruntime CUDA EP vs CPU",
                "first_call_s": round(time.perf_counter() - start, 2),
                **compare(kind, got, cpu.predict(image), "fp32"),
            }
        )
    return rows


def check_trt(models: dict[str, Path], out: Path) -> list[dict[str, Any]]:
    import segrt
    from segrt.errors import SegrtError
    from segrt.export.to_engine import onnx_to_engine

    rows = []
    plans = [
        ("unet", "unet", "fp32"),
        ("unet", "unet", "fp16"),
        ("maskrcnn", "maskrcnn", "fp32"),
        ("maskrcnn", "maskrcnn_trt", "fp32"),
    ]  # the last needs the plugin library built against TensorRT
    for kind, source, precision in plans:
        name = f"{source}_{precision}"
        try:
            start = time.perf_counter()
            engine = onnx_to_engine(
                models[source], out / f"{name}.engine", precision=precision, max_batch=4 if kind == "unet" else None
            )
            built = time.perf_counter() - start
            image = _image(kind)
            got = segrt.load(engine).predict(image)
            ref = segrt.load(models[source], providers=["CPUExecutionProvider"]).predict(image)
            rows.append(
                {
                    "check": f"{name}: TensorRT vs onnxruntime CPU",
                    "build_s": round(built, 1),
                    **compare(kind, got, ref, precision),
                }
            )
            bench = out / f"bench_{name}.json"
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "segrt.cli",
                    "bench",
                    "model",
                    str(engine),
                    str(models[source]),
                    "--modes",
                    "model",
                    "--runs",
                    "20",
                    "--out",
                    str(bench),
                ],
                capture_output=True,
                text=True,
                timeout=120,
            )
            rows[-1]["bench"] = str(bench) if done.returncode == 0 else f"segrt bench failed: {done.stderr[-300:]}"
        except SegrtError as exc:
            rows.append(
                {
                    "check": f"{name}: TensorRT",
                    "skipped" if "plugin" in str(exc) else "error": str(exc),
                    "ok": "plugin" in str(exc),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=("ort", "trt"))
    p.add_argument("--out", type=Path, default=Path("build/gpu_check_out"))
    a = p.parse_args(argv)
    models = export_models(a.out / "models")
    rows = check_ort(models) if a.what == "ort" else check_trt(models, a.out)
    for r in rows:
        print(json.dumps(r))
    (a.out / f"{a.what}.json").write_text(json.dumps(rows, indent=2))
    return 0 if all(r.get("ok") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
