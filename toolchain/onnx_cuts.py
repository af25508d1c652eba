"""Where any ONNX model can be split, found from its graph alone, and the cut itself.

Neurosurgeon and DADS partition a DNN at layer granularity with no retraining; this is
that partitioning for an arbitrary single-input ONNX graph.

A *cut* after node i (graph order is topological) is the set of activations that are
produced at or before node i and still consumed after it: exactly what the head must
hand to the tail, so every path from the input to the outputs crosses it. One linear
scan over the nodes finds all of them. A single-tensor cut (a chain model's layer
boundary, a residual network's block boundary) is the natural candidate; a graph whose
skip connections span the model (an encoder-decoder) only has multi-tensor cuts, the
boundaries of its blocks, and those are kept too, up to MAX_CUT_TENSORS tensors.

Weights, constants and anything computed from them alone are not activations: both
sides carry their own copies. A cut that still needs the frame itself is no cut.

Heads and tails are cut with onnx's own Extractor. A multi-tensor cut is packed so the
link still carries one tensor: the head flattens and concatenates its tensors into one
[1, n] upload, and the tail splits and reshapes it back.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, utils

from adaptinf.toolchain.onnx_flops import graph_node_flops

MAX_CUT_TENSORS = 4
UPLOAD = "adaptinf_upload"          # the packed tensor of a multi-tensor cut


@dataclass(frozen=True)
class Cut:
    after: int                       # the index of the last node on the head's side
    tensors: tuple[str, ...]         # what crosses, in a fixed order
    shapes: tuple[tuple[int, ...], ...]
    head_flops: int                  # FLOPs of the nodes up to and including `after`

    @property
    def numel(self) -> int:
        return sum(prod(s) for s in self.shapes)


def _subgraph_names(node: onnx.NodeProto) -> set[str]:
    """Outer-scope names a control-flow node's subgraphs read (If, Loop, Scan)."""
    names: set[str] = set()
    for attr in node.attribute:
        for graph in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
            for inner in graph.node:
                names.update(i for i in inner.input if i)
                names |= _subgraph_names(inner)
    return names


def _shapes_and_types(model: onnx.ModelProto) -> dict[str, tuple[tuple[int, ...] | None, int]]:
    out = {}
    for value in (*model.graph.value_info, *model.graph.input, *model.graph.output):
        t = value.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
        out[value.name] = (None if any(d <= 0 for d in dims) else dims, t.elem_type)
    return out


def find_cuts(model: onnx.ModelProto, max_tensors: int = MAX_CUT_TENSORS) -> list[Cut]:
    """Every cut of at most `max_tensors` float32 activations with static shapes, in graph
    order. `model` has a single input and its shapes inferred (onnx.shape_inference)."""
    graph = model.graph
    nodes = list(graph.node)
    frame = graph.input[0].name
    static = {init.name for init in graph.initializer}
    inputs_of = []
    for node in nodes:
        used = [i for i in node.input if i] + sorted(_subgraph_names(node))
        inputs_of.append(used)
        if node.op_type == "Constant" or (used and all(i in static for i in used)) or not used:
            static.update(o for o in node.output if o)
    last_use = {frame: -1}
    for i, used in enumerate(inputs_of):
        for name in used:
            last_use[name] = i
    end = len(nodes)
    for out in graph.output:
        last_use[out.name] = end
    info = _shapes_and_types(model)
    flops = graph_node_flops(model)

    live: dict[str, None] = {frame: None} if last_use[frame] >= 0 else {}
    cuts, done = [], 0
    for i, node in enumerate(nodes):
        done += flops[i]
        for name in node.output:
            if name and name not in static and last_use.get(name, -1) > i:
                live[name] = None
        for name in inputs_of[i]:
            if last_use.get(name) == i:
                live.pop(name, None)
        if not 0 < len(live) <= max_tensors or frame in live or i == end - 1:
            continue
        tensors = tuple(live)
        if all(last_use[t] == end for t in tensors):     # only the model's outputs are left
            continue
        described = [info.get(t, (None, 0)) for t in tensors]
        if all(shape is not None and elem == TensorProto.FLOAT for shape, elem in described):
            cuts.append(Cut(i, tensors, tuple(shape for shape, _ in described), done))
    return cuts


def spread(cuts: list[Cut], total_flops: int, n: int) -> list[Cut]:
    """At most n cuts spread over the model's FLOPs: for each of n evenly spaced targets,
    the cut with the smallest upload within half a spacing of it (the nearest if none is),
    with work on both sides."""
    useful = [c for c in cuts if 0 < c.head_flops < total_flops]
    chosen: list[Cut] = []
    for k in range(1, n + 1):
        target = total_flops * k / (n + 1)
        window = total_flops / (2 * (n + 1))
        pool = [c for c in useful if c not in chosen]
        if not pool:
            break
        near = [c for c in pool if abs(c.head_flops - target) <= window]
        best = (min(near, key=lambda c: (c.numel, len(c.tensors), abs(c.head_flops - target))) if near
                else min(pool, key=lambda c: abs(c.head_flops - target)))
        chosen.append(best)
    return sorted(set(chosen), key=lambda c: c.after)


def _finish(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    model.graph.name = name
    onnx.checker.check_model(model)
    return model


def head_and_tail(model: onnx.ModelProto, cut: Cut, extractor: utils.Extractor | None = None
                  ) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """The head (frame -> the cut, packed into one tensor) and the tail (that tensor ->
    the model's outputs), cut by onnx's Extractor."""
    extractor = extractor or utils.Extractor(model)
    frame = model.graph.input[0].name
    outputs = [o.name for o in model.graph.output]
    head = extractor.extract_model([frame], list(cut.tensors))
    tail = extractor.extract_model(list(cut.tensors), outputs)
    if len(cut.tensors) > 1:
        _pack_head(head, cut)
        _unpack_tail(tail, cut)
    return _finish(head, "adaptinf_head"), _finish(tail, "adaptinf_tail")


def _pack_head(head: onnx.ModelProto, cut: Cut) -> None:
    g = head.graph
    g.initializer.append(numpy_helper.from_array(np.array([1, -1], np.int64), "adaptinf_flat"))
    flat = []
    for t in cut.tensors:
        g.node.append(helper.make_node("Reshape", [t, "adaptinf_flat"], [f"{t}/flat"]))
        flat.append(f"{t}/flat")
    g.node.append(helper.make_node("Concat", flat, [UPLOAD], axis=1))
    del g.output[:]
    g.output.append(helper.make_tensor_value_info(UPLOAD, TensorProto.FLOAT, [1, cut.numel]))


def _unpack_tail(tail: onnx.ModelProto, cut: Cut) -> None:
    g = tail.graph
    sizes = [prod(s) for s in cut.shapes]
    g.initializer.append(numpy_helper.from_array(np.array(sizes, np.int64), "adaptinf_sizes"))
    parts = [f"{t}/flat" for t in cut.tensors]
    nodes = [helper.make_node("Split", [UPLOAD, "adaptinf_sizes"], parts, axis=1)]
    for t, shape, part in zip(cut.tensors, cut.shapes, parts):
        g.initializer.append(numpy_helper.from_array(np.array(shape, np.int64), f"{t}/shape"))
        nodes.append(helper.make_node("Reshape", [part, f"{t}/shape"], [t]))
    old = list(g.node)
    del g.node[:]
    g.node.extend(nodes + old)
    del g.input[:]
    g.input.append(helper.make_tensor_value_info(UPLOAD, TensorProto.FLOAT, [1, cut.numel]))
