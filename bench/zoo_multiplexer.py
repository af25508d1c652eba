#!/usr/bin/env python3
"""Paper 000 Table II on the zoo: the neural multiplexer over `adaptinf build zoo`'s models,
against the most accurate model alone, random routing at the same shares and the cheapest
model's own confidence at the same cost, with the oracle bound (toolchain/zoo_multiplexer.py).

    adaptinf build zoo --out build/zoo
    python bench/zoo_multiplexer.py build/zoo [--objective correctness|ensemble] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from adaptinf.toolchain.zoo_multiplexer import ZooMuxConfig, attach, evaluate, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("zoo", type=Path, help="a bundle from `adaptinf build zoo`")
    parser.add_argument("--objective", choices=("correctness", "ensemble"), default="correctness")
    parser.add_argument("--mux-epochs", type=int, default=10)
    parser.add_argument("--n-mux", type=int, default=4000)
    parser.add_argument("--cost-power", type=float, default=1.0, help="eq. 5's c_i = FLOPs ratio ** this "
                        "(1: the papers'; 0: no cost term)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--save", action="store_true", help="put the multiplexer into the bundle, for "
                        "`policy = \"multiplexer\"` in adaptinfd")
    args = parser.parse_args(argv)
    result = evaluate(args.zoo, ZooMuxConfig(n_mux=args.n_mux, mux_epochs=args.mux_epochs, objective=args.objective,
                                                cost_power=args.cost_power))
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    if args.save:
        attach(args.zoo, result)
        print(f"-> {args.zoo}: zoo_multiplexer.onnx and the zoo section's multiplexer (T = {result['threshold']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
