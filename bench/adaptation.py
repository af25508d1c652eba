#!/usr/bin/env python3
"""Judge `adaptinf demo --json` runs against issue 15's goals, and measure how fast the
link estimate follows the trace.

    adaptinf demo --fps 10 --deadline-ms 500 --links 3g,4g,wifi \\
        --uplink-trace ../shared/traces/TMobile-UMTS-driving.up:0-120 \\
        --uplink-trace ../shared/traces/Verizon-LTE-short.up:0-120 \\
        --uplink-trace ../shared/traces/TMobile-UMTS-driving.up:0-60+../shared/traces/Verizon-LTE-short.up:0-60 \\
        --json build/demo-long.json --plot build/demo-long.png
    python bench/adaptation.py build/demo-long.json [more.json ...]

Per link: adaptive (latency) mean / best static mean (goal <= 1.05) and / perfect-knowledge
bound (goal <= 1.25); the same for adaptive (energy) in device energy; (S-B)/S and
(S-A)/(S-B); the share of adaptive's frames served by split points; frames unanswered or
answered twice. Then, on trace links, every step of 4x or more between consecutive
1-s capacity bins (both above 0.1 Mbit/s): how many frames and seconds after the step the
daemon's estimate (each frame's est_uplink_bps, at planning) came within 30% of the new
capacity (goal: within 5 frames or 1 s).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

def estimator_steps(link: dict) -> list:
    """The trace's 4x steps, judged on the adaptive (latency) run's per-frame estimates."""
    from adaptinf.rig.estimator_replay import follow_steps
    from adaptinf.rig.uplink_trace import parse_trace_spec

    spec = (link.get("trace") or {}).get("spec")
    if not spec:
        return []
    frames = next(r for r in link["runs"] if r["policy"] == "adaptive-latency")["frames"]
    t = np.array([f["t_s"] for f in frames])
    est = np.array([f["est_uplink_bps"] or np.nan for f in frames])
    return follow_steps(parse_trace_spec(spec), t, est)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json", type=Path, nargs="+", help="one or more demo --json files (e.g. traces and "
                                                          "fixed links run separately)")
    args = parser.parse_args(argv)
    runs = [json.loads(path.read_text()) for path in args.json]
    data = {"summary": [v for d in runs for v in d["summary"]], "links": [link for d in runs for link in d["links"]]}
    print(f"{'link':44} {'A/S lat':>7} {'A/B lat':>7} {'A/S E':>6} {'A/B E':>6} {'(S-B)/S':>7} "
          f"{'(S-A)/(S-B)':>11} {'split':>6} {'lost':>5} {'dup':>4}")
    for v in data["summary"]:
        print(f"{v['link'][:44]:44} {v['A_ms'] / v['S_ms']:7.3f} {v['A_ms'] / v['B_ms']:7.3f} "
              f"{v['A_mj'] / v['S_mj']:6.3f} {v['A_mj'] / v['B_mj']:6.3f} {v['gain_bound']:7.1%} "
              f"{v['gain_achieved']:11.1%} {v['split_share']:6.0%} {v['unanswered']:5d} {v['duplicated']:4d}")
    print("\nestimator: steps of 4x or more between 1-s capacity bins; frames and seconds until the "
          "estimate is within 30% of the new capacity")
    met = total = 0
    for link in data["links"]:
        for s in estimator_steps(link):
            total += 1
            met += s.met
            follow = "never" if s.frames is None else f"{s.frames} frames, {s.seconds:.2f} s"
            print(f"  {link['name'][:44]:44} at {s.at_s:6.1f} s  {s.from_bps / 1e6:5.2f} -> {s.to_bps / 1e6:5.2f} "
                  f"Mbit/s: {follow}{'' if s.met else '  (misses the goal)'}")
    print(f"  {met} of {total} steps followed within 5 frames or 1 s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
