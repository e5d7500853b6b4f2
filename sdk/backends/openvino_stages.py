"""An OpenVINO model cut into stages, each compiled in its own precision and run in turn.

OpenVINO compiles a model in one inference precision; its per-node float32 mark is not honoured
for every layer type (README, OpenVINO section). Cutting the graph is the reliable way to mix:
nodes chosen by name prefix run in bf16, the others in fp32, and every tensor that crosses from
one stage to a later one is passed on as a plain array.

The stages follow the graph order: a stage takes every node of its precision whose inputs are
ready, so a model with one bf16 region becomes fp32 -> bf16 -> fp32.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

_SOURCES = ("Parameter", "Constant")
_HINTS = {"bf16": "bf16", "fp32": "f32"}


@dataclass
class Stage:
    """One compiled part: what it reads (original input names or earlier cuts) and writes."""

    compiled: Any
    inputs: list[str]
    outputs: list[str]     # "cutN" for tensors later stages read, "resultN" for the model's outputs
    precision: str
    nodes: int


def _name(node) -> str:
    return node.get_friendly_name()


def _is_source(node) -> bool:
    return node.get_type_name() in _SOURCES


def bf16_nodes(model, prefixes: Sequence[str]) -> set[str]:
    """Names of the nodes to run in bf16: those named with ``prefixes``, plus nodes that sit wholly
    inside that region (every data input and every consumer in it; OpenVINO renames some layers)."""
    chosen = {_name(op) for op in model.get_ops() if _name(op).startswith(tuple(prefixes))}
    for op in model.get_ordered_ops():
        if _name(op) in chosen or _is_source(op) or op.get_type_name() == "Result":
            continue
        inputs = [i.get_source_output().get_node() for i in op.inputs()]
        consumers = [t.get_node() for out in op.outputs() for t in out.get_target_inputs()]
        if consumers and all(_name(n) in chosen for n in consumers) and all(
                _is_source(n) or _name(n) in chosen for n in inputs):
            chosen.add(_name(op))
    return chosen


def compile_stages(core, model, bf16: set[str], device: str, properties: Mapping[str, Any]) -> list[Stage]:
    """Cut ``model`` (modified in place) into stages: nodes in ``bf16`` in bf16, the rest in fp32."""
    import openvino as ov
    from openvino import passes

    manager = passes.Manager()  # fold static shapes first, so that only data tensors cross a cut
    manager.register_pass(passes.ConstantFolding())
    manager.run_passes(model)
    result_index = {_name(r): i for i, r in enumerate(model.get_results())}
    stages: list[Stage] = []
    cuts = 0
    while True:
        ops = model.get_ordered_ops()
        first = next(op for op in ops if not _is_source(op) and op.get_type_name() != "Result")
        precision = "bf16" if _name(first) in bf16 else "fp32"
        members: set[str] = set()
        for op in ops:
            if _is_source(op):
                continue
            ready = all(_is_source(i.get_source_output().get_node()) or _name(i.get_source_output().get_node()) in members
                        for i in op.inputs())
            same = op.get_type_name() == "Result" or (_name(op) in bf16) == (precision == "bf16")
            if ready and same:
                members.add(_name(op))
        crossing, keys, results = [], [], []
        for op in ops:
            if _name(op) not in members:
                continue
            if op.get_type_name() == "Result":
                results.append(op)
                continue
            for out in op.outputs():
                if any(_name(t.get_node()) not in members for t in out.get_target_inputs()):
                    crossing.append(out)
                    keys.append(f"cut{cuts}")
                    cuts += 1
        feeds = [p for p in model.get_parameters()
                 if any(_name(t.get_node()) in members for t in p.output(0).get_target_inputs())]
        part = ov.Model(crossing + [r.input(0).get_source_output() for r in results], feeds)
        compiled = core.compile_model(part, device, {**properties, "INFERENCE_PRECISION_HINT": _HINTS[precision]})
        stages.append(Stage(compiled, [_name(p) for p in feeds],
                            keys + [f"result{result_index[_name(r)]}" for r in results], precision, len(members)))
        remaining = [r for r in model.get_results() if _name(r) not in members]
        if not remaining:
            return stages
        cut_inputs = []
        for out, key in zip(crossing, keys):
            parameter = ov.opset13.parameter(out.get_partial_shape(), out.get_element_type(), name=key)
            out.replace(parameter.output(0))
            cut_inputs.append(parameter)
        kept = [p for p in model.get_parameters() if p.output(0).get_target_inputs()]
        model = ov.Model(remaining, kept + cut_inputs)


class StagedRequest:
    """One infer request per stage (one caller at a time)."""

    def __init__(self, stages: list[Stage]) -> None:
        self.stages = stages
        self.requests = [s.compiled.create_infer_request() for s in stages]

    def infer(self, feed: Mapping[str, np.ndarray], output_count: int) -> list[np.ndarray]:
        """The model's outputs, in order, as fresh arrays."""
        values = dict(feed)
        for stage, request in zip(self.stages, self.requests):
            request.infer([values[k] for k in stage.inputs], share_inputs=True)
            for i, key in enumerate(stage.outputs):
                # cuts are read by later stages of this same call: a view of the request's memory is enough
                data = request.get_output_tensor(i).data
                values[key] = np.array(data) if key.startswith("result") else data
        return [values[f"result{i}"] for i in range(output_count)]
