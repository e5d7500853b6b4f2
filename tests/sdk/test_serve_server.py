"""A real Triton server (the one bundled in nvidia-pytriton) serving tiny segrt models on 127.0.0.1:
results equal local ONNX Runtime predict over HTTP and gRPC; no client can load, unload or register
anything; every request size within the limits works; bombs and bad requests are refused in under a
second while the server keeps serving; a burst beyond the queue is rejected at once; a killed server
gives clients errors (no hang) and a restarted one serves again; SIGINT lets requests in flight finish.
One server per module serves most tests (CI time)."""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("tritonclient.http", reason="needs tritonclient (pip install 'segrt[serve]')")
torch = pytest.importorskip("torch", reason="needs torch (pip install -e '.[train]')")

import segrt  # noqa: E402
from segrt.errors import BackendUnavailableError, InputError, ServerError  # noqa: E402
from segrt.serve import RemotePredictor, TritonServer, find_tritonserver, protocol, write_model_repository  # noqa: E402
from segrt.serve.repository import ServingLimits  # noqa: E402
from segrt.serve.server import _stubs, free_ports  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

try:
    find_tritonserver()
except BackendUnavailableError as exc:
    pytest.skip(
        f"no Triton server binary: {exc.problem} (pip install --no-deps nvidia-pytriton==0.7.0)",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def tiny_maskrcnn(tmp_path_factory) -> Path:
    """A random-weight resnet18-FPN Mask R-CNN on a 128 x 128 graph; score threshold 0 so it always detects."""
    from segrt.export.maskrcnn.models import MaskRCNNConfig, build_model
    from segrt.export.maskrcnn.onnx_export import torch_to_onnx

    torch.manual_seed(0)
    cfg = MaskRCNNConfig(
        min_size=128, max_size=128, rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_test=20, box_detections_per_img=10
    )
    return torch_to_onnx(
        build_model(cfg).eval(),
        cfg,
        ["__background__", "nucleus"],
        tmp_path_factory.mktemp("mrcnn") / "mrcnn.onnx",
        (128, 128),
        score_thresh=0.0,
    )


@pytest.fixture(scope="module")
def mini_unet(tmp_path_factory) -> Path:
    """A 2-level, 2-channel same-padding U-Net on 512 tiles: whole-slide sizes in seconds on a CPU."""
    from segrt.export.models.unet import UNet, UNetConfig
    from segrt.export.to_onnx import unet_to_onnx

    torch.manual_seed(0)
    return unet_to_onnx(
        UNet(UNetConfig(depth=2, base_channels=2, padding="same")).eval(),
        tmp_path_factory.mktemp("mini") / "mini.onnx",
        ["background", "nucleus"],
        tile_size=512,
    )


LIMITS = ServingLimits(max_pixels=40_000_000, max_probs_pixels=37_000_000, max_tta_pixels=1_000_000, max_queue=2)


@pytest.fixture(scope="module")
def repo(tiny_unet, tiny_maskrcnn, mini_unet, tmp_path_factory) -> Path:
    return write_model_repository(
        [tiny_unet[1], tiny_maskrcnn, mini_unet], tmp_path_factory.mktemp("triton") / "models", limits=LIMITS
    )


@pytest.fixture(scope="module")
def server(repo):
    http, grpc, metrics = free_ports(3)
    t0 = time.monotonic()
    with TritonServer(repo, http_port=http, grpc_port=grpc, metrics_port=metrics, exit_timeout_s=5) as s:
        s.startup_s = time.monotonic() - t0
        yield s


def _images():
    rng = np.random.default_rng(1)
    return [
        rng.integers(0, 256, (97, 131), dtype=np.uint8),
        rng.integers(0, 4000, (60, 200, 1), dtype=np.uint16),
        rng.random((80, 90)).astype(np.float32),
    ]


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


def _raw(server, inputs, model="tiny", grpc=False, outputs=None):
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
        client.infer(model, reqs, outputs=[tc.InferRequestedOutput(n) for n in outputs] if outputs else None)
        return None
    except InferenceServerException as exc:
        return exc.message()


def _jpeg_with_sof_after(image: np.ndarray, pad: int, hw: tuple[int, int] | None = None) -> bytes:
    """A real JPEG of ``image`` with ``pad`` bytes of APP1 segments before its frame header (large EXIF);
    ``hw`` overwrites the frame size in the SOF0 header (a small file that claims a huge image)."""
    data = bytearray(cv2.imencode(".jpg", image)[1].tobytes())
    segments = b""
    while pad > 0:
        n = min(pad, 65533)
        segments += b"\xff\xe1" + (n + 2).to_bytes(2, "big") + b"\0" * n
        pad -= n
    data[2:2] = segments
    if hw is not None:
        sof = data.index(b"\xff\xc0")
        data[sof + 5 : sof + 9] = hw[0].to_bytes(2, "big") + hw[1].to_bytes(2, "big")
    return bytes(data)


def _tiff_claiming(hw: tuple[int, int]) -> bytes:
    """A small little-endian TIFF (OpenCV's) whose first IFD claims ``hw``: width/length tags rewritten."""
    import struct

    data = bytearray(cv2.imencode(".tiff", np.zeros((8, 8), np.uint8))[1].tobytes())
    assert data[:4] == b"II*\0"
    ifd = struct.unpack("<I", data[4:8])[0]
    for k in range(struct.unpack("<H", data[ifd : ifd + 2])[0]):
        at = ifd + 2 + 12 * k
        tag, typ = struct.unpack("<HH", data[at : at + 4])
        value = {256: hw[1], 257: hw[0]}.get(tag)
        if value is not None:
            data[at + 8 : at + 12] = struct.pack("<HH", value, 0) if typ == 3 else struct.pack("<I", value)
    return bytes(data)


def test_bad_requests_and_bombs_are_refused_at_once_and_server_keeps_serving(server, tiny_unet):
    """Each bad or oversized request is refused with INVALID_ARG (the client's fault) in under a second, before
    any decoding or full pass over its pixels, and the server answers the next request correctly."""
    good = _images()[0]
    want = segrt.load(tiny_unet[1]).predict(good)
    remote = RemotePredictor(server.http_url, "tiny")
    u8 = np.zeros((8, 8, 1), np.uint8)
    nan = np.full((8, 8, 1), np.nan, np.float32)
    corrupt = cv2.imencode(".png", good)[1][:200].copy()
    png_bomb = cv2.imencode(".png", np.zeros((10_000, 10_000), np.uint8))[1]  # 100 megapixels in ~100 kB
    small = np.random.default_rng(4).integers(0, 256, (16, 16), dtype=np.uint8)
    as_u8 = lambda b: np.frombuffer(b, np.uint8).copy()  # noqa: E731
    cases = {
        "wrong dtype": ("tiny", [("image", u8.astype(np.int32), "INT32")], "expects 'UINT8'"),
        "wrong rank": ("tiny", [("image", np.zeros((8, 8), np.uint8), "UINT8")], "shape"),
        "3 channels into a 1-channel U-Net": ("tiny", [("image", np.zeros((8, 8, 3), np.uint8), "UINT8")], "shape"),
        "100 channels": ("mrcnn", [("image", np.zeros((8, 8, 100), np.uint8), "UINT8")], "1 to 4 channels"),
        "empty image": ("tiny", [("image", np.zeros((0, 8, 1), np.uint8), "UINT8")], "image is empty"),
        "NaN": ("tiny", [("image_float32", nan, "FP32")], "NaN or infinite"),
        "corrupt PNG": ("tiny", [("encoded", corrupt, "UINT8")], "cannot be decoded"),
        "100 MP PNG": ("tiny", [("encoded", png_bomb, "UINT8")], "100.0 megapixels exceeds"),
        "100 MP JPEG, frame header after 70 kB of EXIF": (
            "tiny",
            [("encoded", as_u8(_jpeg_with_sof_after(small, 70_000, (10_000, 10_000))), "UINT8")],
            "100.0 megapixels exceeds",
        ),
        "400 MP TIFF": (
            "tiny",
            [("encoded", as_u8(_tiff_claiming((20_000, 20_000))), "UINT8")],
            "400.0 megapixels exceeds",
        ),
        "BMP": ("tiny", [("encoded", cv2.imencode(".bmp", small)[1], "UINT8")], "not a PNG, JPEG or TIFF"),
        "GIF": ("tiny", [("encoded", as_u8(b"GIF89a" + bytes(100)), "UINT8")], "not a PNG, JPEG or TIFF"),
        "TTA above its limit": (
            "tiny",
            [("image", np.zeros((1100, 1000, 1), np.uint8), "UINT8"), ("tta", np.ones(1, np.uint8), "UINT8")],
            "test-time augmentation",
        ),
        "no image": ("tiny", [("tta", np.ones(1, np.uint8), "UINT8")], "exactly one image input"),
        "two images": ("tiny", [("image", u8, "UINT8"), ("encoded", corrupt, "UINT8")], "exactly one image input"),
    }
    for case, (model, inputs, expected) in cases.items():
        t0 = time.monotonic()
        message = _raw(server, inputs, model=model)
        assert time.monotonic() - t0 < 1.0, case
        assert message is not None and expected in message, f"{case}: {message}"
        np.testing.assert_array_equal(remote.predict(good).instances, want.instances)  # still serving
    # a JPEG whose frame header lies past 64 kB is sized from that header, and decodes as a file does
    jpeg = _jpeg_with_sof_after(small, 70_000)
    assert protocol.encoded_size(jpeg) == (16, 16)
    np.testing.assert_array_equal(
        remote.predict_encoded(jpeg).classes, segrt.load(tiny_unet[1]).predict(cv2.imdecode(as_u8(jpeg), 0)).classes
    )
    # a 100-megapixel array over gRPC: refused by the size limit, not processed; same for probabilities
    message = _raw(server, [("image", np.zeros((10_000, 10_000, 1), np.uint8), "UINT8")], grpc=True)
    assert "exceeds this server's limit" in message
    message = _raw(server, [("image", np.zeros((6100, 6100, 1), np.uint8), "UINT8")], model="mini", outputs=["probs"])
    assert "probabilities of 37.2 megapixels exceed" in message
    # the client turns a refusal into InputError with the server's problem and fix
    with pytest.raises(InputError, match="NaN or infinite") as info:
        remote.predict(np.full((8, 8), np.nan, np.float32))
    assert info.value.fix and "nan_to_num" in info.value.fix
    np.testing.assert_array_equal(remote.predict(good).classes, want.classes)
    assert server.environment()["OPENCV_IO_MAX_IMAGE_PIXELS"] == str(LIMITS.max_pixels)  # OpenCV's own bound


EVIL_MODEL_PY = """import pathlib
pathlib.Path({marker!r}).write_text("client code ran in the server")


class TritonPythonModel:
    def execute(self, requests):
        return []
"""


def _http(server, method: str, path: str, body: dict | None = None, headers: dict | None = None) -> int:
    """Status code of a raw HTTP request to the server."""
    req = urllib.request.Request(
        server.http_url + path,
        data=json.dumps(body or {}).encode(),
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_clients_cannot_load_unload_or_register_anything(server, tmp_path):
    """Triton's model-repository extension lets a client POST a config plus file:1/model.py and have the server run
    it. Here that request is refused (without and even with the admin key: model control is off), as are unload,
    shared-memory registration and log changes, over HTTP and gRPC; the client's code never runs."""
    import base64

    import tritonclient.grpc as tg
    from tritonclient.utils import InferenceServerException

    marker = tmp_path / "pwned"
    load = {
        "parameters": {
            "config": json.dumps({"name": "evil", "backend": "python"}),
            "file:1/model.py": base64.b64encode(EVIL_MODEL_PY.format(marker=str(marker)).encode()).decode(),
        }
    }
    assert _http(server, "POST", "/v2/repository/models/evil/load", load) == 403  # restricted API, no key
    assert (
        _http(server, "POST", "/v2/repository/models/evil/load", load, {"segrt-admin-key": server.admin_key}) >= 400
    )  # model control is off altogether
    assert _http(server, "POST", "/v2/repository/models/tiny/unload") == 403
    assert (
        _http(server, "POST", "/v2/repository/models/tiny/unload", headers={"segrt-admin-key": server.admin_key}) >= 400
    )
    assert _http(server, "POST", "/v2/repository/index") == 403
    assert (
        _http(server, "POST", "/v2/systemsharedmemory/region/r/register", {"key": "/r", "offset": 0, "byte_size": 64})
        == 403
    )
    assert _http(server, "POST", "/v2/logging", {"log_verbose_level": 1}) == 403
    grpc = tg.InferenceServerClient(server.grpc_url[7:])
    for call in (
        lambda: grpc.load_model(
            "evil",
            config=json.dumps({"name": "evil", "backend": "python"}),
            files={"file:1/model.py": EVIL_MODEL_PY.format(marker=str(marker)).encode()},
        ),
        lambda: grpc.unload_model("tiny"),
        lambda: grpc.register_system_shared_memory("r", "/r", 64),
        lambda: grpc.update_log_settings({"log_verbose_level": 1}),
    ):
        with pytest.raises(InferenceServerException):
            call()
    time.sleep(1)  # a load, had it been accepted, would have run by now
    assert not marker.exists()
    assert _http(server, "GET", "/v2/models/evil/ready") != 200
    assert _http(server, "GET", "/v2/models/tiny/ready") == 200
    RemotePredictor(server.grpc_url, "tiny").predict(_images()[0])  # still serving
    with pytest.raises(InputError, match="name the model"):  # clients need no repository index, only the name
        RemotePredictor(server.http_url)


@pytest.mark.parametrize("hw", [(2100, 2100), (6000, 6000)])
def test_large_unet_requests_with_and_without_probabilities(server, mini_unet, hw):
    """Above the local 'auto' limit of 2048 x 2048 the server returns probabilities when asked (never None), and
    computes neither probabilities nor instances when not asked."""
    image = np.random.default_rng(5).integers(0, 256, hw, dtype=np.uint8)
    got = RemotePredictor(server.grpc_url, "mini", timeout_s=300).predict(image)
    assert got.probs.shape == (2, *hw) and got.probs.dtype == np.float32
    bare = RemotePredictor(server.http_url, "mini", timeout_s=300, probs=False, instances=False).predict(image)
    assert bare.probs is None and bare.instances is None
    np.testing.assert_array_equal(bare.classes, got.classes)
    if hw[0] * hw[1] <= 2100 * 2100:  # every array against local predict (the 36 MP one would cost CI ~20 s more)
        local = segrt.load(mini_unet).predict(image, probs="float32", progress=False)
        for k in ("probs", "classes", "instances"):
            np.testing.assert_array_equal(getattr(got, k), getattr(local, k), err_msg=k)
    else:  # the classes are the probabilities' argmax, and the instances label exactly the foreground
        np.testing.assert_array_equal(got.probs.argmax(0), got.classes)
        np.testing.assert_array_equal(got.instances > 0, got.classes == 1)


def test_burst_beyond_the_queue_is_rejected_at_once_and_server_recovers(server, tiny_unet):
    """max_queue 2, one instance: of 12 simultaneous slow requests, those that find the queue full are rejected
    (UNAVAILABLE, not retried here) before the accepted ones finish, and the server then serves normally."""
    image = np.random.default_rng(6).integers(0, 256, (700, 700), dtype=np.uint8)
    done: list[tuple[str, float]] = []
    barrier = threading.Barrier(12)

    def client() -> None:
        remote = RemotePredictor(server.grpc_url, "tiny", timeout_s=120, probs=False, retries=0)
        barrier.wait()
        try:
            remote.predict(image, tta=False)
            done.append(("ok", time.monotonic()))
        except ServerError as exc:
            done.append((exc.problem, time.monotonic()))

    with cf.ThreadPoolExecutor(12) as pool:
        list(pool.map(lambda _: client(), range(12)))
    ok = [t for what, t in done if what == "ok"]
    rejected = [(what, t) for what, t in done if what != "ok"]
    assert len(ok) >= 1 and len(rejected) >= 12 - 1 - LIMITS.max_queue - 2, done  # 1 running + queue (+ arrival slack)
    assert all("queue" in what.lower() for what, _ in rejected), rejected
    assert max(t for _, t in rejected) < max(ok)  # refusals did not wait for the work
    small = _images()[0]
    np.testing.assert_array_equal(
        RemotePredictor(server.http_url, "tiny").predict(small).classes, segrt.load(tiny_unet[1]).predict(small).classes
    )


def test_client_retries_unavailable_with_backoff_but_never_bad_input(server):
    """The real tritonclient exception types: UNAVAILABLE and refused connections are retried (bounded), a 400 is not."""
    from tritonclient.utils import InferenceServerException

    remote = RemotePredictor(server.http_url, "tiny", retries=2)
    calls: list[float] = []

    def fails(status: str):
        def fn():
            calls.append(time.monotonic())
            raise InferenceServerException("busy", status=status)

        return fn

    with pytest.raises(ServerError):
        remote._call(fails("503"))
    assert len(calls) == 3 and calls[2] - calls[1] > calls[1] - calls[0] > 0.2  # doubling waits
    calls.clear()
    with pytest.raises(InputError):
        remote._call(fails("400"))
    assert len(calls) == 1
    dead = RemotePredictor.__new__(RemotePredictor)
    dead.__dict__.update(remote.__dict__, retries=1)
    calls.clear()

    def refused():
        calls.append(time.monotonic())
        raise ConnectionRefusedError(111, "Connection refused")

    with pytest.raises(ServerError, match="refused"):
        dead._call(refused)
    assert len(calls) == 2


def test_shared_memory_needs_the_admin_key_and_gives_the_same_results(server, tiny_unet):
    """A co-located client with the operator's key sends pixels and receives U-Net outputs through /dev/shm: the
    same arrays as over the socket; without the key the registration is refused; close() removes its region."""
    image = _images()[1]
    want = RemotePredictor(server.grpc_url, "tiny").predict(image)
    for url in (server.grpc_url, server.http_url):
        remote = RemotePredictor(url, "tiny", shared_memory=True, admin_key=server.admin_key)
        for _ in range(2):  # the second request reuses the registered region
            got = remote.predict(image)
            for k in ("probs", "classes", "instances"):
                np.testing.assert_array_equal(getattr(got, k), getattr(want, k), err_msg=k)
        names = [a.name for a in remote._arenas]
        assert names and all(Path("/dev/shm", n).exists() for n in names)
        remote.close()
        assert not any(Path("/dev/shm", n).exists() for n in names)
    with pytest.raises(ServerError, match="restricted"):
        RemotePredictor(server.http_url, "tiny", shared_memory=True, admin_key="wrong").predict(image)


def test_start_refuses_a_taken_port_and_names_it(repo):
    """Triton loads models before binding: another server on our port would answer our health checks."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        http, grpc, _ = free_ports(3)
        srv = TritonServer(repo, models=["tiny"], http_port=http, grpc_port=grpc, metrics_port=port)
        try:
            with pytest.raises(ServerError, match=f"metrics port {port} .* already in use"):
                srv.start()
            assert srv.process is None  # nothing was started
        finally:
            srv.cleanup()


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
        starter = threading.Thread(target=srv.start)  # a worker thread that ends: the server must outlive it
        starter.start()
        starter.join()
        assert srv.ready()
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
            found = _stubs(srv.process.pid)
            stubs = [pid for pid, _ in found]
            assert stubs and all(Path("/dev/shm", region).exists() for _, region in found)
            srv.kill()
            t_kill = time.monotonic()
            killed.set()
            ends = [f.result(timeout=30) for f in futures]
        assert len(errors) == 4 and all("check that the server is running" in e.fix for e in errors)
        assert max(ends) - t_kill < 12  # each client learnt of the failure within its timeout: no hang
        assert all(np.array_equal(s, want.instances) for s in served)
        assert not _alive(stubs)  # no stub outlives the kill
        assert not any(Path("/dev/shm", region).exists() for _, region in found)  # nor its shared memory
        srv.start()
        for url in (srv.http_url, srv.grpc_url):
            np.testing.assert_array_equal(RemotePredictor(url, "tiny").predict(image).probs, want.probs)
    finally:
        srv.stop()
        srv.cleanup()


def _start_cli(model: Path, tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """`python -m segrt.serve MODEL`; its temporary folders go under tmp_path (a killed CLI cannot remove them);
    the server log goes to the CLI's stdout (the default)."""
    http, grpc, metrics = free_ports(3)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "segrt.serve",
            str(model),
            "--http-port",
            str(http),
            "--grpc-port",
            str(grpc),
            "--metrics-port",
            str(metrics),
            *extra,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
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
    proc, url = _start_cli(tiny_unet[1], tmp_path, "--exit-timeout", "25")
    try:
        assert _wait_ready(url)
        remote = RemotePredictor(url, "tiny", timeout_s=30, probs=False)
        big = np.random.default_rng(3).integers(0, 256, (1000, 1000), dtype=np.uint8)
        threading.Timer(0.5, proc.send_signal, [signal.SIGINT]).start()
        t0 = time.monotonic()
        result = remote.predict(big, tta=True)  # 8x the work of one pass: still running when SIGINT arrives
        assert time.monotonic() - t0 > 0.5 and result.instances.shape == big.shape
        remote.close()  # Triton waits for open HTTP connections (up to its exit timeout) before it exits
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        assert "stopping: finishing requests in flight" in out and "stopped (exit code 0)" in out, out
        assert "Waiting for in-flight requests to complete" in out  # the server log reached stdout
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
    assert {k: v for k, v in remote_report.items() if k != "model"} == {
        k: v for k, v in local_report.items() if k != "model"
    }
