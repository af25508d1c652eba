#!/usr/bin/env python3
"""Dynamic Duo at matched response time (thesis section 6.5.3), through adaptinfd.

For the big model alone, the duo with one threshold and the duo with per-class thresholds:
open-loop arrivals at rising rates (rig/rate_sweep.py), and the highest rate whose mean
response time stays at or under 1.2x the big model's mean at low load. The thesis
reports 2.1x (its mean over 21 ImageNet pairs, range 1.0-4.7x) at 100% of the big model's
accuracy.

- The pair is the bundle's `dynamic_duo` section (little, big = the full model).
- The thresholds are set here on a validation split larger than the build's: its
  validation frames and `--extra-validation` fresh glyphs (another seed). Accuracy is on
  the build's held-out test split. The validation target (`--target`):
  - big: the big model's validation accuracy (the thesis's target);
  - max: the highest validation accuracy each kind of probe reaches, in steps of
    `MARGIN_STEP` above the big model's. A pair that only matches the big model on
    validation falls short on test about half the time; the margin is what a pair can
    spare, chosen without looking at test.
- adaptinfd runs without a cloud, so a recovery runs the big model on the device: this
  is the serving system of chapter 6, one accelerator. `--slowdown` (the daemon's
  [device].emulate_slowdown) makes the models' time dominate the daemon's own
  per-frame overhead, as on a device slower than this host; the ratio of the models'
  times is unchanged.

    adaptinf build zoo --out build/zoo && cp -r build/zoo build/zoo-duo
    adaptinf build duo --bundle build/zoo-duo      # or a pool: adaptinf build multiplexer
    python bench/duo_load.py --bundle build/zoo-duo [--slowdown 20] [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from adaptinf.bundle import load_bundle
from adaptinf.client import Client
from adaptinf.policies.dynamic_duo import ModelOutputs, evaluate_pair, pair_accuracy
from adaptinf.rig.processes import spawn_daemon, write_daemon_config
from adaptinf.rig.rate_sweep import at_rate, highest_rate
from adaptinf.toolchain.datasets import glyphs
from adaptinf.toolchain.speculative_build import model_outputs, pool_splits, rewrite_manifest

BOUND = 1.2                 # mean response time at most 1.2x the big model's at low load (6.5.3)
SERIAL_FRAMES = 30          # one at a time: the big model's service time, which sets the rates
LOW_LOAD = 0.05             # of the big model's capacity: its mean response time "at low load"
LOW_LOAD_FRAMES = 60
FRESH_SEED_OFFSET = 7919    # fresh validation glyphs: a seed no build used
# offered rates, in the big model's capacity (1 / its service time); bisected further
MARGIN_STEP = 0.0005        # --target max: validation accuracy above the big model's, searched in these steps
RATE_STEPS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.15, 1.3, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 5.0)


def splits(bundle_dir: Path, extra: int):
    """(validation: the build's validation split + `extra` fresh frames, test, classes)."""
    _, val, test, classes = pool_splits(bundle_dir)
    seed = int(json.loads((bundle_dir / "manifest.json").read_text())["data"]["seed"])
    fresh = glyphs(extra, seed + FRESH_SEED_OFFSET)
    return (np.concatenate([val.images, fresh.images]), np.concatenate([val.labels, fresh.labels])), test, classes


def most_accurate_pair(little, big, num_classes: int, per_class: bool):
    """The probe with the highest validation target it still reaches, in MARGIN_STEPs above
    the big model's accuracy (the fewest recoveries at that target); None if it cannot
    reach even the big model's."""
    best, margin = None, 0.0
    while (pair := evaluate_pair(little, big, big.accuracy + margin, num_classes, per_class=per_class)) is not None:
        best, margin = pair, margin + MARGIN_STEP
    return best


def tune(bundle_dir: Path, extra: int, target: str = "big") -> dict:
    """Both probes for the section's pair, on the large validation split; their test figures."""
    bundle = load_bundle(bundle_dir)
    section = bundle.dynamic_duo
    (val_x, val_y), test, classes = splits(bundle_dir, extra)
    little, big = (model_outputs(bundle, n, val_x, val_y) for n in (section.little, section.big))
    little_t, big_t = (model_outputs(bundle, n, test.images, test.labels) for n in (section.little, section.big))
    out = {"little": section.little, "big": section.big, "validation_frames": len(val_y),
           "test_frames": len(test.labels), "big_test_accuracy": big_t.accuracy,
           "little_test_accuracy": little_t.accuracy, "big_validation_accuracy": big.accuracy}
    for label, per_class in (("single", False), ("per-class", True)):
        pair = (evaluate_pair(little, big, big.accuracy, len(classes), per_class=per_class) if target == "big"
                else most_accurate_pair(little, big, len(classes), per_class))
        if pair is None:
            raise SystemExit(f"{bundle_dir}: {section.little} + {section.big} cannot reach the big model's "
                             f"validation accuracy {big.accuracy:.2%} with {label} thresholds")
        recovered = pair.probe.recover(little_t.confidence, little_t.predicted)
        out[label] = {"thresholds": pair.probe.thresholds.tolist(), "validation_recovery": pair.recovery_rate,
                      "validation_accuracy": pair.accuracy,
                      "test_recovery": float(recovered.mean()),
                      "test_accuracy": pair_accuracy(little_t, big_t, recovered)}
    out["test_images"] = test.images
    return out


def bundle_with(bundle_dir: Path, thresholds: list[float], recovery_rate: float, out: Path) -> Path:
    """A copy of the bundle whose duo uses these thresholds."""
    shutil.copytree(bundle_dir, out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["dynamic_duo"].update(thresholds=thresholds, recovery_rate=recovery_rate)
    rewrite_manifest(out, manifest)
    return out


def sweep(bundle: Path, images: np.ndarray, work: Path, slowdown: float, seconds: float, refine: int,
          name: str) -> dict:
    """One daemon on `bundle`, so that the big model alone and the duo run on the same
    (emulated) engines: the big model's mean at low load sets the bound and the rates;
    then the highest rate within the bound for each."""
    config = write_daemon_config(work / f"{name}.toml",
                                 daemon={"api_endpoint": f"ipc://{work}/{name}.sock", "bundle": str(bundle),
                                         "state_dir": str(work), "warmup_runs": 5, "queue_size": 1024,
                                         "max_in_flight_per_client": 1024},
                                 device={"emulate_slowdown": slowdown})
    daemon = spawn_daemon(config)
    out = {}
    try:
        for policy in ("mobile-only", "dynamic-duo"):
            def measure(rate, policy=policy):
                return at_rate(daemon.endpoint, images, rate, seconds, lambda i: {"policy": policy})

            def show(p, policy=policy):
                print(f"  {name:9} {policy:12} {p.rate:7.1f}/s: mean {p.mean_s * 1e3:6.1f} ms, p99 "
                      f"{p.p99_s * 1e3:6.1f} ms, {p.failed} failed", flush=True)

            if policy == "mobile-only":
                service_s = _serial_mean_s(daemon.endpoint, images[:SERIAL_FRAMES], policy)
                low_rate = LOW_LOAD / service_s       # low load, measured as the sweep measures
                low = at_rate(daemon.endpoint, images, low_rate, max(seconds, LOW_LOAD_FRAMES / low_rate),
                              lambda i: {"policy": "mobile-only"})
                show(low)
                bound_s = BOUND * low.mean_s
                out.update(service_s=service_s, low_load_mean_s=low.mean_s, bound_s=bound_s)
            best, points = highest_rate([k / service_s for k in RATE_STEPS], bound_s, measure, show, refine)
            out[policy] = {"rate": best, "points": [vars(p) for p in points]}
    finally:
        daemon.stop()
    return out


def _serial_mean_s(endpoint: str, frames: np.ndarray, policy: str) -> float:
    """Mean response time one frame at a time, as the client sees it (as the sweep does)."""
    took = []
    with Client(endpoint, timeout_s=30) as client:
        for i in range(len(frames)):
            start = time.monotonic()
            client.infer(frames[i:i + 1], policy=policy)
            took.append(time.monotonic() - start)
    return float(np.mean(took[2:]))          # the first ones warm the caches


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True, help="a pool bundle configured by `adaptinf build duo`")
    parser.add_argument("--slowdown", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=5.0, help="offered load per rate")
    parser.add_argument("--refine", type=int, default=3, help="bisections between the last rate within the "
                        "bound and the first beyond")
    parser.add_argument("--extra-validation", type=int, default=8000, help="fresh frames added to validation")
    parser.add_argument("--target", choices=("big", "max"), default="big",
                        help="validation accuracy the thresholds reach: the big model's, or the most the probe "
                             "reaches above it (see the module docstring)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if load_bundle(args.bundle).dynamic_duo is None:
        sys.exit(f"{args.bundle} has no dynamic_duo section: run `adaptinf build duo --bundle {args.bundle}`")
    tuned = tune(args.bundle, args.extra_validation, args.target)
    images = tuned.pop("test_images")
    print(f"{tuned['little']} + {tuned['big']}: thresholds set on {tuned['validation_frames']} validation frames "
          f"(big: {tuned['big_validation_accuracy']:.2%}); test ({tuned['test_frames']} frames): big "
          f"{tuned['big_test_accuracy']:.2%}, little {tuned['little_test_accuracy']:.2%}")
    for label in ("single", "per-class"):
        t = tuned[label]
        print(f"  {label:9} thresholds: validation accuracy {t['validation_accuracy']:.2%}, "
              f"recovery {t['validation_recovery']:.1%} (validation), "
              f"{t['test_recovery']:.1%} (test); test accuracy {t['test_accuracy']:.2%} "
              f"({t['test_accuracy'] / tuned['big_test_accuracy']:.1%} of the big model's)")
    results = {"tuning": tuned, "target": args.target, "slowdown": args.slowdown, "seconds": args.seconds}
    with tempfile.TemporaryDirectory(prefix="adaptinf-duo-", dir="/tmp") as tmp:
        work = Path(tmp)
        for label in ("single", "per-class"):
            t = tuned[label]
            variant = bundle_with(args.bundle, t["thresholds"], t["validation_recovery"], work / f"bundle-{label}")
            results[label] = sweep(variant, images, work, args.slowdown, args.seconds, args.refine, label)
    print(f"\nhighest Poisson arrival rate with mean response <= {BOUND}x the big model's at low load, "
          f"big alone and the duo in the same daemon:")
    for label in ("single", "per-class"):
        r, t = results[label], tuned[label]
        big, duo = r["mobile-only"]["rate"], r["dynamic-duo"]["rate"]
        ratio = f"{duo / big:.2f}x" if big and duo else "-"
        print(f"  {label:9} thresholds: bound {r['bound_s'] * 1e3:.1f} ms; big alone {big or 0:6.1f}/s, duo "
              f"{duo or 0:6.1f}/s: {ratio} at {t['test_accuracy']:.2%} test accuracy "
              f"({t['test_accuracy'] / tuned['big_test_accuracy']:.1%} of the big model's "
              f"{tuned['big_test_accuracy']:.2%}); recovery {t['test_recovery']:.1%} on test")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(f"reproduce: python bench/duo_load.py --bundle {args.bundle} --slowdown {args.slowdown:g} "
          f"--seconds {args.seconds:g}" + (f" --target {args.target}" if args.target != "big" else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
