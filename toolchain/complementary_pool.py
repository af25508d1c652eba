"""A multiplexer pool built for complementarity (papers 000/001, Algorithm 1 step 1).

Paper 000's pool is several ImageNet CNNs of comparable accuracy and different families,
whose errors differ; that is the room a multiplexer has. The width pool
(toolchain/multiplexer.py) fails on the same frames, and the zoo (toolchain/zoo.py) spans
14% to 79%, so most of it is never worth a frame. This pool is built the paper's way:
- members within a few points of each other: ResNets and a MobileNet of different widths,
  input resolutions and initialisation seeds (POOL);
- trained together with Algorithm 1's contrastive loss (eq. 2), which pushes apart the
  embeddings of two models on the frames where exactly one of them is right;
- measured before any multiplexer: each member's accuracy, the pairwise overlap of their
  errors, the oracle (some member right) and its gain over the largest member;
- then the multiplexer (objective "correctness", w_i = P(member i is right), with eq. 8's
  distillation towards the pool's embeddings), routed with eq. 5's cost as a price
  (policies/multiplexer.select_by_utility) swept from 0 up: the accuracy/FLOPs curve, with
  the largest member alone and random routing at the same shares beside every point; and
  Algorithm 2's threshold ensemble, against every fixed subset of the pool averaged.

Data: four disjoint glyph renders (their own seeds): the pool's training frames, the
multiplexer's (frames the pool never saw), validation (the cheapest-rule threshold) and the
held-out test frames every figure is measured on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from adaptinf.policies import multiplexer as routing
from adaptinf.toolchain import datasets, training
from adaptinf.toolchain.multiplexer import (LogitsOnly, MuxConfig, Multiplexer, PoolMember, WeightsOnly, mux_weights,
                                            pool_outputs, train_multiplexer, train_pool)
from adaptinf.toolchain.onnx_export import export_onnx
from adaptinf.toolchain.onnx_flops import count_flops
from adaptinf.toolchain.zoo import FRAME, ZooMember

# Comparable accuracy, different errors: two families, three widths, two input resolutions,
# and a different initialisation seed each (the zoo's resnet9_w24 reaches 78.7%, resnet6_w16 76.6%).
POOL = (
    (ZooMember("resnet9_w24", "resnet", 24, FRAME, 9), 0),
    (ZooMember("resnet6_w24_r24", "resnet", 24, 24, 6), 1),
    (ZooMember("resnet6_w16", "resnet", 16, FRAME, 6), 2),
    (ZooMember("mobilenet_w32", "mobilenet", 32, FRAME, 4), 3),
)
COST_WEIGHTS = (0.0, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.3)   # accuracy given up per largest-member cost
THRESHOLDS = np.round(np.arange(0.02, 0.99, 0.01), 2)


@dataclass(frozen=True)
class PoolConfig:
    n_pool: int = 8000          # the pool's training frames
    n_mux: int = 4000           # the multiplexer's (the pool never saw them)
    n_val: int = 1000
    n_test: int = 4000
    epochs: int = 8
    mux_epochs: int = 10
    contrastive_weight: float = 0.5      # eq. 2's weight beside each member's cross-entropy (0: an ablation)
    seed: int = 70_000                   # the renders' seeds: seed, +1, +2, +3
    members: tuple[str, ...] = tuple(m.name for m, _ in POOL)


def _splits(config: PoolConfig):
    return [datasets.glyphs(n, config.seed + k) for k, n in
            enumerate((config.n_pool, config.n_mux, config.n_val, config.n_test))]


def overlap(right: np.ndarray, largest: int) -> dict:
    """What a router could gain, from (N, B) correctness: per pair, the share of frames both get
    wrong and the Jaccard overlap of their errors; the oracle (some member right) and the share
    of frames the largest gets wrong and another member right."""
    wrong = ~right
    n = len(right)
    jaccard = [[float((wrong[i] & wrong[j]).sum() / max(1, (wrong[i] | wrong[j]).sum())) for j in range(n)]
               for i in range(n)]
    both = [[float((wrong[i] & wrong[j]).mean()) for j in range(n)] for i in range(n)]
    others = right[[i for i in range(n) if i != largest]].any(0)
    return {"error_jaccard": jaccard, "both_wrong": both, "oracle_accuracy": float(right.any(0).mean()),
            "oracle_gain": float((others & wrong[largest]).mean())}


def _route(mask: np.ndarray, probs: np.ndarray, labels: np.ndarray, right: np.ndarray, flops: np.ndarray,
           mux_flops: float) -> dict:
    share = mask.mean(0)
    single = bool((mask.sum(1) == 1).all())
    return {"accuracy": float((routing.combine(probs, mask).argmax(1) == labels).mean()),
            "share": share.tolist(), "flops": routing.cloud_pool_cost(share, flops) + mux_flops,
            # random routing that sends the same shares to each member: its expected accuracy
            "random_accuracy": float(share @ right.mean(1)) if single else None}


def static_ensembles(probs: np.ndarray, labels: np.ndarray, flops: np.ndarray) -> list[dict]:
    """Every subset of the pool averaged on every frame, no router: what the threshold
    ensemble must beat at the same compute."""
    n = len(probs)
    out = []
    for bits in range(1, 1 << n):
        members = [i for i in range(n) if bits >> i & 1]
        out.append({"members": members, "flops": float(flops[members].sum()),
                    "accuracy": float((probs[members].mean(0).argmax(1) == labels).mean())})
    return sorted(out, key=lambda e: e["flops"])


def build_and_measure(workdir: Path, config: PoolConfig = PoolConfig(), progress: bool = True) -> dict:
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    chosen = [(m, seed) for m, seed in POOL if m.name in config.members]
    if len(chosen) < 2:
        raise ValueError(f"a pool needs at least two of {[m.name for m, _ in POOL]}")
    pool_data, mux_data, val, test = _splits(config)
    classes = len(pool_data.classes)
    members = []
    for spec, seed in chosen:
        training.set_seed(seed)                 # each member its own initialisation
        members.append(PoolMember(spec.build(classes)))
    training.set_seed(config.seed)
    heads = nn.ModuleList(nn.Linear(m.model.stages["classifier"].fc.in_features, MuxConfig.projection_dim)
                          for m in members)
    mux_config = MuxConfig(widths=(8, 8), epochs=config.epochs, mux_epochs=config.mux_epochs,
                           contrastive_weight=config.contrastive_weight, objective="correctness", seed=config.seed)
    train_pool(members, heads, pool_data.images, pool_data.labels, mux_config, progress)

    flops = []
    for (spec, _), member in zip(chosen, members):
        path = workdir / f"{spec.name}.onnx"
        export_onnx(LogitsOnly(member), torch.from_numpy(test.images[:1]), path, "image", "logits")
        flops.append(count_flops(path))
    flops = np.array(flops, np.float64)
    p_mux, e_mux = pool_outputs(members, heads, mux_data.images)
    p_val, _ = pool_outputs(members, heads, val.images)
    p_test, _ = pool_outputs(members, heads, test.images)
    right = p_test.argmax(2) == test.labels
    largest = int(np.argmax(flops))
    names = [spec.name for spec, _ in chosen]
    result = {"config": asdict(config), "names": names, "flops": flops.tolist(), "largest": names[largest],
              "accuracy": right.mean(1).tolist(), "n_test": int(len(test.labels)),
              "pool": overlap(right, largest),
              "ensemble_all": {"accuracy": float((p_test.mean(0).argmax(1) == test.labels).mean()),
                               "flops": float(flops.sum())}}

    # the multiplexer: w_i = P(member i is right) (no cost inside w), distilled towards the pool's embeddings
    training.set_seed(config.seed + 1)
    mux = Multiplexer(len(members), np.ones(len(members)), objective="correctness")
    train_multiplexer(mux, mux_data.images, mux_data.labels, p_mux, e_mux, mux_config, progress)
    mux_path = workdir / "multiplexer.onnx"
    export_onnx(WeightsOnly(mux), torch.from_numpy(test.images[:1]), mux_path, "image", "w")
    mux_flops = float(count_flops(mux_path))
    w_val, w_test = mux_weights(mux, val.images), mux_weights(mux, test.images)
    result["multiplexer_flops"] = mux_flops
    result["curve"] = [{"cost_weight": lam, **_route(routing.select_by_utility(w_test, flops, lam), p_test,
                                                     test.labels, right, flops, mux_flops)}
                       for lam in COST_WEIGHTS]
    # the abstract's rule, the cheapest member with w_i > T, T set on validation to the largest's accuracy
    right_val = p_val.argmax(2) == val.labels
    order = np.argsort(flops)                   # select_cheapest takes the pool cheapest first
    target = right_val[largest].mean()
    sweep = [(t, float((routing.combine(p_val[order], routing.select_cheapest(w_val[:, order], t)).argmax(1)
                        == val.labels).mean()),
              routing.cloud_pool_cost(routing.select_cheapest(w_val[:, order], t).mean(0), flops[order]))
             for t in THRESHOLDS]
    meeting = [s for s in sweep if s[1] >= target]
    threshold = (min(meeting, key=lambda s: s[2]) if meeting else max(sweep, key=lambda s: s[1]))[0]
    cheapest = routing.select_cheapest(w_test[:, order], threshold)[:, np.argsort(order)]
    result["cheapest"] = {"threshold": float(threshold), "met_on_validation": bool(meeting),
                          **_route(cheapest, p_test, test.labels, right, flops, mux_flops)}
    # Algorithm 2's threshold ensemble: every member with w_i > T averaged (the argmax when none
    # is); T on validation: the most accurate at no more compute than the largest alone
    ens_val = [(t, _route(routing.select(w_val, t), p_val, val.labels, right_val, flops, mux_flops))
               for t in THRESHOLDS]
    affordable = [e for e in ens_val if e[1]["flops"] <= flops[largest]] or ens_val
    t_ens = max(affordable, key=lambda e: (e[1]["accuracy"], -e[1]["flops"]))[0]
    result["ensemble"] = {"threshold": float(t_ens),
                          **_route(routing.select(w_test, t_ens), p_test, test.labels, right, flops, mux_flops)}
    result["ensemble_curve"] = [{"threshold": float(t), **_route(routing.select(w_test, t), p_test, test.labels,
                                                                 right, flops, mux_flops)}
                                for t in THRESHOLDS[::6]]
    result["static_ensembles"] = static_ensembles(p_test, test.labels, flops)
    return result


def report(r: dict) -> str:
    names, flops, acc = r["names"], r["flops"], r["accuracy"]
    largest = names.index(r["largest"])
    pool = r["pool"]
    lines = [f"{'member':18} {'MFLOPs':>7} {'accuracy':>8}   error overlap (Jaccard) with " + " ".join(
        f"{n[:10]:>10}" for n in names)]
    for i, n in enumerate(names):
        lines.append(f"{n:18} {flops[i] / 1e6:7.2f} {acc[i]:8.2%}   {'':29}"
                     + " ".join(f"{pool['error_jaccard'][i][j]:10.2f}" if i != j else f"{'-':>10}"
                                for j in range(len(names))))
    base = acc[largest]
    lines += ["", f"oracle (some member right) {pool['oracle_accuracy']:.2%}: {pool['oracle_gain']:.2%} of frames "
              f"have {r['largest']} wrong and another member right (the most a router can add)",
              f"ensemble of all {len(names)}: {r['ensemble_all']['accuracy']:.2%} at "
              f"{r['ensemble_all']['flops'] / 1e6:.1f} MFLOPs", "",
              f"{'routing':30} {'accuracy':>8} {'vs largest':>10} {'MFLOPs':>7} {'fewer':>6} {'random, same':>12}"]

    def row(name: str, x: dict) -> str:
        return (f"{name:30} {x['accuracy']:8.2%} {100 * (x['accuracy'] - base):+10.2f} {x['flops'] / 1e6:7.2f} "
                f"{flops[largest] / x['flops']:5.2f}x {x['random_accuracy']:12.2%}")

    lines.append(f"{'largest alone (' + r['largest'] + ')':30} {base:8.2%} {0:+10.2f} {flops[largest] / 1e6:7.2f} "
                 f"{1:5.2f}x")
    for point in r["curve"]:
        lines.append(row(f"w - {point['cost_weight']:g} x cost, argmax", point))
    lines.append(row(f"cheapest w > {r['cheapest']['threshold']:.2f}", r["cheapest"]))
    e = r["ensemble"]
    cheaper = [s for s in r["static_ensembles"] if s["flops"] <= e["flops"]]
    best_static = max(cheaper, key=lambda s: s["accuracy"]) if cheaper else None
    lines.append(f"{'ensemble of w > ' + format(e['threshold'], '.2f'):30} {e['accuracy']:8.2%} "
                 f"{100 * (e['accuracy'] - base):+10.2f} {e['flops'] / 1e6:7.2f} {flops[largest] / e['flops']:5.2f}x"
                 + (f"   best fixed subset at no more compute: {best_static['accuracy']:.2%} "
                    f"({'+'.join(names[i] for i in best_static['members'])}, {best_static['flops'] / 1e6:.2f} MFLOPs)"
                    if best_static else ""))
    lines.append(f"(multiplexer {r['multiplexer_flops'] / 1e6:.2f} MFLOPs, included; {r['n_test']} held-out test frames; "
                 f"the paper's yardstick: +4.55 points at 2.85x fewer FLOPs)")
    return "\n".join(lines)


def plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    curve = r["curve"]
    ax.plot([p["flops"] / 1e6 for p in curve], [100 * p["accuracy"] for p in curve], "o-",
            label="multiplexer, w - cost weight x cost")
    ax.plot([p["flops"] / 1e6 for p in curve], [100 * p["random_accuracy"] for p in curve], "s--",
            label="random routing, same shares")
    for name, f, a in zip(r["names"], r["flops"], r["accuracy"]):
        ax.plot(f / 1e6, 100 * a, "k^")
        ax.annotate(name, (f / 1e6, 100 * a), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ens = r.get("ensemble_curve", [])
    if ens:
        ax.plot([p["flops"] / 1e6 for p in ens], [100 * p["accuracy"] for p in ens], "d:",
                label="multiplexer, ensemble of w > T")
    ax.axhline(100 * r["pool"]["oracle_accuracy"], color="grey", lw=0.8, ls=":", label="oracle (some member right)")
    ax.set_xlabel("MFLOPs per frame (multiplexer included)")
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_title("Complementary pool: accuracy against compute")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
