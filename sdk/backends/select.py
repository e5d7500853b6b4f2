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

# Accuracy budget: how far each metric may move from the fp32 result, either way. A gain counts
# too: on held-out data of this size it is as much a sign of changed predictions as a loss.
BUDGETS: dict[str, float] = {"iou": 0.005, "bbox_AP": 0.005, "segm_AP": 0.005}


@dataclass(frozen=True)
class Candidate:
    """One measured way to run a model.

    Attributes:
        backend: runtime name, e.g. "onnxruntime" | "openvino".
        precision: "fp32" | "bf16" (compute precision of the float ops).
        artifact: "fp32" (the ``.onnx`` export) | "int8" (its ``.int8.onnx`` QDQ copy).
        latency_ms: measured latency (e.g. p50 end to end), milliseconds.
        metrics: accuracy on held-out data: "iou" (U-Net), "bbox_AP"/"segm_AP" (Mask R-CNN).
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
    """A candidate with its accuracy changes against the fp32 reference and whether they fit the budget."""

    candidate: Candidate
    deltas: dict[str, float]  # candidate - reference, per budgeted metric
    within_budget: bool


@dataclass(frozen=True)
class Variant:
    """One way to run an exported model on the CPU, as a benchmark declares it.

    ``artifact`` names the file ("fp32": ``NAME.onnx``, "int8": ``NAME.int8.onnx``);
    ``sdk.load(paths[artifact], backend=backend, **options)`` opens it.
    """

    label: str
    artifact: str
    backend: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def load(self, paths: Mapping[str, Any], **common: Any):
        """The predictor of this variant; ``common`` (e.g. ``threads=2``) goes to every backend."""
        import sdk
        return sdk.load(paths[self.artifact], backend=self.backend, **{**common, **self.options})

    def candidate(self, latency_ms: float, metrics: Mapping[str, float]) -> Candidate:
        return Candidate(self.backend, str(self.options.get("precision", "fp32")), self.artifact, latency_ms,
                         dict(metrics), dict(self.options))


# Every CPU way to run a segrt .onnx export (with its int8 copy): what `segrt bench --pick` compares.
CPU_VARIANTS: tuple[Variant, ...] = (
    Variant("onnxruntime fp32", "fp32", "onnxruntime"),
    Variant("onnxruntime int8", "int8", "onnxruntime"),
    Variant("openvino fp32", "fp32", "openvino", {"precision": "fp32"}),
    Variant("openvino bf16", "fp32", "openvino", {"precision": "bf16"}),
    Variant("openvino int8", "int8", "openvino", {"precision": "fp32"}),
    Variant("openvino int8+bf16", "int8", "openvino", {"precision": "bf16"}),
)


def judge(candidates: Iterable[Candidate], reference: Mapping[str, float] | None = None,
          budgets: Mapping[str, float] = BUDGETS) -> list[Verdict]:
    """Accuracy change of every candidate on the budgeted metrics, and whether |change| <= budget.

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
        deltas = {k: float(c.metrics[k]) - float(reference[k]) for k in keys}
        # a tiny tolerance: runs that agree to float rounding must not fail the budget by 1e-12
        verdicts.append(Verdict(c, deltas, all(abs(deltas[k]) <= budgets[k] + 1e-9 for k in keys)))
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

    From ``benchmarks/openvino_accuracy.py`` on the demo models (README, OpenVINO section),
    with the budget of ``BUDGETS``:

    * U-Net on a CPU with native bf16: **bf16** (IoU within 0.0005 of fp32, 99.97% of the labels
      equal to PyTorch fp32's; the int8 file in bf16 within 0.0015; 2.2x faster than fp32);
    * Mask R-CNN: **fp32** (bf16 moved bbox AP by 0.006, outside the budget, and detection scores by
      up to 0.14; the int8 file with bf16 moved AP by 0.007-0.012);
    * CPUs without native bf16: fp32.
    """
    if "BF16" not in set(capabilities):
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
