"""FLOPs of an ONNX graph (multiply-add = 2 FLOPs), for batch 1.

Counted on the exported graph, not the torch module, so it counts exactly what the
engines run: Conv, ConvTranspose-free CNNs, Gemm and MatMul. Element-wise ops are
not counted (they are a rounding error next to convolutions).
"""

from __future__ import annotations

from math import prod
from pathlib import Path

import onnx
from onnx import shape_inference


def _shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    shapes: dict[str, list[int]] = {}
    for value in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.dim_value > 0 else 1 for d in dims]
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def count_flops(path: Path | str) -> int:
    model = shape_inference.infer_shapes(onnx.load(str(path)))
    shapes = _shapes(model)
    flops = 0
    for node in model.graph.node:
        if node.op_type == "Conv":
            weight = shapes[node.input[1]]  # (Cout, Cin/groups, kH, kW)
            out = shapes[node.output[0]]
            flops += 2 * prod(out) * prod(weight[1:])
        elif node.op_type == "Gemm":
            a, b = shapes[node.input[0]], shapes[node.input[1]]
            trans_b = any(att.name == "transB" and att.i for att in node.attribute)
            n = b[0] if trans_b else b[1]
            flops += 2 * a[0] * a[1] * n
        elif node.op_type == "MatMul":
            a, out = shapes[node.input[0]], shapes[node.output[0]]
            flops += 2 * prod(out) * a[-1]
    return int(flops)
