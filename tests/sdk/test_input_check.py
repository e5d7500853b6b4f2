"""Both predictors refuse the same bad images with the same InputError (segrt.io.preprocess.check_image)."""
from __future__ import annotations

import numpy as np
import pytest

import segrt
from segrt.errors import InputError
from segrt.predictor import Result

GOOD = np.full((64, 64), 100, np.uint8)
BAD = {
    "nan": (np.full((64, 64), np.nan, np.float32), "NaN or infinite"),
    "inf": (np.full((64, 64, 3), np.inf, np.float32), "NaN or infinite"),
    "bool": (np.ones((64, 64), bool), "dtype bool"),
    "complex": (np.ones((64, 64), np.complex64), "dtype complex64"),
    "object": (np.empty((64, 64), object), "dtype object"),
    "string": (np.full((64, 64), "a"), "dtype <U1"),
    "rank 1": (np.ones(64, np.uint8), "expected [H, W] or [H, W, C]"),
    "rank 4": (np.ones((1, 64, 64, 3), np.uint8), "expected [H, W] or [H, W, C]"),
    "empty": (np.ones((0, 64), np.uint8), "empty"),
    "no channels": (np.ones((64, 64, 0), np.uint8), "empty"),
    "a list": ([[1, 2], [3, 4]], "must be a numpy array"),
}


@pytest.fixture(scope="module", params=["unet", "maskrcnn"])
def predictor(request, tiny_unet, tiny_maskrcnn):
    return segrt.load(tiny_unet[1] if request.param == "unet" else tiny_maskrcnn)


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_image_is_refused_with_the_same_message(predictor, case):
    image, message = BAD[case]
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")) as info:
        predictor.predict(image)
    assert info.value.fix  # every refusal says what to do


def test_good_image_passes_both(predictor):
    result = predictor.predict(GOOD)
    assert isinstance(result, Result) and tuple(result.image_hw) == GOOD.shape
    assert predictor.last_timings["model_ms"] <= predictor.last_timings["total_ms"]


def test_unknown_option_is_refused(predictor):
    with pytest.raises(InputError, match="take no option 'colour'"):
        predictor.predict(GOOD, colour=True)
