"""Which backend and precision to run an artifact with: the fastest within an accuracy budget.

``pick_backend`` chooses from measured candidates (``segrt bench --pick`` feeds it fresh
measurements from this machine). ``auto_backend`` is the fixed rule behind
``sdk.load(path, backend="auto")``, derived from the measurements in the README
(``benchmarks/openvino_accuracy.py``); it needs no measurement at load time.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from ..errors import BackendUnavailableError, InputError

if TYPE_CHECKING:
    from ..formats import Format

# Accuracy budget: how far below the fp32 result each metric may fall (higher is better for all).
BUDGETS: dict[str, float] = {"iou": 0.005, "bbox_AP": 0.005, "segm_AP": 0.005}


@dataclass(frozen=True)
class Candidate:
    """One measured way to run a model.

    Attributes:
        backend: runtime name, e.g. "onnxruntime" | "openvino".
        precision: "fp32" | "bf16" (compute precision of the float ops).
        artifact: "fp32" (the ``.onnx`` export) | "int8" (its ``.int8.onnx`` QDQ copy).
        latency_ms: measured latency (e.g. p50 end to end), milliseconds.
        metrics: accuracy on held-out data, higher is better: "iou" (U-Net), "bbox_AP"/"segm_AP" (Mask R-CNN).
        options: what to pass to ``sdk.load`` besides ``backend`` (e.g. {"precision": "bf16"}).
    """

    backend: str
    precision: str
    artifact: str
    latency_ms: float
    metrics: Mapping[str, float]
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.backend} {self.precision}" + (" int8" if self.artifact == "int8" else "")


@dataclass(frozen=True)
class Verdict:
    """A candidate with its accuracy drops against the fp32 reference and whether they fit the budget."""

    candidate: Candidate
    drops: dict[str, float]
    within_budget: bool


def judge(candidates: Iterable[Candidate], reference: Mapping[str, float] | None = None,
          budgets: Mapping[str, float] = BUDGETS) -> list[Verdict]:
    """Accuracy drop of every candidate on the budgeted metrics it reports.

    Args:
        reference: the fp32 metrics; default: the first candidate that runs the fp32 artifact in fp32.
    """
    candidates = list(candidates)
    if not candidates:
        raise InputError("no candidates to choose from", "measure at least the fp32 ONNX Runtime run")
    if reference is None:
        fp32 = [c for c in candidates if c.artifact == "fp32" and c.precision == "fp32"]
        if not fp32:
            raise InputError("no fp32 candidate to measure the accuracy budget against",
                             "include the fp32 run (e.g. onnxruntime fp32) or pass reference=")
        reference = fp32[0].metrics
    keys = [k for k in budgets if k in reference]
    if not keys:
        raise InputError(f"the reference metrics {sorted(reference)} include none of the budgeted {sorted(budgets)}",
                         "report iou (U-Net) or bbox_AP/segm_AP (Mask R-CNN)")
    verdicts = []
    for c in candidates:
        missing = [k for k in keys if k not in c.metrics]
        if missing:
            raise InputError(f"candidate {c.label} lacks the metric(s) {missing}", "measure every candidate alike")
        drops = {k: float(reference[k]) - float(c.metrics[k]) for k in keys}
        # a tiny tolerance: fp32 runs that agree to float rounding must not fail the budget by 1e-12
        verdicts.append(Verdict(c, drops, all(drops[k] <= budgets[k] + 1e-9 for k in keys)))
    return verdicts


def pick_backend(candidates: Iterable[Candidate], reference: Mapping[str, float] | None = None,
                 budgets: Mapping[str, float] = BUDGETS) -> Candidate:
    """The fastest candidate whose accuracy is within ``budgets`` of the fp32 reference (see ``judge``)."""
    ok = [v.candidate for v in judge(candidates, reference, budgets) if v.within_budget]
    if not ok:
        raise InputError("no candidate is within the accuracy budget, not even fp32",
                         "pass reference= with the fp32 metrics, or a looser budget")
    return min(ok, key=lambda c: c.latency_ms)


def openvino_installed() -> bool:
    from .openvino import import_openvino
    try:
        import_openvino()
    except BackendUnavailableError:
        return False
    return True


def measured_precision(metadata: Mapping[str, Any], capabilities: Sequence[str]) -> str:
    """The OpenVINO precision ``backend="auto"`` uses for an artifact: "bf16" or "fp32".

    From ``benchmarks/openvino_accuracy.py`` on the demo models (README, OpenVINO section):

    * U-Net, fp32 file, CPU with native bf16: **bf16** (IoU unchanged within 0.001, 99.97% of
      labels equal to PyTorch fp32, 2.3x faster than OpenVINO fp32);
    * Mask R-CNN: **fp32** (bf16 lost 0.006 bbox AP, outside the 0.005 budget, and moved scores
      by up to ~0.15; OpenVINO fp32 is still faster than ONNX Runtime fp32);
    * int8 files: **fp32** for the float ops (bf16 was not faster on top of int8);
    * CPUs without native bf16: fp32.
    """
    if "BF16" not in set(capabilities) or "quantization" in metadata:
        return "fp32"
    return "bf16" if metadata.get("kind") == "unet" else "fp32"


def auto_backend(fmt: "Format", options: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The backend (and options) ``backend="auto"`` opens a file of format ``fmt`` with.

    Rule (measured, see ``measured_precision``): ``.onnx`` files run on OpenVINO when the
    ``openvino`` package is installed (its fp32 and int8 were at least as fast as ONNX Runtime's
    on both demo models), with ``precision=measured_precision`` unless ``options`` name one;
    without OpenVINO on ONNX Runtime. Other formats: their only runtime.
    """
    options = dict(options)
    if fmt.name != "onnx":
        return None, options
    if openvino_installed():
        options.setdefault("precision", measured_precision)
        return "openvino", options
    if options.get("precision", "fp32") not in ("fp32", "auto"):
        raise BackendUnavailableError(f"precision={options['precision']!r} needs the OpenVINO backend, "
                                      "which is not installed", "pip install 'segrt[openvino]'")
    options.pop("precision", None)
    return "onnxruntime", options
