"""Dynamic Duo (thesis ch.6): a little CNN answers, and a big one recovers when the little
one is not confident.

Everything here works on the validation outputs stored per model (confidence, predicted
class, right or wrong), so it is pure numpy: the toolchain, the benchmark and a run-time
policy share it.
- Recovery: a frame whose little-model confidence is below the threshold of its predicted
  class goes to the big model. The recovery rate P_r is the share of such frames.
- Single threshold (6.4.2): the lowest threshold, and so the fewest recoveries, at which
  the pair still reaches the target accuracy.
- Per-class thresholds (6.4.2's heuristic for a multiple-choice knapsack): first, each
  class's threshold that maximises the correct answers among frames predicted as that
  class; then all thresholds are lowered in equal steps while the pair still reaches the
  target.
- Pair selection (6.4.1, 6.4.3): E_pair = E_little + E_big x P_r (and L likewise) for
  each pair that meets the target, then the cheapest. The exhaustive search tries every
  pair. The heuristic fixes the big model as the cheapest one at or above the target,
  and tries as littles only the top-k by odd-subset size (frames the little gets right
  and the big gets wrong).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from adaptinf.policies import modes
from adaptinf.policies.confidence import probabilities
from adaptinf.policies.execution import recover_with_big, run_partition
from adaptinf.policies.plan import Candidate, Plan
from adaptinf.policies.radio_power import uplink_power_w
from adaptinf.profile import CLOUD_ONLY, MOBILE_ONLY

# What a speculation history (SIEVE's, policies/sieve.py) may advise speculate() for a frame:
# speculate as usual, trust the little model without detection, or go straight to the cloud.
NORMAL, TRUST_LITTLE, DIRECT_TO_CLOUD = "normal", "trust-little", "direct-to-cloud"

STEPS = 100   # threshold grid: confidences are softmax maxima in [1/C, 1]


@dataclass(frozen=True, eq=False)   # arrays: compare fields, not objects
class ModelOutputs:
    """One model on the validation split."""

    name: str
    confidence: np.ndarray     # (B,) max softmax probability
    predicted: np.ndarray      # (B,) argmax class
    right: np.ndarray          # (B,) bool
    cost: float                # energy (J) or latency (s) per frame; the choice is the caller's

    @property
    def accuracy(self) -> float:
        return float(self.right.mean())

    @classmethod
    def from_logits(cls, name: str, logits: np.ndarray, labels: np.ndarray, cost: float) -> "ModelOutputs":
        p = probabilities(logits)
        return cls(name, p.max(1), p.argmax(1), p.argmax(1) == labels, cost)


@dataclass(frozen=True, eq=False)
class Probe:
    """The confidence probe: recover when confidence < thresholds[predicted class]."""

    thresholds: np.ndarray     # (C,)

    def recover(self, confidence: np.ndarray, predicted: np.ndarray) -> np.ndarray:
        return confidence < self.thresholds[predicted]


def pair_accuracy(little: ModelOutputs, big: ModelOutputs, recovered: np.ndarray) -> float:
    return float(np.where(recovered, big.right, little.right).mean())


def single_threshold(little: ModelOutputs, big: ModelOutputs, target: float, num_classes: int) -> Probe | None:
    """The lowest threshold whose pair accuracy reaches `target`; None if even recovering
    every frame does not."""
    for t in np.linspace(0.0, 1.0, STEPS + 1):
        if pair_accuracy(little, big, little.confidence < t) >= target:
            return Probe(np.full(num_classes, t))
    return Probe(np.full(num_classes, np.inf)) if big.accuracy >= target else None


def per_class_thresholds(little: ModelOutputs, big: ModelOutputs, target: float, num_classes: int) -> Probe | None:
    """6.4.2's heuristic: each class's best threshold, then all lowered together in equal
    steps while the pair still reaches `target`."""
    grid = np.linspace(0.0, 1.0, STEPS + 1)
    best = np.zeros(num_classes)
    for c in range(num_classes):
        mine = little.predicted == c
        if not mine.any():
            continue
        correct = [np.where(little.confidence[mine] < t, big.right[mine], little.right[mine]).sum() for t in grid]
        best[c] = grid[int(np.argmax(correct))]          # the lowest threshold with the most right
    if pair_accuracy(little, big, Probe(best).recover(little.confidence, little.predicted)) < target:
        return None
    probe = Probe(best)
    for step in range(1, STEPS + 1):
        lowered = Probe(np.clip(best - step / STEPS, 0.0, None))
        if pair_accuracy(little, big, lowered.recover(little.confidence, little.predicted)) < target:
            break
        probe = lowered
    return probe


@dataclass(frozen=True)
class Pair:
    little: str
    big: str
    probe: Probe
    recovery_rate: float
    accuracy: float
    cost: float                # E_pair (or L_pair) = cost_little + cost_big x P_r
    odd_share: float           # little right, big wrong


def evaluate_pair(little: ModelOutputs, big: ModelOutputs, target: float, num_classes: int,
                  per_class: bool = True) -> Pair | None:
    probe = (per_class_thresholds if per_class else single_threshold)(little, big, target, num_classes)
    if probe is None:
        return None
    recovered = probe.recover(little.confidence, little.predicted)
    p_r = float(recovered.mean())
    return Pair(little.name, big.name, probe, p_r, pair_accuracy(little, big, recovered),
                little.cost + big.cost * p_r, float((little.right & ~big.right).mean()))


def select_pair(pool: list[ModelOutputs], target: float, num_classes: int, exhaustive: bool = True,
                top_k: int = 3, per_class: bool = True) -> Pair | None:
    """The cheapest pair (E_pair) meeting `target`; a little is always cheaper than its big."""
    if exhaustive:
        bigs = pool
    else:
        meeting = [m for m in pool if m.accuracy >= target]
        bigs = [min(meeting, key=lambda m: m.cost)] if meeting else []
    pairs = []
    for big in bigs:
        littles = [m for m in pool if m.cost < big.cost]
        if not exhaustive:
            littles = sorted(littles, key=lambda m: -(m.right & ~big.right).mean())[:top_k]
        pairs += [p for little in littles
                  if (p := evaluate_pair(little, big, target, num_classes, per_class)) is not None]
    return min(pairs, key=lambda p: p.cost) if pairs else None


class DynamicDuoPolicy:
    """Dynamic Duo in adaptinfd (Candidate kind "speculate"): the little model runs on the
    device; a frame whose confidence is below its class's threshold is recovered by the big
    model (the bundle's full model), on the device or in the cloud, whichever the goal
    prefers at the stored recovery rate: L = L_little + P_r x L_recovery (E likewise).

    Modes (thesis 4.3.2): mission-critical skips the little model and sends every frame
    to the big one, in the cloud when it is up; power-saving uses the relaxed thresholds
    and the energy goal; private recovers on the device only. The little model's time is
    the profiled full model's times `little_share`: the two models' time ratio, from the
    profile (calibration predicts a little model's time and energy with its layer regression,
    thesis 4.3.2; without a calibrated profile adaptinfd measures the time at start-up).
    Its energy is the full model's times `little_energy_share` (the time share where the
    profile knows no per-model power).
    """

    name = "dynamic-duo"

    def __init__(self, frame_bytes: int, little_share: float, recovery_rate: float,
                 power_saving_recovery_rate: float, little_accuracy: float | None = None,
                 target_accuracy: float | None = None, little_energy_share: float | None = None):
        self.frame_bytes = frame_bytes
        self.little_share = little_share
        self.little_energy_share = little_share if little_energy_share is None else little_energy_share
        self.recovery_rate = {False: recovery_rate, True: power_saving_recovery_rate}
        self.little_accuracy = little_accuracy
        self.target_accuracy = target_accuracy

    def plan(self, frame, telemetry, profile, explain: bool = False):
        mobile = profile.partition(MOBILE_ONLY)
        power_w = telemetry.device_power_w or mobile.device_power_w
        big_s = telemetry.compute_s(mobile.device_s)
        cloud_ok = modes.cloud_allowed(frame, telemetry, profile)
        if cloud_ok:
            cloud = profile.partition(CLOUD_ONLY)
            upload_s = self.frame_bytes * 8.0 / telemetry.uplink_bps
            cloud_s = telemetry.cloud_s(cloud.cloud_s)
            radio_j = upload_s * uplink_power_w(telemetry.radio, telemetry.uplink_bps)
        if modes.most_accurate_only(frame):
            big = (Candidate(CLOUD_ONLY, "cloud", 0.0, upload_s, telemetry.rtt_s, cloud_s,
                             upload_s + telemetry.rtt_s + cloud_s, radio_j, cloud.accuracy) if cloud_ok else
                   Candidate(MOBILE_ONLY, "device", big_s, 0.0, 0.0, 0.0, big_s, big_s * power_w, mobile.accuracy))
            return Plan(big, frame.goal, frame.mode, self.name, (big,))
        p_r = self.recovery_rate[frame.mode == "power-saving"]
        little_s, little_j = big_s * self.little_share, big_s * power_w * self.little_energy_share
        on_device = Candidate("device", "speculate", little_s + p_r * big_s, 0.0, 0.0, 0.0, little_s + p_r * big_s,
                              little_j + p_r * big_s * power_w, self.target_accuracy)
        candidates = [on_device]
        if cloud_ok:
            remote_s = upload_s + telemetry.rtt_s + cloud_s
            candidates.append(Candidate("cloud", "speculate", little_s, p_r * upload_s, p_r * telemetry.rtt_s,
                                        p_r * cloud_s, little_s + p_r * remote_s,
                                        little_j + p_r * radio_j, self.target_accuracy))
        goal = modes.goal(frame)
        return Plan(min(candidates, key=modes.cost_key(goal)), goal, frame.mode, self.name, tuple(candidates))

    def execute(self, job, plan, steps):
        return speculate(job, plan, steps, history=None)


def speculate(job, plan, steps, history=None, detectors: dict | None = None):
    """Dynamic Duo (thesis ch.6) and SIEVE (ch.4): the little model answers unless its
    confidence is below the threshold of the class it predicts; then the big model (the
    full one) recovers, in the cloud or on the device as planned. A failed cloud recovery
    falls back to the device. SIEVE's speculation history (policies/sieve.py, passed in)
    may skip detection or the little model for a frame close to a recovered one, and may
    bring its own detector (`detectors`: little -> SpeculativeModel) instead of the probes."""
    if plan.chosen.kind != "speculate":
        return run_partition(plan, steps)
    served = steps.served
    advice = history.advice(job.peer, job.received) if history is not None else NORMAL
    if advice != NORMAL:
        served.history = advice
    if advice == DIRECT_TO_CLOUD and plan.chosen.name == "cloud":
        return recover_with_big(plan, steps)
    spec = steps.bundle.dynamic_duo.speculative(plan.chosen.model)     # SIEVE may have picked another little
    spec = (detectors or {}).get(spec.little, spec)
    thresholds = spec.power_saving_thresholds if plan.mode == "power-saving" else spec.thresholds
    little = steps.on_device(steps.models.littles[spec.little], "device")
    probs = probabilities(little.reshape(-1))
    predicted = int(probs.argmax())
    detect = advice != TRUST_LITTLE and plan.chosen.name != "detector-off"
    again = detect and bool(probs[predicted] < thresholds[predicted])
    served.little, served.little_confidence = spec.little, float(probs[predicted])
    served.threshold, served.recovered, served.detector = float(thresholds[predicted]), again, detect
    if not again:
        if history is not None and detect:
            history.record(job.peer, job.received, recovered=False)
        served.answered_by = "little"
        return little, 0
    steps.count("recoveries")
    logits, upload_bytes = recover_with_big(plan, steps)
    if history is not None:
        history.record(job.peer, job.received, recovered=True, agreed=int(np.argmax(logits)) == predicted)
    return logits, upload_bytes
