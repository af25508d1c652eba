"""The toolchain on a tiny configuration: seconds, real training, real export."""

import json

import numpy as np
import pytest
import torch

from adaptinf.bundle import load_bundle
from adaptinf.toolchain import datasets
from adaptinf.toolchain.onnx_accuracy import split_accuracy_onnx, split_logits_onnx
from adaptinf.toolchain.split_builder import (DrSearch, SplitBuildConfig, build_split, export_point, load_data,
                                              loss_upper_bound, search_min_dr, train_split_candidate)
from adaptinf.toolchain.models import glyph_resnet
from adaptinf.toolchain.training import train

TINY = SplitBuildConfig(name="tiny", n_train=700, n_val=200, epochs=2, finetune_samples=300,
                        points=("RB1", "RB4"), max_dr=3, accuracy_loss=0.05, model_kwargs={"width": 8})


def _correct(n_right: int, n: int = 1000, offset: int = 0) -> np.ndarray:
    """n frames, n_right of them right (from `offset`, cyclically)."""
    c = np.zeros(n, bool)
    c[(np.arange(n_right) + offset) % n] = True
    return c


def test_search_takes_the_first_d_r_whose_loss_bound_meets_the_bound():
    base = _correct(900)
    splits = {1: _correct(700), 2: _correct(885), 3: _correct(895), 4: _correct(900)}
    tried = []
    result = search_min_dr(64, lambda k: tried.append(k) or splits[k], base, bound=0.02, confidence=0.95)
    assert result.chosen == 3 and tried == [1, 2, 3]   # stops at the first acceptable D_r (Algorithm 1 line 22)
    assert [k for k, _, _ in result.trials] == [1, 2, 3]
    # D_r=2 loses 1.5 points: within 2 as an estimate, but its 95% bound is above 2
    assert 0.015 < result.trials[1][2] and result.trials[1][2] > 0.02
    point = search_min_dr(64, lambda k: splits[k], base, bound=0.02, confidence=0.0)
    assert point.chosen == 2                           # the paper's point estimate takes it


def test_a_d_r_must_meet_the_bound_on_both_halves_of_the_validation_frames():
    """Lucky on the frames it was chosen on, not on the others: rejected. A split whose errors
    all fall on the even frames passes the bound over all frames but not on the even half."""
    base = np.ones(2000, bool)
    lucky = base.copy()
    lucky[np.arange(0, 2000, 2)[:16]] = False        # 16 of 2000 wrong (0.8 points), all on one half
    assert loss_upper_bound(base, lucky, 0.95) <= 0.02     # over all frames: within the bound
    even_half_ucb = loss_upper_bound(base[::2], lucky[::2], 0.95)
    assert even_half_ucb > 0.02
    spread = base.copy()
    spread[np.arange(0, 2000, 125)] = False           # 16 wrong, spread over both halves
    splits = {1: lucky, 2: spread}
    result = search_min_dr(8, lambda k: splits[k], base, bound=0.02, confidence=0.95)
    assert result.chosen == 2 and result.trials[0][2] == pytest.approx(even_half_ucb)


def test_the_loss_bound_is_the_paired_difference_with_its_standard_error():
    base, split = _correct(900), _correct(880, offset=5)    # paired: most frames agree
    d = base.astype(float) - split.astype(float)
    expected = d.mean() + 1.6448536269514722 * d.std(ddof=1) / np.sqrt(len(d))
    assert loss_upper_bound(base, split, 0.95) == pytest.approx(expected)
    assert loss_upper_bound(base, base, 0.95) == 0.0                 # identical answers: no loss, no doubt
    assert loss_upper_bound(base, split, 0.0) == pytest.approx(0.02)


def test_search_reports_no_choice_when_nothing_qualifies():
    result = search_min_dr(3, lambda k: _correct(100), _correct(900), bound=0.02, confidence=0.95)
    assert result.chosen is None and [k for k, _, _ in result.trials] == [1, 2, 3]


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    manifest = build_split(TINY, out, progress=False)
    return out, manifest


def test_tiny_build_makes_a_loadable_bundle_with_minimal_d_r(tiny_bundle):
    out, manifest = tiny_bundle
    bundle = load_bundle(out)
    split = manifest["split"]
    target = split["baseline_accuracy"] - split["accuracy_loss_bound"]
    assert {p.name for p in bundle.split.points} | {p["name"] for p in split["rejected_points"]} == {"RB1", "RB4"}
    for p in split["points"]:
        trials = p["search"]
        assert trials[-1]["D_r"] == p["D_r"] and trials[-1]["accuracy"] >= target
        assert trials[-1]["loss_ucb"] <= split["accuracy_loss_bound"]
        assert all(t["loss_ucb"] > split["accuracy_loss_bound"] for t in trials[:-1])  # every smaller D_r failed it
        assert p["upload_bytes"] == int(np.prod(p["reduced_shape"][1:]))
        assert p["head_flops"] > 0 and p["tail_flops"] > 0


def test_recorded_accuracy_is_the_quantised_onnx_accuracy(tiny_bundle):
    out, manifest = tiny_bundle
    _, val, _ = load_data(TINY, (32, 32))
    for p in manifest["split"]["points"]:
        measured = split_accuracy_onnx(out / p["head"], out / p["tail"], val.images, val.labels)
        assert measured == pytest.approx(p["accuracy"], abs=1e-9)


def test_head_plus_tail_reproduce_the_split_models_logits(tmp_path):
    torch.manual_seed(0)
    data = datasets.glyphs(400, seed=5)
    train_data, val = datasets.split_train_val(data, 100, 5)
    base = glyph_resnet(width=8)
    train(base, train_data.images, train_data.labels, epochs=1, progress=False)
    config = SplitBuildConfig(finetune_samples=200)
    for point, d_r in (("RB2", 2), ("RB5", 3)):
        split, _ = train_split_candidate(base, point, d_r, train_data, val, config, progress=False)
        entry = export_point(split, point, tmp_path, val, DrSearch(d_r, ((d_r, 0.0, 0.0),)))
        split.butterfly.quantize_upload = False
        with torch.no_grad():
            expected = split(torch.from_numpy(val.images)).numpy()
        got = split_logits_onnx(tmp_path / entry["head"], tmp_path / entry["tail"], val.images, quantized=False)
        assert np.allclose(got, expected, atol=1e-4), np.abs(got - expected).max()
        assert json.dumps(entry)  # the manifest entry is plain JSON
