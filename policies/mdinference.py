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
from pathlib import Path

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


def moving_time(mean_s: float, var_s2: float, sample_s: float, gain: float) -> tuple[float, float]:
    """One EWMA step of a model's execution time: (mean, variance) moved toward a new sample."""
    delta = sample_s - mean_s
    return mean_s + gain * delta, (1 - gain) * (var_s2 + gain * delta * delta)


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


# ---- the evaluation's inputs (section V): a network and a table of models ------------------
class Network:
    """Round-trip network times: normal(mean, std) clipped at 0, or a recorded trace (cycled)."""

    def __init__(self, mean_s: float = 0.1, std_s: float = 0.05, trace_s: np.ndarray | None = None):
        self.mean_s, self.std_s, self.trace_s = mean_s, std_s, trace_s

    @classmethod
    def from_trace(cls, path: Path) -> "Network":
        values = np.array([float(line) for line in Path(path).read_text().split() if line.strip()]) / 1e3
        if values.size == 0 or (values < 0).any():
            raise ValueError(f"{path}: a trace is one non-negative network time in ms per line")
        return cls(float(values.mean()), float(values.std()), values)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self.trace_s is not None:
            return np.resize(self.trace_s, n)
        return np.maximum(rng.normal(self.mean_s, self.std_s, n), 0.0)


def read_model_table(path: Path) -> list[ModelStats]:
    """A table of models, one per line: name,accuracy(%),mean_ms,std_ms ('#' starts a comment);
    ValueError naming the line if one is not."""
    models = []
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split(",")]
        try:
            name, accuracy, mean, std = parts[0], *(float(p) for p in parts[1:4])
        except (ValueError, IndexError):
            raise ValueError(f"{path}:{i}: expected name,accuracy(%),mean_ms,std_ms") from None
        if not (0 <= accuracy <= 100 and 0 < mean < math.inf and 0 <= std < math.inf):
            raise ValueError(f"{path}:{i}: accuracy must be 0-100 %, mean_ms positive, std_ms non-negative")
        models.append(ModelStats(name, accuracy / 100, mean / 1e3, std / 1e3))
    if not models:
        raise ValueError(f"{path}: no models")
    return models


# ---- adaptinfd's policy -----------------------------------------------------------------
LIVE_GAIN = 0.2      # EWMA gain of each cloud model's compute time, from the replies' compute_s


@dataclass(frozen=True)
class Duplicate:
    """What `plan` decided besides the cloud model: the device's duplicate and T_budget."""

    selection: Selection          # from this device's view (the cloud makes its own with a zoo)
    device_model: str             # the zoo's cheapest on the device (the full model without a zoo)
    device_profiled_s: float
    network_s: float              # this device's estimate of T_nw


class MdInferencePolicy:
    """MDInference in adaptinfd: per frame, the request is duplicated (Candidate kind
    "duplicate"): the frame goes to the cloud while the device runs its own model, and the
    answer is the cloud's if it arrives before the SLA, else the device's.

    With a zoo bundle (`adaptinf build zoo`), the cloud picks the zoo model, as in the paper:
    it measures the frame's upload time itself (cloud/zoo_selection.py); the duplicate runs
    the zoo's cheapest model on the device. The plan here makes the same selection from
    this device's view (T_nw = 2 x T_input + RTT from the live link estimate; each cloud
    model's time as the warm-up or calibration measured it, then as replies report it)
    for its predicted cost, and sends that T_nw for the cloud to use until the link knows
    the clocks' offset. Without a zoo, the pool is the bundle's full model alone. The SLA
    is the request's deadline_ms (else `default_sla_s`). Private mode keeps the frame on
    the device.
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
            self._live[model] = moving_time(*self._live.get(model, (compute_s, 0.0)), compute_s, LIVE_GAIN)

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
                    Duplicate(selection, device_model, profiled_s, network_s))

    def execute(self, job, plan, steps):
        """The duplicate races the cloud against the device (daemon steps); a local plan runs
        locally."""
        if plan.chosen.kind != "duplicate":
            return run_partition(plan, steps)
        d: Duplicate = plan.decision
        served = steps.served
        served.budget_s = d.selection.budget_s      # this device's T_budget, until the cloud's says
        if d.selection.chosen.name == CLOUD_ONLY:        # no zoo: the full model on both sides
            return steps.duplicate()
        served.device_model = d.device_model
        answer = steps.duplicate_choosing_in_cloud((steps.models.zoo[d.device_model], d.device_profiled_s),
                                                   d.network_s)
        if served.answered_by == "cloud" and served.model is not None and steps.stages.cloud is not None:
            self.observe(served.model, steps.stages.cloud)
        return answer
