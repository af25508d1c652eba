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

import math
import threading
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
LIVE_GAIN = 0.2      # EWMA gain of each cloud model's compute time, from the replies' compute_s


@dataclass(frozen=True)
class Duplicate:
    """What `plan` decided besides the cloud model: the device's duplicate and T_budget."""

    selection: Selection
    device_model: str             # the zoo's cheapest on the device (the full model without a zoo)
    device_profiled_s: float


class MdInferencePolicy:
    """MDInference in adaptinfd: per frame, pick the cloud model by `select` and duplicate the
    request on the device (Candidate kind "duplicate"; the steps run both and answer with
    the cloud's result if it arrives before the SLA, else with the device's).

    The SLA is the request's deadline_ms (else `default_sla_s`); T_nw = 2 x T_input + RTT
    from the live link estimate (T_input: this frame's upload time behind the uplink's
    queue). The pool is what the cloud serves: with a zoo bundle (`adaptinf build zoo`),
    every zoo model the warm-up (or calibration) timed in the cloud, each with its mean and
    std from that measurement until replies bring its own compute times (EWMA), plus the
    cloud's queue; the duplicate runs the zoo's cheapest model on the device. Without a
    zoo, the pool is the bundle's full model alone. Private mode keeps the frame on the
    device.
    """

    name = "mdinference"

    def __init__(self, default_sla_s: float, frame_bytes: int, seed: int = 0, zoo: tuple[str, ...] = ()):
        self.default_sla_s = default_sla_s
        self.frame_bytes = frame_bytes
        self.zoo = zoo
        self._rng = np.random.default_rng(seed)
        self._live: dict[str, tuple[float, float]] = {}   # cloud model -> (mean s, variance s^2)
        self._lock = threading.Lock()

    def observe(self, model: str, compute_s: float) -> None:
        """A reply's compute_s for `model`: its live mean and variance move toward it."""
        with self._lock:
            mean, var = self._live.get(model, (compute_s, 0.0))
            delta = compute_s - mean
            mean += LIVE_GAIN * delta
            self._live[model] = (mean, (1 - LIVE_GAIN) * (var + LIVE_GAIN * delta * delta))

    def pool(self, telemetry, profile) -> list[ModelStats]:
        served = [m for m in profile.models if m.name in self.zoo and m.cloud_ms > 0]
        if not served:
            cloud = profile.partition(CLOUD_ONLY)
            return [ModelStats(CLOUD_ONLY, cloud.accuracy or 0.0, telemetry.cloud_s(cloud.cloud_s), 0.0)]
        with self._lock:
            live = dict(self._live)
        out = []
        for m in served:
            mean, var = live.get(m.name, (m.cloud_s * telemetry.cloud_slowdown,
                                          (m.cloud_s_std * telemetry.cloud_slowdown) ** 2))
            out.append(ModelStats(m.name, m.accuracy or 0.0, mean + telemetry.cloud_queue_s, math.sqrt(var)))
        return out

    def _device_model(self, profile) -> tuple[str, float]:
        """(name, profiled seconds) of the duplicate's model: the zoo's cheapest on the device."""
        zoo = [m for m in profile.models if m.name in self.zoo and m.device_ms > 0]
        if zoo:
            cheapest = min(zoo, key=lambda m: m.device_ms)
            return cheapest.name, cheapest.device_s
        return MOBILE_ONLY, profile.partition(MOBILE_ONLY).device_s

    def plan(self, frame, telemetry, profile, explain: bool = False):
        mobile = profile.partition(MOBILE_ONLY)
        power_w = telemetry.device_power_w or mobile.device_power_w
        full_s = telemetry.compute_s(mobile.device_s)
        local = Candidate(MOBILE_ONLY, "device", full_s, 0.0, 0.0, 0.0, full_s, full_s * power_w, mobile.accuracy)
        if not modes.cloud_allowed(frame, telemetry, profile):
            return Plan(local, frame.goal, frame.mode, self.name, (local,))
        upload_s = telemetry.upload_s(self.frame_bytes)
        network_s = 2 * upload_s + telemetry.rtt_s
        sla_s = frame.deadline_s or self.default_sla_s
        selection = select(self.pool(telemetry, profile), time_budget(sla_s, network_s), self._rng)
        m = selection.chosen
        device_model, profiled_s = self._device_model(profile)
        device_s = telemetry.compute_s(profiled_s)
        radio_j = upload_s * uplink_power_w(telemetry.radio, telemetry.uplink_bps)
        duplicate = Candidate(m.name, "duplicate", device_s, upload_s, network_s - upload_s, m.mean_s,
                              min(sla_s, network_s + m.mean_s), device_s * power_w + radio_j, m.accuracy)
        return Plan(duplicate, frame.goal, frame.mode, self.name, (duplicate, local),
                    Duplicate(selection, device_model, profiled_s))

    def execute(self, job, plan, steps):
        """The duplicate races the cloud's chosen model against the device's (daemon steps);
        a local plan runs locally."""
        if plan.chosen.kind != "duplicate":
            return run_partition(plan, steps)
        d: Duplicate = plan.decision
        served = steps.served
        served.budget_s = d.selection.budget_s
        if d.selection.chosen.name == CLOUD_ONLY:        # no zoo: the full model on both sides
            return steps.duplicate()
        served.model, served.device_model = d.selection.chosen.name, d.device_model
        answer = steps.duplicate(d.selection.chosen.name, (steps.models.zoo[d.device_model], d.device_profiled_s))
        if served.answered_by == "cloud" and steps.stages.cloud is not None:
            self.observe(d.selection.chosen.name, steps.stages.cloud)
        return answer
