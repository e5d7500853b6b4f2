"""Artifact metadata is validated against segrt.artifact.metadata.SCHEMA on load: tampered files are refused by name."""

from __future__ import annotations

import json

import onnx
import pytest

import segrt
from segrt.artifact import metadata as md
from segrt.artifact.info import describe
from segrt.errors import ArtifactError

# (what is changed, the key the error must name)
UNET_TAMPERING = {
    "size_step 0": ({"size_step": 0}, "'size_step' is 0"),
    "tile_size -1": ({"tile_size": -1}, "'tile_size' is -1"),
    "tile off the size grid": ({"tile_size": 125}, "tile_size 125 is not a valid input size"),
    "no classes": ({"class_names": []}, "'class_names' is []"),
    "classes not strings": ({"class_names": [0, 1]}, "'class_names' is [0, 1]"),
    "channels as text": ({"input_channels": "1"}, "'input_channels' is \"1\""),
    "channels bool": ({"input_channels": True}, "'input_channels' is true"),
    "padding": ({"padding": "reflect"}, "'padding' is \"reflect\""),
    "negative border": ({"border": -2}, "'border' is -2"),
    "percentile range": ({"normalization": {"mode": "percentile", "low": 99, "high": 1}}, "'normalization'"),
    "zero std": ({"normalization": {"mode": "fixed", "std": 0}}, "'normalization'"),
    "foreground class": ({"foreground_class": 5}, "foreground_class 5 has no entry"),
    "unknown kind": ({"kind": "yolo"}, "'kind' is \"yolo\""),
    "missing key": ({"size_min": None}, "'size_min' is missing"),
    "newer format": ({"format_version": 99}, "newer than this runtime"),
}
MASKRCNN_TAMPERING = {
    "input size rank": ({"input_size": [128]}, "'input_size' is [128]"),
    "input size zero": ({"input_size": [0, 128]}, "'input_size' is [0, 128]"),
    "input dtype": ({"input_dtype": "float16"}, "'input_dtype' is \"float16\""),
    "resize order": ({"resize": {"min_size": 512, "max_size": 256}}, "'resize'"),
    "keypoints without count": ({"kind": "keypointrcnn"}, "'num_keypoints' is missing"),
}


def _tampered(path, tmp_path, change):
    proto = onnx.load(str(path))
    entry = next(p for p in proto.metadata_props if p.key == md.METADATA_KEY)
    meta = json.loads(entry.value)
    for key, value in change.items():
        if value is None:
            meta.pop(key)
        else:
            meta[key] = value
    entry.value = json.dumps(meta)
    out = tmp_path / "tampered.onnx"
    onnx.save(proto, str(out))
    return out


@pytest.mark.parametrize("case", sorted(UNET_TAMPERING))
def test_tampered_unet_metadata_is_refused(case, tiny_unet, tmp_path):
    change, message = UNET_TAMPERING[case]
    path = _tampered(tiny_unet[1], tmp_path, change)
    with pytest.raises(ArtifactError, match=message.replace("[", r"\[").replace("]", r"\]")) as info:
        segrt.load(path)
    assert "re-export" in info.value.fix or "upgrade" in info.value.fix
    # `segrt info` still shows a damaged file, and says what is wrong with it
    assert describe(path)["metadata_error"] == info.value.problem


@pytest.mark.parametrize("case", sorted(MASKRCNN_TAMPERING))
def test_tampered_maskrcnn_metadata_is_refused(case, tiny_maskrcnn, tmp_path):
    change, message = MASKRCNN_TAMPERING[case]
    with pytest.raises(ArtifactError, match=message.replace("[", r"\[").replace("]", r"\]")):
        segrt.load(_tampered(tiny_maskrcnn, tmp_path, change))


def test_every_problem_is_named_at_once(tiny_unet, tmp_path):
    path = _tampered(tiny_unet[1], tmp_path, {"size_step": 0, "class_names": [], "padding": None})
    with pytest.raises(ArtifactError) as info:
        segrt.load(path)
    assert all(k in info.value.problem for k in ("'size_step' is 0", "'class_names' is []", "'padding' is missing"))


def test_untampered_artifacts_load(tiny_unet, tiny_maskrcnn):
    assert segrt.load(tiny_unet[1]).kind == "unet"
    assert segrt.load(tiny_maskrcnn).kind == "maskrcnn"
