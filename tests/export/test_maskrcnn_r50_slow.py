"""Random-weight torchvision R50-FPN models export at 800x1344 and run in ONNX Runtime (users' COCO checkpoints)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch", reason="needs torch (pip install -e '.[train]')")

import segrt  # noqa: E402
from segrt.export.maskrcnn.models import MaskRCNNConfig, build_model  # noqa: E402
from segrt.export.maskrcnn.onnx_export import torch_to_onnx  # noqa: E402
from segrt.export.maskrcnn.trt_graph import plugin_nodes, portable_to_tensorrt  # noqa: E402

HW = (800, 1344)


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (600, 1000, 3), dtype=np.uint8)


@pytest.mark.slow
@pytest.mark.parametrize(
    "arch,num_classes,outputs",
    [
        ("maskrcnn_resnet50_fpn", 91, {"masks": (100, 28, 28)}),
        ("keypointrcnn_resnet50_fpn", 2, {"keypoint_heatmaps": (100, 17, 56, 56)}),
    ],
)
def test_r50_exports_and_runs(arch, num_classes, outputs, tmp_path):
    torch.manual_seed(0)
    cfg = MaskRCNNConfig.paper(arch, num_classes)
    model = build_model(cfg).eval()
    names = ["__background__"] + [f"c{i}" for i in range(1, num_classes)]
    # a low threshold so random weights still give detections for the mask / keypoint heads
    path = torch_to_onnx(model, cfg, names, tmp_path / f"{arch}.onnx", HW, score_thresh=0.0)
    runtime = segrt.load(path)
    assert [t.shape for t in runtime.backend.inputs] == [(1, 3, *HW), (2,)]
    feed, _ = runtime.preprocess(_image(1))
    out = runtime.backend.run(feed)
    expected = {"boxes": (100, 4), "scores": (100,), "labels": (100,), "num_detections": (1,), **outputs}
    assert {k: v.shape for k, v in out.items()} == expected
    assert out["labels"].dtype == np.int64 and 0 < int(out["num_detections"][0]) <= 100
    res = runtime.predict(_image(2))
    # boxes are back in original pixels (ratio rescale: float rounding only past the border)
    assert res.boxes.shape[1] == 4 and (res.boxes[:, 2:] <= np.array([1000, 600]) + 1e-3).all()
    if "masks" in outputs:
        assert res.masks.shape == (len(res), 600, 1000) and res.keypoints is None
    else:
        assert res.keypoints.shape == (len(res), 17, 3) and res.masks is None
    trt = onnx.load(str(portable_to_tensorrt(path, tmp_path / "trt.onnx")))
    assert len(plugin_nodes(trt)) == 2
