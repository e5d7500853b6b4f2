"""Overlap-tile: tiles cover every pixel exactly once, with mirrored context at the borders."""
import numpy as np
import pytest

from sdk.backends.base import Backend, TensorInfo
from sdk.tiling import mirror_pad, plan_axis
from sdk.unet import UNetPredictor


class CropBackend(Backend):
    """A stand-in 'network' whose output is its input cropped by ``border``: stitching must rebuild the image."""

    def __init__(self, size_min, size_step, border, tile_size, margin=0):
        self.path = None
        self.metadata = {"kind": "unet", "class_names": ["a"], "input_channels": 1,
                         "normalization": {"mode": "fixed"}, "size_min": size_min, "size_step": size_step,
                         "border": border, "tile_size": tile_size, "margin": margin}
        self.inputs = [TensorInfo("image", (None, 1, None, None), np.dtype(np.float32))]
        self.outputs = [TensorInfo("probs", (None, 1, None, None), np.dtype(np.float32))]
        self.shapes = []

    def run(self, feed):
        x = feed["image"]
        h, w = x.shape[2:]
        assert (h - self.metadata["size_min"]) % self.metadata["size_step"] == 0, "tile is not a valid size"
        assert max(h, w) <= max(self.metadata["tile_size"], self.metadata["size_min"])
        self.shapes.append(x.shape)
        b = self.metadata["border"]
        return {"probs": x[:, :, b:h - b, b:w - b]}


@pytest.mark.parametrize("hw", [(1, 1), (3, 500), (64, 64), (97, 131), (512, 512)])
@pytest.mark.parametrize("geom", [(188, 16, 92, 700), (188, 16, 92, 204), (16, 16, 0, 64)])
def test_stitched_output_equals_input_for_a_cropping_network(hw, geom):
    backend = CropBackend(*geom, margin=8 if geom[2] == 0 else 0)
    image = np.random.default_rng(0).random(hw).astype(np.float32)
    probs = UNetPredictor(backend, batch_size=3).predict_probs(image[:, :, None])
    assert probs.shape == (1,) + hw
    np.testing.assert_array_equal(probs[0], image)


def test_one_tile_for_a_512_image_with_the_paper_net():
    plan = plan_axis(512, 188, 16, 92, max_tile=700)
    assert (plan.count, plan.tile_in, plan.step) == (1, 700, 516)
    small = plan_axis(512, 188, 16, 92, max_tile=572)
    assert small.count == 2 and small.tile_in <= 572 and small.count * small.step >= 512


def test_mirror_pad_reflects_without_repeating_the_edge():
    a = np.arange(4, dtype=np.float32)[None, :, None].repeat(2, axis=0)
    padded = mirror_pad(a, (0, 0), (2, 2))
    assert padded[0, :, 0].tolist() == [2, 1, 0, 1, 2, 3, 2, 1]
    assert mirror_pad(np.ones((1, 1, 1)), (3, 3), (3, 3)).shape == (7, 7, 1)
