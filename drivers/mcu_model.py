"""Fully-connected nets for the MCU: the blob the firmware loads, and a bit-exact host reference.

The format and the arithmetic are those of firmware/stm32/include/fc.h. int8 nets are
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
MAX_LAYERS = 8
MAX_WIDTH = 256
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


def _scale(values: np.ndarray) -> float:
    return float(np.float32(max(float(np.abs(values).max()), 1e-8) / 127.0))


def quantize_net(weights: list[np.ndarray], biases: list[np.ndarray], calibration: np.ndarray,
                 dtype: str = "int8") -> McuNet:
    """weights[i]: (out, in) float; ReLU between layers; calibration: representative inputs (N, in)."""
    if len(weights) > MAX_LAYERS or max(max(w.shape) for w in weights) > MAX_WIDTH:
        raise ValueError(f"the firmware takes at most {MAX_LAYERS} layers of width {MAX_WIDTH}")
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
        a = x
        for layer in net.layers:
            a = (layer.weights.astype(np.float64) @ a.astype(np.float64) + layer.bias).astype(np.float32)
            a = np.maximum(a, 0) if layer.relu else a
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
