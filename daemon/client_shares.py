"""Fairness between local clients: each may have at most `limit` frames queued or running.

Without it one client that floods the API (or never reads its replies) fills the frame
queue and every other client gets RESOURCE_EXHAUSTED. Taken on the API thread when a
frame is accepted, given back on whichever thread answers it.
"""

from __future__ import annotations

import threading
from collections import Counter


class ClientShares:
    def __init__(self, limit: int):
        self.limit = limit
        self._in_flight: Counter[bytes] = Counter()
        self._lock = threading.Lock()

    def take(self, peer: bytes) -> bool:
        """One more frame for this client, if it is under its limit."""
        with self._lock:
            if self._in_flight[peer] >= self.limit:
                return False
            self._in_flight[peer] += 1
            return True

    def give_back(self, peer: bytes) -> None:
        with self._lock:
            self._in_flight[peer] -= 1
            if self._in_flight[peer] <= 0:
                del self._in_flight[peer]

    def in_flight(self, peer: bytes) -> int:
        with self._lock:
            return self._in_flight[peer]

    def total(self) -> int:
        """Frames taken and not yet given back, over every client."""
        with self._lock:
            return sum(self._in_flight.values())

    def clients(self) -> int:
        with self._lock:
            return len(self._in_flight)
