"""Class probabilities from logits, computed one way for every decision.

A speculative policy compares a confidence with a threshold that was chosen offline
(toolchain) and is applied per frame (daemon). A confidence that sits on a threshold
must fall on the same side in both places, so both take it from this one function:
float64 softmax over the last axis, from the engine's float32 logits.
"""

from __future__ import annotations

import numpy as np


def probabilities(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in float64 (a single frame's (C,) or a batch's (B, C))."""
    z = np.array(logits, dtype=np.float64)      # a copy, worked on in place (per frame: no temporaries)
    z -= z.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z
