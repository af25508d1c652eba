#!/usr/bin/env python3
"""Engine latency per partition (ORT CPU, head and tail) as ratios to the full model, and build time.

    python bench/engine_partitions.py [--build]

Times every head and tail of the demo bundle against its full model, interleaved in
one run (batch 1, one thread per engine, as the daemon runs them). With --build it
also times a small `build split` (2 points, 2000 frames) from scratch.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from adaptinf.bundle import load_bundle
from adaptinf.engines import open_engine

REPO = Path(__file__).resolve().parent.parent
ROUNDS = 300


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", action="store_true", help="also time a small split build")
    args = parser.parse_args()
    bundle = load_bundle(REPO / "bundles" / "glyphnet")
    x = np.random.default_rng(0).integers(0, 256, bundle.input.shape, dtype=np.uint8)
    full = open_engine(bundle.path(bundle.full_model.file), "onnxruntime")
    engines = {"full": (full, x)}
    for p in bundle.split.points:
        head = open_engine(bundle.path(p.head), "onnxruntime")
        engines[f"{p.name} head"] = (head, x)
        engines[f"{p.name} tail"] = (open_engine(bundle.path(p.tail), "onnxruntime"), head.run(x))
    times = {name: [] for name in engines}
    for _ in range(ROUNDS):  # interleaved: machine noise hits every engine alike
        for name, (engine, inp) in engines.items():
            start = time.perf_counter_ns()
            engine.run(inp)
            times[name].append(time.perf_counter_ns() - start)
    full_us = statistics.median(times["full"]) / 1e3
    print(f"{'graph':10} {'p50 us':>8} {'ratio to full':>13} {'MFLOP':>7}")
    flops = {"full": bundle.full_model.flops}
    for p in bundle.split.points:
        flops[f"{p.name} head"], flops[f"{p.name} tail"] = p.head_flops, p.tail_flops
    for name, samples in times.items():
        us = statistics.median(samples) / 1e3
        print(f"{name:10} {us:8.1f} {us / full_us:13.2f} {flops[name] / 1e6:7.1f}")
    if args.build:
        from adaptinf.toolchain.split_builder import SplitBuildConfig, build_split

        config = SplitBuildConfig(name="bench", n_train=1600, n_val=400, epochs=2, finetune_samples=800,
                                  points=("RB2", "RB4"))
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            build_split(config, Path(out), progress=False)
            print(f"build split, 2 points, 2000 glyphs, 2 epochs: {time.perf_counter() - start:.1f} s")
    print("reproduce: python bench/engine_partitions.py --build")
    return 0


if __name__ == "__main__":
    sys.exit(main())
