"""Uplink bandwidth and RTT, measured from real transfers, never configured.

RTT comes from heartbeat round trips (small messages, sent while the link is idle),
smoothed as TCP does (RFC 6298: SRTT gain 1/8, RTTVAR gain 1/4); the base RTT is the
smallest recent heartbeat. A link that streams frames sends no heartbeats, so the replies
of uploads whose crossing is a small part of their round trip may lower the smoothed RTT
too (an over-estimate from a busy start-up is corrected while frames flow).

Uplink bandwidth comes from every upload whose size makes its transfer time visible
(inference uploads, late replies included, and idle probes). The uplink is a FIFO, so
an upload sent while an earlier one is still crossing starts only when that one is
done: its transfer time runs from max(its send time, the previous upload's finish),
where an upload "finishes" at its reply time less the cloud's service time and the
base RTT. The estimate is the throughput of the newest samples, those within WINDOW_S
of the newest and at most WINDOW_SAMPLES of them: after a step in capacity the old
samples are gone within WINDOW_SAMPLES uploads or WINDOW_S, so the estimate follows a
cellular link that moves five-fold within seconds (docs/demo.md measures it).

Silence is evidence too. Samples arrive only with replies, so when the link falls the
newest samples are the old, fast ones. An upload that has been on its way longer than the
estimate allows bounds the capacity from above: if its bits have not crossed in the time
since it could start (less the base RTT, the cloud's recent service time and
a jitter allowance, SILENCE_GRACE_S or 4 RTT deviations), the link is slower than bits / that time, and the estimate is
capped there until the reply comes. An upload the link loses (reconnect, or forgotten)
leaves that bound behind as a sample, so a dead link is not remembered as a fast one.

The uplink's queue is modelled too: every upload handed to the link occupies it for
bytes * 8 / estimate after whatever is still ahead of it, so the planner can see that
a frame sent now waits behind earlier ones (`uplink_backlog_s`).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Hashable

RTT_GAIN = 1 / 8
VAR_GAIN = 1 / 4
MIN_UPLOAD_BYTES = 1024       # smaller uploads are dominated by RTT jitter
MIN_TRANSFER_S = 2e-4         # transfers faster than this are clamped: a lower bound on bandwidth
RESOLVABLE_S = 3e-3           # transfers shorter than this are within timing noise and traces' bursts
UNRESOLVED_RISE = 4.0         # ...and may raise the estimate at most this many times per sample
BASE_RTT_WINDOW = 16
WINDOW_S = 1.0                # bandwidth samples older than this (vs the newest) are dropped
WINDOW_SAMPLES = 4
SILENCE_GRACE_S = 0.1         # jitter allowed an unanswered upload before its silence counts:
                              # at least this, or 4 RTT deviations where the link (or host) is noisier
SERVICE_GAIN = 1 / 4
REPLY_RTT_MAX_CROSSING = 0.5  # a reply is an RTT sample when its crossing is at most this share of its round trip


@dataclass(frozen=True)
class LinkEstimate:
    uplink_bps: float | None
    uplink_bps_std: float
    rtt_s: float | None
    rtt_s_std: float
    rtt_samples: int
    bandwidth_samples: int
    uplink_age_s: float | None = None     # since the newest bandwidth sample; None: never measured


@dataclass(frozen=True)
class _Sample:
    done: float          # when its last byte left the uplink (sender's clock)
    bits: float
    transfer_s: float
    observed_at: float   # when its reply arrived


class LinkEstimator:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._srtt: float | None = None
        self._rttvar = 0.0
        self._recent_rtts: deque[float] = deque(maxlen=BASE_RTT_WINDOW)
        self._samples: deque[_Sample] = deque(maxlen=WINDOW_SAMPLES)
        self._prev_done = -math.inf
        self._rtt_n = 0
        self._bw_n = 0
        self._measured: tuple[int, tuple[float | None, float]] = (-1, (None, 0.0))   # (at _bw_n, measured)
        self._uplink_free_at = -math.inf
        self._outstanding: dict[Hashable, tuple[float, float]] = {}  # token -> (sent at, bits)
        self._service_s = 0.0         # the cloud's recent service time (smoothed)
        # told every input, with the clock reading it used: the flight recorder keeps them, and
        # `adaptinf replay --estimator` feeds them to an estimator again, in the same order
        self.observer: Callable[[str, dict], None] | None = None

    def observe_rtt(self, rtt_s: float, now: float | None = None) -> None:
        """A heartbeat's round trip (sent on an idle link: nothing ahead of it on the uplink)."""
        if self.observer is not None:
            self.observer("rtt", {"rtt_s": rtt_s, "now": self._clock() if now is None else now})
        if rtt_s <= 0:
            return
        with self._lock:
            self._recent_rtts.append(rtt_s)
            self._smooth_rtt_locked(rtt_s)

    def _smooth_rtt_locked(self, rtt_s: float) -> None:
        self._rtt_n += 1
        if self._srtt is None:
            self._srtt, self._rttvar = rtt_s, rtt_s / 2
        else:
            self._rttvar += VAR_GAIN * (abs(self._srtt - rtt_s) - self._rttvar)
            self._srtt += RTT_GAIN * (rtt_s - self._srtt)

    def observe_upload(self, upload_bytes: int, round_trip_s: float, cloud_service_s: float,
                       now: float | None = None, token: Hashable | None = None) -> None:
        """An upload of upload_bytes answered round_trip_s after it was sent (at `now`).
        `token` is the one it was `sent` with: its silence bound ends here."""
        now = self._clock() if now is None else now
        if self.observer is not None:
            self.observer("upload_done", {"bytes": upload_bytes, "rtt_s": round_trip_s, "service_s": cloud_service_s,
                                          "now": now, "token": _token(token)})
        with self._lock:
            self._outstanding.pop(token, None)
            if upload_bytes < MIN_UPLOAD_BYTES:
                return
            self._service_s += SERVICE_GAIN * (max(0.0, cloud_service_s) - self._service_s)
            self._rtt_from_reply_locked(upload_bytes, round_trip_s, cloud_service_s, now)
            base = min(self._recent_rtts) if self._recent_rtts else 0.0
            sent = now - round_trip_s
            done = now - cloud_service_s - base
            # FIFO: it could not start crossing before the upload ahead of it had finished
            started = max(sent, self._prev_done) if self._prev_done < done else sent
            self._prev_done = max(self._prev_done, done)
            # Too fast to time (loopback, LAN): count it as a lower bound, not as nothing. But
            # an upload that crossed faster than RESOLVABLE_S may have met a burst of delivery
            # opportunities (a cellular link's) and says little of the rate: it may raise the
            # estimate at most UNRESOLVED_RISE times, so one lucky packet is not a 50 Mbit/s link.
            transfer = max(done - started, MIN_TRANSFER_S)
            current = self._bandwidth_locked(now)[0] if transfer < RESOLVABLE_S else None
            if current:
                transfer = max(transfer, upload_bytes * 8.0 / (UNRESOLVED_RISE * current))
            self._samples.append(_Sample(done, upload_bytes * 8.0, transfer, now))
            self._bw_n += 1
            if self._uplink_free_at > now + transfer:   # a reply proves the queue ahead of it is gone
                self._uplink_free_at = now

    def _rtt_from_reply_locked(self, upload_bytes: int, round_trip_s: float, cloud_service_s: float,
                               now: float) -> None:
        """An answered upload is an RTT sample too, as a data ACK is for TCP: heartbeats go out
        only while the link is idle, so without this a link streaming frames kept the RTT of
        its start-up pings (a busy start-up's: +10 ms on every cloud prediction). Its own
        crossing, at the current estimate, and its wait behind earlier uploads are taken out;
        where those are most of the round trip the remainder is mostly estimation error, and
        the reply is not used (as Karn drops ambiguous samples).
        What is left still holds whatever the cloud's report of its service leaves out (its
        queue, a busy host's scheduling: a loaded CI host's first frame gave one of several
        hundred ms), so it is an upper bound, not a measurement: it may lower the smoothed
        RTT, never raise it; a slower link shows in the heartbeats once the stream pauses.
        The base RTT (which times the crossings) stays the heartbeats', so a low estimate
        cannot feed itself through a low base."""
        bps = self._bandwidth_locked(now)[0]
        if not bps:
            return
        sent = now - round_trip_s
        crossing = max(0.0, self._prev_done - sent) + upload_bytes * 8.0 / bps
        rtt = round_trip_s - max(0.0, cloud_service_s) - crossing
        lower = self._srtt is not None and 0 < rtt < self._srtt
        if lower and crossing <= REPLY_RTT_MAX_CROSSING * round_trip_s:
            self._smooth_rtt_locked(rtt)

    def sent(self, upload_bytes: int, now: float | None = None, token: Hashable | None = None) -> None:
        """An upload was handed to the uplink: it occupies it after what is already queued.
        With a `token`, it is awaited: until `observe_upload` or `lost` names the token, its
        silence bounds the estimate (a resend restarts its clock)."""
        now = self._clock() if now is None else now
        if self.observer is not None:
            self.observer("upload_sent", {"bytes": upload_bytes, "now": now, "token": _token(token)})
        with self._lock:
            # any size: a small upload's answer is too jittery to time (MIN_UPLOAD_BYTES), but
            # its silence past the allowance (which covers the jitter) is still a bound: an
            # outage stalls a 588-byte upload as surely as a 6 KB one
            if token is not None and upload_bytes > 0:
                self._outstanding[token] = (now, upload_bytes * 8.0)
            bps = self._bandwidth_locked(now)[0]
            if bps:
                self._uplink_free_at = max(now, self._uplink_free_at) + upload_bytes * 8.0 / bps

    def lost(self, token: Hashable, now: float | None = None) -> None:
        """An awaited upload will never be answered (the link dropped it, or it was given up):
        the time it went unanswered stays behind as a sample, an upper bound on the link."""
        now = self._clock() if now is None else now
        if self.observer is not None:
            self.observer("upload_lost", {"now": now, "token": _token(token)})
        with self._lock:
            entry = self._outstanding.pop(token, None)
            if entry is None:
                return
            waited = now - self._silence_start_locked(entry[0]) - self._allowance_locked()
            if waited > 0:
                self._samples.append(_Sample(now, entry[1], waited, now))
                self._bw_n += 1

    def forget(self, token: Hashable) -> None:
        """An awaited upload was answered but cannot be timed (a retry): no bound, no sample."""
        if self.observer is not None:
            self.observer("upload_untimed", {"now": self._clock(), "token": _token(token)})
        with self._lock:
            self._outstanding.pop(token, None)

    def _silence_start_locked(self, sent_at: float) -> float:
        """When an upload sent at sent_at could start crossing: after the last one known done."""
        return max(sent_at, self._prev_done)

    def _allowance_locked(self) -> float:
        base = min(self._recent_rtts) if self._recent_rtts else 0.0
        return base + self._service_s + max(SILENCE_GRACE_S, 4 * self._rttvar)

    def _silence_bound_locked(self, now: float) -> float | None:
        """bits / time for the oldest awaited upload, once it has waited past its allowance."""
        if not self._outstanding:
            return None
        sent_at, bits = min(self._outstanding.values())
        waited = now - self._silence_start_locked(sent_at) - self._allowance_locked()
        return bits / waited if waited > 0 else None

    def uplink_backlog_s(self, now: float | None = None) -> float:
        """How long an upload handed over now waits behind earlier ones (the modelled queue)."""
        now = self._clock() if now is None else now
        with self._lock:
            return max(0.0, self._uplink_free_at - now)

    def _measured_locked(self) -> tuple[float | None, float]:
        """The newest samples' throughput and spread, without the silence bound. It changes only
        with a new sample, and every frame's plan asks for it: kept until then."""
        if self._measured[0] != self._bw_n:
            self._measured = (self._bw_n, self._measure_locked())
        return self._measured[1]

    def _measure_locked(self) -> tuple[float | None, float]:
        if not self._samples:
            return None, 0.0
        newest = self._samples[-1].done
        window = [s for s in self._samples if newest - s.done <= WINDOW_S] or [self._samples[-1]]
        bps = sum(s.bits for s in window) / sum(s.transfer_s for s in window)
        rates = [s.bits / s.transfer_s for s in window]
        return bps, (sum((r - bps) ** 2 for r in rates) / len(rates)) ** 0.5

    def measured_uplink_bps(self) -> float | None:
        """The uplink as the answered uploads measured it, without the silence bound: what
        times a resend. An unanswered upload's own silence lowers the estimate as it waits,
        so a resend timed by the bounded estimate moved away as fast as the upload waited and
        never came (a stalled link got no retry)."""
        with self._lock:
            return self._measured_locked()[0]

    def _bandwidth_locked(self, now: float) -> tuple[float | None, float]:
        bps, std = self._measured_locked()
        if bps is None:
            return None, 0.0
        bound = self._silence_bound_locked(now)
        if bound is not None and bound < bps:
            return bound, max(std, bps - bound)
        return bps, std

    def estimate(self) -> LinkEstimate:
        with self._lock:
            now = self._clock()
            bps, std = self._bandwidth_locked(now)
            age = now - self._samples[-1].observed_at if self._samples else None
            return LinkEstimate(bps, std, self._srtt, self._rttvar, self._rtt_n, self._bw_n,
                                None if age is None else max(0.0, age))

    def base_rtt_s(self) -> float | None:
        with self._lock:
            return min(self._recent_rtts) if self._recent_rtts else None


def _token(token: Hashable | None):
    """A token as JSON can carry it (the link's are (boot id, seq) tuples)."""
    return list(token) if isinstance(token, tuple) else token
