"""Band-wise connected components equal OpenCV's labelling of the whole image, label for label."""

import cv2
import numpy as np
import pytest

from segrt.unet.components import label_components, merge_pairs


def _blobs(hw, seed, threshold=0.5, sigma=3.0):
    noise = np.random.default_rng(seed).random(hw).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), sigma)
    return smooth > np.quantile(smooth, threshold)


@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("band", [2, 6, 64, 4096])
@pytest.mark.parametrize("hw, seed", [((1, 1), 0), ((97, 61), 1), ((203, 150), 2), ((64, 333), 3)])
def test_band_labels_equal_whole_image_labels(hw, seed, band, connectivity):
    mask = _blobs(hw, seed) if min(hw) > 1 else np.ones(hw, bool)
    n, want = cv2.connectedComponents(mask.astype(np.uint8), connectivity=connectivity)
    got, count = label_components(mask, hw, connectivity=connectivity, band=band)
    assert got.dtype == np.int32 and count == n - 1
    np.testing.assert_array_equal(got, want)


def test_a_spiral_crossing_every_band_many_times_is_one_component():
    """A long snake through many bands: merges chain across boundaries (union-find, not one pass)."""
    mask = np.zeros((41, 41), bool)
    mask[::4, 1:-1] = True  # horizontal runs
    mask[:, 1] = mask[:, -2] = False
    for r in range(0, 37, 4):  # connect alternately at the right and the left end
        c = -2 if (r // 4) % 2 == 0 else 1
        mask[r : r + 5, c] = True
    got, count = label_components(mask, mask.shape, band=2)
    assert count == 1 and set(np.unique(got[mask])) == {1}


def test_labels_can_be_written_into_a_given_array():
    mask = _blobs((50, 40), 5)
    out = np.full((50, 40), -1, np.int32)
    labels, count = label_components(lambda y0, y1: mask[y0:y1], (50, 40), out=out, band=8)
    assert labels is out and count == cv2.connectedComponents(mask.astype(np.uint8), connectivity=4)[0] - 1


def test_merge_pairs_gives_each_label_the_smallest_equivalent():
    root = merge_pairs(6, np.array([5, 2, 6]), np.array([3, 5, 1]))
    assert root.tolist() == [0, 1, 2, 2, 4, 2, 1]


@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("band", [2, 10, 64])
def test_streamed_labels_and_table_equal_opencv_stats_of_the_whole_image(band, connectivity):
    """BandLabeller with stats: labels and the per-instance table equal cv2.connectedComponentsWithStats."""
    from segrt.unet.components import BandLabeller, relabel

    mask = _blobs((131, 77), 7)
    n, want, stats, cents = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=connectivity)
    lab = BandLabeller(77, connectivity, stats=True)
    got = np.concatenate([lab.add(mask[y0 : y0 + band]) for y0 in range(0, 131, band)])
    lut, count = lab.finish()
    relabel(got, lut, band)
    np.testing.assert_array_equal(got, want)
    t = lab.table(lut, count)
    assert count == n - 1
    np.testing.assert_array_equal(t["area"], stats[1:, cv2.CC_STAT_AREA])
    np.testing.assert_array_equal(t["bbox_x0"], stats[1:, cv2.CC_STAT_LEFT])
    np.testing.assert_array_equal(t["bbox_y1"] - t["bbox_y0"], stats[1:, cv2.CC_STAT_HEIGHT])
    np.testing.assert_allclose(np.stack([t["centroid_x"], t["centroid_y"]], 1), cents[1:], rtol=0, atol=1e-9)


def test_empty_mask_gives_an_empty_table_and_a_header_only_csv(tmp_path):
    from segrt.unet.components import BandLabeller
    from segrt.unet.outputs import write_table

    lab = BandLabeller(9, stats=True)
    assert not lab.add(np.zeros((4, 9), bool)).any()
    lut, count = lab.finish()
    table = lab.table(lut, count)
    assert count == 0 and all(len(v) == 0 for v in table.values())
    text = write_table(tmp_path / "t.csv", table).read_text()
    assert text == "label,area,bbox_x0,bbox_y0,bbox_x1,bbox_y1,centroid_x,centroid_y\n"
