"""Streaming overlap-tile inference for U-Nets: images of any size in bounded memory.

Tiles are cut from the source one band of tile rows at a time (mirror-padded per
tile from the source, see ``segrt.unet.tiling``), normalized, run ``batch`` at a time,
and each batch's output is written into the requested outputs at once. Memory
in use is therefore:

* the outputs asked for: the uint8 class map (1 byte per pixel), the probabilities
  if requested (``K`` x 2 or 4 bytes per pixel, or none in memory when written
  to a zarr/``.npy`` file), the int32 instance labels (4 bytes per pixel); and
* a working set independent of the image height: one band of source rows
  (``tile_h x W x C`` pixels of the input dtype), one tile batch in and out.

Test-time augmentation needs the sum of 8 probability maps: it keeps a float32
[K, H, W] accumulator.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from segrt.errors import InputError
from segrt.io.preprocess import fit_normalization, sample_step
from segrt.io.sources import ArraySource, ImageSource
from segrt.unet.tiling import AxisPlan, plan_axis, pool_factor, reflect_indices

# images above this many pixels stream without a probability map unless one is asked for
AUTO_PROBS_MAX_PIXELS = 2048 * 2048
# and show a progress bar (when ``progress`` is None)
PROGRESS_MIN_PIXELS = 4096 * 4096
PROBS_DTYPES = ("float32", "float16", "uint8")
# results above this many pixels are saved as tiled TIFFs, without an overlay picture
LARGE_OUTPUT_PIXELS = 8192 * 8192
# The 8 symmetries of the square: (rot90 count, horizontal flip); each is undone after prediction.
DIHEDRAL = [(k, f) for f in (False, True) for k in range(4)]


def plan_tiles(metadata: dict[str, Any], hw: tuple[int, int], max_tile: int) -> tuple[AxisPlan, AxisPlan]:
    """Grid-aligned tile plans (rows, columns) of a U-Net artifact for an image of ``hw`` pixels."""
    g = (int(metadata["size_min"]), int(metadata["size_step"]), int(metadata["border"]))
    margin, grid = int(metadata.get("margin", 0)), pool_factor(metadata)
    return plan_axis(hw[0], *g, max_tile, margin, grid), plan_axis(hw[1], *g, max_tile, margin, grid)


def percentile_sample(source: ImageSource, rows_per_read: int = 256) -> np.ndarray:
    """The pixels [n, C] that percentile normalization looks at (``segrt.io.preprocess.sample_step``), read by bands."""
    H, W, C = source.shape
    step = sample_step(H * W)
    if isinstance(source, ArraySource) and isinstance(source.array, np.ndarray):
        a = source.array
        return a.reshape(-1, C)[::step] if a.ndim == 3 else a.reshape(-1, 1)[::step]
    parts = []
    for y0 in range(0, H, rows_per_read):
        y1 = min(y0 + rows_per_read, H)
        first = -(y0 * W) % step  # offset of the first sampled pixel in this band
        if first >= (y1 - y0) * W:
            continue
        if step >= W:  # at most one sample per row: read only those rows
            for flat in range(y0 * W + first, y1 * W, step):
                parts.append(source.read(flat // W, flat // W + 1, flat % W, flat % W + 1).reshape(1, C))
        else:
            parts.append(source.read(y0, y1, 0, W).reshape(-1, C)[first::step].copy())  # a view keeps the band
    return np.concatenate(parts)


def normalizer_for(source: ImageSource, spec: dict[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
    """The normalization of ``spec`` fitted to the whole image, to apply per tile."""
    if spec.get("mode", "fixed") != "percentile":
        return fit_normalization(spec, np.zeros((0, source.shape[2]), np.float32))
    return fit_normalization(spec, percentile_sample(source))


def iter_tiles(
    source: ImageSource, ys: AxisPlan, xs: AxisPlan, norm: Callable[[np.ndarray], np.ndarray]
) -> Iterator[tuple[int, int, np.ndarray]]:
    """(row, column, tile float32 [C, tile_h, tile_w]) in row-major order, one band of rows read at a time."""
    H, W, _ = source.shape
    for iy in range(ys.count):
        rows = reflect_indices(ys.in_start(iy), ys.in_start(iy) + ys.tile_in, H)
        r0, r1 = int(rows.min()), int(rows.max()) + 1
        band = source.read(r0, r1, 0, W)
        band = band[rows - r0] if (r1 - r0 != len(rows) or rows[0] != r0) else band
        for ix in range(xs.count):
            cols = reflect_indices(xs.in_start(ix), xs.in_start(ix) + xs.tile_in, W)
            yield iy, ix, norm(band[:, cols]).transpose(2, 0, 1)


class OutputTarget:
    """Where the probabilities go: None, an in-memory array of a dtype, or a zarr / .npy file (written atomically)."""

    def __init__(self, spec: Any, shape: tuple[int, int, int]) -> None:
        self.path: Path | None = None
        self.array: Any = None
        self.dtype: np.dtype | None = None
        self._tmp: Path | None = None
        if spec is None or spec is False:
            return
        if isinstance(spec, str) and spec in PROBS_DTYPES:
            self.dtype = np.dtype(spec)
            self.array = np.empty(shape, self.dtype)
            return
        if isinstance(spec, (str, Path)):
            self.path = Path(spec)
            suffix = self.path.suffix.lower()
            if suffix not in (".zarr", ".npy"):
                raise InputError(
                    f"probs={spec!r}: not a dtype ({', '.join(PROBS_DTYPES)}) nor a .zarr/.npy path",
                    "pass probs='float16', probs=None, or a path ending in .zarr or .npy",
                )
            self.dtype = np.dtype("float16")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.partial")
            if suffix == ".npy":
                self.array = np.lib.format.open_memmap(self._tmp, mode="w+", dtype=self.dtype, shape=shape)
            else:
                try:
                    import zarr
                except ImportError:
                    raise InputError(
                        "writing probabilities to .zarr needs zarr", "pip install 'segrt[large]'"
                    ) from None
                self.array = zarr.open_array(
                    str(self._tmp), mode="w", shape=shape, dtype=self.dtype, chunks=(1, 1024, 1024)
                )
            return
        if hasattr(spec, "shape") and hasattr(spec, "__setitem__"):
            if tuple(spec.shape) != tuple(shape):
                raise InputError(
                    f"probs array has shape {tuple(spec.shape)}, the image needs {shape}",
                    "allocate it as [classes, H, W]",
                )
            self.array, self.dtype = spec, np.dtype(spec.dtype)
            return
        raise InputError(f"unsupported probs={spec!r}", "pass None, 'float32', 'float16', 'uint8' or a .zarr/.npy path")

    def write(self, region: tuple[slice, slice], p: np.ndarray) -> None:
        if self.array is None:
            return
        if self.dtype == np.uint8:
            p = np.rint(p * np.float32(255)).astype(np.uint8)
        self.array[(slice(None),) + region] = p.astype(self.dtype, copy=False)

    def finish(self) -> Any:
        """The result: the in-memory array, or the finished file re-opened read-only."""
        if self._tmp is None or self.path is None:
            return self.array
        path = self.path
        if isinstance(self.array, np.memmap):
            self.array.flush()
            del self.array
        if path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        os.replace(self._tmp, path)
        if path.suffix.lower() == ".npy":
            return np.load(path, mmap_mode="r")
        import zarr

        return zarr.open_array(str(path), mode="r")

    def abort(self) -> None:
        if self._tmp is not None and self._tmp.exists():
            self.array = None
            shutil.rmtree(self._tmp) if self._tmp.is_dir() else self._tmp.unlink()


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return contextlib.nullcontext(None)
    from tqdm import tqdm

    return tqdm(total=total, unit="tile", desc="segment", dynamic_ncols=True, leave=False)


def classes_of(p: np.ndarray) -> np.ndarray:
    """Argmax class uint8 [..., h, w] of probabilities [K, h, w]; two classes by one comparison (ties -> 0)."""
    return (p[1] > p[0]).view(np.uint8) if len(p) == 2 else p.argmax(axis=0).astype(np.uint8)


def run_tiles(
    backend: Any,
    names: tuple[str, str],
    source: ImageSource,
    ys: AxisPlan,
    xs: AxisPlan,
    margin: int,
    norm: Callable[[np.ndarray], np.ndarray],
    batch: int,
    write: Callable[[tuple[slice, slice], np.ndarray], None],
    progress: bool = False,
) -> dict[str, float]:
    """Run every tile through ``backend`` ``batch`` tiles at a time; ``write(region, probs[K, h, w])`` per tile.

    Returns timings: model_ms (backend calls), io_ms (reading, padding, normalizing tiles),
    write_ms (writing outputs), tiles, megapixels.
    """
    inp, outp = names
    C = source.shape[2]
    buf = np.empty((batch, C, ys.tile_in, xs.tile_in), np.float32)
    places: list[tuple[int, int]] = []
    t = {"model_ms": 0.0, "io_ms": 0.0, "write_ms": 0.0}
    done_px = 0
    start = time.perf_counter()

    def flush(bar: Any) -> None:
        nonlocal done_px
        t0 = time.perf_counter()
        out = backend.run({inp: buf[: len(places)]})[outp]
        t1 = time.perf_counter()
        for b, (iy, ix) in enumerate(places):
            ly, lx = ys.out_len(iy), xs.out_len(ix)
            y0, x0 = iy * ys.step, ix * xs.step
            write((slice(y0, y0 + ly), slice(x0, x0 + lx)), out[b, :, margin : margin + ly, margin : margin + lx])
            done_px += ly * lx
        t["model_ms"] += (t1 - t0) * 1e3
        t["write_ms"] += (time.perf_counter() - t1) * 1e3
        if bar is not None:
            bar.update(len(places))
            bar.set_postfix_str(f"{done_px / 1e6 / max(time.perf_counter() - start, 1e-9):.2f} Mpixel/s")
        places.clear()

    with _progress(ys.count * xs.count, progress) as bar:
        t0 = time.perf_counter()
        for iy, ix, tile in iter_tiles(source, ys, xs, norm):
            buf[len(places)] = tile
            places.append((iy, ix))
            if len(places) == batch:
                t["io_ms"] += (time.perf_counter() - t0) * 1e3
                flush(bar)
                t0 = time.perf_counter()
        t["io_ms"] += (time.perf_counter() - t0) * 1e3
        if places:
            flush(bar)
    t.update(tiles=float(ys.count * xs.count), megapixels=ys.length * xs.length / 1e6)
    return t


def write_tiff(path: str | Path, array: np.ndarray) -> Path:
    """Write an [H, W] label/class image as a tiled, zlib-compressed TIFF, atomically (needs tifffile)."""
    try:
        import tifffile
    except ImportError:
        raise InputError(f"writing {Path(path).name} needs tifffile", "pip install 'segrt[large]'") from None
    from segrt.io.files import atomic_path

    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, array, tile=(512, 512), compression="zlib", bigtiff=array.nbytes > 2**31)
    return Path(path)


def segment(
    predictor: Any,
    image: Any,
    *,
    tta: bool,
    max_tile: int,
    batch: int,
    probs: Any = "auto",
    progress: bool | None = None,
    sink: Callable[[tuple[slice, slice], np.ndarray], None] | None = None,
) -> tuple[Any, Any, float]:
    """Class map and probabilities of a U-Net for an image of any size (``UNetPredictor.predict``'s engine).

    Args:
        predictor: a ``segrt.unet.predictor.UNetPredictor`` (backend, tensor names, channels, classes, margin).
        image: anything ``segrt.io.sources.open_image`` takes; an in-memory [H, W, C] array for ``tta``.
        probs, progress: as in ``UNetPredictor.predict``.
        sink: where each tile's classes go, ``sink(region, classes uint8 [h, w])`` in row-major tile
            order (``segrt.unet.outputs.DiskOutputs.write``); then no class map is kept in memory.

    Returns:
        (probabilities or None, classes uint8 [H, W] or None with a sink, milliseconds spent in the backend).
    """
    from segrt.io.sources import open_image

    norm_spec = predictor.metadata["normalization"]
    source = open_image(image)
    H, W, C = source.shape
    if predictor.channels != C:
        raise InputError(
            f"image has {C} channel(s) but the model takes {predictor.channels}",
            "convert it first, e.g. cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) for a 1-channel model",
        )
    if source.dtype == np.bool_ or not np.issubdtype(source.dtype, np.number):
        raise InputError(f"image has dtype {source.dtype}", "use uint8, uint16 or float pixel values")
    if tta and (not isinstance(image, np.ndarray) or sink is not None):
        raise InputError(
            "test-time augmentation needs the image and its outputs in memory",
            "pass a numpy array without out=, or predict without tta",
        )
    K = len(predictor.class_names)
    progress = H * W > PROGRESS_MIN_PIXELS if progress is None else progress
    if isinstance(probs, str) and probs == "auto":
        probs = "float32" if H * W <= AUTO_PROBS_MAX_PIXELS else None
    target = OutputTarget(probs, (K, H, W))
    classes: Any = np.empty((H, W), np.uint8) if sink is None else None
    names = (predictor.input_name, predictor.output_name)
    norm = normalizer_for(source, norm_spec)  # fitted to the image, also for its TTA views
    model_ms = 0.0
    try:
        if tta:
            acc = np.zeros((K, H, W), np.float32)  # the sum of 8 maps: TTA's one full-size buffer
            for k, flip in DIHEDRAL:
                view = np.rot90(image[:, ::-1] if flip else image, k)
                ys, xs = predictor.plan(view.shape[:2], max_tile)
                # the same view of acc: what is written there lands un-rotated
                acc_view = np.rot90(acc[:, :, ::-1] if flip else acc, k, axes=(1, 2))

                def add(region: tuple[slice, slice], p: np.ndarray, acc_view: np.ndarray = acc_view) -> None:
                    acc_view[(slice(None),) + region] += p

                model_ms += run_tiles(
                    predictor.backend, names, open_image(view), ys, xs, predictor.margin, norm, batch, add, progress
                )["model_ms"]
            acc /= len(DIHEDRAL)
            for y0 in range(0, H, 1024):
                rows = (slice(y0, min(y0 + 1024, H)), slice(0, W))
                classes[rows] = classes_of(acc[:, rows[0]])
                target.write(rows, acc[:, rows[0]])
        else:
            ys, xs = predictor.plan((H, W), max_tile)

            def write(region: tuple[slice, slice], p: np.ndarray) -> None:
                if sink is None:
                    classes[region] = classes_of(p)
                else:
                    sink(region, classes_of(p))
                target.write(region, p)

            model_ms = run_tiles(
                predictor.backend, names, source, ys, xs, predictor.margin, norm, batch, write, progress
            )["model_ms"]
        return target.finish(), classes, model_ms
    except BaseException:
        target.abort()
        raise
