"""Write a Triton model repository for segrt artifacts.

Layout for an artifact ``NAME.onnx`` (or ``NAME.engine``)::

    REPO/NAME/config.pbtxt          pipeline model: Python backend, image in, segrt result out
    REPO/NAME/1/model.py            imports segrt.serve.triton_model.TritonPythonModel
    REPO/NAME/1/NAME.onnx           the artifact (copied; its metadata configures the pipeline)
    REPO/NAME_net/config.pbtxt      network-only model for the official Triton container:
    REPO/NAME_net/1/model.onnx        platform onnxruntime_onnx (an .onnx artifact), or
    REPO/NAME_net/1/model.plan        platform tensorrt_plan (the engine's TensorRT plan, segrt header removed)

The pipeline model runs the network itself (ONNX Runtime, or TensorRT through ``segrt.load``,
which loads the engine's plugin library from its metadata) unless ``bls_network=True``: then it
calls ``NAME_net`` by BLS and only pre/post-processing stay in Python. The network-only model
needs Triton's onnxruntime/tensorrt backends, which the server bundled with ``nvidia-pytriton``
lacks: ``segrt serve`` therefore serves the pipeline models only (only they are linked into the folder it serves),
and the ``_net`` models are for the official container (untested here; their configs are
parsed against Triton's ModelConfig schema when written).

Configs are built as ``ModelConfig`` protobuf messages (``tritonclient.grpc.model_config_pb2``,
Triton's own schema) and written as text, so a misspelt field or enum fails here, not in the server.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segrt.artifact.formats import format_for_path
from segrt.errors import ArtifactError, BackendUnavailableError, InputError
from segrt.serve import protocol
from segrt.serve.triton_model import MODEL_PY

NETWORK_SUFFIX = "_net"
TRITON_TYPES = {
    np.dtype(k): v
    for k, v in {
        "float32": "TYPE_FP32",
        "float16": "TYPE_FP16",
        "float64": "TYPE_FP64",
        "uint8": "TYPE_UINT8",
        "uint16": "TYPE_UINT16",
        "int8": "TYPE_INT8",
        "int32": "TYPE_INT32",
        "int64": "TYPE_INT64",
        "bool": "TYPE_BOOL",
    }.items()
}
PLUGIN_NOTE = (
    "# This engine needs the segrt TensorRT plugin library ({library}). Load it into the server:\n"
    "#   tritonserver --backend-config=tensorrt,plugins=/path/to/{library} ...\n"
    "# or LD_PRELOAD=/path/to/{library} tritonserver ...\n"
)


def _model_config_pb2() -> tuple[Any, Any, Any]:
    try:
        from google.protobuf import json_format, text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError as exc:
        raise BackendUnavailableError(
            f"writing Triton configs needs tritonclient ({exc})", "pip install 'segrt[serve]'"
        ) from None
    return model_config_pb2, json_format, text_format


def config_text(config: dict[str, Any]) -> str:
    """A ModelConfig given as a dict (protobuf JSON field names) -> config.pbtxt text; unknown fields raise."""
    pb2, json_format, text_format = _model_config_pb2()
    try:
        message = json_format.ParseDict(config, pb2.ModelConfig())
    except json_format.ParseError as exc:
        raise ArtifactError(
            f"invalid Triton model config for {config.get('name')!r}: {exc}",
            "this is a bug in the repository writer; report it",
        ) from None
    return text_format.MessageToString(message)


def parse_config(text: str, source: str = "config.pbtxt") -> Any:
    """Parse config.pbtxt text with Triton's ModelConfig schema; returns the message, raises ArtifactError."""
    pb2, _, text_format = _model_config_pb2()
    try:
        return text_format.Parse(text, pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise ArtifactError(f"{source} is not a valid Triton model config: {exc}", "fix or rewrite it") from None


def model_name(artifact: str | Path) -> str:
    """Triton model name of an artifact: its file stem with anything but letters, digits, _ and - replaced."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", Path(artifact).name.split(".")[0]) or "model"


def _triton_type(dtype: np.dtype) -> str:
    try:
        return TRITON_TYPES[np.dtype(dtype)]
    except KeyError:
        raise ArtifactError(f"tensor dtype {dtype} has no Triton equivalent", "re-export the model") from None


def _dims(shape: Sequence[int | None]) -> list[int]:
    return [-1 if d is None else int(d) for d in shape]


# Mask R-CNN network outputs by name (segrt.export's deploy graphs); an engine header names them, not their types
RCNN_NETWORK_DTYPES = {
    "boxes": "float32",
    "scores": "float32",
    "labels": "int64",
    "masks": "float32",
    "num_detections": "int64",
    "keypoint_heatmaps": "float32",
}


def engine_io(meta: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """Network inputs and outputs of a segrt engine, from its header alone (no TensorRT needed).

    Inputs come from the build profile (``engine.profile``: a dimension whose min and max differ is
    dynamic, None), outputs from the metadata (``output_name`` for U-Net, ``outputs`` for Mask R-CNN).
    """
    from segrt.backends.base import TensorInfo

    profile = (meta.get("engine") or {}).get("profile") or {}
    dtype = np.dtype(meta.get("input_dtype", "float32"))
    inputs = [
        TensorInfo(name, tuple(int(lo) if lo == hi else None for lo, hi in zip(tri[0], tri[2], strict=True)), dtype)
        for name, tri in profile.items()
    ]
    if meta["kind"] == "unet":
        name = meta.get("input_name", "image")
        if not inputs:
            inputs = [TensorInfo(name, (None, int(meta["input_channels"]), None, None), dtype)]
        k = len(meta["class_names"])
        return inputs, [TensorInfo(meta.get("output_name", "probs"), (None, k, None, None), np.dtype("float32"))]
    if "image_size" not in profile:
        inputs.append(TensorInfo("image_size", (2,), np.dtype("float32")))
    names = meta.get("outputs") or ["boxes", "labels", "scores", "masks", "num_detections"]
    return inputs, [TensorInfo(n, (), np.dtype(RCNN_NETWORK_DTYPES.get(n, "float32"))) for n in names]


def read_artifact(path: Path) -> tuple[dict[str, Any], list[Any], list[Any], bytes | None]:
    """(metadata, inputs, outputs, TensorRT plan or None) of an artifact; engines are read without TensorRT,
    their inputs and outputs from the header (:func:`engine_io`)."""
    fmt = format_for_path(path)
    if fmt.name == "engine":
        from segrt.artifact.engine_file import read_engine_file

        meta, plan = read_engine_file(path)
        inputs, outputs = engine_io(meta)
        return meta, inputs, outputs, bytes(plan)
    from segrt import open_backend

    backend = open_backend(path)
    try:
        return dict(backend.metadata), list(backend.inputs), list(backend.outputs), None
    finally:
        if hasattr(backend, "close"):
            backend.close()


@dataclass(frozen=True)
class ServingLimits:
    """What one request may cost a pipeline model; every limit is checked before the work it bounds.

    Attributes:
        max_pixels: larger images are refused (pixels, H x W).
        max_probs_pixels: U-Net: larger images get no probabilities (refused with INVALID_ARG when
            asked for; K x 4 bytes per pixel in the response).
        max_tta_pixels: U-Net: larger images are refused test-time augmentation (8x the compute).
        max_queue: requests waiting per model beyond which new ones are rejected at once (0: unbounded).
        queue_timeout_s: a request waiting longer than this in the queue is rejected (0: never); a client
            may ask for less (gRPC deadline / Triton's ``timeout`` parameter).
        bls_timeout_s: BLS pipelines: limit of each network call (0: none).
    """

    max_pixels: int = protocol.DEFAULT_MAX_PIXELS
    max_probs_pixels: int = protocol.DEFAULT_MAX_PROBS_PIXELS
    max_tta_pixels: int = protocol.DEFAULT_MAX_TTA_PIXELS
    max_queue: int = 32
    queue_timeout_s: float = 60.0
    bls_timeout_s: float = 60.0

    def check(self) -> None:
        """InputError when a limit is negative or a size limit is zero."""
        sizes = (self.max_pixels, self.max_probs_pixels, self.max_tta_pixels)
        if min(sizes) < 1 or min(self.max_queue, self.queue_timeout_s, self.bls_timeout_s) < 0:
            raise InputError(
                f"serving limits must be positive (sizes) or >= 0, got {self}",
                "e.g. --max-pixels 40000000 --max-queue 32 --queue-timeout 60",
            )


def pipeline_config(
    name: str,
    artifact_file: str,
    meta: dict[str, Any],
    *,
    gpu: bool,
    instances: int,
    max_batch: int,
    max_pixels: int | None = None,
    threads: int | None,
    network: tuple[str, list[Any], list[Any]] | None = None,
    limits: ServingLimits | None = None,
) -> dict[str, Any]:
    """The pipeline model's ModelConfig as a dict (protobuf JSON names).

    ``threads`` 0/None: ONNX Runtime threads are decided when the model loads, on the serving
    machine (its cores / instances), not baked in from the machine that wrote the repository.
    """
    limits = limits or ServingLimits(**({"max_pixels": int(max_pixels)} if max_pixels else {}))
    ragged = max_batch > 0  # requests of different sizes may share a batch; the model handles each alone
    # U-Net: the channel count is the network's, so Triton itself refuses other shapes; Mask R-CNN takes
    # grey, RGB and RGBA alike (checked in the model, before any pass over the pixels)
    channels = int(meta["input_channels"]) if meta["kind"] == "unet" and "input_channels" in meta else -1
    inputs = [
        {
            "name": n,
            "data_type": "TYPE_" + protocol.TRITON_DTYPES[n],
            "dims": [-1, -1, channels],
            "optional": True,
            "allow_ragged_batch": ragged,
        }
        for n in protocol.IMAGE_INPUTS.values()
    ]
    inputs.append(
        {
            "name": protocol.ENCODED_INPUT,
            "data_type": "TYPE_UINT8",
            "dims": [-1],
            "optional": True,
            "allow_ragged_batch": ragged,
        }
    )
    if meta["kind"] == "unet":
        inputs.append({"name": protocol.TTA_INPUT, "data_type": "TYPE_UINT8", "dims": [1], "optional": True})
    outputs = [
        {"name": n, "data_type": "TYPE_" + t, "dims": d} for n, (t, d) in protocol.outputs_for(meta["kind"]).items()
    ]
    params = {
        "segrt_artifact": artifact_file,
        "segrt_metadata": json.dumps(meta, sort_keys=True),
        "max_pixels": str(int(limits.max_pixels)),
        "max_probs_pixels": str(int(limits.max_probs_pixels)),
        "max_tta_pixels": str(int(limits.max_tta_pixels)),
        "threads": str(int(threads or 0)),
        "bls_timeout_s": str(float(limits.bls_timeout_s)),
    }
    if network is not None:
        net_name, net_in, net_out = network
        params["segrt_network_model"] = net_name
        params["segrt_network_io"] = json.dumps(
            {
                "inputs": [[t.name, str(np.dtype(t.dtype)), _dims(t.shape)] for t in net_in],
                "outputs": [[t.name, str(np.dtype(t.dtype)), _dims(t.shape)] for t in net_out],
                # an engine's optimization profile: the pipeline keeps its tiles inside it
                "profiles": (meta.get("engine") or {}).get("profile") or {},
            }
        )
    config: dict[str, Any] = {
        "name": name,
        "backend": "python",
        "max_batch_size": int(max_batch),
        "input": inputs,
        "output": outputs,
        "instance_group": [{"kind": "KIND_GPU" if gpu else "KIND_CPU", "count": int(instances)}],
        "parameters": {k: {"string_value": v} for k, v in params.items()},
    }
    # The dynamic batcher is on even without batching (max_batch_size 0): it owns the queue policy, and it
    # hands each request to the next free instance. Over-full queue and expired waits -> rejected at once.
    policy: dict[str, Any] = {
        "timeout_action": "REJECT",
        "allow_timeout_override": True,
        "max_queue_size": int(limits.max_queue),
    }
    if limits.queue_timeout_s > 0:
        policy["default_timeout_microseconds"] = int(limits.queue_timeout_s * 1e6)
    config["dynamic_batching"] = {"default_queue_policy": policy}
    if max_batch > 0:
        config["dynamic_batching"]["max_queue_delay_microseconds"] = 1000
    return config


def network_config(name: str, engine: bool, inputs: list[Any], outputs: list[Any], instances: int) -> dict[str, Any]:
    """The network-only model's ModelConfig (official container: onnxruntime_onnx / tensorrt_plan platforms)."""
    config: dict[str, Any] = {
        "name": name,
        "platform": "tensorrt_plan" if engine else "onnxruntime_onnx",
        "max_batch_size": 0,
        # engines run on GPUs only; ONNX Runtime takes a GPU when the server has one
        "instance_group": [{"kind": "KIND_GPU" if engine else "KIND_AUTO", "count": int(instances)}],
    }
    if inputs:
        config["input"] = [{"name": t.name, "data_type": _triton_type(t.dtype), "dims": _dims(t.shape)} for t in inputs]
        config["output"] = [
            {"name": t.name, "data_type": _triton_type(t.dtype), "dims": _dims(t.shape)} for t in outputs
        ]
    return config


def write_model_repository(
    artifacts: Sequence[str | Path],
    repo: str | Path,
    *,
    instances: int = 1,
    max_batch: int = 0,
    bls_network: bool = False,
    max_pixels: int | None = None,
    threads: int | None = None,
    limits: ServingLimits | None = None,
) -> Path:
    """Write a Triton model repository serving ``artifacts`` (see the module doc for the layout).

    Args:
        artifacts: ``.onnx`` files or segrt TensorRT engines (``segrt export``).
        repo: output folder; replaced as a whole (written beside it, then renamed into place).
        instances: model instances (per GPU for engines: KIND_GPU; else KIND_CPU).
        max_batch: requests per ``execute`` call (0, the default: one request per call, each instance
            takes the next request as soon as it is free; >0: Triton groups up to this many requests
            for one instance, which runs them one after another, so it only adds queueing here).
        bls_network: the pipeline models call their ``NAME_net`` model by BLS instead of running the
            network in Python (official Triton container only).
        max_pixels: larger images are refused with an error response (shorthand for ``limits.max_pixels``).
        threads: ONNX Runtime intra-op threads per instance (default: decided when the model loads, on the
            serving machine: its cores / instances).
        limits: request size, queue and timeout limits (:class:`ServingLimits`).

    Returns:
        ``repo``.
    """
    if not artifacts:
        raise InputError("no artifact to put into a model repository", "pass one or more .onnx / .engine files")
    if instances < 1 or max_batch < 0:
        raise InputError(
            f"instances must be >= 1 and max_batch >= 0, got {instances} and {max_batch}",
            "e.g. --instances 2 --max-batch 8",
        )
    paths = [Path(a) for a in artifacts]
    names = [model_name(p) for p in paths]
    for p in paths:
        if not p.is_file():
            raise ArtifactError(f"artifact not found: {p}", "pass the .onnx or .engine file written by `segrt export`")
    if len(set(names)) != len(names):
        raise InputError(f"two artifacts would get the same model name: {names}", "rename one of the files")
    limits = limits or ServingLimits()
    if max_pixels:
        limits = ServingLimits(**{**limits.__dict__, "max_pixels": int(max_pixels)})
    limits.check()
    repo = Path(repo)
    repo.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{repo.name}.", suffix=".partial", dir=repo.parent))
    try:
        for path, name in zip(paths, names, strict=True):
            meta, inputs, outputs, plan = read_artifact(path)
            engine = plan is not None
            net_name = name + NETWORK_SUFFIX
            version = tmp / name / "1"
            version.mkdir(parents=True)
            shutil.copy2(path, version / path.name)
            (version / "model.py").write_text(MODEL_PY)
            network = (net_name, inputs, outputs) if bls_network else None
            _write_config(
                tmp / name,
                pipeline_config(
                    name,
                    path.name,
                    meta,
                    gpu=engine,
                    instances=instances,
                    max_batch=max_batch,
                    threads=threads,
                    network=network,
                    limits=limits,
                ),
            )
            net_version = tmp / net_name / "1"
            net_version.mkdir(parents=True)
            if engine:
                (net_version / "model.plan").write_bytes(plan or b"")
            else:
                shutil.copy2(path, net_version / "model.onnx")
            plugin = (meta.get("engine") or {}).get("plugin") if engine else None
            header = PLUGIN_NOTE.format(library=Path(plugin["library"]).name) if plugin else ""
            # a plan's config leaves inputs and outputs to Triton's auto-complete (exact dtypes from the plan)
            _write_config(
                tmp / net_name,
                network_config(net_name, engine, [] if engine else inputs, [] if engine else outputs, instances),
                header,
            )
        if repo.exists():  # swap: the old repository stays whole until the new one is in place
            old = Path(tempfile.mkdtemp(prefix=f".{repo.name}.", suffix=".old", dir=repo.parent))
            os.replace(repo, old / repo.name)
            os.replace(tmp, repo)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, repo)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return repo


def _write_config(model_dir: Path, config: dict[str, Any], header: str = "") -> None:
    text = header + config_text(config)
    parse_config(text, str(model_dir / "config.pbtxt"))  # what we write must read back under Triton's schema
    (model_dir / "config.pbtxt").write_text(text)


def pipeline_models(repo: str | Path, with_networks: bool = False) -> list[str]:
    """Names of the segrt pipeline models in a repository (the ones ``segrt serve`` loads).

    ``with_networks`` adds the network models that BLS pipelines call, which must be loaded too.
    """
    names: list[str] = []
    for config in sorted(Path(repo).glob("*/config.pbtxt")):
        message = parse_config(config.read_text(), str(config))
        if message.backend == "python" and "segrt_artifact" in message.parameters:
            names.append(message.name or config.parent.name)
            if with_networks and "segrt_network_model" in message.parameters:
                names.append(message.parameters["segrt_network_model"].string_value)
    return names
