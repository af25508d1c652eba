"""Double-shot pruning (thesis ch.7) and SNIP, on a small MLP over scikit-learn's digits."""

import pytest
import torch
from torch import nn

from adaptinf.toolchain import pruning


def test_importance_metrics_on_hand_values():
    wi, wf = torch.tensor([0.5, -0.1, 0.2]), torch.tensor([0.4, 0.3, -0.6])
    m = {k: f(wi, wf).tolist() for k, f in pruning.IMPORTANCE.items()}
    assert m["magnitude"] == pytest.approx([0.4, 0.3, 0.6])
    assert m["movement"] == pytest.approx([0.1, 0.4, 0.8])
    assert m["magnitude_increase"] == pytest.approx([-0.1, 0.2, 0.4])
    assert m["weighted_movement"] == pytest.approx([0.04, 0.12, 0.48])


@pytest.fixture(scope="module")
def digits():
    from adaptinf.toolchain.datasets import digits_features

    x, y = digits_features()
    return x[:1300], y[:1300], x[1300:], y[1300:]


def mlp():
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def trainer(x, y, steps=150):
    def train(model):
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        for _ in range(steps):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt), yt).backward()
            opt.step()
    return train


def accuracy(model, x, y):
    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def test_snip_splits_the_global_budget_into_layer_counts(digits):
    x, y, _, _ = digits
    torch.manual_seed(0)
    masks = pruning.snip_masks(mlp(), torch.from_numpy(x[:256]), torch.from_numpy(y[:256]), keep=0.1)
    counts = pruning.layer_keep_counts(masks)
    total = 64 * 64 + 64 * 10
    assert sum(counts.values()) == pytest.approx(0.1 * total, abs=3)
    assert set(counts) == {"0", "2"} and all(c >= 1 for c in counts.values())


def test_double_shot_keeps_snips_layer_counts_and_the_zeros_through_retraining(digits):
    x, y, xv, yv = digits
    torch.manual_seed(0)
    model = mlp()
    torch.manual_seed(0)
    batch = pruning.snip_batch(y)
    counts = pruning.layer_keep_counts(pruning.snip_masks(mlp(), torch.from_numpy(x[batch]),
                                                          torch.from_numpy(y[batch]), keep=0.2))
    pruned = pruning.double_shot(model, x, y, keep=0.2, train_fn=trainer(x, y))
    kept = {n: int((m.weight != 0).sum()) for n, m in pruning.prunable(pruned)}
    assert kept == counts                                  # the same split, after retraining
    assert pruning.sparsity(pruned) == pytest.approx(0.8, abs=0.01)
    assert accuracy(pruned, xv, yv) > 0.85                 # a dense MLP here scores about 0.95


def test_snip_baseline_trains_a_sparse_network(digits):
    x, y, xv, yv = digits
    torch.manual_seed(0)
    pruned = pruning.snip(mlp(), x, y, keep=0.2, train_fn=trainer(x, y))
    assert pruning.sparsity(pruned) == pytest.approx(0.8, abs=0.01)
    assert not any(n.endswith("_orig") for n, _ in pruned.named_parameters())   # finalised
    assert accuracy(pruned, xv, yv) > 0.8
