"""The executor: turns one frame into exactly one answer.

policy.plan -> policy.execute(job, plan, steps) -> answer, for every served model: the
bundle's (its policies) and the MCU's FC model (policies/mcu_placement.py, by model name). The executor times the
frame's stages, keeps its served_by record and accounts its energy (the frame's
statistics are the API's, once it is answered); what runs where is the policy's, through
the steps (daemon/steps.py). A
cloud step that fails, loses its link or misses its deadline falls back to the device;
the abandoned cloud call's late reply is dropped by the link (counted), so the frame
is never answered twice.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from adaptinf.bundle import Bundle
from adaptinf.daemon.cloud_link import CloudLink
from adaptinf.daemon.device_models import DeviceModels
from adaptinf.daemon.device_queue import DeviceQueue
from adaptinf.daemon.frame import FrameResult, Job, Planned  # noqa: F401  (Job, Planned: the executor's API)
from adaptinf.daemon.power_monitor import PowerMonitor
from adaptinf.daemon.stats import Stats
from adaptinf.daemon.steps import FrameSteps
from adaptinf.daemon.telemetry import TelemetryTracker
from adaptinf.policies.confidence import probabilities
from adaptinf.policies.plan import ServedBy, StageTimes, Telemetry
from adaptinf.policies.radio_power import uplink_power_w
from adaptinf.profile import Profile


class Executor:
    def __init__(self, bundle: Bundle, models: DeviceModels, policies: dict, profile_ref: Callable[[], Profile],
                 link: CloudLink | None, telemetry: TelemetryTracker, stats: Stats, compute_power_w: float,
                 cloud_timeout_s: float, power: PowerMonitor | None = None,
                 clock: Callable[[], float] = time.monotonic, device: DeviceQueue | None = None):
        self.bundle = bundle
        self.models = models
        self.policies = policies
        self.profile_ref = profile_ref
        self.link = link
        self.telemetry = telemetry
        self.stats = stats
        self.compute_power_w = compute_power_w
        self.cloud_timeout_s = cloud_timeout_s
        self.power = power
        self.clock = clock
        self.device = device or DeviceQueue(clock)
        self.model_policies: dict[str, dict] = {}   # other served models' policies (the MCU's), by model
        self.mcu = None                             # the McuRuntime, when an MCU serves the FC model

    def _policy(self, job: Job, name: str | None = None):
        """The policy `name` (default: the job's) of the model the job asked for."""
        return self.model_policies.get(job.model, self.policies)[name or job.policy]

    def execute(self, job: Job) -> FrameResult:
        planned = job.planned or self.plan(job)
        return planned if isinstance(planned, FrameResult) else self.run(job, planned)

    def plan(self, job: Job) -> "Planned | FrameResult":
        start = self.clock()
        if job.deadline is not None and start >= job.deadline:
            return FrameResult("DEADLINE_EXCEEDED", "deadline passed while the frame was queued",
                               stages=StageTimes(queue=start - job.received))
        profile = self.profile_ref()
        telemetry = self.telemetry.snapshot(profile)
        plan = self._policy(job).plan(job.context, telemetry, profile)
        return Planned(plan, telemetry, profile, self.clock() - start)

    def run(self, job: Job, planned: Planned) -> FrameResult:
        if self.power is None:
            return self._run_planned(job, planned)
        self.power.frame_started()
        try:
            return self._run_planned(job, planned)
        finally:
            self.power.frame_finished()

    def _run_planned(self, job: Job, planned: Planned) -> FrameResult:
        plan, telemetry, profile = planned.plan, planned.telemetry, planned.profile
        run_start = self.clock()
        stages = StageTimes(queue=run_start - job.received - planned.plan_s, plan=planned.plan_s)
        chosen = plan.chosen
        served = ServedBy(chosen.kind, plan.policy, plan.goal, plan.mode, partition=chosen.name,
                          predicted_s=chosen.latency_s, est_uplink_bps=telemetry.uplink_bps)
        steps = FrameSteps(self, job, profile, stages, served)
        if job.camera:
            job.frame = steps.on_device(self.models.preprocess, "preprocess")
            job.camera = False
        outputs, upload_bytes = self._policy(job, plan.policy).execute(job, plan, steps)
        stages.total = self.clock() - job.received
        outputs = np.asarray(outputs, np.float32).reshape(-1)
        label, confidence, probs = -1, 0.0, None
        if job.model in self.model_policies:      # the MCU's FC net: its outputs are its logits
            probs = probabilities(outputs)
        elif self.bundle.classes:                 # a classifier: its first output is the logits
            probs = probabilities(outputs[:len(self.bundle.classes)])
        if probs is not None:
            label = int(probs.argmax())
            confidence = float(probs[label])
        if steps.energy is not None:        # the step knew its own energy (the MCU's cycles)
            (energy, source), idle = steps.energy, None
        else:
            energy, source, idle = self._energy(run_start, stages, upload_bytes, telemetry)
        served.upload_bytes = upload_bytes
        placement = "fallback" if served.fallback else (
            f"split:{chosen.name}" if chosen.kind == "split" else served.placement)
        return FrameResult("OK", label=label, confidence=confidence, placement=placement,
                           scores=None if probs is None else probs.astype(np.float32), outputs=outputs,
                           served_by=served, stages=stages, energy_j=energy, energy_source=source,
                           energy_idle_j=idle, planned=planned)

    def _energy(self, run_start: float, stages: StageTimes, upload_bytes: int,
                telemetry: Telemetry) -> tuple[float, str, float | None]:
        """Device energy of the frame: measured by the sensor when it is healthy, else the model.

        The uplink radio is outside what a board sensor sees on a Jetson's rails, so its
        share always comes from paper 004's Table III model.
        """
        upload_s = upload_bytes * 8.0 / telemetry.uplink_bps if upload_bytes else 0.0
        radio_j = upload_s * uplink_power_w(telemetry.radio, telemetry.uplink_bps)
        end = self.clock()
        measured = self.power.energy_between(run_start, end) if self.power is not None else None
        if measured is not None:
            idle = (self.power.idle_power_w or 0.0) * (end - run_start)
            return measured + radio_j, f"sensor:{self.power.source.name}" + ("+radio-model" if radio_j else ""), idle
        compute_s = sum(s for s in (stages.preprocess, stages.mux, stages.device, stages.recovery, stages.fallback,
                                    stages.host) if s)
        return compute_s * self.compute_power_w + radio_j, "model", None
