"""Per-layer features of an ONNX graph, summed by layer type (Neurosurgeon's regression inputs).

Thesis 4.3.2 (after Neurosurgeon, Kang et al. ASPLOS 2017): latency and energy are
regressed on the layers' types and the number and size of their input and output feature
maps, so one model serves every CNN and partition. Per graph, summed over its layers:
convolution multiply-accumulates and feature-map elements, fully-connected MACs,
element-wise elements (activations, normalisation, adds, pooling), and the node count
(per-layer launch overhead; constants and shape queries, folded at load, do not count).
"""

from __future__ import annotations

from math import prod
from pathlib import Path

from onnx import shape_inference

from adaptinf.packed_floats import load_onnx_model

FEATURES = ("conv_gmac", "conv_feature_melem", "fc_gmac", "elementwise_melem", "layers")
# nodes that do no work when the graph runs: onnxruntime and TensorRT fold them away at load
FREE = {"Constant", "Identity", "Shape", "ConstantOfShape"}
ELEMENTWISE = {"Relu", "Add", "Mul", "Sub", "Div", "BatchNormalization", "MaxPool", "AveragePool",
               "GlobalAveragePool", "ReduceMean", "Cast", "Transpose", "Clip", "Sigmoid"}


def graph_features(path: Path | str) -> dict[str, float]:
    model = shape_inference.infer_shapes(load_onnx_model(path))
    shapes = {}
    for v in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        shapes[v.name] = [d.dim_value if d.dim_value > 0 else 1 for d in v.type.tensor_type.shape.dim]
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    f = dict.fromkeys(FEATURES, 0.0)
    for node in model.graph.node:
        out = prod(shapes.get(node.output[0], [0]))
        if node.op_type == "Conv":
            f["conv_gmac"] += out * prod(shapes[node.input[1]][1:]) / 1e9
            f["conv_feature_melem"] += (prod(shapes.get(node.input[0], [0])) + out) / 1e6
        elif node.op_type in ("Gemm", "MatMul"):
            f["fc_gmac"] += out * shapes[node.input[0]][-1] / 1e9
        elif node.op_type in ELEMENTWISE:
            f["elementwise_melem"] += out / 1e6
        if node.op_type not in FREE:
            f["layers"] += 1
    return f
