"""Same-padding U-Nets: how far tiled probabilities stray from one whole-image pass, against the margin.

    python benchmarks/same_padding_margin.py

Random He-initialised same-padding nets (depth 3-5, 8 channels, no dropout), a 211x197
image, eager PyTorch through the segrt tiler. For each margin (output pixels a tile drops per
side) it prints max |dp| over three tile sizes against one pass over the whole image
mirror-padded by that margin. ``segrt.export.to_onnx.same_padding_margin`` is the last row per depth.
"""

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from segrt.export.models.unet import UNet, UNetConfig, geometry
from segrt.export.to_onnx import _WithSoftmax, same_padding_margin, unet_metadata
from segrt.export.torch_backend import TorchBackend
from segrt.unet.predictor import UNetPredictor

torch.set_num_threads(1)
image = np.random.default_rng(0).random((211, 197)).astype(np.float32)
for depth in (3, 4, 5):
    torch.manual_seed(depth)
    config = UNetConfig(depth=depth, base_channels=8, padding="same", dropout=0)
    model = UNet(config).eval()
    f = 2 ** (depth - 1)
    chosen = same_padding_margin(config)
    for margin in sorted({f // 2, 2 * f, geometry(UNetConfig(depth=depth)).border, chosen - 1, chosen}):
        meta = unet_metadata(config, ["a", "b"], {"mode": "fixed"}, 64)
        meta["margin"] = margin
        predictor = UNetPredictor(TorchBackend(_WithSoftmax(model), meta, ["image"], ["probs"]))
        want = predictor.predict(image, tile=2048, probs="float32").probs  # one tile: the whole image
        worst = 0.0
        for tile in (2 * margin + f, 2 * margin + 3 * f, 2 * margin + 64):
            got = predictor.predict(image, tile=-(-tile // f) * f, probs="float32").probs
            worst = max(worst, float(np.abs(got - want).max()))
        print(
            f"depth {depth}  margin {margin:4d}{' (segrt)' if margin == chosen else '        '}  max|dp| {worst:.1e}",
            flush=True,
        )
