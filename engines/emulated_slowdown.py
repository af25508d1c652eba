"""Emulation only: an engine that takes `factor` times as long as the one it wraps.

For demos and tests on one machine, where the "device" and the "cloud" share a CPU:
the wrapped engine really runs (its answer is real), and the wrapper then waits until
`factor` times the wrapped engine's typical time has passed since the run began. The
typical time is its median over a few runs at construction, not each run's own time:
scaling each run's time would multiply this shared machine's jitter by `factor` (a
1 ms stall becoming 100 ms on the "device"), where a real device's time does not move
with the host's load. Configured by [device].emulate_slowdown; never used at 1.0.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

import numpy as np

from adaptinf.engines.base import Engine

WARMUP_RUNS = 3          # a fresh session's first runs pay for allocations
CALIBRATION_RUNS = 21    # the median of these: fewer left two daemons' emulated times 37% apart


class EmulatedSlowdown:
    def __init__(self, engine: Engine, factor: float, clock: Callable[[], float] = time.perf_counter,
                 sleep: Callable[[float], None] = time.sleep):
        if not factor >= 1.0:   # also refuses nan
            raise ValueError(f"slowdown factor must be >= 1, got {factor}")
        self._engine = engine
        self._clock, self._sleep = clock, sleep
        self.factor = factor
        self.backend = f"{engine.backend}(x{factor:g} emulated)"
        self.inputs = engine.inputs
        self.outputs = engine.outputs
        self.emulated_s = factor * self._typical_host_s()

    def _typical_host_s(self) -> float:
        spec = self.inputs[0]
        shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in spec.shape)
        x = np.zeros(shape, dtype=spec.dtype)
        times = []
        for _ in range(WARMUP_RUNS + CALIBRATION_RUNS):
            start = self._clock()
            self._engine.run(x)
            times.append(self._clock() - start)
        return statistics.median(times[WARMUP_RUNS:])

    def run(self, x: np.ndarray) -> np.ndarray:
        start = self._clock()
        out = self._engine.run(x)
        left = self.emulated_s - (self._clock() - start)
        if left > 0:
            self._sleep(left)
        return out
