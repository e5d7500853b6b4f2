"""Sliding-window Mask R-CNN: every object once, from a window that sees it whole; sparse masks match dense ones."""

import cv2
import numpy as np
import pytest

from segrt.backends.base import Backend, TensorInfo
from segrt.rcnn.coco import encode_rle, run_lengths
from segrt.rcnn.masks import MaskCrops, paste_masks
from segrt.rcnn.predictor import MaskRCNNPredictor, draw_instances, instances_to_coco
from segrt.rcnn.windows import axis_starts, plan_windows, predict_windows

OUTPUTS = ["boxes", "scores", "labels", "num_detections", "masks"]  # the graph contract in segrt/maskrcnn.py


class BlobDetector(Backend):
    """A 'Mask R-CNN' following the exported graph contract: every bright connected blob is a detection.

    Boxes are the blobs' pixel extents; masks the blob resized into its box (28 x 28); scores
    grow with the blob's area. Blobs touching the valid region's edge are still reported (cut).
    """

    def __init__(self, input_hw, resize=None):
        self.path = None
        resize = resize or (min(input_hw), max(input_hw))
        self.metadata = {
            "kind": "maskrcnn",
            "class_names": ["__background__", "blob"],
            "input_size": list(input_hw),
            "input_dtype": "float32",
            "resize": {"min_size": resize[0], "max_size": resize[1]},
        }
        self.inputs = [
            TensorInfo("image", (1, 3) + tuple(input_hw), np.dtype(np.float32)),
            TensorInfo("image_size", (2,), np.dtype(np.float32)),
        ]
        self.outputs = [TensorInfo(n, (None,), np.dtype(np.float32)) for n in OUTPUTS]
        self.calls = 0

    def run(self, feed):
        self.calls += 1
        h, w = (int(v) for v in feed["image_size"])
        fg = (feed["image"][0, 0, :h, :w] > 0.5).astype(np.uint8)
        n, lab, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
        boxes, masks = [], []
        for i in range(1, n):
            x, y, bw, bh, _ = stats[i]
            boxes.append([x, y, x + bw, y + bh])
            masks.append(
                cv2.resize(
                    (lab[y : y + bh, x : x + bw] == i).astype(np.float32), (28, 28), interpolation=cv2.INTER_AREA
                )
            )
        k = len(boxes)
        return {
            "boxes": np.asarray(boxes, np.float32).reshape(k, 4),
            "scores": np.asarray([0.5 + min(float(stats[i][4]) / 1e3, 0.49) for i in range(1, n)], np.float32),
            "labels": np.ones(k, np.int64),
            "num_detections": np.array([k], np.int64),
            "masks": np.asarray(masks, np.float32).reshape(k, 28, 28),
        }


def _disks(hw=(300, 411), n=40, seed=0):
    rng = np.random.default_rng(seed)
    img = np.zeros(hw, np.uint16)
    for _ in range(n):
        r = int(rng.integers(4, 13))
        cy, cx = int(rng.integers(0, hw[0])), int(rng.integers(0, hw[1]))
        if img[max(cy - r - 3, 0) : cy + r + 4, max(cx - r - 3, 0) : cx + r + 4].any():
            continue  # keep the disks apart: one blob, one object
        cv2.circle(img, (cx, cy), r, 4000, -1)
    return img


def _match(a, b):
    """For each box of a, the IoU-best box of b."""
    from segrt.rcnn.windows import box_iou

    return [float(box_iou(box, b.boxes).max()) if len(b) else 0.0 for box in a.boxes]


@pytest.mark.parametrize("window, overlap", [((96, 96), 40), ((128, 80), 32)])
def test_windows_find_every_object_once_as_the_whole_image_does(window, overlap):
    image = _disks()
    whole = MaskRCNNPredictor(BlobDetector((304, 416), resize=(300, 411))).predict(image, tiles=False)  # scale 1
    backend = BlobDetector(window)
    tiled = MaskRCNNPredictor(backend).predict(image, tiles=True, overlap=overlap)
    assert backend.calls == len(plan_windows(image.shape, window, overlap)) > 4
    assert tiled.masks is None and len(tiled.mask_crops) == len(tiled) == len(whole) > 20
    assert min(_match(whole, tiled)) > 0.99 and min(_match(tiled, whole)) > 0.99  # same boxes, no extras
    dense_whole = whole.masks
    order = [int(np.argmax([np.abs(tb - wb).sum() < 1e-3 for wb in whole.boxes])) for tb in tiled.boxes]
    for i, j in enumerate(order):
        m, w = tiled.mask(i), dense_whole[j]
        assert (m & w).sum() / (m | w).sum() > 0.95


def test_objects_larger_than_the_overlap_are_lost_and_said_so():
    image = np.zeros((200, 200), np.uint16)
    cv2.circle(image, (100, 100), 40, 4000, -1)  # 81 px wide, overlap 20: cut in every window
    tiled = MaskRCNNPredictor(BlobDetector((96, 96))).predict(image, tiles=True, overlap=20)
    assert len(tiled) == 0
    assert len(MaskRCNNPredictor(BlobDetector((96, 96))).predict(image, tiles=True, overlap=90)) == 1


def test_predict_decides_windows_for_images_much_larger_than_the_input():
    predictor = MaskRCNNPredictor(BlobDetector((128, 128)))
    assert not predictor.uses_windows(np.zeros((200, 250), np.uint16))
    assert predictor.uses_windows(np.zeros((300, 600), np.uint16))
    assert predictor.predict(_disks((300, 600), seed=1)).mask_crops is not None


def test_integer_images_are_scaled_by_the_whole_image_maximum():
    image = _disks()
    image[0:3, 0:3] = 8000  # the brightest pixels are in one window only; blobs stay at 4000 / 8000 <= 0.5
    tiled = MaskRCNNPredictor(BlobDetector((96, 96))).predict(image, tiles=True, overlap=40)
    assert len(tiled) == 1  # only the bright corner: other windows would see 1.0 with their own maximum


def test_windows_cover_the_axis_and_the_last_is_flush():
    assert axis_starts(100, 128, 32) == [0]
    assert axis_starts(300, 96, 40) == [0, 56, 112, 168, 204]
    wins = plan_windows((300, 411), (96, 96), 40)
    covered = np.zeros((300, 411), bool)
    for w in wins:
        covered[w.y0 : w.y0 + w.h, w.x0 : w.x0 + w.w] = True
        assert (w.h, w.w) == (96, 96)
    assert covered.all()


def test_sparse_masks_densify_and_encode_like_dense_masks():
    rng = np.random.default_rng(0)
    masks = rng.random((5, 28, 28)).astype(np.float32)
    boxes = np.array(
        [[3, 4, 40, 30], [-10, -5, 20, 12], [60, 50, 79, 59], [70, 55, 95, 80], [0, 0, 79, 59]], np.float32
    )
    dense = paste_masks(masks, boxes, (60, 80))
    from segrt.rcnn.masks import paste_crops

    pasted = list(paste_crops(masks, boxes, (60, 80)))
    crops = MaskCrops([c for _, _, c in pasted], np.array([(y, x) for y, x, _ in pasted]), (60, 80))
    np.testing.assert_array_equal(crops.dense(), dense)
    for i in range(5):
        assert crops.run_lengths(i) == run_lengths(dense[i])
    from segrt.rcnn.instances import Instances

    n = len(boxes)
    args = (boxes, np.linspace(1, 0.5, n).astype(np.float32), np.ones(n, np.int64), ["b"] * n)
    a = Instances(*args, dense, None, (60, 80))
    b = Instances(*args, None, None, (60, 80), mask_crops=crops)
    assert instances_to_coco(a) == instances_to_coco(b)
    assert [d["segmentation"] for d in instances_to_coco(b)] == [encode_rle(m) for m in dense]
    image = rng.integers(0, 255, (60, 80, 3)).astype(np.uint8)
    np.testing.assert_array_equal(draw_instances(image, a), draw_instances(image, b))
    np.testing.assert_array_equal(b.dense_masks(), dense)


def test_windows_read_lazy_sources(tmp_path):
    import tifffile

    image = _disks(seed=2)
    tifffile.imwrite(tmp_path / "a.tif", image)
    predictor = MaskRCNNPredictor(BlobDetector((96, 96)))
    a = predict_windows(predictor, image, overlap=40)
    b = predictor.predict(tmp_path / "a.tif", tiles=True, overlap=40)
    np.testing.assert_array_equal(a.boxes, b.boxes)
