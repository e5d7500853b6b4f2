"""The Mask R-CNN / Keypoint R-CNN pipeline: the result type, mask pasting, keypoint decoding,
sliding windows for large images, COCO formats and evaluation, pictures, and the predictor."""

from segrt.rcnn.instances import Instances
from segrt.rcnn.predictor import MaskRCNNPredictor

__all__ = ["Instances", "MaskRCNNPredictor"]
