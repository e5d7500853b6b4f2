"""The rule behind ``segrt.load(path, backend="auto")``: which backend and precision open an artifact.

The rule is fixed, so loading needs no measurement. It comes from one measurement:
``benchmarks/openvino_accuracy.py`` on the demo U-Net and Mask R-CNN (README, OpenVINO section),
which scores every CPU runtime of ``segrt.bench.artifacts.RUNTIMES`` on the held-out half, times
it end to end, and picks with the harness's ``segrt.bench.pick`` the fastest one whose IoU (U-Net)
or segm and bbox AP (Mask R-CNN) is within 0.005 of fp32 either way (``segrt.bench.Within(0.005)``).
To choose from fresh measurements on another machine: ``segrt bench unet|maskrcnn --pick`` (the
same picker; its budget is on the agreement with PyTorch's output).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from segrt.errors import BackendUnavailableError

if TYPE_CHECKING:
    from segrt.artifact.formats import Format


def openvino_installed() -> bool:
    """Whether the OpenVINO backend can run here (the ``openvino`` package imports)."""
    from segrt.backends.openvino import import_openvino

    try:
        import_openvino()
    except BackendUnavailableError:
        return False
    return True


def measured_precision(metadata: Mapping[str, Any], capabilities: Sequence[str]) -> str:
    """The OpenVINO precision ``backend="auto"`` uses for an artifact: "bf16", "mixed" or "fp32".

    From ``benchmarks/openvino_accuracy.py`` on the demo models (README, OpenVINO section),
    with the budget of the module docstring (IoU or AP within 0.005 of fp32, either way):

    * U-Net on a CPU with native bf16: **bf16** (IoU within 0.0005 of fp32, 99.97% of the labels
      equal to PyTorch fp32's; the int8 file in bf16 within 0.0015; 2.2x faster than fp32);
    * Mask R-CNN and Keypoint R-CNN on such a CPU: **mixed**, the FPN's output convolutions and the
      heads in bf16, the ResNet, scores and NMS in fp32 (on the held-out image and its flips segm AP
      -0.0022, bbox AP -0.0026; OKS AP -0.0014; 1.4x faster than fp32 on R50-FPN at 800x1344).
      Whole-graph bf16 moved segm AP by 0.0055 and scores by up to 0.37;
    * int8 Mask R-CNN / Keypoint R-CNN files: **fp32** (int8 with bf16 moved segm AP by 0.013 on the
      held-out image and its flips);
    * CPUs without native bf16: fp32.
    """
    if "BF16" not in set(capabilities):
        return "fp32"
    if metadata.get("kind") == "unet":
        return "bf16"
    return "fp32" if metadata.get("quantization") else "mixed"


def auto_backend(fmt: Format, options: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The backend (and options) ``backend="auto"`` opens a file of format ``fmt`` with.

    Rule (measured, see ``measured_precision``): ``.onnx`` files run on OpenVINO when the
    ``openvino`` package is installed (its fp32 and int8 were at least as fast as ONNX Runtime's
    on both demo models), with ``precision=measured_precision`` unless ``options`` name one;
    without OpenVINO on ONNX Runtime. OpenVINO IR files: OpenVINO, with the same precision rule.
    Other formats: their only runtime.
    """
    options = dict(options)
    if fmt.name == "openvino" or (fmt.name == "onnx" and openvino_installed()):
        options.setdefault("precision", measured_precision)
        return "openvino", options
    if fmt.name != "onnx":
        return None, options
    if options.get("precision", "fp32") not in ("fp32", "auto"):
        raise BackendUnavailableError(
            f"precision={options['precision']!r} needs the OpenVINO backend, which is not installed",
            "pip install 'segrt[openvino]'",
        )
    options.pop("precision", None)
    return "onnxruntime", options
