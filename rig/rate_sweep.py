"""The highest open-loop arrival rate a served policy sustains within a response-time bound.

Thesis section 6.5.3 compares serving systems by queries per second at matched response
time: each is loaded with open-loop arrivals (rig/open_loop.py: each frame sent when due,
whether or not earlier ones were answered) at rising rates, and its rate is the highest
whose mean response time (due time to answer) stays at or under the bound. Arrivals are
Poisson (seeded exponential gaps), the textbook open-loop load; the thesis drew them from
a web-search query distribution in a simulator (BigHouse), which we do not have. Rates are tried in increasing order; the sweep stops at the first rate that fails
(a mean over the bound, or a frame refused or unanswered), since a queue that grows at
one rate grows faster at the next.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from adaptinf.rig.open_loop import stream


@dataclass
class RatePoint:
    rate: float                # frames per second offered
    frames: int
    mean_s: float              # response time of the answered frames, due time to answer
    p99_s: float
    failed: int                # refused or unanswered

    def within(self, bound_s: float) -> bool:
        return self.failed == 0 and self.mean_s <= bound_s


def poisson_offsets(rate: float, n: int, seed: int = 0) -> np.ndarray:
    """n arrival times (seconds from the start) of a Poisson process of `rate` per second."""
    return np.cumsum(np.random.default_rng(seed).exponential(1.0 / rate, n))


def at_rate(endpoint: str, frames: np.ndarray, rate: float, seconds: float, request: Callable[[int], dict],
            seed: int = 0) -> RatePoint:
    """Offer `rate` frames/s (Poisson) for `seconds` (frames cycled), then drain."""
    n = max(int(rate * seconds), 1)
    picks = np.resize(np.arange(len(frames)), n)
    result = stream(endpoint, frames[picks][:, None], rate, request, time.monotonic() + 0.2, drain_s=10.0,
                    offsets=poisson_offsets(rate, n, seed))
    ok = [f.latency_s for f in result.frames if f.answers and f.header and f.header.get("ok")
          and f.latency_s is not None]
    failed = n - len(ok)
    latencies = np.array(ok) if ok else np.array([np.inf])
    return RatePoint(rate, n, float(latencies.mean()), float(np.percentile(latencies, 99)), failed)


def highest_rate(rates: list[float], bound_s: float, measure: Callable[[float], RatePoint],
                 progress: Callable[[RatePoint], None] | None = None,
                 refine: int = 0) -> tuple[float | None, list[RatePoint]]:
    """(the highest rate within bound_s, every point tried); None if even the first fails.
    measure(rate): one point, e.g. `at_rate` on a daemon. refine: bisections between the
    last rate within the bound and the first beyond it."""
    best, failed, points = None, None, []

    def tried(rate: float) -> bool:
        point = measure(rate)
        points.append(point)
        if progress is not None:
            progress(point)
        return point.within(bound_s)

    for rate in sorted(rates):
        if not tried(rate):
            failed = rate
            break
        best = rate
    for _ in range(refine if best is not None and failed is not None else 0):
        middle = (best + failed) / 2
        if tried(middle):
            best = middle
        else:
            failed = middle
    return best, points
