#!/usr/bin/env python3
"""Frames/s of one Client: sequential calls against up to 16 frames in flight, side by side.

    python bench/client_pipelining.py [--seconds 5] [--bundle bundles/glyphnet224]

One adaptinfd (four workers: a frame waiting on the cloud holds one) with a cloud worker behind paper 004's 4G link (the shaping
proxy: 15 ms RTT, 5.85 Mbit/s); the same Client sends for `seconds` each way, alternating
three times: `infer()` one at a time, then `infer_async()` keeping `--in-flight` frames in
flight (a sliding window); and one Client shared by 8 threads. Two placements:
cloud-only (the frame's time is mostly the link's: what pipelining is for) and
mobile-only (the device's CPU, which on this 2-core host it shares with the client).
Goal (issue 28): the pipelined rate at least 2x the sequential one.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np

from adaptinf.bundle import load_bundle
from adaptinf.client import Client
from adaptinf.rig.link_shaper import LINK_PROFILES, LinkShaper
from adaptinf.rig.processes import spawn_cloud, spawn_daemon, write_daemon_config

REPO = Path(__file__).resolve().parent.parent


def sequential(c: Client, frame, seconds: float, policy: str) -> float:
    n, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        c.infer(frame, policy=policy)
        n += 1
    return n / seconds


def pipelined(c: Client, frame, seconds: float, policy: str, window: int) -> float:
    n, end, flying = 0, time.perf_counter() + seconds, deque()
    while time.perf_counter() < end:
        flying.append(c.infer_async(frame, policy=policy))
        if len(flying) >= window:
            flying.popleft().result()
            n += 1
    for f in flying:
        f.result()
    return n / seconds


def threaded(c: Client, frame, seconds: float, policy: str, threads: int) -> float:
    counts = [0] * threads
    end = time.perf_counter() + seconds

    def work(i):
        while time.perf_counter() < end:
            c.infer(frame, policy=policy)
            counts[i] += 1

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(counts) / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--bundle", default=str(REPO / "bundles" / "glyphnet"))
    parser.add_argument("--in-flight", type=int, default=16)
    args = parser.parse_args()
    bundle = load_bundle(args.bundle)
    frame = np.random.default_rng(0).integers(0, 256, bundle.input.shape, dtype=np.uint8)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="ai-pipe-") as tmp:
        cloud = spawn_cloud(args.bundle, threads=2)
        host, port = cloud.endpoint.rsplit("//", 1)[1].rsplit(":", 1)
        shaper = LinkShaper((host, int(port)), LINK_PROFILES["4g"]).start()
        config = write_daemon_config(Path(tmp) / "d.toml", daemon={
            "api_endpoint": f"ipc://{tmp}/api.sock", "bundle": args.bundle, "state_dir": tmp, "warmup_runs": 3,
            "workers": 4}, cloud={"endpoint": shaper.endpoint, "radio": "4g", "timeout_ms": 5000.0})
        daemon = spawn_daemon(config)
        try:
            with Client(f"ipc://{tmp}/api.sock", timeout_s=30) as c:
                for policy in ("cloud-only", "mobile-only"):
                    seq, pipe = [], []
                    for _ in range(3):
                        seq.append(sequential(c, frame, args.seconds, policy))
                        pipe.append(pipelined(c, frame, args.seconds, policy, args.in_flight))
                    rows[policy] = (float(np.median(seq)), float(np.median(pipe)),
                                    threaded(c, frame, args.seconds, policy, 8))
        finally:
            daemon.stop()
            shaper.stop()
            cloud.stop()
    print(f"bundle {bundle.name} {list(bundle.input.shape)}, 4 workers, 4G link to the cloud; medians of 3 x "
          f"{args.seconds:.0f} s, frames/s")
    print(f"  {'placement':12} {'sequential':>10} {f'{args.in_flight} in flight':>12} {'ratio':>6} "
          f"{'8 threads':>10} {'ratio':>6}")
    for policy, (s, p, shared) in rows.items():
        print(f"  {policy:12} {s:10.1f} {p:12.1f} {p / s:5.2f}x {shared:10.1f} {shared / s:5.2f}x")
    print("reproduce: python bench/client_pipelining.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
