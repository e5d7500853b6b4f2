"""The benchmark harness (segrt.bench) on fake work: statistics, schema, speedups, agreement, pick, printer, JSON.

A fake clock makes every latency exact, so the assertions are on arithmetic, never on timing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from segrt.bench import (
    SCHEMA,
    Report,
    Variant,
    Within,
    format_table,
    measure,
    pick,
    plot,
    read_json,
    run_variants,
    timing_from_samples,
    write_json,
)
from segrt.bench.agreement import (
    array_agreement,
    box_iou,
    detection_matching,
    instances_agreement,
    segmentation_agreement,
)
from segrt.bench.artifacts import RUNTIMES, bench_image, predictor_variants, runtimes_for
from segrt.predictor import FeedRecorder, record_feeds


class FakeClock:
    """Seconds that advance only when fake work says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def work(self, ms: float, output=None):
        """A callable that 'takes' ``ms`` milliseconds and returns ``output``."""

        def call():
            self.now += ms / 1e3
            return output

        return call


def test_statistics_are_numpys_percentiles_and_throughput_is_per_p50():
    samples = [10.0, 20.0, 30.0, 40.0, 100.0]
    t = timing_from_samples(samples, warmup=3, images_per_call=2, pixels_per_call=4e6)
    assert t.p50_ms == np.percentile(samples, 50) == 30.0
    assert t.p90_ms == pytest.approx(np.percentile(samples, 90))  # 76.0, between 40 and 100
    assert (t.mean_ms, t.min_ms, t.runs, t.warmup) == (40.0, 10.0, 5, 3)
    assert t.throughput == pytest.approx(2 / 0.030)  # images/s at p50
    assert t.mpixel_per_s == pytest.approx(4 / 0.030)  # Mpixel/s at p50
    assert t.peak_rss_mb is None
    with pytest.raises(ValueError):
        timing_from_samples([])


def test_measure_times_only_the_runs_and_returns_the_last_output():
    clock, calls, synced = FakeClock(), [], []

    def fn():
        calls.append(1)
        clock.now += 0.005 * len(calls)  # 5, 10, 15, 20, 25 ms
        return len(calls)

    timing, out = measure(fn, runs=3, warmup=2, sync=lambda: synced.append(1), clock=clock)
    assert len(calls) == 5 and len(synced) == 5 and out == 5
    assert timing.runs == 3 and timing.p50_ms == pytest.approx(20.0) and timing.min_ms == pytest.approx(15.0)
    with pytest.raises(ValueError):
        measure(fn, runs=0)


def test_peak_rss_sees_memory_the_work_keeps():
    # in a fresh interpreter: a long test session keeps freed heap resident, which new work reuses unseen
    code = (
        "import numpy as np; from segrt.bench.core import measure; keep = []; "
        "t, _ = measure(lambda: keep.append(np.ones(64 * 2**20 // 8)), runs=1, warmup=0, rss=True); "
        "print(t.peak_rss_mb)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    if out.stdout.strip() == "None":
        pytest.skip("no /proc/self/statm on this system: peak RSS is not measured")
    assert float(out.stdout) >= 48  # 64 MiB held after the call (the last sample is taken after it)


def _variants(clock: FakeClock) -> list[Variant]:
    agree = lambda out, ref: {"same": float(out == ref)}  # noqa: E731 - a one-line helper of this test
    return [
        # declared before its reference: the harness still runs the reference first
        Variant("fast", lambda: clock.work(25, "a"), "end_to_end", agreement=agree, group="g"),
        Variant("ref", lambda: clock.work(100, "a"), "end_to_end", reference=True, group="g"),
        Variant("wrong", lambda: clock.work(10, "b"), "end_to_end", agreement=agree, group="g"),
        Variant("ref", lambda: clock.work(50, "x"), "model", reference=True, group="g"),
        Variant("half", lambda: clock.work(100, "x"), "model", agreement=agree, group="g"),
        Variant("alone", lambda: clock.work(10, 0), "model", group="other"),
    ]


def test_speedup_and_agreement_are_against_the_reference_of_the_same_group_and_mode():
    clock = FakeClock()
    report = run_variants(_variants(clock), runs=3, warmup=1, clock=clock, progress=None, title="t")
    assert [r.variant for r in report.rows] == ["ref", "fast", "wrong", "ref", "half", "alone"]
    fast = report.row("fast")
    assert (fast.p50_ms, fast.speedup, fast.agreement) == (pytest.approx(25), pytest.approx(4.0), {"same": 1.0})
    assert report.row("wrong").agreement == {"same": 0.0} and report.row("wrong").speedup == pytest.approx(10.0)
    assert report.row("half", mode="model").speedup == pytest.approx(0.5)
    assert report.row("ref", mode="end_to_end").speedup == pytest.approx(1.0)
    assert report.row("alone").speedup is None and report.row("alone").agreement == {}
    with pytest.raises(KeyError):
        report.row("ref")  # two rows: ambiguous without a mode


def test_two_references_in_one_group_are_refused():
    with pytest.raises(ValueError, match="2 references"):
        run_variants(
            [Variant("a", lambda: lambda: 0, reference=True), Variant("b", lambda: lambda: 0, reference=True)],
            runs=1,
            warmup=0,
            progress=None,
        )
    with pytest.raises(ValueError, match="mode"):
        Variant("a", lambda: lambda: 0, mode="both")


def test_pick_is_the_fastest_variant_within_the_budget():
    clock = FakeClock()
    report = run_variants(_variants(clock), runs=1, warmup=0, clock=clock, progress=None)
    p = pick(report, {"same": 0.995}, "end_to_end", "g")
    assert p["variant"] == "fast" and p["speedup"] == pytest.approx(4.0)
    assert p["rejected"] == {"wrong": "same 0 < 0.995"}
    # a budget on a number the variants do not report rejects them; the reference always qualifies
    assert pick(report, {"iou": 0.9}, "end_to_end", "g")["variant"] == "ref"
    assert pick(report, {}, "model", "other")["variant"] == "alone"


def test_table_json_and_plot(tmp_path, monkeypatch):
    clock = FakeClock()
    report = run_variants(
        _variants(clock), runs=2, warmup=0, clock=clock, progress=None, title="fake work", context={"threads": 2}
    )
    report.pick = [pick(report, {"same": 0.995}, "end_to_end", "g")]
    text = format_table(report)
    assert "fake work" in text and "threads 2" in text
    assert "[g, end to end]" in text and "[other, model only]" in text
    line = next(s for s in text.splitlines() if s.startswith("fast"))
    assert "25.0" in line and "4.00x" in line and "same 1" in line
    assert "pick (g, end to end, same >= 0.995): fast" in text and "not wrong: same 0 < 0.995" in text

    path = write_json(report, tmp_path / "out" / "bench.json")
    raw = json.loads(path.read_text())
    assert raw["schema"] == SCHEMA and raw["title"] == "fake work"
    assert set(raw["rows"][0]) == {
        "variant",
        "group",
        "mode",
        "reference",
        "p50_ms",
        "p90_ms",
        "mean_ms",
        "min_ms",
        "runs",
        "warmup",
        "throughput",
        "mpixel_per_s",
        "peak_rss_mb",
        "speedup",
        "agreement",
        "info",
    }
    assert read_json(path) == report
    assert [p.name for p in path.parent.iterdir()] == ["bench.json"]  # nothing half-written left behind
    # accuracy metrics, where a benchmark measured them, are kept and printed before the agreement
    report.row("fast").metrics = {"iou": 0.85}
    report.pick = [pick(report, {"iou": Within(0.005)}, "end_to_end", "g", reference={"iou": 0.851})]
    assert "metrics" not in report.row("wrong").to_dict() and report.row("fast").to_dict()["metrics"] == {"iou": 0.85}
    assert read_json(write_json(report, tmp_path / "m.json")) == report
    text = format_table(report)
    assert "[iou 0.85] same 1" in text and "pick (g, end to end, iou within 0.005): fast" in text
    with pytest.raises(ValueError):
        Report.from_dict({**raw, "schema": "other"})

    png = plot(report, tmp_path / "bench.png")
    if png is not None:  # matplotlib installed
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    said = []
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    assert plot(report, tmp_path / "none.png", log=said.append) is None
    assert "matplotlib" in said[0] and not (tmp_path / "none.png").exists()


def test_segmentation_agreement_by_hand():
    ref = np.zeros((2, 2, 4), np.float32)
    ref[1, :, :2] = 1.0  # class 1 on the left half: 4 pixels
    ref[0] = 1 - ref[1]
    out = ref.copy()
    out[1, 0, 2], out[0, 0, 2] = 0.9, 0.1  # one more class-1 pixel
    a = segmentation_agreement(out, ref)
    assert a == {
        "iou": pytest.approx(4 / 5),
        "label_agreement": pytest.approx(7 / 8),
        "max_abs_dprob": pytest.approx(0.9),
    }
    # backend outputs (lists of dicts of [T, K, h, w]) compare the same way
    assert segmentation_agreement([{"probs": out[None]}], [{"probs": ref[None]}]) == a
    assert segmentation_agreement(ref, ref)["iou"] == 1.0
    # between results, also the difference in objects counted
    from segrt.unet.predictor import SegmentationResult

    two, one = np.zeros((2, 4), np.int32), np.zeros((2, 4), np.int32)  # 2 objects, 1 object
    two[0, 0], two[1, 3], one[0, 0] = 1, 2, 1
    as_result = lambda probs, inst: SegmentationResult(probs, probs.argmax(0).astype(np.uint8), inst)  # noqa: E731 - a one-line helper of this test
    assert segmentation_agreement(as_result(out, two), as_result(ref, one)) == {**a, "abs_dcount": 1.0}
    with pytest.raises(ValueError):
        segmentation_agreement(ref, ref[:, :1])


def _instances(boxes, scores, masks_hw=(32, 32)):
    from segrt.rcnn.instances import Instances

    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    masks = np.zeros((len(boxes),) + masks_hw, bool)
    for m, (x1, y1, x2, y2) in zip(masks, boxes.astype(int), strict=True):
        m[y1:y2, x1:x2] = True
    return Instances(
        boxes, np.asarray(scores, np.float32), np.ones(len(boxes), np.int64), ["x"] * len(boxes), masks, None, masks_hw
    )


def test_instances_agreement_is_coco_ap_against_the_reference():
    pytest.importorskip("pycocotools", reason="needs pycocotools (pip install -e '.[eval]')")
    ref = _instances([[2, 2, 12, 12], [16, 16, 30, 30]], [0.9, 0.8])
    same = instances_agreement(ref, ref)
    assert same == {
        "detections": 2.0,
        "reference_detections": 2.0,
        "bbox_ap": pytest.approx(1.0),
        "segm_ap": pytest.approx(1.0),
    }
    half = instances_agreement(_instances([[2, 2, 12, 12]], [0.9]), ref)  # one of two found: recall 0.5
    assert 0.4 < half["bbox_ap"] < 0.6 and 0.4 < half["segm_ap"] < 0.6
    none = instances_agreement(_instances([], []), ref)
    assert none["bbox_ap"] == 0.0 and none["detections"] == 0.0
    assert instances_agreement(_instances([], []), _instances([], []))["segm_ap"] == 1.0
    # masks empty on both sides agree (COCO alone would score them IoU 0, i.e. as misses)
    with_empty = _instances([[2, 2, 12, 12], [20, 20, 20, 20]], [0.9, 0.8])
    assert not with_empty.masks[1].any()
    assert instances_agreement(with_empty, with_empty)["segm_ap"] == pytest.approx(1.0)


def test_detection_matching_pairs_by_label_and_box_iou():
    assert box_iou(
        np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    ) == pytest.approx(np.array([[1.0, 50 / 150, 0.0]]))
    ref = _instances([[2, 2, 12, 12], [16, 16, 30, 30], [0, 20, 8, 30]], [0.9, 0.8, 0.3])
    out = _instances([[16, 16, 30, 29], [2, 2, 12, 12], [40, 40, 50, 50]], [0.7, 0.95, 0.2], masks_hw=(64, 64))
    out.masks = out.masks[:, :32, :32]
    m = detection_matching(out, ref)
    assert m["matched"] == 2.0 and m["max_abs_dscore"] == pytest.approx(0.1)
    assert m["min_box_iou"] == pytest.approx(13 / 14)  # 14 x 13 inside 14 x 14
    assert m["mean_mask_iou"] == pytest.approx((1 + 13 / 14) / 2)
    assert m["unmatched_reference_max_score"] == pytest.approx(0.3) and m["unmatched_max_score"] == pytest.approx(0.2)
    out.labels[1] = 2  # another class: no pair
    assert detection_matching(out, ref)["matched"] == 1.0
    assert detection_matching(_instances([], []), _instances([], [])) == {
        "matched": 0.0,
        "max_abs_dscore": 0.0,
        "min_box_iou": 1.0,
        "mean_mask_iou": 1.0,
        "unmatched_reference_max_score": 0.0,
        "unmatched_max_score": 0.0,
    }


def test_array_agreement():
    assert array_agreement(np.array([1.0, 2.0]), np.array([1.0, 2.5])) == {"max_abs_diff": 0.5}
    with pytest.raises(ValueError):
        array_agreement(np.zeros(2), np.zeros(3))


class _Backend:
    def __init__(self) -> None:
        self.seen: list[float] = []

    def run(self, feed):
        self.seen.append(float(feed["x"].sum()))
        return {"y": feed["x"] * 2}


class _Predictor:
    """Two backend calls per image, like a tiled U-Net with two tile batches."""

    def __init__(self) -> None:
        self.backend = _Backend()

    def predict(self, image):
        return [self.backend.run({"x": image[:1]}), self.backend.run({"x": image[1:]})]


def test_model_only_variant_replays_the_feeds_the_predictor_built():
    image = np.arange(4.0).reshape(2, 2)
    predictor = _Predictor()
    feeds = record_feeds(predictor, image)
    assert isinstance(predictor.backend, _Backend)  # the real backend is put back
    assert [f["x"].tolist() for f in feeds] == [[[0.0, 1.0]], [[2.0, 3.0]]]

    # the recorder stands in for the backend only while active, passing its facts through
    predictor.backend.name = "fake backend"
    with FeedRecorder(predictor) as recorder:
        assert predictor.backend is recorder and recorder.name == "fake backend"
        predictor.predict(image)
    assert isinstance(predictor.backend, _Backend) and len(recorder.feeds) == 2
    with pytest.raises(RuntimeError), FeedRecorder(predictor):
        raise RuntimeError("predict failed")
    assert isinstance(predictor.backend, _Backend)  # put back after an error too

    model, e2e = predictor_variants("fake", lambda: predictor, image, agreement=None)
    assert (model.mode, e2e.mode, model.pixels_per_call) == ("model", "end_to_end", 4.0)
    predictor.backend.seen.clear()
    outputs = model.factory()()
    assert predictor.backend.seen[-2:] == [1.0, 5.0] and outputs[1]["y"].tolist() == [[4.0, 6.0]]


def test_bench_image(tmp_path):
    blobs = bench_image((40, 60), 1)
    assert blobs.shape == (40, 60) and blobs.dtype == np.uint8 and blobs.max() > blobs.min()
    assert np.array_equal(blobs, bench_image((40, 60), 1))  # deterministic
    assert bench_image((40, 60), 3).shape == (40, 60, 3)
    import cv2

    cv2.imwrite(str(tmp_path / "small.png"), np.arange(300, dtype=np.uint8).reshape(15, 20))
    tiled = bench_image((40, 50), 1, tmp_path / "small.png")
    assert tiled.shape == (40, 50) and np.array_equal(tiled[15:30, 20:40], tiled[:15, :20])
    assert bench_image(None, 3, tmp_path / "small.png").shape == (15, 20, 3)


def test_bench_model_registers_on_the_segrt_command_line():
    import argparse

    from segrt.bench import cli as bench_cli
    from segrt.cli import Commands

    commands = Commands(argparse.ArgumentParser(prog="segrt"))
    bench_cli.register(commands)
    args = commands.parser.parse_args(
        [
            "bench",
            "model",
            "a.onnx",
            "b.onnx",
            "--backend",
            "openvino:bf16",
            "--size",
            "64",
            "64",
            "--size",
            "128",
            "96",
            "--runs",
            "3",
        ]
    )
    assert args.func is bench_cli.run and args.artifacts == [Path("a.onnx"), Path("b.onnx")]
    assert args.size == [[64, 64], [128, 96]] and args.runs == 3 and args.warmup == 2 and args.threads is None
    assert bench_cli._backend_options(args.backend[0]) == {"backend": "openvino", "precision": "bf16"}


def test_runtime_table_rows_by_artifact_and_kind():
    names = [r.name for r in RUNTIMES]
    assert len(set(names)) == len(names) and all(r.artifact in ("fp32", "int8") for r in RUNTIMES)
    fp32_only = runtimes_for({"fp32": Path("m.onnx"), "int8": None}, "unet")
    assert fp32_only[0].name == "onnxruntime fp32" and all(r.artifact == "fp32" and r.available for r in fp32_only)
    assert "openvino mixed" not in [r.name for r in runtimes_for({"fp32": Path("m.onnx")}, "unet")]
    if "openvino fp32" in [r.name for r in fp32_only]:  # the OpenVINO rows, where it is installed
        assert all(
            "openvino mixed" in [r.name for r in runtimes_for({"fp32": Path("m.onnx")}, k)]
            for k in ("maskrcnn", "keypointrcnn")
        )
