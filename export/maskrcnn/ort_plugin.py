"""Run the TensorRT graph without TensorRT: the plugin op on the CPU, inside ONNX Runtime.

``SegrtMultiLevelRoiAlign`` nodes are executed by an onnxruntime-extensions
Python custom op that calls segrt's C++ CPU kernel (``segrt.ops``, the
same semantics as the CUDA kernel behind the TensorRT plugin). Everything else
in the graph runs as ONNX Runtime's standard ops. This is how the tests prove
that the rewritten graph computes what the portable graph computes.

onnxruntime-extensions Python ops live in the ``ai.onnx.contrib`` domain, have
a fixed input count and take only int/float/string attributes, so
``standin_model`` makes a copy of the graph in which each plugin node is moved
to that domain (op type suffixed with its level count) and ``spatial_scales``
is passed as a JSON string. The values are the node's own attributes.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import onnx

from segrt.errors import BackendUnavailableError
from segrt.export.maskrcnn.trt_graph import PLUGIN_OP

CONTRIB_DOMAIN = "ai.onnx.contrib"


def _extensions():
    try:
        import onnxruntime_extensions as ortx
    except ImportError:
        raise BackendUnavailableError(
            "running the TensorRT graph on the CPU needs onnxruntime-extensions",
            "pip install onnxruntime-extensions (in segrt[dev])",
        ) from None
    return ortx


@functools.cache
def register(num_levels: int) -> str:
    """Register the CPU stand-in for a plugin node with ``num_levels`` feature inputs; returns its op type."""
    ortx = _extensions()
    T = ortx.PyCustomOpDef
    op_type = f"{PLUGIN_OP}L{num_levels}"

    @ortx.onnx_op(
        op_type=op_type,
        inputs=[T.dt_float, T.dt_int32] + [T.dt_float] * num_levels,
        outputs=[T.dt_float],
        attrs={
            "output_height": T.dt_int64,
            "output_width": T.dt_int64,
            "sampling_ratio": T.dt_int64,
            "aligned": T.dt_int64,
            "canonical_scale": T.dt_float,
            "canonical_level": T.dt_int64,
            "spatial_scales": T.dt_string,
        },
    )
    def _multi_level_roi_align(rois, batch_indices, *features, **attrs):
        from segrt.ops import multi_scale_roi_align

        return multi_scale_roi_align(
            [np.ascontiguousarray(f, dtype=np.float32) for f in features],
            np.ascontiguousarray(rois, dtype=np.float32),
            np.asarray(batch_indices).astype(np.int64),
            (attrs["output_height"], attrs["output_width"]),
            json.loads(attrs["spatial_scales"]),
            attrs["sampling_ratio"],
            aligned=bool(attrs["aligned"]),
            canonical_scale=attrs["canonical_scale"],
            canonical_level=attrs["canonical_level"],
        )

    return op_type


def standin_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of a TensorRT graph whose plugin nodes run as the registered CPU stand-in."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    found = 0
    for node in model.graph.node:
        if node.op_type != PLUGIN_OP:
            continue
        found += 1
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        node.op_type = register(len(node.input) - 2)
        node.domain = CONTRIB_DOMAIN
        del node.attribute[:]
        for key in ("output_height", "output_width", "sampling_ratio", "aligned", "canonical_level"):
            node.attribute.append(onnx.helper.make_attribute(key, int(attrs[key])))
        node.attribute.append(onnx.helper.make_attribute("canonical_scale", float(attrs["canonical_scale"])))
        node.attribute.append(
            onnx.helper.make_attribute("spatial_scales", json.dumps([float(s) for s in attrs["spatial_scales"]]))
        )
    if not found:
        raise ValueError(f"the graph has no {PLUGIN_OP} node; pass a TensorRT graph (segrt export --graph tensorrt)")
    model.opset_import.append(onnx.helper.make_opsetid(CONTRIB_DOMAIN, 1))
    return model


def standin_session(path: str | Path, threads: int | None = None):
    """An ``onnxruntime.InferenceSession`` running the TensorRT graph at ``path`` on the CPU."""
    import onnxruntime as ort

    ortx = _extensions()
    proto = standin_model(onnx.load(str(path)))
    opts = ort.SessionOptions()
    opts.register_custom_ops_library(ortx.get_library_path())
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
