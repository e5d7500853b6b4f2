"""Native ops with torchvision's names and semantics: numpy arrays run on the CPU, CUDA tensors on the GPU.

``from segrt.ops import roi_align, multi_scale_roi_align, fpn_scales``; see :mod:`segrt.ops.roi_align`.
"""

from segrt.ops.roi_align import fpn_scales, is_cuda_tensor, multi_scale_roi_align, roi_align

__all__ = ["fpn_scales", "is_cuda_tensor", "multi_scale_roi_align", "roi_align"]
