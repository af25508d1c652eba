"""Split-point selection: paper 004 Algorithm 1, selection phase (lines 35-41).

For every partition j (each split point, plus mobile-only and cloud-only):
  TM_j = Q_dev + device_ms_j * K_mobile      device compute (head + reduction unit), after
                                             the device's queue Q_dev (one frame at a time)
  TU_j = Q_up + F_j / NB                     upload of the quantised reduced tensor, after
                                             the uploads already on the link (Q_up)
  TC_j = cloud_ms_j * K_cloud + queue wait   restoration + tail on the cloud
  latency_j = TM_j + TU_j + RTT + TC_j       (RTT added: the paper's TU has no round trip)
  energy_j  = TM_j * PM_j + TU_j * PU        PU = alpha_u * t_u + beta (Table III)
and return argmin latency or argmin energy (the queues count for latency, not for energy,
which is spent only while computing or transmitting). NB and RTT are the live link estimate,
K_cloud and the queue wait come from the load the cloud reports, K_mobile from the
device's measured vs profiled time, and PM from the power sensor when there is one.

Modes (thesis ch.4.3.2): private keeps everything on the device; mission-critical
takes the most accurate candidates and the fastest of them; power-saving plans for
energy. A cloud that is down leaves mobile-only. With a deadline (SLA), only
candidates predicted to meet it are considered, when any is.
"""

from __future__ import annotations

from adaptinf.policies.execution import run_partition
from adaptinf.policies.plan import GOALS, MODES, Candidate, FrameContext, Plan, Telemetry
from adaptinf.policies.radio_power import uplink_power_w
from adaptinf.profile import MOBILE_ONLY, Profile


class CostModel:
    """Predictions for every partition of one profile; built once per profile.

    The per-frame path (`choose`) works on plain floats and builds a Candidate only
    for the winner: planning must cost far less than a frame (bench/plan_cost.py).
    `predict` builds every Candidate, for explanations; both use `_terms`.
    """

    def __init__(self, profile: Profile):
        if not any(p.name == MOBILE_ONLY for p in profile.partitions):
            raise ValueError("profile has no mobile-only partition: there would be no plan without the cloud")
        self.profile = profile
        best = max((p.accuracy for p in profile.partitions if p.accuracy is not None), default=None)
        self._rows = [(p.name, p.kind, p.device_s, p.device_power_w, p.cloud_s,
                       p.upload_bytes * 8.0, p.accuracy,
                       best is None or (p.accuracy is not None and p.accuracy >= best - 1e-9))
                      for p in profile.partitions]

    @staticmethod
    def _terms(row: tuple, t: Telemetry, radio_w: float) -> tuple[float, float, float, float, float, float]:
        """(TM, TU, RTT, TC, latency, energy) of one partition: the equations in the module docstring."""
        _, kind, device_s, power_w, cloud_s, upload_bits, _, _ = row
        if t.device_power_w is not None:  # a sensor measured it: plan with that, not the profile's
            power_w = t.device_power_w
        compute = t.compute_s(device_s)
        tm = compute + (t.device_queue_s if device_s > 0 else 0.0)
        if kind == "device":
            return tm, 0.0, 0.0, 0.0, tm, compute * power_w
        send = upload_bits / t.uplink_bps
        tu = send + t.uplink_backlog_s
        tc = t.cloud_s(cloud_s)
        return tm, tu, t.rtt_s, tc, tm + tu + t.rtt_s + tc, compute * power_w + send * radio_w

    def _candidate(self, row: tuple, t: Telemetry, radio_w: float) -> Candidate:
        return Candidate(row[0], row[1], *self._terms(row, t, radio_w), row[6])

    def predict(self, t: Telemetry) -> list[Candidate]:
        radio_w = uplink_power_w(t.radio, t.uplink_bps)
        return [self._candidate(row, t, radio_w) for row in self._rows]

    def predict_one(self, name: str, t: Telemetry) -> Candidate | None:
        row = next((r for r in self._rows if r[0] == name), None)
        return None if row is None else self._candidate(row, t, uplink_power_w(t.radio, t.uplink_bps))

    def choose(self, t: Telemetry, goal: str, mode: str, deadline_s: float | None) -> Candidate:
        radio_w = uplink_power_w(t.radio, t.uplink_bps)
        device_only = mode == "private" or not t.cloud_up
        mission = mode == "mission-critical"
        by_energy = goal == "energy"
        best = best_in_sla = None
        for row in self._rows:
            if (device_only and row[1] != "device") or (mission and not row[7] and not device_only):
                continue
            terms = self._terms(row, t, radio_w)
            key = (terms[5], terms[4]) if by_energy else (terms[4], terms[5])
            if best is None or key < best[0]:
                best = (key, row)
            if deadline_s is not None and terms[4] <= deadline_s and (best_in_sla is None or key < best_in_sla[0]):
                best_in_sla = (key, row)
        if best is None:  # mission-critical whose most accurate plan needs a cloud that is down
            return self.choose(t, goal, "private", deadline_s)
        # With a deadline (SLA), only plans predicted to meet it, when any does.
        return self._candidate((best_in_sla or best)[1], t, radio_w)


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

    def plan(self, frame: FrameContext, telemetry: Telemetry, profile: Profile, explain: bool = False) -> Plan:
        """The chosen candidate; with explain, every candidate's prediction too (adaptinf plan)."""
        if frame.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {frame.mode!r}")
        goal = "energy" if frame.mode == "power-saving" else (frame.goal or self.default_goal)
        if goal not in GOALS:
            raise ValueError(f"goal must be one of {GOALS}, got {goal!r}")
        model = self._cost_model(profile)
        chosen = model.choose(telemetry, goal, frame.mode, frame.deadline_s)
        candidates = tuple(model.predict(telemetry)) if explain else ()
        return Plan(chosen, goal, frame.mode, self.name, candidates)

    def execute(self, job, plan: Plan, steps):
        return run_partition(plan, steps)
