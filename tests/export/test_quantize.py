"""int8 export: a valid, self-describing ONNX that stays close to the fp32 model."""
import numpy as np
import pytest

import sdk
from export.quantize import quantize_int8
from sdk.errors import InputError


def test_int8_model_loads_and_tracks_the_fp32_model(tiny_unet, tmp_path):
    rng = np.random.default_rng(0)
    calibration = [rng.integers(0, 4000, (90, 110)).astype(np.uint16) for _ in range(2)]
    path = quantize_int8(tiny_unet[1], tmp_path / "tiny.int8.onnx", calibration)
    fp32, int8 = sdk.load(tiny_unet[1]), sdk.load(path)
    assert int8.metadata["quantization"]["weights"] == "int8 per-channel"
    assert {k: v for k, v in int8.metadata.items() if k != "quantization"} == fp32.metadata
    image = rng.integers(0, 4000, (70, 95)).astype(np.uint16)  # not a calibration image
    p32, p8 = fp32.predict(image).probs, int8.predict(image).probs
    assert p8.shape == p32.shape
    assert np.abs(p8 - p32).mean() < 0.02 and np.abs(p8 - p32).max() < 0.2


def test_int8_needs_calibration_images(tiny_unet, tmp_path):
    with pytest.raises(InputError, match="calibration"):
        quantize_int8(tiny_unet[1], tmp_path / "x.onnx", [])
