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
    frames + 1). And a client that already holds frames may take another only while the
    room a newcomer would need is left free, so a polite client always finds a slot even
    while the shares adjust to a burst of new clients. One process that opens eight sockets
    and never reads its replies then holds part of the capacity, not all of it."""

    def __init__(self, limit: int, capacity: int | None = None):
        self.limit = limit
        self.capacity = capacity
        self._in_flight: Counter[bytes] = Counter()
        self._total = 0
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
        """One more frame for this client, if it is under its share (and, holding frames
        already, if a newcomer's room stays free)."""
        with self._lock:
            held = self._in_flight.get(peer, 0)
            if held >= self._share_locked(peer):
                return False
            if self.capacity is not None and held:
                reserve = max(1, self.capacity // (len(self._in_flight) + 1))
                if self._total >= self.capacity - reserve:
                    return False
            self._in_flight[peer] = held + 1
            self._total += 1
            return True

    def give_back(self, peer: bytes) -> None:
        with self._lock:
            held = self._in_flight.get(peer, 0)
            if held <= 0:
                return
            self._total -= 1
            if held == 1:
                del self._in_flight[peer]
            else:
                self._in_flight[peer] = held - 1

    def in_flight(self, peer: bytes) -> int:
        with self._lock:
            return self._in_flight.get(peer, 0)

    def total(self) -> int:
        """Frames taken and not yet given back, over every client."""
        with self._lock:
            return self._total

    def clients(self) -> int:
        with self._lock:
            return len(self._in_flight)
