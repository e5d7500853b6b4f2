"""Tiny test models and data, shared by the main test session (tests/conftest.py fixtures) and
the installed-wheel stage of ``.ci/run``, whose fresh environment has no torch to make them.

``python tests/wheel/make_models.py OUT_DIR`` (run with the development environment, which has
torch) writes into OUT_DIR:

* ``unet.onnx``: a random-weight valid-padding U-Net (depth 3, 8 base channels, 124-pixel tiles);
* ``maskrcnn.onnx``: a random-weight ResNet-18-FPN Mask R-CNN, portable 128x128 graph;
* ``split/``: a synthetic image/label folder (two 150x170 uint16 images of bright discs);
* ``image.png``: a 90x110 uint8 image for the Mask R-CNN;
* ``expected.npz`` and ``expected_eval.json``: what this checkout's runtime predicts on them,
  which the installed wheel must reproduce.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


def tiny_unet(out: Path) -> tuple[Any, Path]:
    """A small He-initialised valid-padding U-Net and its ONNX export ``out``: (torch model, path)."""
    import torch

    from segrt.export.models.unet import UNet, UNetConfig
    from segrt.export.to_onnx import unet_to_onnx

    torch.manual_seed(0)
    model = UNet(UNetConfig(depth=3, base_channels=8)).eval()
    return model, unet_to_onnx(model, out, ["background", "nucleus"], tile_size=124)


def tiny_maskrcnn(out: Path) -> Path:
    """A random-weight resnet18-FPN Mask R-CNN exported as a portable 128x128 ONNX graph at ``out``."""
    import torch

    from segrt.export.api import export_maskrcnn
    from segrt.export.maskrcnn.models import MaskRCNNConfig, build_model

    torch.manual_seed(0)
    cfg = MaskRCNNConfig(min_size=128, max_size=128)
    ckpt = {
        "kind": "maskrcnn",
        "config": dataclasses.asdict(cfg),
        "class_names": ["__background__", "nucleus"],
        "model": build_model(cfg).state_dict(),
        "extra": {},
    }
    return export_maskrcnn(ckpt, out, input_hw=(128, 128))


def tiny_split(root: Path) -> Path:
    """A synthetic image/label split folder ``root`` (images/, labels/): two 150x170 uint16 images of discs."""
    import cv2

    from segrt.io.images import write_png

    rng = np.random.default_rng(0)
    for i in range(2):
        labels = np.zeros((150, 170), np.uint16)
        for k in range(1, 7):
            cv2.circle(
                labels, (int(rng.integers(15, 155)), int(rng.integers(15, 135))), int(rng.integers(5, 12)), k, -1
            )
        image = (labels > 0) * 3000 + rng.integers(0, 400, labels.shape)
        write_png(root / "images" / f"img{i}.png", image.astype(np.uint16))
        write_png(root / "labels" / f"img{i}.png", labels)
    return root


def rcnn_image() -> np.ndarray:
    """uint8 [90, 110]: bright discs on noise (the Mask R-CNN resizes it to its 128x128 input)."""
    import cv2

    rng = np.random.default_rng(1)
    image = rng.integers(0, 60, (90, 110)).astype(np.uint8)
    for _ in range(5):
        cv2.circle(image, (int(rng.integers(10, 100)), int(rng.integers(10, 80))), int(rng.integers(5, 15)), 220, -1)
    return image


def main(out: Path) -> None:
    """Write the models, data and this checkout's predictions on them into ``out``."""
    import segrt
    from segrt.io.images import read_image, write_png

    out.mkdir(parents=True, exist_ok=True)
    unet = tiny_unet(out / "unet.onnx")[1]
    maskrcnn = tiny_maskrcnn(out / "maskrcnn.onnx")
    split = tiny_split(out / "split")
    write_png(out / "image.png", rcnn_image())
    u = segrt.load(unet).predict(read_image(split / "images" / "img0.png"))
    m = segrt.load(maskrcnn).predict(read_image(out / "image.png"))
    np.savez(
        out / "expected.npz",
        unet_probs=u.probs,
        unet_classes=u.classes,
        unet_instances=u.instances,
        rcnn_boxes=m.boxes,
        rcnn_scores=m.scores,
        rcnn_labels=m.labels,
    )
    (out / "expected_eval.json").write_text(json.dumps(segrt.load(unet).evaluate(split), indent=2) + "\n")
    print(f"wrote {', '.join(sorted(p.name for p in out.iterdir()))} to {out}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/wheel/make_models.py OUT_DIR")
    main(Path(sys.argv[1]))
