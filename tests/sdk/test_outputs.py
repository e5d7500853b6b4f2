"""predict(..., out=DIR): outputs written to disk band by band equal the in-memory path and OpenCV's
labelling of the whole image; the OME-Zarr reads back with ome-zarr's own reader; checks fail before
any compute; an interrupted run leaves nothing under the final names."""

import shutil

import cv2
import numpy as np
import pytest

import segrt
from segrt.errors import InputError

zarr = pytest.importorskip("zarr", reason="the large extra (zarr) is not installed")
pytest.importorskip("ome_zarr", reason="the large extra (ome-zarr) is not installed")
tifffile = pytest.importorskip("tifffile", reason="the large extra (tifffile) is not installed")


def _image(hw=(1300, 700), seed=0):
    """Smooth blobs: many instances, some spanning the 512-row writing bands."""
    noise = np.random.default_rng(seed).random(hw, dtype=np.float32)
    return (cv2.GaussianBlur(noise, (0, 0), 5) * 255 * 10 - 1150).clip(0, 255).astype(np.uint8)


class Counting:
    """Wraps a backend and counts its calls (to prove nothing was computed); can fail at call ``fail_at``."""

    def __init__(self, backend, fail_at=None):
        self.backend, self.calls, self.fail_at = backend, 0, fail_at

    def run(self, feed):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        return self.backend.run(feed)


@pytest.fixture(scope="module")
def predictor(tiny_unet):
    return segrt.load(tiny_unet[1])


@pytest.fixture(scope="module")
def reference(predictor):
    image = _image()
    return image, predictor.predict(image, probs=None)


@pytest.mark.parametrize("fmt", ["ome-zarr", "tiff"])
@pytest.mark.parametrize("connectivity", [4, 8])
def test_out_of_core_equals_in_memory_and_opencv_label_for_label(predictor, reference, tmp_path, fmt, connectivity):
    image, mem = reference
    got = predictor.predict(image, out=tmp_path, out_format=fmt, name="x", connectivity=connectivity)
    classes = np.asarray(got.classes[...]).reshape(image.shape)
    labels = np.asarray(got.instances[...]).reshape(image.shape)
    np.testing.assert_array_equal(classes, mem.classes)
    n, want = cv2.connectedComponents((mem.classes == 1).astype(np.uint8), connectivity=connectivity)
    assert got.count == n - 1 > 100
    np.testing.assert_array_equal(labels, want)
    # components crossing the 512-row bands were merged: some instance spans rows 511 and 512
    assert np.intersect1d(want[511][want[511] > 0], want[512][want[512] > 0]).size


def test_table_equals_opencv_stats_of_the_whole_image(predictor, reference, tmp_path):
    image, mem = reference
    got = predictor.predict(image, out=tmp_path, name="x")
    n, _, stats, cents = cv2.connectedComponentsWithStats((mem.classes == 1).astype(np.uint8), connectivity=4)
    table = np.loadtxt(tmp_path / "x_instances.csv", delimiter=",", skiprows=1, ndmin=2)
    header = (tmp_path / "x_instances.csv").read_text().splitlines()[0].split(",")
    assert header == ["label", "area", "bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1", "centroid_x", "centroid_y"]
    assert len(table) == n - 1 == got.count
    np.testing.assert_array_equal(table[:, 0], np.arange(1, n))
    np.testing.assert_array_equal(table[:, 1], stats[1:, cv2.CC_STAT_AREA])
    np.testing.assert_array_equal(table[:, 2], stats[1:, cv2.CC_STAT_LEFT])
    np.testing.assert_array_equal(table[:, 3], stats[1:, cv2.CC_STAT_TOP])
    np.testing.assert_array_equal(table[:, 4] - table[:, 2], stats[1:, cv2.CC_STAT_WIDTH])
    np.testing.assert_array_equal(table[:, 5] - table[:, 3], stats[1:, cv2.CC_STAT_HEIGHT])
    np.testing.assert_allclose(table[:, 6:8], cents[1:], atol=5e-4)


def test_ome_zarr_reads_back_with_ome_zarr_reader(predictor, reference, tmp_path):
    """What napari's ome-zarr plugin does: the image with its pyramid, and both label images under it."""
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Multiscales, Reader

    image, mem = reference
    predictor.predict(image, out=tmp_path, name="x")
    nodes = list(Reader(parse_url(str(tmp_path / "x.ome.zarr")))())
    root = nodes[0]
    assert root.specs and isinstance(root.specs[0], Multiscales)
    assert [tuple(d.shape) for d in root.data] == [(1, 1300, 700), (1, 650, 350)]
    np.testing.assert_array_equal(np.asarray(root.data[0])[0], image)
    labels = {n.metadata.get("name"): n for n in nodes if any(isinstance(s, Label) for s in n.specs)}
    assert set(labels) == {"classes", "instances"}
    np.testing.assert_array_equal(np.asarray(labels["classes"].data[0])[0], mem.classes)
    np.testing.assert_array_equal(np.asarray(labels["classes"].data[1])[0], mem.classes[::2, ::2])
    _, want = cv2.connectedComponents((mem.classes == 1).astype(np.uint8), connectivity=4)
    np.testing.assert_array_equal(np.asarray(labels["instances"].data[0])[0], want)


def test_lazy_tiff_input_streams_to_tiled_bigtiff(predictor, reference, tmp_path):
    image, mem = reference
    tifffile.imwrite(tmp_path / "in.tif", image, tile=(256, 256), compression="zlib")
    got = predictor.predict(str(tmp_path / "in.tif"), out=tmp_path / "out", out_format="tiff")
    assert [p.name for p in got.paths] == ["in_classes.tif", "in_instances.tif", "in_instances.csv"]
    with tifffile.TiffFile(got.paths[1]) as tif:
        assert tif.is_bigtiff and tif.pages.first.is_tiled
        np.testing.assert_array_equal(
            tif.asarray(), cv2.connectedComponents((mem.classes == 1).astype(np.uint8), connectivity=4)[1]
        )


def test_interrupted_run_leaves_nothing_under_the_final_names(predictor, reference, tmp_path):
    image, _ = reference
    first = predictor.predict(image, out=tmp_path, name="x")  # a previous good result stays intact
    before = np.asarray(first.instances[...]).copy()
    real = predictor.backend
    predictor.backend = Counting(real, fail_at=3)
    try:
        with pytest.raises(KeyboardInterrupt):
            predictor.predict(image[:, ::-1], out=tmp_path, name="x")
    finally:
        predictor.backend = real
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.ome.zarr", "x_instances.csv"]  # no partial left
    np.testing.assert_array_equal(
        np.asarray(zarr.open_group(str(tmp_path / "x.ome.zarr"), mode="r")["labels/instances/0"][...]), before
    )


@pytest.mark.parametrize("case", ["not a folder", "no writer library", "no disk space"])
def test_output_checks_fail_before_any_compute(predictor, reference, tmp_path, monkeypatch, case):
    image, _ = reference
    out = tmp_path / "out"
    if case == "not a folder":
        out.write_text("a file where the output folder should be")
        match = "cannot write into"
    elif case == "no writer library":
        monkeypatch.setitem(__import__("sys").modules, "ome_zarr", None)
        match = "needs ome-zarr"
    else:
        usage = shutil.disk_usage(tmp_path)
        monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=1000))
        match = "GiB free"
    real = predictor.backend
    predictor.backend = Counting(real)
    try:
        with pytest.raises(InputError, match=match) as info:
            predictor.predict(image, out=out, name="x")
        assert predictor.backend.calls == 0 and info.value.fix
    finally:
        predictor.backend = real


def test_a_killed_runs_partial_folder_is_removed_by_the_rerun(predictor, reference, tmp_path):
    """A SIGKILL leaves .x.partial-<pid>-*; the next run of the same name removes it (its pid is gone)."""
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".x.partial-{int(dead.stdout)}-abc"
    (stale / "x.ome.zarr").mkdir(parents=True)
    alive = tmp_path / f".x.partial-{__import__('os').getpid()}-def"  # a live run's folder is left alone
    alive.mkdir()
    image, _ = reference
    predictor.predict(image[:300], out=tmp_path, name="x")
    assert not stale.exists() and alive.exists()
