#!/usr/bin/env python3
"""Paper 000's multiplexer over a pool built for complementarity (toolchain/complementary_pool.py):
members of comparable accuracy from two families, three widths, two input resolutions and
four seeds, trained with Algorithm 1's contrastive loss; their error overlap and oracle gain
before any multiplexer; then the accuracy/FLOPs curve as eq. 5's cost weight varies, with
the largest member alone and random routing at the same shares.

    python bench/complementary_pool.py --out build/pool --json build/pool/pool.json --plot docs/complementary-pool.png
    python bench/complementary_pool.py --out build/pool-nc --contrastive-weight 0    # the ablation

About 4 minutes on 2 idle CPU cores (the pool's training is most of it).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from adaptinf.toolchain.complementary_pool import PoolConfig, build_and_measure, plot, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("build/pool"), help="where the members' ONNX files go")
    defaults = PoolConfig()
    for f in fields(PoolConfig):
        if f.name != "members":
            parser.add_argument("--" + f.name.replace("_", "-"), type=type(getattr(defaults, f.name)),
                                default=getattr(defaults, f.name))
    parser.add_argument("--members", nargs="+", default=list(defaults.members))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plot", type=Path, help="a PNG of the accuracy/FLOPs curve")
    args = parser.parse_args(argv)
    config = PoolConfig(**{f.name: getattr(args, f.name) for f in fields(PoolConfig) if f.name != "members"},
                        members=tuple(args.members))
    result = build_and_measure(args.out, config)
    print(report(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    if args.plot:
        plot(result, args.plot)
        print(f"-> {args.plot}")
    print("reproduce: python bench/complementary_pool.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
