"""ONNX Runtime backend: the embedded default (CPU), and CUDA/TensorRT EPs with onnxruntime-gpu.

Execution providers (``providers=``):

* ``None`` or ``"cpu"``: CPU only (the default; what the ``onnxruntime`` wheel has).
* ``"auto"``: the best this onnxruntime build has, in the order TensorRT, CUDA, CPU.
  With ``onnxruntime-gpu`` that gives GPU inference without a native TensorRT install
  (the TensorRT EP needs TensorRT's libraries; the CUDA EP needs CUDA and cuDNN).
* a list in priority order of names (``"tensorrt"``, ``"cuda"``, ``"cpu"`` or ONNX Runtime's
  own ``"CUDAExecutionProvider"``, ...) or ``(name, {options})`` pairs. Providers named
  explicitly must exist and must actually load, else ``BackendUnavailableError``.

GPU providers get sensible defaults (device id; for TensorRT an engine and timing cache
folder next to the model so the first-run build is paid once), which explicit options override.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from segrt.artifact import metadata as md
from segrt.backends.base import Backend, TensorInfo, check_feed
from segrt.errors import ArtifactError, BackendUnavailableError, InputError

_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(bool)": np.bool_,
    "tensor(uint16)": np.uint16,
    "tensor(int16)": np.int16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
}

DEFAULT_PROVIDERS = ("CPUExecutionProvider",)
PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}
AUTO_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
GPU_INSTALL_HINT = (
    "pip uninstall onnxruntime && pip install onnxruntime-gpu (CUDA EP: CUDA 12 and cuDNN 9 libraries; "
    "TensorRT EP: also TensorRT's libraries)"
)

ProviderSpec = str | tuple[str, dict[str, Any]]


def _tensor_info(arg: Any) -> TensorInfo:
    shape = tuple(d if isinstance(d, int) else None for d in arg.shape)
    return TensorInfo(arg.name, shape, np.dtype(_ORT_DTYPES.get(arg.type, np.float32)))


def default_provider_options(
    name: str, *, device_id: int = 0, cache_dir: str | Path | None = None, trt_fp16: bool = False
) -> dict[str, Any]:
    """Options segrt passes to a GPU provider unless the caller overrides them."""
    if name == "CUDAExecutionProvider":
        return {"device_id": device_id}
    if name == "TensorrtExecutionProvider":
        opts: dict[str, Any] = {"device_id": device_id, "trt_fp16_enable": bool(trt_fp16)}
        if cache_dir is not None:
            opts.update(
                trt_engine_cache_enable=True,
                trt_engine_cache_path=str(cache_dir),
                trt_timing_cache_enable=True,
                trt_timing_cache_path=str(cache_dir),
            )
        return opts
    return {}


def resolve_providers(
    providers: str | Sequence[ProviderSpec] | None,
    available: Sequence[str],
    *,
    device_id: int = 0,
    cache_dir: str | Path | None = None,
    trt_fp16: bool = False,
) -> tuple[list[tuple[str, dict[str, Any]]], bool]:
    """Turn the ``providers`` argument into ONNX Runtime's (name, options) list.

    Args:
        providers: None/"cpu", "auto", one name, or a sequence of names / (name, options).
        available: ``onnxruntime.get_available_providers()`` (a parameter, so this is testable anywhere).
    Returns:
        (list of (provider name, options) in priority order, whether it came from "auto").
    Raises:
        BackendUnavailableError: an explicitly named provider is not in ``available``.
        InputError: an unknown name or a malformed entry.
    """
    auto = isinstance(providers, str) and providers.lower() == "auto"
    if providers is None:
        specs: list[ProviderSpec] = list(DEFAULT_PROVIDERS)
    elif auto:
        specs = [p for p in AUTO_ORDER if p in available] or list(DEFAULT_PROVIDERS)
    elif isinstance(providers, str):
        specs = [providers]
    else:
        specs = list(providers)
    resolved: list[tuple[str, dict[str, Any]]] = []
    for spec in specs:
        if isinstance(spec, str):
            name, opts = spec, {}
        elif (
            isinstance(spec, (tuple, list))
            and len(spec) == 2
            and isinstance(spec[0], str)
            and isinstance(spec[1], Mapping)
        ):
            name, opts = spec[0], dict(spec[1])
        else:
            raise InputError(
                f"cannot read execution provider entry {spec!r}",
                "use a name like 'cuda' or 'CUDAExecutionProvider', or a (name, {options}) pair",
            )
        full = PROVIDER_ALIASES.get(name.lower(), name)
        if not full.endswith("ExecutionProvider"):
            raise InputError(
                f"unknown execution provider {name!r}",
                f"use one of {', '.join(PROVIDER_ALIASES)} or an ONNX Runtime provider name, or 'auto'",
            )
        if any(full == r[0] for r in resolved):
            raise InputError(f"execution provider {full} is listed twice", "list each provider once")
        merged = {**default_provider_options(full, device_id=device_id, cache_dir=cache_dir, trt_fp16=trt_fp16), **opts}
        resolved.append((full, merged))
    missing = [name for name, _ in resolved if name not in available]
    if missing:
        raise BackendUnavailableError(
            f"onnxruntime {ort.__version__} has no {', '.join(missing)}; it has {', '.join(available)}",
            f"for CUDA/TensorRT execution providers: {GPU_INSTALL_HINT}",
        )
    return resolved, auto


class OnnxRuntimeBackend(Backend):
    """Runs an ``.onnx`` file with ONNX Runtime.

    Args:
        path: the ``.onnx`` file (must carry segrt metadata unless ``require_metadata=False``).
        providers: ``None`` (CPU, the default), ``"auto"`` (TensorRT, CUDA, CPU: those this
            onnxruntime build has), or a priority list of names / ``(name, options)`` pairs, e.g.
            ``["cuda", "cpu"]`` or ``("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")``.
            Providers named explicitly that this onnxruntime build lacks, or that fail to load,
            are an error, not a silent fallback.
        threads: intra-op threads; default: ONNX Runtime's choice (one per physical core).
        session_options: a prepared ``ort.SessionOptions`` (e.g. with custom-op libraries registered).
        device_id: GPU for the CUDA/TensorRT providers.
        trt_cache_dir: engine/timing cache of the TensorRT provider (default: ``.ort_trt_cache``
            next to the model).
        trt_fp16: let the TensorRT provider use fp16 kernels.
    """

    def __init__(
        self,
        path: str | Path,
        providers: str | Sequence[ProviderSpec] | None = None,
        threads: int | None = None,
        session_options: ort.SessionOptions | None = None,
        require_metadata: bool = True,
        device_id: int = 0,
        trt_cache_dir: str | Path | None = None,
        trt_fp16: bool = False,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ArtifactError(f"model file not found: {self.path}", "check the path (export one with `segrt export`)")
        available = ort.get_available_providers()
        cache_dir = Path(trt_cache_dir) if trt_cache_dir is not None else self.path.parent / ".ort_trt_cache"
        resolved, auto = resolve_providers(
            providers, available, device_id=device_id, cache_dir=cache_dir, trt_fp16=trt_fp16
        )
        if any(name == "TensorrtExecutionProvider" for name, _ in resolved):
            cache_dir.mkdir(parents=True, exist_ok=True)
        opts = session_options or ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = int(threads)
        opts.log_severity_level = 3  # warnings about unused initializers etc. are noise for users
        try:
            self.session = ort.InferenceSession(
                os.fspath(self.path),
                sess_options=opts,
                providers=[name for name, _ in resolved],
                provider_options=[o for _, o in resolved],
            )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
            first = str(exc).strip().splitlines()[0][:300]
            raise ArtifactError(
                f"{self.path} could not be loaded by ONNX Runtime: {first}",
                "the file may be truncated or not an ONNX model; re-export it with `segrt export`",
            ) from None
        self.metadata: dict[str, Any] = md.from_props(
            self.session.get_modelmeta().custom_metadata_map, str(self.path), required=require_metadata
        )
        self.inputs = [_tensor_info(a) for a in self.session.get_inputs()]
        self.outputs = [_tensor_info(a) for a in self.session.get_outputs()]
        self.providers = tuple(self.session.get_providers())
        # ONNX Runtime drops a GPU provider whose libraries (CUDA, cuDNN, TensorRT) fail to load,
        # logs it, and runs on CPU: say so instead of being silently slow
        dropped = [name for name, _ in resolved if name not in self.providers]
        if dropped:
            problem = (
                f"ONNX Runtime could not start {', '.join(dropped)} for {self.path.name} and fell back to "
                f"{', '.join(self.providers)}"
            )
            fix = (
                "check that the CUDA/cuDNN (and TensorRT) libraries that onnxruntime-gpu "
                f"{ort.__version__} needs are installed and on the library path; {GPU_INSTALL_HINT}"
            )
            if not auto:
                raise BackendUnavailableError(problem, fix)
            warnings.warn(f"{problem}. {fix}", stacklevel=2)
        self._output_names = [o.name for o in self.outputs]

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        check_feed(self.inputs, feed)
        results = self.session.run(self._output_names, feed)
        return dict(zip(self._output_names, results, strict=True))

    def close(self) -> None:
        self.session = None  # ORT frees the session when the last reference goes
