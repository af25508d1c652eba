"""Uplink bandwidth and RTT, measured from real transfers, never configured.

RTT comes from heartbeat round trips (small messages), smoothed as TCP does
(RFC 6298: SRTT gain 1/8, RTTVAR gain 1/4). Uplink bandwidth comes from every
upload whose size makes its transfer time visible (inference uploads and idle
probes): sample = bits / (round trip - cloud service time - base RTT), where base
RTT is the smallest recent heartbeat RTT; smoothed the same way, with its variation.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

RTT_GAIN = 1 / 8
VAR_GAIN = 1 / 4
MIN_UPLOAD_BYTES = 1024       # smaller uploads are dominated by RTT jitter
MIN_TRANSFER_S = 2e-4         # transfers faster than this are clamped: a lower bound on bandwidth
BASE_RTT_WINDOW = 16


@dataclass(frozen=True)
class LinkEstimate:
    uplink_bps: float | None
    uplink_bps_std: float
    rtt_s: float | None
    rtt_s_std: float
    rtt_samples: int
    bandwidth_samples: int


class LinkEstimator:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._srtt: float | None = None
        self._rttvar = 0.0
        self._recent_rtts: deque[float] = deque(maxlen=BASE_RTT_WINDOW)
        self._bw: float | None = None
        self._bwvar = 0.0
        self._rtt_n = 0
        self._bw_n = 0

    def observe_rtt(self, rtt_s: float) -> None:
        if rtt_s <= 0:
            return
        with self._lock:
            self._recent_rtts.append(rtt_s)
            self._rtt_n += 1
            if self._srtt is None:
                self._srtt, self._rttvar = rtt_s, rtt_s / 2
            else:
                self._rttvar += VAR_GAIN * (abs(self._srtt - rtt_s) - self._rttvar)
                self._srtt += RTT_GAIN * (rtt_s - self._srtt)

    def observe_upload(self, upload_bytes: int, round_trip_s: float, cloud_service_s: float) -> None:
        """An upload of upload_bytes answered round_trip_s after it was sent."""
        if upload_bytes < MIN_UPLOAD_BYTES:
            return
        with self._lock:
            base = min(self._recent_rtts) if self._recent_rtts else 0.0
            # Too fast to time (loopback, LAN): count it as a lower bound, not as nothing.
            transfer = max(round_trip_s - cloud_service_s - base, MIN_TRANSFER_S)
            sample = upload_bytes * 8.0 / transfer
            self._bw_n += 1
            if self._bw is None:
                self._bw, self._bwvar = sample, sample / 2
            else:
                self._bwvar += VAR_GAIN * (abs(self._bw - sample) - self._bwvar)
                self._bw += RTT_GAIN * 2 * (sample - self._bw)  # gain 1/4: bandwidth moves faster than RTT

    def estimate(self) -> LinkEstimate:
        with self._lock:
            return LinkEstimate(self._bw, self._bwvar, self._srtt, self._rttvar, self._rtt_n, self._bw_n)

    def base_rtt_s(self) -> float | None:
        with self._lock:
            return min(self._recent_rtts) if self._recent_rtts else None
