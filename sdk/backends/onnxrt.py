"""ONNX Runtime backend: the embedded default (CPU), and CUDA/TensorRT EPs with onnxruntime-gpu."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnxruntime as ort

from .. import metadata as md
from ..errors import ArtifactError, BackendUnavailableError, InputError
from .base import Backend, TensorInfo

_ORT_DTYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(int32)": np.int32,
    "tensor(int64)": np.int64, "tensor(bool)": np.bool_,
}

DEFAULT_PROVIDERS = ("CPUExecutionProvider",)


def _tensor_info(arg) -> TensorInfo:
    shape = tuple(d if isinstance(d, int) else None for d in arg.shape)
    return TensorInfo(arg.name, shape, np.dtype(_ORT_DTYPES.get(arg.type, np.float32)))


class OnnxRuntimeBackend(Backend):
    """Runs an ``.onnx`` file with ONNX Runtime.

    Args:
        path: the ``.onnx`` file (must carry segrt metadata unless ``require_metadata=False``).
        providers: execution providers in priority order, e.g.
            ``("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")``.
            Providers that this onnxruntime build lacks are an error, not a silent fallback.
        threads: intra-op threads; default: ONNX Runtime's choice (one per physical core).
        session_options: a prepared ``ort.SessionOptions`` (e.g. with custom-op libraries registered).
    """

    def __init__(self, path: str | Path, providers: Sequence[str] | None = None,
                 threads: int | None = None, session_options: ort.SessionOptions | None = None,
                 require_metadata: bool = True) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ArtifactError(f"model file not found: {self.path}", "check the path (export one with `segrt export`)")
        providers = tuple(providers or DEFAULT_PROVIDERS)
        missing = [p for p in providers if p not in ort.get_available_providers()]
        if missing:
            raise BackendUnavailableError(
                f"onnxruntime {ort.__version__} has no {', '.join(missing)}; it has {', '.join(ort.get_available_providers())}",
                "for CUDA/TensorRT execution providers: pip uninstall onnxruntime && pip install onnxruntime-gpu")
        opts = session_options or ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = int(threads)
        opts.log_severity_level = 3  # warnings about unused initializers etc. are noise for users
        try:
            self.session = ort.InferenceSession(os.fspath(self.path), sess_options=opts, providers=list(providers))
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
            first = str(exc).strip().splitlines()[0][:300]
            raise ArtifactError(f"{self.path} could not be loaded by ONNX Runtime: {first}",
                                "the file may be truncated or not an ONNX model; re-export it with `segrt export`") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        text = meta.get(md.METADATA_KEY)
        self.metadata: dict[str, Any] = (md.decode(text, str(self.path))
                                         if (require_metadata or text is not None) else {})
        self.inputs = [_tensor_info(a) for a in self.session.get_inputs()]
        self.outputs = [_tensor_info(a) for a in self.session.get_outputs()]
        self.providers = tuple(self.session.get_providers())
        self._output_names = [o.name for o in self.outputs]

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [t.name for t in self.inputs if t.name not in feed]
        if missing:
            raise InputError(f"missing model input(s): {', '.join(missing)}",
                             f"pass a dict with keys {[t.name for t in self.inputs]}")
        results = self.session.run(self._output_names, feed)
        return dict(zip(self._output_names, results))

    def close(self) -> None:
        self.session = None  # ORT frees the session when the last reference goes
