"""Emulation only: an engine whose every run takes a seeded draw from normal(mean, std).

For MDInference on one machine (paper 003 chooses among cloud models whose times span
3-113 ms, Table III; on this CPU the zoo's models all finish in under a millisecond, so
an SLA would always afford the largest): the wrapped engine really runs (its answer is
real), and the wrapper then waits until the run's drawn time has passed since it began.
A draw below the real run's time is the real time. The draws come from one seeded
generator, in run order, as `adaptinf sim` draws execution times. Configured by
`adaptinf-cloud --emulate-times`; never used in a deployment.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

import numpy as np

from adaptinf.engines.base import Engine


class EmulatedTimes:
    def __init__(self, engine: Engine, mean_s: float, std_s: float, seed: int = 0,
                 clock: Callable[[], float] = time.perf_counter, sleep: Callable[[float], None] = time.sleep):
        if not (mean_s > 0 and std_s >= 0):   # also refuses nan
            raise ValueError(f"emulated time needs mean > 0 and std >= 0 seconds, got {mean_s}, {std_s}")
        self._engine = engine
        self._clock, self._sleep = clock, sleep
        self.mean_s, self.std_s = mean_s, std_s
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()     # one generator, several compute threads
        self.backend = f"{engine.backend}(emulated {mean_s * 1e3:g} +- {std_s * 1e3:g} ms)"
        self.inputs = engine.inputs
        self.outputs = engine.outputs

    def run(self, x: np.ndarray) -> np.ndarray:
        start = self._clock()
        with self._lock:
            drawn = max(float(self._rng.normal(self.mean_s, self.std_s)), 0.0)
        out = self._engine.run(x)
        left = drawn - (self._clock() - start)
        if left > 0:
            self._sleep(left)
        return out
