"""Overlap-tile: tiles cover every pixel exactly once, start on the pooling grid, and do not change the result."""

import numpy as np
import pytest

from segrt.backends.base import Backend, TensorInfo
from segrt.errors import InputError
from segrt.unet.predictor import UNetPredictor
from segrt.unet.tiling import mirror_pad, plan_axis, pool_factor, reflect_indices, smallest_tile


class CropBackend(Backend):
    """A stand-in 'network' whose output is its input cropped by ``border``: stitching must rebuild the image."""

    def __init__(self, size_min, size_step, border, tile_size, margin=0):
        self.path = None
        self.metadata = {
            "kind": "unet",
            "class_names": ["a"],
            "input_channels": 1,
            "normalization": {"mode": "fixed"},
            "size_min": size_min,
            "size_step": size_step,
            "border": border,
            "tile_size": tile_size,
            "margin": margin,
        }
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
        return {"probs": x[:, :, b : h - b, b : w - b]}


@pytest.mark.parametrize("hw", [(1, 1), (3, 500), (64, 64), (97, 131), (512, 512)])
@pytest.mark.parametrize("geom", [(188, 16, 92, 700), (188, 16, 92, 204), (16, 16, 0, 64)])
def test_stitched_output_equals_input_for_a_cropping_network(hw, geom):
    backend = CropBackend(*geom, margin=8 if geom[2] == 0 else 0)
    image = np.random.default_rng(0).random(hw).astype(np.float32)
    probs = UNetPredictor(backend, batch_size=3).predict_probs(image[:, :, None])
    assert probs.shape == (1,) + hw
    np.testing.assert_array_equal(probs[0], image)
    assert all(s[0] <= 3 for s in backend.shapes), "a backend call got more tiles than the batch size"


def test_one_tile_for_a_512_image_with_the_paper_net():
    plan = plan_axis(512, 188, 16, 92, max_tile=700)
    assert (plan.count, plan.tile_in, plan.step) == (1, 700, 512)
    small = plan_axis(512, 188, 16, 92, max_tile=572)
    assert small.count == 2 and small.tile_in <= 572 and small.count * small.step >= 512


@pytest.mark.parametrize("length", [1, 7, 100, 333, 517, 2049])
@pytest.mark.parametrize("geom", [(188, 16, 92, 0), (44, 4, 20, 0), (92, 8, 44, 0), (16, 16, 0, 100), (4, 4, 0, 22)])
def test_every_tile_starts_on_the_pooling_grid_and_the_tiles_cover_the_axis(length, geom):
    size_min, step, border, margin = geom
    low = smallest_tile(size_min, step, border, margin, step)
    for max_tile in (low, low + step, low + 5 * step + 3, 4096):
        plan = plan_axis(length, size_min, step, border, max_tile, margin)
        padded_starts = [plan.in_start(i) + plan.context for i in range(plan.count)]
        assert all(s % step == 0 for s in padded_starts)
        assert plan.step % step == 0 and (plan.tile_in - size_min) % step == 0 and plan.tile_in <= max(max_tile, low)
        assert plan.tile_in - 2 * border - margin >= plan.step  # the kept output exists
        assert sum(plan.out_len(i) for i in range(plan.count)) == length and plan.out_len(plan.count - 1) > 0


def test_too_small_a_tile_is_an_input_error_naming_the_smallest():
    with pytest.raises(InputError, match="at least 204") as info:
        plan_axis(300, 188, 16, 92, max_tile=190)
    assert info.value.fix


def test_pool_factor_of_old_artifacts_is_derived():
    assert pool_factor({"pool_factor": 8, "size_step": 8}) == 8
    assert pool_factor({"architecture": {"depth": 5}, "size_step": 16}) == 16
    assert pool_factor({"size_step": 4}) == 4


@pytest.mark.parametrize("n", [1, 2, 5])
def test_reflect_indices_match_numpy_reflect_padding_even_for_pads_wider_than_the_axis(n):
    a = np.arange(n)
    want = np.pad(a, (13, 17), mode="reflect") if n > 1 else np.pad(a, (13, 17), mode="edge")
    np.testing.assert_array_equal(a[reflect_indices(-13, n + 17, n)], want)


def test_mirror_pad_reflects_without_repeating_the_edge():
    a = np.arange(4, dtype=np.float32)[None, :, None].repeat(2, axis=0)
    padded = mirror_pad(a, (0, 0), (2, 2))
    assert padded[0, :, 0].tolist() == [2, 1, 0, 1, 2, 3, 2, 1]
    assert mirror_pad(np.ones((1, 1, 1)), (3, 3), (3, 3)).shape == (7, 7, 1)
    # a 1-pixel axis repeats while the other axis still mirrors
    assert mirror_pad(np.arange(3.0)[None, :, None], (1, 1), (1, 1))[:, :, 0].tolist() == [[1, 0, 1, 2, 1]] * 3


# -- tile invariance with real networks -------------------------------------------------------------------
def _net(depth, padding, tmp_path):
    """A random He-initialised U-Net (4 channels at level 1, no dropout), its ONNX export and metadata."""
    import torch

    from segrt.export.models.unet import UNet, UNetConfig
    from segrt.export.to_onnx import unet_to_onnx

    torch.manual_seed(depth)
    model = UNet(UNetConfig(depth=depth, base_channels=4, padding=padding, dropout=0.0)).eval()
    path = unet_to_onnx(model, tmp_path / f"unet{depth}{padding}.onnx", ["bg", "fg"], tile_size=64, check=False)
    return model, path


def _one_pass(model, meta, image):
    """Probabilities of one pass over the whole mirror-padded image (no tiling): the reference."""
    import torch

    from segrt.io.preprocess import normalize
    from segrt.unet.tiling import valid_size

    x = normalize(image[:, :, None], meta["normalization"])
    context = meta["border"] + meta["margin"]
    size = [valid_size(n + 2 * context, meta["size_min"], meta["size_step"]) for n in image.shape]
    padded = mirror_pad(x, (context, size[0] - image.shape[0] - context), (context, size[1] - image.shape[1] - context))
    with torch.inference_mode():
        logits = model(torch.from_numpy(np.ascontiguousarray(padded.transpose(2, 0, 1)[None])))
    p = torch.softmax(logits, 1)[0].numpy()
    m = meta["margin"]
    return p[:, m : m + image.shape[0], m : m + image.shape[1]]


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("depth", [3, 4, 5])
def test_tiled_probabilities_equal_one_pass_for_every_tile_size(tmp_path, depth, padding):
    """The guarantee of segrt.unet.tiling: ORT and eager PyTorch, through the same tiler, for several tile sizes."""
    import segrt
    from segrt.export.to_onnx import _WithSoftmax
    from segrt.export.torch_backend import TorchBackend

    model, path = _net(depth, padding, tmp_path)
    ort = segrt.load(path, threads=1)
    meta = ort.backend.metadata
    assert meta["pool_factor"] == 2 ** (depth - 1)
    eager = UNetPredictor(TorchBackend(_WithSoftmax(model), meta, ["image"], ["probs"]))
    image = np.random.default_rng(depth).integers(0, 4000, (37, 53)).astype(np.uint16)  # odd sizes
    want = _one_pass(model, meta, image)
    f = meta["pool_factor"]
    low = smallest_tile(meta["size_min"], meta["size_step"], meta["border"], meta["margin"], f)
    tiles = [low, low + f, low + 8 * f]  # from many tiles per axis to one
    counts = set()
    for predictor in (ort, eager):
        for tile in tiles:
            got = predictor.predict(image, tile=tile, batch=8, probs="float32").probs
            assert got.shape == want.shape
            assert np.abs(got - want).max() <= 1e-5, (type(predictor.backend).__name__, tile)
            plan = plan_axis(53, meta["size_min"], meta["size_step"], meta["border"], tile, meta["margin"], f)
            counts.add((plan.count, plan.step))
    assert len(counts) == 3 and max(c for c, _ in counts) > 1  # the tile sizes really cut the image differently


def test_artifacts_without_pool_factor_and_with_a_small_same_margin_still_predict(tmp_path):
    """Older artifacts: no pool_factor key (derived) and the old same-padding margin (size_step // 2)."""
    from segrt.export.to_onnx import _WithSoftmax
    from segrt.export.torch_backend import TorchBackend

    model, path = _net(3, "same", tmp_path)
    import segrt

    meta = dict(segrt.load(path).backend.metadata)
    del meta["pool_factor"]
    meta["margin"] = meta["size_step"] // 2
    predictor = UNetPredictor(TorchBackend(_WithSoftmax(model), meta, ["image"], ["probs"]))
    result = predictor.predict(np.random.default_rng(0).random((50, 70)).astype(np.float32), tile=24)
    assert result.probs.shape == (2, 50, 70) and np.allclose(result.probs.sum(0), 1, atol=1e-5)
