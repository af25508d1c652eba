"""The device runs one frame at a time, as a device with one GPU (or one emulated slow
CPU) does; frames that need it wait in arrival order.

Every engine run of the executor takes a slot here. The wait is its own stage
("device_wait"), kept apart from compute so K_mobile (measured / profiled device time)
is not inflated by queueing, and the backlog (predicted work ahead, the running frame's
remainder included) is what the planner adds to every candidate that uses the device.
"""

from __future__ import annotations

import itertools
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator


class DeviceQueue:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._cv = threading.Condition()
        self._tickets = itertools.count()
        self._waiting: dict[int, float] = {}      # ticket -> predicted seconds, in arrival order
        self._running: tuple[int, float, float] | None = None   # (ticket, predicted s, started)

    @contextmanager
    def slot(self, predicted_s: float = 0.0) -> Iterator[float]:
        """Hold the device; yields the seconds spent waiting for it."""
        arrived = self._clock()
        with self._cv:
            ticket = next(self._tickets)
            self._waiting[ticket] = max(predicted_s, 0.0)
            while self._running is not None or next(iter(self._waiting)) != ticket:
                self._cv.wait()
            self._running = (ticket, self._waiting.pop(ticket), self._clock())
        try:
            yield self._running[2] - arrived
        finally:
            with self._cv:
                self._running = None
                self._cv.notify_all()

    def backlog_s(self) -> float:
        """Predicted seconds until a frame arriving now would get the device."""
        with self._cv:
            ahead = sum(self._waiting.values())
            if self._running is not None:
                _, predicted, started = self._running
                ahead += max(predicted - (self._clock() - started), 0.0)
            return ahead

    def depth(self) -> int:
        with self._cv:
            return len(self._waiting) + (self._running is not None)
