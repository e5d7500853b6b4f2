"""Latency measurement helpers (no torch): repeat a call, report p50/p90 and throughput."""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np


def time_call(fn: Callable[[], Any], runs: int = 10, warmup: int = 2, images_per_call: int = 1) -> dict[str, float]:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times; latencies in milliseconds."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    ms = np.asarray(samples)
    p50 = float(np.percentile(ms, 50))
    return {"p50_ms": p50, "p90_ms": float(np.percentile(ms, 90)), "mean_ms": float(ms.mean()),
            "min_ms": float(ms.min()), "runs": runs, "images_per_s": images_per_call * 1e3 / p50}
