"""Per split point of a glyph bundle: validation (what the D_r search judged) against frames no
build step saw, side by side, with the upload each point costs (issue 32).

    python scripts/split_points_report.py bundles/glyphnet [--frames 1500] [--seed-offset 50000]

The held-out frames are rendered from the bundle's seed + --seed-offset (the builds use seed,
seed + 10,000 for calibration and seed + 20,000 for the 224 bundle's test split). Each point
runs as the daemon runs it: ONNX head, the upload quantised per frame to 8 bits, ONNX tail.
The loss's one-sided 95% upper confidence bound (toolchain/split_builder.loss_upper_bound) is
printed beside it, paired against the full model on the same frames.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from adaptinf.bundle import load_bundle
from adaptinf.toolchain.glyphs import make_glyphs
from adaptinf.toolchain.onnx_accuracy import model_logits_onnx, split_logits_onnx
from adaptinf.toolchain.split_builder import loss_upper_bound


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--frames", type=int, default=1500)
    parser.add_argument("--seed-offset", type=int, default=50_000)
    args = parser.parse_args()
    bundle = load_bundle(args.bundle)
    seed = int(bundle.data.get("seed", 0)) + args.seed_offset
    g = make_glyphs(args.frames, seed=seed, size=bundle.input.shape[1])
    full = model_logits_onnx(bundle.path(bundle.full_model.file), g.images).argmax(1) == g.labels
    bound = bundle.split.accuracy_loss_bound
    print(f"{bundle.name}: {args.frames} frames rendered from seed {seed}; the full model {full.mean():.1%} "
          f"(validation {bundle.split.baseline_accuracy:.1%}); bound {bound:.0%}")
    print(f"{'point':6} {'D_r':>4} {'upload B':>9} {'val acc':>8} {'val loss':>9} {'test acc':>9} {'test loss':>10} "
          f"{'95% UCB':>8}  within {bound:.0%}")
    worst = 0.0
    for p in bundle.split.points:
        split = split_logits_onnx(bundle.path(p.head), bundle.path(p.tail), g.images).argmax(1) == g.labels
        loss = float(full.mean() - split.mean())
        worst = max(worst, loss)
        val_loss = bundle.split.baseline_accuracy - p.accuracy
        print(f"{p.name:6} {p.D_r:4d} {p.upload_bytes:9d} {p.accuracy:8.1%} {val_loss * 100:+8.1f}p "
              f"{split.mean():9.1%} {loss * 100:+9.1f}p {loss_upper_bound(full, split, 0.95) * 100:+7.1f}p  "
              f"{'yes' if loss <= bound else 'NO'}")
    print(f"worst loss on these frames: {worst * 100:.1f} points")
    return 0 if worst <= bound else 1


if __name__ == "__main__":
    sys.exit(main())
