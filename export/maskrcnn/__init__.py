"""Mask R-CNN / Keypoint R-CNN (torchvision is the model): training, export, benchmark.

models.py       config dataclass, builders (resnet18-FPN demo model, torchvision R50 archs,
                R101 / X50 / X101 bodies from resnet_fpn_backbone), calibrate_batchnorm,
                load_torchvision_state_dict (plain torchvision weights, checked key by key)
coco.py         COCO instances reading (polygons + RLE), training samples, DSB2018 demo files
train.py        the training loop
deploy.py       DeployRCNN: the inference path as one static-shape exportable graph
onnx_export.py  portable ONNX + metadata
trt_graph.py    TensorRT graph: multi-level RoIAlign -> SegrtMultiLevelRoiAlign plugin nodes
ort_plugin.py   runs the TensorRT graph on the CPU (plugin op via onnxruntime-extensions)
reference.py    torchvision eager behind the runtime's predictor interface (oracle, baseline)
bench.py        torchvision eager vs segrt on ONNX Runtime
cli.py          `segrt` sub-command hooks
"""

from segrt.export.maskrcnn.models import (
    ARCHS,
    MaskRCNNConfig,
    build_model,
    load_torchvision_state_dict,
    model_from_checkpoint,
)

__all__ = ["ARCHS", "MaskRCNNConfig", "build_model", "load_torchvision_state_dict", "model_from_checkpoint"]
