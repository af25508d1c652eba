#!/usr/bin/env python3
"""Device energy of speculation (SIEVE, thesis ch.4) vs cloud-only under the 3G, 4G and
Wi-Fi uplinks of paper 004 Table III, for every small model in a pool bundle.

    python -m adaptinf build multiplexer --out build/mux         # the pool (about 10 minutes)
    python -m adaptinf build little --bundle build/mux            # the small models (about 10 minutes)
    python bench/speculative_energy.py --bundle build/mux --plot build/speculative_energy.png

Per frame, on the device:
- cloud-only costs E_t, the radio's upload energy: the frame's bytes over the uplink at
  P_u of Table III;
- speculation costs E_m + E_t × P_r. P_r comes from each little model's per-class probe,
  set on validation to reach the full model's validation accuracy; P_r and the accuracy
  are then measured on test (both splits regenerated from the manifest's seed).
E_m, the little model's energy, two ways (there is no power sensor here):
- measured: its onnxruntime time here at batch 1 × --compute-power-w. onnxruntime has
  no custom-float or sparse kernels, so compressed models gain nothing this way (a
  custom-float graph even pays for rounding its activations);
- modelled: Horowitz's 45 nm energies (ISSCC 2014): 3.7 + 0.9 pJ per fp32
  multiply-add, and 640 pJ per 32-bit DRAM access (160 pJ per byte) for the weights as
  stored plus each layer's input activations written and read back (size_bytes and
  2 × activation_bytes). This is the memory traffic that SIEVE's custom floats and
  pruning shrink. The thesis puts the (de)compression cost under 5% and it is left out.
The thesis reports 91%, 57% and 26% less energy than cloud-only for 3G, 4G and Wi-Fi.
--plot draws accuracy against recovery rate and against stored size, and the Pareto
fronts of accuracy against device energy for each uplink, with modelled and with measured
E_m (each little's single threshold swept; cloud-only and mobile-only are points).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

from adaptinf.bundle import load_bundle
from adaptinf.daemon.measurement import time_engine
from adaptinf.engines import open_engine
from adaptinf.engines.base import run_batched
from adaptinf.policies.dynamic_duo import ModelOutputs, evaluate_pair, pair_accuracy
from adaptinf.policies.radio_power import RADIOS, uplink_power_w
from adaptinf.toolchain.little_models import storage
from adaptinf.toolchain.speculative_build import candidates, pool_splits

PJ_PER_MAC = 3.7 + 0.9        # fp32 multiply + add, 45 nm (Horowitz, ISSCC 2014)
PJ_PER_DRAM_BYTE = 640 / 4    # a 32-bit DRAM access, 45 nm (same table)


def stored_bytes(model, path: Path) -> tuple[int, int]:
    """(weights, activations per frame) as stored: from the manifest, or counted on the graph
    for a model `adaptinf build little` did not describe."""
    return (model.size_bytes, model.activation_bytes) if model.size_bytes else storage(path)


def modelled_energy_j(model, path: Path) -> float:
    size, activations = stored_bytes(model, path)
    return (model.flops / 2 * PJ_PER_MAC + (size + 2 * activations) * PJ_PER_DRAM_BYTE) * 1e-12


def cloud_only_j(radio: str, frame_bytes: int) -> float:
    bps = RADIOS[radio].nominal_uplink_bps
    return frame_bytes * 8 / bps * uplink_power_w(radio, bps)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", required=True, type=Path)
    ap.add_argument("--compute-power-w", type=float, default=5.0)
    ap.add_argument("--plot", type=Path, help="write the accuracy / recovery and Pareto plot here (PNG)")
    args = ap.parse_args(argv)

    bundle = load_bundle(args.bundle)
    _, val, test, classes = pool_splits(args.bundle)
    full = bundle.full_model

    def outputs(model, split):
        engine = open_engine(bundle.path(model.file), "onnxruntime")
        return ModelOutputs.from_logits(model.name, run_batched(engine, split.images), split.labels, 0.0)

    big_val, big_test = outputs(full, val), outputs(full, test)
    frame_bytes = test.images[:1].nbytes
    rows, curves = [], {}
    for model in candidates(bundle):
        little_val, little_test = outputs(model, val), outputs(model, test)
        pair = evaluate_pair(little_val, big_val, big_val.accuracy, len(classes))
        if pair is None:
            continue
        recovered = pair.probe.recover(little_test.confidence, little_test.predicted)
        engine = open_engine(bundle.path(model.file), "onnxruntime")
        seconds = statistics.median(time_engine(engine, test.images[:1], 200)) / 1e3
        rows.append({"name": model.name, "method": model.derivation.get("method", "pool"),
                     "p_r": float(recovered.mean()), "accuracy": pair_accuracy(little_test, big_test, recovered),
                     "little_accuracy": little_test.accuracy,
                     "size_bytes": stored_bytes(model, bundle.path(model.file))[0],
                     "measured_j": seconds * args.compute_power_w,
                     "modelled_j": modelled_energy_j(model, bundle.path(model.file))})
        curves[model.name] = [(float((little_test.confidence < t).mean()),
                               pair_accuracy(little_test, big_test, little_test.confidence < t))
                              for t in np.linspace(0.0, 1.0, 101)]

    mobile_j = modelled_energy_j(full, bundle.path(full.file))
    print(f"{len(test.labels)} test frames; {full.name} alone {big_test.accuracy:.2%}, modelled "
          f"{mobile_j * 1e3:.3f} mJ on the device; E_t (cloud-only): "
          + ", ".join(f"{r} {cloud_only_j(r, frame_bytes) * 1e3:.3f} mJ" for r in RADIOS) + "\n")
    print(f"{'little':18} {'method':13} {'P_r':>6} {'accuracy':>8} {'E_m meas.':>10} {'E_m model':>10}   "
          "less energy than cloud-only, measured / modelled E_m")
    for row in rows:
        saved = []
        for radio in RADIOS:
            e_t = cloud_only_j(radio, frame_bytes)
            saved.append(f"{radio} {1 - (row['measured_j'] + e_t * row['p_r']) / e_t:6.1%} / "
                         f"{1 - (row['modelled_j'] + e_t * row['p_r']) / e_t:6.1%}")
        print(f"{row['name']:18} {row['method']:13} {row['p_r']:6.1%} {row['accuracy']:8.2%} "
              f"{row['measured_j'] * 1e3:7.3f} mJ {row['modelled_j'] * 1e3:7.4f} mJ   " + "   ".join(saved))
    engine = open_engine(bundle.path(full.file), "onnxruntime")
    mobile_measured_j = statistics.median(time_engine(engine, test.images[:1], 200)) / 1e3 * args.compute_power_w
    print(f"{'mobile-only ' + full.name:32} {100:5d}% {big_test.accuracy:8.2%} {mobile_measured_j * 1e3:7.3f} mJ "
          f"{mobile_j * 1e3:7.4f} mJ   " + "   ".join(
              f"{r} {1 - mobile_measured_j / cloud_only_j(r, frame_bytes):6.1%} / "
              f"{1 - mobile_j / cloud_only_j(r, frame_bytes):6.1%}" for r in RADIOS))
    if args.plot:
        _plot(rows, curves, big_test.accuracy, {"modelled": mobile_j, "measured": mobile_measured_j}, frame_bytes,
              args.plot)
        print(f"\nplot: {args.plot}")
    print(f"\nreproduce: python bench/speculative_energy.py --bundle {args.bundle}")
    return 0


def _plot(rows: list[dict], curves: dict, big_accuracy: float, mobile_j: dict, frame_bytes: int,
          path: Path) -> None:
    """Top: accuracy vs recovery rate, then the modelled-energy Pareto fronts per uplink;
    bottom: accuracy vs stored size, then the fronts with measured E_m."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    fig, axes = plt.subplots(2, 1 + len(RADIOS), figsize=(4.2 * (1 + len(RADIOS)), 7.6))
    colours = {name: f"C{i}" for i, name in enumerate(curves)}
    for name, curve in curves.items():
        rate, acc = np.array(curve).T
        axes[0, 0].plot(rate * 100, acc * 100, label=name, color=colours[name])
    axes[0, 0].axhline(big_accuracy * 100, color="#888888", linestyle="--", linewidth=0.8)
    axes[0, 0].set_xlabel("recovery rate (%)")
    axes[0, 0].set_ylabel("test accuracy (%)")
    axes[0, 0].legend(fontsize=7)
    for row in rows:
        axes[1, 0].scatter(row["size_bytes"] / 1e3, row["little_accuracy"] * 100, color=colours[row["name"]])
        axes[1, 0].annotate(row["name"], (row["size_bytes"] / 1e3, row["little_accuracy"] * 100), fontsize=7)
    axes[1, 0].set_xlabel("weights as stored (kB)")
    axes[1, 0].set_ylabel("little model alone, test accuracy (%)")
    for line, kind in enumerate(("modelled", "measured")):
        e_m = {row["name"]: row[f"{kind}_j"] for row in rows}
        for ax, radio in zip(axes[line, 1:], RADIOS):
            e_t = cloud_only_j(radio, frame_bytes)
            points = [(e_t * 1e3, big_accuracy * 100), (mobile_j[kind] * 1e3, big_accuracy * 100)]
            for name, curve in curves.items():
                energy = [(e_m[name] + e_t * rate) * 1e3 for rate, _ in curve]
                ax.plot(energy, [a * 100 for _, a in curve], linewidth=0.8, alpha=0.7, color=colours[name])
                points += list(zip(energy, [a * 100 for _, a in curve]))
            front, best = [], -1.0
            for e, a in sorted(points):                      # Pareto: no cheaper point is as accurate
                if a > best:
                    front.append((e, a))
                    best = a
            ax.step(*zip(*front), where="post", color="black", linewidth=1.5, label="Pareto front")
            ax.scatter([e_t * 1e3], [big_accuracy * 100], marker="s", color="#C44E52", label="cloud-only", zorder=3)
            ax.scatter([mobile_j[kind] * 1e3], [big_accuracy * 100], marker="^", color="#55A868",
                       label="mobile-only", zorder=3)
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(f"device energy per frame, mJ ({radio}, {kind} E_m)")
            ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
