"""U-Net: PyTorch -> self-describing ``.onnx`` (Mask R-CNN's export lives in ``segrt.export.maskrcnn``).

``segrt.export.api`` is the typed entry point for both.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

import segrt
from segrt.artifact import metadata as md
from segrt.errors import ArtifactError
from segrt.export import DEFAULT_OPSET
from segrt.export.models.unet import UNet, UNetConfig, geometry
from segrt.io.files import atomic_path
from segrt.io.preprocess import DEFAULT_NORMALIZATION
from segrt.unet.tiling import smallest_tile


def build_unet(ckpt: dict[str, Any]) -> UNet:
    """Rebuild a U-Net from a checkpoint dict and load its weights (strictly)."""
    try:
        config = UNetConfig(**ckpt["config"])
    except TypeError as exc:
        raise ArtifactError(
            f"checkpoint config does not describe a U-Net: {exc}", "use a checkpoint from `segrt train unet`"
        ) from None
    model = UNet(config)
    missing, unexpected = model.load_state_dict(ckpt["model"], strict=False)
    if missing or unexpected:
        raise ArtifactError(
            f"checkpoint weights do not fit UNet({config}): missing {missing[:4]}, unexpected {unexpected[:4]}",
            "the checkpoint and its config disagree; retrain or re-save it",
        )
    return model.eval()


def same_padding_margin(config: UNetConfig) -> int:
    """Output pixels a tile drops per side so that tiling does not change the result (0 for valid padding).

    A same-padding net zero-pads at every tile edge, which changes every output within its
    receptive radius of that edge. That radius is the border of the valid-padding net of the
    same depth plus half a pooling cell (the pooling phase): dropping that margin makes the
    tiled probabilities equal one pass over the whole mirror-padded image, as for valid
    nets (measured for depths 3-5 in ``tests/segrt/test_tiling.py``; one pixel less leaves
    up to 1e-3). The cost is the same overlap a valid net of that depth has.
    """
    if config.padding == "valid":
        return 0
    return geometry(UNetConfig(depth=config.depth, padding="valid")).border + 2 ** (config.depth - 2)


def unet_metadata(
    config: UNetConfig, class_names: list[str], normalization: dict[str, Any], tile_size: int
) -> dict[str, Any]:
    g = geometry(config)
    margin, grid = same_padding_margin(config), 2 ** (config.depth - 1)
    return {
        "kind": "unet",
        "class_names": list(class_names),
        "input_channels": config.in_channels,
        "normalization": normalization,
        "padding": config.padding,
        "border": g.border,
        "size_min": g.size_min,
        "size_step": g.size_step,
        "tile_size": max(g.valid_at_least(tile_size), smallest_tile(g.size_min, g.size_step, g.border, margin, grid)),
        # tiles start on the pooling grid and drop `margin` output px per side: tiling-invariant results (segrt.unet.tiling)
        "margin": margin,
        "pool_factor": grid,
        "input_name": "image",
        "output_name": "probs",
        "foreground_class": 1,
        "architecture": asdict(config),
        "segrt_version": segrt.__version__,
        "opset": DEFAULT_OPSET,
        "torch_version": torch.__version__,
    }


class _WithSoftmax(torch.nn.Module):
    """The exported graph outputs probabilities, so every backend post-processes alike."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(image), dim=1)


def unet_to_onnx(
    model: UNet,
    out: str | Path,
    class_names: list[str],
    normalization: dict[str, Any] | None = None,
    tile_size: int | None = None,
    opset: int = DEFAULT_OPSET,
    check: bool = True,
) -> Path:
    """Export a U-Net to ONNX with dynamic batch, height and width.

    Input ``image`` float32 [N, C, H, W] (normalized, H and W valid sizes);
    output ``probs`` float32 [N, K, H - 2*border, W - 2*border].
    With ``check``, runs onnx.checker and compares ONNX Runtime with eager
    PyTorch on an input size the export did not trace (rtol 1e-3, atol 1e-4).
    """
    config = model.config
    g = geometry(config)
    tile_size = tile_size or g.valid_at_least(512 + 2 * g.border)
    meta = unet_metadata(config, class_names, normalization or DEFAULT_NORMALIZATION, tile_size)
    meta["opset"] = opset
    wrapped = _WithSoftmax(model).eval()  # eval on the wrapper: export restores its mode recursively
    trace_size = g.valid_at_least(64 + 2 * g.border)
    dummy = torch.randn(1, config.in_channels, trace_size, trace_size)
    with atomic_path(out) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about shape arithmetic are expected here
        torch.onnx.export(
            wrapped,
            (dummy,),
            str(tmp),
            input_names=["image"],
            output_names=["probs"],
            dynamic_axes={
                "image": {0: "batch", 2: "height", 3: "width"},
                "probs": {0: "batch", 2: "out_height", 3: "out_width"},
            },
            opset_version=opset,
            dynamo=False,
        )
        proto = onnx.load(str(tmp))
        onnx.helper.set_model_props(proto, {md.METADATA_KEY: md.encode(meta)})
        proto.doc_string = f"segrt U-Net {config}"
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
        if check:
            check_parity(
                wrapped,
                tmp,
                config.in_channels,
                (g.valid_at_least(trace_size + 3 * g.size_step), g.valid_at_least(trace_size + 1)),
                batch=2,
            )
    return Path(out)


def check_parity(
    model: torch.nn.Module,
    onnx_path: str | Path,
    channels: int,
    hw: tuple[int, int],
    batch: int = 1,
    rtol: float = 1e-3,
    atol: float = 1e-4,
    seed: int = 0,
) -> float:
    """Compare ONNX Runtime with eager PyTorch on a random input; returns max |diff|, raises on mismatch."""
    from segrt.backends.onnxrt import OnnxRuntimeBackend

    x = torch.randn(batch, channels, *hw, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = model(x).numpy()
    backend = OnnxRuntimeBackend(onnx_path, require_metadata=False)
    got = backend.run({backend.inputs[0].name: x.numpy()})[backend.outputs[0].name]
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=rtol, atol=atol):
        diff = np.abs(got - expected).max() if got.shape == expected.shape else float("inf")
        raise ArtifactError(
            f"ONNX Runtime output differs from PyTorch on a {list(x.shape)} input "
            f"(shapes {got.shape} vs {expected.shape}, max |diff| {diff:.3g})",
            "report this as a bug with the checkpoint; try another --opset",
        )
    return float(np.abs(got - expected).max())
