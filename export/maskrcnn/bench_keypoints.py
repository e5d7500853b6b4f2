"""Keypoint R-CNN latency: torchvision eager vs the segrt runtime (fp32 and int8 ONNX), same weights and threads.

Variants (one image, end to end from a numpy RGB image to keypoints in image pixels):

* ``torchvision_e2e``: ``model([image])`` through ``export.maskrcnn.reference.TorchvisionPredictor``
  (torchvision's transform, network and ``heatmaps_to_keypoints``);
* ``sdk_e2e``: ``sdk.load(onnx).predict(image)`` (resize/pad, ONNX Runtime, heatmap decoding);
* ``sdk_int8_e2e``: the same with the int8 ONNX (``export.quantize``), when calibration images are given;
* ``torchvision_model`` / ``sdk_model``: the network alone (transform + backbone + RPN + RoI heads /
  the ONNX Runtime call).

The machine this runs on may be shared, so the variants are interleaved: each round times every
variant once, in turn, and p50/p90 are taken over rounds; load changes hit all variants alike.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import sdk
from sdk.bench.core import interleaved_samples, timing_from_samples

from .bench import torchvision_model_call
from .onnx_export import torch_to_onnx
from .reference import TorchvisionPredictor


def time_interleaved(calls: dict[str, Callable[[], Any]], runs: int = 10, warmup: int = 1) -> dict[str, dict[str, float]]:
    """Time each call ``runs`` times, round-robin; milliseconds p50/p90/mean and images per second at p50."""
    out = {}
    for name, ms in interleaved_samples(calls, runs, warmup).items():
        t = timing_from_samples(ms, warmup)
        out[name] = {"p50_ms": t.p50_ms, "p90_ms": t.p90_ms, "mean_ms": t.mean_ms, "runs": t.runs,
                     "images_per_s": t.throughput}
    return out


def bench_keypoints(model: torch.nn.Module, cfg, names: list[str], input_size: tuple[int, int], image: np.ndarray,
                    workdir: Path, runs: int = 10, warmup: int = 1, threads: int | None = None,
                    int8_calibration: list[np.ndarray] | None = None) -> dict[str, Any]:
    """Export ``model`` at ``input_size``, then time the variants of the module doc on ``image`` (uint8 RGB).

    Returns:
        {"input_size", "image_hw", "threads", per-variant timings, "speedup_e2e_p50" (torchvision / sdk),
        "speedup_int8_e2e_p50", "detections": {variant: count}}.
    """
    if threads:
        torch.set_num_threads(threads)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    onnx_path = torch_to_onnx(model, cfg, names, workdir / f"{cfg.arch}_{input_size[0]}x{input_size[1]}.onnx",
                              input_size)
    runtime = sdk.load(onnx_path, threads=threads)
    eager = TorchvisionPredictor(model, names)
    torchvision_model = torchvision_model_call(model, image)

    feed, _ = runtime.preprocess(image)
    calls: dict[str, Callable[[], Any]] = {
        "torchvision_e2e": lambda: eager.predict(image), "sdk_e2e": lambda: runtime.predict(image),
        "torchvision_model": torchvision_model, "sdk_model": lambda: runtime.backend.run(feed)}
    predictors = {"torchvision_e2e": eager, "sdk_e2e": runtime}
    if int8_calibration:
        from export.quantize import quantize_int8
        int8 = sdk.load(quantize_int8(onnx_path, onnx_path.with_suffix(".int8.onnx"), int8_calibration),
                        threads=threads)
        calls["sdk_int8_e2e"] = lambda: int8.predict(image)
        predictors["sdk_int8_e2e"] = int8
    result: dict[str, Any] = {"input_size": list(input_size), "image_hw": list(image.shape[:2]),
                              "threads": threads or torch.get_num_threads(), "arch": cfg.arch,
                              "timing": "interleaved rounds"}
    result.update(time_interleaved(calls, runs, warmup))
    result["detections"] = {k: len(p.predict(image)) for k, p in predictors.items()}
    base = result["torchvision_e2e"]["p50_ms"]
    result["speedup_e2e_p50"] = base / result["sdk_e2e"]["p50_ms"]
    if "sdk_int8_e2e" in result:
        result["speedup_int8_e2e_p50"] = base / result["sdk_int8_e2e"]["p50_ms"]
    return result


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """Printable table of ``{name: bench_keypoints(...)}``."""
    lines = [f"{'model':<12}{'variant':<20}{'p50 ms':>10}{'p90 ms':>10}{'img/s':>8}"]
    for name, r in results.items():
        for v in ("torchvision_model", "torchvision_e2e", "sdk_model", "sdk_e2e", "sdk_int8_e2e"):
            if v in r:
                lines.append(f"{name:<12}{v:<20}{r[v]['p50_ms']:>10.1f}{r[v]['p90_ms']:>10.1f}{r[v]['images_per_s']:>8.2f}")
        line = f"{name:<12}end to end p50, torchvision / sdk: fp32 {r['speedup_e2e_p50']:.2f}x"
        if "speedup_int8_e2e_p50" in r:
            line += f", int8 {r['speedup_int8_e2e_p50']:.2f}x"
        lines.append(line + f" (input {r['input_size'][0]}x{r['input_size'][1]}, {r['threads']} threads)")
    return "\n".join(lines)
