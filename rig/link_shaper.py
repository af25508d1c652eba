"""A shaping TCP proxy on loopback: a link of given uplink capacity and round-trip time.

The device connects to the proxy instead of the cloud. Each direction is a FIFO
bottleneck followed by a one-way delay of RTT/2, like a real bottleneck link with a
buffer. The bottleneck is either a fixed rate (serialisation delay = bytes * 8 / rate)
or a recorded uplink trace replayed exactly as Mahimahi's mm-link does: one 1500-byte
delivery opportunity per trace line, opportunities that find the queue empty are lost,
and the trace repeats at its end (rig/uplink_trace.py). The bottleneck belongs to the
link, not to a connection, so a reconnect does not get a fresh one.

Rates, delay, the trace and a stall switch can change while traffic flows (tests move
the uplink from Wi-Fi to 3G; "stall" black-holes both directions without closing
anything, like a dead radio). `restart()` empties both queues (what is queued is
delivered at once, so no TCP stream breaks) and restarts the trace clock, so one run
never inherits another's backlog. Used where the test lacks the rights for netns + tc,
which shape in the kernel instead.

Profiles: paper 004 Table III's uplinks; the RTTs are this project's assumption (the
paper gives none). Trace links use TRACE_RTT_S.

Seeded per-message network time (`LinkProfile.message_delay`, for MDInference against
`adaptinf sim`): each piece of data the uplink reads draws a round-trip time t as the sim
draws its network times (policies/mdinference.py `Network`: normal mean +- std, clipped
at 0, from a seeded generator, in order). The uplink holds it t/2, and the downlink holds
what it reads next for the same t/2: a reply goes back over the path its request came by,
so the server's T_nw = 2 x T_input (paper 003) is the drawn t, as in the sim. Nothing
overtakes what was read before it (FIFO). The proxy sees bytes, not messages: a message
read in one piece (the usual case for the few-KB frames this is for) gets one draw; one
read in several pieces gets the largest of its pieces' delays. Heartbeats draw too, so the
draws reach requests in the sim's order only on a link that carries requests alone.
"""

from __future__ import annotations

import heapq
import socket
import threading
import time
from dataclasses import dataclass

import numpy as np

from adaptinf.policies.mdinference import Network
from adaptinf.rig.uplink_trace import PACKET_BYTES, UplinkTrace

CHUNK = 16 * 1024
TRACE_RTT_S = 0.040
TRACE_DOWNLINK_BPS = 20e6     # the traces are uplink only; replies are small


@dataclass(frozen=True)
class LinkProfile:
    name: str
    uplink_bps: float
    downlink_bps: float
    rtt_s: float
    uplink_trace: UplinkTrace | None = None   # replayed instead of uplink_bps when given
    message_delay: "MessageDelay | None" = None  # per-message network times instead of rtt_s


@dataclass(frozen=True)
class MessageDelay:
    """Each message's round trip: normal(mean_s, std_s) clipped at 0, seeded (as adaptinf sim);
    half on the way up, half on the way back."""

    mean_s: float
    std_s: float
    seed: int = 0


LINK_PROFILES = {
    "3g": LinkProfile("3G", 1.1e6, 5.0e6, 0.030),
    "4g": LinkProfile("4G", 5.85e6, 20e6, 0.015),
    "wifi": LinkProfile("Wi-Fi", 18.88e6, 50e6, 0.004),
}


def trace_profile(trace: UplinkTrace, rtt_s: float = TRACE_RTT_S) -> LinkProfile:
    return LinkProfile(trace.name, trace.mean_bps, TRACE_DOWNLINK_BPS, rtt_s, trace)


class FixedRateBottleneck:
    """Bytes leave at a constant rate, in arrival order."""

    def __init__(self, bps: float):
        self.bps = bps
        self._free_at = 0.0

    def restart(self, now: float) -> None:
        self._free_at = now

    def schedule(self, now: float, nbytes: int) -> list[tuple[float, int]]:
        self._free_at = max(now, self._free_at) + nbytes * 8.0 / self.bps
        return [(self._free_at, nbytes)]


class TraceBottleneck:
    """Bytes leave at the trace's delivery opportunities, 1500 bytes each, in arrival order."""

    def __init__(self, trace: UplinkTrace, now: float):
        self.trace = trace
        self.restart(now)

    def restart(self, now: float) -> None:
        self.t0 = now            # trace time 0 (the run's START)
        self._k = 0              # next opportunity with room, and the bytes it already carries
        self._used = 0

    def schedule(self, now: float, nbytes: int) -> list[tuple[float, int]]:
        """(departure time, bytes) pieces, one per opportunity used."""
        first = self.trace.first_at_or_after(now - self.t0)
        if self._k < first:     # the queue was empty: those opportunities went unused
            self._k, self._used = first, 0
        pieces = []
        while nbytes > 0:
            take = min(PACKET_BYTES - self._used, nbytes)
            pieces.append((self.t0 + self.trace.opportunity_s(self._k), take))
            nbytes -= take
            self._used += take
            if self._used == PACKET_BYTES:
                self._k, self._used = self._k + 1, 0
        return pieces


def bottleneck_for(profile: LinkProfile, uplink: bool, now: float):
    if uplink and profile.uplink_trace is not None:
        return TraceBottleneck(profile.uplink_trace, now)
    return FixedRateBottleneck(profile.uplink_bps if uplink else profile.downlink_bps)


class _Direction:
    """One direction of one connection: through the link's bottleneck, delayed, in order."""

    def __init__(self, shaper: "LinkShaper", src: socket.socket, dst: socket.socket, uplink: bool):
        self.shaper, self.src, self.dst, self.uplink = shaper, src, dst, uplink
        self._queue: list[tuple[float, int, bytes]] = []
        self._seq = 0
        self._last_due = 0.0      # FIFO: nothing is due before what was read earlier
        self._cv = threading.Condition()
        self.closed = False

    def reader(self) -> None:
        try:
            while True:
                data = self.src.recv(CHUNK)
                if not data:
                    break
                self.shaper.count(self.uplink, data)
                pieces = self.shaper.schedule(self.uplink, time.monotonic(), len(data))
                delay = self.shaper.one_way_delay(self.uplink)
                with self._cv:
                    offset = 0
                    for departs, size in pieces:
                        self._last_due = max(departs + delay, self._last_due)
                        heapq.heappush(self._queue, (self._last_due, self._seq, data[offset:offset + size]))
                        self._seq += 1
                        offset += size
                    self._cv.notify()
        except OSError:
            pass
        with self._cv:
            self.closed = True
            self._cv.notify()

    def flush(self) -> None:
        """Everything queued becomes deliverable now, still in order."""
        with self._cv:
            self._queue = [(0.0, seq, data) for _, seq, data in sorted(self._queue, key=lambda e: e[1])]
            self._cv.notify()

    def queued(self) -> int:
        with self._cv:
            return len(self._queue)

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
                    # everything else already due goes out in the same write
                    while self._queue and self._queue[0][0] <= time.monotonic():
                        data += heapq.heappop(self._queue)[2]
                self.dst.sendall(data)
        except OSError:
            pass
        for s in (self.dst, self.src):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.shaper._direction_done(self)


class LinkShaper:
    def __init__(self, upstream: tuple[str, int], profile: LinkProfile, listen_port: int = 0,
                 capture_uplink: bool = False):
        self.upstream = upstream
        # every uplink byte, kept for tests that check what left the device (privacy)
        self.uplink_capture = bytearray() if capture_uplink else None
        self.profile = profile
        self._bottleneck_lock = threading.Lock()
        self._bottlenecks = {True: bottleneck_for(profile, True, time.monotonic()),
                             False: bottleneck_for(profile, False, time.monotonic())}
        self._delays = self._delay_sampler(profile)
        self._last_draw: float | None = None
        self._directions: list[_Direction] = []
        self.stalled = False
        self.bytes_up = self.bytes_down = 0     # what crossed the link, counted at the socket
        self._count_lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", listen_port))
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self._sockets_lock = threading.Lock()
        self._done: dict[frozenset, set[bool]] = {}    # per connection: directions finished
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

    def schedule(self, uplink: bool, now: float, nbytes: int) -> list[tuple[float, int]]:
        with self._bottleneck_lock:
            return self._bottlenecks[uplink].schedule(now, nbytes)

    def set_profile(self, profile: LinkProfile) -> None:
        now = time.monotonic()
        with self._bottleneck_lock:
            self.profile = profile
            self._bottlenecks = {True: bottleneck_for(profile, True, now), False: bottleneck_for(profile, False, now)}
            self._delays, self._last_draw = self._delay_sampler(profile), None

    @staticmethod
    def _delay_sampler(profile: LinkProfile):
        """(the sim's network model, its seeded generator), or None without per-message delays."""
        if profile.message_delay is None:
            return None
        d = profile.message_delay
        return Network(d.mean_s, d.std_s), np.random.default_rng(d.seed)

    def draw_delay(self) -> float | None:
        """The next message's round trip (seconds), or None when the profile has none."""
        with self._bottleneck_lock:
            if self._delays is None:
                return None
            network, rng = self._delays
            self._last_draw = float(network.sample(1, rng)[0])
            return self._last_draw

    def one_way_delay(self, uplink: bool) -> float:
        """What the data just read waits, besides the bottleneck: half the round trip, drawn
        afresh on the uplink, and the latest draw's on the downlink."""
        drawn = self.draw_delay() if uplink else self._last_draw
        return (drawn if drawn is not None else self.profile.rtt_s) / 2

    def restart(self, timeout_s: float = 5.0) -> float:
        """Empty both directions' queues, then restart the bottlenecks (trace time 0 = now).
        Returns that instant (time.monotonic()), the run's START."""
        for d in list(self._directions):
            d.flush()
        deadline = time.monotonic() + timeout_s
        while any(d.queued() for d in self._directions) and time.monotonic() < deadline:
            time.sleep(0.005)
        now = time.monotonic()
        with self._bottleneck_lock:
            for b in self._bottlenecks.values():
                b.restart(now)
            self._delays, self._last_draw = self._delay_sampler(self.profile), None   # the same draws again
        return now

    def stall(self, on: bool = True) -> None:
        self.stalled = on

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()
        self.drop_connections()
        self._thread.join(timeout=2)

    def drop_connections(self) -> None:
        with self._sockets_lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _direction_done(self, direction: "_Direction") -> None:
        """When both directions of a connection are done, its two sockets are closed: a
        finished connection holds no file descriptor."""
        with self._sockets_lock:
            pair = (direction.src, direction.dst)
            done = self._done.setdefault(frozenset(id(s) for s in pair), set())
            done.add(direction.uplink)
            if len(done) < 2:
                return
            del self._done[frozenset(id(s) for s in pair)]
            self._sockets = [s for s in self._sockets if s not in pair]
        for s in pair:
            s.close()

    def open_sockets(self) -> int:
        with self._sockets_lock:
            return len(self._sockets)

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
            with self._sockets_lock:
                self._sockets += [client, server]
            for d in (_Direction(self, client, server, uplink=True), _Direction(self, server, client, uplink=False)):
                self._directions = [x for x in self._directions if not x.closed] + [d]
                threading.Thread(target=d.reader, daemon=True).start()
                threading.Thread(target=d.writer, daemon=True).start()
