"""A backend whose network runs in another Triton model, called by BLS (Business Logic Scripting).

The pipeline model keeps pre/post-processing in Python and sends each network call to the
network-only model (Triton's ``onnxruntime_onnx`` or ``tensorrt_plan`` platform), so the
network runs in Triton's C++ backends. Only the official Triton container has those
backends; the server bundled with ``nvidia-pytriton`` has the Python backend alone, so this
path is generated and its configs are parsed here, but it is not run here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from segrt.backends.base import TensorInfo
from segrt.errors import ArtifactError, ServerError


def _shape(dims: list[int]) -> tuple[int | None, ...]:
    return tuple(None if int(d) < 0 else int(d) for d in dims)


class BLSBackend:
    """``segrt.backends`` interface (``metadata``, ``inputs``, ``outputs``, ``run``) over a Triton BLS call.

    Args:
        path: the artifact beside the pipeline model (for messages; metadata comes from the config).
        network_model: name of the network-only model in the same repository.
        config: the pipeline model's config (dict), whose parameters carry ``segrt_metadata``
            and ``segrt_network_io`` ({"inputs": [[name, dtype, shape]], "outputs": [...]}).
        pb_utils: the ``triton_python_backend_utils`` module of the running stub.
    """

    def __init__(self, path: Path, network_model: str, config: dict[str, Any], pb_utils: Any) -> None:
        params = config.get("parameters", {})
        self.path = Path(path)
        self.network_model = network_model
        self.metadata: dict[str, Any] = json.loads(params["segrt_metadata"]["string_value"])
        io = json.loads(params["segrt_network_io"]["string_value"])
        # the config writes dynamic dimensions as -1 (Triton's dims); TensorInfo says None
        self.inputs = [TensorInfo(n, _shape(s), np.dtype(d)) for n, d, s in io["inputs"]]
        self.outputs = [TensorInfo(n, _shape(s), np.dtype(d)) for n, d, s in io["outputs"]]
        if not self.inputs or not self.outputs:
            raise ArtifactError(
                f"the pipeline config of {self.path.name} names no network inputs or outputs",
                "rewrite the repository with this segrt version (segrt serve --write-repo --bls)",
            )
        # TensorRT engines: the built profile {input: (min, opt, max) shapes}, which the predictors respect
        self.profiles = {n: tuple(tuple(int(d) for d in s) for s in tri) for n, tri in io.get("profiles", {}).items()}
        self._pb = pb_utils
        # each network call is bounded: a stuck network model fails the request instead of holding it
        timeout_s = float(params.get("bls_timeout_s", {}).get("string_value", "0") or 0)
        self.timeout_us = int(timeout_s * 1e6)

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One network call by BLS: input arrays -> output arrays (host memory)."""
        pb = self._pb
        tensors = [pb.Tensor.from_dlpack(n, np.ascontiguousarray(a).__dlpack__()) for n, a in feed.items()]
        kwargs: dict[str, Any] = {}
        if hasattr(pb, "PreferredMemory"):  # ask for host outputs: the postprocessing is numpy
            kwargs["preferred_memory"] = pb.PreferredMemory(pb.TRITONSERVER_MEMORY_CPU, 0)
        if self.timeout_us > 0:
            kwargs["timeout"] = self.timeout_us
        request = pb.InferenceRequest(
            model_name=self.network_model,
            inputs=tensors,
            requested_output_names=[o.name for o in self.outputs],
            **kwargs,
        )
        response = request.exec()
        if response.has_error():
            # the network model's failure is the server's, not the client's (UNAVAILABLE: may be retried)
            raise ServerError(
                f"network model {self.network_model!r} failed: {response.error().message()}",
                "check the server log; the network model must be loaded and ready",
            )
        return {t.name(): np.from_dlpack(t) for t in response.output_tensors()}

    def close(self) -> None:
        """Nothing to release: the network model belongs to the server."""
