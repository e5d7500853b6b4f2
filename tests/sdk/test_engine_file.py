"""The segrt engine-file header: documented layout, round trip, and every way a file can be damaged."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import struct

import numpy as np
import pytest

from segrt.artifact import engine_file as ef
from segrt.artifact import metadata as md
from segrt.errors import ArtifactError


def engine_meta(**engine_extra) -> dict:
    eng = {
        "tensorrt_version": "10.8.0.43",
        "compute_capability": [8, 9],
        "gpu_name": "NVIDIA L4",
        "precision": "fp16",
        "profile": {"image": [[1, 1, 188, 188], [4, 1, 572, 572], [4, 1, 572, 572]]},
        "plugin": None,
        "build": {
            "onnx": "models/unet.onnx",
            "engine": "models/unet.engine",
            "precision": "fp16",
            "workspace_gib": 2.0,
            "max_batch": 4,
            "max_size": 572,
            "timing_cache": "trt.cache",
        },
    }
    eng.update(engine_extra)
    return {
        "format_version": md.FORMAT_VERSION,
        "kind": "unet",
        "class_names": ["background", "cell"],
        "input_channels": 1,
        "normalization": {"scale": 1 / 255, "mean": [0.5], "std": [0.25]},
        "padding": "valid",
        "size_min": 188,
        "size_step": 16,
        "border": 92,
        "tile_size": 572,
        "engine": eng,
    }


@pytest.fixture
def plan() -> bytes:
    return np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()


def test_round_trip_returns_the_same_metadata_and_plan(tmp_path, plan):
    meta = engine_meta()
    path = ef.write_engine_file(tmp_path / "m.engine", meta, plan)
    got_meta, got_plan = ef.read_engine_file(path)
    assert got_meta == meta
    assert bytes(got_plan) == plan
    assert ef.read_engine_metadata(path) == meta


def test_layout_matches_the_documented_header(tmp_path, plan):
    """Parse the file by hand from the docstring's table, not with the module's own reader."""
    meta = engine_meta()
    path = ef.write_engine_file(tmp_path / "m.engine", meta, plan)
    data = path.read_bytes()
    assert data[:8] == b"SEGRTENG"
    version, n, m = struct.unpack("<IIQ", data[8:24])
    assert version == 1
    assert m == len(plan)
    assert len(data) == 56 + n + m
    meta_bytes = data[56 : 56 + n]
    assert json.loads(meta_bytes.decode("utf-8")) == meta
    assert data[56 + n :] == plan
    assert data[24:56] == hashlib.sha256(meta_bytes + plan).digest()


@pytest.mark.parametrize("keep", [0, 5, 8, 30, 55, 56, 100, -1000, -1])
def test_truncated_file_is_reported_as_truncated(tmp_path, plan, keep):
    data = ef.encode_engine_file(engine_meta(), plan)
    cut = data[:keep] if keep >= 0 else data[: len(data) + keep]
    path = tmp_path / "cut.engine"
    path.write_bytes(cut)
    with pytest.raises(ArtifactError, match="truncated") as info:
        ef.read_engine_file(path)
    assert "rebuild" in info.value.fix
    if keep > 56:  # the metadata-only reader must notice too (it checks the size against the header)
        with pytest.raises(ArtifactError, match="truncated"):
            ef.read_engine_metadata(path)


def test_trailing_bytes_are_rejected(tmp_path, plan):
    path = tmp_path / "long.engine"
    path.write_bytes(ef.encode_engine_file(engine_meta(), plan) + b"\0\0\0")
    with pytest.raises(ArtifactError, match="3 unexpected bytes"):
        ef.read_engine_file(path)


@pytest.mark.parametrize("where", ["plan", "metadata"])
def test_a_flipped_byte_fails_the_checksum(tmp_path, plan, where):
    data = bytearray(ef.encode_engine_file(engine_meta(), plan))
    n = struct.unpack("<I", data[12:16])[0]
    pos = 56 + n + 1234 if where == "plan" else 56 + n // 2
    data[pos] ^= 0x01
    path = tmp_path / "flip.engine"
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        ef.read_engine_file(path)


def test_a_raw_tensorrt_plan_is_named_and_the_wrap_command_given(tmp_path, plan):
    path = tmp_path / "raw.plan"
    path.write_bytes(plan)
    with pytest.raises(ArtifactError, match="not a segrt engine file") as info:
        ef.read_engine_file(path)
    assert "--wrap-plan" in info.value.fix


def test_newer_header_version_asks_for_an_upgrade(tmp_path, plan):
    data = bytearray(ef.encode_engine_file(engine_meta(), plan))
    data[8:12] = struct.pack("<I", 99)
    path = tmp_path / "new.engine"
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="header version 99") as info:
        ef.read_engine_file(path)
    assert "upgrade segrt" in info.value.fix


def test_missing_file_says_how_to_build_one(tmp_path):
    with pytest.raises(ArtifactError, match="not found") as info:
        ef.read_engine_file(tmp_path / "nope.engine")
    assert "segrt.export.to_engine" in info.value.fix


@pytest.mark.parametrize("drop", ["tensorrt_version", "compute_capability", "precision"])
def test_engine_metadata_must_say_where_it_runs(drop, plan):
    meta = engine_meta()
    del meta["engine"][drop]
    with pytest.raises(ArtifactError, match=drop):
        ef.encode_engine_file(meta, plan)


def test_an_empty_plan_is_not_written(tmp_path):
    with pytest.raises(ArtifactError, match="empty"):
        ef.write_engine_file(tmp_path / "e.engine", engine_meta(), b"")
    assert not (tmp_path / "e.engine").exists()


def test_interrupted_write_leaves_the_previous_file_and_no_partial_one(tmp_path, plan, monkeypatch):
    path = tmp_path / "m.engine"
    ef.write_engine_file(path, engine_meta(), plan)
    before = path.read_bytes()

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ef.write_engine_file(path, engine_meta(precision="fp32"), plan[::-1])
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.engine"]


def test_rebuild_command_reproduces_the_build_arguments():
    cmd = shlex.split(ef.rebuild_command(engine_meta(), "here/unet.engine"))
    assert cmd[:6] == ["python", "-m", "segrt.export.to_engine", "models/unet.onnx", "-o", "here/unet.engine"]
    args = dict(zip(cmd[6::2], cmd[7::2], strict=True))
    assert args == {
        "--precision": "fp16",
        "--workspace-gib": "2.0",
        "--max-batch": "4",
        "--max-size": "572",
        "--timing-cache": "trt.cache",
    }


def test_rebuild_command_carries_an_explicit_profile():
    meta = engine_meta()
    meta["engine"]["build"]["profile"] = {"image": [[1, 1, 188, 188], [2, 1, 380, 380], [2, 1, 572, 572]]}
    cmd = shlex.split(ef.rebuild_command(meta))
    assert cmd[cmd.index("--profile") + 1] == "image:1x1x188x188:2x1x380x380:2x1x572x572"
