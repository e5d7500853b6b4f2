"""Benchmark: torchvision eager vs the segrt runtime on ONNX Runtime, same weights, same threads.

For each model, on one image:

* ``torchvision_e2e``: ``model([image])`` (its transform, network, postprocessing with
  ``paste_masks_in_image``) plus the mask threshold, from a numpy image.
* ``torchvision_model``: transform + backbone + RPN + RoI heads only (no paste, no un-resize).
* ``sdk_e2e``: ``sdk.load(onnx).predict(image)`` (resize/pad, ONNX Runtime, mask pasting).
* ``sdk_model``: the ONNX Runtime call alone.

Latencies in milliseconds (p50, p90) and FPS = 1000 / mean.
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import sdk
from export.checkpoint import load_checkpoint
from sdk.io import atomic_path
from sdk.timing import time_call

from .models import MaskRCNNConfig, build_model, model_from_checkpoint
from .onnx_export import torch_to_onnx
from .reference import TorchvisionPredictor


def synthetic_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """uint8 RGB image with bright blobs on a dark background (nuclei-like, deterministic)."""
    rng = np.random.default_rng(seed)
    import cv2
    img = np.full((h, w, 3), 20, np.uint8)
    for _ in range(max(h * w // 4000, 10)):
        c = (int(rng.integers(w)), int(rng.integers(h)))
        cv2.ellipse(img, c, (int(rng.integers(5, 15)), int(rng.integers(5, 15))), float(rng.integers(180)),
                    0, 360, tuple(int(v) for v in rng.integers(120, 255, 3)), -1)
    return img


def bench_one(name: str, model: torch.nn.Module, cfg: MaskRCNNConfig, names: list[str], input_size: tuple[int, int],
              image: np.ndarray, workdir: Path, runs: int, warmup: int, threads: int | None,
              int8_calibration: list[np.ndarray] | None = None) -> dict[str, Any]:
    onnx_path = workdir / f"{name}_{input_size[0]}x{input_size[1]}.onnx"
    t = time.perf_counter()
    torch_to_onnx(model, cfg, names, onnx_path, input_size)
    export_s = time.perf_counter() - t
    runtime = sdk.load(onnx_path, threads=threads)
    tv = TorchvisionPredictor(model, names)
    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float() / 255.0

    @torch.no_grad()
    def tv_model_only():
        images, _ = model.transform([tensor])
        feats = model.backbone(images.tensors)
        props, _ = model.rpn(images, feats)
        return model.roi_heads(feats, props, images.image_sizes)

    feed, _ = runtime.preprocess(image)
    res = {
        "input_size": list(input_size), "image_hw": list(image.shape[:2]), "export_s": export_s,
        "torchvision_e2e": time_call(lambda: tv.predict(image), runs, warmup),
        "torchvision_model": time_call(tv_model_only, runs, warmup),
        "sdk_e2e": time_call(lambda: runtime.predict(image), runs, warmup),
        "sdk_model": time_call(lambda: runtime.backend.run(feed), runs, warmup),
    }
    r = runtime.predict(image)
    res["detections_sdk"] = len(r)
    res["detections_torchvision"] = len(tv.predict(image))
    res["sdk_timings_last_ms"] = runtime.last_timings
    res["speedup_e2e_p50"] = res["torchvision_e2e"]["p50_ms"] / res["sdk_e2e"]["p50_ms"]
    if int8_calibration:
        from export.quantize import quantize_int8
        int8 = sdk.load(quantize_int8(onnx_path, onnx_path.with_suffix(".int8.onnx"), int8_calibration), threads=threads)
        res["sdk_int8_model"] = time_call(lambda: int8.backend.run(feed), runs, warmup)
        res["sdk_int8_e2e"] = time_call(lambda: int8.predict(image), runs, warmup)
        res["detections_sdk_int8"] = len(int8.predict(image))
        res["speedup_int8_e2e_p50"] = res["torchvision_e2e"]["p50_ms"] / res["sdk_int8_e2e"]["p50_ms"]
    return res


def run_bench(checkpoint: Path | None = None, models: list[str] = ("small", "r50"), image_path: Path | None = None,
              runs: int = 10, warmup: int = 2, threads: int | None = None,
              workdir: Path = Path("runs/bench_maskrcnn"), json_path: Path | None = None,
              int8_calibration: list[np.ndarray] | None = None) -> dict[str, Any]:
    """Benchmark the requested models; returns (and optionally writes) the results.

    With ``int8_calibration`` images, each model's int8 ONNX (``export.quantize``) is timed too.
    """
    if threads:
        torch.set_num_threads(threads)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    image = None
    if image_path is not None:
        from sdk.imageio import read_image
        from sdk.preprocess import to_rgb_uint8
        image = to_rgb_uint8(read_image(image_path))
    results: dict[str, Any] = {"threads": threads or torch.get_num_threads(), "torch": torch.__version__,
                               "cpu": platform.processor() or platform.machine(), "models": {}}
    for name in models:
        if name == "small":
            if checkpoint:
                model, cfg, names = model_from_checkpoint(load_checkpoint(checkpoint))
            else:
                torch.manual_seed(0)
                cfg = MaskRCNNConfig(min_size=256, max_size=512)
                model, names = build_model(cfg).eval(), ["__background__", "nucleus"]
            img = image if image is not None else synthetic_image(512, 256)
            # export at the image's own size (rounded up to 32): torchvision pads to that too,
            # so both sides process the same pixels
            size = (-(-img.shape[0] // 32) * 32, -(-img.shape[1] // 32) * 32)
            results["models"]["small"] = bench_one("small", model, cfg, names, size, img, workdir,
                                                   runs, warmup, threads, int8_calibration)
        elif name == "r50":
            torch.manual_seed(0)
            cfg = MaskRCNNConfig.paper()
            model = build_model(cfg).eval()
            names = ["__background__"] + [f"class{i}" for i in range(1, 91)]
            img = image if image is not None else synthetic_image(800, 1333)
            results["models"]["r50"] = bench_one("r50", model, cfg, names, (800, 1344), img, workdir,
                                                 runs, warmup, threads, int8_calibration)
    if json_path:
        with atomic_path(json_path) as tmp:
            tmp.write_text(json.dumps(results, indent=1))
    return results
