"""Telemetry for the planner: the live link estimate plus the load of device and cloud."""

from __future__ import annotations

import threading

from adaptinf.daemon.cloud_link import CloudLink
from adaptinf.daemon.device_queue import DeviceQueue
from adaptinf.daemon.link_estimator import LinkEstimator
from adaptinf.daemon.power_monitor import PowerMonitor
from adaptinf.policies.plan import Telemetry
from adaptinf.profile import Profile

LOAD_GAIN = 0.2   # EWMA gain of the measured/profiled time ratios


class TelemetryTracker:
    """K_mobile and K_cloud of Algorithm 1, from measured vs profiled times."""

    def __init__(self, estimator: LinkEstimator, link: CloudLink | None, radio: str,
                 power: PowerMonitor | None = None, device: DeviceQueue | None = None):
        self.estimator = estimator
        self.power = power
        self.link = link
        self.radio = radio
        self.device = device
        self._lock = threading.Lock()
        self.device_slowdown = 1.0
        self.cloud_slowdown = 1.0

    def observe_device(self, measured_s: float, profiled_s: float) -> None:
        if profiled_s > 0:
            with self._lock:
                self.device_slowdown += LOAD_GAIN * (measured_s / profiled_s - self.device_slowdown)

    def observe_cloud(self, compute_s: float, profiled_s: float) -> None:
        if profiled_s > 0:
            with self._lock:
                self.cloud_slowdown += LOAD_GAIN * (compute_s / profiled_s - self.cloud_slowdown)

    def snapshot(self, profile: Profile) -> Telemetry:
        est = self.estimator.estimate()
        fallback = profile.link
        uplink = est.uplink_bps or (fallback.uplink_bps if fallback else 1e6)
        rtt = est.rtt_s if est.rtt_s is not None else (fallback.rtt_ms / 1e3 if fallback else 0.05)
        link = self.link
        queue_s = link.queue_depth * link.service_s if link else 0.0
        power = self.power.active_power_w if self.power is not None and self.power.healthy else None
        return Telemetry(uplink_bps=uplink, rtt_s=rtt, radio=self.radio, cloud_up=bool(link and link.up),
                         cloud_slowdown=self.cloud_slowdown, cloud_queue_s=queue_s,
                         device_slowdown=self.device_slowdown, device_power_w=power,
                         device_queue_s=self.device.backlog_s() if self.device is not None else 0.0,
                         uplink_backlog_s=self.estimator.uplink_backlog_s() if link is not None else 0.0,
                         uplink_std_bps=est.uplink_bps_std if est.uplink_bps else None, uplink_age_s=est.uplink_age_s)
