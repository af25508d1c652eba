"""MDInference on the server (paper 003 IV-B): the worker picks the zoo model for a frame.

The paper measures the network where it can: "T_input can be measured by the server
prior to inference execution", and T_nw = 2 x T_input. Here T_input is the frame's
arrival (the router's wall clock) minus its send stamp (the device's wall clock
moved onto ours by the offset the device measured with pings). The frame's wait in
this worker's queue is spent too, so

    T_budget = T_sla - T_input - queue wait - T_input (the reply's way back).

Before the device knows the clocks' offset it sends its own estimate of T_nw instead.
Each model's time (mean, std): the worker's measurement at start (or its emulated
times), then moved by every run's own compute time (EWMA, as the paper's profiles
are kept current). The choice itself is policies/mdinference.py `select`, as in
`adaptinf sim` and the device.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from adaptinf.cloud.protocol import Infer
from adaptinf.policies.mdinference import ModelStats, moving_time, select

LIVE_GAIN = 0.05     # per run; ~20 runs of a model to follow a change in its time


@dataclass(frozen=True)
class Choice:
    model: str
    budget_s: float
    network_s: float      # T_nw as used: 2 x T_input measured here, or the device's estimate


class ZooSelection:
    def __init__(self, models: list[ModelStats], seed: int = 0):
        if len(models) < 2:
            raise ValueError("MDInference needs a zoo of at least two models to choose from")
        self._accuracy = {m.name: m.accuracy for m in models}
        self._time = {m.name: (m.mean_s, m.std_s ** 2) for m in models}   # mean, variance
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()

    def pool(self) -> list[ModelStats]:
        with self._lock:
            return [ModelStats(n, self._accuracy[n], mean, math.sqrt(var)) for n, (mean, var) in self._time.items()]

    def choose(self, request: Infer, arrived_at: float, now: float) -> Choice:
        """The model for `request`, which arrived at `arrived_at` and starts now (this
        worker's wall clock, seconds)."""
        if request.sent_at is not None:
            upload_s = max(arrived_at - request.sent_at, 0.0)   # a clock error is not a negative upload
            network_s = 2 * upload_s
            budget_s = request.sla_s - upload_s - max(now - arrived_at, 0.0) - upload_s
        else:
            network_s = request.network_s
            budget_s = request.sla_s - network_s - max(now - arrived_at, 0.0)
        pool = self.pool()
        with self._lock:
            chosen = select(pool, budget_s, self._rng).chosen
        return Choice(chosen.name, budget_s, network_s)

    def observe(self, model: str, compute_s: float) -> None:
        with self._lock:
            self._time[model] = moving_time(*self._time[model], compute_s, LIVE_GAIN)
