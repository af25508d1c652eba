#!/usr/bin/env python3
"""Rebuild the committed demo bundle (bundles/glyphnet) from scratch.

    python scripts/build_demo_bundle.py [--out bundles/glyphnet]

Renders the glyph set, trains the residual CNN, runs the D_r search at its six
points and exports the bundle. About 5 minutes on 2 CPU cores; deterministic seeds,
but floating-point training makes the files differ in their last bits between machines.
"""

import argparse
import sys
import time
from pathlib import Path

from adaptinf.toolchain.split_builder import DEMO_CONFIG, build_split


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "bundles" / "glyphnet")
    args = parser.parse_args()
    start = time.time()
    manifest = build_split(DEMO_CONFIG, args.out)
    print(f"built {args.out} in {time.time() - start:.0f} s: baseline accuracy "
          f"{manifest['split']['baseline_accuracy']:.3f}")
    for p in manifest["split"]["points"]:
        print(f"  {p['name']}: D={p['D']} D_r={p['D_r']} upload {p['upload_bytes']} B, accuracy {p['accuracy']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
