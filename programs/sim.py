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
from pathlib import Path

from adaptinf.policies import mdinference as md
from adaptinf.policies.mdinference import ModelStats, Network  # noqa: F401 (Network: the sim's, re-exported)
# the simulation itself lives below the programs (rig/), so the rig's agreement check uses it too
from adaptinf.rig.mdinference_sim import (NASNET_FICTIONAL, PAPER_003_DEVICE, PAPER_003_MODELS,  # noqa: F401
                                          POLICIES, SimResult, choose, simulate)

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
