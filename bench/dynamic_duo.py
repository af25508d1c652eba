#!/usr/bin/env python3
"""Dynamic Duo (thesis ch.6) on a pool of glyph models: pair selection, recovery rates with
a single and with per-class thresholds, and throughput against the big model alone.

    python -m adaptinf build multiplexer --out build/mux      # the pool (about 10 minutes)
    python bench/dynamic_duo.py --bundle build/mux            # about a minute

Any bundle with a multiplexer section will do: its pool models, and the small models of
`adaptinf build little` if it has run, are the candidates. Costs
are each model's latency measured here (onnxruntime, batch 1), so E_pair is L_pair. The
probes are set on the validation split, to reach the big model's validation accuracy,
and every figure is on the test split (both regenerated from the manifest's seed).
Throughput: the pair (little on every frame, big on the recovered ones) and the big
model alone run over the same test frames, interleaved in rounds, in one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from adaptinf.bundle import load_bundle
from adaptinf.daemon.measurement import time_engine
from adaptinf.engines import open_engine
from adaptinf.engines.base import run_batched
from adaptinf.policies.confidence import probabilities
from adaptinf.policies.dynamic_duo import ModelOutputs, pair_accuracy, select_pair
from adaptinf.toolchain.multiplexer_build import split4


def outputs(name: str, engine, images: np.ndarray, labels: np.ndarray, cost: float) -> ModelOutputs:
    return ModelOutputs.from_logits(name, run_batched(engine, images), labels, cost)


def throughput(little, big, probe, images: np.ndarray, rounds: int) -> tuple[float, float]:
    """Frames per second of (the pair, the big model alone), interleaved in rounds."""
    pair_s, big_s = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(len(images)):
            frame = images[i:i + 1]
            p = probabilities(little.run(frame))
            if probe.recover(p.max(1), p.argmax(1))[0]:
                big.run(frame)
        pair_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        for i in range(len(images)):
            big.run(images[i:i + 1])
        big_s.append(time.perf_counter() - start)
    return len(images) / statistics.median(pair_s), len(images) / statistics.median(big_s)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", required=True, type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, help="write dynamic_duo.json and dynamic_duo.png here")
    args = ap.parse_args(argv)

    bundle = load_bundle(args.bundle)
    if bundle.multiplexer is None:
        sys.exit(f"{args.bundle} has no model pool: build one with `adaptinf build multiplexer`")
    data = json.loads((args.bundle / "manifest.json").read_text())["data"]
    _, _, val, test, classes = split4(data["n_pool_train"], data["seed"], data["n_test"])
    names = [*bundle.multiplexer.pool, *(m.name for m in bundle.models if m.role == "little")]
    engines = {n: open_engine(bundle.path(bundle.model(n).file), "onnxruntime") for n in names}
    cost = {n: statistics.median(time_engine(e, test.images[:1], 100)) / 1e3 for n, e in engines.items()}
    pool_val = [outputs(n, e, val.images, val.labels, cost[n]) for n, e in engines.items()]
    pool_test = {n: outputs(n, e, test.images, test.labels, cost[n]) for n, e in engines.items()}
    big_name = max(pool_val, key=lambda m: m.accuracy).name
    target = next(m.accuracy for m in pool_val if m.name == big_name)

    print(f"pool ({len(test.labels)} test frames; latency measured here, batch 1):")
    for n in engines:
        print(f"  {n:16} accuracy {pool_test[n].accuracy:7.2%}  {cost[n] * 1e3:7.3f} ms")
    print(f"target: {big_name}'s validation accuracy {target:.2%}\n")
    rows = {}
    for label, per_class, exhaustive in (("single threshold, exhaustive", False, True),
                                         ("per-class thresholds, exhaustive", True, True),
                                         ("per-class thresholds, odd-subset heuristic", True, False)):
        pair = select_pair(pool_val, target, len(classes), exhaustive=exhaustive, per_class=per_class)
        if pair is None:
            print(f"{label}: no pair reaches the target")
            continue
        little, big = pool_test[pair.little], pool_test[pair.big]
        recovered = pair.probe.recover(little.confidence, little.predicted)
        rows[label] = {"little": pair.little, "big": pair.big, "recovery_rate": float(recovered.mean()),
                       "accuracy": pair_accuracy(little, big, recovered), "big_accuracy": big.accuracy,
                       "predicted_latency_s": pair.cost, "big_latency_s": big.cost}
        r = rows[label]
        print(f"{label:44} {r['little']} + {r['big']}: recovery {r['recovery_rate']:6.1%}, accuracy "
              f"{r['accuracy']:.2%} (big alone {r['big_accuracy']:.2%}); L_pair {pair.cost * 1e3:.3f} ms vs "
              f"{big.cost * 1e3:.3f} ms")
    best = rows.get("per-class thresholds, exhaustive")
    if best:
        pair = select_pair(pool_val, target, len(classes))
        pair_fps, big_fps = throughput(engines[pair.little], engines[pair.big], pair.probe, test.images, args.rounds)
        best.update(pair_fps=pair_fps, big_fps=big_fps)
        print(f"\nthroughput over the test frames (median of {args.rounds} interleaved rounds): pair "
              f"{pair_fps:.0f} frames/s, {pair.big} alone {big_fps:.0f} frames/s: {pair_fps / big_fps:.2f}x")
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            _plot(pool_test[pair.little], pool_test[pair.big], best, args.out / "dynamic_duo.png")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "dynamic_duo.json").write_text(json.dumps(rows, indent=1))
    print("reproduce: python bench/dynamic_duo.py --bundle " + str(args.bundle))
    return 0


def _plot(little: ModelOutputs, big: ModelOutputs, best: dict, path: Path) -> None:
    """Accuracy vs recovery rate as the single threshold sweeps (thesis Figure 6.8)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = np.linspace(0, 1, 201)
    rate = [float((little.confidence < t).mean()) * 100 for t in ts]
    acc = [pair_accuracy(little, big, little.confidence < t) * 100 for t in ts]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(rate, acc, color="#4C72B0", label=f"{little.name} + {big.name}, single threshold")
    ax.axhline(big.accuracy * 100, color="#888888", linestyle="--", label=f"{big.name} alone")
    ax.scatter([best["recovery_rate"] * 100], [best["accuracy"] * 100], color="#C44E52", zorder=3,
               label="per-class thresholds")
    ax.set_xlabel("recovery rate (% of frames sent to the big model)")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
