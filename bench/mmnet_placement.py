#!/usr/bin/env python3
"""M&MNet against the Master alone (thesis ch.5, section 5.4), through adaptinfd: latency and
device energy per frame, normalised by cloud-only, on LTE (4G) and Wi-Fi, side by side.

The thesis compares M&MNet with the Master alone in its two placements: on the device
(mobile-only) and in the cloud (cloud-only); M&MNet itself places the Master where it is
cheaper (L_t vs L_m) and runs the Minions on the device. It reports, against cloud-only,
3.9x / 1.9x faster and 53.5% / 39.5% less energy on LTE / Wi-Fi (energy against the
cheaper of mobile-only and cloud-only), at 100% of the baseline's accuracy.

Here, per link: one adaptinfd with a real cloud worker behind the link shaper, and the
three policies (mobile-only, cloud-only, mmnet) take turns frame by frame over the same
test frames, so they see the same moments. `--slowdown` is the daemon's
[device].emulate_slowdown: this host stands for a device that much slower than the
cloud. Device energy is model-based on this host (no power sensor: the configured
compute power x device time, plus paper 004 Table III's radio power x upload time) and
each reply says so (`energy_source`); on a Jetson with an INA226 it is measured.

    adaptinf build zoo --out build/zoo && cp -r build/zoo build/zoo-duo
    adaptinf build mmnet --bundle build/zoo-duo     # or a pool: adaptinf build multiplexer
    python bench/mmnet_placement.py --bundle build/zoo-duo [--slowdown 20] [--frames 300]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from adaptinf.bundle import load_bundle
from adaptinf.client import Client
from adaptinf.rig.link_shaper import LINK_PROFILES, LinkShaper
from adaptinf.rig.processes import spawn_cloud, spawn_daemon, write_daemon_config
from adaptinf.toolchain.speculative_build import pool_splits

POLICIES = ("mobile-only", "cloud-only", "mmnet")
THESIS = {"4g": (3.9, 0.535), "wifi": (1.9, 0.395)}     # speed-up vs cloud-only, energy saved


def run_link(bundle: Path, link: str, frames: np.ndarray, labels: np.ndarray, slowdown: float, work: Path,
             progress: bool) -> dict:
    cloud = spawn_cloud(bundle)
    host, port = cloud.endpoint.removeprefix("tcp://").rsplit(":", 1)
    shaper = LinkShaper((host, int(port)), LINK_PROFILES[link]).start()
    config = write_daemon_config(work / f"{link}.toml",
                                 daemon={"api_endpoint": f"ipc://{work}/{link}.sock", "bundle": str(bundle),
                                         "state_dir": str(work), "warmup_runs": 5},
                                 device={"emulate_slowdown": slowdown},
                                 cloud={"endpoint": shaper.endpoint, "timeout_ms": 2000.0})
    daemon = spawn_daemon(config)
    rows = {p: [] for p in POLICIES}
    try:
        with Client(daemon.endpoint, timeout_s=10) as client:
            for i in tqdm(range(len(labels)), desc=link, unit="frame", disable=None if progress else True):
                for policy in POLICIES:
                    r = client.infer(frames[i:i + 1], policy=policy)
                    rows[policy].append((r.latency_ms["total"], r.energy_j, r.energy_source,
                                         r.label == int(labels[i]), r.served_by))
    finally:
        daemon.stop()
        shaper.stop()
        cloud.stop()
    out = {}
    for policy, got in rows.items():
        latency, energy, sources, right, served = zip(*got)
        out[policy] = {"latency_ms": float(np.mean(latency)), "energy_mj": float(np.mean(energy)) * 1e3,
                       "energy_source": sorted(set(sources)), "accuracy": float(np.mean(right)),
                       "placements": dict(Counter(s["placement"] for s in served)),
                       "answered_by": dict(Counter(s.get("answered_by", s["placement"]) for s in served)),
                       "recovered": float(np.mean([bool(s.get("recovered")) for s in served]))}
    return out


def report(results: dict) -> str:
    lines = []
    for link, r in results["links"].items():
        cloud, mobile, mm = r["cloud-only"], r["mobile-only"], r["mmnet"]
        best_energy = min(cloud["energy_mj"], mobile["energy_mj"])
        thesis_speed, thesis_energy = THESIS[link]
        lines += [f"{LINK_PROFILES[link].name} (x{results['slowdown']:g} device, {results['frames']} frames each):",
                  f"  {'policy':12} {'latency ms':>10} {'/ cloud':>8} {'energy mJ':>10} {'accuracy':>9}  answered by"]
        for policy in POLICIES:
            p = r[policy]
            lines.append(f"  {policy:12} {p['latency_ms']:10.2f} {p['latency_ms'] / cloud['latency_ms']:8.3f} "
                         f"{p['energy_mj']:10.3f} {p['accuracy']:9.2%}  {p['answered_by']}")
        lines.append(f"  M&MNet: {cloud['latency_ms'] / mm['latency_ms']:.2f}x faster than cloud-only "
                     f"(thesis {thesis_speed}x), {mobile['latency_ms'] / mm['latency_ms']:.2f}x than mobile-only; "
                     f"energy {1 - mm['energy_mj'] / best_energy:+.1%} saved against the cheaper baseline "
                     f"(thesis {thesis_energy:.1%}); Master recovered {mm['recovered']:.1%} of frames; energy: "
                     f"{', '.join(mm['energy_source'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True, help="a bundle configured by `adaptinf build mmnet`")
    parser.add_argument("--links", default="4g,wifi")
    parser.add_argument("--slowdown", type=float, default=20.0)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    bundle = load_bundle(args.bundle)
    if bundle.mmnet is None:
        sys.exit(f"{args.bundle} has no mmnet section: run `adaptinf build mmnet --bundle {args.bundle}`")
    links = [link.strip() for link in args.links.split(",")]
    if unknown := [link for link in links if link not in THESIS]:
        sys.exit(f"unknown link {unknown}; the thesis's are {sorted(THESIS)}")
    _, _, test, _ = pool_splits(args.bundle)
    frames, labels = test.images[:args.frames], test.labels[:args.frames]
    results = {"slowdown": args.slowdown, "frames": len(labels), "minions": list(bundle.mmnet.minions),
               "master": bundle.mmnet.master, "links": {}}
    with tempfile.TemporaryDirectory(prefix="adaptinf-mm-", dir="/tmp") as tmp:
        for link in links:
            results["links"][link] = run_link(args.bundle, link, frames, labels, args.slowdown, Path(tmp), True)
    print(f"Minions {' + '.join(results['minions'])}, Master {results['master']}")
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(f"reproduce: python bench/mmnet_placement.py --bundle {args.bundle} --slowdown {args.slowdown:g} "
          f"--frames {args.frames}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
