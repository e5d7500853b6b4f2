"""Portable Mask R-CNN ONNX -> TensorRT graph: each multi-level RoIAlign becomes one plugin node.

The portable graph computes a multi-level RoIAlign as ~80 nodes per pooler
(level assignment, NonZero/Gather per level, four RoiAlign, ScatterND), all
under the name scope of the ``DeployRCNN`` module that produced them
(``/box_pool/``, ``/mask_pool/``, ``/keypoint_pool/``). With onnx-graphsurgeon
we cut each scope out and put one ``SegrtMultiLevelRoiAlign`` node in its place
(segrt's TensorRT plugin, ``kernels/roi_align``), fed by the same boxes and FPN
levels. Plugin node contract (``kernels/roi_align/multi_level_roi_align_plugin.cpp``)::

    inputs:  rois float32 [K, 4] x1y1x2y2, batch_indices int32 [K], features float32 [1, C, Hl, Wl] x L
    output:  float32 [K, C, h, w]
    attributes (all written): output_height, output_width, sampling_ratio, spatial_scales (floats),
        aligned (0/1), canonical_scale (float), canonical_level, and for readers of the graph
        coordinate_transformation_mode, mode; plugin_version "1", plugin_namespace "segrt".

Nothing else changes, so the rewrite can be checked op for op against the
portable graph (``segrt.export.maskrcnn.ort_plugin`` runs it on the CPU).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from segrt.artifact import metadata as md
from segrt.errors import ArtifactError
from segrt.export.maskrcnn.onnx_export import write_onnx

PLUGIN_OP = "SegrtMultiLevelRoiAlign"
PLUGIN_DOMAIN = "segrt"
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = "segrt"
PLUGIN_LIBRARY = "libsegrt_trt_plugins.so"
POOLER_SCOPES = ("box_pool", "mask_pool", "keypoint_pool")


def _collapse_scope(graph: gs.Graph, scope: str, index: int) -> dict[str, Any] | None:
    """Replace the nodes named ``/<scope>/...`` by one plugin node; None if the scope is absent."""
    prefix = f"/{scope}/"
    nodes = [n for n in graph.nodes if n.name.startswith(prefix)]
    if not nodes:
        return None
    inside = {id(n) for n in nodes}
    produced = {t.name for n in nodes for t in n.outputs}
    roi_aligns = [n for n in nodes if n.op == "RoiAlign"]
    if not roi_aligns:
        raise ArtifactError(f"scope {prefix} holds no RoiAlign node", "re-export with segrt.export.maskrcnn")
    # the subgraph's result: the pooled tensor (written by the last ScatterND) used outside the scope.
    # Other outside uses (the exporter shares shape arithmetic between poolers) stay, and
    # graph.cleanup() keeps exactly the nodes they still need.
    outs = [
        t
        for n in nodes
        for t in n.outputs
        if (any(id(c) not in inside for c in t.outputs) or t in graph.outputs) and n.op == "ScatterND"
    ]
    if len(outs) != 1:
        raise ArtifactError(
            f"scope {prefix} has {len(outs)} pooled outputs used outside it, expected 1",
            "the graph does not look like a segrt Mask R-CNN export; re-export it",
        )
    # levels ordered finest first by their RoiAlign spatial_scale
    levels = sorted(roi_aligns, key=lambda n: -float(n.attrs["spatial_scale"]))
    features = [n.inputs[0] for n in levels]
    feature_names = {f.name for f in features}
    external = {
        t.name: t
        for n in nodes
        for t in n.inputs
        if t.name not in produced and not isinstance(t, gs.Constant) and t.name
    }
    boxes = [
        t
        for name, t in external.items()
        if name not in feature_names
        and t.dtype == np.float32
        and t.shape is not None
        and len(t.shape) == 2
        and t.shape[1] == 4
    ]
    if len(boxes) != 1:
        raise ArtifactError(
            f"scope {prefix}: cannot tell the boxes input among {sorted(external)}",
            "re-export with segrt.export.maskrcnn",
        )
    rois = boxes[0]
    first = levels[0]
    aligned = first.attrs.get("coordinate_transformation_mode", "half_pixel") == "half_pixel"
    attrs = {
        "output_height": int(first.attrs["output_height"]),
        "output_width": int(first.attrs["output_width"]),
        "sampling_ratio": int(first.attrs["sampling_ratio"]),
        "spatial_scales": [float(n.attrs["spatial_scale"]) for n in levels],
        "aligned": int(aligned),
        "canonical_scale": 224.0,
        "canonical_level": 4,
        "coordinate_transformation_mode": "half_pixel" if aligned else "output_half_pixel",
        "mode": str(first.attrs.get("mode", "avg")),
        "plugin_version": PLUGIN_VERSION,
        "plugin_namespace": PLUGIN_NAMESPACE,
    }
    batch = _zero_batch_indices(graph, rois, scope)
    out = outs[0]
    out.inputs[0].outputs.clear()  # detach the ScatterND; cleanup() drops what only it needed
    graph.nodes.append(
        gs.Node(
            op=PLUGIN_OP,
            name=f"{scope}_{PLUGIN_OP}_{index}",
            domain=PLUGIN_DOMAIN,
            attrs=attrs,
            inputs=[rois, batch, *features],
            outputs=[out],
        )
    )
    return attrs


def _zero_batch_indices(graph: gs.Graph, rois: gs.Variable, scope: str) -> gs.Tensor:
    """int32 zeros [K] for the K boxes of ``rois`` (one image): a constant when K is static, else
    computed from the shape of ``rois`` (the mask and keypoint heads pool the detections only)."""
    k = rois.shape[0]
    if isinstance(k, int):
        return gs.Constant(f"{scope}_batch_indices", np.zeros((k,), dtype=np.int32))
    shape = gs.Variable(f"{scope}_rois_shape", np.int64, [2])
    count = gs.Variable(f"{scope}_rois_count", np.int64, [1])
    batch = gs.Variable(f"{scope}_batch_indices", np.int32, [k])
    graph.nodes += [
        gs.Node("Shape", f"{scope}_rois_shape_node", inputs=[rois], outputs=[shape]),
        gs.Node(
            "Slice",
            f"{scope}_rois_count_node",
            inputs=[
                shape,
                gs.Constant(f"{scope}_zero", np.array([0], np.int64)),
                gs.Constant(f"{scope}_one", np.array([1], np.int64)),
            ],
            outputs=[count],
        ),
        gs.Node(
            "ConstantOfShape",
            f"{scope}_batch_indices_node",
            inputs=[count],
            outputs=[batch],
            attrs={"value": onnx.numpy_helper.from_array(np.zeros((1,), np.int32))},
        ),
    ]
    return batch


def rewrite_proto(
    model: onnx.ModelProto, canonical: dict[str, tuple[float, int]] | None = None
) -> tuple[onnx.ModelProto, list[str]]:
    """Collapse every pooler scope into a plugin node; returns (new model, rewritten scopes).

    ``canonical`` overrides (canonical_scale, canonical_level) per scope (default FPN 224, 4).
    """
    model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    graph = gs.import_onnx(model)
    done = []
    for i, scope in enumerate(POOLER_SCOPES):
        attrs = _collapse_scope(graph, scope, i)
        if attrs is not None:
            if canonical and scope in canonical:
                node = graph.nodes[-1]
                node.attrs["canonical_scale"] = float(canonical[scope][0])
                node.attrs["canonical_level"] = int(canonical[scope][1])
            done.append(scope)
            graph.cleanup()
    if not done:
        raise ArtifactError(
            "no multi-level RoIAlign scope found in the graph",
            "pass a portable graph written by segrt export (--graph portable)",
        )
    graph.cleanup().toposort()
    out = gs.export_onnx(graph)
    out.ir_version = model.ir_version
    if not any(o.domain == PLUGIN_DOMAIN for o in out.opset_import):
        out.opset_import.append(onnx.helper.make_opsetid(PLUGIN_DOMAIN, 1))
    return out, done


def portable_to_tensorrt(src: str | Path, dst: str | Path) -> Path:
    """Write the TensorRT graph of a portable Mask R-CNN ONNX file (metadata updated, atomic)."""
    src = Path(src)
    model = onnx.load(str(src))
    text = {p.key: p.value for p in model.metadata_props}.get(md.METADATA_KEY)
    meta = md.decode(text, str(src))
    if meta.get("graph") != "portable":
        raise ArtifactError(
            f"{src} is a {meta.get('graph')!r} graph, not a portable one",
            "rewrite the portable graph (segrt export --graph portable) instead",
        )
    out, scopes = rewrite_proto(model)
    meta = dict(meta)
    meta.pop("format_version", None)
    meta["graph"] = "tensorrt"
    meta["plugin"] = {
        "library": PLUGIN_LIBRARY,
        "version": PLUGIN_VERSION,
        "namespace": PLUGIN_NAMESPACE,
        "ops": [PLUGIN_OP],
    }
    meta["plugin_nodes"] = scopes
    return write_onnx(out, meta, dst)


def plugin_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The plugin nodes of a TensorRT graph (for tests and inspection)."""
    return [n for n in model.graph.node if n.op_type == PLUGIN_OP]


def describe(model: onnx.ModelProto) -> str:
    """One line per plugin node with its attributes (for logs)."""
    lines = []
    for n in plugin_nodes(model):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()}
        lines.append(f"{n.name}: {json.dumps(attrs)}")
    return "\n".join(lines)
