#!/usr/bin/env python3
"""Device energy of speculation (SIEVE's selector over a Dynamic Duo bundle) vs cloud-only,
under the 3G, 4G and Wi-Fi uplinks of paper 004 Table III.

    python -m adaptinf build multiplexer --out build/mux && python -m adaptinf build duo --bundle build/mux
    python bench/speculative_energy.py --bundle build/mux          # about a minute

Per frame, on the device:
- cloud-only costs E_t, the radio's upload energy: frame bytes over the uplink at P_u of
  Table III;
- speculation costs E_m + E_t × P_r: the little model's time measured here at
  --compute-power-w, plus the recovered share's uploads.
P_r is the probe's recovery rate on the bundle's test split, regenerated from its seed.
The energies are a model (no power sensor here), and the little model is the pool's
width-scaled one, not SIEVE's custom-float network. The thesis reports 91%, 57% and 26%
less energy than cloud-only for 3G, 4G and Wi-Fi.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

from adaptinf.bundle import load_bundle
from adaptinf.calib.measure import time_engine
from adaptinf.engines import open_engine
from adaptinf.engines.base import run_batched
from adaptinf.policies.dynamic_duo import ModelOutputs, Probe, pair_accuracy
from adaptinf.policies.radio_power import RADIOS, uplink_power_w
from adaptinf.toolchain.multiplexer_build import split4


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", required=True, type=Path)
    ap.add_argument("--compute-power-w", type=float, default=5.0)
    args = ap.parse_args(argv)

    bundle = load_bundle(args.bundle)
    duo = bundle.dynamic_duo
    if duo is None:
        sys.exit(f"{args.bundle} has no dynamic_duo section: run `adaptinf build duo --bundle {args.bundle}`")
    data = json.loads((args.bundle / "manifest.json").read_text())["data"]
    _, _, _, test, _ = split4(data["n_pool_train"], data["seed"], data["n_test"])
    little = open_engine(bundle.path(bundle.model(duo.little).file), "onnxruntime")
    big = open_engine(bundle.path(bundle.model(duo.big).file), "onnxruntime")
    little_s = statistics.median(time_engine(little, test.images[:1], 200)) / 1e3
    small = ModelOutputs.from_logits(duo.little, run_batched(little, test.images), test.labels, 0.0)
    large = ModelOutputs.from_logits(duo.big, run_batched(big, test.images), test.labels, 0.0)
    recovered = Probe(np.asarray(duo.thresholds)).recover(small.confidence, small.predicted)
    p_r = float(recovered.mean())
    accuracy = pair_accuracy(small, large, recovered)
    e_m = little_s * args.compute_power_w
    frame_bits = test.images[:1].nbytes * 8

    print(f"{duo.little} speculates ({little_s * 1e3:.3f} ms here at {args.compute_power_w} W: {e_m * 1e3:.3f} mJ), "
          f"{duo.big} recovers; on {len(test.labels)} test frames P_r = {p_r:.1%}, accuracy {accuracy:.2%} "
          f"({duo.big} alone {large.accuracy:.2%})\n")
    print(f"{'link':6} {'uplink':>9} {'E_t (cloud-only)':>17} {'E_m + E_t P_r':>14} {'less energy':>12}")
    for radio in ("3g", "4g", "wifi"):
        bps = RADIOS[radio].nominal_uplink_bps
        e_t = frame_bits / bps * uplink_power_w(radio, bps)
        e_spec = e_m + e_t * p_r
        print(f"{radio:6} {bps / 1e6:6.2f} Mb {e_t * 1e3:14.3f} mJ {e_spec * 1e3:11.3f} mJ {1 - e_spec / e_t:12.1%}")
    print(f"\nreproduce: python bench/speculative_energy.py --bundle {args.bundle}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
