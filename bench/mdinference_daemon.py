#!/usr/bin/env python3
"""MDInference in adaptinfd against `adaptinf sim` (paper 003, Table IV's setting): the zoo as
the cloud's pool, a seeded network time of 100 +- 50 ms per frame, SLA 250 ms, the zoo's
cheapest model duplicated on the device. Reports each model's share, aggregate accuracy,
SLA attainment and on-device reliance side by side (rig/mdinference_agreement.py says
what is real and what is emulated). 5000 frames take about 17 minutes.

    adaptinf build zoo --out build/zoo
    python bench/mdinference_daemon.py build/zoo --frames 5000 [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from adaptinf.rig.mdinference_agreement import Setup, agreement, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("zoo", type=Path, help="a bundle from `adaptinf build zoo`")
    parser.add_argument("--frames", type=int, default=5000)
    parser.add_argument("--sla-ms", type=float, default=250.0)
    parser.add_argument("--network-ms", default="100,50", help="mean,std of each frame's network round trip")
    parser.add_argument("--largest-ms", type=float, default=110.0,
                        help="the largest zoo model's emulated cloud time; the others keep their measured ratios")
    parser.add_argument("--cv", type=float, default=0.02, help="the emulated times' std / mean")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    mean, std = (float(v) / 1e3 for v in args.network_ms.split(","))
    setup = Setup(args.sla_ms / 1e3, mean, std, args.largest_ms, args.cv, args.seed)
    with tempfile.TemporaryDirectory(prefix="adaptinf-md-", dir="/tmp") as work:   # short: an ipc path
        result = agreement(args.zoo, setup, args.frames, Path(work), progress=True)
    print(report(result, setup))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
