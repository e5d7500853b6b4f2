"""The runtime's `segrt` verbs (predict, eval, info) for every model kind, with torch and `export` blocked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from segrt.io.images import write_png

ROOT = Path(__file__).resolve().parents[2]

# Runs `segrt ARGS` in a fresh interpreter where importing torch, torchvision or export fails,
# as on a machine with only `pip install segrt`.
RUNTIME_ONLY = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision") or name.startswith("segrt.export"):
            raise ImportError(f"{name} is blocked: the runtime must not need it")
sys.meta_path.insert(0, Block())
from segrt.cli import main
code = main(sys.argv[1:])
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision") or m.startswith("segrt.export"))
assert not leaked, leaked
sys.exit(code)
"""


def segrt(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", RUNTIME_ONLY, *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=300
    )


@pytest.fixture(scope="module")
def rgb_image(tmp_path_factory) -> Path:
    rng = np.random.default_rng(1)
    return write_png(tmp_path_factory.mktemp("img") / "cells.png", rng.integers(0, 255, (96, 120, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def coco_val(tmp_path_factory, rgb_image) -> Path:
    """A one-image COCO instances file (two boxes), with its image folder beside it."""
    root = tmp_path_factory.mktemp("coco")
    (root / "val").mkdir()
    (root / "val" / rgb_image.name).write_bytes(rgb_image.read_bytes())
    anns = [
        {
            "id": i + 1,
            "image_id": 1,
            "category_id": 1,
            "bbox": [x, 10, 30, 30],
            "area": 900,
            "iscrowd": 0,
            "segmentation": [[x, 10, x + 30, 10, x + 30, 40, x, 40]],
        }
        for i, x in enumerate((10, 60))
    ]
    (root / "val.json").write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": rgb_image.name, "height": 96, "width": 120}],
                "annotations": anns,
                "categories": [{"id": 1, "name": "nucleus"}],
            }
        )
    )
    return root / "val.json"


def test_no_sdk_module_imports_torch_or_export():
    """Every segrt module imports, with torch, torchvision and export blocked."""
    modules = sorted(
        ".".join(("segrt", *p.relative_to(ROOT / "sdk").with_suffix("").parts)).removesuffix(".__init__")
        for p in (ROOT / "sdk").rglob("*.py")
        if p.name != "__main__.py"
    )
    code = RUNTIME_ONLY.replace(
        "from segrt.cli import main\ncode = main(sys.argv[1:])",
        "import importlib\nfor m in sys.argv[1:]: importlib.import_module(m)\ncode = 0",
    )
    out = subprocess.run([sys.executable, "-c", code, *modules], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]


def test_help_lists_runtime_verbs_and_each_has_help():
    out = segrt("--help")
    assert out.returncode == 0 and all(v in out.stdout for v in ("predict", "eval", "info"))
    for verb in ("predict", "eval", "info"):
        out = segrt(verb, "--help")
        assert out.returncode == 0 and f"usage: segrt {verb}" in out.stdout
    import re

    choices = re.search(r"--backend \{([^}]*)\}", segrt("eval", "--help").stdout).group(1).split(",")
    assert "onnxruntime" in choices and "auto" in choices and len(choices) == len(set(choices)), choices


@pytest.mark.parametrize("argv", [["train", "unet"], ["bench", "unet", "--runs", "1"], ["demo"]])
def test_missing_extra_names_the_install(argv):
    out = segrt(*argv)
    assert out.returncode == 2 and "pip install 'segrt[train]'" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("kind", ["unet", "maskrcnn"])
def test_info_reads_the_header(kind, tiny_unet, tiny_maskrcnn):
    path = tiny_unet[1] if kind == "unet" else tiny_maskrcnn
    out = segrt("info", path, "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["metadata"]["kind"] == kind and info["format"] == "onnx"
    assert info["inputs"][0]["name"] == "image" and info["outputs"]


def test_predict_and_eval_unet(tiny_unet, tiny_split, tmp_path):
    image = tiny_split / "images" / "img0.png"
    out = segrt("predict", tiny_unet[1], image, "--out", tmp_path / "pred", "--tile", 92, "--batch", 2)
    assert out.returncode == 0, out.stderr
    assert {p.name for p in (tmp_path / "pred").iterdir()} == {
        f"img0_{k}.png" for k in ("classes", "instances", "overlay")
    }
    out = segrt("eval", tiny_unet[1], tiny_split, "--json", tmp_path / "eval.json")
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["images"] == 2 and 0.0 <= report["iou"] <= 1.0


def test_predict_and_eval_maskrcnn(tiny_maskrcnn, rgb_image, coco_val, tmp_path):
    out = segrt("predict", tiny_maskrcnn, rgb_image, "--out", tmp_path / "pred")
    assert out.returncode == 0, out.stderr
    saved = json.loads((tmp_path / "pred" / "cells.json").read_text())
    assert saved["image_size"] == [96, 120] and (tmp_path / "pred" / "cells_overlay.png").is_file()
    out = segrt("eval", tiny_maskrcnn, coco_val)  # used to die with an AttributeError traceback
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["images"] == 1 and {"bbox_AP", "segm_AP"} <= set(report)


@pytest.mark.parametrize("option", ["--tta", "--tile=64"])
def test_unet_options_on_maskrcnn_are_refused_clearly(option, tiny_maskrcnn, rgb_image, tmp_path):
    out = segrt("predict", tiny_maskrcnn, rgb_image, option, "--out", tmp_path)
    assert out.returncode == 2 and "maskrcnn models take no option" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("kind", ["unet", "maskrcnn"])
def test_unwritable_output_is_a_clear_error(kind, tiny_unet, tiny_maskrcnn, rgb_image, tiny_split):
    model = tiny_unet[1] if kind == "unet" else tiny_maskrcnn
    image = next((tiny_split / "images").iterdir()) if kind == "unet" else rgb_image
    out = segrt("predict", model, image, "--out", "/proc/segrt-cannot-write-here")
    assert out.returncode == 2 and "cannot use" in out.stderr and "fix:" in out.stderr
    assert "Traceback" not in out.stderr


def test_missing_model_and_unknown_suffix(tmp_path, rgb_image):
    out = segrt("predict", tmp_path / "missing.onnx", rgb_image)
    assert out.returncode == 2 and "not found" in out.stderr and "fix:" in out.stderr
    out = segrt("info", rgb_image)
    assert out.returncode == 2 and "cannot tell the model format" in out.stderr


def test_backend_and_precision_options(tiny_unet, tiny_split, tmp_path):
    pytest.importorskip("openvino", reason="needs openvino (pip install -e '.[openvino]')")
    image = tiny_split / "images" / "img0.png"
    out = segrt("predict", tiny_unet[1], image, "--out", tmp_path, "--backend", "openvino", "--precision", "bf16")
    assert out.returncode == 0, out.stderr
    out = segrt("predict", tiny_unet[1], image, "--out", tmp_path, "--precision", "bf16")
    assert out.returncode == 2 and "--precision bf16 needs --backend openvino" in out.stderr


def test_predict_unet_to_ome_zarr_and_fail_early(tiny_unet, tmp_path):
    """--format ome-zarr streams the outputs to disk; a bad image anywhere in the list stops the run
    before the first image is computed (nothing written), with a segrt error, not a cv2 traceback."""
    import struct
    import zlib

    tifffile = pytest.importorskip("tifffile", reason="the large extra is not installed")
    pytest.importorskip("ome_zarr", reason="the large extra is not installed")
    image = tmp_path / "slide.tif"
    tifffile.imwrite(image, np.random.default_rng(0).integers(0, 255, (300, 260), dtype=np.uint8), tile=(128, 128))
    body = struct.pack(">IIBBBBB", 100000, 100000, 8, 0, 0, 0, 0)
    liar = tmp_path / "liar.png"
    liar.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", 13)
        + b"IHDR"
        + body
        + struct.pack(">I", zlib.crc32(b"IHDR" + body))
        + struct.pack(">I", 0)
        + b"IEND"
        + struct.pack(">I", zlib.crc32(b"IEND"))
    )
    out = segrt("predict", tiny_unet[1], image, liar, "--out", tmp_path / "bad", "--format", "ome-zarr")
    assert out.returncode == 2 and "Mpixel limit" in out.stderr and "fix:" in out.stderr
    assert "Traceback" not in out.stderr and not list((tmp_path / "bad").iterdir())
    out = segrt("predict", tiny_unet[1], image, "--out", tmp_path / "pred", "--format", "ome-zarr")
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["slide.ome.zarr", "slide_instances.csv"]
