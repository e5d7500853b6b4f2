"""bf16 for chosen layers of an OpenVINO model that otherwise runs in float32 (``precision="mixed"``).

OpenVINO compiles a model in one inference precision, and its per-node float32 mark is not honoured
for every layer type (README, OpenVINO section). An explicit type is: a convolution whose inputs
are converted to bf16 in the graph runs on the CPU's bf16 kernels even in a float32 compile, and
the converts around it fuse into its neighbours. So the chosen layers (by ONNX node name prefix)
get ``Convert`` to bf16 on their float inputs and back to float32 on their outputs; everything
else, the box scores, NMS and RoiAlign included, stays float32, in one compiled model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# OpenVINO's Python objects (Model, Node, Output) carry no type hints: they are Any below.

# the layer types worth running in bf16 (the rest is memory bound: converting would cost more)
HEAVY_TYPES = ("Convolution", "GroupConvolution", "ConvolutionBackpropData", "MatMul")


def _name(node: Any) -> str:
    return str(node.get_friendly_name())


def heavy_nodes(model: Any, prefixes: Sequence[str]) -> list[Any]:
    """The convolutions and matmuls of ``model`` named with one of ``prefixes``: by their own name,
    or, where the ONNX import renamed them (a ConvTranspose becomes ``ConvolutionBackpropData_N``
    and its bias ``Add`` keeps the ONNX name), by the names of all their consumers."""
    prefixes = tuple(prefixes)

    def in_scope(op: Any) -> bool:
        consumers = [t.get_node() for out in op.outputs() for t in out.get_target_inputs()]
        return _name(op).startswith(prefixes) or (
            bool(consumers) and all(_name(c).startswith(prefixes) for c in consumers)
        )

    return [op for op in model.get_ordered_ops() if op.get_type_name() in HEAVY_TYPES and in_scope(op)]


def convert_to_bf16(model: Any, nodes: list[Any]) -> int:
    """Run ``nodes`` in bf16 (``model`` is modified in place); returns how many were converted.

    Each node's float inputs (data and weights) pass through ``Convert`` to bf16, and its float
    outputs through ``Convert`` back to float32, so its consumers see the types they had.
    """
    from openvino import opset13 as ops

    converted = 0
    for node in nodes:
        float_outputs = [out for out in node.outputs() if out.get_element_type().is_real()]
        consumers = [list(out.get_target_inputs()) for out in float_outputs]
        changed = False
        for port in node.inputs():
            source = port.get_source_output()
            if source.get_element_type().is_real() and source.get_element_type().get_type_name() != "bf16":
                port.replace_source_output(ops.convert(source, "bf16").output(0))
                changed = True
        if not changed:
            continue
        node.validate_and_infer_types()
        for out, targets in zip(float_outputs, consumers, strict=True):
            back = ops.convert(out, "f32")
            for target in targets:
                target.replace_source_output(back.output(0))
        converted += 1
    model.validate_nodes_and_infer_types()
    return converted
