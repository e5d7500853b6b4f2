"""U-Net export: dynamic shapes, embedded metadata, atomic writes, safe checkpoint loading."""

import numpy as np
import onnx
import pytest
import torch

import segrt
from segrt.errors import ArtifactError
from segrt.export.api import export_onnx
from segrt.export.checkpoint import load_checkpoint, save_checkpoint
from segrt.export.models.unet import UNet, UNetConfig, geometry
from segrt.export.to_onnx import _WithSoftmax, check_parity, unet_to_onnx


def test_onnx_matches_eager_at_sizes_the_export_did_not_trace(tiny_unet):
    model, path = tiny_unet
    g = geometry(model.config)
    for hw in [(g.size_min, g.size_min + 5 * g.size_step), (g.size_min + 7 * g.size_step, g.size_min + g.size_step)]:
        assert check_parity(_WithSoftmax(model).eval(), path, 1, hw, batch=3) < 1e-4


def test_metadata_describes_the_model(tiny_unet):
    model, path = tiny_unet
    meta = segrt.open_backend(path).metadata
    g = geometry(model.config)
    assert meta["kind"] == "unet" and meta["class_names"] == ["background", "nucleus"]
    assert (meta["size_min"], meta["size_step"], meta["border"]) == (g.size_min, g.size_step, g.border)
    assert meta["opset"] >= 17 and meta["input_channels"] == 1
    assert onnx.load(str(path)).opset_import[0].version == meta["opset"]


def test_same_padding_export(tmp_path):
    model = UNet(UNetConfig(depth=3, base_channels=4, padding="same")).eval()
    path = unet_to_onnx(model, tmp_path / "same.onnx", ["bg", "fg"])
    predictor = segrt.load(path)
    assert predictor.border == 0 and predictor.margin > 0
    assert predictor.predict(np.random.default_rng(0).random((45, 70), np.float32)).classes.shape == (45, 70)


def test_interrupted_export_leaves_nothing_behind(tmp_path, monkeypatch, tiny_unet):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"previous good file")

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(onnx, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        unet_to_onnx(tiny_unet[0], out, ["a", "b"])
    assert out.read_bytes() == b"previous good file"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_checkpoint_round_trip_and_export(tmp_path, tiny_unet):
    model = tiny_unet[0]
    ckpt = save_checkpoint(tmp_path / "u.pt", "unet", vars(model.config).copy(), ["bg", "fg"], model.state_dict())
    out = export_onnx(ckpt, tmp_path / "u.onnx")
    assert segrt.load(out).class_names == ["bg", "fg"]


def test_bad_checkpoints_give_clear_errors(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x80\x04not a checkpoint")
    with pytest.raises(ArtifactError, match="not a readable checkpoint"):
        load_checkpoint(garbage)
    with pytest.raises(ArtifactError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
    # weights_only=True refuses arbitrary objects instead of executing their pickle code
    torch.save({"kind": "unet", "config": {}, "model": {}, "evil": np.random.default_rng()}, tmp_path / "obj.pt")
    with pytest.raises(ArtifactError):
        load_checkpoint(tmp_path / "obj.pt")
    torch.save(
        {"kind": "unet", "config": {"depth": 3, "base_channels": 4}, "model": {}, "class_names": ["a"]},
        tmp_path / "empty.pt",
    )
    with pytest.raises(ArtifactError, match="do not fit"):
        export_onnx(tmp_path / "empty.pt", tmp_path / "x.onnx")
