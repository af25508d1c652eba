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
from typing import Callable


class DeviceQueue:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._cv = threading.Condition(threading.Lock())   # not re-entered: a plain lock is cheaper
        self._tickets = itertools.count()
        self._waiting: dict[int, float] = {}      # ticket -> predicted seconds, in arrival order
        self._running: tuple[int, float, float] | None = None   # (ticket, predicted s, started)

    def slot(self, predicted_s: float = 0.0) -> "_Slot":
        """Hold the device (a context manager); `with` yields the seconds spent waiting for it."""
        return _Slot(self, predicted_s)

    def _acquire(self, predicted_s: float) -> float:
        arrived = self._clock()
        with self._cv:
            ticket = next(self._tickets)
            if self._running is None and not self._waiting:     # free: no queue to join
                self._running = (ticket, max(predicted_s, 0.0), arrived)
                return 0.0
            self._waiting[ticket] = max(predicted_s, 0.0)
            while self._running is not None or next(iter(self._waiting)) != ticket:
                self._cv.wait()
            started = self._clock()
            self._running = (ticket, self._waiting.pop(ticket), started)
        return started - arrived

    def _release(self) -> None:
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


class _Slot:
    """One turn on the device (a class, not @contextmanager: this runs for every engine run)."""

    __slots__ = ("_queue", "_predicted_s")

    def __init__(self, queue: DeviceQueue, predicted_s: float):
        self._queue, self._predicted_s = queue, predicted_s

    def __enter__(self) -> float:
        return self._queue._acquire(self._predicted_s)

    def __exit__(self, *exc) -> None:
        self._queue._release()
