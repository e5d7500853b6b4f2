"""Checks that need neither TensorRT nor a GPU: engine compatibility, input shapes, address alignment."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from segrt.artifact.engine_file import rebuild_command
from segrt.errors import ArtifactError, InputError

# TensorRT requires every I/O tensor address to be aligned to 256 bytes (what cudaMalloc returns);
# a tensor viewed at an offset (x[1:], a slice of a larger buffer) may not be.
TENSOR_ALIGNMENT = 256


def is_aligned(address: int, alignment: int = TENSOR_ALIGNMENT) -> bool:
    """Whether a device address may be handed to ``IExecutionContext.set_tensor_address``."""
    return int(address) % alignment == 0


def check_engine_compatibility(
    meta: Mapping[str, Any],
    *,
    tensorrt_version: str,
    compute_capability: Sequence[int],
    gpu_name: str,
    path: str | Path,
) -> list[str]:
    """Raise ``ArtifactError`` if the engine cannot run here; return warnings for what merely may be slower.

    A TensorRT plan loads only in the TensorRT version that built it and runs only on
    GPUs of the compute capability it was built for. The error names both sides and the
    exact command that rebuilds the engine on this machine.
    """
    eng = meta["engine"]
    cmd = rebuild_command(dict(meta), path)
    built = str(eng["tensorrt_version"])
    if built != str(tensorrt_version):
        raise ArtifactError(
            f"{path} was built with TensorRT {built}, but this machine has TensorRT {tensorrt_version}; "
            "a TensorRT engine loads only in the exact version that built it",
            f"rebuild it here from its ONNX file: {cmd}   (or install TensorRT {built})",
        )
    built_cc = tuple(int(v) for v in eng["compute_capability"])
    here_cc = tuple(int(v) for v in compute_capability)
    if built_cc != here_cc:
        raise ArtifactError(
            f"{path} was built for {eng.get('gpu_name', 'another GPU')} (compute capability "
            f"{built_cc[0]}.{built_cc[1]}), but this GPU is {gpu_name} (compute capability {here_cc[0]}.{here_cc[1]}); "
            "a TensorRT engine runs only on the GPU architecture it was built for",
            f"rebuild it on this GPU from its ONNX file: {cmd}",
        )
    notes = []
    if eng.get("gpu_name") and eng["gpu_name"] != gpu_name:
        notes.append(
            f"{path} was built on {eng['gpu_name']} and runs on {gpu_name}: same compute capability, so it "
            f"works, but its kernels were timed on the other GPU; for best speed rebuild it here: {cmd}"
        )
    return notes


def check_input_shape(
    name: str,
    shape: Sequence[int],
    profile: tuple[Sequence[int], Sequence[int], Sequence[int]],
    size_rule: tuple[int, int] | None = None,
    rebuild_hint: str = "",
) -> None:
    """Reject ``shape`` if it lies outside the engine's profile (or off a U-Net's valid-size grid).

    ``profile`` is (min, opt, max); ``size_rule`` = (size_min, size_step) applies to the
    last two axes (H, W). The error names the allowed range.
    """
    lo, _, hi = profile
    shape = tuple(int(d) for d in shape)
    if len(shape) != len(lo):
        raise InputError(
            f"input {name!r} has shape {list(shape)}, the engine expects rank {len(lo)} "
            f"(between {list(lo)} and {list(hi)})",
            "reshape the input",
        )
    bad = [i for i, (d, a, b) in enumerate(zip(shape, lo, hi, strict=True)) if not a <= d <= b]
    if bad:
        ranges = ", ".join(f"dim {i}: {shape[i]} not in {lo[i]}..{hi[i]}" for i in bad)
        fix = "use inputs within that range (segrt.unet.predictor tiles large images to fit)"
        if rebuild_hint:
            fix += f", or rebuild the engine with a larger profile: {rebuild_hint}"
        raise InputError(
            f"input {name!r} shape {list(shape)} is outside the engine's optimization profile "
            f"(min {list(lo)}, max {list(hi)}; {ranges})",
            fix,
        )
    if size_rule is not None and len(shape) >= 2:
        smin, step = size_rule
        for axis in (len(shape) - 2, len(shape) - 1):
            d = shape[axis]
            if d < smin or (d - smin) % step:
                below = smin + max(0, (d - smin) // step) * step
                raise InputError(
                    f"input {name!r} size {d} on axis {axis} is not a valid U-Net input size "
                    f"(valid: {smin} + k*{step}; nearest: {below}, {below + step})",
                    "pad or crop to a valid size (segrt.unet.predictor does this)",
                )
