#!/usr/bin/env python3
"""Double-shot pruning (thesis ch.7) against SNIP and the dense network on glyph_resnet.

    python bench/pruning.py            # about 6 minutes on 2 cores

One seed, the same data and the same training recipe for all three (toolchain/training.py:
Adam, one-cycle, N epochs); the sparse networks keep --keep of the conv/linear weights
(SNIP decides the per-layer split for both). Prints test accuracy normalised by the dense
network's, as the thesis's Figures 7.7-7.9 do.
"""

from __future__ import annotations

import argparse
import copy
import sys

import torch

from adaptinf.toolchain import datasets, pruning
from adaptinf.toolchain.custom_float import accuracy
from adaptinf.toolchain.models import glyph_resnet
from adaptinf.toolchain.training import train


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--keep", type=float, default=0.1, help="share of weights kept (default 0.1: 90%% sparse)")
    ap.add_argument("--metric", default="weighted_movement", choices=sorted(pruning.IMPORTANCE))
    args = ap.parse_args(argv)

    data = datasets.glyphs(6000 + 2000, 0)
    x, y, xt, yt = data.images[:6000], data.labels[:6000], data.images[6000:], data.labels[6000:]

    def fit(model):
        train(model, x, y, epochs=args.epochs, desc="train")
        model.train()

    torch.manual_seed(0)
    initial = glyph_resnet(len(data.classes), args.width)
    dense = copy.deepcopy(initial)
    fit(dense)
    base = accuracy(dense, xt, yt)
    rows = [("dense", base, 0.0)]
    single = pruning.snip(copy.deepcopy(initial), x, y, args.keep, fit)
    rows.append(("SNIP", accuracy(single, xt, yt), pruning.sparsity(single)))
    double = pruning.double_shot(copy.deepcopy(initial), x, y, args.keep, fit, metric=args.metric)
    rows.append((f"double-shot ({args.metric})", accuracy(double, xt, yt), pruning.sparsity(double)))
    print(f"glyph_resnet width {args.width}, {args.epochs} epochs per training, keep {args.keep:.0%}\n")
    print(f"{'network':36} {'sparsity':>8} {'test accuracy':>14} {'normalised':>11}")
    for name, acc, sp in rows:
        print(f"{name:36} {sp:8.1%} {acc:14.2%} {acc / base:11.4f}")
    print("\nreproduce: python bench/pruning.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
