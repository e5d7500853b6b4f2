"""ONNX -> TensorRT engine: ``onnx_to_engine(model.onnx) -> model.engine``.

The engine file is a TensorRT plan behind segrt's header (``segrt.artifact.engine_file``),
carrying the ONNX metadata plus where and how it was built, so ``segrt.load`` needs
nothing but the file. Steps:

1. read the ONNX metadata; compute the optimization profile from it
   (``engine_profile_from_metadata``: a U-Net gets min/opt/max H and W on its
   valid-size grid, Mask R-CNN its fixed export size);
2. load the segrt plugin library (``segrt.ops.plugins``) before parsing when the graph
   uses the RoIAlign plugin, and check its creators are registered;
3. parse with ``trt.OnnxParser``; a failure names the node, its op and TensorRT's reason;
4. build with a workspace limit and a timing cache file that is reused and updated;
5. write header + plan atomically (an interrupted build leaves no partial engine).

Precision: ``fp32`` (TF32 allowed, TensorRT's default) or ``fp16``. TensorRT 10
builds fp16 with ``BuilderFlag.FP16`` (weak typing, what ``trtexec --fp16`` does);
TensorRT 11 only builds strongly typed networks, so there the ONNX graph itself is
converted to fp16 first (inputs/outputs stay float32; ops that need fp32 such as
NonMaxSuppression, TopK, RoiAlign and the segrt plugins stay fp32).
int8 is deliberately not offered: done properly it needs calibration on real
images (or QAT) and an accuracy check, which segrt does not implement.

Command line (the exact command the runtime prints when an engine must be rebuilt)::

    python -m segrt.export.to_engine unet.onnx -o unet.engine --precision fp16 --timing-cache trt.cache
    python -m segrt.export.to_engine unet.onnx --print-trtexec      # the equivalent trtexec command
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import shlex
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from segrt.artifact import metadata as md
from segrt.artifact.engine_file import rebuild_command, write_engine_file
from segrt.backends.tensorrt import import_tensorrt, load_engine_plugins, make_error_recorder, process_logger
from segrt.errors import ArtifactError, BackendUnavailableError, InputError
from segrt.io.files import atomic_path

Shape = tuple[int, ...]
Profile = tuple[Shape, Shape, Shape]  # (min, opt, max)

PRECISIONS = ("fp32", "fp16")
DEFAULT_WORKSPACE_GIB = 4.0
DEFAULT_UNET_MAX_BATCH = 4  # = segrt.unet.predictor.UNetPredictor's default batch_size
# ops onnxconverter-common must leave in fp32 besides its own default list: the segrt plugins
# (their fp16 path is separate) and ops whose fp16 versions lose detections
FP32_OPS = ("NonMaxSuppression", "TopK", "RoiAlign", "Resize", "SegrtRoiAlign", "SegrtMultiLevelRoiAlign")


# --------------------------------------------------------------------------- profiles (pure)


def snap_down(size: int, size_min: int, size_step: int) -> int:
    """Largest valid size ``size_min + k*size_step`` that is <= ``size`` (InputError if none)."""
    if size < size_min:
        raise InputError(
            f"size {size} is below the smallest valid size {size_min}",
            f"use a size of at least {size_min} (valid sizes: {size_min} + k*{size_step})",
        )
    return size_min + (size - size_min) // size_step * size_step


def snap_up(size: int, size_min: int, size_step: int) -> int:
    """Smallest valid size ``size_min + k*size_step`` that is >= ``size``."""
    k = max(0, -(-(size - size_min) // size_step))
    return size_min + k * size_step


def _is_valid(size: int, size_min: int, size_step: int) -> bool:
    return size >= size_min and (size - size_min) % size_step == 0


def onnx_input_shapes(model: Any) -> dict[str, tuple[int | None, ...]]:
    """Graph inputs (not initializers) of an ``onnx.ModelProto``: name -> shape, None for dynamic dims."""
    inits = {i.name for i in model.graph.initializer}
    shapes: dict[str, tuple[int | None, ...]] = {}
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        dims = inp.type.tensor_type.shape.dim
        shapes[inp.name] = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims)
    return shapes


def engine_profile_from_metadata(
    meta: Mapping[str, Any],
    *,
    input_shapes: Mapping[str, Sequence[int | None]] | None = None,
    max_size: int | None = None,
    min_size: int | None = None,
    max_batch: int | None = None,
    opt_batch: int | None = None,
) -> dict[str, Profile]:
    """Optimization profile (min, opt, max shapes) per network input, from segrt metadata.

    U-Net (``kind`` "unet"): input ``meta["input_name"]`` [N, C, H, W]; H and W range over
    valid sizes ``size_min + k*size_step``: min ``min_size`` (default ``size_min``),
    opt ``tile_size``, max ``max_size`` (default ``tile_size``, what ``segrt.unet.predictor`` feeds);
    sizes given off the grid are snapped inwards (min up, max down). N ranges over
    1..``max_batch`` (default 4, the predictor's batch) with opt ``opt_batch`` (default max_batch).

    Mask R-CNN / Keypoint R-CNN: the export size ``meta["input_size"]`` = [H, W] is fixed;
    a dynamic batch dimension gets 1..``max_batch`` (default 1).

    Args:
        meta: decoded segrt metadata (``segrt.artifact.metadata``).
        input_shapes: the ONNX graph inputs (``onnx_input_shapes``), None marking a dynamic
            dim. Fixed dims are kept as they are; without it the documented layout is assumed.
    Returns:
        ``{input name: ((min shape), (opt shape), (max shape))}`` for every input.
    """
    kind = meta.get("kind")
    channels = int(meta["input_channels"])
    if kind == "unet":
        name = meta.get("input_name", "image")
        try:
            smin, step = int(meta["size_min"]), int(meta["size_step"])
        except KeyError as exc:
            raise ArtifactError(
                f"U-Net metadata lacks {exc.args[0]!r} (the valid input-size rule)",
                "re-export the model with `segrt export` (segrt.export.to_onnx)",
            ) from None
        tile = int(meta.get("tile_size", smin))
        if not _is_valid(tile, smin, step):
            raise ArtifactError(
                f"U-Net metadata tile_size {tile} is not a valid input size ({smin} + k*{step})",
                "re-export the model with `segrt export`",
            )
        lo = smin if min_size is None else snap_up(int(min_size), smin, step)
        hi = tile if max_size is None else snap_down(int(max_size), smin, step)
        if hi < lo:
            raise InputError(
                f"profile max size {hi} is below its min size {lo}",
                f"pass max_size >= min_size (valid sizes: {smin} + k*{step})",
            )
        opt = min(max(tile, lo), hi)
        mb = int(max_batch or DEFAULT_UNET_MAX_BATCH)
        spatial = (lo, opt, hi)
        default_layout: tuple[int | None, ...] = (None, channels, None, None)
    elif kind in ("maskrcnn", "keypointrcnn"):
        try:
            h, w = (int(v) for v in meta["input_size"])
        except (KeyError, TypeError, ValueError):
            raise ArtifactError(
                f"{kind} metadata lacks input_size [H, W] (the fixed export size)",
                "re-export the model with `segrt export`",
            ) from None
        name = meta.get("input_name", "image")
        mb = int(max_batch or 1)
        spatial = None
        default_layout = (1, channels, h, w)
    else:
        raise ArtifactError(
            f"no engine profile rule for model kind {kind!r}", "pass profile=(min, opt, max) explicitly"
        )
    ob = int(opt_batch or mb)
    if not 1 <= ob <= mb:
        raise InputError(f"opt_batch {ob} must lie in 1..max_batch ({mb})", "pass 1 <= opt_batch <= max_batch")

    shapes = dict(input_shapes) if input_shapes is not None else {name: default_layout}
    if name not in shapes:
        if len(shapes) == 1 and "input_name" not in meta:
            name = next(iter(shapes))
        else:
            raise ArtifactError(
                f"the metadata names input {name!r} but the ONNX graph has {sorted(shapes)}",
                "re-export the model with `segrt export`",
            )
    profiles: dict[str, Profile] = {}
    for tensor, dims in shapes.items():
        dims = tuple(dims)
        if tensor != name:
            if any(d is None for d in dims):
                raise ArtifactError(
                    f"ONNX input {tensor!r} has dynamic dims {list(dims)} that segrt has no range for",
                    "pass profile={name: (min, opt, max)} for it",
                )
            profiles[tensor] = (dims, dims, dims)  # type: ignore[assignment]
            continue
        if kind == "unet" and len(dims) != 4:
            raise ArtifactError(
                f"U-Net input {tensor!r} has rank {len(dims)}, expected 4 [N, C, H, W]",
                "re-export the model with `segrt export`",
            )
        if kind != "unet" and len(dims) not in (3, 4):
            raise ArtifactError(
                f"{kind} input {tensor!r} has rank {len(dims)}, expected [C, H, W] or [N, C, H, W]",
                "re-export the model with `segrt export`",
            )
        batch_axis = 0 if len(dims) == 4 else None
        c_axis = len(dims) - 3
        mins, opts, maxs = [], [], []
        for axis, d in enumerate(dims):
            if axis == c_axis and d is not None and d != channels:
                raise ArtifactError(
                    f"input {tensor!r} has {d} channels but the metadata says {channels}",
                    "re-export the model with `segrt export`",
                )
            if d is not None:
                rng = (d, d, d)
            elif axis == batch_axis:
                rng = (1, ob, mb)
            elif axis == c_axis:
                rng = (channels,) * 3
            elif spatial is not None:
                rng = spatial
            else:  # R-CNN spatial dim left dynamic: the fixed export size
                size = default_layout[axis - c_axis + 1]
                rng = (size, size, size)  # type: ignore[assignment]
            if kind == "unet" and axis > c_axis and d is not None and not _is_valid(d, smin, step):
                raise ArtifactError(
                    f"U-Net input {tensor!r} is fixed to size {d}, not a valid size ({smin} + k*{step})",
                    "re-export the model with `segrt export`",
                )
            mins.append(rng[0])
            opts.append(rng[1])
            maxs.append(rng[2])
        profiles[tensor] = (tuple(mins), tuple(opts), tuple(maxs))
    return profiles


def normalize_profile(profile: Any, input_names: Sequence[str]) -> dict[str, Profile]:
    """Accept ``{name: (min, opt, max)}`` or a bare ``(min, opt, max)`` for a one-input model; validate it."""
    if isinstance(profile, Mapping):
        items = dict(profile)
    else:
        if len(input_names) != 1:
            raise InputError(
                f"a bare (min, opt, max) profile is ambiguous for inputs {list(input_names)}",
                "pass profile={input name: (min, opt, max)}",
            )
        items = {input_names[0]: profile}
    out: dict[str, Profile] = {}
    for name, triple in items.items():
        try:
            lo, opt, hi = (tuple(int(v) for v in shape) for shape in triple)
        except (TypeError, ValueError):
            raise InputError(
                f"profile for {name!r} must be three shapes (min, opt, max), got {triple!r}",
                "e.g. profile={'image': ((1,1,188,188), (4,1,572,572), (4,1,572,572))}",
            ) from None
        if not len(lo) == len(opt) == len(hi):
            raise InputError(
                f"profile shapes for {name!r} have different ranks: {lo}, {opt}, {hi}",
                "give min, opt and max with one entry per dimension",
            )
        if any(not (a <= b <= c) for a, b, c in zip(lo, opt, hi, strict=True)) or min(lo, default=1) < 1:
            raise InputError(
                f"profile for {name!r} must satisfy 1 <= min <= opt <= max per dimension: {lo}, {opt}, {hi}",
                "fix the shapes",
            )
        out[name] = (lo, opt, hi)
    return out


def check_profile_against_inputs(
    profiles: Mapping[str, Profile], input_shapes: Mapping[str, Sequence[int | None]]
) -> None:
    """Every dynamic input needs a profile; fixed dims must match it exactly."""
    for name, dims in input_shapes.items():
        if name not in profiles:
            if any(d is None for d in dims):
                raise InputError(
                    f"input {name!r} has dynamic dims {list(dims)} but no profile", f"add {name!r} to the profile"
                )
            continue
        for shape in profiles[name]:
            if len(shape) != len(dims) or any(d is not None and d != s for d, s in zip(dims, shape, strict=True)):
                raise InputError(
                    f"profile shape {list(shape)} does not fit input {name!r} of shape "
                    f"{['?' if d is None else d for d in dims]}",
                    "fix the profile",
                )
    unknown = set(profiles) - set(input_shapes)
    if unknown:
        raise InputError(
            f"profile names unknown input(s) {sorted(unknown)}; the model has {sorted(input_shapes)}",
            "use the model's input names",
        )


def parse_profile_arg(text: str) -> tuple[str, Profile]:
    """Parse the CLI form ``name:MIN:OPT:MAX`` with shapes like ``1x1x188x188``."""
    parts = text.rsplit(":", 3)
    try:
        if len(parts) != 4 or not parts[0]:
            raise ValueError
        name, shapes = parts[0], tuple(tuple(int(d) for d in part.split("x")) for part in parts[1:])
    except ValueError:
        raise InputError(
            f"cannot read profile {text!r}", "write NAME:MIN:OPT:MAX, e.g. image:1x1x188x188:4x1x572x572:4x1x572x572"
        ) from None
    return name, shapes  # type: ignore[return-value]


# --------------------------------------------------------------------------- trtexec equivalent (pure)


def _shape_spec(profiles: Mapping[str, Profile], which: int) -> str:
    return ",".join(f"{name}:{'x'.join(str(d) for d in prof[which])}" for name, prof in profiles.items())


def trtexec_command(
    onnx_path: str | Path,
    engine_path: str | Path,
    profiles: Mapping[str, Profile],
    *,
    precision: str = "fp32",
    workspace_gib: float = DEFAULT_WORKSPACE_GIB,
    timing_cache: str | Path | None = None,
    plugin_library: str | Path | None = None,
    tensorrt_major: int = 10,
    fp16_onnx: str | Path | None = None,
) -> list[str]:
    """The ``trtexec`` command that builds the same engine as ``onnx_to_engine`` (for cross-checking).

    trtexec writes a bare plan (no segrt header): wrap it with
    ``python -m segrt.export.to_engine model.onnx --wrap-plan model.plan -o model.engine``.
    For ``fp16`` with TensorRT >= 11 (strongly typed only: no ``--fp16``, the precision is the
    ONNX's), the command builds from ``fp16_onnx``, the converted ONNX that
    ``convert_to_fp16`` / ``--save-fp16-onnx`` writes; without it there is no fp16 command
    (``InputError``), since the fp32 ONNX would build an fp32 engine.
    The plugin library is given with ``--dynamicPlugins`` (TensorRT's ``loadLibrary``, which
    registers the library's ``getCreators()``; the library does not register itself on load).
    """
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}", f"use one of {PRECISIONS}")
    source = onnx_path
    if precision == "fp16" and tensorrt_major >= 11:
        if fp16_onnx is None:
            raise InputError(
                f"TensorRT {tensorrt_major}'s trtexec has no --fp16: it builds the precision the ONNX "
                f"carries, so {onnx_path} would give an fp32 engine",
                "convert it first: python -m segrt.export.to_engine MODEL.onnx --print-trtexec "
                "--precision fp16 --save-fp16-onnx MODEL.fp16.onnx (writes it and prints the command)",
            )
        source = fp16_onnx
    cmd = ["trtexec", f"--onnx={source}", f"--saveEngine={engine_path}"]
    dynamic = {n: p for n, p in profiles.items() if p[0] != p[2]}
    if dynamic:
        cmd += [
            f"--minShapes={_shape_spec(profiles, 0)}",
            f"--optShapes={_shape_spec(profiles, 1)}",
            f"--maxShapes={_shape_spec(profiles, 2)}",
        ]
    cmd.append(f"--memPoolSize=workspace:{int(round(workspace_gib * 1024))}M")
    if precision == "fp16" and tensorrt_major < 11:
        cmd.append("--fp16")
    if timing_cache:
        cmd.append(f"--timingCacheFile={timing_cache}")
    if plugin_library:
        cmd.append(f"--dynamicPlugins={plugin_library}")
    cmd.append("--skipInference")
    return cmd


# --------------------------------------------------------------------------- parser errors (pure)


def format_parser_errors(
    errors: Iterable[Any], plugin_ops: Sequence[str] = (), plugin_loaded: bool = False
) -> tuple[str, str]:
    """(problem, fix) from ``trt.OnnxParser`` errors (objects with ``node()``, ``node_name()``,
    ``node_operator()``, ``desc()``), naming the failing node and its op."""
    lines, ops = [], []
    for err in errors:
        node, name, op = err.node(), err.node_name(), err.node_operator()
        where = f"node #{node} {name!r} (op {op})" if node >= 0 else "the model"
        lines.append(f"{where}: {str(err.desc()).strip()}")
        if op:
            ops.append(op)
    problem = "TensorRT's ONNX parser failed at " + "; ".join(lines or ["an unknown place (no error recorded)"])
    plugin_hit = [op for op in ops if op in plugin_ops]
    if plugin_hit and not plugin_loaded:
        fix = (
            f"{', '.join(sorted(set(plugin_hit)))} is a segrt TensorRT plugin op: build the plugin library "
            "(kernels/roi_align) and put it where segrt.ops.plugins finds it (e.g. next to the model; "
            "`python -c 'import segrt.ops.plugins as p; p.find_plugin_library()'` lists the places searched), then rebuild"
        )
    elif plugin_hit:
        fix = (
            "the segrt plugin library is loaded but did not accept this node: its attributes or version do not "
            "match the library; rebuild the library from this segrt version and re-export the ONNX"
        )
    else:
        fix = (
            "this op or attribute is not supported by this TensorRT version: export the model with "
            "graph='tensorrt' (Mask R-CNN) or another opset, or upgrade TensorRT"
        )
    return problem, fix


# --------------------------------------------------------------------------- fp16 ONNX (TensorRT 11)


def convert_to_fp16(model: Any, keep_fp32_ops: Sequence[str] = ()) -> Any:
    """fp16 copy of an ONNX model for strongly typed TensorRT builds (float32 inputs/outputs kept).

    Uses onnxconverter-common (Microsoft's maintained converter); ops in ``FP32_OPS``,
    its default block list and ``keep_fp32_ops`` stay float32 behind Cast nodes.
    """
    try:
        from onnxconverter_common import float16
    except ImportError:
        raise BackendUnavailableError(
            "fp16 engines with TensorRT >= 11 need the ONNX graph converted to fp16, which uses onnxconverter-common",
            "pip install onnxconverter-common",
        ) from None
    block = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(FP32_OPS) | set(keep_fp32_ops))
    # max_finite_val 65504: clamp constants only at fp16's real limit, not the converter's conservative 1e4
    return float16.convert_float_to_float16(
        model, keep_io_types=True, op_block_list=block, min_positive_val=1e-7, max_finite_val=65504.0
    )


# --------------------------------------------------------------------------- TensorRT glue


def load_segrt_plugins(
    trt: Any, meta: Mapping[str, Any], extra_dirs: Sequence[str | Path] = ()
) -> dict[str, Any] | None:
    """Load the plugin library the ONNX metadata asks for (before parsing); return the record for the engine."""
    plugin = meta.get("plugin")
    if not plugin:
        return None
    library = load_engine_plugins(trt, plugin, extra_dirs)
    return {
        "library": library.name if library else plugin.get("library"),
        "version": str(plugin.get("version", "1")),
        "namespace": str(plugin.get("namespace", "")),
        "ops": list(plugin.get("ops", ())),
    }


def _read_onnx(onnx_path: Path):
    import onnx

    if not onnx_path.is_file():
        raise ArtifactError(f"ONNX file not found: {onnx_path}", "export one with `segrt export` first")
    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends
        raise ArtifactError(
            f"{onnx_path} is not a readable ONNX model ({exc})", "re-export it with `segrt export`"
        ) from None
    props = {p.key: p.value for p in model.metadata_props}
    meta = md.decode(props.get(md.METADATA_KEY), str(onnx_path))
    return model, meta


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _load_timing_cache(trt: Any, config: Any, path: Path | None) -> Any:
    """Create the builder's timing cache from ``path`` (if it exists and fits this TensorRT/GPU)."""
    data = path.read_bytes() if path is not None and path.is_file() else b""
    cache = None
    if data:
        try:
            cache = config.create_timing_cache(data)
        except Exception:  # a cache from another TensorRT version may be rejected with an exception
            cache = None
    if data and cache is None:
        print(f"[segrt] timing cache {path} is from another TensorRT version; starting a new one", file=sys.stderr)
    if cache is None:
        cache = config.create_timing_cache(b"")
    if not config.set_timing_cache(cache, False):  # False: refuse a cache timed on another GPU
        print(f"[segrt] timing cache {path} was made on another GPU; starting a new one", file=sys.stderr)
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
    return cache


def onnx_to_engine(
    onnx_path: str | Path,
    engine_path: str | Path | None = None,
    *,
    precision: str = "fp32",
    workspace_gib: float = DEFAULT_WORKSPACE_GIB,
    timing_cache: str | Path | None = None,
    profile: Any = None,
    max_batch: int | None = None,
    max_size: int | None = None,
    min_size: int | None = None,
    opt_batch: int | None = None,
    fp16_mode: str = "auto",
    save_fp16_onnx: str | Path | None = None,
    device: int = 0,
    plugin_dirs: Sequence[str | Path] = (),
    verbose: bool = False,
) -> Path:
    """Build a TensorRT engine from a segrt ONNX file; returns the engine path.

    Args:
        onnx_path: ``.onnx`` written by ``segrt export`` (carries segrt metadata).
        engine_path: output (default: ``onnx_path`` with suffix ``.engine``).
        precision: "fp32" (TF32 allowed) or "fp16". No int8 (see module docstring).
        workspace_gib: limit of TensorRT's scratch memory pool, GiB.
        timing_cache: file of measured kernel timings; read if present, written back after
            the build (atomically), so rebuilds on the same GPU/TensorRT take seconds.
        profile: override ``{input: (min, opt, max)}``, or a bare triple for one-input models.
        max_batch, max_size, min_size, opt_batch: passed to ``engine_profile_from_metadata``.
        fp16_mode: "auto" (TensorRT 10: ``BuilderFlag.FP16``; TensorRT 11: fp16 ONNX),
            "builder_flag" or "fp16_onnx".
        save_fp16_onnx: also write the converted fp16 ONNX there (for ``trtexec`` on TensorRT 11).
        device: GPU index to build for (the engine runs only on GPUs of its compute capability).
        plugin_dirs: extra folders to search for ``libsegrt_trt_plugins.so``.
        verbose: print TensorRT's verbose log.
    """
    if precision not in PRECISIONS:
        raise InputError(
            f"unknown precision {precision!r}", f"use one of {', '.join(PRECISIONS)} (int8 is not supported)"
        )
    if fp16_mode not in ("auto", "builder_flag", "fp16_onnx"):
        raise InputError(f"unknown fp16_mode {fp16_mode!r}", "use 'auto', 'builder_flag' or 'fp16_onnx'")
    if not workspace_gib > 0:
        raise InputError(f"workspace_gib must be > 0, got {workspace_gib}", "pass e.g. workspace_gib=4")
    onnx_path = Path(onnx_path)
    engine_path = Path(engine_path) if engine_path is not None else onnx_path.with_suffix(".engine")
    timing_cache = Path(timing_cache) if timing_cache is not None else None

    model, meta = _read_onnx(onnx_path)  # before importing TensorRT: bad input fails fast everywhere
    input_shapes = onnx_input_shapes(model)
    profiles = (
        normalize_profile(profile, list(input_shapes))
        if profile is not None
        else engine_profile_from_metadata(
            meta,
            input_shapes=input_shapes,
            max_size=max_size,
            min_size=min_size,
            max_batch=max_batch,
            opt_batch=opt_batch,
        )
    )
    check_profile_against_inputs(profiles, input_shapes)

    trt = import_tensorrt()
    from segrt.backends import cuda_rt

    gpu = cuda_rt.device_info(device)
    cuda_rt.set_device(device)
    logger = process_logger(trt, verbose)  # TensorRT keeps one logger per process (segrt.backends.tensorrt.api)
    recorder = make_error_recorder(trt, onnx_path.name)  # this build's errors, named after its model
    plugin = load_segrt_plugins(trt, meta, extra_dirs=[onnx_path.parent, *plugin_dirs])

    trt_major = int(trt.__version__.split(".")[0])
    has_fp16_flag = hasattr(trt.BuilderFlag, "FP16")
    if precision == "fp16":
        if fp16_mode == "auto":
            fp16_mode = "builder_flag" if has_fp16_flag else "fp16_onnx"
        if fp16_mode == "builder_flag" and not has_fp16_flag:
            raise InputError(
                f"TensorRT {trt.__version__} has no BuilderFlag.FP16 (strongly typed networks only)",
                "use fp16_mode='fp16_onnx' (or 'auto')",
            )
    else:
        fp16_mode = None  # type: ignore[assignment]

    builder = trt.Builder(logger)
    builder.error_recorder = recorder
    flags = 0
    if fp16_mode == "fp16_onnx" and trt_major < 11:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)  # TensorRT 11: always strongly typed
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if fp16_mode == "fp16_onnx":
        import onnx

        full = onnx.load(str(onnx_path))  # with external weights, for conversion
        fp16_model = convert_to_fp16(full, keep_fp32_ops=(plugin or {}).get("ops", ()))
        if save_fp16_onnx is not None:
            with atomic_path(save_fp16_onnx) as tmp:
                onnx.save(fp16_model, str(tmp))
        ok = parser.parse(fp16_model.SerializeToString(), str(onnx_path))
    else:
        ok = parser.parse_from_file(str(onnx_path))
    if not ok:
        problem, fix = format_parser_errors(
            [parser.get_error(i) for i in range(parser.num_errors)],
            plugin_ops=(meta.get("plugin") or {}).get("ops", ()),
            plugin_loaded=plugin is not None,
        )
        raise ArtifactError(f"{onnx_path}: {problem}", fix)

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * 2**30))
    if fp16_mode == "builder_flag":
        config.set_flag(trt.BuilderFlag.FP16)
    net_inputs = {network.get_input(i).name: tuple(network.get_input(i).shape) for i in range(network.num_inputs)}
    dynamic = [name for name, shape in net_inputs.items() if -1 in shape]
    if dynamic:
        opt_profile = builder.create_optimization_profile()
        for name in dynamic:
            if name not in profiles:
                raise ArtifactError(
                    f"TensorRT sees input {name!r} as dynamic {list(net_inputs[name])} but the "
                    "profile has no entry for it",
                    f"pass profile={{{name!r}: (min, opt, max)}}",
                )
            lo, opt, hi = profiles[name]
            opt_profile.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(opt_profile)
    _load_timing_cache(trt, config, timing_cache)

    start = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if plan is None:
        detail = "; ".join(recorder.since(0)[-5:]) or "no error message (run with verbose=True)"
        raise ArtifactError(
            f"TensorRT could not build an engine from {onnx_path}: {detail}",
            "if it ran out of memory, raise workspace_gib or lower max_size/max_batch; "
            "otherwise rerun with verbose=True and report the log",
        )

    build_args = {
        "onnx": str(onnx_path),
        "engine": str(engine_path),
        "precision": precision,
        "workspace_gib": workspace_gib,
        "max_batch": max_batch,
        "max_size": max_size,
        "min_size": min_size,
        "opt_batch": opt_batch,
        "timing_cache": str(timing_cache) if timing_cache else None,
        "profile": ({n: [list(s) for s in p] for n, p in profiles.items()} if profile is not None else None),
    }
    engine_meta = dict(meta)
    engine_meta["engine"] = {
        "tensorrt_version": trt.__version__,
        "compute_capability": list(gpu.compute_capability),
        "gpu_name": gpu.name,
        "cuda_driver_version": gpu.driver_version,
        "precision": precision,
        "fp16_mode": fp16_mode,
        "profile": {n: [list(s) for s in p] for n, p in profiles.items()},
        "plugin": plugin,
        "workspace_gib": workspace_gib,
        "source_onnx": onnx_path.name,
        "source_onnx_sha256": _sha256(onnx_path),
        "built_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "build_seconds": round(seconds, 2),
        "build": build_args,
    }
    write_engine_file(engine_path, engine_meta, plan)
    if timing_cache is not None:
        with atomic_path(timing_cache) as tmp:
            tmp.write_bytes(memoryview(config.get_timing_cache().serialize()))
    return engine_path


def _has_fp16_tensors(path: Path) -> bool:
    """Whether the ONNX file computes in fp16 somewhere (an fp16 initializer or a Cast to fp16)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
        return True
    return any(
        n.op_type == "Cast" and any(a.name == "to" and a.i == onnx.TensorProto.FLOAT16 for a in n.attribute)
        for n in model.graph.node
    )


def wrap_plan(
    plan_path: str | Path,
    onnx_path: str | Path,
    engine_path: str | Path,
    *,
    precision: str,
    device: int = 0,
    plugin_dirs: Sequence[str | Path] = (),
    fp16_onnx: str | Path | None = None,
) -> Path:
    """Give a bare TensorRT plan (e.g. from ``trtexec --saveEngine``) the segrt header.

    Run it on the machine that built the plan: the plan is deserialized here to prove it
    matches this TensorRT and GPU, and its profile is read back from it. ``onnx_path`` is the
    segrt ONNX (its metadata goes into the header). On TensorRT >= 11 an fp16 plan can only
    come from an fp16 ONNX: pass it as ``fp16_onnx`` (the file the trtexec line named); it is
    checked to hold fp16 tensors and its checksum is recorded, so ``precision="fp16"`` is not
    written onto a plan built from the fp32 ONNX.
    """
    plan_path, onnx_path = Path(plan_path), Path(onnx_path)
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}", f"use one of {PRECISIONS}")
    if not plan_path.is_file():
        raise ArtifactError(f"plan file not found: {plan_path}", "check the --saveEngine path of trtexec")
    _, meta = _read_onnx(onnx_path)
    trt = import_tensorrt()
    fp16_source = None
    if precision == "fp16" and int(trt.__version__.split(".")[0]) >= 11:
        if fp16_onnx is None or not Path(fp16_onnx).is_file() or not _has_fp16_tensors(Path(fp16_onnx)):
            raise InputError(
                f"TensorRT {trt.__version__} builds fp16 only from an fp16 ONNX, and "
                f"{fp16_onnx or 'no such file'} was not given as one: the plan may be fp32",
                "pass the fp16 ONNX trtexec built from (--save-fp16-onnx of --print-trtexec) "
                "with --save-fp16-onnx, or wrap with --precision fp32",
            )
        fp16_source = Path(fp16_onnx)
    from segrt.backends import cuda_rt

    gpu = cuda_rt.device_info(device)
    cuda_rt.set_device(device)
    logger = process_logger(trt)
    recorder = make_error_recorder(trt, plan_path.name)
    plugin = load_segrt_plugins(trt, meta, extra_dirs=[onnx_path.parent, plan_path.parent, *plugin_dirs])
    plan = plan_path.read_bytes()
    runtime = trt.Runtime(logger)
    runtime.error_recorder = recorder
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise ArtifactError(
            f"{plan_path} does not load in TensorRT {trt.__version__} on {gpu.name}: "
            + ("; ".join(recorder.since(0)[-3:]) or "unknown reason"),
            "wrap the plan on the machine and TensorRT version that built it",
        )
    profiles = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            shape = tuple(engine.get_tensor_shape(name))
            if -1 in shape:
                profiles[name] = [list(s) for s in engine.get_tensor_profile_shape(name, 0)]
            else:
                profiles[name] = [list(shape)] * 3
    engine_meta = dict(meta)
    engine_meta["engine"] = {
        "tensorrt_version": trt.__version__,
        "compute_capability": list(gpu.compute_capability),
        "gpu_name": gpu.name,
        "cuda_driver_version": gpu.driver_version,
        "precision": precision,
        "fp16_mode": ("fp16_onnx" if fp16_source else "trtexec") if precision == "fp16" else None,
        "profile": profiles,
        "plugin": plugin,
        "source_onnx": onnx_path.name,
        "source_onnx_sha256": _sha256(onnx_path),
        **(
            {"source_fp16_onnx": fp16_source.name, "source_fp16_onnx_sha256": _sha256(fp16_source)}
            if fp16_source
            else {}
        ),
        "built_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "build": {
            "onnx": str(onnx_path),
            "engine": str(engine_path),
            "precision": precision,
            "wrapped_plan": str(plan_path),
        },
    }
    return write_engine_file(engine_path, engine_meta, plan)


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m segrt.export.to_engine", description=__doc__.split("\n\n")[0])
    p.add_argument("onnx", type=Path, help="segrt ONNX file")
    p.add_argument("-o", "--output", type=Path, help="engine file (default: ONNX name with .engine)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32")
    p.add_argument("--workspace-gib", type=float, default=DEFAULT_WORKSPACE_GIB)
    p.add_argument("--timing-cache", type=Path, help="timing cache file, read and updated")
    p.add_argument("--max-batch", type=int)
    p.add_argument("--opt-batch", type=int)
    p.add_argument("--max-size", type=int, help="U-Net: largest H/W (snapped down to a valid size)")
    p.add_argument("--min-size", type=int, help="U-Net: smallest H/W (snapped up to a valid size)")
    p.add_argument(
        "--profile",
        action="append",
        default=[],
        metavar="NAME:MIN:OPT:MAX",
        help="explicit profile for one input, e.g. image:1x1x188x188:4x1x572x572:4x1x572x572",
    )
    p.add_argument("--fp16-mode", choices=("auto", "builder_flag", "fp16_onnx"), default="auto")
    p.add_argument(
        "--save-fp16-onnx",
        type=Path,
        help="the fp16 ONNX for TensorRT 11: written by a build or --print-trtexec, read by --wrap-plan",
    )
    p.add_argument("--device", type=int, default=0)
    p.add_argument("--plugin-dir", type=Path, action="append", default=[])
    p.add_argument("--print-trtexec", action="store_true", help="print the equivalent trtexec command and exit")
    p.add_argument("--tensorrt-major", type=int, default=None, help="for --print-trtexec without TensorRT installed")
    p.add_argument("--wrap-plan", type=Path, help="wrap this bare plan (trtexec --saveEngine) instead of building")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    engine = a.output or a.onnx.with_suffix(".engine")
    try:
        profile = dict(parse_profile_arg(t) for t in a.profile) or None
        if a.print_trtexec:
            model, meta = _read_onnx(a.onnx)
            profiles = (
                normalize_profile(profile, list(onnx_input_shapes(model)))
                if profile
                else engine_profile_from_metadata(
                    meta,
                    input_shapes=onnx_input_shapes(model),
                    max_size=a.max_size,
                    min_size=a.min_size,
                    max_batch=a.max_batch,
                    opt_batch=a.opt_batch,
                )
            )
            major = a.tensorrt_major
            if major is None:
                try:
                    major = int(import_tensorrt().__version__.split(".")[0])
                except BackendUnavailableError:
                    major = 10
            plugin = (meta.get("plugin") or {}).get("library")
            fp16_onnx = None
            if a.precision == "fp16" and major >= 11:  # trtexec builds what the ONNX carries: write the fp16 ONNX
                import onnx

                fp16_onnx = a.save_fp16_onnx or a.onnx.with_name(a.onnx.stem + ".fp16.onnx")
                converted = convert_to_fp16(
                    onnx.load(str(a.onnx)), keep_fp32_ops=(meta.get("plugin") or {}).get("ops", ())
                )
                with atomic_path(fp16_onnx) as tmp:
                    onnx.save(converted, str(tmp))
                print(f"wrote {fp16_onnx} (the fp16 ONNX the command builds from)", file=sys.stderr)
            print(
                shlex.join(
                    trtexec_command(
                        a.onnx,
                        engine.with_suffix(".plan"),
                        profiles,
                        precision=a.precision,
                        workspace_gib=a.workspace_gib,
                        timing_cache=a.timing_cache,
                        plugin_library=plugin,
                        tensorrt_major=major,
                        fp16_onnx=fp16_onnx,
                    )
                )
            )
            return 0
        if a.wrap_plan:
            out = wrap_plan(
                a.wrap_plan,
                a.onnx,
                engine,
                precision=a.precision,
                device=a.device,
                plugin_dirs=a.plugin_dir,
                fp16_onnx=a.save_fp16_onnx,
            )
        else:
            out = onnx_to_engine(
                a.onnx,
                engine,
                precision=a.precision,
                workspace_gib=a.workspace_gib,
                timing_cache=a.timing_cache,
                profile=profile,
                max_batch=a.max_batch,
                max_size=a.max_size,
                min_size=a.min_size,
                opt_batch=a.opt_batch,
                fp16_mode=a.fp16_mode,
                save_fp16_onnx=a.save_fp16_onnx,
                device=a.device,
                plugin_dirs=a.plugin_dir,
                verbose=a.verbose,
            )
    except (ArtifactError, BackendUnavailableError, InputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


__all__ = [
    "convert_to_fp16",
    "engine_profile_from_metadata",
    "format_parser_errors",
    "normalize_profile",
    "onnx_input_shapes",
    "onnx_to_engine",
    "parse_profile_arg",
    "rebuild_command",
    "trtexec_command",
    "wrap_plan",
]

if __name__ == "__main__":
    sys.exit(main())
