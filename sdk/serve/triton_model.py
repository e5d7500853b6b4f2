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
import sys
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from segrt import load
from segrt.errors import InputError, SegrtError
from segrt.serve import protocol
try:
    import triton_python_backend_utils as pb_utils  # only inside Triton's Python backend stub
except ImportError:  # importable elsewhere so the module can be checked and documented
    pb_utils = None


def _param(config: dict[str, Any], key: str, default: str | None = None) -> str | None:
    return (config.get("parameters", {}).get(key) or {}).get("string_value", default)


def _to_numpy(tensor) -> np.ndarray:
    return np.from_dlpack(tensor)


def _to_triton(name: str, array: np.ndarray):
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

    def hook(unraisable) -> None:
        if unraisable.exc_type is ValueError and "PyCapsule_GetPointer called with incorrect name" in str(
                unraisable.exc_value) and unraisable.object is None:
            return
        previous(unraisable)

    sys.unraisablehook = hook


class TritonPythonModel:
    """One instance per Triton model instance; each holds its own predictor."""

    def initialize(self, args: dict[str, str]) -> None:
        _quiet_dlpack_capsules()
        config = json.loads(args["model_config"])
        self.kind = json.loads(_param(config, "segrt_metadata", "{}")).get("kind")
        self.batching = int(config.get("max_batch_size", 0)) > 0
        self.max_pixels = int(_param(config, "max_pixels", str(protocol.DEFAULT_MAX_PIXELS)))
        here = Path(args["model_repository"]) / args["model_version"]
        artifact = here / _param(config, "segrt_artifact")
        options: dict[str, Any] = {}
        if _param(config, "segrt_network_model"):  # BLS: the network runs in Triton's own backend
            from segrt.serve.bls import BLSBackend
            backend = BLSBackend(artifact, _param(config, "segrt_network_model"), config, pb_utils)
            self.predictor = _predictor_for(backend)
        else:
            if artifact.suffix == ".onnx":
                options["threads"] = int(_param(config, "threads", "0")) or None
            elif args.get("model_instance_kind") == "GPU":
                options["device"] = int(args.get("model_instance_device_id", 0))
            self.predictor = load(artifact, **options)
        self.kind = self.predictor.kind

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            try:
                responses.append(pb_utils.InferenceResponse(output_tensors=self._run(request)))
            except SegrtError as exc:
                responses.append(pb_utils.InferenceResponse(
                    output_tensors=[], error=pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)))
            except Exception as exc:  # anything else is a server fault: say so, log the traceback, keep serving
                traceback.print_exc(file=sys.stderr)
                responses.append(pb_utils.InferenceResponse(
                    output_tensors=[], error=pb_utils.TritonError(
                        f"internal error in the segrt pipeline: {type(exc).__name__}: {exc}",
                        pb_utils.TritonError.INTERNAL)))
        return responses

    def _inputs(self, request) -> tuple[np.ndarray, dict[str, Any]]:
        present = {}
        for name in (*protocol.IMAGE_INPUTS.values(), protocol.ENCODED_INPUT):
            t = pb_utils.get_input_tensor_by_name(request, name)
            if t is not None:
                present[name] = _to_numpy(t)
        if len(present) != 1:
            raise InputError(f"a request carries exactly one image input, got {sorted(present) or 'none'}",
                             f"send one of {', '.join([*protocol.IMAGE_INPUTS.values(), protocol.ENCODED_INPUT])}")
        (name, array), = present.items()
        if self.batching:
            if array.shape[0] != 1:
                raise InputError(f"a request carries one image, got a batch of {array.shape[0]}",
                                 "send one request per image; the server batches requests itself")
            array = array[0]
        if name == protocol.ENCODED_INPUT:
            image = protocol.check_request_image(_hwc(protocol.decode_request_image(array, self.max_pixels)), self.max_pixels)
        else:
            image = protocol.check_request_image(array, self.max_pixels)
        options: dict[str, Any] = {}
        tta = pb_utils.get_input_tensor_by_name(request, protocol.TTA_INPUT)
        if tta is not None and self.kind == "unet":
            options["tta"] = bool(_to_numpy(tta).reshape(-1)[0])
        return image, options

    def _run(self, request) -> list:
        image, options = self._inputs(request)
        result = self.predictor.predict(image, **options)
        wanted = request.requested_output_names() if hasattr(request, "requested_output_names") else None
        tensors = protocol.encode_result(self.kind, result, with_probs=not wanted or "probs" in wanted)
        return [_to_triton(n, a[None] if self.batching else a) for n, a in tensors.items()
                if not wanted or n in wanted]

    def finalize(self) -> None:
        backend = getattr(self.predictor, "backend", None)
        if backend is not None and hasattr(backend, "close"):
            backend.close()


def _hwc(image: np.ndarray) -> np.ndarray:
    return image[:, :, None] if image.ndim == 2 else image


def _predictor_for(backend):
    import importlib
    from segrt import PREDICTORS
    module, name = PREDICTORS[backend.metadata["kind"]].split(":")
    return getattr(importlib.import_module(module), name)(backend)


MODEL_PY = '''"""segrt pipeline model for Triton's Python backend (written by segrt.serve.write_model_repository)."""
from segrt.serve.triton_model import TritonPythonModel  # noqa: F401  (needs `pip install segrt` in the server's Python)
'''
