"""Double-shot pruning (thesis ch.7), with SNIP (single-shot) as its baseline.

Double shot, with no pruning schedule and no added hyperparameter:
1. At initialisation, SNIP scores every connection by |dL/dw ⊙ w| on one minibatch and
   keeps the global top k. This is used only to split the global sparsity into a keep
   count k_l per layer.
2. The dense network is trained normally (`w_i` at init, `w_f` after).
3. In each layer, the k_l connections with the highest importance(w_i, w_f) are kept.
4. The sparse network is trained again, starting from w_f, with the pruned connections
   held at zero (torch's prune reparametrisation).

Importance metrics (7.4.1; the first three are from Zhou et al.):
- magnitude: |w_f|;
- movement: |w_f − w_i|;
- magnitude_increase: |w_f| − |w_i|;
- weighted_movement and weighted_magnitude_increase. The thesis describes these two only
  as "combining distance from 0 and moving away from 0", with their formulas in a figure
  we do not have. We use |w_f| × |w_f − w_i| and |w_f| × (|w_f| − |w_i|).

Weighted movement is the thesis's choice, and the default.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

IMPORTANCE = {
    "magnitude": lambda wi, wf: wf.abs(),
    "movement": lambda wi, wf: (wf - wi).abs(),
    "magnitude_increase": lambda wi, wf: wf.abs() - wi.abs(),
    "weighted_movement": lambda wi, wf: wf.abs() * (wf - wi).abs(),
    "weighted_magnitude_increase": lambda wi, wf: wf.abs() * (wf.abs() - wi.abs()),
}


def prunable(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _top_k_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    mask = torch.zeros(scores.numel(), dtype=torch.bool)
    mask[torch.topk(scores.flatten(), k).indices] = True
    return mask.view_as(scores)


def snip_masks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, keep: float) -> dict[str, torch.Tensor]:
    """SNIP on the model as it is (at initialisation): the global top `keep` share of |g ⊙ w|."""
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    saliency = {n: (m.weight.grad * m.weight).abs().detach() for n, m in prunable(model)}
    model.zero_grad()
    flat = torch.cat([s.flatten() for s in saliency.values()])
    k = max(1, int(round(keep * flat.numel())))
    threshold = torch.topk(flat, k).values[-1]
    return {n: s >= threshold for n, s in saliency.items()}


def layer_keep_counts(masks: dict[str, torch.Tensor]) -> dict[str, int]:
    """SNIP's global choice, as a number of connections kept per layer (at least one)."""
    return {n: max(1, int(m.sum())) for n, m in masks.items()}


def importance_masks(initial: nn.Module, trained: nn.Module, counts: dict[str, int],
                     metric: str = "weighted_movement") -> dict[str, torch.Tensor]:
    score = IMPORTANCE[metric]
    init, final = dict(prunable(initial)), dict(prunable(trained))
    return {n: _top_k_mask(score(init[n].weight.detach(), final[n].weight.detach()), k) for n, k in counts.items()}


def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Hold the pruned connections at zero through training (undo with `finalize`)."""
    modules = dict(prunable(model))
    for n, mask in masks.items():
        prune.custom_from_mask(modules[n], "weight", mask.to(modules[n].weight.dtype))


def finalize(model: nn.Module) -> None:
    for _, m in prunable(model):
        if prune.is_pruned(m):
            prune.remove(m, "weight")


def sparsity(model: nn.Module) -> float:
    weights = [m.weight.detach() for _, m in prunable(model)]
    return float(sum((w == 0).sum() for w in weights) / sum(w.numel() for w in weights))


def snip_batch(labels: np.ndarray, size: int = 256, seed: int = 0) -> np.ndarray:
    """The minibatch SNIP scores on: `size` frames drawn without replacement."""
    return np.random.default_rng(seed).choice(len(labels), min(size, len(labels)), replace=False)


def snip_keep_counts(model: nn.Module, images: np.ndarray, labels: np.ndarray, keep: float,
                     batch_size: int = 256, seed: int = 0) -> dict[str, int]:
    """Step 1, on `model` at initialisation: SNIP's per-layer keep counts."""
    batch = snip_batch(labels, batch_size, seed)
    return layer_keep_counts(snip_masks(model, torch.from_numpy(images[batch]), torch.from_numpy(labels[batch]),
                                        keep))


def prune_trained(initial: nn.Module, trained: nn.Module, counts: dict[str, int], train_fn,
                  metric: str = "weighted_movement") -> nn.Module:
    """Steps 3-4: keep each layer's most important connections of `trained` (w_f, against the
    initial w_i), then retrain it in place with the rest held at zero."""
    apply_masks(trained, importance_masks(initial, trained, counts, metric))
    train_fn(trained)
    finalize(trained)
    return trained


def double_shot(model: nn.Module, images: np.ndarray, labels: np.ndarray, keep: float, train_fn,
                metric: str = "weighted_movement", batch_size: int = 256, seed: int = 0) -> nn.Module:
    """Steps 1-4 on `model` (freshly initialised); train_fn(model) trains it in place."""
    torch.manual_seed(seed)
    initial = copy.deepcopy(model)
    counts = snip_keep_counts(model, images, labels, keep, batch_size, seed)
    train_fn(model)                                           # the dense network
    return prune_trained(initial, model, counts, train_fn, metric)


def snip(model: nn.Module, images: np.ndarray, labels: np.ndarray, keep: float, train_fn,
         batch_size: int = 256, seed: int = 0) -> nn.Module:
    """The single-shot baseline: prune at initialisation by SNIP, then train the sparse network."""
    torch.manual_seed(seed)
    batch = snip_batch(labels, batch_size, seed)
    apply_masks(model, snip_masks(model, torch.from_numpy(images[batch]), torch.from_numpy(labels[batch]), keep))
    train_fn(model)
    finalize(model)
    return model
