"""The daemon's status as a typed value: built by the daemon, read by the metrics and, from the
API's JSON (`to_reply` / `from_reply`: milliseconds on the wire, seconds inside), by the CLI."""

from __future__ import annotations

from dataclasses import asdict, dataclass


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3


def _s(ms: float | None) -> float | None:
    return None if ms is None else ms / 1e3


@dataclass(frozen=True)
class LinkStatus:
    state: str                       # up, down, connecting; none without a cloud
    uplink_bps: float | None
    uplink_bps_std: float
    rtt_s: float | None
    rtt_s_std: float
    rtt_samples: int
    bandwidth_samples: int
    uplink_age_s: float | None       # since the last bandwidth sample
    uplink_backlog_s: float          # the modelled uplink queue
    radio: str

    def to_reply(self) -> dict:
        return {"state": self.state, "uplink_bps": self.uplink_bps, "uplink_bps_std": self.uplink_bps_std,
                "rtt_ms": _ms(self.rtt_s), "rtt_ms_std": _ms(self.rtt_s_std),
                "samples": {"rtt": self.rtt_samples, "bandwidth": self.bandwidth_samples},
                "uplink_age_s": self.uplink_age_s, "uplink_backlog_ms": _ms(self.uplink_backlog_s),
                "radio": self.radio}

    @classmethod
    def from_reply(cls, d: dict) -> "LinkStatus":
        samples = d.get("samples") or {}
        return cls(d["state"], d.get("uplink_bps"), d.get("uplink_bps_std") or 0.0, _s(d.get("rtt_ms")),
                   _s(d.get("rtt_ms_std")) or 0.0, samples.get("rtt", 0), samples.get("bandwidth", 0),
                   d.get("uplink_age_s"), _s(d.get("uplink_backlog_ms")) or 0.0, d.get("radio", "?"))


@dataclass(frozen=True)
class CloudStatus:
    state: str
    queue_depth: int
    service_s: float
    time_vs_profile: float           # measured compute time over the profile's (1.0: as calibrated)
    retries: int
    reconnects: int
    late_replies_dropped: int
    in_flight: int

    def to_reply(self) -> dict:
        d = asdict(self)
        d["service_ms"] = _ms(d.pop("service_s"))
        return d

    @classmethod
    def from_reply(cls, d: dict) -> "CloudStatus":
        return cls(d["state"], d.get("queue_depth", 0), _s(d.get("service_ms")) or 0.0, d.get("time_vs_profile", 1.0),
                   d.get("retries", 0), d.get("reconnects", 0), d.get("late_replies_dropped", 0), d.get("in_flight", 0))


@dataclass(frozen=True)
class DeviceStatus:
    backend: str
    time_vs_profile: float
    emulated_slowdown: float
    board: dict | None               # jtop's view on a Jetson (drivers/jetson_board.py)
    queue_depth: int                 # frames waiting for a worker
    busy_workers: int
    frames_at_device: int
    device_wait_s: float

    def to_reply(self) -> dict:
        d = asdict(self)
        d["device_wait_ms"] = _ms(d.pop("device_wait_s"))
        return d

    @classmethod
    def from_reply(cls, d: dict) -> "DeviceStatus":
        return cls(d.get("backend", "?"), d.get("time_vs_profile", 1.0), d.get("emulated_slowdown", 1.0),
                   d.get("board"), d.get("queue_depth", 0), d.get("busy_workers", 0), d.get("frames_at_device", 0),
                   _s(d.get("device_wait_ms")) or 0.0)


@dataclass(frozen=True)
class DaemonStatus:
    mode: str
    policy: str
    goal: str
    bundle_name: str
    bundle_sha256: str
    profile: str
    uptime_s: float
    link: LinkStatus
    power: dict                      # the power source's own fields (daemon/service.py _power_status)
    cloud: CloudStatus
    device: DeviceStatus
    latency: dict                    # p50/p95/p99 over the recent window, ms
    mcu: dict | None

    def to_reply(self) -> dict:
        return {"mode": self.mode, "policy": self.policy, "goal": self.goal,
                "bundle": {"name": self.bundle_name, "sha256": self.bundle_sha256}, "profile": self.profile,
                "uptime_s": self.uptime_s, "link": self.link.to_reply(), "power": self.power,
                "cloud": self.cloud.to_reply(), "device": self.device.to_reply(), "latency": self.latency,
                "mcu": self.mcu}

    @classmethod
    def from_reply(cls, d: dict) -> "DaemonStatus":
        bundle = d.get("bundle") or {}
        return cls(d["mode"], d["policy"], d["goal"], bundle.get("name", "?"), bundle.get("sha256", ""),
                   d.get("profile", ""), d.get("uptime_s", 0.0), LinkStatus.from_reply(d["link"]), d.get("power") or {},
                   CloudStatus.from_reply(d["cloud"]), DeviceStatus.from_reply(d["device"]), d.get("latency") or {},
                   d.get("mcu"))
