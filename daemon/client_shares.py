"""Fairness between local clients: each may have at most `limit` frames queued or running.

Without it one client that floods the API (or never reads its replies) fills the frame
queue and every other client gets RESOURCE_EXHAUSTED. Taken on the API thread when a
frame is accepted, given back on whichever thread answers it.
"""

from __future__ import annotations

import threading
from collections import Counter


class ClientShares:
    """Each client (a DEALER identity) may hold at most `limit` frames, and at most a fair share
    of the daemon's `capacity` (its queue plus its workers): capacity / (clients holding
    frames + 1), always keeping room for one client more. One process that opens eight
    sockets and never reads its replies then holds 8/10 of the capacity, not all of it,
    and a polite client still gets its frames in."""

    def __init__(self, limit: int, capacity: int | None = None):
        self.limit = limit
        self.capacity = capacity
        self._in_flight: Counter[bytes] = Counter()
        self._lock = threading.Lock()

    def share(self, peer: bytes) -> int:
        """What this client may hold now."""
        with self._lock:
            return self._share_locked(peer)

    def _share_locked(self, peer: bytes) -> int:
        if self.capacity is None:
            return self.limit
        others = len(self._in_flight) - (1 if peer in self._in_flight else 0)
        return max(1, min(self.limit, self.capacity // (others + 2)))

    def take(self, peer: bytes) -> bool:
        """One more frame for this client, if it is under its share."""
        with self._lock:
            if self._in_flight[peer] >= self._share_locked(peer):
                if not self._in_flight[peer]:
                    del self._in_flight[peer]      # the lookup made an entry: not a client holding frames
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
