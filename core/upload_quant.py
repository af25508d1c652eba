"""8-bit upload quantisation of the reduced tensor (paper 004, section III-A).

Per-tensor affine uint8: q = clip(round(x / scale) + zero_point, 0, 255) and
x' = (q - zero_point) * scale. The range always includes 0 so that zero (ReLU
outputs, padding) is exact. The device quantises each frame's tensor on its own;
scale and zero point travel in the upload header. The toolchain's training-time
fake quantisation (toolchain/butterfly.py) uses the same formula, so the accuracy
recorded in a bundle is the accuracy of what really crosses the link.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

QMAX = 255


class Quantized(NamedTuple):
    data: np.ndarray  # uint8, same shape as the float tensor
    scale: float
    zero_point: int


def quant_params(lo: float, hi: float) -> tuple[float, int]:
    """Scale and zero point for a tensor whose values span [lo, hi]."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / QMAX
    if scale <= 0.0 or not np.isfinite(scale):
        return 1.0, 0
    zero_point = int(np.clip(round(-lo / scale), 0, QMAX))
    return float(scale), zero_point


def quantize(x: np.ndarray) -> Quantized:
    scale, zero_point = quant_params(float(x.min()), float(x.max()))
    q = np.clip(np.rint(x / np.float32(scale)) + zero_point, 0, QMAX).astype(np.uint8)
    return Quantized(q, scale, zero_point)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return (q.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)


def as_received(x: np.ndarray, upload: str = "uint8") -> np.ndarray:
    """What the tail receives for the head's tensor x: the per-frame uint8 round trip, or
    float16 (a split point's `upload`). The daemon and the toolchain's agreement checks both
    call this, so a bundle's recorded figures are what really crosses the link."""
    if upload == "float16":
        return x.astype(np.float16).astype(np.float32)
    return dequantize(*quantize(x))
