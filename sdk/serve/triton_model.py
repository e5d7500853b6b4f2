"""The pipeline model that Triton's Python backend runs: image in, segrt result out.

``write_model_repository`` puts a two-line ``model.py`` beside each artifact that imports
:class:`TritonPythonModel` from here, so the server runs exactly the installed ``segrt``
(this machine's, or the one ``pip install segrt`` put into the Triton container).

Tensors cross the backend boundary through DLPack (``np.from_dlpack`` /
``pb_utils.Tensor.from_dlpack``), not ``as_numpy()``: the Python backend stubs of current
Triton releases were compiled against NumPy 1 and read NumPy 2 arrays' item sizes wrongly
(empty outputs, crashed stubs); DLPack is right under both.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from segrt import load
from segrt.errors import BackendUnavailableError, InputError, ServerError
from segrt.serve import protocol

try:
    import triton_python_backend_utils as pb_utils  # only inside Triton's Python backend stub
except ImportError:  # importable elsewhere so the module can be checked and documented
    pb_utils = None


def _param(config: dict[str, Any], key: str, default: str = "") -> str:
    return str((config.get("parameters", {}).get(key) or {}).get("string_value", default))


def _to_numpy(tensor: Any) -> np.ndarray:
    return np.from_dlpack(tensor)


def _to_triton(name: str, array: np.ndarray) -> Any:
    array = np.ascontiguousarray(array)
    if array.size == 0:  # DLPack reports zero strides for empty arrays, which the stub refuses; no bytes to misread
        return pb_utils.Tensor(name, array)
    return pb_utils.Tensor.from_dlpack(name, array.__dlpack__())


def _quiet_dlpack_capsules() -> None:
    """Drop one known harmless message per output tensor from the server log.

    The stub consumes NumPy's DLPack capsule without renaming it the way NumPy 2 expects, so
    the capsule's destructor reports "PyCapsule_GetPointer called with incorrect name" as an
    unraisable exception after the data was already taken over. Everything else is reported as before.
    """
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if (
            unraisable.exc_type is ValueError
            and "PyCapsule_GetPointer called with incorrect name" in str(unraisable.exc_value)
            and unraisable.object is None
        ):
            return
        previous(unraisable)

    sys.unraisablehook = hook


def error_code(exc: BaseException) -> str:
    """Whose fault a failure is, as a TritonError code name: the client's (INVALID_ARG: only
    :class:`InputError`), a dependency that may come back (UNAVAILABLE: a BLS network model or an
    optional runtime), or the server's (INTERNAL: everything else, CUDA and artifact errors included)."""
    if isinstance(exc, InputError):
        return "INVALID_ARG"
    if isinstance(exc, (ServerError, BackendUnavailableError)):
        return "UNAVAILABLE"
    return "INTERNAL"


def default_threads(instances: int) -> int:
    """ONNX Runtime threads per instance, decided on the serving machine: its usable cores / instances."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, instances))


class TritonPythonModel:
    """One instance per Triton model instance; each holds its own predictor."""

    def initialize(self, args: dict[str, str]) -> None:
        """Load the artifact named in the config (Triton calls this once per instance)."""
        _quiet_dlpack_capsules()
        config = json.loads(args["model_config"])
        self.kind = json.loads(_param(config, "segrt_metadata", "{}")).get("kind")
        self.batching = int(config.get("max_batch_size", 0)) > 0
        self.max_pixels = int(_param(config, "max_pixels", str(protocol.DEFAULT_MAX_PIXELS)))
        self.max_probs_pixels = int(_param(config, "max_probs_pixels", str(protocol.DEFAULT_MAX_PROBS_PIXELS)))
        self.max_tta_pixels = int(_param(config, "max_tta_pixels", str(protocol.DEFAULT_MAX_TTA_PIXELS)))
        here = Path(args["model_repository"]) / args["model_version"]
        artifact = here / _param(config, "segrt_artifact")
        options: dict[str, Any] = {}
        if _param(config, "segrt_network_model"):  # BLS: the network runs in Triton's own backend
            from segrt.serve.bls import BLSBackend

            backend = BLSBackend(artifact, _param(config, "segrt_network_model"), config, pb_utils)
            self.predictor = _predictor_for(backend)
        else:
            if artifact.suffix == ".onnx":
                instances = sum(int(g.get("count", 1)) for g in config.get("instance_group", [])) or 1
                options["threads"] = int(_param(config, "threads", "0")) or default_threads(instances)
            elif args.get("model_instance_kind") == "GPU":
                options["device"] = int(args.get("model_instance_device_id", 0))
            self.predictor = load(artifact, **options)
        self.kind = self.predictor.kind
        self.channels = int(self.predictor.metadata["input_channels"]) if self.kind == "unet" else None

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request, in order; a failed request never stops the others."""
        responses = []
        for request in requests:
            if hasattr(request, "is_cancelled") and request.is_cancelled():  # deadline passed or client gone
                responses.append(
                    pb_utils.InferenceResponse(
                        error=pb_utils.TritonError(
                            "request cancelled before it ran",
                            getattr(pb_utils.TritonError, "CANCELLED", pb_utils.TritonError.UNAVAILABLE),
                        )
                    )
                )
                continue
            try:
                responses.append(pb_utils.InferenceResponse(output_tensors=self._run(request)))
            except Exception as exc:
                code = error_code(exc)
                if code == "INVALID_ARG":
                    message = str(exc)
                else:  # a server fault: say so, log the traceback, keep serving
                    traceback.print_exc(file=sys.stderr)
                    message = f"server error in the segrt pipeline: {type(exc).__name__}: {exc}"
                responses.append(
                    pb_utils.InferenceResponse(
                        output_tensors=[], error=pb_utils.TritonError(message, getattr(pb_utils.TritonError, code))
                    )
                )
        return responses

    def _inputs(self, request: Any) -> tuple[np.ndarray, dict[str, Any]]:
        present = {}
        for name in (*protocol.IMAGE_INPUTS.values(), protocol.ENCODED_INPUT):
            t = pb_utils.get_input_tensor_by_name(request, name)
            if t is not None:
                present[name] = _to_numpy(t)
        if len(present) != 1:
            raise InputError(
                f"a request carries exactly one image input, got {sorted(present) or 'none'}",
                f"send one of {', '.join([*protocol.IMAGE_INPUTS.values(), protocol.ENCODED_INPUT])}",
            )
        ((name, array),) = present.items()
        if self.batching:
            if array.shape[0] != 1:
                raise InputError(
                    f"a request carries one image, got a batch of {array.shape[0]}",
                    "send one request per image; the server batches requests itself",
                )
            array = array[0]
        if name == protocol.ENCODED_INPUT:
            array = _hwc(protocol.decode_request_image(array, self.max_pixels))
        image = protocol.check_request_image(array, self.max_pixels, self.channels)
        options: dict[str, Any] = {}
        tta = pb_utils.get_input_tensor_by_name(request, protocol.TTA_INPUT)
        if tta is not None and self.kind == "unet":
            options["tta"] = bool(_to_numpy(tta).reshape(-1)[0])
            pixels = image.shape[0] * image.shape[1]
            if options["tta"] and pixels > self.max_tta_pixels:
                raise InputError(
                    f"test-time augmentation (8 passes) of {pixels / 1e6:.1f} megapixels exceeds this "
                    f"server's limit of {self.max_tta_pixels / 1e6:.1f} megapixels",
                    "send the image without tta, or split it",
                )
        return image, options

    def _run(self, request: Any) -> list[Any]:
        image, options = self._inputs(request)
        wanted = set(request.requested_output_names()) if hasattr(request, "requested_output_names") else set()
        wanted = wanted or set(protocol.outputs_for(self.kind))  # none named: all (KServe v2)
        if self.kind == "unet":
            pixels = image.shape[0] * image.shape[1]
            if "probs" in wanted and pixels > self.max_probs_pixels:
                raise InputError(
                    f"probabilities of {pixels / 1e6:.1f} megapixels exceed this server's limit of "
                    f"{self.max_probs_pixels / 1e6:.1f} megapixels",
                    "ask for classes/instances only (RemotePredictor(..., probs=False)), or split the image",
                )
            # compute only what was asked for; never a progress bar in the server log
            options.update(
                probs="float32" if "probs" in wanted else None, instances="instances" in wanted, progress=False
            )
        else:
            options["progress"] = False
        result = self.predictor.predict(image, **options)
        tensors = protocol.encode_result(self.kind, result, with_probs="probs" in wanted)
        return [_to_triton(n, a[None] if self.batching else a) for n, a in tensors.items() if n in wanted]

    def finalize(self) -> None:
        """Release the backend (Triton calls this when the model unloads)."""
        backend = getattr(self.predictor, "backend", None)
        if backend is not None and hasattr(backend, "close"):
            backend.close()


def _hwc(image: np.ndarray) -> np.ndarray:
    return image[:, :, None] if image.ndim == 2 else image


def _predictor_for(backend: Any) -> Any:
    import importlib

    from segrt import PREDICTORS

    module, name = PREDICTORS[backend.metadata["kind"]].split(":")
    return getattr(importlib.import_module(module), name)(backend)


MODEL_PY = '''"""segrt pipeline model for Triton's Python backend (written by segrt.serve.write_model_repository)."""
from segrt.serve.triton_model import TritonPythonModel  # noqa: F401  (needs `pip install segrt` in the server's Python)
'''
