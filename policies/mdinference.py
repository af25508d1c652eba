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
