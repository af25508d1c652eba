"""FLOPs (multiply-add = 2 FLOPs, batch 1) and weight storage of an ONNX graph.

Counted on the exported graph, not the torch module, so it counts exactly what the
engines run: Conv, Gemm and MatMul. Element-wise ops are not counted (they are a
rounding error next to convolutions). With sparse=True a layer's FLOPs scale by its
weight's share of non-zeros: what a sparse kernel would execute for a pruned network
(onnxruntime itself runs it at the dense cost).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

from adaptinf.packed_floats import load_onnx_model


@dataclass(frozen=True)
class WeightedLayer:
    """One Conv, Gemm or MatMul node, in graph order."""

    op: str
    weight: np.ndarray | None     # its weight initializer (None: a product of two activations)
    input_numel: int              # values of its input activation per frame
    flops: int                    # dense

    @property
    def density(self) -> float:
        if self.weight is None or self.weight.size == 0:
            return 1.0
        return float(np.count_nonzero(self.weight)) / self.weight.size


def _shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    shapes: dict[str, list[int]] = {}
    for value in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.dim_value > 0 else 1 for d in dims]
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def node_flops(node: onnx.NodeProto, shapes: dict[str, list[int]]) -> int | None:
    """A Conv, Gemm or MatMul node's dense FLOPs; None for any other op (not counted)."""
    if node.op_type == "Conv":
        weight = shapes[node.input[1]]  # (Cout, Cin/groups, kH, kW)
        return 2 * prod(shapes[node.output[0]]) * prod(weight[1:])
    if node.op_type == "Gemm":
        a, b = shapes[node.input[0]], shapes[node.input[1]]
        trans_b = any(att.name == "transB" and att.i for att in node.attribute)
        return 2 * a[0] * a[1] * (b[0] if trans_b else b[1])
    if node.op_type == "MatMul":
        return 2 * prod(shapes[node.output[0]]) * shapes[node.input[0]][-1]
    return None


def graph_node_flops(model: onnx.ModelProto) -> list[int]:
    """Each node's FLOPs in graph order (0 for the ops not counted); `model` has its shapes inferred."""
    shapes = _shapes(model)
    return [int(node_flops(node, shapes) or 0) for node in model.graph.node]


def weighted_layers(path: Path | str) -> list[WeightedLayer]:
    model = shape_inference.infer_shapes(load_onnx_model(path))
    shapes = _shapes(model)
    weights = {init.name: init for init in model.graph.initializer}
    layers = []
    for node in model.graph.node:
        flops = node_flops(node, shapes)
        if flops is None:
            continue
        w = weights.get(node.input[1])
        layers.append(WeightedLayer(node.op_type, None if w is None else numpy_helper.to_array(w),
                                    prod(shapes[node.input[0]]), int(flops)))
    return layers


def count_flops(path: Path | str, sparse: bool = False) -> int:
    return int(sum(layer.flops * (layer.density if sparse else 1.0) for layer in weighted_layers(path)))
