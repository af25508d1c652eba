"""Emulation only: an engine that takes `factor` times as long as the one it wraps.

For demos and tests on one machine, where the "device" and the "cloud" share a CPU:
the wrapped engine really runs (its answer is real) and the wrapper then waits
(factor - 1) times the measured compute time. Configured by
[device].emulate_slowdown; never used at the default of 1.0.
"""

from __future__ import annotations

import time

import numpy as np

from adaptinf.engines.base import Engine


class EmulatedSlowdown:
    def __init__(self, engine: Engine, factor: float):
        if factor < 1.0:
            raise ValueError(f"slowdown factor must be >= 1, got {factor}")
        self._engine = engine
        self.factor = factor
        self.backend = f"{engine.backend}(x{factor:g} emulated)"
        self.inputs = engine.inputs
        self.outputs = engine.outputs

    def run(self, x: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        out = self._engine.run(x)
        time.sleep((self.factor - 1.0) * (time.perf_counter() - start))
        return out
