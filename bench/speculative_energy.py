#!/usr/bin/env python3
"""SIEVE (thesis ch.4) measured its way: the device energy of speculation against sending
every frame to the big model in the cloud, under the 3G, 4G and Wi-Fi uplinks of paper 004
Table III, with SIEVE's own custom-float little and its own misspeculation detector.

    python -m adaptinf build multiplexer --out build/mux         # the pool (about 10 minutes)
    python -m adaptinf build little --bundle build/mux            # the small models (about 10 minutes)
    python bench/speculative_energy.py --bundle build/mux --big bundles/glyphnet224 --plot build/sieve-energy.png

Per frame, on the device:
- cloud-only costs E_t, the radio's upload energy: the frame's bytes over the uplink at
  P_u of Table III;
- speculation costs E_m + E_t x P_r.
  - P_r: SIEVE's detector (thesis 4.3.1, policies/sieve.py `distribution_threshold`): one
    threshold from the little's validation confidence histograms of correct, correctable and
    uncorrectable outputs, set to the big model's validation accuracy. P_r and the pair's
    accuracy are then measured on held-out test frames. Dynamic Duo's per-class probe is a
    labelled extra row.
  - E_m (and L_m): from the layer regression that calibration fits (thesis 4.3.2,
    calib/regression.py). The bench runs `adaptinf-calib`'s device component on the bundle:
    the device runs the full model and the pool, the little models are predicted. Energy is
    the sensor's where the profile (--profile, from adaptinf-calib on a device with an INA226)
    measured it, and otherwise time x --compute-power-w, marked "model".
  - E_m, second way, labelled: Horowitz's 45 nm energies (ISSCC 2014), 4.6 pJ per fp32
    multiply-add and 160 pJ per DRAM byte for the weights as stored and each layer's input
    written and read back. The regression cannot see SIEVE's compressed storage (it is fitted
    on float32 graphs); this model counts the memory traffic the formats shrink.

SIEVE's premise is a big model beyond the device. --big BUNDLE makes another bundle's full
model the cloud's big model, on its own (larger) frames: the camera frame is that model's
input, and the device runs each little on it downscaled by area to the little's input (the
glyphs of one seed render the same at every size). bundles/glyphnet224 gives the thesis's
frame size (224x224x3, 150 KB). Mobile-only, the big model on the device, is always shown
beside it, as it would be where the big model does fit.
The thesis reports 91%, 57% and 26% less energy than cloud-only for 3G, 4G and Wi-Fi.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adaptinf.bundle import Bundle, load_bundle
from adaptinf.calib.calibrate import Rig, calibrate
from adaptinf.calib.layer_features import graph_features
from adaptinf.calib.regression import LayerRegression
from adaptinf.daemon.device_models import DeviceModels
from adaptinf.daemon.link_estimator import LinkEstimator
from adaptinf.engines import open_engine
from adaptinf.engines.base import run_batched
from adaptinf.policies.dynamic_duo import ModelOutputs, evaluate_pair, pair_accuracy
from adaptinf.policies.radio_power import RADIOS, uplink_power_w
from adaptinf.policies.sieve import distribution_threshold
from adaptinf.profile import load_profile
from adaptinf.toolchain.frame_pool import FRESH_SEED, area_downscale
from adaptinf.toolchain.glyphs import make_glyphs
from adaptinf.toolchain.little_models import storage
from adaptinf.toolchain.speculative_build import candidates, confidence_histograms, pool_splits

PJ_PER_MAC = 3.7 + 0.9        # fp32 multiply + add, 45 nm (Horowitz, ISSCC 2014)
PJ_PER_DRAM_BYTE = 640 / 4    # a 32-bit DRAM access, 45 nm (same table)
PRIMARY = "cf_exact"          # SIEVE's own little: `adaptinf build little`'s exact custom-float network
FRESH_SEEDS = (FRESH_SEED, FRESH_SEED + 10_000)   # --big: validation and test renders no bundle trained on


@dataclass(frozen=True)
class Frames:
    """Validation and test frames as the camera gives them, and as the little models see them."""
    val: np.ndarray
    test: np.ndarray
    val_small: np.ndarray
    test_small: np.ndarray
    val_labels: np.ndarray
    test_labels: np.ndarray


def frames_for(bundle_dir: Path, big: Bundle | None, n: int) -> Frames:
    _, val, test, _ = pool_splits(bundle_dir)
    if big is None:
        return Frames(val.images, test.images, val.images, test.images, val.labels, test.labels)
    size, small = big.input.shape[1], val.images.shape[1]
    v, t = (make_glyphs(n, seed=s, size=size) for s in FRESH_SEEDS)
    try:
        return Frames(v.images, t.images, area_downscale(v.images, small), area_downscale(t.images, small),
                      v.labels, t.labels)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None


def regression_costs(bundle_dir: Path, profile_path: Path | None, power_w: float,
                     slowdown: float) -> tuple[dict, str, dict]:
    """(the calibrated profile's regressions, its power source, measured device graphs): from
    --profile, or from running calibration's device component here (x slowdown: an emulated
    slower device, engines/emulated_slowdown.py)."""
    if profile_path is None:
        bundle = load_bundle(bundle_dir)
        with tempfile.TemporaryDirectory() as scratch:
            models = DeviceModels.load(bundle, "onnxruntime", scratch, slowdown)
            rig = Rig(bundle, models, None, LinkEstimator(), None, power_w)
            profile = calibrate(rig, Path(scratch) / "profile.json", components=("device",), runs=50)
    else:
        profile = load_profile(profile_path)
    return profile.extra["regression"], profile.device["power_source"], profile.extra["measurements"]["device"]


def modelled_energy_j(model, path: Path) -> float:
    size, activations = (model.size_bytes, model.activation_bytes) if model.size_bytes else storage(path)
    return (model.flops / 2 * PJ_PER_MAC + (size + 2 * activations) * PJ_PER_DRAM_BYTE) * 1e-12


def cloud_only_j(radio: str, frame_bytes: int) -> float:
    bps = RADIOS[radio].nominal_uplink_bps
    return frame_bytes * 8 / bps * uplink_power_w(radio, bps)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", required=True, type=Path, help="a pool bundle with `adaptinf build little`'s models")
    ap.add_argument("--big", type=Path, help="a bundle whose full model is the cloud's big model, on its own frames "
                                              "(default: the pool's full model)")
    ap.add_argument("--profile", type=Path, help="a profile from adaptinf-calib for --bundle (default: calibrate here)")
    ap.add_argument("--compute-power-w", type=float, default=5.0, help="device power where no sensor measured it")
    ap.add_argument("--slowdown", type=float, default=1.0,
                    help="calibrate an emulated device this many times slower than this host (default 1)")
    ap.add_argument("--frames", type=int, default=2000, help="validation and test frames each, with --big")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--plot", type=Path, help="write the accuracy / recovery and Pareto plot here (PNG)")
    args = ap.parse_args(argv)

    bundle = load_bundle(args.bundle)
    big_bundle = load_bundle(args.big) if args.big else None
    if big_bundle is not None and tuple(big_bundle.classes) != tuple(bundle.classes):
        raise SystemExit(f"{args.big} answers classes {big_bundle.classes}, {args.bundle} {bundle.classes}: "
                         "the big model must answer the little models' classes")
    big_model_bundle = big_bundle or bundle
    frames = frames_for(args.bundle, big_bundle, args.frames)
    regressions, power_source, measured = regression_costs(args.bundle, args.profile, args.compute_power_w,
                                                           args.slowdown)
    time_fit, energy_fit = (LayerRegression.from_json(regressions[k]) for k in ("device", "device_energy"))

    def outputs(b: Bundle, model, images, labels):
        engine = open_engine(b.path(model.file), "onnxruntime")
        return ModelOutputs.from_logits(model.name, run_batched(engine, images), labels, 0.0)

    big = big_model_bundle.full_model
    big_val = outputs(big_model_bundle, big, frames.val, frames.val_labels)
    big_test = outputs(big_model_bundle, big, frames.test, frames.test_labels)
    frame_bytes = frames.test[:1].nbytes
    e_t = {r: cloud_only_j(r, frame_bytes) for r in RADIOS}

    def regressed(b: Bundle, model, as_emulated: bool = False) -> tuple[float, float]:
        """(ms, mJ) from the layer regression on the layers the device runs. A custom-float
        little's graph also holds the ONNX ops that emulate its format's rounding of each
        activation (about 400 nodes); SIEVE's hardware does that in its format converters,
        under 5% of the cost by the thesis, and left out as the thesis does: its layers are
        those of the float32 network it was derived from. as_emulated: the graph as it runs
        here, emulation included (calibration's own prediction)."""
        graph = model
        if model.derivation.get("method") == "custom-float" and not as_emulated:
            graph = b.model(f"dense_w{model.derivation['width']}")
        known = regressions.get("predicted", {}).get(graph.name) if b is bundle else None
        if known:
            return known["ms"], known["mj"]
        f = graph_features(b.path(graph.file))
        return time_fit.predict(f), energy_fit.predict(f)

    rows, curves = [], {}
    for model in candidates(bundle):
        if model.name == big.name and big_bundle is None:
            continue
        val = outputs(bundle, model, frames.val_small, frames.val_labels)
        test = outputs(bundle, model, frames.test_small, frames.test_labels)
        ms, mj = regressed(bundle, model)
        common = {"little": model.name, "method": model.derivation.get("method", model.role),
                  "little_accuracy": test.accuracy, "size_bytes": model.size_bytes, "l_m_ms": ms, "e_m_mj": mj,
                  "e_m_45nm_mj": modelled_energy_j(model, bundle.path(model.file)) * 1e3,
                  "e_m_emulated_mj": regressed(bundle, model, as_emulated=True)[1]}
        threshold, p_r_val = distribution_threshold(confidence_histograms(val, big_val), big_val.accuracy)
        recovered = test.confidence < threshold
        rows.append({**common, "detector": "threshold (4.3.1)", "threshold": threshold, "p_r_val": p_r_val,
                     "p_r": float(recovered.mean()), "accuracy": pair_accuracy(test, big_test, recovered)})
        pair = evaluate_pair(val, big_val, big_val.accuracy, len(bundle.classes))
        if pair is not None:
            recovered = pair.probe.recover(test.confidence, test.predicted)
            rows.append({**common, "detector": "per-class probe (ch.6)", "p_r_val": pair.recovery_rate,
                         "p_r": float(recovered.mean()), "accuracy": pair_accuracy(test, big_test, recovered)})
        curves[model.name] = [(float((test.confidence < t).mean()),
                               pair_accuracy(test, big_test, test.confidence < t)) for t in np.linspace(0, 1, 101)]
    for row in rows:
        for key, e_m in (("saving", "e_m_mj"), ("saving_45nm", "e_m_45nm_mj"), ("saving_emulated", "e_m_emulated_mj")):
            row[key] = {r: 1 - (row[e_m] / 1e3 + e_t[r] * row["p_r"]) / e_t[r] for r in RADIOS}
    rows.sort(key=lambda r: (not r["little"].startswith(PRIMARY), r["detector"] != "threshold (4.3.1)",
                             -r["saving"]["wifi"]))
    mobile_ms, mobile_mj = regressed(big_model_bundle, big)
    mobile = {"model": big.name, "l_ms": mobile_ms, "e_mj": mobile_mj,
              "e_45nm_mj": modelled_energy_j(big, big_model_bundle.path(big.file)) * 1e3,
              "saving": {r: 1 - mobile_mj / 1e3 / e_t[r] for r in RADIOS}}

    loo = regressions["device"]["loo_mean_relative_error"], regressions["device_energy"]["loo_mean_relative_error"]
    print(f"big model: {big.name} ({(args.big or args.bundle)}), in the cloud; {len(frames.test_labels)} test frames of "
          f"{frame_bytes} B; alone {big_test.accuracy:.2%} on test, {big_val.accuracy:.2%} on validation (the target)")
    print(f"E_m, L_m: layer regression over {len(measured)} measured device graphs (leave-one-out error "
          f"{loo[0]:.1%} time, {loo[1]:.1%} energy); power: {power_source}"
          + (f" ({args.compute_power_w:g} W x time: no sensor)" if power_source == "model" else "")
          + (f"; device emulated x{args.slowdown:g} slower than this host" if args.slowdown != 1 else ""))
    print("E_t (cloud-only): " + ", ".join(f"{r} {e_t[r] * 1e3:.2f} mJ" for r in RADIOS) + "\n")
    print(f"{'little':17} {'detector':22} {'P_r':>6} {'accuracy':>8} {'of big':>7} {'L_m ms':>7} {'E_m mJ':>7}   "
          "less energy than cloud-only (regression E_m / 45 nm E_m)")
    for row in rows:
        print(f"{row['little']:17} {row['detector']:22} {row['p_r']:6.1%} {row['accuracy']:8.2%} "
              f"{row['accuracy'] / big_test.accuracy:7.1%} {row['l_m_ms']:7.3f} {row['e_m_mj']:7.3f}   "
              + "   ".join(f"{r} {row['saving'][r]:6.1%} / {row['saving_45nm'][r]:6.1%}" for r in RADIOS))
    for row in rows:
        if row["method"] == "custom-float" and row["detector"].startswith("threshold"):
            print(f"{row['little'] + ', format rounding emulated in ONNX ops':57} {row['e_m_emulated_mj']:7.3f}   "
                  + "   ".join(f"{r} {row['saving_emulated'][r]:6.1%}" + " " * 9 for r in RADIOS))
    print(f"{'mobile-only ' + big.name:40} {'':6} {big_test.accuracy:8.2%} {1:7.1%} {mobile_ms:7.3f} {mobile_mj:7.3f}   "
          + "   ".join(f"{r} {mobile['saving'][r]:6.1%} / {1 - mobile['e_45nm_mj'] / 1e3 / e_t[r]:6.1%}"
                       for r in RADIOS) + "   (if the big model fit on the device)")
    print(f"{'thesis (SIEVE, average)':64}" + "   ".join(f"{r} {s:6.0%}" for r, s in
                                                         zip(RADIOS, (0.91, 0.57, 0.26))))
    if args.json:
        args.json.write_text(json.dumps({"big": big.name, "slowdown": args.slowdown, "frame_bytes": frame_bytes, "e_t_mj": {
            r: e * 1e3 for r, e in e_t.items()}, "big_test_accuracy": big_test.accuracy, "power_source": power_source,
            "rows": rows, "mobile_only": mobile}, indent=1))
    if args.plot:
        _plot(rows, curves, big_test.accuracy, mobile, e_t, args.plot)
        print(f"\nplot: {args.plot}")
    print(f"\nreproduce: python bench/speculative_energy.py --bundle {args.bundle}"
          + (f" --big {args.big}" if args.big else "") + (f" --profile {args.profile}" if args.profile else "")
          + (f" --slowdown {args.slowdown:g}" if args.slowdown != 1 else ""))
    return 0


def _plot(rows: list[dict], curves: dict, big_accuracy: float, mobile: dict, e_t: dict, path: Path) -> None:
    """Left: accuracy vs recovery rate per little; then, per uplink, accuracy against device
    energy over each little's swept threshold (regression E_m), with the Pareto front,
    cloud-only and mobile-only."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    fig, axes = plt.subplots(1, 1 + len(RADIOS), figsize=(4.2 * (1 + len(RADIOS)), 4.0))
    colours = {name: f"C{i}" for i, name in enumerate(curves)}
    for name, curve in curves.items():
        rate, acc = np.array(curve).T
        axes[0].plot(rate * 100, acc * 100, label=name, color=colours[name])
    axes[0].axhline(big_accuracy * 100, color="#888888", linestyle="--", linewidth=0.8)
    axes[0].set_xlabel("recovery rate (%)")
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].legend(fontsize=7)
    e_m = {row["little"]: row["e_m_mj"] for row in rows}
    for ax, radio in zip(axes[1:], RADIOS):
        cloud_mj = e_t[radio] * 1e3
        points = [(cloud_mj, big_accuracy * 100), (mobile["e_mj"], big_accuracy * 100)]
        for name, curve in curves.items():
            energy = [e_m[name] + cloud_mj * rate for rate, _ in curve]
            ax.plot(energy, [a * 100 for _, a in curve], linewidth=0.8, alpha=0.7, color=colours[name])
            points += list(zip(energy, [a * 100 for _, a in curve]))
        front, best = [], -1.0
        for e, a in sorted(points):                      # Pareto: no cheaper point is as accurate
            if a > best:
                front.append((e, a))
                best = a
        ax.step(*zip(*front), where="post", color="black", linewidth=1.5, label="Pareto front")
        ax.scatter([cloud_mj], [big_accuracy * 100], marker="s", color="#C44E52", label="cloud-only", zorder=3)
        ax.scatter([mobile["e_mj"]], [big_accuracy * 100], marker="^", color="#55A868",
                   label="mobile-only (if it fit)", zorder=3)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"device energy per frame, mJ ({radio})")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
