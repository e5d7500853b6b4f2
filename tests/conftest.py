"""Shared test setup: repo root on sys.path, GPU/TensorRT markers that skip with a reason."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.wheel import make_models as models  # noqa: E402  (needs ROOT on sys.path)


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def _tensorrt_available() -> bool:
    try:
        import tensorrt  # noqa: F401 - imported only to learn whether it is installed
    except Exception:
        return False
    return _cuda_available()


def pytest_collection_modifyitems(config, items):
    cuda, trt = _cuda_available(), _tensorrt_available()
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False on this machine)")
    skip_trt = pytest.mark.skip(
        reason="needs TensorRT (`import tensorrt`) and a CUDA GPU; neither can be installed on the CPU CI machine"
    )
    for item in items:
        if "tensorrt" in item.keywords and not trt:
            item.add_marker(skip_trt)
        elif "gpu" in item.keywords and not cuda:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def dsb2018(tmp_path_factory) -> Path:
    """The real DSB2018 demo data (train/val folders), prepared once per test session.

    Uses ./data/dsb2018 when it was already prepared, else downloads the stardist
    wheel with pip (PyPI is reachable in CI) into a temporary folder.
    """
    from segrt.export.data.dsb2018 import prepare_dsb2018

    local = ROOT / "data" / "dsb2018"
    if (local / "source.json").is_file():
        return local
    return prepare_dsb2018(tmp_path_factory.mktemp("dsb2018"))


@pytest.fixture(scope="session")
def tiny_unet(tmp_path_factory):
    """A small He-initialised valid-padding U-Net and its ONNX export: (model, onnx_path)."""
    return models.tiny_unet(tmp_path_factory.mktemp("unet") / "tiny.onnx")


@pytest.fixture(scope="session")
def tiny_maskrcnn(tmp_path_factory) -> Path:
    """A random-weight resnet18-FPN Mask R-CNN exported as a portable 128x128 ONNX graph."""
    return models.tiny_maskrcnn(tmp_path_factory.mktemp("mrcnn") / "tiny_mrcnn.onnx")


@pytest.fixture(scope="session")
def tiny_split(tmp_path_factory) -> Path:
    """A synthetic image/label split folder: two 150x170 uint16 images of bright discs."""
    return models.tiny_split(tmp_path_factory.mktemp("split"))


@pytest.fixture(scope="session")
def coco_demo(dsb2018, tmp_path_factory) -> Path:
    """The DSB2018 demo data as COCO instances: train.json, val.json next to the train/ and val/ images."""
    import shutil

    from segrt.export.maskrcnn.coco import demo_coco

    root = tmp_path_factory.mktemp("dsb_coco")
    for split in ("train", "val"):
        shutil.copytree(dsb2018 / split, root / split)
    return demo_coco(root)


@pytest.fixture(scope="session")
def trained_maskrcnn(coco_demo, tmp_path_factory):
    """(model, cfg, class_names, checkpoint) of a resnet18-FPN trained for 80 steps on the demo train half.

    Trained once per session and stopped by its step count alone, never by wall time: the same
    weights on a loaded machine as on an idle one (a time budget once left it at AP50 0).
    """
    from segrt.export.checkpoint import load_checkpoint
    from segrt.export.maskrcnn.models import MaskRCNNConfig, model_from_checkpoint
    from segrt.export.maskrcnn.train import TrainOptions, train

    out = tmp_path_factory.mktemp("mrcnn") / "small.pt"
    cfg = MaskRCNNConfig(min_size=256, max_size=512)
    ckpt = train(
        TrainOptions(
            coco_demo / "train.json",
            coco_demo / "train",
            out,
            model=cfg,
            steps=80,
            warmup_steps=20,
            batch_size=2,
            time_budget_s=None,
            progress=False,
        )
    )
    model, cfg, names = model_from_checkpoint(load_checkpoint(ckpt))
    return model, cfg, names, ckpt


# ----------------------------------------------------------------------------- TensorRT without a GPU


@pytest.fixture(scope="session")
def unet_onnx(tmp_path_factory):  # the TensorRT double tests' model
    """A tiny valid-padding U-Net (depth 2, 4 base channels) exported by segrt.export.to_onnx."""
    import torch

    from segrt.export.models.unet import UNet, UNetConfig
    from segrt.export.to_onnx import unet_to_onnx

    torch.manual_seed(0)
    model = UNet(UNetConfig(depth=2, base_channels=4)).eval()
    return unet_to_onnx(model, tmp_path_factory.mktemp("unet") / "unet.onnx", ["background", "nucleus"], tile_size=76)


def real_bindings_or_skip() -> dict:
    """``describe(version)`` for every version in ``trt_api.VERSIONS``, or, when they cannot be had:
    a failure naming the reason under ``CI=true`` (the contract tests must never vanish from CI),
    a skip naming it elsewhere."""
    from tests.doubles import trt_api as api

    try:
        return {version: api.describe(version) for version in api.VERSIONS}
    except api.Unavailable as exc:
        if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
            pytest.fail(
                f"CI=true and TensorRT's real Python bindings could not be prepared: {exc} "
                f"(cache: {api.CACHE}; set SEGRT_TEST_CACHE to a folder CI keeps)",
                pytrace=False,
            )
        pytest.skip(f"TensorRT's real Python bindings are not available here: {exc}")


@pytest.fixture(scope="session")
def trt_api():
    """``describe(version)`` of TensorRT's real Python bindings (tests/doubles/trt_api.py), for each version
    in ``VERSIONS``: downloaded from PyPI once and cached (``$SEGRT_TEST_CACHE``, default
    ``~/.cache/segrt-tests``); see ``real_bindings_or_skip`` for when they cannot be had."""
    return real_bindings_or_skip()


@pytest.fixture(scope="session")
def plugin_library_standin(tmp_path_factory) -> Path:
    """A folder with a loadable ``libsegrt_trt_plugins.so`` that registers nothing itself: with the TensorRT
    double, ``IPluginRegistry.load_library`` of that name registers segrt's creators (CPU kernel)."""
    import shutil
    import subprocess

    folder = tmp_path_factory.mktemp("plugin")
    (folder / "empty.c").write_text("int segrt_plugin_standin;\n")
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the plugin library stand-in")
    subprocess.run(
        [cc, "-shared", "-fPIC", "-o", str(folder / "libsegrt_trt_plugins.so"), str(folder / "empty.c")], check=True
    )
    return folder


@pytest.fixture
def trt_double(monkeypatch, request):
    """TensorRT and the CUDA runtime replaced by the CPU execution double (tests/doubles) for one test.

    ``import tensorrt`` gives ``tests.doubles.tensorrt_double``; ``segrt.backends.cuda_rt`` uses
    ``tests.doubles.cudart_double`` (and ``cuda_utils_double`` for native handles). Yields the TensorRT
    double, playing TensorRT 10.13 unless a test parametrizes ``trt_version`` (indirectly) with another
    release of ``tensorrt_double.VERSIONS``. Fails the test if it left a contract violation behind
    (the doubles' docstrings list them: what real TensorRT/CUDA leave undefined or refuse).
    """
    import gc

    from segrt.backends import cuda_rt
    from tests.doubles import cuda_utils_double, cudart_double, tensorrt_double

    cudart_double.reset()
    tensorrt_double.reset()
    tensorrt_double.configure(getattr(request, "param", tensorrt_double.VERSIONS[0]))
    monkeypatch.setitem(sys.modules, "tensorrt", tensorrt_double)
    monkeypatch.setattr(cuda_rt, "import_cudart", lambda: cudart_double)
    monkeypatch.setattr(cuda_rt, "import_cuda_utils", lambda: cuda_utils_double, raising=False)
    from segrt.backends.tensorrt import api

    monkeypatch.setattr(api, "_process_logger", None, raising=False)  # a fresh process, as the double is
    monkeypatch.delenv("SEGRT_PLUGIN_PATH", raising=False)
    yield tensorrt_double
    gc.collect()  # contexts dropped by the test are destroyed now, and checked
    violations = list(cudart_double.STATE.violations)
    tensorrt_double.reset()
    assert not violations, f"the test broke TensorRT/CUDA contracts: {violations}"
