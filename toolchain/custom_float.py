"""SIEVE's per-layer custom floating-point formats (thesis 4.4.1), without retraining.

A format is (e_bw exponent bits, m_bw mantissa bits, bias); a number's value is
±2^(e - bias) × (1.m), with e in [1, 2^e_bw - 1] (0 is kept for zero, so no subnormals).
Numbers below the smallest exponent become 0 and numbers above the largest saturate;
mantissas round to nearest. Weights and activations are stored in the format and
computed in full precision: `quantize` returns float32 values the format can hold.

The search, per layer and separately for its weights and its input activations:
1. From the exponent histogram on validation, e_max and bias follow deterministically:
   b = 1 - min e and e_bw = ceil(log2(max e + b + 1)). This is the thesis's rule
   written for this encoding.
2. e_bw is swept from e_max down to 2. For each, the bias maximising coverage (the
   share of non-zero values whose exponent fits) is taken. The sweep stops when coverage
   falls below 50%.
3. For each e_bw, m_bw is swept from 6 down to 0, measuring validation accuracy with
   only this tensor compressed. The sweep stops when the normalised accuracy falls below
   99.8%.
Three networks follow, each taking one configuration per tensor:
- exact: the most precise explored configuration (the most bits: the natural exponent
  width and 6 mantissa bits). The thesis says "most accurate"; measured on a few hundred
  validation frames, a lossy format that scores a frame higher by chance would win, and
  such chance wins add up over the layers (0.90 of the original's test accuracy on the
  glyph model, against 0.999 for the most precise);
- accurate: the fewest bits at normalised accuracy >= 100%;
- approximate: the fewest bits at >= 99.9%.
A tensor with no configuration meeting the bar keeps its most accurate one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from adaptinf.packed_floats import Format  # the format as the bundle stores it

FLOOR = 0.998          # normalised accuracy below which the m_bw sweep stops
MIN_COVERAGE = 0.5


def exponents(x: np.ndarray) -> np.ndarray:
    """The unbiased base-2 exponents of the non-zero values: x = 2^e × 1.m."""
    x = np.abs(np.asarray(x, np.float64).ravel())
    return np.floor(np.log2(x[x > 0])).astype(np.int64)


def coverage(exps: np.ndarray, e_bw: int, bias: int) -> float:
    lo, hi = 1 - bias, (1 << e_bw) - 1 - bias
    return float(((exps >= lo) & (exps <= hi)).mean()) if len(exps) else 1.0


def natural_format(exps: np.ndarray) -> tuple[int, int]:
    """(e_max, bias): the fewest exponent bits that cover every observed exponent."""
    if not len(exps):
        return 2, 1
    bias = 1 - int(exps.min())
    return max(2, math.ceil(math.log2(int(exps.max()) + bias + 1))), bias


def best_bias(exps: np.ndarray, e_bw: int) -> int:
    """The bias whose window of 2^e_bw - 1 exponents covers the most values (ties: the larger)."""
    if not len(exps):
        return 1
    values, counts = np.unique(exps, return_counts=True)
    width = (1 << e_bw) - 1
    best, best_bias_ = -1, 1
    for low in range(int(values.min()), int(values.max()) + 1):
        covered = counts[(values >= low) & (values < low + width)].sum()
        if covered > best:
            best, best_bias_ = covered, 1 - low
    return best_bias_


def quantize(x: torch.Tensor, fmt: Format) -> torch.Tensor:
    """The nearest value `fmt` can hold (flush to zero below range, saturate above)."""
    sign, mag = torch.sign(x), x.abs()
    lo, hi = 1 - fmt.bias, (1 << fmt.e_bw) - 1 - fmt.bias
    e = torch.floor(torch.log2(mag.clamp_min(torch.finfo(x.dtype).tiny))).clamp(lo, hi)
    step = torch.pow(2.0, e - fmt.m_bw)
    q = torch.round(mag / step) * step
    largest = 2.0 ** hi * (2.0 - 2.0 ** -fmt.m_bw)
    q = torch.where(mag < 2.0 ** lo * (1 - 2.0 ** -(fmt.m_bw + 1)), torch.zeros_like(q), q.clamp(max=largest))
    return sign * q


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy in which every Conv2d registered directly before a BatchNorm2d (the conv, bn
    order of the glyph models) is one conv with a bias, and the BatchNorm an Identity.
    Deployment folds them anyway, so the weights to compress are the folded ones."""
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = copy.deepcopy(model).eval()
    named = list(folded.named_modules())
    for (conv_name, conv), (bn_name, bn) in zip(named, named[1:]):
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            folded.set_submodule(conv_name, fuse_conv_bn_eval(conv, bn))
            folded.set_submodule(bn_name, nn.Identity())
    return folded


def layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


class Compressed:
    """Applies formats to a model in place: weights rounded (and restored on close), inputs rounded by hooks."""

    def __init__(self, model: nn.Module, weights: dict[str, Format], activations: dict[str, Format]):
        modules = dict(layers(model))
        self._saved = {n: modules[n].weight.data.clone() for n in weights}
        for n, fmt in weights.items():
            modules[n].weight.data = quantize(modules[n].weight.data, fmt)
        self._hooks = [modules[n].register_forward_pre_hook(lambda _m, args, fmt=fmt: (quantize(args[0], fmt),))
                       for n, fmt in activations.items()]
        self._modules = modules

    def close(self) -> None:
        for h in self._hooks:
            h.remove()
        for n, w in self._saved.items():
            self._modules[n].weight.data = w

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@torch.no_grad()
def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    model.eval()
    logits = torch.cat([model(torch.from_numpy(images[i:i + 512])) for i in range(0, len(images), 512)])
    return float((logits.argmax(1).numpy() == labels).mean())


@torch.no_grad()
def input_exponents(model: nn.Module, images: np.ndarray) -> dict[str, np.ndarray]:
    seen: dict[str, list] = {n: [] for n, _ in layers(model)}
    hooks = [m.register_forward_pre_hook(lambda _m, args, n=n: seen[n].append(exponents(args[0].numpy())))
             for n, m in layers(model)]
    model.eval()
    model(torch.from_numpy(images))
    for h in hooks:
        h.remove()
    return {n: np.concatenate(v) for n, v in seen.items()}


@dataclass(frozen=True)
class Explored:
    layer: str
    kind: str              # weights | activations
    fmt: Format
    normalised: float      # accuracy with only this tensor compressed / the original's


def explore(model: nn.Module, images: np.ndarray, labels: np.ndarray, progress: bool = True) -> list[Explored]:
    """The pruned sweep of the module docstring, for every layer's weights and input activations."""
    from tqdm import tqdm

    base = accuracy(model, images, labels)
    acts = input_exponents(model, images[:256])
    out = []
    tensors = [(n, "weights", exponents(m.weight.data.numpy())) for n, m in layers(model)]
    tensors += [(n, "activations", acts[n]) for n, _ in layers(model)]
    for name, kind, exps in tqdm(tensors, desc="custom floats", unit="tensor", disable=None if progress else True, leave=False):
        e_max, _ = natural_format(exps)
        for e_bw in range(e_max, 1, -1):
            bias = best_bias(exps, e_bw)
            if coverage(exps, e_bw, bias) < MIN_COVERAGE:
                break
            for m_bw in range(6, -1, -1):
                fmt = Format(e_bw, m_bw, bias)
                formats = {name: fmt}
                with Compressed(model, formats if kind == "weights" else {}, formats if kind != "weights" else {}):
                    normalised = accuracy(model, images, labels) / base if base else 1.0
                out.append(Explored(name, kind, fmt, normalised))
                if normalised < FLOOR:
                    break
    return out


def pick(explored: list[Explored], variant: str) -> tuple[dict[str, Format], dict[str, Format]]:
    """(weight formats, activation formats) of the exact, accurate or approximate network."""
    bar = {"exact": None, "accurate": 1.0, "approximate": 0.999}[variant]
    chosen: dict[tuple[str, str], Explored] = {}
    for key in {(e.layer, e.kind) for e in explored}:
        options = [e for e in explored if (e.layer, e.kind) == key]
        most_accurate = max(options, key=lambda e: (e.normalised, e.fmt.bits))
        if bar is None:
            chosen[key] = max(options, key=lambda e: (e.fmt.bits, e.normalised))
            continue
        meeting = [e for e in options if e.normalised >= bar - 1e-12]
        chosen[key] = min(meeting, key=lambda e: (e.fmt.bits, -e.normalised)) if meeting else most_accurate
    weights = {layer: e.fmt for (layer, kind), e in chosen.items() if kind == "weights"}
    activations = {layer: e.fmt for (layer, kind), e in chosen.items() if kind == "activations"}
    return weights, activations


def compression(model: nn.Module, weights: dict[str, Format], activations: dict[str, Format],
                input_counts: dict[str, int]) -> tuple[float, float]:
    """Bits over float32 bits, for the weights and for the layers' input activations of one frame."""
    modules = dict(layers(model))
    w_total = sum(modules[n].weight.numel() for n in modules)
    w_bits = sum(modules[n].weight.numel() * (weights[n].bits if n in weights else 32) for n in modules)
    a_total = sum(input_counts.values())
    a_bits = sum(c * (activations[n].bits if n in activations else 32) for n, c in input_counts.items())
    return w_bits / (32 * w_total), a_bits / (32 * a_total)


@torch.no_grad()
def input_counts(model: nn.Module, frame: np.ndarray) -> dict[str, int]:
    counts: dict[str, int] = {}
    hooks = [m.register_forward_pre_hook(lambda _m, args, n=n: counts.__setitem__(n, args[0][0].numel()))
             for n, m in layers(model)]
    model.eval()
    model(torch.from_numpy(frame))
    for h in hooks:
        h.remove()
    return counts
