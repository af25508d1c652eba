#!/usr/bin/env python3
"""Paper 001 Table I's shape for a multiplexer bundle: mobile-only, cloud-only and hybrid.

    python -m adaptinf build multiplexer --out build/mux      # about 10 minutes on 2 cores
    python bench/multiplexer_table.py --bundle build/mux       # about a minute

The pair's three models (the multiplexer, the device's small model, the cloud's large one)
are timed here, side by side in one run, with onnxruntime at batch 1; accuracy and the
local share come from running them over the bundle's own test split (regenerated from
the seed in its manifest). Costs follow eq. 9-13 (policies/multiplexer.py SideCost):
C_upload = frame bytes over the uplink, C_download = the scores over the downlink plus
the round trip, C_cloud = the large model's time here divided by --cloud-speedup.
FLOPs per frame count both sides, as the paper's table does (hybrid: the multiplexer, the
local share of the small model and the offloaded share of the large one).
Device energy = compute time x --compute-power-w plus the radio's upload energy
(policies/radio_power.py, Wi-Fi): a model, not a sensor reading.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

from adaptinf.bundle import load_bundle
from adaptinf.daemon.measurement import time_engine
from adaptinf.programs.cli import parse_rate
from adaptinf.engines import open_engine
from adaptinf.engines.base import run_batched
from adaptinf.policies.multiplexer import DEVICE_CLOUD_THRESHOLD, SideCost, to_cloud
from adaptinf.policies.radio_power import uplink_power_w
from adaptinf.toolchain.multiplexer_build import split4


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", required=True, type=Path)
    ap.add_argument("--uplink", default="5.85Mbit", type=parse_rate)
    ap.add_argument("--downlink", default="18.88Mbit", type=parse_rate)
    ap.add_argument("--rtt-ms", default=20.0, type=float)
    ap.add_argument("--cloud-speedup", default=1.0, type=float, help="cloud compute = time here / this")
    ap.add_argument("--compute-power-w", default=5.0, type=float)
    ap.add_argument("--runs", default=200, type=int)
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args(argv)

    bundle = load_bundle(args.bundle)
    if bundle.multiplexer is None:
        sys.exit(f"{args.bundle} has no multiplexer section: build one with `adaptinf build multiplexer`")
    pair = bundle.multiplexer.pair
    data = json.loads((args.bundle / "manifest.json").read_text())["data"]
    _, _, _, test, _ = split4(data["n_pool_train"], data["seed"], data["n_test"])
    engines = {role: open_engine(bundle.path(bundle.model(name).file), "onnxruntime")
               for role, name in (("mux", pair.model), ("device", pair.device), ("cloud", pair.cloud))}
    frame = test.images[:1]
    ms = {role: statistics.median(time_engine(e, frame, args.runs)) for role, e in engines.items()}
    w = run_batched(engines["mux"], test.images)
    right = {role: run_batched(engines[role], test.images).argmax(1) == test.labels for role in ("device", "cloud")}

    upload_s = frame.nbytes * 8 / args.uplink
    download_s = len(bundle.classes) * 4 * 8 / args.downlink + args.rtt_ms / 1e3
    latency = SideCost(mux=ms["mux"] / 1e3, mobile=ms["device"] / 1e3, upload=upload_s,
                       cloud=ms["cloud"] / 1e3 / args.cloud_speedup, download=download_s)
    p = args.compute_power_w
    energy = SideCost(mux=latency.mux * p, mobile=latency.mobile * p,
                      upload=upload_s * uplink_power_w("wifi", args.uplink))
    flops = {role: bundle.model(name).flops for role, name in
             (("mux", pair.model), ("device", pair.device), ("cloud", pair.cloud))}

    rows = [("Mobile-only", flops["device"], latency.mobile_only(), energy.mobile_only(), 1.0,
             right["device"].mean()),
            ("Cloud-only", flops["cloud"], latency.cloud_only(), energy.cloud_only(), 0.0, right["cloud"].mean())]
    for name, threshold in ((f"Hybrid, T={DEVICE_CLOUD_THRESHOLD} (paper)", DEVICE_CLOUD_THRESHOLD),
                            (f"Hybrid, T={pair.threshold:.4f} (bundle)", pair.threshold)):
        cloud = to_cloud(w, threshold)
        local = float(1 - cloud.mean())
        both_sides = flops["mux"] + local * flops["device"] + (1 - local) * flops["cloud"]
        rows.append((name, both_sides, latency.hybrid(local), energy.hybrid(local), local,
                     np.where(cloud, right["cloud"], right["device"]).mean()))

    print(f"{bundle.name}: device {pair.device}, cloud {pair.cloud}, {len(test.labels)} test frames; "
          f"timed here (onnxruntime, batch 1, median of {args.runs}): mux {ms['mux']:.3f} ms, "
          f"device model {ms['device']:.3f} ms, cloud model {ms['cloud']:.3f} ms")
    print(f"network: uplink {args.uplink / 1e6:.2f} Mbit/s, downlink {args.downlink / 1e6:.2f} Mbit/s, "
          f"RTT {args.rtt_ms:.0f} ms; cloud speedup {args.cloud_speedup}x; compute {p} W\n")
    print(f"{'Setup':34} {'MFLOPs':>13} {'Latency':>10} {'Mobile energy':>14} {'Local':>7} {'Acc.':>8}")
    for name, f, lat, e, local, acc in rows:
        print(f"{name:34} {f / 1e6:13.2f} {lat * 1e3:8.2f}ms {e * 1e3:12.2f}mJ {local:7.1%} {acc:8.2%}")
    if args.json:
        args.json.write_text(json.dumps([dict(zip(("setup", "flops", "latency_s", "energy_j", "local",
                                                   "accuracy"), map(lambda v: v if isinstance(v, str) else float(v),
                                                                    r))) for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
