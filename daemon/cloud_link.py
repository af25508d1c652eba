"""Device side of the cloud link: one DEALER, owned by one thread (zguide Paranoid Pirate).

- Request ids are (boot epoch, sequence); a retry reuses its id, and the worker
  de-duplicates, so a retried request never runs twice.
- Every call has a deadline; at the deadline the caller gets DEADLINE_EXCEEDED and
  falls back to the device. A reply that arrives after that is dropped and counted
  (`late_replies`), never delivered.
- Any incoming message proves the link alive; when idle the link pings, and a link
  silent for HEARTBEAT_LIVENESS intervals is declared down, its socket is closed and
  reopened with exponential backoff, and outstanding requests are resent.
- Heartbeats give the RTT and the cloud's clock (daemon/clock_offset.py); uploads (and
  probes when idle) give the uplink bandwidth, both fed to the LinkEstimator. Each
  reply's "load" is kept for the planner.
Other threads call `call()`; the loop is woken through an os.pipe, which is safe to
write from any thread, so the socket itself never leaves its thread.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import zmq

from adaptinf.cloud import curve_auth, protocol
from adaptinf.daemon.clock_offset import ClockOffset
from adaptinf.daemon.link_estimator import LinkEstimator

log = logging.getLogger(__name__)
MAX_QUEUE_DEPTH = 1_000_000          # a worker's reported queue: beyond this it is not a report
MAX_SERVICE_S = 3600.0

HEARTBEAT_INTERVAL_S = 0.5
HEARTBEAT_LIVENESS = 4          # intervals of silence before the link is declared down
RECONNECT_MIN_S = 0.1
RECONNECT_MAX_S = 5.0
RETRY_MIN_S = 0.25              # resend an unanswered request after max(this, 4 * SRTT)
# Idle probes: sized to take PROBE_TRANSFER_S at the estimated uplink (so the transfer is
# visible over RTT jitter) and spaced so they use at most PROBE_SHARE of it; before any
# estimate, PROBE_BYTES every PROBE_INTERVAL_S. At least one probe every PROBE_MAX_INTERVAL_S,
# even where that is over PROBE_SHARE (below 240 kbit/s estimated: 1200 bytes per 2 s): a
# link that fell to nothing must be seen when it comes back, not 48 s later.
PROBE_INTERVAL_S = 2.0
PROBE_MAX_INTERVAL_S = 2.0
PROBE_BYTES = 16 * 1024
PROBE_SHARE = 0.02
PROBE_TRANSFER_S = 0.025
PROBE_MIN_BYTES = 1200          # one packet at the least: probes stay frequent on a slow link
PROBE_MAX_BYTES = protocol.PROBE_MAX_BYTES
EXPIRED_MEMORY = 4096           # rids of expired calls remembered, to count their late replies


def probe_plan(uplink_bps: float | None) -> tuple[int, float]:
    """(bytes, seconds between probes) at this uplink estimate: PROBE_TRANSFER_S of it, at
    most PROBE_SHARE of it on average, and at least one every PROBE_MAX_INTERVAL_S."""
    if not uplink_bps:
        return PROBE_BYTES, PROBE_INTERVAL_S
    size = int(min(max(uplink_bps * PROBE_TRANSFER_S / 8, PROBE_MIN_BYTES), PROBE_MAX_BYTES))
    return size, min(size * 8 / (PROBE_SHARE * uplink_bps), PROBE_MAX_INTERVAL_S)


class CloudError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code


# the link's state, and a call's error code, when the worker is alive but will not serve us
FOREIGN_BUNDLE = "foreign-bundle"   # it serves another bundle
DUPLICATE_ID = "duplicate-id"       # another device holds our device id there


@dataclass
class CloudReply:
    header: dict
    payload: bytes | None
    round_trip_s: float
    digest: int | None = None          # the request's (protocol.request_digest): the reply must echo it

    def logits(self, size: int) -> tuple[np.ndarray, float]:
        """The answer (the model's outputs: `size` float32 values, a classifier's logits) and
        the cloud's compute seconds; CloudError if the reply is not an answer (an error code,
        or malformed, or not finite: the frame then falls back, never crashes)."""
        h = self.header
        if not h.get("ok") or self.payload is None:
            raise CloudError(str(h.get("code")), str(h.get("message", "no answer")))
        if self.digest is not None and h.get("digest") != self.digest:
            raise CloudError("MALFORMED", "the reply answers another request (its digest is not this frame's)")
        compute = h.get("compute_s", 0.0)
        if isinstance(compute, bool) or not isinstance(compute, (int, float)) or not 0 <= compute < 3600:
            raise CloudError("MALFORMED", f"compute_s {compute!r} is not a duration")
        if len(self.payload) != 4 * size:
            raise CloudError("MALFORMED", f"{len(self.payload)} bytes of outputs, expected {size} float32")
        values = np.frombuffer(self.payload, dtype=np.float32)
        if not np.isfinite(values).all():       # an overflowing FP16 engine, a broken gateway
            raise CloudError("MALFORMED", "the cloud's outputs are not all finite")
        return values, float(compute)


class CloudCall:
    """A request in flight: wait for its reply, or abandon it (late replies are then dropped)."""

    def __init__(self, rid: tuple[int, int]):
        self.rid = rid
        self.digest: int | None = None     # an infer's request digest, set when it is sent
        self._event = threading.Event()
        self._reply: CloudReply | None = None
        self._error: CloudError | None = None
        self.abandoned = False

    def _finish(self, reply: CloudReply | None = None, error: CloudError | None = None) -> bool:
        if self._event.is_set() or self.abandoned:
            return False
        self._reply, self._error = reply, error
        self._event.set()
        return True

    def wait(self, timeout_s: float) -> CloudReply:
        if not self._event.wait(max(0.0, timeout_s)):
            self.abandoned = True
            raise CloudError("DEADLINE_EXCEEDED", "no cloud reply before the deadline")
        if self._error is not None:
            raise self._error
        return self._reply  # type: ignore[return-value]

    def abandon(self) -> None:
        self.abandoned = True


@dataclass
class _Pending:
    call: CloudCall
    frames: list
    deadline: float
    upload_bytes: int
    first_sent: float = 0.0
    last_sent: float = 0.0
    attempts: int = 0
    kind: str = "call"          # call | ping | probe
    on_reply: Callable[[dict, float], None] | None = None
    sent_wall: float = 0.0      # our wall clock at the last send (pings: the clocks' offset)


@dataclass
class LinkStatus:
    state: str                  # connecting | up | down
    endpoint: str
    queue_depth: int
    service_s: float
    retries: int
    reconnects: int
    late_replies: int
    in_flight: int


class CloudLink:
    def __init__(self, endpoint: str, device_id: str, estimator: LinkEstimator,
                 context: zmq.Context | None = None, clock: Callable[[], float] = time.monotonic,
                 curve: tuple[str, str] | None = None, wall_clock: Callable[[], float] = time.time,
                 bundle_sha256: str | None = None):
        """curve: (this device's .key_secret file, the cloud's public .key file) to encrypt the link.
        bundle_sha256: the manifest this device serves; a worker that says it serves another
        (or says nothing) is refused: its answers would be another model's."""
        self.endpoint = endpoint
        self.bundle_sha256 = bundle_sha256
        self.foreign_replies = 0           # replies from a worker serving another bundle, refused
        self._foreign_logged: str | None = None
        self._refused: str | None = None   # why the worker will not serve us: FOREIGN_BUNDLE or DUPLICATE_ID
        self._cut: str | None = None       # set by cut_calls: every call fails at once with this reason
        self.on_state: Callable[[str], None] | None = None   # told each state change (the flight recorder)
        self.device_id = device_id
        self.curve = curve
        self.estimator = estimator
        self._ctx = context or zmq.Context.instance()
        self._clock = clock
        self._wall_clock = wall_clock
        self.clock_offset = ClockOffset()
        # the boot id of every rid: random, not the clock, which a device without an RTC (or
        # before NTP) repeats at every boot, and the cloud would replay the last boot's replies
        self._epoch = secrets.randbits(62)
        self._seq = 0
        self._seq_lock = threading.Lock()
        self._submit: list[_Pending] = []
        self._submit_lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.state = "connecting"
        self.queue_depth = 0
        self.service_s = 0.0
        self.retries = 0
        self.reconnects = 0
        self.late_replies = 0
        self.bad_loads = 0                 # load reports out of range or of the wrong type, ignored
        self._in_flight = 0
        self._expired: OrderedDict[tuple[int, int], _Pending] = OrderedDict()
        self.thread_error: BaseException | None = None

    # ---- used by other threads ---------------------------------------------------
    def start(self) -> "CloudLink":
        self._thread = threading.Thread(target=self._run, name="cloud-link", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake()
        if self._thread:
            self._thread.join(timeout=5)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            if self.on_state is not None:
                self.on_state(state)

    def cut_calls(self, reason: str) -> None:
        """Fail every call waiting on the cloud now, and every new one at once (the daemon is
        stopping: its frames finish on the device instead of waiting out the cloud's timeout)."""
        self._cut = reason
        self._wake()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self.thread_error is None

    @property
    def up(self) -> bool:
        return self.state == "up"

    def next_rid(self) -> tuple[int, int]:
        with self._seq_lock:
            self._seq += 1
            return (self._epoch, self._seq)

    def call(self, header: dict, payload: Any, deadline_s: float, upload_bytes: int = 0) -> CloudCall:
        """Send an infer/timing request; the returned call fails fast if the link is down."""
        rid = self.next_rid()
        call = CloudCall(rid)
        if self._cut is not None:
            call._finish(error=CloudError("UNAVAILABLE", self._cut))
            return call
        if not self.up:
            call._finish(error=CloudError("UNAVAILABLE", f"cloud link is {self.state}"))
            return call
        if header.get("op") == "infer":
            call.digest = header["digest"] = protocol.request_digest(header, payload)
        frames = [protocol.pack(dict(header, rid=list(rid)))] + ([payload] if payload is not None else [])
        self._enqueue(_Pending(call, frames, self._clock() + deadline_s, upload_bytes))
        return call

    def status(self) -> LinkStatus:
        return LinkStatus(self.state, self.endpoint, self.queue_depth, self.service_s, self.retries,
                          self.reconnects, self.late_replies, self._in_flight)

    def _enqueue(self, pending: _Pending) -> None:
        with self._submit_lock:
            self._submit.append(pending)
        self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass  # pipe full (the loop is already due to wake) or closed at shutdown

    # ---- the link thread ---------------------------------------------------------
    def _open(self) -> zmq.Socket:
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)     # never queue onto a connection that is not up
        sock.setsockopt(zmq.ROUTING_ID, protocol.routing_id(self.device_id, self._epoch))
        sock.setsockopt(zmq.RECONNECT_IVL, int(RECONNECT_MIN_S * 1000))
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, int(RECONNECT_MAX_S * 1000))
        if self.curve is not None:
            curve_auth.make_client(sock, *self.curve)
        sock.connect(self.endpoint)
        return sock

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # kept for the owner: status shows it, nothing is lost silently
            self.thread_error = exc
            self.state = "down"
            log.exception("cloud link thread died")

    def _loop(self) -> None:
        sock = self._open()
        pending: dict[tuple[int, int], _Pending] = {}
        now = self._clock()
        last_recv = now
        last_send = 0.0
        last_upload = now
        backoff = RECONNECT_MIN_S
        reconnect_at = now
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)

        def send(p: _Pending) -> None:
            nonlocal last_send
            try:
                sock.send_multipart(p.frames, zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return  # not connected yet (IMMEDIATE): the retry timer resends
            t = self._clock()
            if p.upload_bytes:
                self.estimator.sent(p.upload_bytes, t, token=p.call.rid)
            if p.attempts == 0:
                p.first_sent = t
            else:
                self.retries += 1
            p.attempts += 1
            p.last_sent = last_send = t
            p.sent_wall = self._wall_clock()

        while not self._stop.is_set():
            events = dict(poller.poll(int(HEARTBEAT_INTERVAL_S * 250)))
            now = self._clock()
            if self._wake_r in events:
                try:
                    os.read(self._wake_r, 4096)
                except BlockingIOError:
                    pass
                with self._submit_lock:
                    new, self._submit = self._submit, []
                for p in new:
                    pending[p.call.rid] = p
                    send(p)
                    if p.upload_bytes:
                        last_upload = now
            if sock in events:
                while True:
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    last_recv = self._clock()
                    if self._on_reply(frames, pending, last_recv):
                        if self.state != "up":
                            log.info("cloud link up (%s)", self.endpoint)
                        self._set_state("up")
                        backoff = RECONNECT_MIN_S
                    elif self._refused is not None:
                        self._set_state(self._refused)     # alive, but not serving us
                        backoff = RECONNECT_MIN_S
            if self._cut is not None:
                for rid, p in list(pending.items()):
                    if p.kind == "call":
                        del pending[rid]
                        p.call._finish(error=CloudError("UNAVAILABLE", self._cut))
            now = self._clock()
            # deadlines and retries
            retry_after, crossing_s_per_byte = self._retry_timer()
            for rid, p in list(pending.items()):
                if now >= p.deadline or p.call.abandoned:
                    del pending[rid]
                    if p.kind == "call":
                        self._expired[rid] = p    # its late reply still measures the uplink
                        while len(self._expired) > EXPIRED_MEMORY:
                            self.estimator.lost(self._expired.popitem(last=False)[0], now)
                    elif p.upload_bytes:
                        self.estimator.lost(rid, now)
                    p.call._finish(error=CloudError("DEADLINE_EXCEEDED", "no cloud reply before the deadline"))
                elif self.state == "up" and p.kind == "call" and (
                        p.attempts == 0 or now - p.last_sent > retry_after + p.upload_bytes * crossing_s_per_byte):
                    send(p)
            self._in_flight = sum(1 for p in pending.values() if p.kind == "call")
            # liveness: silence means down; down means reopen the socket, with backoff
            if self.state in ("up", FOREIGN_BUNDLE, DUPLICATE_ID) and now - last_recv > HEARTBEAT_LIVENESS * HEARTBEAT_INTERVAL_S:
                log.warning("cloud link down: silent for %.1f s; reconnecting", now - last_recv)
                self._set_state("down")
                reconnect_at = now
            if self.state == "down" and now >= reconnect_at:
                # what was on the old connection is gone: its silence stays as a sample,
                # and the pending calls are resent (their clocks restart)
                for rid in [*pending, *self._expired]:
                    self.estimator.lost(rid, now)
                self.clock_offset.reset()         # the next server may keep another clock
                poller.unregister(sock)
                sock.close(0)
                sock = self._open()
                poller.register(sock, zmq.POLLIN)
                self.reconnects += 1
                reconnect_at, backoff = now + backoff, min(backoff * 2, RECONNECT_MAX_S)
                self._heartbeat(pending, send, now)
            elif now - last_send > HEARTBEAT_INTERVAL_S:
                self._heartbeat(pending, send, now)
            probe_bytes, probe_every_s = probe_plan(self.estimator.estimate().uplink_bps)
            if (self.state == "up" and now - last_upload > probe_every_s
                    and not any(p.kind in ("call", "probe") for p in pending.values())):
                self._probe(pending, send, now, probe_bytes)
                last_upload = now
        sock.close(0)
        for p in pending.values():
            p.call._finish(error=CloudError("UNAVAILABLE", "cloud link stopped"))

    def _retry_timer(self) -> tuple[float, float]:
        """(seconds, seconds per uploaded byte): an unanswered request is resent after
        max(RETRY_MIN_S, 4 x SRTT) plus its own crossing at the estimated uplink. An upload
        cannot be answered before it has crossed: a 150 KB frame on a 3 Mbit/s link takes
        0.4 s, and resending it at 0.25 s doubled the load on the slow link (and left no
        upload timed: a retried one is ambiguous)."""
        estimate = self.estimator.estimate()
        bps = self.estimator.measured_uplink_bps()    # not the silence bound: it grows as the upload waits
        return max(RETRY_MIN_S, 4 * (estimate.rtt_s or 0.0)), 8.0 / bps if bps else 0.0

    def retry_after_s(self, upload_bytes: int) -> float:
        """How long an upload of upload_bytes sent now waits for its reply before it is resent."""
        after, per_byte = self._retry_timer()
        return after + upload_bytes * per_byte

    def _heartbeat(self, pending: dict, send: Callable[[_Pending], None], now: float) -> None:
        rid = self.next_rid()
        p = _Pending(CloudCall(rid), [protocol.pack(dict(protocol.PING, rid=list(rid)))],
                     now + HEARTBEAT_LIVENESS * HEARTBEAT_INTERVAL_S, 0, kind="ping")
        p.on_reply = lambda header, rtt: self._on_pong(p, header, rtt)
        pending[rid] = p
        send(p)
        p.attempts = max(p.attempts, 1)  # pings are never retried: the next one replaces them

    def _on_pong(self, ping: _Pending, header: dict, rtt: float) -> None:
        self.estimator.observe_rtt(rtt)
        clock = header.get("clock")
        if isinstance(clock, (int, float)) and not isinstance(clock, bool) and np.isfinite(clock):
            self.clock_offset.observe(ping.sent_wall, self._wall_clock(), float(clock))

    def cloud_time(self) -> float | None:
        """Now, on the cloud's wall clock; None before a heartbeat has measured the offset."""
        return self.clock_offset.cloud_time(self._wall_clock())

    def _probe(self, pending: dict, send: Callable[[_Pending], None], now: float, size: int = PROBE_BYTES) -> None:
        rid = self.next_rid()
        p = _Pending(CloudCall(rid), [protocol.pack(dict(protocol.PROBE, rid=list(rid))), bytes(size)],
                     now + 10.0, size, kind="probe",
                     on_reply=lambda header, rtt: self.estimator.observe_upload(size, rtt, 0.0, token=rid))
        pending[rid] = p
        send(p)
        p.attempts = max(p.attempts, 1)

    def _on_reply(self, frames: list, pending: dict, now: float) -> bool:
        """Deliver one reply; False when it is malformed or from a worker serving another bundle
        (that call then fails, and its frame falls back)."""
        try:
            header = protocol.unpack_reply(frames[0])
        except protocol.ProtocolError as exc:
            log.warning("dropping malformed cloud reply: %s", exc)
            return False
        if header.get("code") == protocol.DUPLICATE_DEVICE:
            if self._refused != DUPLICATE_ID:
                log.error("the cloud at %s refuses this device: another device is using device id %r; give each "
                          "device its own [cloud].device_id. Every frame stays on the device meanwhile",
                          self.endpoint, self.device_id)
            self._refused = DUPLICATE_ID
        elif not self._our_bundle(header):
            self._refused = FOREIGN_BUNDLE
        else:
            self._refused = None
        if self._refused is not None:
            p = pending.pop(tuple(header["rid"]), None)
            if p is not None:
                p.call._finish(error=CloudError(self._refused, f"the cloud link is {self._refused}"))
            return False
        self._take_load(header.get("load"))
        rid = tuple(header["rid"])
        p = pending.pop(rid, None)
        if p is None or p.call.abandoned:
            late = p or self._expired.pop(rid, None)
            if late is not None:
                self.late_replies += 1  # answered by fallback already: drop, never deliver twice
                self._observe_upload(late, header, now)
            return True
        round_trip = now - p.last_sent
        if p.on_reply is not None:
            if p.attempts <= 1:  # Karn: a retried request's round trip is ambiguous
                p.on_reply(header, round_trip)
            return True
        self._observe_upload(p, header, now)
        if not p.call._finish(CloudReply(header, frames[1] if len(frames) > 1 else None, round_trip,
                                         p.call.digest)):
            self.late_replies += 1
        return True

    def _our_bundle(self, header: dict) -> bool:
        """Whether the worker serves this device's bundle (its manifest sha256 is in every reply)."""
        if self.bundle_sha256 is None:
            return True
        theirs = header.get("bundle")
        if theirs == self.bundle_sha256:
            if self._foreign_logged is not None:
                log.info("the cloud at %s serves this device's bundle %s again", self.endpoint, theirs[:12])
                self._foreign_logged = None
            return True
        self.foreign_replies += 1
        said = f"bundle {theirs[:12]}" if isinstance(theirs, str) else "no bundle identity (an older worker)"
        if self._foreign_logged != said:
            log.error("the cloud at %s serves %s, and this device's bundle is %s: its answers would be another "
                      "model's, so every frame stays on the device until it serves %s", self.endpoint, said,
                      self.bundle_sha256[:12], self.bundle_sha256[:12])
            self._foreign_logged = said
        return False

    def _take_load(self, load: Any) -> None:
        """The worker's reported load, when it is one: a queue depth of 0..MAX_QUEUE_DEPTH and a
        service time of 0..MAX_SERVICE_S; anything else is ignored and counted, never planned on."""
        if load is None:
            return
        if not isinstance(load, dict):
            self.bad_loads += 1
            return
        depth, service = load.get("queue_depth"), load.get("service_s")
        if depth is not None:
            if isinstance(depth, int) and not isinstance(depth, bool) and 0 <= depth <= MAX_QUEUE_DEPTH:
                self.queue_depth = depth
            else:
                self.bad_loads += 1
        if service is not None:
            if (isinstance(service, (int, float)) and not isinstance(service, bool) and math.isfinite(service)
                    and 0 <= service <= MAX_SERVICE_S):
                self.service_s = float(service)
            else:
                self.bad_loads += 1

    def _observe_upload(self, p: _Pending, header: dict, now: float) -> None:
        """A reply, on time or late, times its upload (Karn: not a retried one's)."""
        if p.upload_bytes and p.attempts <= 1 and header.get("ok"):
            service = sum(v for v in (header.get("compute_s"), header.get("queue_s"))
                          if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 3600)
            self.estimator.observe_upload(p.upload_bytes, now - p.last_sent, service, now, token=p.call.rid)
        else:
            self.estimator.forget(p.call.rid)
