"""Split-point selection: paper 004 Algorithm 1, selection phase (lines 35-41).

For every partition j (each split point, plus mobile-only and cloud-only):
  TM_j = device_ms_j * K_mobile              device compute (head + reduction unit)
  TU_j = F_j / NB                            upload of the quantised reduced tensor
  TC_j = cloud_ms_j * K_cloud + queue wait   restoration + tail on the cloud
  latency_j = TM_j + TU_j + RTT + TC_j       (RTT added: the paper's TU has no round trip)
  energy_j  = TM_j * PM_j + TU_j * PU        PU = alpha_u * t_u + beta (Table III)
and return argmin latency or argmin energy. NB and RTT are the live link estimate,
K_cloud and the queue wait come from the load the cloud reports, K_mobile from the
device's measured vs profiled time.

Modes (thesis ch.4.3.2): private keeps everything on the device; mission-critical
takes the most accurate candidates and the fastest of them; power-saving plans for
energy. A cloud that is down leaves mobile-only. With a deadline (SLA), only
candidates predicted to meet it are considered, when any is.
"""

from __future__ import annotations

from adaptinf.policies.plan import GOALS, MODES, Candidate, FrameContext, Plan, Telemetry
from adaptinf.policies.radio_power import uplink_power_w
from adaptinf.profile import MOBILE_ONLY, Profile


class CostModel:
    """Predictions for every partition of one profile; built once per profile."""

    def __init__(self, profile: Profile):
        if not any(p.name == MOBILE_ONLY for p in profile.partitions):
            raise ValueError("profile has no mobile-only partition: there would be no plan without the cloud")
        self.profile = profile
        self._rows = [(p.name, p.kind, p.device_ms / 1e3, p.device_power_w, p.cloud_ms / 1e3,
                       p.upload_bytes * 8.0, p.accuracy) for p in profile.partitions]
        self._best_accuracy = max((p.accuracy for p in profile.partitions if p.accuracy is not None), default=None)

    def predict(self, t: Telemetry) -> list[Candidate]:
        radio_w = uplink_power_w(t.radio, t.uplink_bps)
        out = []
        for name, kind, device_s, power_w, cloud_s, upload_bits, accuracy in self._rows:
            tm = device_s * t.device_slowdown
            if kind == "device":
                tu = tn = tc = 0.0
            else:
                tu = upload_bits / t.uplink_bps
                tn = t.rtt_s
                tc = cloud_s * t.cloud_slowdown + t.cloud_queue_s
            out.append(Candidate(name, kind, tm, tu, tn, tc, tm + tu + tn + tc, tm * power_w + tu * radio_w, accuracy))
        return out

    def allowed(self, candidate: Candidate, mode: str, cloud_up: bool) -> bool:
        if candidate.kind != "device" and (mode == "private" or not cloud_up):
            return False
        if mode == "mission-critical" and self._best_accuracy is not None:
            return candidate.accuracy is not None and candidate.accuracy >= self._best_accuracy - 1e-9
        return True


class SplitPolicy:
    name = "split"

    def __init__(self, default_goal: str = "latency"):
        if default_goal not in GOALS:
            raise ValueError(f"goal must be one of {GOALS}, got {default_goal!r}")
        self.default_goal = default_goal
        self._model: CostModel | None = None

    def _cost_model(self, profile: Profile) -> CostModel:
        if self._model is None or self._model.profile is not profile:
            self._model = CostModel(profile)
        return self._model

    def plan(self, frame: FrameContext, telemetry: Telemetry, profile: Profile) -> Plan:
        if frame.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {frame.mode!r}")
        goal = "energy" if frame.mode == "power-saving" else (frame.goal or self.default_goal)
        if goal not in GOALS:
            raise ValueError(f"goal must be one of {GOALS}, got {goal!r}")
        model = self._cost_model(profile)
        candidates = model.predict(telemetry)
        allowed = [c for c in candidates if model.allowed(c, frame.mode, telemetry.cloud_up)]
        if not allowed:  # mission-critical whose most accurate plan needs a cloud that is down
            allowed = [c for c in candidates if c.kind == "device"]
        if frame.deadline_s is not None:  # an SLA: only plans predicted to meet it, if any does
            allowed = [c for c in allowed if c.latency_s <= frame.deadline_s] or allowed
        key = (lambda c: (c.latency_s, c.energy_j)) if goal == "latency" else (lambda c: (c.energy_j, c.latency_s))
        return Plan(min(allowed, key=key), goal, frame.mode, self.name, tuple(candidates))
