"""MDInference (paper 003): SLA-bounded model selection among functionally equivalent models.

Per request, with T_budget = T_sla - T_nw (T_nw, the network round trip, estimated
conservatively as 2 x T_input from the live link estimate):
1. base model m_b: the most accurate m with mu(m) + sigma(m) < T_budget (eq. 1-2); if none
   fits, the fastest model;
2. exploration set M_E = {m : mu(m) in [mu(m_b) - sigma(m_b), mu(m_b) + sigma(m_b)]};
3. utility U(m) = A(m) (T_budget - (mu(m) + sigma(m))) / |T_budget - mu(m)| (eq. 3), and m'
   drawn with Pr(m) = U(m) / sum U over M_E.
Eq. 3 is negative for a model expected to overrun the budget; such a model gets
probability 0 (a negative "probability" is meaningless), so when some model fits the
budget, one that does not is never picked. If nothing in M_E has positive utility (no
model fits at all), the base model, the fastest, is used.

Request duplication (section IV-E) is the executor's part: the on-device model runs at
the same time, and its answer is returned at SLA expiry if the cloud's has not arrived.
The baselines of the paper's evaluation are here too, so `adaptinf sim` compares like
with like.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from adaptinf.policies import modes
from adaptinf.policies.execution import run_partition
from adaptinf.policies.plan import Candidate, Plan
from adaptinf.policies.radio_power import uplink_power_w
from adaptinf.profile import CLOUD_ONLY, MOBILE_ONLY

EPSILON_S = 1e-9


@dataclass(frozen=True)
class ModelStats:
    name: str
    accuracy: float     # top-1, as a fraction
    mean_s: float       # execution time, mean and standard deviation
    std_s: float


@dataclass(frozen=True)
class Selection:
    chosen: ModelStats
    base: ModelStats
    exploration: tuple[ModelStats, ...]
    probabilities: tuple[float, ...]   # over `exploration`
    budget_s: float


def time_budget(sla_s: float, network_s: float) -> float:
    """T_budget = T_sla - T_nw."""
    return sla_s - network_s


def base_model(models: list[ModelStats] | tuple[ModelStats, ...], budget_s: float) -> ModelStats:
    fitting = [m for m in models if m.mean_s + m.std_s < budget_s]
    if not fitting:
        return min(models, key=lambda m: m.mean_s)
    return max(fitting, key=lambda m: (m.accuracy, -m.mean_s))


def exploration_set(models, base: ModelStats) -> tuple[ModelStats, ...]:
    low, high = base.mean_s - base.std_s, base.mean_s + base.std_s
    return tuple(m for m in models if low <= m.mean_s <= high)


def utility(m: ModelStats, budget_s: float) -> float:
    """Eq. 3, clipped at 0 (a model expected to overrun the budget is not a candidate)."""
    u = m.accuracy * (budget_s - (m.mean_s + m.std_s)) / max(abs(budget_s - m.mean_s), EPSILON_S)
    return max(u, 0.0)


def select(models, budget_s: float, rng: np.random.Generator) -> Selection:
    if not models:
        raise ValueError("MDInference needs at least one model")
    base = base_model(models, budget_s)
    explore = exploration_set(models, base)
    weights = np.array([utility(m, budget_s) for m in explore])
    if weights.sum() <= 0:
        return Selection(base, base, explore, tuple(float(m is base) for m in explore), budget_s)
    probabilities = weights / weights.sum()
    chosen = explore[int(rng.choice(len(explore), p=probabilities))]
    return Selection(chosen, base, explore, tuple(float(p) for p in probabilities), budget_s)


# ---- the paper's baselines (section V) --------------------------------------------------
def static_greedy(models, sla_s: float) -> ModelStats:
    """The most accurate model that can complete within the SLA, ignoring the network."""
    return base_model(models, sla_s)


def static_accuracy(models) -> ModelStats:
    return max(models, key=lambda m: m.accuracy)


def static_latency(models) -> ModelStats:
    return min(models, key=lambda m: m.mean_s)


def related_random(models, budget_s: float, rng: np.random.Generator) -> ModelStats:
    explore = exploration_set(models, base_model(models, budget_s))
    return explore[int(rng.integers(len(explore)))]


def related_accurate(models, budget_s: float) -> ModelStats:
    return max(exploration_set(models, base_model(models, budget_s)), key=lambda m: m.accuracy)


# ---- adaptinfd's policy -----------------------------------------------------------------
class MdInferencePolicy:
    """MDInference in adaptinfd: per frame, pick the cloud model by `select` and duplicate the
    request on the device (Candidate kind "duplicate"; the executor runs both and answers
    with the cloud's result if it arrives before the SLA, else with the device's).

    The SLA is the request's deadline_ms (else `default_sla_s`); T_nw = 2 x T_input + RTT
    from the live link estimate (T_input: the frame's upload time). The pool is what the
    cloud serves: today the bundle's full model (the cloud-only partition, its execution
    time scaled by the cloud's reported load). Private mode keeps the frame on the device.
    """

    name = "mdinference"

    def __init__(self, default_sla_s: float, frame_bytes: int, seed: int = 0):
        self.default_sla_s = default_sla_s
        self.frame_bytes = frame_bytes
        self._rng = np.random.default_rng(seed)

    def pool(self, telemetry, profile) -> list[ModelStats]:
        cloud = profile.partition(CLOUD_ONLY)
        return [ModelStats(CLOUD_ONLY, cloud.accuracy or 0.0,
                           telemetry.cloud_s(cloud.cloud_s), 0.0)]

    def plan(self, frame, telemetry, profile, explain: bool = False):
        mobile = profile.partition(MOBILE_ONLY)
        device_s = telemetry.compute_s(mobile.device_s)
        power_w = telemetry.device_power_w or mobile.device_power_w
        local = Candidate(MOBILE_ONLY, "device", device_s, 0.0, 0.0, 0.0, device_s, device_s * power_w,
                          mobile.accuracy)
        if not modes.cloud_allowed(frame, telemetry, profile):
            return Plan(local, frame.goal, frame.mode, self.name, (local,))
        upload_s = self.frame_bytes * 8.0 / telemetry.uplink_bps
        network_s = 2 * upload_s + telemetry.rtt_s
        sla_s = frame.deadline_s or self.default_sla_s
        selection = select(self.pool(telemetry, profile), time_budget(sla_s, network_s), self._rng)
        m = selection.chosen
        radio_j = upload_s * uplink_power_w(telemetry.radio, telemetry.uplink_bps)
        duplicate = Candidate(m.name, "duplicate", device_s, upload_s, network_s - upload_s, m.mean_s,
                              min(sla_s, network_s + m.mean_s), device_s * power_w + radio_j, m.accuracy)
        return Plan(duplicate, frame.goal, frame.mode, self.name, (duplicate, local))

    def execute(self, job, plan, steps):
        """The duplicate races the cloud against the device (daemon steps); a local plan runs locally."""
        if plan.chosen.kind == "duplicate":
            return steps.duplicate()
        return run_partition(plan, steps)
