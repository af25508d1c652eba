"""`adaptinf sim`: replay a model-selection policy against a table of models and a network, as
paper 003 section V does; the selection code is policies/mdinference.py, the daemon's own.

Per request: a network round trip t_nw (from a normal model, mean +- std, or a recorded
trace of milliseconds, one per line); the policy picks a cloud model with T_budget =
T_sla - T_nw (T_nw estimated as 2 x T_input, the upload time measured before execution;
with symmetric transfers, the round trip); its execution time is drawn from N(mu, sigma);
the result arrives at t_nw + execution. With duplication, the on-device model runs at the
same time and its answer is used when the cloud's misses the SLA (returned at expiry).
Aggregate accuracy is the mean of the accuracies of the models whose answers were used.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="adaptinf sim", description=__doc__.split("\n\n")[0])
    parser.add_argument("--policies", default="mdinference,static-greedy,static-accuracy,random",
                        help=f"comma-separated, from {', '.join(POLICIES)}")
    parser.add_argument("--sla-ms", default="50,100,150,200,250,300", help="comma-separated SLA targets")
    parser.add_argument("--network-ms", default="100,50", help="mean,std of the network round trip (ms)")
    parser.add_argument("--trace", type=Path, default=None, help="recorded network times, ms, one per line")
    parser.add_argument("--models", type=Path, default=None,
                        help="CSV name,accuracy(%%),mean_ms,std_ms (default: paper 003 Table III)")
    parser.add_argument("--fictional", action="store_true", help="add NasNet Fictional (section V-C)")
    parser.add_argument("--no-duplication", action="store_true", help="no on-device backup")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        models = md.read_model_table(args.models) if args.models else list(PAPER_003_MODELS)
        if args.fictional:
            models.append(NASNET_FICTIONAL)
        network = Network.from_trace(args.trace) if args.trace else \
            Network(*(float(v) / 1e3 for v in args.network_ms.split(",")))
        policies = [p.strip() for p in args.policies.split(",")]
        for p in policies:
            if p not in POLICIES:
                raise ValueError(f"unknown policy {p!r}; choose from {', '.join(POLICIES)}")
        try:
            slas = [float(v) / 1e3 for v in args.sla_ms.split(",")]
        except ValueError:
            raise ValueError(f"--sla-ms takes comma-separated milliseconds, e.g. 100,250; got {args.sla_ms!r}") \
                from None
        if not all(math.isfinite(v) and v > 0 for v in slas):
            raise ValueError(f"--sla-ms values must be positive milliseconds, got {args.sla_ms!r}")
    except (OSError, ValueError) as exc:
        print(f"adaptinf sim: {exc}", file=sys.stderr)
        return 2
    device = None if args.no_duplication else PAPER_003_DEVICE
    print(f"{len(models)} cloud models; network {network.mean_s * 1e3:.0f} +- {network.std_s * 1e3:.0f} ms"
          f"{' (trace)' if args.trace else ''}; {args.requests} requests per cell; duplication: "
          f"{'on-device ' + device.name if device else 'off'}")
    print(f"{'SLA ms':>6}  {'policy':17} {'accuracy':>9} {'SLA met':>8} {'on-device':>10} {'mean ms':>8}  most used")
    for sla in slas:
        for policy in policies:
            r = simulate(policy, models, network, sla, args.requests, device, args.seed)
            top = ", ".join(f"{n} {c / args.requests:.0%}" for n, c in r.usage.most_common(2))
            print(f"{sla * 1e3:6.0f}  {policy:17} {r.aggregate_accuracy:9.2%} {r.sla_attainment:8.2%} "
                  f"{r.on_device_reliance:10.2%} {r.mean_latency_s * 1e3:8.1f}  {top}")
    return 0
