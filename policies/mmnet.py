"""M&MNet (thesis ch.5): two light Minions on the device, the Master recovers.

- Misspeculation detector (5.2, Figure 5.3): a frame goes to the Master when either
  Minion's confidence is below its threshold, or the two Minions disagree. Otherwise
  the Minions' shared answer stands.
- Thresholds: the pair (t_1, t_2) on a grid with the fewest recoveries whose accuracy
  on validation reaches the target (default: the Master's).
- Minion pairing (5.3.3): among pairs whose summed cost is below the Master's, the one
  with the smallest L = L_m1 + L_m2 + L_Master × P_r.
- Selector (5.2): Minions when L_m1 + L_m2 + L_Master × P_r < L_Master, else the Master
  alone. The Master sits on the device or in the cloud, whichever is faster (L_t vs L_m).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from adaptinf.policies import modes
from adaptinf.policies.confidence import probabilities
from adaptinf.policies.dynamic_duo import ModelOutputs
from adaptinf.policies.execution import recover_with_big, run_partition
from adaptinf.policies.fixed import fixed
from adaptinf.policies.plan import Candidate, Plan
from adaptinf.profile import CLOUD_ONLY, MOBILE_ONLY

GRID = np.linspace(0.0, 1.0, 51)


def recover(conf_1, pred_1, conf_2, pred_2, t_1: float, t_2: float) -> np.ndarray:
    """The misspeculation detector, for one frame or a batch."""
    return (np.asarray(conf_1) < t_1) | (np.asarray(conf_2) < t_2) | (np.asarray(pred_1) != np.asarray(pred_2))


@dataclass(frozen=True)
class MinionPair:
    minions: tuple[str, str]
    thresholds: tuple[float, float]
    recovery_rate: float
    accuracy: float
    cost: float                 # L_m1 + L_m2 + L_Master x P_r


def configure(m1: ModelOutputs, m2: ModelOutputs, master: ModelOutputs, target: float) -> MinionPair | None:
    """The (t_1, t_2) with the fewest recoveries whose accuracy reaches `target`."""
    best = None
    for t_1 in GRID:
        for t_2 in GRID:
            rec = recover(m1.confidence, m1.predicted, m2.confidence, m2.predicted, t_1, t_2)
            accuracy = float(np.where(rec, master.right, m1.right).mean())   # not recovered: they agree
            if accuracy >= target and (best is None or rec.mean() < best[0]):
                best = (float(rec.mean()), float(t_1), float(t_2), accuracy)
    if best is None:
        return None
    p_r, t_1, t_2, accuracy = best
    return MinionPair((m1.name, m2.name), (t_1, t_2), p_r, accuracy, m1.cost + m2.cost + master.cost * p_r)


def select_minions(pool: list[ModelOutputs], master: ModelOutputs, target: float) -> MinionPair | None:
    pairs = [p for a, b in combinations([m for m in pool if m.name != master.name], 2)
             if a.cost + b.cost < master.cost and (p := configure(a, b, master, target)) is not None]
    return min(pairs, key=lambda p: p.cost) if pairs else None


class MmNetPolicy:
    """adaptinfd's "mmnet" policy (Candidate kind "minions"; name: where the Master recovers)."""

    name = "mmnet"

    def __init__(self, frame_bytes: int, minion_share: float, recovery_rate: float,
                 target_accuracy: float | None = None, minion_energy_share: float | None = None):
        """minion_share: both Minions' device time over the Master's, from the profile;
        minion_energy_share: their energy over the Master's (default: the time share)."""
        self.frame_bytes = frame_bytes
        self.minion_share = minion_share
        self.minion_energy_share = minion_share if minion_energy_share is None else minion_energy_share
        self.recovery_rate = recovery_rate
        self.target_accuracy = target_accuracy

    def plan(self, frame, telemetry, profile, explain: bool = False):
        cloud_ok = modes.cloud_allowed(frame, telemetry, profile)
        on_device = fixed(MOBILE_ONLY).plan(frame, telemetry, profile).chosen
        in_cloud = fixed(CLOUD_ONLY).plan(frame, telemetry, profile).chosen if cloud_ok else None
        goal = modes.goal(frame)
        key = modes.cost_key(goal)
        master = min([c for c in (on_device, in_cloud) if c is not None], key=key)   # L_t vs L_m
        if modes.most_accurate_only(frame):
            return Plan(master, goal, frame.mode, self.name, (master,))
        p_r = self.recovery_rate
        minions_s = on_device.device_s * self.minion_share
        minions_j = on_device.energy_j * self.minion_energy_share
        # name: where the Master recovers
        minions = Candidate(master.kind, "minions", minions_s + p_r * master.device_s, p_r * master.upload_s,
                            p_r * master.network_s, p_r * master.cloud_s, minions_s + p_r * master.latency_s,
                            minions_j + p_r * master.energy_j, self.target_accuracy)
        return Plan(min((minions, master), key=key), goal, frame.mode, self.name, (minions, master))

    def execute(self, job, plan, steps):
        """M&MNet (thesis ch.5): both Minions run on the device; when both are confident and agree
        their answer stands, else the Master (the full model) recovers where the plan put it."""
        if plan.chosen.kind != "minions":
            return run_partition(plan, steps)
        spec = steps.bundle.mmnet
        logits = [steps.on_device(minion, "device") for minion in steps.models.minions]
        probs = [probabilities(z.reshape(-1)) for z in logits]
        predicted = [int(p.argmax()) for p in probs]
        confidence = [float(p[c]) for p, c in zip(probs, predicted)]
        again = bool(recover(confidence[0], predicted[0], confidence[1], predicted[1], *spec.thresholds))
        served = steps.served
        served.minions, served.minion_confidence = list(spec.minions), confidence
        served.minions_agree, served.recovered = predicted[0] == predicted[1], again
        if not again:
            served.answered_by = "minions"
            return logits[0], 0
        steps.count("recoveries")
        return recover_with_big(plan, steps)
