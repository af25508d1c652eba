"""Frames for the FC model (the multi-dsNN): planned between the MCU and the host, always answered.

The plan (policies/mcu_placement.py) picks the MCU or the host's copy of the same system;
an MCU that is down, silent or resetting makes the frame run on the host instead (served_by
says fallback and why), so every frame gets exactly one answer.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from adaptinf.daemon.executor import FrameResult, Job
from adaptinf.policies.plan import ServedBy, StageTimes
from adaptinf.policies.confidence import probabilities
from adaptinf.daemon.mcu_runtime import McuRuntime
from adaptinf.daemon.stats import Stats
from adaptinf.drivers.mcu import McuError
from adaptinf.policies.mcu_placement import MCU, FcObservations, McuPlacementPolicy


class FcExecutor:
    def __init__(self, runtime: McuRuntime, policies: dict[str, McuPlacementPolicy], classes: int,
                 stats: Stats, clock: Callable[[], float] = time.monotonic):
        self.runtime = runtime
        self.policies = policies
        self.classes = classes
        self.stats = stats
        self.seen = FcObservations()
        self._clock = clock

    def run(self, job: Job) -> FrameResult:
        start = self._clock()
        self.seen.mcu_up = self.runtime.up
        policy = self.policies[job.policy]
        plan = policy.plan(job.context, self.seen)
        x = np.asarray(job.frame, np.float32).reshape(-1)
        stages = StageTimes(queue=start - job.received)
        served = ServedBy(plan.chosen.name, plan.policy, plan.goal, plan.mode, predicted_s=plan.chosen.latency_s)
        result = None
        if plan.chosen.name == MCU:
            begin = self._clock()
            try:
                r = self.runtime.infer(x)
            except McuError as exc:
                served.fallback, served.fallback_reason = True, str(exc)
                self.stats.count("mcu_fallbacks")
            else:
                stages.mcu = self._clock() - begin
                self.seen.observe("mcu_ticks", r.count)
                self.seen.observe("mcu_round_trip_s", stages.mcu)
                served.net, served.mcu_ticks, served.dtype = ("main", "tail")[r.net], r.count, r.dtype
                label, logits = r.label, r.logits
                energy = policy.model.compute_j(r.count)
                result = (label, logits, r.net, energy, "mcu-model")
        if result is None:
            begin = self._clock()
            label, net, logits = self.runtime.reference(x)
            stages.host = self._clock() - begin
            self.seen.observe("host_s", stages.host)
            if served.fallback:
                served.placement = "host"
            served.net = ("main", "tail")[net]
            result = (label, logits, net, stages.host * policy.host_power_w, "model")
        label, logits, net, energy, source = result
        stages.total = self._clock() - job.received
        scores = self._scores(logits, net)
        self.stats.record_frame(plan.policy, "fallback" if served.fallback else served.placement, stages)
        return FrameResult("OK", label=int(label), confidence=float(scores[label]), scores=scores,
                           served_by=served, stages=stages, energy_j=energy, energy_source=source)

    def _scores(self, logits: np.ndarray, net: int) -> np.ndarray:
        """The chosen net's softmax spread over all classes (a dsNN may know only some)."""
        scores = np.zeros(self.classes, np.float32)
        scores[list(self.runtime.system.labels[net])] = probabilities(np.asarray(logits, np.float32))
        return scores
