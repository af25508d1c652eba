"""The neural multiplexer (papers 000/001, Algorithm 1 step 2) over a zoo bundle, measured
as paper 000's Table II: per model FLOPs, latency, accuracy and the share of frames it
gets, against the zoo's largest model alone (the paper's reference: its most accurate,
which the largest is in a well-trained zoo) and two routings at the same cost.

The zoo's models are trained already (`adaptinf build zoo`) and stay frozen; the
multiplexer learns from their outputs on frames none of them saw (a separate glyph seed),
with eq. 7's ensemble objective or per-model correctness, and no distillation term (the
zoo has no shared embedding space, which step 1's joint training would give). Figures are
on the zoo's held-out test split:
- multiplexed: each frame goes to the cheapest model with w_i > T (T chosen on validation
  frames as the fewest FLOPs whose accuracy is at least the largest model's), and the
  argmax of w;
- random routing that sends the same share of frames to each model (the same cost);
- the cheapest model's own confidence: below a threshold, the largest model answers
  instead, the threshold set so the cost matches;
- the oracle bound: the share of frames on which some cheaper model is right while the
  largest is wrong (what a perfect multiplexer could gain).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from adaptinf.bundle import load_bundle
from adaptinf.policies import multiplexer as policy
from adaptinf.toolchain import datasets
from adaptinf.toolchain.multiplexer import MuxConfig, Multiplexer, WeightsOnly, mux_weights, train_multiplexer
from adaptinf.toolchain.onnx_export import export_onnx
from adaptinf.toolchain.onnx_flops import count_flops

GRID = np.round(np.arange(0.02, 0.99, 0.01), 2)


@dataclass(frozen=True)
class ZooMuxConfig:
    n_mux: int = 4000
    n_val: int = 1000
    mux_epochs: int = 10
    objective: str = "correctness"
    seed: int = 1            # the mux's frames: a glyph seed the zoo never trained on
    # eq. 5 divides each model's score by its cost c_i = (FLOPs / the cheapest's) ** cost_power:
    # 1 is the papers'; with a zoo whose FLOPs span 1700x the largest models' scores all but
    # vanish, so 0 (no cost term) and fractions are measured beside it
    cost_power: float = 1.0


def zoo_outputs(bundle, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Class probabilities (N, B, C) of the bundle's zoo models, cheapest first, via onnxruntime."""
    import onnxruntime as ort

    from adaptinf.policies.confidence import probabilities

    out = []
    for name in bundle.zoo.models:
        session = ort.InferenceSession(str(bundle.path(bundle.model(name).file)), providers=["CPUExecutionProvider"])
        logits = np.concatenate([session.run(None, {bundle.input.name: images[i:i + batch_size]})[0]
                                 for i in range(0, len(images), batch_size)])
        out.append(probabilities(logits))
    return np.stack(out)


def _route(mask: np.ndarray, probs: np.ndarray, labels: np.ndarray, flops: np.ndarray, extra: float = 0.0) -> dict:
    combined = policy.combine(probs, mask)
    share = mask.mean(0)
    return {"accuracy": float((combined.argmax(1) == labels).mean()), "share": share.tolist(),
            "flops": policy.cloud_pool_cost(share, flops) + extra}


def evaluate(zoo_dir: Path, config: ZooMuxConfig = ZooMuxConfig(), progress: bool = True, workdir: Path | None = None
             ) -> dict:
    bundle = load_bundle(zoo_dir)
    names = sorted(bundle.zoo.models, key=lambda n: bundle.model(n).flops)     # cheapest first (Algorithm 2)
    flops = np.array([bundle.model(n).flops for n in names], np.float64)
    figures = bundle.zoo.figures
    fresh = datasets.glyphs(config.n_mux + config.n_val, config.seed + 1000 * bundle.data.get("seed", 0))
    mux_x, mux_y = fresh.images[:config.n_mux], fresh.labels[:config.n_mux]
    val_x, val_y = fresh.images[config.n_mux:], fresh.labels[config.n_mux:]
    test = datasets.glyph_bundle_test_split(bundle)
    p_mux, p_val, p_test = (zoo_outputs(bundle, x) for x in (mux_x, val_x, test.images))

    torch.manual_seed(config.seed)
    mux_cfg = MuxConfig(widths=(8, 8), distill_weight=0.0, mux_epochs=config.mux_epochs, objective=config.objective,
                        seed=config.seed)
    mux = Multiplexer(len(names), (flops / flops.min()) ** config.cost_power, objective=config.objective)
    embeds = np.zeros((len(names), len(mux_y), mux_cfg.projection_dim), np.float32)
    train_multiplexer(mux, mux_x, mux_y, p_mux, embeds, mux_cfg, progress)
    workdir = Path(workdir or zoo_dir)
    path = workdir / "zoo_multiplexer.onnx"
    export_onnx(WeightsOnly(mux), torch.from_numpy(mux_x[:1]), path, bundle.input.name, "w")
    mux_flops = float(count_flops(path))
    w_val, w_test = mux_weights(mux, val_x), mux_weights(mux, test.images)

    right = p_test.argmax(2) == test.labels                     # (N, B)
    best = int(np.argmax(flops))                                # the reference: the largest alone
    # the cheapest model with w_i > T: T the fewest FLOPs at or above the largest's validation accuracy
    best_val = (p_val[best].argmax(1) == val_y).mean()
    sweep = [(t, _route(policy.select_cheapest(w_val, t), p_val, val_y, flops, mux_flops)) for t in GRID]
    meeting = [s for s in sweep if s[1]["accuracy"] >= best_val]
    threshold = (min(meeting, key=lambda s: s[1]["flops"]) if meeting else max(sweep, key=lambda s: s[1]["accuracy"]))[0]
    cheapest = _route(policy.select_cheapest(w_test, threshold), p_test, test.labels, flops, mux_flops)
    argmax = _route(policy.select(w_test), p_test, test.labels, flops, mux_flops)

    rng = np.random.default_rng(config.seed)
    share = np.asarray(cheapest["share"])
    random_mask = np.zeros_like(right.T)
    random_mask[np.arange(len(test.labels)), rng.choice(len(names), len(test.labels), p=share / share.sum())] = True
    random = _route(random_mask, p_test, test.labels, flops)
    # the cheapest model's own confidence: below t the most accurate answers (both run then)
    confidence = p_test[0].max(1)
    target = cheapest["flops"]
    cascade = None
    for t in np.quantile(confidence, np.linspace(0, 1, 201)):
        mask = np.zeros_like(right.T)
        mask[:, 0] = True
        low = confidence < t
        cost = flops[0] + low.mean() * flops[best]
        if cascade is None or abs(cost - target) < abs(cascade["flops"] - target):
            acc = float(np.where(low, right[best], right[0]).mean())
            cascade = {"accuracy": acc, "flops": cost, "threshold": float(t), "share_recomputed": float(low.mean())}
    cheaper_right = right[[i for i in range(len(names)) if flops[i] < flops[best]]].any(0)
    return {"names": names, "onnx": str(path),
            "models": [{"name": n, "flops": int(f), "accuracy": float(a), "host_ms": figures.get(n, {}).get("host_ms")}
                       for n, f, a in zip(names, flops, right.mean(1))],
            "best": names[best], "multiplexer_flops": mux_flops, "objective": config.objective,
            "cost_power": config.cost_power,
            "threshold": float(threshold), "met_on_validation": bool(meeting),
            "cheapest": cheapest, "argmax": argmax, "random": random, "cascade": cascade,
            "oracle_gain": float((cheaper_right & ~right[best]).mean()),
            "oracle_accuracy": float(right.any(0).mean()), "n_test": int(len(test.labels))}


def report(r: dict) -> str:
    best = next(m for m in r["models"] if m["name"] == r["best"])
    lines = [f"{'model':18} {'MFLOPs':>8} {'host ms':>8} {'accuracy':>8} {'share (mux)':>11}"]
    for m, share in zip(r["models"], r["cheapest"]["share"]):
        ms = f"{m['host_ms']:8.3f}" if m["host_ms"] is not None else f"{'-':>8}"
        lines.append(f"{m['name']:18} {m['flops'] / 1e6:8.3f} {ms} {m['accuracy']:8.2%} {share:11.1%}")
    lines.append(f"\n{'routing':34} {'accuracy':>8} {'vs best':>8} {'MFLOPs':>8} {'fewer FLOPs':>11}")
    rows = [(f"largest alone ({r['best']})", {"accuracy": best["accuracy"], "flops": best["flops"]}),
            (f"multiplexer: cheapest w>{r['threshold']:.2f}", r["cheapest"]),
            ("multiplexer: argmax w", r["argmax"]),
            ("random routing, same shares", r["random"]),
            ("cheapest's confidence, same cost", r["cascade"])]
    for name, row in rows:
        lines.append(f"{name:34} {row['accuracy']:8.2%} {row['accuracy'] - best['accuracy']:+8.2%} "
                     f"{row['flops'] / 1e6:8.3f} {best['flops'] / row['flops']:10.2f}x")
    lines.append(f"(multiplexer {r['multiplexer_flops'] / 1e6:.3f} MFLOPs, included; objective {r['objective']}, "
                 f"cost power {r['cost_power']:g}; "
                 f"oracle bound: on {r['oracle_gain']:.1%} of frames a cheaper model is right where "
                 f"{r['best']} is wrong; any model right: {r['oracle_accuracy']:.1%}; {r['n_test']} test frames)")
    return "\n".join(lines)


def attach(zoo_dir: Path, result: dict) -> None:
    """Put the evaluated multiplexer into the zoo bundle: its ONNX (already written there), a
    model entry and the zoo section's `multiplexer`, with the pool in the multiplexer's
    order (cheapest first) and T, so `policy = "multiplexer"` serves it."""
    import json
    import shutil

    from adaptinf.bundle import write_manifest

    zoo_dir = Path(zoo_dir)
    target = zoo_dir / "zoo_multiplexer.onnx"
    if Path(result["onnx"]).resolve() != target.resolve():
        shutil.copyfile(result["onnx"], target)
    manifest = json.loads((zoo_dir / "manifest.json").read_text())
    manifest.pop("files", None)
    manifest["models"] = [m for m in manifest["models"] if m["name"] != "zoo_multiplexer"] + [
        {"name": "zoo_multiplexer", "file": target.name, "role": "multiplexer", "accuracy": None,
         "flops": int(result["multiplexer_flops"])}]
    manifest["zoo"]["models"] = list(result["names"])
    manifest["zoo"]["multiplexer"] = {"model": "zoo_multiplexer", "threshold": result["threshold"],
                                      "objective": result["objective"], "cost_power": result["cost_power"]}
    write_manifest(zoo_dir, manifest)
    load_bundle(zoo_dir)        # it must read back
