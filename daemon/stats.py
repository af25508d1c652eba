"""Counters and times per stage, per policy and per placement (Triton-shaped: {count, ns})."""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict, deque

import numpy as np

from adaptinf.policies.plan import StageTimes

STAGES = StageTimes.NAMES
LATENCY_WINDOW = 2048


class Stats:
    def __init__(self, clock=time.monotonic):
        self._lock = threading.Lock()
        self._clock = clock
        self._started = clock()
        self.stages = {s: {"count": 0, "ns": 0} for s in STAGES}
        self.codes: Counter[str] = Counter()
        self.placements: Counter[str] = Counter()
        self.policies: dict[str, dict[str, int]] = defaultdict(lambda: {"count": 0, "ns": 0})
        self.counters: Counter[str] = Counter()
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] += n

    def record_reply(self, code: str) -> None:
        with self._lock:
            self.codes[code] += 1

    def record_frame(self, policy: str, placement: str, stages: StageTimes) -> None:
        total = stages.total or 0.0
        with self._lock:
            for stage, seconds in stages.items():
                self.stages[stage]["count"] += 1
                self.stages[stage]["ns"] += int(seconds * 1e9)
            self.placements[placement] += 1
            self.policies[policy]["count"] += 1
            self.policies[policy]["ns"] += int(total * 1e9)
            self._latencies.append(total)

    def latency_percentiles(self) -> dict[str, float]:
        with self._lock:
            window = np.fromiter(self._latencies, float)
        if window.size == 0:
            return {}
        return {f"p{q}_ms": float(np.percentile(window, q) * 1e3) for q in (50, 95, 99)}

    def snapshot(self) -> dict:
        with self._lock:
            return {"uptime_s": self._clock() - self._started,
                    "stages": {k: dict(v) for k, v in self.stages.items()},
                    "codes": dict(self.codes), "placements": dict(self.placements),
                    "policies": {k: dict(v) for k, v in self.policies.items()},
                    "counters": dict(self.counters)}
