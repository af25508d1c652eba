#!/usr/bin/env python3
"""Planning cost per frame vs running the frame.

    python bench/plan_cost.py

Plans with the split policy over a profile of 16 split points + mobile-only and
cloud-only and 8 models (design.md budget: p99 < 50 us), and sets that against one
run of the demo bundle's full model on ONNX Runtime CPU, in the same process.
"""

import statistics
import sys
import time
from pathlib import Path

import numpy as np

from adaptinf.bundle import load_bundle
from adaptinf.engines import open_engine
from adaptinf.policies.plan import FrameContext, Telemetry
from adaptinf.policies.split import SplitPolicy
from adaptinf.profile import parse_profile

REPO = Path(__file__).resolve().parent.parent
N = 20000


def synthetic_profile():
    parts = [{"name": "mobile-only", "device_ms": 40, "device_power_w": 5, "cloud_ms": 0, "upload_bytes": 0,
              "accuracy": 0.76},
             {"name": "cloud-only", "device_ms": 0, "device_power_w": 5, "cloud_ms": 2, "upload_bytes": 150528,
              "accuracy": 0.76}]
    parts += [{"name": f"RB{i}", "device_ms": 2.5 * i, "device_power_w": 5, "cloud_ms": 2 - i / 10,
               "upload_bytes": 3136 // (1 + i // 4), "accuracy": 0.75} for i in range(1, 17)]
    models = [{"name": f"m{i}", "device_ms": 5 * i, "accuracy": 0.6 + i / 40} for i in range(8)]
    return parse_profile({"version": 1, "bundle": "bench", "partitions": parts, "models": models})


def percentile(samples, q):
    return float(np.percentile(np.asarray(samples), q))


def main() -> int:
    profile = synthetic_profile()
    policy = SplitPolicy()
    frame = FrameContext()
    rng = np.random.default_rng(0)
    telemetries = [Telemetry(uplink_bps=float(b), rtt_s=float(r), radio="4g")
                   for b, r in zip(rng.uniform(0.5e6, 20e6, 64), rng.uniform(0.002, 0.1, 64))]
    for t in telemetries:
        policy.plan(frame, t, profile)
    plan_us = []
    for i in range(N):
        t = telemetries[i % 64]
        start = time.perf_counter_ns()
        policy.plan(frame, t, profile)
        plan_us.append((time.perf_counter_ns() - start) / 1e3)

    bundle = load_bundle(REPO / "bundles" / "glyphnet")
    engine = open_engine(bundle.path(bundle.full_model.file), "onnxruntime")
    x = np.zeros(bundle.input.shape, np.uint8)
    for _ in range(20):
        engine.run(x)
    run_us = []
    for _ in range(500):
        start = time.perf_counter_ns()
        engine.run(x)
        run_us.append((time.perf_counter_ns() - start) / 1e3)

    p50, p99 = percentile(plan_us, 50), percentile(plan_us, 99)
    frame_p50 = statistics.median(run_us)
    print(f"plan, 18 candidates (16 split points + mobile/cloud), {N} frames: "
          f"p50 {p50:.1f} us, p99 {p99:.1f} us (budget p99 < 50 us)")
    print(f"glyphnet full model on ORT CPU (the cheapest real frame): p50 {frame_p50:.1f} us")
    print(f"ratio planning/frame (p50): {p50 / frame_p50:.3f}")
    print("reproduce: python bench/plan_cost.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
