"""The neural multiplexer over a model zoo in adaptinfd (papers 000/001 with N models).

`policy = "multiplexer"` on a zoo bundle whose section has a multiplexer (bench/zoo_multiplexer.py
--save). Per frame:
- plan: every zoo model's cheaper placement now, by the goal (modes.cost_key): on the
  device (the profile's device time x the device's slowdown, behind its queue; compute
  energy) or in the cloud (upload behind the uplink queue + RTT + the cloud's time for
  that model; radio energy), eq. 9-13's terms per model. Private mode and a cloud that is
  down leave the device only;
- execute: the multiplexer runs on the device (w, eq. 5-7), Algorithm 2 picks the cheapest
  model with w_i > T (the argmax when none passes), and that model runs where the plan put
  it; a cloud run that fails falls back to the same model on the device.
`served_by` names the `model`, `wants` (its placement), `w` and `answered_by`.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from adaptinf.policies import modes
from adaptinf.policies.execution import run_partition
from adaptinf.policies.fixed import fixed
from adaptinf.policies.multiplexer import select_cheapest
from adaptinf.policies.plan import Candidate, Plan
from adaptinf.policies.radio_power import uplink_power_w
from adaptinf.profile import CLOUD_ONLY, MOBILE_ONLY


class ZooMultiplexerPolicy:
    name = "multiplexer"

    def __init__(self, zoo: tuple[str, ...], multiplexer: str, threshold: float, frame_bytes: int):
        self.zoo, self.multiplexer, self.threshold = zoo, multiplexer, threshold
        self.frame_bytes = frame_bytes

    def options(self, frame, telemetry, profile) -> dict[str, Candidate]:
        """Each zoo model at its cheaper placement now (the profile's models time them)."""
        timed = {m.name: m for m in profile.models}
        key = modes.cost_key(modes.goal(frame))
        cloud_ok = modes.cloud_allowed(frame, telemetry, profile)
        power_w = telemetry.device_power_w or profile.partition(MOBILE_ONLY).device_power_w
        send_s = self.frame_bytes * 8.0 / telemetry.uplink_bps
        radio_j = send_s * uplink_power_w(telemetry.radio, telemetry.uplink_bps)
        out = {}
        for name in self.zoo:
            m = timed.get(name)
            if m is None:
                continue
            compute = telemetry.compute_s(m.device_s)
            device_s = compute + telemetry.device_queue_s
            choices = [Candidate(name, "device", device_s, 0.0, 0.0, 0.0, device_s, compute * power_w, m.accuracy)]
            if cloud_ok and m.cloud_ms > 0:
                upload, cloud = telemetry.upload_s(self.frame_bytes), telemetry.cloud_s(m.cloud_s)
                choices.append(Candidate(name, "cloud", 0.0, upload, telemetry.rtt_s, cloud,
                                         upload + telemetry.rtt_s + cloud, radio_j, m.accuracy))
            out[name] = min(choices, key=key)
        return out

    def plan(self, frame, telemetry, profile, explain: bool = False):
        if modes.most_accurate_only(frame):     # mission-critical: the most accurate model for every frame
            cloud_ok = modes.cloud_allowed(frame, telemetry, profile)
            return replace(fixed(CLOUD_ONLY if cloud_ok else MOBILE_ONLY).plan(frame, telemetry, profile),
                           policy=self.name)
        options = self.options(frame, telemetry, profile)
        timed = {m.name: m for m in profile.models}
        mux_s = telemetry.compute_s(timed[self.multiplexer].device_s) if self.multiplexer in timed else 0.0
        power_w = telemetry.device_power_w or profile.partition(MOBILE_ONLY).device_power_w
        # the model is chosen per frame from w; until then the plan's cost is the multiplexer's
        chosen = Candidate(self.multiplexer, "multiplex", mux_s, 0.0, 0.0, 0.0, mux_s, mux_s * power_w, None)
        return Plan(chosen, frame.goal, frame.mode, self.name, (chosen, *options.values()), options)

    def execute(self, job, plan, steps):
        if plan.chosen.kind != "multiplex":
            return run_partition(plan, steps)
        served = steps.served
        w = np.asarray(steps.on_device(steps.models.zoo_multiplexer, "mux"), np.float64).reshape(-1)
        options: dict[str, Candidate] = plan.decision
        # Algorithm 2 over the models the plan could place (all of them, once profiled)
        names = [n for n in self.zoo if n in options]
        picked = names[int(select_cheapest(w[[self.zoo.index(n) for n in names]], self.threshold)[0].argmax())]
        option = options[picked]
        served.model, served.wants, served.w = picked, option.kind, [round(float(v), 4) for v in w]
        engine = steps.models.zoo[picked]
        if option.kind == "cloud":
            answer = steps.model_in_cloud(picked, engine)
            served.answered_by = "device" if served.fallback else "cloud"
            return answer
        served.answered_by = "device"
        return steps.on_device(engine, "device"), 0
