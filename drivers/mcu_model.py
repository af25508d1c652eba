"""Fully-connected nets for the MCU: the blobs the firmware loads, and a bit-exact host reference.

The formats and the arithmetic are those of firmware/stm32/include/fc.h (one net, "AIFC")
and dsnn.h (a multi-dsNN system, "AIMS": a tree selector and up to two nets). int8 nets are
quantised symmetrically (zero point 0): per layer a weight scale s_w = max|W| / 127 and an
input scale s_x (from calibration data), int32 biases b_q = round(b / (s_w s_x)); hidden
layers requantise with s_w s_x / s_y, the last turns accumulators into logits with s_w s_x.
`reference_logits` repeats the firmware's integer and float32 steps exactly, so the MCU's
answers can be checked bit for bit (confidence to float32 rounding of exp).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

MAGIC = b"AIFC"
VERSION = 1
SYSTEM_MAGIC = b"AIMS"
SYSTEM_VERSION = 1
MAX_NETS = 2
MAX_NODES = 512
MAX_LAYERS = 8
MAX_INPUT = 1024          # FC_MAX_INPUT: the features a net takes (its first layer's inputs)
MAX_WIDTH = 256           # FC_MAX_WIDTH: the outputs of any layer
MODEL_BYTES = 96 * 1024   # FC_MODEL_BYTES: the firmware's model buffer


@dataclass(frozen=True)
class QuantLayer:
    weights: np.ndarray   # int8 (out, in) or float32
    bias: np.ndarray      # int32 (out,) or float32
    requant: float        # float32 multiplier
    relu: bool


@dataclass(frozen=True)
class McuNet:
    dtype: str            # "int8" | "float32"
    input_scale: float
    layers: tuple[QuantLayer, ...]

    @property
    def input_dim(self) -> int:
        return self.layers[0].weights.shape[1]

    @property
    def classes(self) -> int:
        return self.layers[-1].weights.shape[0]

    @property
    def macs(self) -> int:
        return sum(int(np.prod(layer.weights.shape)) for layer in self.layers)


def check_shape(shapes: list[tuple[int, int]]) -> None:
    """ValueError saying which cap a net of these (out, in) layers exceeds; the firmware
    checks the same at load (MODEL, with the reason)."""
    if not 1 <= len(shapes) <= MAX_LAYERS:
        raise ValueError(f"the firmware takes 1 to {MAX_LAYERS} layers, not {len(shapes)}")
    if shapes[0][1] > MAX_INPUT:
        raise ValueError(f"the net takes {shapes[0][1]} input features; the firmware takes at most {MAX_INPUT}")
    widest = max(out for out, _ in shapes)
    if widest > MAX_WIDTH:
        raise ValueError(f"a layer has {widest} outputs; the firmware's layers have at most {MAX_WIDTH}")


def _scale(values: np.ndarray) -> float:
    return float(np.float32(max(float(np.abs(values).max()), 1e-8) / 127.0))


def quantize_net(weights: list[np.ndarray], biases: list[np.ndarray], calibration: np.ndarray,
                 dtype: str = "int8") -> McuNet:
    """weights[i]: (out, in) float; ReLU between layers; calibration: representative inputs (N, in)."""
    check_shape([np.shape(w) for w in weights])
    last = len(weights) - 1
    if dtype == "float32":
        return McuNet("float32", 1.0, tuple(QuantLayer(np.asarray(w, np.float32), np.asarray(b, np.float32),
                                                       1.0, i != last) for i, (w, b) in enumerate(zip(weights, biases))))
    if dtype != "int8":
        raise ValueError("dtype must be int8 or float32")
    activations, s_x = calibration.astype(np.float32), _scale(calibration)
    input_scale, layers = s_x, []
    for i, (w, b) in enumerate(zip(weights, biases)):
        s_w = _scale(w)
        out = activations @ w.T.astype(np.float32) + b
        if i != last:
            out = np.maximum(out, 0)
        s_y = _scale(out)
        requant = s_w * s_x if i == last else s_w * s_x / s_y
        layers.append(QuantLayer(np.clip(np.rint(w / s_w), -127, 127).astype(np.int8),
                                 np.rint(b / (s_w * s_x)).astype(np.int32), float(np.float32(requant)), i != last))
        activations, s_x = out, s_y
    return McuNet("int8", input_scale, tuple(layers))


def _pad4(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


def to_blob(net: McuNet) -> bytes:
    check_shape([layer.weights.shape for layer in net.layers])
    out = bytearray(MAGIC + struct.pack("<BBBBHHf", VERSION, 0 if net.dtype == "int8" else 1, len(net.layers), 0,
                                        net.input_dim, net.classes, net.input_scale))
    for layer in net.layers:
        rows, cols = layer.weights.shape
        out += struct.pack("<HHB3xf", cols, rows, int(layer.relu), layer.requant)
        out += _pad4(np.ascontiguousarray(layer.weights).tobytes())
        out += np.ascontiguousarray(layer.bias).tobytes()
    if len(out) > MODEL_BYTES:
        raise ValueError(f"model of {len(out)} bytes does not fit the MCU's {MODEL_BYTES}-byte buffer")
    return bytes(out)


def reference_logits(net: McuNet, x: np.ndarray) -> np.ndarray:
    """The firmware's computation, step for step (float32 where it uses float)."""
    x = np.asarray(x, np.float32)
    if net.dtype == "float32":
        # fc.c's layer_f32: acc = bias, then acc += w * x input by input, each step rounded to
        # float32 (the build has no FMA contraction: -std=c11); numpy's float32 rounds alike
        a = x
        for layer in net.layers:
            w = np.asarray(layer.weights, np.float32)
            acc = np.asarray(layer.bias, np.float32).copy()
            for i in range(w.shape[1]):
                acc = acc + w[:, i] * a[i]
            a = np.maximum(acc, np.float32(0)) if layer.relu else acc
        return a
    q = np.clip(np.rint(x / np.float32(net.input_scale)), -128, 127).astype(np.int32)
    for i, layer in enumerate(net.layers):
        acc = layer.weights.astype(np.int32) @ q + layer.bias
        scaled = acc.astype(np.float32) * np.float32(layer.requant)
        if i == len(net.layers) - 1:
            return scaled
        v = np.rint(scaled)
        v = np.maximum(v, 0) if layer.relu else v
        q = np.clip(v, -128, 127).astype(np.int32)
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Tree:
    """A decision-tree selector as the firmware walks it: inner nodes go left when
    x[feature] <= threshold (both float32); leaves (feature -1) name a net."""

    feature: np.ndarray     # int16 (nodes,)
    threshold: np.ndarray   # float32
    left: np.ndarray        # uint16
    right: np.ndarray       # uint16
    leaf_net: np.ndarray    # uint8

    @classmethod
    def from_sklearn(cls, tree) -> "Tree":
        t = tree.tree_
        leaf = t.children_left == -1
        n = t.node_count
        if n > MAX_NODES:
            raise ValueError(f"a tree of {n} nodes exceeds the firmware's {MAX_NODES}")
        return cls(np.where(leaf, -1, t.feature).astype(np.int16), t.threshold.astype(np.float32),
                   np.where(leaf, 0, t.children_left).astype(np.uint16),
                   np.where(leaf, 0, t.children_right).astype(np.uint16),
                   np.where(leaf, t.value[:, 0, :].argmax(1), 0).astype(np.uint8))

    def route(self, x: np.ndarray) -> int:
        x = np.asarray(x, np.float32)
        node = 0
        for _ in range(len(self.feature)):
            if self.feature[node] < 0:
                return int(self.leaf_net[node])
            node = self.left[node] if x[self.feature[node]] <= self.threshold[node] else self.right[node]
        return 0

    @property
    def depth(self) -> int:
        def walk(node: int) -> int:
            return 0 if self.feature[node] < 0 else 1 + max(walk(self.left[node]), walk(self.right[node]))
        return walk(0)


@dataclass(frozen=True)
class McuSystem:
    """What the MCU runs: a tree picks one of the nets; labels[k] maps net k's outputs to classes."""

    nets: tuple[McuNet, ...]
    labels: tuple[tuple[int, ...], ...]
    tree: Tree | None = None

    @property
    def input_dim(self) -> int:
        return self.nets[0].input_dim


def system_blob(system: McuSystem) -> bytes:
    if not 1 <= len(system.nets) <= MAX_NETS or (system.tree is None and len(system.nets) != 1):
        raise ValueError(f"a system holds 1 or {MAX_NETS} nets, and more than one needs a tree")
    t = system.tree
    nodes = 0 if t is None else len(t.feature)
    out = bytearray(SYSTEM_MAGIC + struct.pack("<BBHHH", SYSTEM_VERSION, len(system.nets), nodes,
                                               system.input_dim, 0))
    for i in range(nodes):
        out += struct.pack("<hBxHHf", int(t.feature[i]), int(t.leaf_net[i]), int(t.left[i]), int(t.right[i]),
                           float(t.threshold[i]))
    for net, labels in zip(system.nets, system.labels):
        blob = to_blob(net)
        if len(labels) != net.classes or net.input_dim != system.input_dim:
            raise ValueError("every net needs one label per output and the system's input size")
        out += struct.pack("<IHxx", len(blob), len(labels)) + _pad4(bytes(labels)) + _pad4(blob)
    if len(out) > MODEL_BYTES:
        raise ValueError(f"system of {len(out)} bytes does not fit the MCU's {MODEL_BYTES}-byte buffer")
    return bytes(out)


def reference_predict(system: McuSystem, x: np.ndarray) -> tuple[int, int, np.ndarray]:
    """(label, net, logits) as the firmware computes them."""
    net = 0 if system.tree is None else system.tree.route(x)
    logits = reference_logits(system.nets[net], x)
    return system.labels[net][int(np.argmax(logits))], net, logits


def parse_blob(blob: bytes) -> McuNet:
    """An AIFC blob back into a net (the host reference then runs exactly what the MCU loads)."""
    if blob[:4] != MAGIC or blob[4] != VERSION:
        raise ValueError("not an AIFC version 1 blob")
    dtype, layers, input_dim, _classes, input_scale = blob[5], blob[6], *struct.unpack_from("<HHf", blob, 8)
    element, weight_type, bias_type = (1, np.int8, np.int32) if dtype == 0 else (4, np.float32, np.float32)
    at, out = 16, []
    for _ in range(layers):
        cols, rows, relu, requant = struct.unpack_from("<HHB3xf", blob, at)
        at += 12
        w = np.frombuffer(blob, weight_type, rows * cols, at).reshape(rows, cols)
        at += (rows * cols * element + 3) // 4 * 4
        b = np.frombuffer(blob, bias_type, rows, at)
        at += 4 * rows
        out.append(QuantLayer(w, b, requant, bool(relu)))
    if out[0].weights.shape[1] != input_dim:
        raise ValueError("AIFC blob: the first layer does not take the declared input")
    return McuNet("int8" if dtype == 0 else "float32", input_scale, tuple(out))


def parse_system(blob: bytes) -> McuSystem:
    """An AIMS (or plain AIFC) blob back into a system."""
    if blob[:4] == MAGIC:
        net = parse_blob(blob)
        return McuSystem((net,), (tuple(range(net.classes)),))
    if blob[:4] != SYSTEM_MAGIC or blob[4] != SYSTEM_VERSION:
        raise ValueError("not an AIMS version 1 blob")
    nets, nodes, _input_dim = blob[5], *struct.unpack_from("<HH", blob, 6)
    rows = [struct.unpack_from("<hBxHHf", blob, 12 + 12 * i) for i in range(nodes)]
    tree = None
    if nodes:
        feature, leaf_net, left, right, threshold = (np.array(column) for column in zip(*rows))
        tree = Tree(feature.astype(np.int16), threshold.astype(np.float32), left.astype(np.uint16),
                    right.astype(np.uint16), leaf_net.astype(np.uint8))
    at, parsed, labels = 12 + 12 * nodes, [], []
    for _ in range(nets):
        length, outputs = struct.unpack_from("<IH", blob, at)
        at += 8
        labels.append(tuple(blob[at:at + outputs]))
        at += (outputs + 3) // 4 * 4
        parsed.append(parse_blob(blob[at:at + length]))
        at += (length + 3) // 4 * 4
    return McuSystem(tuple(parsed), tuple(labels), tree)
