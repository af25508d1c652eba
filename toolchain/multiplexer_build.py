"""`adaptinf build multiplexer`: data, Algorithm 1, evaluation, the bundle and its report.

Four disjoint glyph splits from one seed: the pool's training frames, the multiplexer's
(half as many; frames the pool never saw), validation (the threshold sweep) and test
(every figure printed).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from adaptinf.toolchain import datasets
from adaptinf.toolchain.multiplexer import MuxConfig, build_pair_multiplexer, build_pool, evaluate, write_bundle

N_VAL = 2000     # validation and test frames, each


def split4(n_train: int, seed: int, n_eval: int = N_VAL):
    """(pool_train, mux_train, val, test, classes); val and test have n_eval frames each."""
    n_mux = n_train // 2
    data = datasets.glyphs(n_train + n_mux + 2 * n_eval, seed)
    cuts = np.cumsum([n_train, n_mux, n_eval])
    pick = lambda a, b: datasets.ImageData(data.images[a:b], data.labels[a:b], data.classes)  # noqa: E731
    return pick(0, cuts[0]), pick(cuts[0], cuts[1]), pick(cuts[1], cuts[2]), pick(cuts[2], None), data.classes


def build(out: Path, config: MuxConfig, n_train: int, n_eval: int = N_VAL, progress: bool = True) -> dict:
    pool_train, mux_train, val, test, classes = split4(n_train, config.seed, n_eval)
    out = Path(out)
    result = build_pool(pool_train, mux_train, len(classes), config, out, progress)
    pair = build_pair_multiplexer(result, mux_train, out, progress)
    results = evaluate(result, pair, val, test)
    write_bundle(result, results, out, classes, "glyph-multiplexer",
                 {"dataset": "glyphs", "seed": config.seed, "n_pool_train": n_train,
                  "n_mux_train": len(mux_train.labels), "n_val": n_eval, "n_test": n_eval})
    _plot(results, out / "multiplexer.png")
    return results


def report(r: dict) -> str:
    lines = ["model            accuracy   MFLOPs   called: argmax  cheapest"]
    for m, a, c in zip(r["models"], r["argmax"]["called"], r["cheapest"]["called"]):
        lines.append(f"pool_w{m['width']:<10} {m['accuracy']:8.2%} {m['flops'] / 1e6:8.2f}   {a:14.1%} {c:9.1%}")
    best = max(r["models"], key=lambda m: m["accuracy"])
    largest = max(r["models"], key=lambda m: m["flops"])
    rows = (("argmax", "argmax"), (f"ensemble w>{r['threshold']['value']:.2f}", "threshold"),
            (f"cheapest w>{r['cheapest']['value']:.2f}", "cheapest"))
    lines.append(f"multiplexed ({r['objective']} objective):")
    for name, key in rows:
        row = r[key]
        lines.append(f"  {name:14} {row['accuracy']:8.2%} {row['flops'] / 1e6:8.2f}   "
                     f"{row['accuracy'] - best['accuracy']:+.2%} vs the best single model, "
                     f"{largest['flops'] / row['flops']:.2f}x fewer FLOPs than the largest")
    lines.append(f"(multiplexer itself: {r['multiplexer_flops'] / 1e6:.2f} MFLOPs, included; "
                 f"oracle: {r['oracle_accuracy']:.2%}; cheapest: T " +
                 (f"with the fewest FLOPs within {r['cheapest']['accuracy_loss']:.0%} of the largest on validation)"
                  if r["cheapest"]["met_bound"] else
                  f"best on validation: none came within {r['cheapest']['accuracy_loss']:.0%} of the largest)"))
    if "pair" in r:
        p = r["pair"]
        lines.append(f"device/cloud pair (mobile-only {p['mobile_only']:.2%}, cloud-only {p['cloud_only']:.2%}; "
                     f"w_cloud spans {p['w_cloud_quantiles'][0]:.3f}..{p['w_cloud_quantiles'][-1]:.3f}):")
        for name, row in (("paper's 0.5", p["paper"]), (f"calibrated (<= {p['accuracy_loss']:.0%} loss on val)",
                                                        p["calibrated"])):
            lines.append(f"  {name:34} T={row['threshold']:.4f}: {row['local_share']:6.1%} on the device, "
                         f"accuracy {row['accuracy']:.2%} (same share routed at random {row['random_routing']:.2%}, "
                         f"by the device model's confidence {row['confidence_routing']:.2%}); "
                         f"{row['kept_local_when_device_right']:.1%} of device-right frames stay local")
    return "\n".join(lines)


def build_and_report(out: Path, widths: str, epochs: int, mux_epochs: int, n_train: int, seed: int,
                     objective: str = "ensemble") -> int:
    config = MuxConfig(widths=tuple(int(w) for w in widths.split(",")), epochs=epochs, mux_epochs=mux_epochs,
                       seed=seed, objective=objective)
    results = build(out, config, n_train)
    print(report(results))
    print(f"-> {out} (manifest.json, {len(config.widths)} pool models, multiplexer.onnx, multiplexer.png)")
    return 0


def _plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for m in r["models"]:
        left.scatter(m["flops"] / 1e6, m["accuracy"] * 100, color="#4C72B0")
        left.annotate(f"w{m['width']}", (m["flops"] / 1e6, m["accuracy"] * 100), fontsize=8)
    for key, colour, label in (("argmax", "#C44E52", "argmax"), ("threshold", "#55A868", "ensemble w > T"),
                               ("cheapest", "#8172B2", "cheapest w > T")):
        left.scatter(r[key]["flops"] / 1e6, r[key]["accuracy"] * 100, color=colour, marker="D", label=label)
    left.set_xlabel("MFLOPs per frame (eq. 14, multiplexer included)")
    left.set_ylabel("test accuracy (%)")
    left.legend(fontsize=8)
    sweep = np.array(r["threshold"]["sweep"])
    right.plot(sweep[:, 0], sweep[:, 1] * 100, color="#55A868")
    right.axvline(r["threshold"]["value"], color="#888888", linestyle="--")
    right.set_xlabel("threshold T (Algorithm 2)")
    right.set_ylabel("validation accuracy (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def load_results(bundle_dir: Path) -> dict:
    return json.loads((Path(bundle_dir) / "manifest.json").read_text())["multiplexer"]["results"]
