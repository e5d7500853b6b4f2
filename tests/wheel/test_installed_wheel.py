"""The runtime wheel, installed into a fresh environment with no compiler, no CMake and no torch.

Run by ``.ci/run``'s wheel stage against the installed package (never the source tree). The
reference results come from the source tree's runtime (``make_models.py``, run in the
development environment, where the main test session checks that runtime against torch).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest

import segrt
from segrt.io.images import read_image


def _segrt(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The installed ``segrt`` console script (next to this interpreter), run in ``cwd``."""
    exe = Path(sys.executable).parent / "segrt"
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_wheel_holds_only_the_segrt_package(wheel: Path) -> None:
    """No generic top-level package (``sdk``, ``export``): every file is under segrt/ or its dist-info;
    the wheel is manylinux-tagged and carries the CPU RoIAlign library."""
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/RECORD"))
        record = zf.read(f"{dist_info}/RECORD").decode().splitlines()
        top_level = zf.read(f"{dist_info}/top_level.txt").decode().split()
        tags = [
            line.split(": ", 1)[1]
            for line in zf.read(f"{dist_info}/WHEEL").decode().splitlines()
            if line.startswith("Tag: ")
        ]
    assert {n.split("/")[0] for n in names} == {"segrt", dist_info}
    assert {row.split(",")[0].split("/")[0] for row in record if row} == {"segrt", dist_info}
    assert top_level == ["segrt"]
    assert tags and all(t.startswith("py3-none-manylinux") for t in tags), tags
    assert "segrt/_lib/libsegrt_roi_align_cpu.so" in names
    assert "segrt/py.typed" in names


@pytest.mark.parametrize("name", ["sdk", "export"])
def test_no_generic_top_level_import(name: str, tmp_path: Path) -> None:
    """``python -c "import sdk"`` (or ``export``) fails after installing the wheel."""
    run = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode != 0 and f"No module named '{name}'" in run.stderr, run.stderr


def test_environment_is_the_installed_wheel_without_compilers() -> None:
    """What this stage claims: segrt comes from site-packages, and no compiler, CMake or torch is reachable."""
    site = {Path(sysconfig.get_paths()[k]).resolve() for k in ("purelib", "platlib")}
    assert any(site_dir in Path(segrt.__file__).resolve().parents for site_dir in site), segrt.__file__
    assert {tool: shutil.which(tool) for tool in ("cc", "c++", "gcc", "g++", "cmake")} == dict.fromkeys(
        ("cc", "c++", "gcc", "g++", "cmake")
    )
    with pytest.raises(ModuleNotFoundError):
        import torch  # noqa: F401
    from segrt.ops import native

    assert native.BUILD_DIR is None  # no source checkout around the installed package to search


def _assert_unet_matches(got: segrt.unet.predictor.SegmentationResult, expected: dict[str, np.ndarray]) -> None:
    np.testing.assert_allclose(got.probs, expected["unet_probs"], atol=1e-5)
    # random weights put many pixels near 0.5: compare the argmax where the margin is not a rounding tie
    decided = np.abs(expected["unet_probs"][1] - expected["unet_probs"][0]) > 1e-4
    np.testing.assert_array_equal(got.classes[decided], expected["unet_classes"][decided])


def _assert_rcnn_matches(boxes: np.ndarray, scores: np.ndarray, expected: dict[str, np.ndarray]) -> None:
    assert len(scores) == len(expected["rcnn_scores"]) > 0
    np.testing.assert_allclose(np.sort(scores), np.sort(expected["rcnn_scores"]), atol=1e-4)
    # each box has its counterpart (near-equal scores may swap places)
    gaps = np.abs(boxes[:, None, :] - expected["rcnn_boxes"][None, :, :]).max(axis=2).min(axis=1)
    assert gaps.max() < 1e-2, gaps.max()


def test_load_predict_unet_and_maskrcnn(models: Path) -> None:
    """``segrt.load(...).predict(img)`` from the wheel gives the source tree's results (U-Net, Mask R-CNN)."""
    expected = dict(np.load(models / "expected.npz"))
    _assert_unet_matches(
        segrt.load(models / "unet.onnx").predict(read_image(models / "split/images/img0.png")), expected
    )
    result = segrt.load(models / "maskrcnn.onnx").predict(read_image(models / "image.png"))
    _assert_rcnn_matches(result.boxes, result.scores, expected)


def test_bundled_cpu_roi_align_runs() -> None:
    """The wheel's CPU RoIAlign library loads with no compiler around, and pools a ramp ``f(y, x) = x`` to the
    mean of its sample positions (half-pixel, 2 samples per bin: bin j of width 2 -> 2j + 0.5)."""
    from segrt.ops import roi_align

    x = np.broadcast_to(np.arange(16, dtype=np.float32), (1, 1, 16, 16)).copy()
    out = roi_align(
        x, np.array([[0, 0, 8, 8]], np.float32), np.array([0]), output_size=4, sampling_ratio=2, aligned=True
    )
    np.testing.assert_allclose(out[0, 0], np.broadcast_to(2 * np.arange(4) + 0.5, (4, 4)), rtol=0, atol=1e-6)


NO_NATIVE_LIBRARY = r"""
import json, sys
from pathlib import Path
import numpy as np
import segrt
from segrt.errors import BackendUnavailableError
from segrt.io.images import read_image
from segrt.ops import native
# the library is absent: nothing at segrt/_lib/ or build/, no environment variable
native.PACKAGE_LIB_DIR = Path(sys.argv[2])
native.BUILD_DIR = None  # no checkout's build/ either (already None in an installed package)
models = Path(sys.argv[1])
u = segrt.load(models / "unet.onnx").predict(read_image(models / "split/images/img0.png"))
m = segrt.load(models / "maskrcnn.onnx").predict(read_image(models / "image.png"))
np.savez(sys.argv[3], unet_probs=u.probs, unet_classes=u.classes, rcnn_boxes=m.boxes, rcnn_scores=m.scores)
maps = Path("/proc/self/maps").read_text()
try:
    segrt.ops.roi_align(np.zeros((1, 1, 4, 4), np.float32), np.zeros((1, 4), np.float32), np.zeros(1, np.int64))
    error = None
except BackendUnavailableError as exc:
    error = str(exc)
print(json.dumps({"library_mapped": "libsegrt" in maps, "error": error}))
"""


def test_runtime_works_without_the_native_library(models: Path, tmp_path: Path) -> None:
    """With the CPU RoIAlign library absent, U-Net and Mask R-CNN (portable graphs) predict the same results
    and never open it; only ``segrt.ops`` on numpy arrays fails, with the error naming the build command."""
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "SEGRT_ROI_ALIGN_LIB"}
    run = subprocess.run(
        [sys.executable, "-c", NO_NATIVE_LIBRARY, str(models), str(empty), str(tmp_path / "out.npz")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.splitlines()[-1])
    assert report["library_mapped"] is False
    assert report["error"] and "libsegrt_roi_align_cpu.so is not built or not found" in report["error"]
    assert "cmake -S . -B build" in report["error"] and "SEGRT_ROI_ALIGN_LIB" in report["error"]
    got, expected = np.load(tmp_path / "out.npz"), dict(np.load(models / "expected.npz"))
    np.testing.assert_allclose(got["unet_probs"], expected["unet_probs"], atol=1e-5)
    _assert_rcnn_matches(got["rcnn_boxes"], got["rcnn_scores"], expected)


def test_cli_info_predict_eval(models: Path, tmp_path: Path) -> None:
    """``segrt info|predict|eval`` from the installed console script."""
    info = _segrt("info", str(models / "unet.onnx"), "--json", cwd=tmp_path)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["metadata"]["kind"] == "unet"

    pred = _segrt(
        "predict", str(models / "unet.onnx"), str(models / "split/images/img0.png"), "--out", "u", cwd=tmp_path
    )
    assert pred.returncode == 0, pred.stderr
    assert len(list((tmp_path / "u").iterdir())) == 3, pred.stdout
    pred = _segrt("predict", str(models / "maskrcnn.onnx"), str(models / "image.png"), "--out", "m", cwd=tmp_path)
    assert pred.returncode == 0, pred.stderr
    coco = json.loads(next((tmp_path / "m").glob("*.json")).read_text())
    assert coco["image_size"] == [90, 110]
    assert len(coco["instances"]) == len(np.load(models / "expected.npz")["rcnn_scores"])

    ev = _segrt("eval", str(models / "unet.onnx"), str(models / "split"), cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr
    got, want = json.loads(ev.stdout), json.loads((models / "expected_eval.json").read_text())
    assert got.keys() == want.keys()
    for key, value in want.items():
        if isinstance(value, float):
            assert got[key] == pytest.approx(value, abs=1e-4), key


def test_cli_names_the_extra_for_training_verbs(tmp_path: Path) -> None:
    """The training verbs are not in the runtime; asking for one says which extra brings it."""
    run = _segrt("export", "x.pt", cwd=tmp_path)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "segrt[train]" in run.stdout + run.stderr


def _wait_ready(url: str, proc: subprocess.Popen[str], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url + "/v2/health/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    if proc.poll() is None:
        proc.kill()
    raise AssertionError(f"segrt serve did not become ready (exit code {proc.wait()}):\n{proc.communicate()[0]}")


def test_cli_serve(models: Path, tmp_path: Path) -> None:
    """``segrt serve unet.onnx`` on Triton, and ``segrt predict --server`` writes what a local predict writes."""
    pytest.importorskip("tritonclient.http", reason="needs the serve extra (pip install 'segrt[serve]')")
    from segrt.errors import BackendUnavailableError
    from segrt.serve.server import find_tritonserver, free_ports

    try:
        find_tritonserver()
    except BackendUnavailableError as exc:
        pytest.skip(f"no Triton server binary: {exc.problem} (pip install --no-deps nvidia-pytriton==0.7.0)")
    http, grpc, metrics = free_ports(3)
    exe = Path(sys.executable).parent / "segrt"
    proc = subprocess.Popen(
        [
            str(exe),
            "serve",
            str(models / "unet.onnx"),
            "--http-port",
            str(http),
            "--grpc-port",
            str(grpc),
            "--metrics-port",
            str(metrics),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    try:
        _wait_ready(f"http://127.0.0.1:{http}", proc)
        image = str(models / "split/images/img0.png")
        remote = _segrt(
            "predict", "unet", image, "--server", f"http://127.0.0.1:{http}", "--out", "remote", cwd=tmp_path
        )
        assert remote.returncode == 0, remote.stderr
        local = _segrt("predict", str(models / "unet.onnx"), image, "--out", "local", cwd=tmp_path)
        assert local.returncode == 0, local.stderr
        r, lo = sorted((tmp_path / "remote").iterdir()), sorted((tmp_path / "local").iterdir())
        assert [p.name for p in r] == [p.name for p in lo] and len(r) == 3
        assert all(a.read_bytes() == b.read_bytes() for a, b in zip(r, lo, strict=True))
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
