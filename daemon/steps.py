"""What a policy's execution may do with one frame: the steps facade (issue 16).

A policy plans (policies/*.py `plan`) and then executes its plan through these steps
(`execute(job, plan, steps)`): run an engine on the device, run a partition (mobile-only,
cloud-only, a split point) with the cloud's deadline and the device fallback, send the
frame to the cloud's full model, race the cloud against the device (MDInference). The
steps own the frame's stage timings and its served_by record, the device queue, the
cloud link and the telemetry; a policy never reaches into them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Protocol

import numpy as np

from adaptinf.api_protocol import dtype_name
from adaptinf.cloud import protocol as cloud_protocol
from adaptinf.daemon.cloud_link import CloudError
from adaptinf.daemon.frame import Job
from adaptinf.policies.plan import ServedBy, StageTimes
from adaptinf.profile import CLOUD_ONLY, MOBILE_ONLY, Profile
from adaptinf.upload_quant import dequantize, quantize


class FrameServices(Protocol):
    """What the steps use of the daemon (the executor provides it): the clock, the one device
    queue, the cloud link and its timeout, the telemetry, the power monitor, the MCU, the
    statistics, and the device's models and bundle."""

    clock: Callable[[], float]
    cloud_timeout_s: float
    device: Any
    link: Any
    telemetry: Any
    power: Any
    mcu: Any
    stats: Any
    models: Any
    bundle: Any

FALLBACK_MARGIN_S = 0.002   # kept back from a frame's deadline for the local fallback's overheads

Answer = tuple[np.ndarray, int]   # logits, and the bytes the frame sent up the uplink


class FrameSteps:
    def __init__(self, executor: FrameServices, job: Job, profile: Profile, stages: StageTimes, served: ServedBy):
        self._x = executor
        self.job = job
        self.profile = profile
        self.stages = stages          # where this frame's time goes
        self.served = served          # served_by: what ran where, for the reply
        self.models = executor.models
        self.bundle = executor.bundle
        self.energy: tuple[float, str] | None = None   # set by a step that knows its own energy (the MCU)

    def count(self, name: str) -> None:
        self._x.stats.count(name)

    def set_energy(self, joules: float, source: str) -> None:
        """This frame's device energy is known from its own model (the MCU's cycles), not the
        Jetson's power: the executor reports it as is."""
        self.energy = (joules, source)

    # ---- the MCU (the FC model's served path) -----------------------------------------
    def on_mcu(self, features: np.ndarray):
        """One inference on the MCU over serial (McuError when it is down, silent or resetting)."""
        start = self._x.clock()
        result = self._x.mcu.infer(features)
        self.stages.mcu = self._x.clock() - start
        return result

    def on_host_twin(self, features: np.ndarray) -> tuple[int, int, np.ndarray]:
        """The same system on the Jetson's CPU, bit-exact: (label, net, logits)."""
        start = self._x.clock()
        out = self._x.mcu.reference(features)
        self.stages.host = self._x.clock() - start
        return out

    def mcu_labels(self, net: int) -> tuple[int, ...]:
        """The classes net `net` of the MCU's system answers, in its output order."""
        return self._x.mcu.system.labels[net]

    # ---- the device ---------------------------------------------------------------------
    def on_device(self, engine, stage: str, x: np.ndarray | None = None) -> np.ndarray:
        """One engine run in the device's turn (the frame unless x is given): the wait for the
        device adds to the frame's device_wait, the run itself to `stage`."""
        with self._x.device.slot() as waited:
            start = self._x.clock()
            out = engine.run(self.job.frame if x is None else x)
            elapsed = self._x.clock() - start
        self.stages.add("device_wait", waited)
        self.stages.add(stage, elapsed)
        return out

    def profiled_on_device(self, engine, profiled_s: float | None) -> np.ndarray:
        """A profiled device graph (the full model, a head) on the frame: its time teaches the
        telemetry the device's slowdown, and the power sensor its computing power."""
        x = self._x
        predicted = profiled_s * x.telemetry.device_slowdown if profiled_s is not None else 0.0
        with x.device.slot(predicted) as waited:
            start = x.clock()
            out = engine.run(self.job.frame)
            end = x.clock()
        self.stages.add("device_wait", waited)
        self.stages.device = end - start
        if x.power is not None:
            x.power.energy_between(start, end, computing=True)  # measured PM for the planner
        if profiled_s is not None:
            x.telemetry.observe_device(self.stages.device, profiled_s)
        return out

    # ---- partitions -------------------------------------------------------------------
    def partition(self, name: str) -> Answer:
        """Paper 004's placements: mobile-only, cloud-only, or split at a point (head here, the
        reduced tensor quantised and uploaded, the tail in the cloud; the local tail if not)."""
        if name == MOBILE_ONLY:
            return self.profiled_on_device(self.models.full, self.profile.partition(MOBILE_ONLY).device_s), 0
        if name == CLOUD_ONLY:
            return self.full_in_cloud(self.models.full)
        reduced = self.profiled_on_device(self.models.heads[name], self.profile.partition(name).device_s)
        if self.bundle.point(name).upload == "float16":
            half = reduced.astype(np.float16)
            request = cloud_protocol.Infer(name, half.shape, dtype="float16")
            payload, received = half, lambda: half.astype(np.float32)
        else:
            q = quantize(reduced)
            request = cloud_protocol.Infer(name, q.data.shape, q.scale, q.zero_point)
            payload, received = q.data, lambda: dequantize(*q)
        # the local tail finishes what the cloud would have received, so the answer is the same
        logits = self._cloud(request, payload, name,
                             fallback=lambda: self.on_device(self.models.tails[name], "fallback", received()))
        return logits, payload.nbytes

    def full_in_cloud(self, fallback_engine) -> Answer:
        """The frame to the cloud's full model; `fallback_engine` answers here if the cloud cannot."""
        payload = np.ascontiguousarray(self.job.frame)
        request = cloud_protocol.Infer(cloud_protocol.FULL_TARGET, payload.shape, dtype=dtype_name(payload.dtype))
        logits = self._cloud(request, payload, CLOUD_ONLY,
                             fallback=lambda: self.on_device(fallback_engine, "fallback"))
        return logits, payload.nbytes

    def model_in_cloud(self, name: str, fallback_engine) -> Answer:
        """The frame to the cloud's model `name` (a zoo model); `fallback_engine` answers here if
        the cloud cannot."""
        payload = np.ascontiguousarray(self.job.frame)
        logits = self._cloud(cloud_protocol.Infer(name, payload.shape, dtype=dtype_name(payload.dtype)), payload, CLOUD_ONLY,
                             fallback=lambda: self.on_device(fallback_engine, "fallback"))
        return logits, payload.nbytes

    def duplicate(self, target: str = cloud_protocol.FULL_TARGET, local: tuple | None = None,
                  network_s: float | None = None) -> Answer:
        """MDInference's request duplication (paper 003 IV-E): the frame goes to the cloud's
        `target` and, meanwhile, the device runs `local` (engine, profiled seconds; default the
        full model); the cloud's answer is used if it arrives before the SLA expires, else the
        device's, at once. The SLA is the frame's deadline.

        target "mdinference": the cloud picks the zoo model, with the upload time it measures
        from the frame's send stamp (on its clock, by the link's measured offset); until the
        link knows the offset, with `network_s`, this device's estimate of T_nw. served_by
        then names the model and T_budget the cloud used."""
        x, job = self._x, self.job
        engine, profiled_s = local or (self.models.full, self.profile.partition(MOBILE_ONLY).device_s)
        sla_end = job.deadline if job.deadline is not None else job.received + x.cloud_timeout_s
        payload = np.ascontiguousarray(job.frame)
        call = None
        start = x.clock()
        budget = sla_end - start - FALLBACK_MARGIN_S
        if x.link is not None and x.link.up and budget > 0:
            request = cloud_protocol.Infer(target, payload.shape, deadline_s=budget, dtype=dtype_name(payload.dtype))
            if target == cloud_protocol.MDINFERENCE_TARGET:
                sent_at = x.link.cloud_time()
                request = replace(request, sla_s=budget, sent_at=sent_at,   # when its answer is still of use
                                  network_s=network_s if sent_at is None else None)
            call = x.link.call(request.header(), payload, budget, upload_bytes=payload.nbytes)
        local = self.profiled_on_device(engine, profiled_s)
        if call is not None:
            try:
                reply = call.wait(sla_end - x.clock() - FALLBACK_MARGIN_S)
                logits, self.stages.cloud = reply.logits(self.bundle.output_size)
                self.stages.network = x.clock() - start
                self.served.answered_by = "cloud"
                if target == cloud_protocol.MDINFERENCE_TARGET:
                    self._cloud_choice(reply.header)
                return logits, payload.nbytes
            except CloudError as exc:
                call.abandon()
                reason = str(exc)
        else:
            reason = "no cloud link up, or no time for it"
        self.served.answered_by = "device"
        self.served.device_reason = reason
        self.count("duplicate_device_answers")
        return local, payload.nbytes if call is not None else 0

    def duplicate_choosing_in_cloud(self, local: tuple, network_s: float) -> Answer:
        """`duplicate`, with the cloud's MDInference picking the zoo model for the frame."""
        return self.duplicate(cloud_protocol.MDINFERENCE_TARGET, local, network_s)

    def _cloud_choice(self, header: dict) -> None:
        """The zoo model and T_budget the cloud's MDInference used, into served_by."""
        model, budget_ms = header.get("model"), header.get("budget_ms")
        if isinstance(model, str):
            self.served.model = model
        if isinstance(budget_ms, (int, float)) and not isinstance(budget_ms, bool) and np.isfinite(budget_ms):
            self.served.budget_s = budget_ms / 1e3

    # ---- the cloud, with its deadline and the device fallback ---------------------------
    def _cloud(self, request: cloud_protocol.Infer, payload: np.ndarray, partition: str,
               fallback: Callable[[], np.ndarray]) -> np.ndarray:
        x, job = self._x, self.job
        budget = x.cloud_timeout_s
        if job.deadline is not None:
            local_s = self._fallback_estimate(partition)
            budget = min(budget, job.deadline - x.clock() - local_s - FALLBACK_MARGIN_S)
        start = x.clock()
        reason = None
        if x.link is None:
            reason = "no cloud configured"
        elif budget <= 0:
            reason = "no time left for the cloud within the deadline"
        else:
            header = replace(request, deadline_s=budget).header()
            call = x.link.call(header, payload, budget, upload_bytes=payload.nbytes)
            try:
                logits, compute = call.wait(budget + 0.05).logits(self.bundle.output_size)
                self.stages.network = x.clock() - start
                self.stages.cloud = compute
                x.telemetry.observe_cloud(compute, self.profile.partition(partition).cloud_s)
                return logits
            except CloudError as exc:
                call.abandon()
                reason = str(exc)
        self.stages.network = x.clock() - start
        self.served.fallback = True
        self.served.fallback_reason = reason
        self.count("fallbacks")
        return fallback()

    def _fallback_estimate(self, partition: str) -> float:
        """Time to finish the frame locally: the device's queue, then the tail, or the full
        model for cloud-only."""
        mobile = self.profile.partition(MOBILE_ONLY).device_s
        head = 0.0 if partition == CLOUD_ONLY else self.profile.partition(partition).device_s
        return self._x.device.backlog_s() + max(mobile - head, 0.0) * self._x.telemetry.device_slowdown
