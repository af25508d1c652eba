"""Write the demo's synthetic uplink traces, traces/*.up, and their table in traces/README.md.

    python scripts/make_traces.py [--check]

Deterministic (rig/synthetic_trace.py's seeded presets): running it again writes the same
bytes, and --check exits 1 if the files in traces/ differ from what it would write.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from adaptinf.rig.synthetic_trace import PRESETS, per_second_stats, render

TRACES = Path(__file__).resolve().parent.parent / "traces"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with traces/ instead of writing")
    args = parser.parse_args()
    stale = []
    for name, model in PRESETS.items():
        text = render(model)
        path = TRACES / f"{name}.up"
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
            continue
        path.write_text(text)
        s = per_second_stats(np.array(text.split(), dtype=np.int64))
        print(f"| {path.name} | {s['seconds']} s | {s['mean_bps'] / 1e6:.2f} Mbit/s | {s['p10_bps'] / 1e6:.2f} / "
              f"{s['p50_bps'] / 1e6:.2f} / {s['p90_bps'] / 1e6:.2f} Mbit/s | {s['empty_seconds']} |")
    if stale:
        print(f"traces/ differs from the generator: {', '.join(stale)}; run python scripts/make_traces.py",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
