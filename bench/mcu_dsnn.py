#!/usr/bin/env python3
"""The MCU benchmarks of issue 5, on the real firmware in QEMU (execution counts are deterministic there).

    python bench/mcu_dsnn.py                      # digits (64 features): about 3 minutes on 2 cores
    python bench/mcu_dsnn.py --dataset glyphs32   # 32x32 grey glyphs (1024 features, inputs in chunks)

1. Monolithic vs multi-dsNN (thesis ch.3): one `build dsnn` on scikit-learn's digits, the
   design points picked at 100% and at 99% of the monolithic accuracy, every net int8 on
   the MCU over the whole test split: SysTick counts per inference (tree, net and softmax
   included) as ratios to the monolithic net's, and accuracy on the MCU. Energy is modelled:
   instructions x ENERGY_PER_INSTRUCTION_NJ (below), so the energy saving is 1 - count ratio.
2. Instructions per MAC of the int8 FC kernel (and float32): single-layer nets of growing
   size; the slope of ticks over MACs, divided by 0.168 ticks per instruction (-icount
   shift=0). The fixed costs (quantising the input, softmax) drop out of the slope.
3. Serial payload efficiency: payload bytes over bytes on the wire per frame type, and what
   that leaves of a 115200-baud 8N1 line.
Counts are QEMU instructions, not silicon cycles (docs/mcu.md).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from adaptinf.drivers import mcu_protocol as proto
from adaptinf.drivers.mcu import CHUNK, McuClient
from adaptinf.drivers.mcu_model import McuNet, McuSystem, QuantLayer, system_blob, to_blob
from adaptinf.policies.mcu_placement import ENERGY_PER_CYCLE_NJ
from adaptinf.rig.qemu_mcu import QemuMcu, build_firmware, toolchain_missing
from adaptinf.toolchain.datasets import digits_features, glyph_grey_features
from adaptinf.toolchain.dsnn import DsnnConfig, build_dsnn, mcu_net, mcu_system

TICKS_PER_INSTRUCTION = 0.168   # SysTick at 168 MHz of virtual time, 1 ns per instruction
# One instruction taken as one cycle (which undercounts the M4's multi-cycle loads and MACs,
# so the energies are lower bounds) at the placement model's energy per cycle, 238 uA/MHz x
# 3.3 V from ST's STM32F405/407 page (policies/mcu_placement.py).
ENERGY_PER_INSTRUCTION_NJ = ENERGY_PER_CYCLE_NJ
# 1024 inputs: the two nets of a system share the 96 KB model buffer, so the hidden layers
# stay narrow (32 KB of int8 weights per net at 32 units); fewer thresholds and search steps
# keep the build to minutes.
GLYPH_CONFIG = DsnnConfig(baseline_hidden=(32, 16), max_width=32, thresholds=4, max_search_steps=12, max_iter=200,
                          constraint=1.0)
GLYPH_FRAMES = 4000


def run_split(mcu: McuClient, system: McuSystem, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    mcu.load_blob(system_blob(system))
    results = [mcu.infer(row) for row in x]
    return float(np.mean([r.count for r in results])), float(np.mean([r.label == t for r, t in zip(results, y)]))


def pick(result, constraint: float):
    meeting = [p for p in result.pareto if p.accuracy >= constraint * result.monolithic_accuracy]
    return min(meeting, key=lambda p: p.expected_macs) if meeting else None


def kernel_slope(mcu: McuClient, dtype: str) -> float:
    rng = np.random.default_rng(0)
    macs, ticks = [], []
    for out in (16, 32, 64, 128, 160):   # float32 160x128 is the largest that fits the 96 KB buffer
        w = rng.integers(-127, 128, (out, 128)).astype(np.int8) if dtype == "int8" else \
            rng.standard_normal((out, 128)).astype(np.float32)
        bias = np.zeros(out, np.int32 if dtype == "int8" else np.float32)
        net = McuNet(dtype, 0.01, (QuantLayer(w, bias, 0.001, False),))
        mcu.load(McuSystem((net,), (tuple(range(out)),)))
        x = rng.standard_normal(128).astype(np.float32)
        macs.append(net.macs)
        ticks.append(np.median([mcu.infer(x).count for _ in range(5)]))
    return float(np.polyfit(macs, ticks, 1)[0]) / TICKS_PER_INSTRUCTION


def microjoules(ticks: float) -> float:
    return ticks / TICKS_PER_INSTRUCTION * ENERGY_PER_INSTRUCTION_NJ / 1e3


def wire_bytes(payload: int) -> int:
    return len(proto.encode(proto.FrameType.INFER, 1, bytes(range(1, 256))[:1] * payload))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=("digits", "glyphs32"), default="digits")
    args = parser.parse_args(argv)
    if toolchain_missing():
        print(f"skipped: {toolchain_missing()}")
        return 1
    if args.dataset == "digits":
        (x, y), config = digits_features(), DsnnConfig(constraint=1.0)
    else:
        (x, y), config = glyph_grey_features(GLYPH_FRAMES, seed=0), GLYPH_CONFIG
    order = np.random.default_rng(0).permutation(len(y))
    val, train = order[: len(y) // 4], order[len(y) // 4:]
    print(f"building the multi-dsNN design space on {args.dataset} ({x.shape[1]} features) ...")
    result = build_dsnn(x[train], y[train], x[val], y[val], config)
    calibration = x[train][:200]
    build_firmware()
    qemu = QemuMcu()
    try:
        with McuClient(qemu.url, timeout_s=5) as mcu:
            mono = McuSystem((mcu_net(result.monolithic, calibration),),
                             (tuple(int(c) for c in result.monolithic.classes_),))
            mono_ticks, mono_acc = run_split(mcu, mono, x[val], y[val])
            print(f"\n1. monolithic {result.monolithic.hidden_layer_sizes} vs multi-dsNN, {len(val)} test frames, "
                  f"int8 on the MCU; energy = instructions x {ENERGY_PER_INSTRUCTION_NJ:.3f} nJ")
            print(f"{'system':38} {'MACs':>8} {'ticks':>8} {'instr.':>8} {'uJ':>7} {'accuracy':>9} "
                  f"{'speed-up':>9} {'energy':>9}")
            print(f"{'monolithic':38} {result.monolithic_macs:8d} {mono_ticks:8.0f} "
                  f"{mono_ticks / TICKS_PER_INSTRUCTION:8.0f} {microjoules(mono_ticks):7.2f} {mono_acc:9.1%} "
                  f"{1.0:8.2f}x {'-':>9}")
            for constraint in (1.0, 0.99):
                point = pick(result, constraint)
                if point is None:
                    print(f"{f'at {constraint:.0%}':38} no design point meets it")
                    continue
                ticks, acc = run_split(mcu, mcu_system(point, calibration), x[val], y[val])
                name = f"at {constraint:.0%}: t={point.threshold:.3f} {list(point.main_hidden)}/{list(point.tail_hidden)}"
                print(f"{name:38} {point.expected_macs:8.0f} {ticks:8.0f} {ticks / TICKS_PER_INSTRUCTION:8.0f} "
                      f"{microjoules(ticks):7.2f} {acc:9.1%} {mono_ticks / ticks:8.2f}x "
                      f"{1 - ticks / mono_ticks:4.0%} less")
            print("   (thesis ch.3 at 100%: 2.6x faster, 61% less energy)")
            if args.dataset != "digits":
                return 0
            s8, f32 = kernel_slope(mcu, "int8"), kernel_slope(mcu, "float32")
            print(f"\n2. FC kernel, instructions per MAC (slope over 2k..20k MACs): int8 {s8:.2f}, float32 {f32:.2f}")
            print("   (anchors: CMSIS-NN's int8 inner loop about 2 cycles/MAC; SMLAD's limit 0.5)")
    finally:
        qemu.stop()
    print("\n3. serial payload efficiency (COBS + 6-byte header + CRC-16 + delimiter)")
    line = 115200 / 10   # bytes/s of 8N1
    for what, payload in (("INFER, 64 float32 features", 256), ("RESULT, 10 logits", 52),
                          ("LOAD_CHUNK", CHUNK + 4), ("largest frame", proto.MAX_PAYLOAD)):
        wire = wire_bytes(payload)
        print(f"   {what:28} {payload:4d} B payload / {wire:4d} B on the wire = {payload / wire:5.1%}, "
              f"{payload / wire * line / 1e3:5.2f} kB/s of payload at 115200 baud")
    return 0


if __name__ == "__main__":
    sys.exit(main())
