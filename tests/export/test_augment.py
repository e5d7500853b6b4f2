"""Augmentation keeps image, target and weights aligned."""

import numpy as np

from segrt.export.augment import augment, elastic_fields


def test_zero_sigma_elastic_field_is_identity():
    mx, my = elastic_fields((7, 9), np.random.default_rng(0), sigma=0.0)
    ys, xs = np.mgrid[0:7, 0:9]
    assert np.array_equal(mx, xs) and np.array_equal(my, ys)


def test_geometry_is_applied_jointly_and_reproducibly():
    rng_img = np.random.default_rng(1)
    classes = (rng_img.random((64, 64)) > 0.5).astype(np.int64)
    # image equal to the target: after a joint warp they must still agree where the warp is not blending
    image = classes[:, :, None].astype(np.float32)
    weights = classes.astype(np.float32) + 1
    a = augment(image, classes, weights, np.random.default_rng(7), elastic_sigma=0.0)
    b = augment(image, classes, weights, np.random.default_rng(7), elastic_sigma=0.0)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    img, cls, w = a
    assert np.array_equal(w, cls + 1)  # weights follow the target exactly
    # intensity changes are monotone: foreground stays brighter than background
    assert img[..., 0][cls == 1].min() > img[..., 0][cls == 0].max()


def test_elastic_warp_moves_pixels_but_keeps_labels_binary():
    classes = np.zeros((64, 64), np.int64)
    classes[20:44, 20:44] = 1
    image = classes[:, :, None].astype(np.float32)
    _, cls, w = augment(image, classes, np.ones((64, 64), np.float32), np.random.default_rng(3), elastic_sigma=10.0)
    assert set(np.unique(cls)) <= {0, 1}
    assert 0.5 * 24 * 24 < cls.sum() < 1.5 * 24 * 24
    assert np.allclose(w, 1.0)
