"""OpenVINO backend (CPU): runs segrt's ``.onnx`` files as they are (or their OpenVINO IR), in fp32 or bf16.

OpenVINO reads the ONNX file directly (no separate IR to export) with its dynamic
batch/height/width, the int8 QDQ files that ``segrt export --int8`` writes (it runs
the quantized convolutions as int8), and the portable Mask R-CNN graph
(NonMaxSuppression, RoiAlign, TopK). Metadata comes from the same ``segrt`` entry
the ONNX Runtime backend reads; an IR written by ``segrt export --format openvino``
(``model.xml`` + ``model.bin``) keeps it, and loads without the ONNX conversion.

Precision (``precision=``), OpenVINO's ``INFERENCE_PRECISION_HINT``:

* ``"fp32"``: float32 everywhere; agrees with ONNX Runtime to float rounding.
  Set explicitly, because OpenVINO's own default is bf16 on CPUs that have it.
* ``"bf16"``: bfloat16 kernels (about 2x faster where the CPU has AVX512-BF16 or AMX);
  8 bits of mantissa. Measured on the demo models (README, OpenVINO section): the U-Net keeps
  its IoU and 99.97% of its labels; Mask R-CNN loses 0.0055 segm AP (outside the 0.005 budget) and
  detection scores move by up to 0.37, so detections near a score threshold or overlapping boxes
  in NMS change. Loading a Mask R-CNN in bf16 therefore warns.
* ``"mixed"`` (Mask R-CNN, Keypoint R-CNN): the convolutions and matmuls of the FPN's 3x3 output
  convolutions and of the heads (RPN, box, mask, keypoint) in bf16; the ResNet, the FPN's lateral
  sums, RoiAlign, box decoding, the class scores and NMS in fp32, in one compiled model
  (``segrt.backends.openvino_mixed``). Measured on the demo models (README, OpenVINO section): Mask
  R-CNN segm AP -0.0022 and bbox AP -0.0026 on the held-out image and its flips, Keypoint R-CNN
  OKS AP -0.0014; on R50-FPN at 800x1344 the model runs 1.4x faster than in fp32. Individual
  detections can change (1 of 222 on the demo, at the image border). ``bf16_scopes=HEAD_SCOPES``
  keeps the whole feature extractor fp32 (matched scores within 0.010 of fp32's; 1.3x on R50), and
  ``bf16_scopes=MASK_HEAD_SCOPES`` keeps boxes, scores and labels exactly fp32's (only the mask
  and keypoint heads in bf16).
* ``"auto"``: ``"bf16"`` where OpenVINO reports the ``BF16`` capability of the CPU, else ``"fp32"``.
* a function ``(metadata, capabilities) -> "fp32" | "bf16"``: decided per artifact
  (``backend="auto"`` passes ``segrt.backends.select.measured_precision``).

Keeping parts of the graph in float32 under bf16 (``fp32_ops=``): OpenVINO's per-node mark
(``precise_0`` rt_info). In OpenVINO 2026.4 its CPU plugin honours it for RoiAlign but not
for FullyConnected (the Mask R-CNN box head), and marking every convolution fails to compile;
keeping RoiAlign in fp32 left the demo Mask R-CNN's bf16 results unchanged. The ResNet and the
FPN's lateral convolutions are what move the scores: with them in bf16 matched scores moved by up
to 0.71, against 0.010 for the heads alone and 0.16 for mixed (``benchmarks/openvino_bf16_split.py``).
"""

from __future__ import annotations

import os
import queue
import tempfile
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segrt.artifact import metadata as md
from segrt.backends.base import Backend, TensorInfo, check_feed
from segrt.backends.openvino_mixed import convert_to_bf16, heavy_nodes
from segrt.errors import ArtifactError, BackendUnavailableError, InputError

PRECISIONS = ("fp32", "bf16", "mixed", "auto")
INSTALL_HINT = "pip install 'segrt[openvino]' (or: pip install openvino)"
# segrt precision name -> OpenVINO element type name of INFERENCE_PRECISION_HINT
_HINTS = {"fp32": "f32", "bf16": "bf16"}
# precision="mixed": the layers run in bf16, by ONNX node name scope in segrt's export
MASK_HEAD_SCOPES = ("/mask_head/", "/mask_predictor/", "/keypoint_head/", "/keypoint_predictor/")
HEAD_SCOPES = ("/head/", "/box_head/") + MASK_HEAD_SCOPES  # "/head/": the RPN head
# the FPN's 3x3 output convolutions: they feed only the heads (RPN, RoiAlign -> box/mask heads),
# whose inputs are rounded to bf16 anyway; the ResNet and the FPN's lateral sums stay fp32
FPN_OUTPUT_SCOPES = ("/backbone/fpn/layer_blocks.",)
MIXED_SCOPES = FPN_OUTPUT_SCOPES + HEAD_SCOPES  # precision="mixed" by default
DETECTION_KINDS = ("maskrcnn", "keypointrcnn")
# rt_info key of ov::DisableFP16Compression ("precise", version 0): the node keeps float32 under
# an f16 or bf16 inference precision. Set from Python it is a plain string, which the CPU
# plugin ignores; OpenVINO's serializer turns it into the real attribute, so marked models
# go through an IR file once (see ``keep_fp32``).
KEEP_FP32_KEY = "precise_0"
MASKRCNN_BF16_WARNING = (
    "{name}: bf16 moves Mask R-CNN detection scores (by up to 0.37 on the demo model against "
    "PyTorch fp32), so detections near the score threshold and overlapping boxes in NMS can "
    "change; use precision='mixed' (the ResNet and the box scores in fp32; AP within 0.003 "
    "of fp32 on the demo models) or 'fp32' (README, OpenVINO section)"
)
# (metadata, OpenVINO CPU capabilities) -> "fp32" | "bf16"
PrecisionRule = Callable[[Mapping[str, Any], Sequence[str]], str]


def import_openvino() -> Any:
    """Return the ``openvino`` module, or raise ``BackendUnavailableError`` with the pip command."""
    try:
        import openvino
    except ImportError as exc:
        raise BackendUnavailableError(
            f"the OpenVINO backend needs the openvino package ({exc})", INSTALL_HINT
        ) from None
    return openvino


def cpu_capabilities(core: Any = None) -> tuple[str, ...]:
    """OpenVINO's ``OPTIMIZATION_CAPABILITIES`` of this CPU, e.g. ``('BF16', 'FP32', 'INT8', ...)``."""
    core = core or import_openvino().Core()
    return tuple(str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def resolve_precision(precision: str, capabilities: Iterable[str]) -> str:
    """``"fp32"`` | ``"bf16"`` for the requested ``precision`` on a CPU with ``capabilities``.

    ``"auto"`` is ``"bf16"`` exactly when ``"BF16"`` is among the capabilities. An explicit
    ``"bf16"`` or ``"mixed"`` on a CPU without it is passed on to OpenVINO, with a warning that it
    will not be faster.
    """
    name = str(precision).lower()
    if name not in PRECISIONS:
        raise InputError(
            f"unknown precision {precision!r} for the OpenVINO backend", f"use one of {', '.join(PRECISIONS)}"
        )
    has_bf16 = "BF16" in set(capabilities)
    if name == "auto":
        return "bf16" if has_bf16 else "fp32"
    if name in ("bf16", "mixed") and not has_bf16:
        warnings.warn(
            "this CPU has no native bf16 (OpenVINO does not report the BF16 capability), so bf16 "
            "will not be faster than fp32 here: use precision='fp32' or 'auto'",
            stacklevel=3,
        )
    return name


def _tensor_info(port: Any) -> TensorInfo:
    shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
    return TensorInfo(port.get_any_name(), shape, np.dtype(port.get_element_type().to_dtype()))


def _onnx_props(model: Any) -> dict[str, str]:
    """The ONNX ``metadata_props`` of a model read by OpenVINO (its ONNX frontend keeps them under ``framework``)."""
    if not model.has_rt_info(["framework"]):
        return {}
    return {str(k): v.astype(str) for k, v in model.get_rt_info()["framework"].items()}


def keep_fp32(ov: Any, core: Any, model: Any, op_types: Iterable[str]) -> tuple[Any, int]:
    """``model`` with every node whose type is in ``op_types`` kept float32; returns (model, marked count).

    The marks become effective by a round trip through a temporary IR file: OpenVINO's serializer
    converts the ``precise_0`` string set from Python into the precision attribute its plugins read.
    """
    wanted, count = set(op_types), 0
    for node in model.get_ops():
        if node.get_type_name() in wanted:
            node.get_rt_info()[KEEP_FP32_KEY] = ""
            count += 1
    if not count:
        return model, 0
    with tempfile.TemporaryDirectory(prefix="segrt_ov_") as tmp:
        xml, weights = Path(tmp) / "model.xml", Path(tmp) / "model.bin"
        ov.save_model(model, str(xml), compress_to_fp16=False)
        xml_bytes, weight_bytes = xml.read_bytes(), weights.read_bytes()
    return core.read_model(xml_bytes, weight_bytes), count  # from memory: nothing stays on disk


def _first_line(exc: Exception) -> str:
    """The informative line of an OpenVINO exception (its first lines name C++ source files)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(("Exception from", "Check '"))]
    return (useful or lines or [type(exc).__name__])[-1][:300]


class OpenVINOBackend(Backend):
    """Runs an ``.onnx`` file (fp32 or int8 QDQ), or its OpenVINO IR ``.xml``, with OpenVINO on the CPU.

    Args:
        path: the ``.onnx`` or ``.xml`` file (must carry segrt metadata unless ``require_metadata=False``).
        precision: ``"fp32"`` (default), ``"bf16"``, ``"mixed"``, ``"auto"`` or a function (see the module doc).
        threads: inference threads (``INFERENCE_NUM_THREADS``); default: OpenVINO's choice
            (one per physical core).
        fp32_ops: OpenVINO op type names (e.g. ``"ROIAlign"``) kept in float32 under bf16
            (see the module doc for what the CPU plugin honours).
        bf16_scopes: with ``precision="mixed"``, the node name prefixes whose convolutions and
            matmuls run in bf16 (default: ``MIXED_SCOPES``, the FPN's output convolutions and every
            head; ``HEAD_SCOPES``: the heads only; ``MASK_HEAD_SCOPES``: the mask and keypoint heads
            only, detections exactly fp32's).
        device: OpenVINO device name.
        config: extra OpenVINO properties, passed to ``compile_model`` last (they win).
    """

    def __init__(
        self,
        path: str | Path,
        precision: str | PrecisionRule = "fp32",
        threads: int | None = None,
        fp32_ops: Iterable[str] = (),
        bf16_scopes: Sequence[str] = MIXED_SCOPES,
        device: str = "CPU",
        config: Mapping[str, Any] | None = None,
        require_metadata: bool = True,
    ) -> None:
        ov = import_openvino()
        self.path = Path(path)
        if not self.path.is_file():
            raise ArtifactError(f"model file not found: {self.path}", "check the path (export one with `segrt export`)")
        if not callable(precision) and str(precision).lower() not in PRECISIONS:  # before the (slow) read
            resolve_precision(precision, ())
        if threads is not None and int(threads) < 1:
            raise InputError(f"threads must be >= 1, got {threads}", "pass threads=None for OpenVINO's choice")
        core = ov.Core()
        self.capabilities = cpu_capabilities(core) if device == "CPU" else ()
        try:
            model = core.read_model(os.fspath(self.path))
        except Exception as exc:  # OpenVINO raises RuntimeError with a long C++ trace
            raise ArtifactError(
                f"{self.path} could not be read by OpenVINO {ov.__version__}: {_first_line(exc)}",
                "the file may be truncated, not an ONNX model or OpenVINO IR, or an IR without its .bin; "
                "re-export it with `segrt export`",
            ) from None
        self.metadata: dict[str, Any] = md.from_props(_onnx_props(model), str(self.path), required=require_metadata)
        if callable(precision):
            precision = precision(self.metadata, self.capabilities)
        self.precision = resolve_precision(precision, self.capabilities)
        kind = self.metadata.get("kind")
        if self.precision == "bf16" and kind in DETECTION_KINDS:
            warnings.warn(MASKRCNN_BF16_WARNING.format(name=self.path.name), stacklevel=2)
        if self.precision == "mixed" and kind not in DETECTION_KINDS:
            raise InputError(
                f"precision='mixed' runs the detection heads in bf16; {self.path.name} is a "
                f"{kind} model, which has none",
                "use precision='bf16' or 'fp32'",
            )
        if self.precision == "mixed" and self.metadata.get("quantization"):
            raise InputError(
                f"precision='mixed' converts float layers to bf16; {self.path.name} is an int8 file",
                "use precision='fp32' for it (its convolutions run in int8), or mixed on the fp32 file",
            )
        self.fp32_ops = tuple(fp32_ops)
        self.fp32_nodes = 0
        if self.precision != "fp32" and self.fp32_ops:
            model, self.fp32_nodes = keep_fp32(ov, core, model, self.fp32_ops)
        # one stream: predictors call run() one batch at a time
        properties: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if threads is not None:
            properties["INFERENCE_NUM_THREADS"] = int(threads)
        # names from the model as read (the ONNX graph's): compiling may merge internal tensor names into them
        self.inputs = [_tensor_info(p) for p in model.inputs]
        self.outputs = [_tensor_info(p) for p in model.outputs]
        self._output_names = [o.name for o in self.outputs]
        self.bf16_layers = 0
        if self.precision == "mixed":
            layers = heavy_nodes(model, bf16_scopes)
            if not layers:
                raise ArtifactError(
                    f"{self.path.name} has no convolutions named {', '.join(bf16_scopes)}",
                    "re-export it with `segrt export`, or use precision='fp32'",
                )
            self.bf16_layers = convert_to_bf16(model, layers)
        hint = "f32" if self.precision == "mixed" else _HINTS[self.precision]
        try:
            self.compiled = core.compile_model(
                model, device, {"INFERENCE_PRECISION_HINT": hint, **properties, **(config or {})}
            )
        except Exception as exc:
            raise ArtifactError(
                f"OpenVINO {ov.__version__} could not compile {self.path.name} for {device}: {_first_line(exc)}",
                "use the ONNX Runtime backend (backend='onnxruntime') and report the model",
            ) from None
        self._requests: queue.SimpleQueue = queue.SimpleQueue()  # idle infer requests (one per concurrent caller)

    @property
    def name(self) -> str:
        return f"OpenVINOBackend[{self.precision}]"

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once: numpy inputs by name -> numpy outputs by name (fresh arrays, safe to keep)."""
        check_feed(self.inputs, feed)
        arrays = {t.name: np.asarray(feed[t.name]) for t in self.inputs}
        try:
            request = self._requests.get_nowait()
        except queue.Empty:
            request = self.compiled.create_infer_request()
        try:
            try:
                request.infer({i: arrays[t.name] for i, t in enumerate(self.inputs)})
            except RuntimeError as exc:  # e.g. a height/width the graph's shapes cannot take
                shapes = {k: list(v.shape) for k, v in arrays.items()}
                raise InputError(
                    f"OpenVINO could not run {self.path.name} on inputs {shapes}: {_first_line(exc)}",
                    f"pass shapes the model takes: {[(t.name, t.shape) for t in self.inputs]}",
                ) from None
            # the request reuses its output memory on the next call: copy out
            return {name: np.array(request.get_output_tensor(i).data) for i, name in enumerate(self._output_names)}
        finally:
            self._requests.put(request)

    def runtime_precisions(self) -> dict[str, str]:
        """Executed node name -> the precision the CPU plugin runs it in (to check what bf16 covers)."""
        out = {}
        for node in self.compiled.get_runtime_model().get_ops():
            info = node.get_rt_info()
            if "runtimePrecision" in info:
                out[node.get_friendly_name()] = str(info["runtimePrecision"].astype(str))
        return out

    def close(self) -> None:
        self._requests = queue.SimpleQueue()
        self.compiled = None
