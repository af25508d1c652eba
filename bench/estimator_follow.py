#!/usr/bin/env python3
"""How fast the link estimate follows each trace: the daemon's LinkEstimator and probe rule
replayed on the trace in virtual time (rig/estimator_replay.py), a second per trace.

    python bench/estimator_follow.py ../shared/traces/*.up [--fps 10] [--upload-bytes 6272]

For each trace and each workload (every frame uploads; frames upload when the estimate says
they fit in the budget; no frame uploads, so only probes measure), every step of 4x or more
between 1-s capacity bins (both at least 0.1 Mbit/s), and how many frames and seconds until
the estimate is within 30% of the new capacity (issue 15's goal: 5 frames or 1 s).
"""

from __future__ import annotations

import argparse
import sys

from adaptinf.rig.estimator_replay import GOAL_FRAMES, GOAL_S, MODES, follow_steps, replay
from adaptinf.rig.uplink_trace import TraceError, parse_trace_spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("traces", nargs="+", metavar="FILE[:START-END]")
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--upload-bytes", type=int, default=6272, help="each uploading frame's bytes "
                        "(default: the 224 bundle's RB1)")
    parser.add_argument("--rtt-ms", type=float, default=40.0)
    parser.add_argument("-v", "--verbose", action="store_true", help="print every step")
    args = parser.parse_args(argv)
    print(f"{'trace':44} {'workload':9} {'steps met':>9} {'median frames':>13} {'median s':>8} {'probe kbit/s':>12}")
    for spec in args.traces:
        try:
            trace = parse_trace_spec(spec)
        except TraceError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        for mode in MODES:
            run = replay(trace, args.fps, args.upload_bytes, mode, args.rtt_ms / 1e3)
            steps = follow_steps(trace, run.t_s, run.est_bps)
            frames = sorted(s.frames if s.frames is not None else 10**9 for s in steps)
            secs = sorted(s.seconds if s.seconds is not None else float("inf") for s in steps)
            mid = len(steps) // 2
            median_frames = "-" if not steps else "never" if frames[mid] == 10**9 else frames[mid]
            median_s = "-" if not steps else "never" if secs[mid] == float("inf") else f"{secs[mid]:.2f}"
            print(f"{trace.name[:44]:44} {mode:9} {sum(s.met for s in steps):4d} / {len(steps):<2d} "
                  f"{median_frames:>13} {median_s:>8} {run.probe_bytes * 8 / 1e3 / run.t_s.max():12.1f}")
            if args.verbose:
                for s in steps:
                    follow = "never" if s.frames is None else f"{s.frames} frames, {s.seconds:.2f} s"
                    print(f"    at {s.at_s:6.1f} s {s.from_bps / 1e6:6.2f} -> {s.to_bps / 1e6:6.2f} Mbit/s: {follow}")
    print(f"\ngoal: within 30% within {GOAL_FRAMES} frames or {GOAL_S:g} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
