"""A PyTorch module behind the segrt Backend interface: the eager baseline in benchmarks and tests.

Wrapping eager PyTorch this way lets the benchmark time PyTorch and ONNX Runtime
through the very same pre/post-processing code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from segrt.backends.base import Backend, TensorInfo


class TorchBackend(Backend):
    """Runs ``module`` eagerly under ``torch.inference_mode`` (outputs by ``output_names`` order).

    ``autocast=torch.bfloat16`` runs it under CPU autocast (convolutions and matmuls in bf16);
    outputs come back as float32 either way.
    """

    def __init__(
        self,
        module: torch.nn.Module,
        metadata: dict[str, Any],
        input_names: list[str],
        output_names: list[str],
        threads: int | None = None,
        autocast: torch.dtype | None = None,
    ) -> None:
        self.module = module.eval()
        self.autocast = autocast
        self.metadata = metadata
        self.path = Path(f"<torch {type(module).__name__}>")
        self.inputs = [TensorInfo(n, (None,), np.dtype(np.float32)) for n in input_names]
        self.outputs = [TensorInfo(n, (None,), np.dtype(np.float32)) for n in output_names]
        if threads:
            torch.set_num_threads(threads)

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.inference_mode(), torch.autocast("cpu", dtype=self.autocast, enabled=self.autocast is not None):
            out = self.module(*(torch.from_numpy(feed[t.name]) for t in self.inputs))
        out = out if isinstance(out, (tuple, list)) else (out,)
        return {t.name: o.float().numpy() for t, o in zip(self.outputs, out, strict=True)}
