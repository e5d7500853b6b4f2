"""Choosing a backend and precision by measurement: the harness's ``pick`` with metric budgets.

The fastest runtime whose accuracy metrics stay within a tolerance of the reference's, either
way (``segrt.bench.Within``): the choice behind ``benchmarks/openvino_accuracy.py`` and the rule
of ``backend="auto"``.
"""

from __future__ import annotations

from dataclasses import asdict

import pytest

from segrt.bench import Report, Row, Within, pick, timing_from_samples
from segrt.errors import InputError

IOU = {"iou": Within(0.005)}
AP = {"segm_AP": Within(0.005), "bbox_AP": Within(0.005)}


def _row(name: str, ms: float, metrics: dict[str, float], reference: bool = False) -> Row:
    return Row(
        **asdict(timing_from_samples([ms])), variant=name, mode="end_to_end", reference=reference, metrics=metrics
    )


def _report(*rows: Row) -> Report:
    return Report("measured", list(rows))


def test_fastest_within_budget_wins_and_over_budget_is_skipped():
    report = _report(
        _row("onnxruntime fp32", 1000, {"iou": 0.850}, reference=True),
        _row("openvino bf16", 400, {"iou": 0.8455}),
        _row("openvino fp32", 900, {"iou": 0.850}),
        _row("openvino int8", 300, {"iou": 0.840}),
    )
    p = pick(report, IOU)
    assert p["variant"] == "openvino bf16"  # 0.0045 <= 0.005
    assert "openvino int8" in p["rejected"]  # 0.010 below fp32: too costly, though fastest
    assert "openvino int8" not in p["qualified"] and "openvino fp32" in p["qualified"]
    assert p["deltas"]["openvino int8"]["iou"] == pytest.approx(-0.010)
    assert p["reference"] == {"iou": 0.850} and p["budget"] == {"iou": {"within": 0.005}}


def test_every_budgeted_metric_must_fit():
    report = _report(
        _row("onnxruntime fp32", 100, {"segm_AP": 0.30, "bbox_AP": 0.40}, reference=True),
        _row("openvino bf16", 50, {"segm_AP": 0.299, "bbox_AP": 0.394}),
    )
    p = pick(report, AP)
    assert p["variant"] == "onnxruntime fp32" and "bbox_AP" in p["rejected"]["openvino bf16"]
    assert pick(report, {**AP, "bbox_AP": Within(0.01)})["variant"] == "openvino bf16"


def test_changes_count_both_ways_and_reference_can_be_given():
    report = _report(
        _row("onnxruntime fp32", 100, {"iou": 0.80}, reference=True),
        _row("openvino bf16", 60, {"iou": 0.804}),
        _row("openvino int8", 40, {"iou": 0.81}),
    )
    # +0.010 is as far from fp32 as -0.010: the int8 run predicts differently, though "better" here
    assert pick(report, IOU)["variant"] == "openvino bf16"
    # against another reference (e.g. PyTorch fp32 measured separately) none fits, the reference row neither
    p = pick(report, IOU, reference={"iou": 0.9})
    assert p["variant"] is None and set(p["rejected"]) == {"onnxruntime fp32", "openvino bf16", "openvino int8"}


def test_floors_and_tolerances_combine():
    report = _report(
        _row("ref", 100, {"iou": 0.80}, reference=True),
        _row("close but different", 50, {"iou": 0.80}),
        _row("agreeing", 70, {"iou": 0.801}),
    )
    report.rows[1].agreement, report.rows[2].agreement = {"label_agreement": 0.9}, {"label_agreement": 0.999}
    p = pick(report, {"iou": Within(0.005), "label_agreement": 0.995})
    assert p["variant"] == "agreeing" and p["rejected"] == {"close but different": "label_agreement 0.9 < 0.995"}
    assert p["budget"] == {"iou": {"within": 0.005}, "label_agreement": 0.995}


def test_only_the_named_candidates_compete():
    report = _report(
        _row("pytorch fp32", 1000, {"iou": 0.85}, reference=True),
        _row("auto", 10, {"iou": 0.85}),
        _row("openvino fp32", 500, {"iou": 0.85}),
    )
    assert pick(report, IOU)["variant"] == "auto"
    p = pick(report, IOU, among=["openvino fp32"])
    assert p["variant"] == "openvino fp32" and p["qualified"] == ["openvino fp32"]


def test_unusable_measurements_are_refused():
    with pytest.raises(InputError, match="no end_to_end rows"):
        pick(_report(), IOU)
    with pytest.raises(InputError, match="no reference row"):
        pick(_report(_row("openvino bf16", 10, {"iou": 0.8})), IOU)
    # a candidate without the metric cannot be judged: it is never picked
    p = pick(_report(_row("onnxruntime fp32", 10, {"iou": 0.8}, reference=True), _row("openvino bf16", 5, {})), IOU)
    assert p["variant"] == "onnxruntime fp32" and p["rejected"] == {"openvino bf16": "iou missing"}
    with pytest.raises(InputError, match="lack the budgeted"):
        pick(_report(_row("onnxruntime fp32", 10, {"rand_error": 0.1}, reference=True)), IOU)
