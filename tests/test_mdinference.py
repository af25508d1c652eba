"""MDInference selection (paper 003 section IV-D) by hand-computed cases and properties, and `adaptinf sim`."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adaptinf.policies import mdinference as md
from adaptinf.policies.mdinference import ModelStats
from adaptinf.programs.sim import NASNET_FICTIONAL, PAPER_003_DEVICE, PAPER_003_MODELS, Network, main, simulate

MODELS = list(PAPER_003_MODELS)
BY_NAME = {m.name: m for m in MODELS}


@pytest.mark.parametrize("budget_ms, base", [(150, "NasNet Large"), (100, "InceptionV4"), (40, "InceptionV3"),
                                             (22, "NasNet Mobile"), (5, "MobileNetV1 0.75"),
                                             (2, "MobileNetV1 0.25")])   # nothing fits: the fastest
def test_base_model_is_the_most_accurate_that_fits(budget_ms, base):
    assert md.base_model(MODELS, budget_ms / 1e3).name == base


def test_exploration_set_and_utility_by_hand():
    a = ModelStats("a", 0.80, 0.100, 0.010)
    b = ModelStats("b", 0.70, 0.095, 0.002)      # within a's one sigma
    c = ModelStats("c", 0.90, 0.108, 0.004)      # within, but would overrun the budget
    d = ModelStats("d", 0.60, 0.050, 0.001)      # outside
    budget = 0.111
    assert md.base_model([a, b, c, d], budget) is a               # c: 0.108 + 0.004 >= 0.111
    assert md.exploration_set([a, b, c, d], a) == (a, b, c)
    assert md.utility(a, budget) == pytest.approx(0.80 * (0.111 - 0.110) / 0.011)
    assert md.utility(b, budget) == pytest.approx(0.70 * (0.111 - 0.097) / 0.016)
    assert md.utility(c, budget) == 0.0                          # eq. 3 is negative: never picked
    s = md.select([a, b, c, d], budget, np.random.default_rng(0))
    ua, ub = md.utility(a, budget), md.utility(b, budget)
    assert s.probabilities == pytest.approx((ua / (ua + ub), ub / (ua + ub), 0.0))
    picks = [md.select([a, b, c, d], budget, np.random.default_rng(i)).chosen.name for i in range(2000)]
    assert picks.count("c") == 0
    assert picks.count("b") / len(picks) == pytest.approx(ub / (ua + ub), abs=0.04)


models_st = st.lists(st.builds(ModelStats, st.text(min_size=1, max_size=4), st.floats(0.01, 1.0),
                               st.floats(0.001, 0.3), st.floats(0.0, 0.05)), min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(models_st, st.floats(0.0, 0.4), st.integers(0, 2**32 - 1))
def test_never_picks_a_model_predicted_to_miss_when_one_fits(models, budget, seed):
    chosen = md.select(models, budget, np.random.default_rng(seed)).chosen
    if any(m.mean_s + m.std_s < budget for m in models):
        assert chosen.mean_s + chosen.std_s < budget
    else:
        assert chosen.mean_s == min(m.mean_s for m in models)


def test_sim_reproduces_the_papers_shape_at_250_ms():
    network = Network(0.100, 0.050)
    runs = {p: simulate(p, MODELS, network, 0.250, 4000, PAPER_003_DEVICE, seed=1)
            for p in ("mdinference", "static-greedy", "static-accuracy", "random")}
    md_run = runs["mdinference"]
    assert md_run.sla_attainment == 1.0                       # duplication: no SLA violation
    assert md_run.aggregate_accuracy > 0.80                   # paper: 82.39% (university network)
    assert all(md_run.aggregate_accuracy > r.aggregate_accuracy for p, r in runs.items() if p != "mdinference")
    assert md_run.on_device_reliance < runs["static-accuracy"].on_device_reliance
    without = simulate("static-accuracy", MODELS, network, 0.250, 4000, None, seed=1)
    assert without.sla_attainment < 0.9                       # no backup: the network's tail misses the SLA


def test_stage_three_weighs_the_fictional_model_by_accuracy():
    """NasNet Fictional has NasNet Large's timing at 50% accuracy: eq. 3 gives it utility in
    the ratio 50 / 82.6, so it is picked less than NasNet Large, and less than at random."""
    models, network = MODELS + [NASNET_FICTIONAL], Network(0.100, 0.050)
    mdi = simulate("mdinference", models, network, 0.250, 3000, PAPER_003_DEVICE, seed=2)
    related_random = simulate("related-random", models, network, 0.250, 3000, PAPER_003_DEVICE, seed=2)
    assert mdi.aggregate_accuracy > related_random.aggregate_accuracy
    ratio = mdi.usage["NasNet Fictional"] / mdi.usage["NasNet Large"]
    assert ratio == pytest.approx(50 / 82.6, abs=0.1)


def test_sim_cli_prints_a_table_and_refuses_bad_input(tmp_path, capsys):
    trace = tmp_path / "trace.txt"
    trace.write_text("80\n120\n95\n300\n")
    assert main(["--sla-ms", "250", "--requests", "200", "--trace", str(trace)]) == 0
    out = capsys.readouterr().out
    assert "(trace)" in out and "mdinference" in out and "static-greedy" in out
    assert main(["--policies", "oracle"]) == 2
    (tmp_path / "bad.csv").write_text("resnet,76,notanumber,1\n")
    assert main(["--models", str(tmp_path / "bad.csv")]) == 2
    assert "expected name,accuracy" in capsys.readouterr().err
