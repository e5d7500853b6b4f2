"""U-Net results written to disk while they are computed: OME-Zarr (NGFF 0.4) or tiled BigTIFF.

``UNetPredictor.predict(image, out=DIR)`` streams each tile's classes into a
:class:`DiskOutputs`. It keeps only the rows not yet complete; each finished
band of ``chunk`` rows is written at once:

* ``labels/classes``: the uint8 class map;
* ``labels/instances``: provisional int32 instance labels (``segrt.unet.components.BandLabeller``),
  relabelled on disk band by band after the pass, so they equal ``cv2.connectedComponents``
  of the whole image label for label;
* the input image itself at the root (optional), so a viewer shows the labels over it;
* ``<stem>_instances.csv``: label, area, bounding box, centroid per instance, from the same pass.

Then every array gets a 2x-downsampled multiscale pyramid (nearest sample: labels stay labels)
and the NGFF metadata is written with ``ome-zarr`` (``ome_zarr.writer``), so napari
(napari-ome-zarr), QuPath and other NGFF readers open it. For ``fmt="tiff"`` the finished
arrays are copied into tiled, zlib-compressed BigTIFFs (``<stem>_classes.tif``,
``<stem>_instances.tif``), tile row by tile row.

Everything is built in a hidden ``.<stem>.partial-<pid>`` folder beside the outputs and
renamed into place only when complete: an interrupted run leaves nothing under the final
names (Ctrl-C removes its partial folder; after a kill, the next run of the same name removes
it), and a rerun starts over (nothing is resumed).

Memory: ``chunk`` rows of the class map (uint8) and of instance labels (int32) plus
OpenCV's labelling workspace for them, about ``W x chunk x 14`` bytes (32768-wide, 512 rows:
235 MB), plus 7 float64 per provisional component for the table.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from segrt.errors import InputError
from segrt.io.sources import ImageSource

FORMATS = ("ome-zarr", "tiff")
CHUNK = 512  # rows and columns per zarr chunk / TIFF tile; also the labelling band (even: see BandLabeller.add)
PYRAMID_MIN = 1024  # stop downsampling once both sides are at most this
DISK_MARGIN = 1.2  # the estimate is for uncompressed data; outputs are usually far smaller


def output_paths(out_dir: Path, stem: str, fmt: str) -> list[Path]:
    """The final names a run writes into ``out_dir``."""
    table = out_dir / f"{stem}_instances.csv"
    if fmt == "tiff":
        return [out_dir / f"{stem}_classes.tif", out_dir / f"{stem}_instances.tif", table]
    return [out_dir / f"{stem}.ome.zarr", table]


def estimate_bytes(hw: tuple[int, int], channels: int, itemsize: int, fmt: str, image: bool, instances: bool) -> int:
    """Upper bound of the disk bytes a run needs: uncompressed arrays, pyramid (x 4/3), margin."""
    per_px = 1 + 4 * instances + channels * itemsize * image
    levels = per_px * hw[0] * hw[1] * 4 / 3
    if fmt == "tiff":  # the zarr arrays exist beside the TIFFs until they are copied
        levels *= 2
    return int(levels * DISK_MARGIN)


def preflight(out_dir: str | Path, fmt: str, need_bytes: int = 0) -> Path:
    """Check everything writing the outputs needs, before any compute.

    The writer's libraries are importable, ``out_dir`` can be created and written, and its
    file system has ``need_bytes`` free. Raises InputError naming the fix otherwise.
    """
    if fmt not in FORMATS:
        raise InputError(f"unknown output format {fmt!r}", f"use one of {', '.join(FORMATS)}")
    missing = []
    for module in ("zarr", "ome_zarr") + (("tifffile",) if fmt == "tiff" else ()):
        try:
            __import__(module)
        except ImportError:
            missing.append(module.replace("_", "-"))
    if missing:
        raise InputError(f"writing {fmt} outputs needs {', '.join(missing)}", "pip install 'segrt[large]'")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".segrt-write-check."):
            pass
    except OSError as exc:
        raise InputError(
            f"cannot write into {out}: {exc.strerror or exc}", "choose another --out folder, or fix its permissions"
        ) from None
    free = shutil.disk_usage(out).free
    if need_bytes > free:
        raise InputError(
            f"the outputs may need up to {need_bytes / 2**30:.1f} GiB but {out} has {free / 2**30:.1f} GiB free",
            "free disk space or choose another --out folder",
        )
    return out


class DiskOutputs:
    """Receives a U-Net's class tiles in row-major tile order and writes everything to disk band by band.

    Args:
        out_dir: folder for the outputs (created).
        stem: name stem of the outputs.
        source: the input image (its shape; copied into the OME-Zarr when ``image``).
        class_names: K names; the class map holds 0..K-1.
        foreground: class whose connected components are the instances.
        fmt: "ome-zarr" or "tiff".
        instances: label instances (and write the table).
        connectivity: 4 or 8.
        image: copy the input into the OME-Zarr's root image (ome-zarr only).
        chunk: chunk/tile edge and labelling band, even.
    """

    def __init__(
        self,
        out_dir: str | Path,
        stem: str,
        source: ImageSource,
        class_names: list[str],
        foreground: int = 1,
        fmt: str = "ome-zarr",
        instances: bool = True,
        connectivity: int = 4,
        image: bool = True,
        chunk: int = CHUNK,
    ) -> None:
        import zarr

        from segrt.unet.components import BandLabeller

        H, W, C = source.shape
        self.out_dir = preflight(
            out_dir, fmt, estimate_bytes((H, W), C, source.dtype.itemsize, fmt, image and fmt == "ome-zarr", instances)
        )
        self.stem, self.fmt, self.source = stem, fmt, source
        self.hw = (H, W)
        self.class_names, self.foreground = list(class_names), int(foreground)
        self.chunk = max(2, int(chunk) // 2 * 2)
        self.image = image and fmt == "ome-zarr"
        self.labeller = BandLabeller(W, connectivity, stats=True) if instances else None
        self.count: int | None = None
        remove_stale_partials(self.out_dir, stem)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{stem}.partial-{os.getpid()}-", dir=self.out_dir))
        self.root: Any = zarr.open_group(str(self.tmp / f"{stem}.ome.zarr"), mode="w", zarr_format=2)
        labels = self.root.create_group("labels")
        c = self.chunk
        self.classes = self._array(labels.create_group("classes"), "0", (1, H, W), np.uint8, c)
        self.instances = (
            self._array(labels.create_group("instances"), "0", (1, H, W), np.int32, c) if instances else None
        )
        self.pixels = self._array(self.root, "0", (C, H, W), source.dtype, c) if self.image else None
        self._rows: dict[int, np.ndarray] = {}  # chunk row index -> class rows being filled
        self._done = 0  # rows written so far

    @staticmethod
    def _array(group: Any, name: str, shape: tuple[int, ...], dtype: Any, chunk: int) -> Any:
        return group.create_array(
            name,
            shape=shape,
            chunks=(1, chunk, chunk),
            dtype=dtype,
            chunk_key_encoding={"name": "v2", "separator": "/"},
            fill_value=0,
        )

    # -- the streaming pass ------------------------------------------------------------------
    def write(self, region: tuple[slice, slice], classes: np.ndarray) -> None:
        """Take one tile's classes uint8 [h, w] at ``region`` (rows, columns of the image)."""
        (ys, xs), c = region, self.chunk
        # tiles come in row-major bands: every row above this tile's first row is complete
        self._flush_below(ys.start)
        for ci in range(ys.start // c, (ys.stop - 1) // c + 1):
            buf = self._rows.get(ci)
            if buf is None:
                buf = self._rows[ci] = np.zeros((min(c, self.hw[0] - ci * c), self.hw[1]), np.uint8)
            r0, r1 = max(ys.start, ci * c), min(ys.stop, ci * c + c)
            buf[r0 - ci * c : r1 - ci * c, xs] = classes[r0 - ys.start : r1 - ys.start]

    def _flush_below(self, row: int) -> None:
        for ci in sorted(self._rows):
            if min((ci + 1) * self.chunk, self.hw[0]) > row:
                break
            self._write_band(ci * self.chunk, self._rows.pop(ci))

    def _write_band(self, y0: int, classes: np.ndarray) -> None:
        y1 = y0 + len(classes)
        self.classes[0, y0:y1] = classes
        if self.labeller is not None and self.instances is not None:
            self.instances[0, y0:y1] = self.labeller.add(classes == self.foreground)
        if self.pixels is not None:
            self.pixels[:, y0:y1] = self.source.read(y0, y1, 0, self.hw[1]).transpose(2, 0, 1)
        self._done = y1

    # -- after the pass ----------------------------------------------------------------------
    def finish(self) -> list[Path]:
        """Flush, relabel, build pyramids, write metadata and the table, rename into place; the final paths."""
        self._flush_below(self.hw[0])
        if self._done != self.hw[0]:
            raise InputError(f"only {self._done} of {self.hw[0]} rows were predicted", "rerun the prediction")
        written = []
        table_tmp = self.tmp / f"{self.stem}_instances.csv"
        if self.labeller is not None:
            from segrt.unet.components import relabel

            lut, self.count = self.labeller.finish()
            if self.labeller.merged and self.instances is not None:
                relabel(_Plane(self.instances), lut, self.chunk)
            write_table(table_tmp, self.labeller.table(lut, self.count))
        if self.fmt == "ome-zarr":
            self._write_ngff()
            finals = [self.tmp / f"{self.stem}.ome.zarr"]
        else:
            finals = [self._to_tiff(self.classes, "classes")]
            if self.instances is not None:
                finals.append(self._to_tiff(self.instances, "instances"))
        if self.labeller is not None:
            finals.append(table_tmp)
        for tmp_path in finals:
            final = self.out_dir / tmp_path.name
            if final.exists():
                shutil.rmtree(final) if final.is_dir() else final.unlink()
            os.replace(tmp_path, final)
            written.append(final)
        shutil.rmtree(self.tmp, ignore_errors=True)
        return written

    def abort(self) -> None:
        """Remove everything this run wrote (its hidden partial folder)."""
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _write_ngff(self) -> None:
        from ome_zarr.format import FormatV04
        from ome_zarr.writer import write_label_metadata, write_multiscales_metadata

        fmt = FormatV04()
        axes = [{"name": "c", "type": "channel"}, {"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
        labels = self.root["labels"]
        groups = [("classes", labels["classes"])] + (
            [("instances", labels["instances"])] if self.instances is not None else []
        )
        if self.pixels is not None:
            groups.append(("image", self.root))
        for name, group in groups:
            datasets = [
                {"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": [1.0, 2.0**i, 2.0**i]}]}
                for i in range(pyramid(group, self.chunk))
            ]
            write_multiscales_metadata(group, datasets, fmt=fmt, axes=axes, name=name)
        if self.pixels is None:  # NGFF labels hang off an image: without the input, the class map is the image
            datasets = [
                {
                    "path": f"labels/classes/{i}",
                    "coordinateTransformations": [{"type": "scale", "scale": [1.0, 2.0**i, 2.0**i]}],
                }
                for i in range(_levels(labels["classes"]))
            ]
            write_multiscales_metadata(self.root, datasets, fmt=fmt, axes=axes, name="classes")
        colors = [{"label-value": 0, "rgba": [0, 0, 0, 0]}]
        source = {"image": "../../"}  # NGFF: where the labelled image is, relative to the label group
        write_label_metadata(
            labels,
            "classes",
            colors=colors,
            fmt=fmt,
            source=source,
            properties=[{"label-value": i, "class": n} for i, n in enumerate(self.class_names)],
        )
        if self.instances is not None:
            write_label_metadata(labels, "instances", colors=colors, fmt=fmt, source=source)

    def _to_tiff(self, array: Any, name: str) -> Path:
        import tifffile

        path = self.tmp / f"{self.stem}_{name}.tif"
        H, W, c = self.hw[0], self.hw[1], self.chunk

        def tiles() -> Iterator[np.ndarray]:
            for y0 in range(0, H, c):
                rows = np.asarray(array[0, y0 : y0 + c])
                for x0 in range(0, W, c):
                    tile = np.zeros((c, c), array.dtype)
                    block = rows[:, x0 : x0 + c]
                    tile[: block.shape[0], : block.shape[1]] = block
                    yield tile

        tifffile.imwrite(
            path, data=tiles(), shape=(H, W), dtype=array.dtype, tile=(c, c), compression="zlib", bigtiff=True
        )
        return path


class _Plane:
    """The [H, W] plane of a [1, H, W] array, for ``relabel``."""

    def __init__(self, array: Any) -> None:
        self.array, self.shape = array, tuple(array.shape[1:])

    def __getitem__(self, rows: slice) -> np.ndarray:
        return self.array[0, rows]

    def __setitem__(self, rows: slice, value: np.ndarray) -> None:
        self.array[0, rows] = value


def _levels(group: Any) -> int:
    return sum(1 for k in group.array_keys() if k.isdigit())


def pyramid(group: Any, chunk: int) -> int:
    """Add levels 1, 2, ... to ``group`` (level 0: [C, H, W]), each the previous one sampled every 2nd
    pixel (nearest: labels stay valid labels), until both sides are at most ``PYRAMID_MIN``; read and
    written ``2 x chunk`` source rows at a time. Returns the number of levels."""
    level, prev = 0, group["0"]
    while max(prev.shape[1:]) > PYRAMID_MIN:
        C, H, W = prev.shape
        nxt = group.create_array(
            str(level + 1),
            shape=(C, (H + 1) // 2, (W + 1) // 2),
            dtype=prev.dtype,
            chunks=(1, chunk, chunk),
            chunk_key_encoding={"name": "v2", "separator": "/"},
            fill_value=0,
        )
        for y0 in range(0, H, 2 * chunk):
            nxt[:, y0 // 2 : (min(y0 + 2 * chunk, H) + 1) // 2] = np.asarray(prev[:, y0 : y0 + 2 * chunk])[:, ::2, ::2]
        level, prev = level + 1, nxt
    return level + 1


def remove_stale_partials(out_dir: Path, stem: str) -> list[Path]:
    """Delete ``.<stem>.partial-<pid>-*`` folders left by runs that were killed (their process is gone):
    a rerun starts over, and a killed run's leftovers do not accumulate. Returns what was removed."""
    removed = []
    for path in out_dir.glob(f".{stem}.partial-*-*"):
        try:
            pid = int(path.name[len(f".{stem}.partial-") :].split("-")[0])
            os.kill(pid, 0)  # signal 0: only asks whether the process exists
            continue
        except ProcessLookupError:
            pass
        except (ValueError, PermissionError):
            continue  # not ours, or a live process of another user
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def write_table(path: Path, table: dict[str, np.ndarray], rows_per_write: int = 1 << 18) -> Path:
    """Write the per-instance table as CSV (header row; integers, centroids to 3 decimals), a block of
    rows at a time (the text of millions of instances is never built whole)."""
    names = list(table)
    fmt = ["%.3f" if table[n].dtype.kind == "f" else "%d" for n in names]
    n = len(table["label"])
    with open(path, "w") as f:
        f.write(",".join(names) + "\n")
        for r0 in range(0, n, rows_per_write):
            block = np.stack([table[k][r0 : r0 + rows_per_write].astype(np.float64) for k in names], axis=1)
            np.savetxt(f, block, fmt=fmt, delimiter=",")
    return path
