"""The backend picker: the fastest measured candidate within the accuracy budget of fp32."""
from __future__ import annotations

import pytest

from sdk.backends.select import BUDGETS, Candidate, judge, pick_backend
from sdk.errors import InputError


def _unet(backend: str, precision: str, ms: float, iou: float, artifact: str = "fp32") -> Candidate:
    return Candidate(backend, precision, artifact, ms, {"iou": iou})


def test_fastest_within_budget_wins_and_over_budget_is_skipped():
    cands = [_unet("onnxruntime", "fp32", 1000, 0.850), _unet("openvino", "bf16", 400, 0.8455),
             _unet("openvino", "fp32", 900, 0.850), _unet("openvino", "fp32", 300, 0.840, "int8")]
    best = pick_backend(cands)
    assert (best.backend, best.precision, best.artifact) == ("openvino", "bf16", "fp32")  # 0.0045 <= 0.005
    verdicts = {v.candidate.label: v for v in judge(cands)}
    assert not verdicts["openvino fp32 int8"].within_budget  # 0.010 below fp32: too costly, though fastest
    assert verdicts["openvino fp32 int8"].deltas["iou"] == pytest.approx(-0.010)


def test_every_budgeted_metric_must_fit():
    ref = Candidate("onnxruntime", "fp32", "fp32", 100, {"segm_AP": 0.30, "bbox_AP": 0.40})
    segm_ok_bbox_not = Candidate("openvino", "bf16", "fp32", 50, {"segm_AP": 0.299, "bbox_AP": 0.394})
    assert pick_backend([ref, segm_ok_bbox_not]) is ref
    assert pick_backend([ref, segm_ok_bbox_not], budgets={**BUDGETS, "bbox_AP": 0.01}) is segm_ok_bbox_not


def test_changes_count_both_ways_and_reference_can_be_given():
    cands = [_unet("onnxruntime", "fp32", 100, 0.80), _unet("openvino", "bf16", 60, 0.804),
             _unet("openvino", "fp32", 40, 0.81, "int8")]
    # +0.010 is as far from fp32 as -0.010: the int8 run predicts differently, though "better" here
    assert pick_backend(cands).precision == "bf16"
    # against another reference (e.g. PyTorch fp32 measured separately) none fits
    with pytest.raises(InputError, match="no candidate is within the accuracy budget"):
        pick_backend(cands, reference={"iou": 0.9})


def test_unusable_measurements_are_refused():
    with pytest.raises(InputError, match="no candidates"):
        pick_backend([])
    with pytest.raises(InputError, match="no fp32 candidate"):
        pick_backend([_unet("openvino", "bf16", 10, 0.8)])
    with pytest.raises(InputError, match="lacks the metric"):
        pick_backend([_unet("onnxruntime", "fp32", 10, 0.8), Candidate("openvino", "bf16", "fp32", 5, {})])
    with pytest.raises(InputError, match="none of the budgeted"):
        pick_backend([Candidate("onnxruntime", "fp32", "fp32", 10, {"rand_error": 0.1})])
