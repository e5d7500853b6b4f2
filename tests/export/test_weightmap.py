"""The paper's weight map, on cases computed by hand."""

import math

import numpy as np
import pytest

from segrt.export.weightmap import border_weights, class_balance_weights, weight_map


def two_squares(gap: int) -> np.ndarray:
    labels = np.zeros((20, 30), np.int32)
    labels[5:15, 5:12] = 1
    labels[5:15, 12 + gap : 20 + gap] = 2
    return labels


def test_gap_pixel_weight_matches_formula():
    labels = two_squares(gap=2)
    w = border_weights(labels, w0=10.0, sigma=5.0)
    # column 12 is 1 px from object 1 (column 11) and 2 px from object 2 (column 14): d1 + d2 = 3
    assert w[10, 12] == pytest.approx(10 * math.exp(-((1 + 2) ** 2) / (2 * 25)), rel=1e-5)
    assert w[10, 13] == pytest.approx(w[10, 12], rel=1e-5)  # symmetric
    assert (w[labels > 0] == 0).all()  # objects carry only the class weight


def test_wider_gap_gets_smaller_weight_and_single_object_gets_none():
    assert border_weights(two_squares(2))[10, 12] > border_weights(two_squares(6))[10, 14]
    single = np.zeros((10, 10), np.int32)
    single[2:5, 2:5] = 1
    assert not border_weights(single).any()


def test_class_balance_weights_equalise_total_weight_per_class():
    classes = np.zeros((10, 10), np.int64)
    classes[:2] = 1  # 20 % foreground
    w = class_balance_weights(classes, 2)
    assert w[classes == 1].sum() == pytest.approx(w[classes == 0].sum())
    assert weight_map(two_squares(2)).min() > 0
