"""The segrt engine file: a TensorRT plan behind a small header that carries the metadata.

A bare TensorRT plan says nothing about the model (classes, normalization, tile
geometry) nor about where it may run. segrt therefore writes ``.engine`` files
as a fixed 56-byte preamble, the metadata JSON, then the plan bytes, unchanged::

    offset  size  field
    0       8     magic            b"SEGRTENG"
    8       4     header_version   uint32, little-endian (this module writes 1)
    12      4     metadata_length  uint32, N = bytes of UTF-8 JSON
    16      8     engine_length    uint64, M = bytes of the TensorRT plan
    24      32    sha256           SHA-256 of (metadata JSON bytes + plan bytes)
    56      N     metadata         UTF-8 JSON object (see below)
    56+N    M     plan             what IBuilder.build_serialized_network returned

The file is exactly ``56 + N + M`` bytes: a shorter file is truncated, a longer
one has trailing garbage, and a checksum mismatch means the bytes changed after
writing. Every such case raises ``ArtifactError`` naming the cause and the fix.

The metadata is the ONNX model's segrt metadata (``segrt.artifact.metadata``: ``kind``,
``class_names``, ``normalization``, ...) with one more key, ``engine``::

    tensorrt_version    str, trt.__version__ of the builder ("10.8.0.43"); plans only
                        load in the same TensorRT version
    compute_capability  [major, minor] of the GPU it was built on; plans only run there
    gpu_name            str, e.g. "NVIDIA H100 80GB HBM3"
    precision           "fp32" | "fp16"
    fp16_mode           "builder_flag" (TensorRT 10, weakly typed) | "fp16_onnx" (strongly typed)
    profile             {input name: [[min shape], [opt shape], [max shape]]}
    plugin              {"library", "version", "namespace", "ops"} or null
    built_at            ISO-8601 UTC time; build_seconds: float
    build               the onnx_to_engine arguments, so the exact rebuild command can be printed

Reading needs only the standard library: ``segrt info`` and the tests use it
on machines without TensorRT.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import struct
from pathlib import Path
from typing import Any

from segrt.artifact import metadata as md
from segrt.errors import ArtifactError
from segrt.io.files import atomic_path

MAGIC = b"SEGRTENG"
HEADER_VERSION = 1
_PREAMBLE = struct.Struct("<8sIIQ32s")  # magic, header_version, metadata_length, engine_length, sha256
PREAMBLE_SIZE = _PREAMBLE.size  # 56
ENGINE_KEYS = ("tensorrt_version", "compute_capability", "precision")
_MAX_METADATA = 16 * 2**20  # a metadata block larger than this is corruption, not metadata


def _checksum(meta_bytes: bytes, plan: bytes | memoryview) -> bytes:
    h = hashlib.sha256()
    h.update(meta_bytes)
    h.update(plan)
    return h.digest()


def encode_engine_file(metadata: dict[str, Any], plan: bytes | memoryview) -> bytes:
    """Return the bytes of an engine file holding ``metadata`` and the TensorRT ``plan``.

    ``metadata`` must pass ``segrt.artifact.metadata.validate`` and have an ``engine`` dict
    with at least ``tensorrt_version``, ``compute_capability`` and ``precision``.
    """
    _validate_engine_metadata(metadata, "metadata being written")
    meta_bytes = json.dumps(metadata, sort_keys=True).encode("utf-8")
    plan = memoryview(plan).cast("B")
    if len(plan) == 0:
        raise ArtifactError("the TensorRT plan to write is empty", "the engine build failed; see the build log")
    pre = _PREAMBLE.pack(MAGIC, HEADER_VERSION, len(meta_bytes), len(plan), _checksum(meta_bytes, plan))
    return pre + meta_bytes + plan.tobytes()


def write_engine_file(path: str | Path, metadata: dict[str, Any], plan: bytes | memoryview) -> Path:
    """Write an engine file atomically (temp file + rename): an interrupted write leaves no partial file."""
    data = encode_engine_file(metadata, plan)
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return path


def _parse_preamble(pre: bytes, source: str, file_size: int) -> tuple[int, int, bytes]:
    if len(pre) < PREAMBLE_SIZE and MAGIC.startswith(pre[: len(MAGIC)]):
        raise ArtifactError(
            f"{source} is truncated: {file_size} bytes, shorter than the {PREAMBLE_SIZE}-byte header",
            "the file was cut off while copying or writing; copy it again or rebuild the engine",
        )
    if pre[: len(MAGIC)] != MAGIC:
        raise ArtifactError(
            f"{source} is not a segrt engine file (it does not start with {MAGIC!r}; first bytes: {pre[:8]!r})",
            "build engines with `python -m segrt.export.to_engine model.onnx` (or `segrt export --format engine`); "
            "a raw TensorRT plan from trtexec can be wrapped with "
            "`python -m segrt.export.to_engine model.onnx --wrap-plan model.plan -o model.engine`",
        )
    _, version, meta_len, plan_len, digest = _PREAMBLE.unpack(pre)
    if version > HEADER_VERSION:
        raise ArtifactError(
            f"{source} has engine header version {version}; this segrt reads up to {HEADER_VERSION}",
            "upgrade segrt (pip install -U segrt), or rebuild the engine with this segrt",
        )
    if version < 1:
        raise ArtifactError(
            f"{source} has an invalid engine header version {version}", "the file is corrupt; rebuild the engine"
        )
    if meta_len > _MAX_METADATA:
        raise ArtifactError(
            f"{source}: header claims {meta_len} bytes of metadata, which is not plausible",
            "the file is corrupt; rebuild the engine",
        )
    expected = PREAMBLE_SIZE + meta_len + plan_len
    if file_size < expected:
        raise ArtifactError(
            f"{source} is truncated: {file_size} bytes, the header announces {expected} "
            f"({meta_len} of metadata + {plan_len} of TensorRT plan)",
            "the file was cut off while copying or writing; copy it again or rebuild the engine",
        )
    if file_size > expected:
        raise ArtifactError(
            f"{source} has {file_size - expected} unexpected bytes after the TensorRT plan "
            f"(file {file_size} bytes, header announces {expected})",
            "the file is corrupt or was appended to; copy it again or rebuild the engine",
        )
    return meta_len, plan_len, digest


def _decode_metadata(meta_bytes: bytes, source: str) -> dict[str, Any]:
    try:
        text = meta_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise ArtifactError(
            f"{source}: the engine metadata is not UTF-8 text", "the file is corrupt; rebuild the engine"
        ) from None
    meta = md.decode(text, source)
    _validate_engine_metadata(meta, source)
    return meta


def _validate_engine_metadata(meta: Any, source: str) -> None:
    md.validate(meta, source)
    eng = meta.get("engine")
    if not isinstance(eng, dict):
        raise ArtifactError(
            f"{source}: segrt engine metadata lacks the 'engine' section",
            "rebuild the engine with `python -m segrt.export.to_engine`",
        )
    missing = [k for k in ENGINE_KEYS if k not in eng]
    if missing:
        raise ArtifactError(
            f"{source}: engine metadata lacks {', '.join(missing)}",
            "rebuild the engine with `python -m segrt.export.to_engine`",
        )


def decode_engine_file(data: bytes | memoryview, source: str = "<bytes>") -> tuple[dict[str, Any], memoryview]:
    """Split engine-file bytes into (metadata, plan), checking size and checksum.

    The plan is returned as a zero-copy ``memoryview`` into ``data``.
    """
    view = memoryview(data).cast("B")
    meta_len, _plan_len, digest = _parse_preamble(bytes(view[:PREAMBLE_SIZE]), source, len(view))
    meta_bytes = bytes(view[PREAMBLE_SIZE : PREAMBLE_SIZE + meta_len])
    plan = view[PREAMBLE_SIZE + meta_len :]
    if _checksum(meta_bytes, plan) != digest:
        raise ArtifactError(
            f"{source}: checksum mismatch, the engine file was modified or damaged after it was written",
            "copy it again from the original, or rebuild the engine",
        )
    return _decode_metadata(meta_bytes, source), plan


def read_engine_file(path: str | Path) -> tuple[dict[str, Any], memoryview]:
    """Read and verify an engine file: returns (metadata, TensorRT plan bytes)."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(
            f"engine file not found: {path}",
            "check the path, or build one with `python -m segrt.export.to_engine model.onnx`",
        )
    return decode_engine_file(path.read_bytes(), str(path))


def read_engine_metadata(path: str | Path) -> dict[str, Any]:
    """Read only the metadata of an engine file (no checksum over the plan: fast for large engines).

    The file size is still checked against the header, so truncation is detected.
    """
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(
            f"engine file not found: {path}",
            "check the path, or build one with `python -m segrt.export.to_engine model.onnx`",
        )
    size = path.stat().st_size
    with open(path, "rb") as f:
        meta_len, _, _ = _parse_preamble(f.read(PREAMBLE_SIZE), str(path), size)
        return _decode_metadata(f.read(meta_len), str(path))


def profile_arg(name: str, triple: Any) -> str:
    """``name:MIN:OPT:MAX`` (shapes as ``1x1x188x188``), the ``--profile`` form of ``segrt.export.to_engine``."""
    return ":".join([name] + ["x".join(str(int(d)) for d in shape) for shape in triple])


def rebuild_command(meta: dict[str, Any], engine_path: str | Path | None = None) -> str:
    """The exact command that rebuilds this engine from its ONNX file on the current machine."""
    eng = meta.get("engine") or {}
    build = eng.get("build") or {}
    onnx = build.get("onnx") or eng.get("source_onnx") or "model.onnx"
    out = str(engine_path or build.get("engine") or Path(onnx).with_suffix(".engine"))
    cmd = [
        "python",
        "-m",
        "segrt.export.to_engine",
        str(onnx),
        "-o",
        out,
        "--precision",
        str(build.get("precision") or eng.get("precision", "fp32")),
    ]
    for key, flag in (
        ("workspace_gib", "--workspace-gib"),
        ("max_batch", "--max-batch"),
        ("opt_batch", "--opt-batch"),
        ("max_size", "--max-size"),
        ("min_size", "--min-size"),
        ("timing_cache", "--timing-cache"),
    ):
        if build.get(key) is not None:
            cmd += [flag, str(build[key])]
    for name, triple in (build.get("profile") or {}).items():
        cmd += ["--profile", profile_arg(name, triple)]
    return shlex.join(cmd)
