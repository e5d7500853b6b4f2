"""int8 export: a valid, self-describing ONNX that stays close to the fp32 model."""

import numpy as np
import pytest

import segrt
from segrt.errors import InputError
from segrt.export.quantize import quantize_int8


def test_int8_model_loads_and_tracks_the_fp32_model(tiny_unet, tmp_path):
    rng = np.random.default_rng(0)
    calibration = [rng.integers(0, 4000, (90, 110)).astype(np.uint16) for _ in range(2)]
    path = quantize_int8(tiny_unet[1], tmp_path / "tiny.int8.onnx", calibration)
    fp32, int8 = segrt.load(tiny_unet[1]), segrt.load(path)
    assert int8.metadata["quantization"]["weights"] == "int8 per-channel"
    assert {k: v for k, v in int8.metadata.items() if k != "quantization"} == fp32.metadata
    image = rng.integers(0, 4000, (70, 95)).astype(np.uint16)  # not a calibration image
    p32, p8 = fp32.predict(image).probs, int8.predict(image).probs
    assert p8.shape == p32.shape
    assert np.abs(p8 - p32).mean() < 0.02 and np.abs(p8 - p32).max() < 0.2


def test_int8_needs_calibration_images(tiny_unet, tmp_path):
    with pytest.raises(InputError, match="calibration"):
        quantize_int8(tiny_unet[1], tmp_path / "x.onnx", [])


def test_calibration_feeds_are_what_predict_feeds(tiny_unet, tiny_maskrcnn):
    """U-Net: the tiles of the 4 rotations of each image, one per feed; Mask R-CNN: the image and its mirror."""
    from segrt.export.quantize import _calibration_feeds
    from segrt.predictor import record_feeds

    rng = np.random.default_rng(1)
    image = rng.integers(0, 4000, (90, 130)).astype(np.uint16)
    feeds = _calibration_feeds(tiny_unet[1], [image], None)
    predictor = segrt.load(tiny_unet[1])
    name = predictor.input_name
    tiles = [
        tile[None]
        for k in range(4)  # the predictor's own tile batches, split into single tiles
        for f in record_feeds(predictor, np.ascontiguousarray(np.rot90(image, k)))
        for tile in f[name]
    ]
    assert len(feeds) == len(tiles) > 4 and all(list(f) == [name] for f in feeds)
    assert all(np.array_equal(f[name], t) for f, t in zip(feeds, tiles, strict=True))
    assert len(_calibration_feeds(tiny_unet[1], [image], 60)) > len(feeds)  # a smaller calibration tile: more feeds

    rgb = rng.integers(0, 255, (100, 120, 3)).astype(np.uint8)
    feeds = _calibration_feeds(tiny_maskrcnn, [rgb], None)
    predictor = segrt.load(tiny_maskrcnn)
    expected = record_feeds(predictor, rgb) + record_feeds(predictor, np.ascontiguousarray(rgb[:, ::-1]))
    assert len(feeds) == len(expected) == 2
    for got, want in zip(feeds, expected, strict=True):
        assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in got)
