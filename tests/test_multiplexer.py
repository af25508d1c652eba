"""The neural model multiplexer (papers 000/001): Algorithm 2 and eq. 9-14 at run time, the
contrastive and multiplexer losses of Algorithm 1, and a tiny end-to-end build into a bundle."""

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from adaptinf.bundle import load_bundle
from adaptinf.policies import multiplexer as policy
from adaptinf.toolchain import multiplexer as mux
from adaptinf.toolchain.multiplexer_build import report


# ---- Algorithm 2 and the cost equations ----------------------------------------------------
def test_select_argmax_takes_one_model_per_frame():
    w = np.array([[0.2, 0.7, 0.1], [0.5, 0.1, 0.4]])
    assert policy.select(w).tolist() == [[False, True, False], [True, False, False]]


def test_threshold_takes_every_model_above_it_and_falls_back_to_the_argmax():
    w = np.array([[0.45, 0.40, 0.15], [0.34, 0.33, 0.33]])
    mask = policy.select(w, threshold=0.3)
    assert mask[0].tolist() == [True, True, False]       # two above T: an ensemble of two
    assert mask[1].tolist() == [True, True, True]
    assert policy.select(w, threshold=0.5).tolist() == [[True, False, False], [True, False, False]]


def test_cheapest_takes_the_first_model_in_cost_order_that_passes():
    w = np.array([[0.2, 0.8, 0.95], [0.7, 0.9, 0.99], [0.1, 0.2, 0.3]])
    mask = policy.select_cheapest(w, threshold=0.5)
    assert mask.tolist() == [[False, True, False], [True, False, False], [False, False, True]]


def test_utility_routing_prices_each_model_by_its_cost():
    w = np.array([[0.60, 0.70, 0.90], [0.95, 0.96, 0.97]])
    costs = np.array([1.0, 4.0, 10.0])                   # the largest's cost is the unit
    assert policy.select_by_utility(w, costs, 0.0).tolist() == policy.select(w).tolist()   # no price: argmax w
    # at 0.1 per largest-model cost: frame 0 keeps the largest (0.90 - 0.1 > 0.70 - 0.04), frame 1 does not
    assert policy.select_by_utility(w, costs, 0.1).tolist() == [[False, False, True], [True, False, False]]
    assert policy.select_by_utility(w, costs, 10.0)[:, 0].all()     # a high price: the cheapest everywhere


def test_a_higher_cost_weight_never_buys_a_dearer_model():
    rng = np.random.default_rng(0)
    w, costs = rng.random((500, 4)), np.array([3.0, 1.0, 8.0, 2.0])
    spent = [costs[policy.select_by_utility(w, costs, lam).argmax(1)] for lam in (0, 0.05, 0.2, 1, 5)]
    assert all((later <= earlier).all() for earlier, later in zip(spent, spent[1:]))


def test_pool_overlap_counts_shared_errors_and_what_an_oracle_adds():
    from adaptinf.toolchain.complementary_pool import overlap

    right = np.array([[1, 1, 0, 0, 1, 0],           # the largest (index 0)
                      [1, 0, 1, 0, 1, 0],
                      [0, 1, 1, 0, 0, 1]], bool)
    o = overlap(right, largest=0)
    assert o["error_jaccard"][0][1] == pytest.approx(2 / 4)        # wrong together on frames 3 and 5, of 2, 3, 5, 1
    assert o["both_wrong"][1][2] == pytest.approx(1 / 6)           # frame 3 only
    assert o["oracle_accuracy"] == pytest.approx(5 / 6)
    assert o["oracle_gain"] == pytest.approx(2 / 6)                # frames 2 and 5: the largest wrong, another right


@pytest.mark.slow
def test_a_tiny_complementary_pool_is_built_measured_and_routed(tmp_path):
    from adaptinf.toolchain.complementary_pool import PoolConfig, build_and_measure, report

    r = build_and_measure(tmp_path, PoolConfig(n_pool=160, n_mux=96, n_val=64, n_test=128, epochs=1, mux_epochs=1,
                                               members=("resnet6_w16", "mobilenet_w32")), progress=False)
    assert r["names"] == ["resnet6_w16", "mobilenet_w32"] and r["largest"] == "resnet6_w16"
    assert r["flops"][0] > r["flops"][1] > r["multiplexer_flops"] > 0
    flops = [p["flops"] for p in r["curve"]]
    assert all(b <= a + 1e-6 for a, b in zip(flops, flops[1:]))   # a higher price, never more compute
    for point in r["curve"] + [r["cheapest"]]:
        assert sum(point["share"]) == pytest.approx(1.0)
        assert point["random_accuracy"] == pytest.approx(np.dot(point["share"], r["accuracy"]))
    assert len(r["static_ensembles"]) == 3                        # every non-empty subset of two
    everyone = next(e for e in r["static_ensembles"] if len(e["members"]) == 2)
    assert everyone["accuracy"] == pytest.approx(r["ensemble_all"]["accuracy"])
    assert r["ensemble"]["random_accuracy"] is None or sum(r["ensemble"]["share"]) == pytest.approx(1.0)
    assert (tmp_path / "multiplexer.onnx").exists() and "oracle" in report(r)


def test_combine_is_the_mean_of_the_selected_models_probabilities():
    probs = np.array([[[0.9, 0.1]], [[0.3, 0.7]], [[0.0, 1.0]]])        # (N=3, B=1, C=2)
    assert np.allclose(policy.combine(probs, np.array([[True, True, False]])), [[0.6, 0.4]])
    assert np.allclose(policy.combine(probs, np.array([[False, False, True]])), [[0.0, 1.0]])


def test_device_cloud_decision_is_w_cloud_above_one_half():
    assert policy.to_cloud(np.array([[0.6, 0.4], [0.4, 0.6], [0.5, 0.5]])).tolist() == [False, True, False]
    assert policy.to_cloud(np.array([[0.1, 0.9]]), threshold=0.95).tolist() == [False]


def test_calibrated_threshold_keeps_the_most_frames_local_within_the_accuracy_bound():
    rng = np.random.default_rng(0)
    n = 1000
    device_right = rng.random(n) < 0.6
    cloud_right = device_right | (rng.random(n) < 0.5)
    # an informative multiplexer: w_cloud is high exactly where the device is wrong
    w = np.where(device_right, 0.90, 0.97) + rng.normal(0, 0.005, n)
    t = policy.calibrate_pair_threshold(w, device_right, cloud_right, accuracy_loss=0.0)
    local = w <= t
    assert np.where(local, device_right, cloud_right).mean() >= cloud_right.mean()
    assert local.mean() > 0.5                  # most device-right frames stay local, none is lost
    # a bound that nothing local can meet: everything goes to the cloud
    t = policy.calibrate_pair_threshold(w, np.zeros(n, bool), cloud_right, accuracy_loss=0.0)
    assert (w > t).all()


def test_hybrid_cost_interpolates_between_the_two_sides_and_pays_for_the_multiplexer():
    c = policy.SideCost(mux=1.0, mobile=10.0, upload=4.0, cloud=2.0, download=1.0)
    assert c.mobile_only() == 10.0 and c.cloud_only() == 7.0
    assert c.hybrid(1.0) == c.hybrid_local() == 11.0 and c.hybrid(0.0) == c.hybrid_cloud() == 8.0
    assert c.hybrid(0.25) == pytest.approx(0.25 * 11.0 + 0.75 * 8.0)
    # eq. 14: a frame that calls two models pays for both
    assert policy.cloud_pool_cost(np.array([1.0, 0.5]), np.array([100.0, 300.0])) == 250.0


# ---- Algorithm 1's losses ------------------------------------------------------------------------
def test_cosine_distance_runs_from_0_for_equal_to_1_for_opposite():
    a = torch.nn.functional.normalize(torch.tensor([[1.0, 2.0, 3.0]]), dim=1)
    assert mux.cosine_distance(a, a).item() == pytest.approx(0.0, abs=1e-6)
    assert mux.cosine_distance(a, -a).item() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("correct, expected", [((True, True), "closer"), ((True, False), "apart"),
                                               ((False, True), "apart"), ((False, False), "still")])
def test_contrastive_loss_pulls_agreeing_models_together_and_pushes_disagreeing_apart(correct, expected):
    torch.manual_seed(0)
    raw = [torch.randn(1, 8, requires_grad=True) for _ in range(2)]
    proj = [torch.nn.functional.normalize(r, dim=1) for r in raw]
    before = mux.cosine_distance(proj[0], proj[1]).item()
    loss = mux.contrastive_loss(proj, torch.tensor([correct]))
    loss.backward()
    with torch.no_grad():
        stepped = [torch.nn.functional.normalize(r - 0.1 * r.grad, dim=1) for r in raw]
    after = mux.cosine_distance(stepped[0], stepped[1]).item()
    if expected == "closer":
        assert after < before
    elif expected == "apart":
        assert after > before
    else:
        assert all(torch.count_nonzero(r.grad) == 0 for r in raw)


def test_aggregator_divides_by_cost_so_an_undecided_multiplexer_is_uniform():
    m = mux.Multiplexer(3, np.array([1.0, 2.0, 4.0]))
    with torch.no_grad():
        m.aggregator.weight.zero_()
    w, q = m.eval()(torch.randint(0, 255, (4, 32, 32, 3), dtype=torch.uint8))
    assert torch.allclose(w, torch.full((4, 3), 1 / 3))
    assert torch.allclose(q.norm(dim=1), torch.ones(4))
    with torch.no_grad():                          # equal scores: the cheap model's are divided least
        m.aggregator.weight.fill_(1.0)
    w, _ = m(torch.full((1, 32, 32, 3), 200, dtype=torch.uint8))
    expected = torch.softmax(m.features(m.preprocess(torch.full((1, 32, 32, 3), 200, dtype=torch.uint8))).sum()
                             / torch.tensor([1.0, 2.0, 4.0]), 0)
    assert torch.allclose(w[0], expected, atol=1e-6)


def test_multiplexer_learns_which_model_is_right_on_which_frames():
    """Model 0 is right on bright frames, model 1 on dark ones: eq. 7 + 8 must learn to tell."""
    rng = np.random.default_rng(0)
    n = 512
    bright = rng.random(n) < 0.5
    images = np.where(bright[:, None, None, None], 190, 50) + rng.integers(-30, 30, (n, 32, 32, 3))
    images = images.clip(0, 255).astype(np.uint8)
    labels = rng.integers(0, 4, n)
    right, wrong = np.full(4, 0.1, np.float32), np.full(4, 0.3, np.float32)
    probs = np.empty((2, n, 4), np.float32)
    for model, where in ((0, bright), (1, ~bright)):
        probs[model] = np.where(where[:, None], right, wrong)
        probs[model, np.arange(n), labels] = np.where(where, 0.7, 0.1)    # the true class
    config = mux.MuxConfig(widths=(8, 16), mux_epochs=8, batch_size=64)
    embeds = np.tile(np.eye(2, config.projection_dim, dtype=np.float32)[:, None, :], (1, n, 1))
    m = mux.Multiplexer(2, np.ones(2), config.meta_features, config.projection_dim)
    mux.train_multiplexer(m, images, labels, probs, embeds, config, progress=False)
    chosen = mux.mux_weights(m, images).argmax(1)
    assert (chosen == np.where(bright, 0, 1)).mean() > 0.9


def test_correctness_objective_learns_each_models_chance_of_being_right():
    """w_i = sigmoid(s_i) trained on 'is model i right': on bright frames model 0 always is."""
    rng = np.random.default_rng(0)
    n = 512
    bright = rng.random(n) < 0.5
    images = (np.where(bright[:, None, None, None], 190, 50) + rng.integers(-30, 30, (n, 32, 32, 3)))
    images = images.clip(0, 255).astype(np.uint8)
    labels = np.zeros(n, np.int64)
    probs = np.zeros((2, n, 2), np.float32)
    probs[0, :, 0] = np.where(bright, 0.9, 0.1)          # model 0: right on bright frames only
    probs[0, :, 1] = 1 - probs[0, :, 0]
    probs[1, :, 0] = 0.8                                  # model 1: always right
    probs[1, :, 1] = 0.2
    config = mux.MuxConfig(widths=(8, 16), mux_epochs=8, batch_size=64, objective="correctness")
    embeds = np.tile(np.eye(2, config.projection_dim, dtype=np.float32)[:, None, :], (1, n, 1))
    m = mux.Multiplexer(2, np.ones(2), config.meta_features, config.projection_dim, "correctness")
    mux.train_multiplexer(m, images, labels, probs, embeds, config, progress=False)
    w = mux.mux_weights(m, images)
    assert w[bright, 0].mean() > 0.8 and w[~bright, 0].mean() < 0.2 and w[:, 1].mean() > 0.8
    # the pair's one value: w_cloud = 1 - P(the device's model is right)
    pair = mux.mux_weights(m, images, pair=True)
    assert np.allclose(pair[:, 1], 1 - w[:, 0], atol=1e-6)


def test_pool_config_rejects_what_cannot_train():
    with pytest.raises(ValueError, match=">= 8"):
        mux.MuxConfig(widths=(4, 8))
    with pytest.raises(ValueError, match="two models"):
        mux.MuxConfig(widths=(16,))
    with pytest.raises(ValueError, match="objective"):
        mux.MuxConfig(objective="vibes")


# ---- the whole of Algorithm 1, tiny, into a bundle -----------------------------------------------
def test_build_writes_a_bundle_whose_full_model_is_the_largest_of_the_pool(mux_build):
    out, _ = mux_build
    bundle = load_bundle(out)                        # every file's hash checks
    assert bundle.full_model.name == "pool_w16"
    assert [m.role for m in bundle.models] == ["pool", "pool", "multiplexer", "multiplexer"]
    assert bundle.model("pool_w16").flops > 3 * bundle.model("pool_w8").flops
    section = json.loads((out / "manifest.json").read_text())["multiplexer"]
    assert section["pool"] == ["pool_w8", "pool_w16"] and section["pair"]["paper_threshold"] == 0.5
    assert section["pair"]["threshold"] == section["results"]["pair"]["calibrated"]["threshold"]
    assert (out / "multiplexer.png").stat().st_size > 0


def test_the_exported_multiplexer_gives_weights_over_the_pool(mux_build):
    out, _ = mux_build
    for name in ("multiplexer.onnx", "multiplexer_pair.onnx"):
        session = ort.InferenceSession(str(out / name), providers=["CPUExecutionProvider"])
        frame = np.random.default_rng(1).integers(0, 255, (1, 32, 32, 3), dtype=np.uint8)
        w = session.run(None, {"image": frame})[0]
        assert w.shape == (1, 2) and np.isclose(w.sum(), 1.0, atol=1e-5) and (w > 0).all()


def test_results_account_flops_by_eq_14_and_report_them(mux_build):
    _, r = mux_build
    flops = np.array([m["flops"] for m in r["models"]])
    assert sum(r["argmax"]["called"]) == pytest.approx(1.0)     # argmax: exactly one model a frame
    assert sum(r["cheapest"]["called"]) == pytest.approx(1.0)   # so is the cheapest that passes
    assert r["argmax"]["flops"] == pytest.approx(np.dot(r["argmax"]["called"], flops) + r["multiplexer_flops"])
    assert sum(r["threshold"]["called"]) >= 1.0 - 1e-9           # threshold: one or more
    assert r["threshold"]["value"] in [t for t, _ in r["threshold"]["sweep"]]
    assert max(r["models"][0]["accuracy"], r["models"][1]["accuracy"]) <= r["oracle_accuracy"]
    pair = r["pair"]
    for row in (pair["paper"], pair["calibrated"]):
        assert 0.0 <= row["local_share"] <= 1.0
        # random routing at the same share is the share-weighted mix of the two models
        assert row["random_routing"] == pytest.approx(row["local_share"] * pair["mobile_only"]
                                                      + (1 - row["local_share"]) * pair["cloud_only"])
    assert pair["paper"]["threshold"] == 0.5
    text = report(r)
    assert "pool_w8" in text and "paper's 0.5" in text and "calibrated" in text


def _rewrite(out, copy, change):
    """A copy of the bundle at `copy` with its manifest changed (and re-hashed)."""
    import shutil

    from adaptinf.bundle import write_manifest

    shutil.copytree(out, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    change(manifest)
    write_manifest(copy, manifest)
    return copy


def test_bundle_reads_the_multiplexer_section_and_rejects_a_broken_one(mux_build, tmp_path):
    from adaptinf.bundle import BundleError

    out, _ = mux_build
    spec = load_bundle(out).multiplexer
    assert spec.pool == ("pool_w8", "pool_w16") and spec.pair.device == "pool_w8" and spec.pair.cloud == "pool_w16"
    assert spec.costs[0] == 1.0 and spec.costs[1] > 3.0
    wrong_cloud = _rewrite(out, tmp_path / "a", lambda m: m["multiplexer"]["pair"].update(cloud="pool_w8"))
    with pytest.raises(BundleError, match="not the bundle's full model"):
        load_bundle(wrong_cloud)
    unknown = _rewrite(out, tmp_path / "b", lambda m: m["multiplexer"].update(model="nope"))
    with pytest.raises(BundleError, match="'nope'"):
        load_bundle(unknown)


def test_table_bench_rows_follow_eq_9_to_13(mux_build, tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "bench" / "multiplexer_table.py"
    spec = importlib.util.spec_from_file_location("multiplexer_table", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out, _ = mux_build
    assert bench.main(["--bundle", str(out), "--runs", "3", "--json", str(tmp_path / "rows.json")]) == 0
    mobile, cloud, *hybrids = json.loads((tmp_path / "rows.json").read_text())
    assert mobile["local"] == 1.0 and cloud["local"] == 0.0
    for row in hybrids:
        # eq. 13 mixes eq. 11 and eq. 12: each within the multiplexer's cost of the two extremes
        low, high = sorted((mobile["latency_s"], cloud["latency_s"]))
        assert low <= row["latency_s"] <= high + 0.01
        assert 0.0 <= row["local"] <= 1.0
