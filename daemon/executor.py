"""The executor: turns one frame into exactly one answer.

plan (policy) -> device part -> cloud part (within a deadline) -> answer. A cloud
step that fails, loses its link or misses its deadline falls back to the device:
a split frame finishes its reduced tensor with the local tail, a cloud-only frame
runs the full model locally. The abandoned cloud call's late reply is dropped by
the link (counted), so the frame is never answered twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from adaptinf.bundle import Bundle
from adaptinf.cloud import protocol as cloud_protocol
from adaptinf.daemon.cloud_link import CloudError, CloudLink
from adaptinf.daemon.device_models import DeviceModels
from adaptinf.daemon.device_queue import DeviceQueue
from adaptinf.daemon.power_monitor import PowerMonitor
from adaptinf.daemon.stats import Stats
from adaptinf.daemon.telemetry import TelemetryTracker
from adaptinf.policies import multiplexer as multiplexer_policy
from adaptinf.policies import mmnet, sieve
from adaptinf.policies.confidence import probabilities
from adaptinf.policies.plan import FrameContext, Plan, Telemetry
from adaptinf.policies.radio_power import uplink_power_w
from adaptinf.profile import CLOUD_ONLY, MOBILE_ONLY, Profile
from adaptinf.upload_quant import dequantize, quantize

FALLBACK_MARGIN_S = 0.002   # kept back from a frame's deadline for the local fallback's overheads


@dataclass
class Job:
    id: Any
    peer: bytes
    frame: np.ndarray
    context: FrameContext
    policy: str
    received: float                  # monotonic
    deadline: float | None = None    # monotonic
    keepalive: Any = None            # the zmq frame the array views: alive until answered
    planned: "Planned | None" = None  # planned on arrival when the pool was idle (not stale)
    model: str = ""                  # which served model (the bundle's, or the MCU's FC model)
    priority: int = 0                # 0..255; higher is served first among queued frames


@dataclass
class Planned:
    plan: Plan
    telemetry: Telemetry
    profile: Profile
    plan_s: float


@dataclass
class FrameResult:
    code: str
    message: str | None = None
    label: int = -1
    confidence: float = 0.0
    scores: np.ndarray | None = None
    served_by: dict = field(default_factory=dict)
    stages_s: dict = field(default_factory=dict)
    energy_j: float = 0.0
    energy_source: str = "model"
    energy_idle_j: float | None = None   # the idle baseline's share of energy_j (sensor only)


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
        self._clock = clock
        self.device = device or DeviceQueue(clock)

    def execute(self, job: Job) -> FrameResult:
        planned = job.planned or self.plan(job)
        return planned if isinstance(planned, FrameResult) else self.run(job, planned)

    def plan(self, job: Job) -> "Planned | FrameResult":
        start = self._clock()
        if job.deadline is not None and start >= job.deadline:
            return FrameResult("DEADLINE_EXCEEDED", "deadline passed while the frame was queued",
                               stages_s={"queue": start - job.received})
        profile = self.profile_ref()
        telemetry = self.telemetry.snapshot(profile)
        plan = self.policies[job.policy].plan(job.context, telemetry, profile)
        return Planned(plan, telemetry, profile, self._clock() - start)

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
        run_start = self._clock()
        stages = {"queue": run_start - job.received - planned.plan_s, "plan": planned.plan_s}
        chosen = plan.chosen
        served = {"placement": chosen.kind, "partition": chosen.name, "policy": plan.policy, "goal": plan.goal,
                  "mode": plan.mode, "fallback": False, "predicted_ms": chosen.latency_s * 1e3,
                  "est_uplink_bps": telemetry.uplink_bps}
        logits, upload_bytes = self._run(job, plan, profile, stages, served)
        stages["total"] = self._clock() - job.received
        probs = probabilities(logits.reshape(-1))
        label = int(probs.argmax())
        energy, source, idle = self._energy(run_start, stages, upload_bytes, telemetry)
        served["upload_bytes"] = upload_bytes
        placement = "fallback" if served["fallback"] else (
            f"split:{chosen.name}" if chosen.kind == "split" else chosen.kind)
        self.stats.record_frame(plan.policy, placement, stages)
        return FrameResult("OK", label=label, confidence=float(probs[label]), scores=probs.astype(np.float32),
                           served_by=served, stages_s=stages, energy_j=energy, energy_source=source,
                           energy_idle_j=idle)

    def _energy(self, run_start: float, stages: dict, upload_bytes: int,
                telemetry: Telemetry) -> tuple[float, str, float | None]:
        """Device energy of the frame: measured by the sensor when it is healthy, else the model.

        The uplink radio is outside what a board sensor sees on a Jetson's rails, so its
        share always comes from paper 004's Table III model.
        """
        upload_s = upload_bytes * 8.0 / telemetry.uplink_bps if upload_bytes else 0.0
        radio_j = upload_s * uplink_power_w(telemetry.radio, telemetry.uplink_bps)
        end = self._clock()
        measured = self.power.energy_between(run_start, end) if self.power is not None else None
        if measured is not None:
            idle = (self.power.idle_power_w or 0.0) * (end - run_start)
            return measured + radio_j, f"sensor:{self.power.source.name}" + ("+radio-model" if radio_j else ""), idle
        compute_s = sum(stages.get(k, 0.0) for k in ("mux", "device", "recovery", "fallback"))
        return compute_s * self.compute_power_w + radio_j, "model", None

    # ---- the three placements -----------------------------------------------------
    def _run(self, job: Job, plan: Plan, profile: Profile, stages: dict, served: dict) -> tuple[np.ndarray, int]:
        chosen = plan.chosen
        if chosen.kind == "multiplex":
            return self._multiplex(job, plan, profile, stages, served)
        if chosen.kind == "speculate":
            return self._speculate(job, plan, profile, stages, served)
        if chosen.kind == "minions":
            return self._minions(job, plan, profile, stages, served)
        if chosen.kind == "duplicate":
            return self._duplicate(job, profile, stages, served)
        if chosen.kind == "device":
            return self._device(self.models.full, job.frame, profile.partition(MOBILE_ONLY).device_ms, stages), 0
        if chosen.kind == "cloud":
            return self._full_in_cloud(job, profile, stages, served, self.models.full)
        reduced = self._device(self.models.heads[chosen.name], job.frame,
                               profile.partition(chosen.name).device_ms, stages)
        q = quantize(reduced)
        header = {"op": "infer", "target": chosen.name, "scale": q.scale, "zero_point": q.zero_point,
                  "tensor": {"dtype": "uint8", "shape": list(q.data.shape)}}
        logits = self._cloud(job, header, q.data, chosen.name, profile, stages, served,
                             fallback=lambda: self._on_device(self.models.tails[chosen.name], dequantize(*q),
                                                              stages, "fallback"))
        return logits, q.data.nbytes

    def _duplicate(self, job: Job, profile: Profile, stages: dict, served: dict) -> tuple[np.ndarray, int]:
        """MDInference's request duplication (paper 003 IV-E): the frame goes to the cloud and,
        meanwhile, the device runs its own model; the cloud's answer is used if it arrives
        before the SLA expires, else the device's, at once. The SLA is the frame's deadline."""
        sla_end = job.deadline if job.deadline is not None else job.received + self.cloud_timeout_s
        payload = np.ascontiguousarray(job.frame)
        call = None
        start = self._clock()
        budget = sla_end - start - FALLBACK_MARGIN_S
        if self.link is not None and self.link.up and budget > 0:
            header = {"op": "infer", "target": cloud_protocol.FULL_TARGET, "deadline_ms": budget * 1e3,
                      "tensor": {"dtype": "uint8", "shape": list(payload.shape)}}
            call = self.link.call(header, payload, budget, upload_bytes=payload.nbytes)
        local = self._device(self.models.full, job.frame, profile.partition(MOBILE_ONLY).device_ms, stages)
        if call is not None:
            try:
                logits, stages["cloud"] = call.wait(sla_end - self._clock() - FALLBACK_MARGIN_S).logits(
                    len(self.bundle.classes))
                stages["network"] = self._clock() - start
                served["answered_by"] = "cloud"
                return logits, payload.nbytes
            except CloudError as exc:
                call.abandon()
                reason = str(exc)
        else:
            reason = "no cloud link up, or no time for it"
        served["answered_by"] = "device"
        served["device_reason"] = reason
        self.stats.count("duplicate_device_answers")
        return local, payload.nbytes if call is not None else 0

    def _multiplex(self, job: Job, plan: Plan, profile: Profile, stages: dict, served: dict) -> tuple[np.ndarray, int]:
        """Paper 001 (Algorithm 2, two models): the multiplexer runs on the device and w_cloud > 0.5
        sends the frame to the cloud's model, else the device runs the pair's small model. The
        cloud side falls back to the small model like any cloud step. served_by gets w, the side
        and both sides' predicted cost (eq. 11, eq. 12)."""
        pair = self.models.pair
        w = np.asarray(self._on_device(pair.multiplexer, job.frame, stages, "mux"), dtype=np.float64).reshape(-1)
        wants_cloud = bool(multiplexer_policy.to_cloud(w, self.bundle.multiplexer.pair.threshold)[0])
        sides = {c.name: c for c in plan.candidates}
        served.update(w=[round(float(v), 4) for v in w], wants="cloud" if wants_cloud else "device",
                      predicted_side_ms={name: c.latency_s * 1e3 for name, c in sides.items()})
        if wants_cloud and plan.chosen.name == "cloud":
            answer = self._full_in_cloud(job, profile, stages, served, pair.device)
            served["answered_by"] = "device" if served["fallback"] else "cloud"
            return answer
        if wants_cloud:
            served["device_reason"] = "private mode" if plan.mode == "private" else "cloud down"
        served["answered_by"] = "device"
        # not profiled, only FLOPs-scaled: no evidence for the device slowdown estimate
        return self._device(pair.device, job.frame, None, stages), 0

    def _speculate(self, job: Job, plan: Plan, profile: Profile, stages: dict, served: dict) -> tuple[np.ndarray, int]:
        """Dynamic Duo (thesis ch.6) and SIEVE (ch.4): the little model answers unless its
        confidence is below the threshold of the class it predicts; then the big model (the
        full one) recovers, in the cloud or on the device as planned. A failed cloud recovery
        falls back to the device. SIEVE's speculation history (policies/sieve.py) may skip
        detection or the little model for a frame close to a recovered one."""
        duo = self.bundle.dynamic_duo
        history = getattr(self.policies.get(plan.policy), "history", None)
        advice = history.advice(job.peer, job.received) if history is not None else sieve.NORMAL
        if advice != sieve.NORMAL:
            served["history"] = advice
        if advice == sieve.DIRECT_TO_CLOUD and plan.chosen.name == "cloud":
            return self._recover(job, plan, profile, stages, served)
        spec = duo.speculative(plan.chosen.model)        # SIEVE may have picked another little
        thresholds = spec.power_saving_thresholds if plan.mode == "power-saving" else spec.thresholds
        little = self._device(self.models.littles[spec.little], job.frame, None, stages)
        probs = probabilities(little.reshape(-1))
        predicted = int(probs.argmax())
        detect = advice != sieve.TRUST_LITTLE and plan.chosen.name != "detector-off"
        recover = detect and bool(probs[predicted] < thresholds[predicted])
        served.update(little=spec.little, little_confidence=float(probs[predicted]),
                      threshold=float(thresholds[predicted]), recovered=recover, detector=detect)
        if not recover:
            if history is not None and detect:
                history.record(job.peer, job.received, recovered=False)
            served["answered_by"] = "little"
            return little, 0
        self.stats.count("recoveries")
        logits, upload_bytes = self._recover(job, plan, profile, stages, served)
        if history is not None:
            history.record(job.peer, job.received, recovered=True, agreed=int(np.argmax(logits)) == predicted)
        return logits, upload_bytes

    def _minions(self, job: Job, plan: Plan, profile: Profile, stages: dict, served: dict) -> tuple[np.ndarray, int]:
        """M&MNet (thesis ch.5): both Minions run on the device; when both are confident and agree
        their answer stands, else the Master (the full model) recovers where the plan put it."""
        spec = self.bundle.mmnet
        logits = [self._on_device(minion, job.frame, stages, "device") for minion in self.models.minions]
        probs = [probabilities(z.reshape(-1)) for z in logits]
        predicted = [int(p.argmax()) for p in probs]
        confidence = [float(p[c]) for p, c in zip(probs, predicted)]
        recover = bool(mmnet.recover(confidence[0], predicted[0], confidence[1], predicted[1], *spec.thresholds))
        served.update(minions=list(spec.minions), minion_confidence=confidence,
                      minions_agree=predicted[0] == predicted[1], recovered=recover)
        if not recover:
            served["answered_by"] = "minions"
            return logits[0], 0
        self.stats.count("recoveries")
        return self._recover(job, plan, profile, stages, served)

    def _recover(self, job: Job, plan: Plan, profile: Profile, stages: dict, served: dict) -> tuple[np.ndarray, int]:
        """The big (full) model on the frame: in the cloud if planned (device fallback), else here."""
        if plan.chosen.name == "cloud":
            answer = self._full_in_cloud(job, profile, stages, served, self.models.full)
            served["answered_by"] = "big:device" if served["fallback"] else "big:cloud"
            return answer
        logits = self._on_device(self.models.full, job.frame, stages, "recovery")
        served["answered_by"] = "big:device"
        return logits, 0

    def _full_in_cloud(self, job: Job, profile: Profile, stages: dict, served: dict,
                       fallback_engine) -> tuple[np.ndarray, int]:
        """The frame to the cloud's full model; `fallback_engine` answers here if the cloud cannot."""
        payload = np.ascontiguousarray(job.frame)
        header = {"op": "infer", "target": cloud_protocol.FULL_TARGET,
                  "tensor": {"dtype": "uint8", "shape": list(payload.shape)}}
        logits = self._cloud(job, header, payload, CLOUD_ONLY, profile, stages, served,
                             fallback=lambda: self._on_device(fallback_engine, job.frame, stages, "fallback"))
        return logits, payload.nbytes

    def _on_device(self, engine, x: np.ndarray, stages: dict, stage: str) -> np.ndarray:
        """One engine run in the device's turn: the wait for it adds to the frame's device_wait,
        the run itself to `stage`."""
        with self.device.slot() as waited:
            start = self._clock()
            out = engine.run(x)
            elapsed = self._clock() - start
        stages["device_wait"] = stages.get("device_wait", 0.0) + waited
        stages[stage] = stages.get(stage, 0.0) + elapsed
        return out

    def _device(self, engine, x: np.ndarray, profiled_ms: float | None, stages: dict) -> np.ndarray:
        predicted = profiled_ms / 1e3 * self.telemetry.device_slowdown if profiled_ms is not None else 0.0
        with self.device.slot(predicted) as waited:
            start = self._clock()
            out = engine.run(x)
            end = self._clock()
        stages["device_wait"] = stages.get("device_wait", 0.0) + waited
        stages["device"] = end - start
        if self.power is not None:
            self.power.energy_between(start, end, computing=True)  # measured PM for the planner
        if profiled_ms is not None:
            self.telemetry.observe_device(stages["device"], profiled_ms / 1e3)
        return out

    def _cloud(self, job: Job, header: dict, payload: np.ndarray, partition: str, profile: Profile,
               stages: dict, served: dict, fallback: Callable[[], np.ndarray]) -> np.ndarray:
        budget = self.cloud_timeout_s
        if job.deadline is not None:
            local_s = self._fallback_estimate(partition, profile)
            budget = min(budget, job.deadline - self._clock() - local_s - FALLBACK_MARGIN_S)
        start = self._clock()
        reason = None
        if self.link is None:
            reason = "no cloud configured"
        elif budget <= 0:
            reason = "no time left for the cloud within the deadline"
        else:
            header["deadline_ms"] = budget * 1e3
            call = self.link.call(header, payload, budget, upload_bytes=payload.nbytes)
            try:
                logits, compute = call.wait(budget + 0.05).logits(len(self.bundle.classes))
                stages["network"] = self._clock() - start
                stages["cloud"] = compute
                self.telemetry.observe_cloud(compute, profile.partition(partition).cloud_ms / 1e3)
                return logits
            except CloudError as exc:
                call.abandon()
                reason = str(exc)
        stages["network"] = self._clock() - start
        served["fallback"] = True
        served["fallback_reason"] = reason
        self.stats.count("fallbacks")
        return fallback()

    def _fallback_estimate(self, partition: str, profile: Profile) -> float:
        """Time to finish the frame locally: the device's queue, then the tail, or the full
        model for cloud-only."""
        mobile = profile.partition(MOBILE_ONLY).device_ms / 1e3
        head = 0.0 if partition == CLOUD_ONLY else profile.partition(partition).device_ms / 1e3
        return self.device.backlog_s() + max(mobile - head, 0.0) * self.telemetry.device_slowdown
