"""The segrt command line: help texts, error reporting, and a small end-to-end run."""
import subprocess
import sys

import pytest

from sdk.cli import build_parser, main


@pytest.mark.parametrize("argv", [[], ["data"], ["train"], ["train", "unet"], ["export"], ["predict"], ["eval"],
                                  ["bench"], ["bench", "unet"], ["demo"]])
def test_every_command_has_help(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv + ["--help"])
    assert exit_info.value.code == 0
    assert "usage: segrt" in capsys.readouterr().out


def test_user_errors_exit_2_with_problem_and_fix(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "missing.onnx"), "x.png"]) == 2
    err = capsys.readouterr().err
    assert "model file not found" in err and "fix:" in err and "Traceback" not in err


def test_sdk_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None\n"
            "import sdk, sdk.unet, sdk.metrics, sdk.cli, sdk.datasets, sdk.backends.onnxrt\n"
            "sdk.cli.build_parser()\nprint('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


def test_train_export_predict_eval_on_real_data(dsb2018, tmp_path, capsys):
    ckpt, onnx_path = tmp_path / "u.pt", tmp_path / "u.onnx"
    assert main(["train", "unet", "--data", str(dsb2018 / "train"), "--out", str(ckpt), "--depth", "3",
                 "--base-channels", "8", "--steps", "30", "--optimizer", "adam", "--lr", "1e-3"]) == 0
    assert main(["export", str(ckpt), "--out", str(onnx_path)]) == 0
    image = next((dsb2018 / "val" / "images").iterdir())
    assert main(["predict", str(onnx_path), str(image), "--out", str(tmp_path / "pred")]) == 0
    assert {p.name for p in (tmp_path / "pred").iterdir()} == {f"{image.stem}_{k}.png" for k in ("classes", "instances", "overlay")}
    assert main(["eval", str(onnx_path), str(dsb2018 / "val"), "--json", str(tmp_path / "eval.json")]) == 0
    assert '"warping_error"' in (tmp_path / "eval.json").read_text()
