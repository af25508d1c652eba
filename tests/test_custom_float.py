"""SIEVE's custom floating-point formats (thesis 4.4.1): the format, bias adjustment, and the
pruned per-layer search with its exact / accurate / approximate networks."""

import numpy as np
import pytest
import torch
from torch import nn

from adaptinf.toolchain import custom_float as cf


def test_quantize_rounds_flushes_and_saturates():
    fmt = cf.Format(e_bw=3, m_bw=2, bias=4)       # exponents -3..3, mantissa 1.xx
    x = torch.tensor([1.25, 1.3, -1.3, 100.0, 0.05, 0.12, 0.0])
    q = cf.quantize(x, fmt).tolist()
    assert q[:3] == [1.25, 1.25, -1.25]           # 1.01b holds; 1.3 rounds to it
    assert q[3] == 2.0 ** 3 * 1.75                # the largest value: saturate
    assert q[4] == 0.0 and q[5] == 0.125          # below 2^-3: flush to 0, or round up to it
    assert q[6] == 0.0
    assert fmt.bits == 6


def test_bias_adjustment_reproduces_the_thesis_fc8_example():
    # FC8's weight exponents span -14..-5: a bias of 15 fits them in 4 exponent bits
    exps = np.arange(-14, -4)
    assert cf.natural_format(exps) == (4, 15)
    assert cf.coverage(exps, 4, 15) == 1.0
    assert cf.coverage(exps, 3, 15) < 1.0


def test_best_bias_keeps_the_densest_window():
    exps = np.array([-20] + [-6] * 50 + [-5] * 50 + [-4] * 50)    # one outlier far below
    bias = cf.best_bias(exps, 2)                   # 3 exponents fit
    assert (1 - bias, 3 - bias) == (-6, -4)
    assert cf.coverage(exps, 2, bias) == pytest.approx(150 / 151)


@pytest.fixture(scope="module")
def digits_mlp():
    from adaptinf.toolchain.datasets import digits_features

    x, y = digits_features()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy(x[:1200]), torch.from_numpy(y[:1200])
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
    return model.eval(), x[1200:], y[1200:]


def test_search_finds_compressed_formats_and_the_variants_order_by_bits(digits_mlp):
    model, x, y = digits_mlp
    base = cf.accuracy(model, x, y)
    explored = cf.explore(model, x, y, progress=False)
    assert {(e.layer, e.kind) for e in explored} == {(n, k) for n in ("0", "2") for k in ("weights", "activations")}
    assert cf.accuracy(model, x, y) == base                        # exploring leaves the model as it was
    for variant in ("exact", "accurate", "approximate"):
        weights, acts = cf.pick(explored, variant)
        assert set(weights) == set(acts) == {"0", "2"}
    exact, accurate, approximate = (cf.pick(explored, v) for v in ("exact", "accurate", "approximate"))
    for kind, name in ((0, "weights"), (1, "activations")):
        for layer in ("0", "2"):
            assert approximate[kind][layer].bits <= accurate[kind][layer].bits <= exact[kind][layer].bits
            # exact: the most precise format explored for the tensor, whatever chance did to its score
            assert exact[kind][layer].bits == max(e.fmt.bits for e in explored if (e.layer, e.kind) == (layer, name))
    counts = cf.input_counts(model, x[:1])
    w_ratio, a_ratio = cf.compression(model, *accurate, counts)
    assert w_ratio < 0.5 and a_ratio < 0.5                         # under 16 bits a number
    with cf.Compressed(model, *accurate):
        compressed = cf.accuracy(model, x, y)
    assert compressed >= 0.97 * base                               # combined layers lose a little at most
    assert cf.accuracy(model, x, y) == base                        # and closing restores the weights
