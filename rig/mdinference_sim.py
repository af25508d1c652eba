"""Paper 003 section V's simulation of model selection: per request a network round trip,
a policy's choice of cloud model under the time budget, that model's execution time, and
the on-device model as a duplicate. The selection code is policies/mdinference.py, the
daemon's own. `adaptinf sim` (programs/sim.py) runs it from the command line;
rig/mdinference_agreement.py holds it against the real daemon and worker.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from adaptinf.policies import mdinference as md
from adaptinf.policies.mdinference import ModelStats, Network  # noqa: F401 (Network: the sim's, re-exported)

# Paper 003 Table III (AWS p2.xlarge, TensorFlow): accuracy, mean and std of execution.
PAPER_003_MODELS = tuple(ModelStats(n, a / 100, m / 1e3, s / 1e3) for n, a, m, s in (
    ("SqueezeNet", 49.0, 4.91, 0.06), ("MobileNetV1 0.25", 49.7, 3.21, 0.08), ("MobileNetV1 0.5", 63.2, 4.21, 0.06),
    ("DenseNet", 64.2, 25.49, 0.14), ("MobileNetV1 0.75", 68.3, 4.67, 0.07), ("MobileNetV1 1.0", 71.0, 5.43, 0.11),
    ("NasNet Mobile", 73.9, 21.18, 0.17), ("InceptionResNetV2", 77.5, 50.85, 0.33),
    ("InceptionV3", 77.9, 31.11, 0.19), ("InceptionV4", 80.1, 59.21, 0.22), ("NasNet Large", 82.6, 112.61, 0.36)))
NASNET_FICTIONAL = ModelStats("NasNet Fictional", 0.50, 112.61e-3, 0.36e-3)   # section V-C only
# The on-device backup of section V-D: MobileNetV1 0.25 at 128 px (41.4% top-1, the paper's
# "static latency" accuracy). Its on-device time is not in the paper; 30 +- 5 ms is our
# assumption (the paper: "allowing for SLAs as low as 50ms").
PAPER_003_DEVICE = ModelStats("MobileNetV1 0.25 (128 px, on device)", 0.414, 30e-3, 5e-3)

POLICIES = ("mdinference", "static-greedy", "static-accuracy", "static-latency", "random", "related-random",
            "related-accurate")


def choose(policy: str, models, budget_s: float, sla_s: float, rng: np.random.Generator) -> ModelStats:
    if policy == "mdinference":
        return md.select(models, budget_s, rng).chosen
    if policy == "static-greedy":
        return md.static_greedy(models, sla_s)
    if policy == "static-accuracy":
        return md.static_accuracy(models)
    if policy == "static-latency":
        return md.static_latency(models)
    if policy == "random":
        return models[int(rng.integers(len(models)))]
    if policy == "related-random":
        return md.related_random(models, budget_s, rng)
    if policy == "related-accurate":
        return md.related_accurate(models, budget_s)
    raise ValueError(f"unknown policy {policy!r}; choose one of {POLICIES}")


@dataclass
class SimResult:
    policy: str
    sla_s: float
    aggregate_accuracy: float
    sla_attainment: float
    on_device_reliance: float
    mean_latency_s: float
    usage: Counter = field(default_factory=Counter)


def simulate(policy: str, models, network: Network, sla_s: float, requests: int = 10_000,
             device: ModelStats | None = None, seed: int = 0) -> SimResult:
    """device: the on-device model for request duplication; None: no duplication."""
    rng = np.random.default_rng(seed)
    t_nw = network.sample(requests, rng)
    accuracy, latency, met, on_device, usage = [], [], 0, 0, Counter()
    for t in t_nw:
        model = choose(policy, models, md.time_budget(sla_s, t), sla_s, rng)
        done = t + max(rng.normal(model.mean_s, model.std_s), 0.0)
        if device is not None and done > sla_s:
            local = max(rng.normal(device.mean_s, device.std_s), 0.0)
            on_device += 1
            usage[device.name] += 1
            accuracy.append(device.accuracy)
            latency.append(max(local, min(done, sla_s)))   # answered at SLA expiry, or when the device finishes
            met += local <= sla_s
            continue
        usage[model.name] += 1
        accuracy.append(model.accuracy)
        latency.append(done)
        met += done <= sla_s
    return SimResult(policy, sla_s, float(np.mean(accuracy)), met / requests, on_device / requests,
                     float(np.mean(latency)), usage)
