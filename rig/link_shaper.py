"""A shaping TCP proxy on loopback: a link of given uplink rate and round-trip time.

The device connects to the proxy instead of the cloud. Each direction is a queue
drained at the link's rate (serialisation delay = bytes * 8 / rate) and delivered
one-way-delay later, like a real bottleneck link with a FIFO buffer. Rates, delay
and a stall switch can change while traffic flows (tests move the uplink from Wi-Fi
to 3G; "stall" black-holes both directions without closing anything, like a dead
radio). Used where the test lacks the rights for netns + tc, which shape in the
kernel instead.

Profiles: paper 004 Table III's uplinks; the RTTs are this project's assumption
(the paper gives none).
"""

from __future__ import annotations

import heapq
import socket
import threading
import time
from dataclasses import dataclass

CHUNK = 16 * 1024


@dataclass(frozen=True)
class LinkProfile:
    name: str
    uplink_bps: float
    downlink_bps: float
    rtt_s: float


LINK_PROFILES = {
    "3g": LinkProfile("3G", 1.1e6, 5.0e6, 0.030),
    "4g": LinkProfile("4G", 5.85e6, 20e6, 0.015),
    "wifi": LinkProfile("Wi-Fi", 18.88e6, 50e6, 0.004),
}


class _Direction:
    """One direction of one connection: rate-limited, delayed, in-order delivery."""

    def __init__(self, shaper: "LinkShaper", src: socket.socket, dst: socket.socket, uplink: bool):
        self.shaper, self.src, self.dst, self.uplink = shaper, src, dst, uplink
        self._free_at = 0.0          # when the bottleneck finishes serialising what it has
        self._queue: list[tuple[float, int, bytes]] = []
        self._seq = 0
        self._cv = threading.Condition()
        self.closed = False

    def rate(self) -> float:
        return self.shaper.profile.uplink_bps if self.uplink else self.shaper.profile.downlink_bps

    def reader(self) -> None:
        try:
            while True:
                data = self.src.recv(CHUNK)
                if not data:
                    break
                self.shaper.count(self.uplink, data)
                now = time.monotonic()
                self._free_at = max(now, self._free_at) + len(data) * 8.0 / self.rate()
                deliver = self._free_at + self.shaper.profile.rtt_s / 2
                with self._cv:
                    heapq.heappush(self._queue, (deliver, self._seq, data))
                    self._seq += 1
                    self._cv.notify()
        except OSError:
            pass
        with self._cv:
            self.closed = True
            self._cv.notify()

    def writer(self) -> None:
        try:
            while True:
                with self._cv:
                    while not self._queue and not self.closed:
                        self._cv.wait(0.1)
                    if not self._queue and self.closed:
                        break
                    deliver, _, data = self._queue[0]
                    wait = deliver - time.monotonic()
                    if wait > 0 or self.shaper.stalled:
                        self._cv.wait(min(max(wait, 0.0), 0.01) if not self.shaper.stalled else 0.05)
                        continue
                    heapq.heappop(self._queue)
                self.dst.sendall(data)
        except OSError:
            pass
        for s in (self.dst, self.src):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class LinkShaper:
    def __init__(self, upstream: tuple[str, int], profile: LinkProfile, listen_port: int = 0,
                 capture_uplink: bool = False):
        self.upstream = upstream
        # every uplink byte, kept for tests that check what left the device (privacy)
        self.uplink_capture = bytearray() if capture_uplink else None
        self.profile = profile
        self.stalled = False
        self.bytes_up = self.bytes_down = 0     # what crossed the link, counted at the socket
        self._count_lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", listen_port))
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="link-shaper", daemon=True)

    @property
    def endpoint(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def start(self) -> "LinkShaper":
        self._thread.start()
        return self

    def count(self, uplink: bool, data: bytes) -> None:
        with self._count_lock:
            if uplink:
                self.bytes_up += len(data)
                if self.uplink_capture is not None:
                    self.uplink_capture += data
            else:
                self.bytes_down += len(data)

    def set_profile(self, profile: LinkProfile) -> None:
        self.profile = profile

    def stall(self, on: bool = True) -> None:
        self.stalled = on

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()
        self.drop_connections()
        self._thread.join(timeout=2)

    def drop_connections(self) -> None:
        for s in self._sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass
        self._sockets.clear()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=2)
                server.settimeout(None)
            except OSError:
                client.close()  # upstream down: the device sees a refused/closed connection
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sockets += [client, server]
            for d in (_Direction(self, client, server, uplink=True), _Direction(self, server, client, uplink=False)):
                threading.Thread(target=d.reader, daemon=True).start()
                threading.Thread(target=d.writer, daemon=True).start()
