"""The cloud's wall clock relative to ours, from the heartbeats (Cristian's algorithm).

A ping leaves at t0 and its reply, stamped with the cloud's clock c, arrives at t1 (our
wall clock): the offset is c - (t0 + t1) / 2, wrong by at most half the round trip
and by half the difference of the two ways' delays. Of the last SAMPLES pings since the
link (re)connected, the one with the shortest round trip is used: the one least delayed
by queues. MDInference needs it so that the cloud can measure the frame's upload time
(cloud/zoo_selection.py).
"""

from __future__ import annotations

import threading
from collections import deque

SAMPLES = 16


class ClockOffset:
    def __init__(self, samples: int = SAMPLES):
        self._samples: deque[tuple[float, float]] = deque(maxlen=samples)   # (round trip, offset)
        self._lock = threading.Lock()

    def observe(self, sent_at: float, received_at: float, cloud_clock: float) -> None:
        if received_at < sent_at:
            return          # our wall clock stepped back meanwhile: the sample means nothing
        with self._lock:
            self._samples.append((received_at - sent_at, cloud_clock - (sent_at + received_at) / 2))

    def reset(self) -> None:
        """A new connection may reach another server, with another clock: start over."""
        with self._lock:
            self._samples.clear()

    @property
    def offset_s(self) -> float | None:
        """Cloud clock minus ours, seconds; None before a ping has come back."""
        with self._lock:
            return min(self._samples)[1] if self._samples else None

    def cloud_time(self, local_time: float) -> float | None:
        offset = self.offset_s
        return None if offset is None else local_time + offset
