"""A real Triton server (the one bundled in nvidia-pytriton) serving tiny segrt models on 127.0.0.1:
results equal local ONNX Runtime predict over HTTP and gRPC, bad requests get clear errors while the
server keeps serving, a killed server gives clients errors (no hang) and a restarted one serves again,
and SIGINT lets requests in flight finish."""
from __future__ import annotations

import concurrent.futures as cf
import os
import signal
import subprocess
import sys
import threading
import json
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("tritonclient.http", reason="needs tritonclient (pip install 'segrt[serve]')")
torch = pytest.importorskip("torch")

import segrt  # noqa: E402
from segrt.errors import BackendUnavailableError, InputError, ServerError  # noqa: E402
from segrt.serve import RemotePredictor, TritonServer, find_tritonserver, write_model_repository  # noqa: E402
from segrt.serve.server import _stubs, free_ports  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

try:
    find_tritonserver()
except BackendUnavailableError as exc:
    pytest.skip(f"no Triton server binary: {exc.problem} (pip install --no-deps nvidia-pytriton==0.7.0)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def tiny_maskrcnn(tmp_path_factory) -> Path:
    """A random-weight resnet18-FPN Mask R-CNN on a 128 x 128 graph; score threshold 0 so it always detects."""
    from segrt.export.maskrcnn.models import MaskRCNNConfig, build_model
    from segrt.export.maskrcnn.onnx_export import torch_to_onnx
    torch.manual_seed(0)
    cfg = MaskRCNNConfig(min_size=128, max_size=128, rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_test=20,
                         box_detections_per_img=10)
    return torch_to_onnx(build_model(cfg).eval(), cfg, ["__background__", "nucleus"],
                         tmp_path_factory.mktemp("mrcnn") / "mrcnn.onnx", (128, 128), score_thresh=0.0)


@pytest.fixture(scope="module")
def repo(tiny_unet, tiny_maskrcnn, tmp_path_factory) -> Path:
    return write_model_repository([tiny_unet[1], tiny_maskrcnn], tmp_path_factory.mktemp("triton") / "models",
                                  max_batch=4, max_pixels=20_000_000)


@pytest.fixture(scope="module")
def server(repo):
    http, grpc, metrics = free_ports(3)
    t0 = time.monotonic()
    with TritonServer(repo, http_port=http, grpc_port=grpc, metrics_port=metrics, exit_timeout_s=5) as s:
        s.startup_s = time.monotonic() - t0
        yield s


def _images():
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, (97, 131), dtype=np.uint8),
            rng.integers(0, 4000, (60, 200, 1), dtype=np.uint16),
            rng.random((80, 90)).astype(np.float32)]


def _same_instances(a, b):
    assert len(a) == len(b) > 0 and a.class_names == b.class_names and a.image_hw == b.image_hw
    for k in ("boxes", "scores", "labels", "masks"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k), err_msg=k)


def test_server_starts_fast_and_reports_health(server):
    assert server.startup_s < 30
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/tiny/ready", "/v2/models/mrcnn/ready"):
        with urllib.request.urlopen(server.http_url + path, timeout=5) as r:
            assert r.status == 200, path
    RemotePredictor(server.http_url, "tiny").predict(_images()[0])
    with urllib.request.urlopen(server.metrics_url, timeout=5) as r:
        metrics = r.read().decode()
    assert 'nv_inference_request_success{model="tiny",version="1"}' in metrics


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_unet_results_equal_local_predict(server, tiny_unet, scheme, tmp_path):
    local = segrt.load(tiny_unet[1])
    remote = RemotePredictor(server.http_url if scheme == "http" else server.grpc_url, "tiny")
    assert remote.kind == "unet" and remote.class_names == ["background", "nucleus"]
    for image in _images():
        want, got = local.predict(image), remote.predict(image)
        for k in ("probs", "classes", "instances"):
            np.testing.assert_array_equal(getattr(got, k), getattr(want, k), err_msg=k)
            assert getattr(got, k).dtype == getattr(want, k).dtype
    image = _images()[0]
    got = remote.predict_encoded(cv2.imencode(".png", image)[1].tobytes(), tta=True)
    np.testing.assert_array_equal(got.probs, local.predict(image, tta=True).probs)
    assert RemotePredictor(remote.url, "tiny", probs=False).predict(image).probs is None
    with pytest.raises(InputError, match="take no option 'tile'"):
        remote.predict(image, tile=124)
    assert 0 < remote.last_timings["model_ms"] <= remote.last_timings["total_ms"]
    mine = remote.save(remote.predict(image), tmp_path / "remote", "u", image=image)
    theirs = local.save(local.predict(image), tmp_path / "local", "u", image=image)
    assert [p.name for p in mine] == [p.name for p in theirs] == ["u_classes.png", "u_instances.png", "u_overlay.png"]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(mine, theirs, strict=True))


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_maskrcnn_results_equal_local_predict(server, tiny_maskrcnn, scheme, tmp_path):
    local = segrt.load(tiny_maskrcnn)
    remote = RemotePredictor(server.http_url if scheme == "http" else server.grpc_url, "mrcnn")
    rng = np.random.default_rng(2)
    for image in [rng.integers(0, 256, (100, 150, 3), dtype=np.uint8), rng.integers(0, 900, (70, 60), np.uint16)]:
        _same_instances(remote.predict(image), local.predict(image))
    rgb = rng.integers(0, 256, (90, 110, 3), dtype=np.uint8)
    _same_instances(remote.predict_encoded(cv2.imencode(".png", rgb[:, :, ::-1])[1].tobytes()), local.predict(rgb))
    written = remote.save(remote.predict(rgb), tmp_path, "x", image=rgb)
    assert [p.name for p in written] == ["x_overlay.png", "x.json"]


def _raw(server, inputs, model="tiny", grpc=False):
    """Send a hand-made request with tritonclient; returns the error message, or None on success."""
    import tritonclient.grpc as tg
    import tritonclient.http as th
    from tritonclient.utils import InferenceServerException
    tc = tg if grpc else th
    client = tc.InferenceServerClient(server.grpc_url[7:] if grpc else server.http_url[7:])
    reqs = []
    for name, array, dtype in inputs:
        t = tc.InferInput(name, list(array.shape), dtype)
        t.set_data_from_numpy(array)
        reqs.append(t)
    try:
        client.infer(model, reqs)
        return None
    except InferenceServerException as exc:
        return exc.message()


def test_bad_requests_get_clear_errors_and_server_keeps_serving(server, tiny_unet):
    good = _images()[0]
    want = segrt.load(tiny_unet[1]).predict(good)
    remote = RemotePredictor(server.http_url, "tiny")
    u8 = np.zeros((1, 8, 8, 1), np.uint8)
    nan = np.full((1, 8, 8, 1), np.nan, np.float32)
    corrupt = cv2.imencode(".png", good)[1][:200].copy()
    bomb = cv2.imencode(".png", np.zeros((10_000, 10_000), np.uint8))[1]  # 100 megapixels in ~100 kB
    cases = {
        "wrong dtype": ([("image", u8.astype(np.int32), "INT32")], "expects 'UINT8'"),
        "wrong rank": ([("image", np.zeros((1, 8, 8), np.uint8), "UINT8")], "shape"),
        "empty image": ([("image", np.zeros((1, 0, 8, 1), np.uint8), "UINT8")], "image is empty"),
        "NaN": ([("image_float32", nan, "FP32")], "NaN or infinite"),
        "corrupt PNG": ([("encoded", corrupt[None], "UINT8")], "cannot be decoded"),
        "100 MP PNG": ([("encoded", bomb[None], "UINT8")], "100.0 megapixels exceeds"),
        "no image": ([("tta", np.ones((1, 1), np.uint8), "UINT8")], "exactly one image input"),
        "two images": ([("image", u8, "UINT8"), ("encoded", corrupt[None], "UINT8")], "exactly one image input"),
        "batch of 2": ([("image", np.zeros((2, 8, 8, 1), np.uint8), "UINT8")], "send one request per image"),
    }
    for case, (inputs, expected) in cases.items():
        message = _raw(server, inputs)
        assert message is not None and expected in message, f"{case}: {message}"
        np.testing.assert_array_equal(remote.predict(good).instances, want.instances)  # still serving
    # a 100-megapixel array over gRPC: refused by the size limit, not processed
    message = _raw(server, [("image", np.zeros((1, 10_000, 10_000, 1), np.uint8), "UINT8")], grpc=True)
    assert "exceeds this server's limit" in message
    # the client turns a refusal into InputError with the server's problem and fix
    with pytest.raises(InputError, match="NaN or infinite") as info:
        remote.predict(np.full((8, 8), np.nan, np.float32))
    assert info.value.fix and "nan_to_num" in info.value.fix
    np.testing.assert_array_equal(remote.predict(good).classes, want.classes)


def _alive(pids: list[int], wait_s: float = 5.0) -> list[int]:
    """The pids still running (zombies waiting to be reaped count as gone) after up to ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        alive = []
        for pid in pids:
            try:
                if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    alive.append(pid)
            except OSError:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def test_killed_server_gives_clear_errors_then_restart_serves(repo, tiny_unet):
    http, grpc, metrics = free_ports(3)
    image = _images()[0]
    want = segrt.load(tiny_unet[1]).predict(image)
    srv = TritonServer(repo, models=["tiny"], http_port=http, grpc_port=grpc, metrics_port=metrics, exit_timeout_s=5)
    try:
        srv.start()
        served, errors = [], []
        killed = threading.Event()

        def client(url: str) -> float:
            remote = RemotePredictor(url, "tiny", timeout_s=10, probs=False)
            for _ in range(300):  # bounded: stops at the first error
                try:
                    served.append(remote.predict(image).instances)
                except ServerError as exc:
                    errors.append(exc)
                    return time.monotonic()
            return time.monotonic()

        with cf.ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(client, srv.http_url if i % 2 else srv.grpc_url) for i in range(4)]
            while len(served) < 8:
                time.sleep(0.01)
            stubs = [pid for pid, _ in _stubs(srv.process.pid)]
            assert stubs
            srv.kill()
            t_kill = time.monotonic()
            killed.set()
            ends = [f.result(timeout=30) for f in futures]
        assert len(errors) == 4 and all("check that the server is running" in e.fix for e in errors)
        assert max(ends) - t_kill < 12  # each client learnt of the failure within its timeout: no hang
        assert all(np.array_equal(s, want.instances) for s in served)
        assert not _alive(stubs)  # no stub outlives the kill
        srv.start()
        for url in (srv.http_url, srv.grpc_url):
            np.testing.assert_array_equal(RemotePredictor(url, "tiny").predict(image).probs, want.probs)
    finally:
        srv.stop()
        srv.cleanup()


def _start_cli(model: Path, tmp_path: Path) -> tuple[subprocess.Popen, str]:
    """`python -m segrt.serve MODEL`; its temporary folders go under tmp_path (a killed CLI cannot remove them)."""
    http, grpc, metrics = free_ports(3)
    proc = subprocess.Popen([sys.executable, "-m", "segrt.serve", str(model), "--http-port", str(http), "--grpc-port",
                             str(grpc), "--metrics-port", str(metrics)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "TMPDIR": str(tmp_path)})
    return proc, f"http://127.0.0.1:{http}"


def _wait_ready(url: str, timeout_s: float = 60) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/v2/health/ready", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.3)
    return False


def test_killed_cli_takes_its_server_along(tiny_unet, tmp_path):
    """SIGKILL of `python -m segrt.serve` (no chance to clean up): the server it started stops by itself."""
    proc, url = _start_cli(tiny_unet[1], tmp_path)
    try:
        assert _wait_ready(url)
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _wait_ready(url, timeout_s=0.1):
            time.sleep(0.3)
        assert not _wait_ready(url, timeout_s=0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigint_drains_requests_in_flight(tiny_unet, tmp_path):
    """`python -m segrt.serve MODEL.onnx` (what `segrt serve` runs): SIGINT while a request runs; it completes, exit 0."""
    proc, url = _start_cli(tiny_unet[1], tmp_path)
    try:
        assert _wait_ready(url)
        remote = RemotePredictor(url, "tiny", timeout_s=30, probs=False)
        big = np.random.default_rng(3).integers(0, 256, (1500, 1500), dtype=np.uint8)
        threading.Timer(0.5, proc.send_signal, [signal.SIGINT]).start()
        t0 = time.monotonic()
        result = remote.predict(big, tta=True)  # 8x the work of one pass: still running when SIGINT arrives
        assert time.monotonic() - t0 > 0.5 and result.instances.shape == big.shape
        remote.close()  # Triton waits for open HTTP connections (up to its exit timeout) before it exits
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        assert "stopping: finishing requests in flight" in out and "stopped (exit code 0)" in out, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


NETWORK_STAND_IN = '''"""Stands in for Triton's onnxruntime backend (absent from the bundled server): same config, same tensors."""
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        responses = []
        for request in requests:
            feed = {i.name: np.from_dlpack(pb_utils.get_input_tensor_by_name(request, i.name))
                    for i in self.session.get_inputs()}
            outs = self.session.run(None, feed)
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor.from_dlpack(o.name, np.ascontiguousarray(v).__dlpack__())
                for o, v in zip(self.session.get_outputs(), outs)]))
        return responses
'''


def test_bls_pipeline_calls_its_network_model(tiny_unet, tmp_path):
    """The --bls pipeline sends the network to NAME_net by BLS. The generated onnxruntime_onnx model cannot run on
    the bundled server, so its config is kept (same inputs, outputs, dims) with the platform swapped for a Python
    model that runs ONNX Runtime; the pipeline's BLS plumbing is the real one, and the results equal local predict."""
    from google.protobuf import text_format
    from segrt.serve.repository import parse_config
    repo = write_model_repository([tiny_unet[1]], tmp_path / "models", bls_network=True, max_batch=0)
    net = parse_config((repo / "tiny_net/config.pbtxt").read_text())
    assert net.platform == "onnxruntime_onnx"
    net.ClearField("platform")
    net.backend = "python"
    (repo / "tiny_net/config.pbtxt").write_text(text_format.MessageToString(net))
    (repo / "tiny_net/1/model.py").write_text(NETWORK_STAND_IN)
    http, grpc, metrics = free_ports(3)
    with TritonServer(repo, http_port=http, grpc_port=grpc, metrics_port=metrics, exit_timeout_s=5) as srv:
        assert srv.models == ["tiny", "tiny_net"]
        image = _images()[1]
        got, want = RemotePredictor(srv.grpc_url, "tiny").predict(image), segrt.load(tiny_unet[1]).predict(image)
        for k in ("probs", "classes", "instances"):
            np.testing.assert_array_equal(getattr(got, k), getattr(want, k), err_msg=k)


def test_segrt_predict_and_eval_through_the_server(server, tiny_unet, tiny_split, tmp_path, capsys):
    """`segrt predict --server URL` writes the same files as a local `segrt predict`; `eval` works the same."""
    from segrt.cli import main
    image = tiny_split / "images" / "img0.png"
    assert main(["predict", "tiny", str(image), "--server", server.http_url, "--out", str(tmp_path / "remote")]) == 0
    assert main(["predict", str(tiny_unet[1]), str(image), "--out", str(tmp_path / "local")]) == 0
    remote, local = sorted((tmp_path / "remote").iterdir()), sorted((tmp_path / "local").iterdir())
    assert [p.name for p in remote] == [p.name for p in local] and len(remote) == 3
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(remote, local, strict=True))
    capsys.readouterr()
    assert main(["eval", "tiny", str(tiny_split), "--server", server.grpc_url]) == 0
    remote_report = json.loads(capsys.readouterr().out)
    assert main(["eval", str(tiny_unet[1]), str(tiny_split)]) == 0
    local_report = json.loads(capsys.readouterr().out)
    assert {k: v for k, v in remote_report.items() if k != "model"} == {k: v for k, v in local_report.items() if k != "model"}
