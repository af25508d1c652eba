"""The perfect-knowledge bound: per frame, the best partition had the planner known the link.

For a frame sent at t, every partition j of the profile is priced with the cost
model's terms (policies/split.py), except that the upload time is read exactly from the
link: on a trace, the drain time of F_j bytes through the delivery opportunities from
the moment the head is done (t + TM_j), on a fixed link F_j * 8 / rate. Plus the RTT
and the cloud's time. It ignores queueing (the device's and the uplink's), so it is a
reference, not a strict lower bound: a frame's best partition is priced as if it had
the device and the link to itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from adaptinf.policies.radio_power import uplink_power_w
from adaptinf.profile import Profile
from adaptinf.rig.link_shaper import LinkProfile


@dataclass(frozen=True)
class BoundFrame:
    latency_s: float
    latency_partition: str
    energy_j: float
    energy_partition: str


def perfect_knowledge(profile: Profile, link: LinkProfile, radio: str, send_times_s: np.ndarray,
                      device_power_w: float | None = None) -> list[BoundFrame]:
    """The bound for frames sent at send_times_s (seconds from the trace's START)."""
    out = []
    for t in send_times_s:
        best_latency = best_energy = None
        for p in profile.partitions:
            device_s = p.device_s
            power_w = device_power_w if device_power_w is not None else p.device_power_w
            if p.kind == "device":
                latency, energy = device_s, device_s * power_w
            else:
                if link.uplink_trace is not None:
                    upload_s = link.uplink_trace.drain_s(t + device_s, p.upload_bytes)
                else:
                    upload_s = p.upload_bytes * 8.0 / link.uplink_bps
                rate = p.upload_bytes * 8.0 / upload_s if upload_s > 0 else link.uplink_bps
                latency = device_s + upload_s + link.rtt_s + p.cloud_s
                energy = device_s * power_w + upload_s * uplink_power_w(radio, rate)
            if best_latency is None or latency < best_latency[0]:
                best_latency = (latency, p.name)
            if best_energy is None or energy < best_energy[0]:
                best_energy = (energy, p.name)
        out.append(BoundFrame(best_latency[0], best_latency[1], best_energy[0], best_energy[1]))
    return out
