"""The training side's `segrt` verbs (data, train, export) and the typed export API behind them."""

from __future__ import annotations

import dataclasses
import json

import pytest

torch = pytest.importorskip("torch", reason="needs torch (pip install -e '.[train]')")

from segrt.artifact.formats import FORMATS  # noqa: E402
from segrt.cli import build_parser, main  # noqa: E402
from segrt.export.api import EXPORTERS, EngineOptions  # noqa: E402


@pytest.mark.parametrize(
    "argv",
    [
        ["data"],
        ["train"],
        ["train", "unet"],
        ["train", "maskrcnn"],
        ["export"],
        ["bench"],
        ["bench", "unet"],
        ["bench", "maskrcnn"],
        ["demo"],
    ],
)
def test_every_training_verb_has_help(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv + ["--help"])
    assert exit_info.value.code == 0
    assert "usage: segrt" in capsys.readouterr().out


def test_export_side_knows_every_artifact_format():
    assert set(EXPORTERS) == {f.name for f in FORMATS}


def test_segrt_export_reaches_every_engine_option():
    export = build_parser()._subparsers._group_actions[0].choices["export"]  # type: ignore[union-attr]
    dests = {a.dest for a in export._actions}
    fields = {f.name for f in dataclasses.fields(EngineOptions)} - {"plugin_dirs"}
    assert fields <= dests and "plugin_dir" in dests
    assert export.get_default("precision") == EngineOptions().precision  # one default precision


@pytest.mark.parametrize("model", ["unet", "maskrcnn"])
def test_training_options_share_names_and_units(model):
    parser = build_parser()._subparsers._group_actions[0].choices["train"]  # type: ignore[union-attr]
    sub = parser._subparsers._group_actions[0].choices[model]  # type: ignore[union-attr]
    dests = {a.dest for a in sub._actions}
    assert {"data", "out", "steps", "minutes", "batch_size", "lr", "seed", "threads"} <= dests


def test_train_export_predict_eval_on_real_data(dsb2018, tmp_path, capsys):
    ckpt, onnx_path = tmp_path / "u.pt", tmp_path / "u.onnx"
    assert (
        main(
            [
                "train",
                "unet",
                "--data",
                str(dsb2018 / "train"),
                "--out",
                str(ckpt),
                "--depth",
                "3",
                "--base-channels",
                "8",
                "--steps",
                "30",
                "--optimizer",
                "adam",
                "--lr",
                "1e-3",
            ]
        )
        == 0
    )
    assert main(["export", str(ckpt), "--out", str(onnx_path)]) == 0
    image = next((dsb2018 / "val" / "images").iterdir())
    assert main(["predict", str(onnx_path), str(image), "--out", str(tmp_path / "pred")]) == 0
    assert {p.name for p in (tmp_path / "pred").iterdir()} == {
        f"{image.stem}_{k}.png" for k in ("classes", "instances", "overlay")
    }
    assert main(["eval", str(onnx_path), str(dsb2018 / "val"), "--json", str(tmp_path / "eval.json")]) == 0
    assert "warping_error" in json.loads((tmp_path / "eval.json").read_text())


def test_export_of_a_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert main(["export", str(tmp_path / "missing.pt")]) == 2
    err = capsys.readouterr().err
    assert "checkpoint not found" in err and "fix:" in err and "Traceback" not in err


def test_train_export_eval_maskrcnn_through_the_cli(tiny_split, tmp_path, capsys):
    """`segrt train maskrcnn` / `export` / `eval` on a tiny COCO set (two steps: the plumbing, not the accuracy)."""
    import shutil

    from segrt.export.maskrcnn.coco import demo_coco

    for split in ("train", "val"):
        shutil.copytree(tiny_split, tmp_path / split)
    coco = demo_coco(tmp_path)
    ckpt, onnx_path = tmp_path / "m.pt", tmp_path / "m.onnx"
    assert (
        main(
            [
                "train",
                "maskrcnn",
                "--data",
                str(coco / "train.json"),
                "--out",
                str(ckpt),
                "--steps",
                "2",
                "--batch-size",
                "1",
                "--crop",
                "128",
                "--min-size",
                "128",
                "--max-size",
                "192",
            ]
        )
        == 0
    )
    assert main(["export", str(ckpt), "--out", str(onnx_path), "--input-size", "192", "192"]) == 0
    capsys.readouterr()
    assert main(["info", str(onnx_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metadata"]["input_size"] == [192, 192]
    assert main(["eval", str(onnx_path), str(coco / "val.json")]) == 0
    assert '"bbox_AP"' in capsys.readouterr().out
