"""The U-Net pipeline: overlap-tile geometry, streaming tiled inference, band-wise connected
components, segmentation metrics, and the predictor that ties them together."""

from segrt.unet.predictor import SegmentationResult, UNetPredictor

__all__ = ["SegmentationResult", "UNetPredictor"]
