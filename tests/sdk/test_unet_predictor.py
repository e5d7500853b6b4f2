"""The segrt U-Net predictor: same answer as eager PyTorch, any image size, clear errors."""

import numpy as np
import onnx
import pytest

import segrt
from segrt.errors import ArtifactError, InputError
from segrt.unet.predictor import UNetPredictor


@pytest.mark.parametrize("hw", [(37, 53), (256, 300)])
def test_predictor_matches_eager_pytorch_through_the_same_tiling(tiny_unet, hw):
    from segrt.export.to_onnx import _WithSoftmax
    from segrt.export.torch_backend import TorchBackend

    model, path = tiny_unet
    predictor = segrt.load(path)
    reference = UNetPredictor(TorchBackend(_WithSoftmax(model), predictor.metadata, ["image"], ["probs"]))
    image = np.random.default_rng(1).integers(0, 4000, hw).astype(np.uint16)
    got, want = predictor.predict(image), reference.predict(image)
    assert got.probs.shape == (2,) + hw and got.classes.shape == hw
    np.testing.assert_allclose(got.probs, want.probs, rtol=1e-3, atol=1e-4)
    assert np.allclose(got.probs.sum(axis=0), 1, atol=1e-5)


def test_tta_is_equivariant_to_rotation(tiny_unet):
    predictor = segrt.load(tiny_unet[1])
    image = np.random.default_rng(2).random((40, 61)).astype(np.float32)
    p = predictor.predict(image, tta=True).probs
    p_rot = predictor.predict(np.rot90(image).copy(), tta=True).probs
    np.testing.assert_allclose(np.rot90(p, axes=(1, 2)), p_rot, rtol=1e-4, atol=1e-5)


def test_instances_are_connected_components_of_the_foreground(tiny_unet):
    predictor = segrt.load(tiny_unet[1])
    classes = np.zeros((10, 10), np.uint8)
    classes[1:3, 1:3] = 1
    classes[6:9, 5:9] = 1
    classes[3, 3] = 1  # diagonal neighbour of the first blob: separate under 4-connectivity
    labels = predictor.instances(classes)
    assert labels.max() == 3 and labels[1, 1] != labels[6, 6]


@pytest.mark.parametrize(
    "image, words",
    [
        (np.zeros((8, 8, 3), np.uint8), "channel"),
        (np.zeros((1, 8, 8, 1), np.uint8), "shape"),
        (np.zeros((0, 8), np.uint8), "empty"),
        (np.full((8, 8), np.nan, np.float32), "NaN"),
        (np.zeros((8, 8), bool), "dtype"),
        ([[1, 2], [3, 4]], "numpy array"),
    ],
)
def test_bad_images_raise_input_errors_that_name_the_problem(tiny_unet, image, words):
    predictor = segrt.load(tiny_unet[1])
    with pytest.raises(InputError, match=words) as info:
        predictor.predict(image)
    assert info.value.fix


def test_artifact_errors(tmp_path, tiny_unet):
    with pytest.raises(ArtifactError, match="not found"):
        segrt.load(tmp_path / "missing.onnx")
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(tiny_unet[1].read_bytes()[:1000])
    with pytest.raises(ArtifactError, match="could not be loaded"):
        segrt.load(truncated)
    bare = onnx.load(str(tiny_unet[1]))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(ArtifactError, match="no segrt metadata"):
        segrt.load(tmp_path / "bare.onnx")
    with pytest.raises(ArtifactError, match="suffix"):
        segrt.load(tmp_path / "model.pth")
