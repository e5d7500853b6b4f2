"""Streaming U-Net prediction: same result from every input kind, batches and reads bounded, outputs as asked."""

import cv2
import numpy as np
import pytest

from segrt.backends.base import Backend, TensorInfo
from segrt.errors import InputError
from segrt.io.preprocess import normalize
from segrt.io.sources import ArraySource, open_image
from segrt.unet import stream
from segrt.unet.predictor import UNetPredictor

SIZE_MIN, STEP, BORDER = 28, 4, 12  # the geometry of a depth-3 valid U-Net (pool factor 4)


class ThresholdBackend(Backend):
    """A valid-padding 'network': p(fg) = clip(centre crop of the input, 0, 1); records the batch shapes."""

    def __init__(self, tile_size=60):
        self.path = None
        self.metadata = {
            "kind": "unet",
            "class_names": ["bg", "fg"],
            "input_channels": 1,
            "normalization": {"mode": "percentile", "low": 1.0, "high": 99.8},
            "size_min": SIZE_MIN,
            "size_step": STEP,
            "border": BORDER,
            "tile_size": tile_size,
            "margin": 0,
            "pool_factor": STEP,
        }
        self.inputs = [TensorInfo("image", (None, 1, None, None), np.dtype(np.float32))]
        self.outputs = [TensorInfo("probs", (None, 2, None, None), np.dtype(np.float32))]
        self.batches = []

    def run(self, feed):
        x = feed["image"]
        self.batches.append(x.shape)
        fg = np.clip(x[:, :, BORDER:-BORDER, BORDER:-BORDER], 0, 1)
        return {"probs": np.concatenate([1 - fg, fg], axis=1)}


class CountingSource(ArraySource):
    """An ArraySource that records the rows of every read."""

    def __init__(self, array):
        super().__init__(array)
        self.reads = []

    def read(self, y0, y1, x0, x1):
        self.reads.append((y0, y1, x0, x1))
        return super().read(y0, y1, x0, x1)


def _image(hw=(203, 157), seed=0):
    noise = np.random.default_rng(seed).random(hw).astype(np.float32)
    return (cv2.GaussianBlur(noise, (0, 0), 4) * 60000).astype(np.uint16)


def test_streamed_result_equals_the_whole_image_computation():
    image = _image()
    backend = ThresholdBackend()
    result = UNetPredictor(backend).predict(image, tile=60, batch=3, probs="float32")
    fg = np.clip(normalize(image[:, :, None], backend.metadata["normalization"])[:, :, 0], 0, 1)
    np.testing.assert_allclose(result.probs[1], fg, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(result.classes, (fg > 1 - fg).astype(np.uint8))
    n, labels = cv2.connectedComponents(result.classes, connectivity=4)
    np.testing.assert_array_equal(result.instances, labels)
    assert n > 3 and max(b[0] for b in backend.batches) == 3 and sum(b[0] for b in backend.batches) > 20


def test_reads_one_band_of_tile_rows_at_a_time():
    image = _image((300, 90))
    source = CountingSource(image)
    UNetPredictor(ThresholdBackend()).predict(source, tile=60, probs=None)
    tile_rows = [y1 - y0 for y0, y1, x0, x1 in source.reads if (x0, x1) == (0, 90) and y1 - y0 < 300]
    assert tile_rows and max(tile_rows) <= 60  # tile reads: one tile height of rows, never the whole image


def test_every_input_kind_gives_the_same_result(tmp_path):
    import tifffile
    import zarr

    image = _image((150, 171), seed=1)
    predictor = UNetPredictor(ThresholdBackend())
    want = predictor.predict(image, tile=48, probs=None)
    np.save(tmp_path / "im.npy", image)
    tifffile.imwrite(tmp_path / "plain.tif", image)
    tifffile.imwrite(tmp_path / "tiled.tif", image, tile=(64, 64), compression="zlib")
    z = zarr.open_array(str(tmp_path / "im.zarr"), mode="w", shape=image.shape, chunks=(40, 40), dtype=image.dtype)
    z[:] = image
    inputs = {
        "memmap": np.load(tmp_path / "im.npy", mmap_mode="r"),
        "tiff": tmp_path / "plain.tif",
        "tiled tiff": str(tmp_path / "tiled.tif"),
        "zarr array": z,
        "zarr path": tmp_path / "im.zarr",
    }
    for name, source in inputs.items():
        got = predictor.predict(source, tile=48, probs=None)
        np.testing.assert_array_equal(got.classes, want.classes, err_msg=name)
        np.testing.assert_array_equal(got.instances, want.instances, err_msg=name)
    assert type(open_image(tmp_path / "plain.tif")).__name__ == "ContiguousTiffSource"


def test_percentile_sample_of_a_lazy_source_picks_the_pixels_normalize_uses(tmp_path):
    import tifffile

    image = np.random.default_rng(3).integers(0, 60000, (700, 333)).astype(np.uint16)  # > 2^16 px: subsampled
    tifffile.imwrite(tmp_path / "a.tif", image)
    lazy = stream.percentile_sample(open_image(tmp_path / "a.tif"), rows_per_read=37)
    flat = image.reshape(-1, 1)
    np.testing.assert_array_equal(lazy, flat[:: max(1, flat.shape[0] >> 16)])


def test_percentile_sample_keeps_only_the_samples_not_the_bands_it_read():
    """Sampling a lazily read image holds one band at a time plus the 2^16 samples, never all the bands read
    (a view of each band kept every band alive: 2 GiB at 32768 x 32768)."""
    import tracemalloc

    class Lazy:  # each read is a fresh array of just the block asked for, as a file or zarr read is
        shape, dtype = (4096, 4096), np.dtype(np.uint16)

        def __getitem__(self, index):
            rows, cols = index
            return np.ones((len(range(*rows.indices(4096))), len(range(*cols.indices(4096)))), np.uint16)

    source = open_image(Lazy())
    tracemalloc.start()
    try:
        sample = stream.percentile_sample(source, rows_per_read=256)  # 16 bands of 2 MiB
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sample.shape == (2**16, 1)
    assert peak < 8 * 2**20


@pytest.mark.parametrize("kind, atol", [("float16", 1e-3), ("uint8", 0.5 / 255 + 1e-6)])
def test_probabilities_in_smaller_dtypes(kind, atol):
    image = _image((90, 80))
    predictor = UNetPredictor(ThresholdBackend())
    want = predictor.predict(image, tile=48, probs="float32").probs
    got = predictor.predict(image, tile=48, probs=kind).probs
    assert got.dtype == np.dtype(kind)
    scale = 255.0 if kind == "uint8" else 1.0
    assert np.abs(got.astype(np.float32) / scale - want).max() <= atol


@pytest.mark.parametrize("suffix", [".npy", ".zarr"])
def test_probabilities_written_to_disk(tmp_path, suffix):
    image = _image((90, 80))
    predictor = UNetPredictor(ThresholdBackend())
    want = predictor.predict(image, tile=48, probs="float32").probs
    path = tmp_path / f"probs{suffix}"
    got = predictor.predict(image, tile=48, probs=path).probs
    assert path.exists() and not list(tmp_path.glob(".*partial"))
    np.testing.assert_allclose(np.asarray(got[:]), want, atol=1e-3)


def test_probabilities_are_dropped_for_large_images_unless_asked(monkeypatch):
    monkeypatch.setattr(stream, "AUTO_PROBS_MAX_PIXELS", 50 * 50)
    predictor = UNetPredictor(ThresholdBackend())
    assert predictor.predict(_image((40, 50)), tile=48).probs.dtype == np.float32
    assert predictor.predict(_image((60, 50)), tile=48).probs is None
    assert predictor.predict(_image((60, 50)), tile=48, probs="float16").probs.dtype == np.float16


def test_bad_options_are_input_errors():
    predictor = UNetPredictor(ThresholdBackend())
    with pytest.raises(InputError, match="probs"):
        predictor.predict(_image((40, 40)), probs="float64")
    with pytest.raises(InputError, match="too small"):
        predictor.predict(_image((40, 40)), tile=20)
    with pytest.raises(InputError, match="tta"):
        predictor.predict(CountingSource(_image((40, 40))), tta=True)


def test_progress_bar_counts_tiles(capsys):
    UNetPredictor(ThresholdBackend()).predict(_image((100, 100)), tile=48, progress=True)
    err = capsys.readouterr().err
    assert "tile" in err and "Mpixel/s" in err


def test_a_tiff_file_is_segmented_and_large_results_are_saved_as_tiffs(tmp_path, monkeypatch):
    """The `segrt predict --tile --batch` path at a small size: TIFF in (read lazily), TIFFs out."""
    import tifffile

    image = _image((230, 190), seed=4)
    tifffile.imwrite(tmp_path / "big.tif", image)
    predictor = UNetPredictor(ThresholdBackend())
    result = predictor.predict(tmp_path / "big.tif", tile=52, batch=2, probs=None)
    assert result.probs is None and result.classes.shape == (230, 190)
    monkeypatch.setattr(stream, "LARGE_OUTPUT_PIXELS", 100 * 100)
    paths = predictor.save(result, tmp_path / "out", "big")
    assert [p.name for p in paths] == ["big_classes.tif", "big_instances.tif"]
    np.testing.assert_array_equal(tifffile.imread(paths[0]), result.classes)
    np.testing.assert_array_equal(tifffile.imread(paths[1]), result.instances)
    monkeypatch.setattr(stream, "LARGE_OUTPUT_PIXELS", 10**9)
    assert [p.suffix for p in predictor.save(result, tmp_path / "small", "big", image=image)] == [".png"] * 3
