#!/usr/bin/env python3
"""SIEVE's custom floating-point compression (thesis 4.4.1) of a glyph CNN, no retraining.

    python bench/sieve_compression.py        # about 5 minutes on 2 cores

Trains glyph_resnet (width 16) on 6000 glyph frames, explores every conv/linear layer's
weight and input-activation formats on 500 validation frames (toolchain/custom_float.py),
and reports for the exact, accurate and approximate networks: bits per weight and per
activation as a share of float32, and test accuracy (2000 frames) against the original.
"""

from __future__ import annotations

import argparse
import sys

from adaptinf.toolchain import custom_float as cf
from adaptinf.toolchain import datasets
from adaptinf.toolchain.models import glyph_resnet
from adaptinf.toolchain.training import set_seed, train


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=4)
    args = ap.parse_args(argv)

    set_seed(0)
    data = datasets.glyphs(6000 + 500 + 2000, 0)
    tr, va, te = slice(0, 6000), slice(6000, 6500), slice(6500, None)
    model = glyph_resnet(len(data.classes), args.width)
    train(model, data.images[tr], data.labels[tr], epochs=args.epochs, desc="train")
    base = cf.accuracy(model, data.images[te], data.labels[te])
    explored = cf.explore(model, data.images[va], data.labels[va])
    counts = cf.input_counts(model, data.images[:1])
    print(f"glyph_resnet width {args.width}: {len(cf.layers(model))} layers, {len(explored)} configurations "
          f"explored; original test accuracy {base:.2%}\n")
    print(f"{'network':12} {'weight bits':>12} {'activation bits':>16} {'test accuracy':>14} {'normalised':>11}")
    for variant in ("exact", "accurate", "approximate"):
        weights, acts = cf.pick(explored, variant)
        w_ratio, a_ratio = cf.compression(model, weights, acts, counts)
        with cf.Compressed(model, weights, acts):
            acc = cf.accuracy(model, data.images[te], data.labels[te])
        print(f"{variant:12} {w_ratio * 32:7.2f} ({w_ratio:5.1%}) {a_ratio * 32:9.2f} ({a_ratio:5.1%}) "
              f"{acc:14.2%} {acc / base:11.4f}")
    print("\nreproduce: python bench/sieve_compression.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
