"""The rate sweep of the matched-response-time benchmarks (rig/rate_sweep.py): the highest
rate within the bound, stopping at the first that fails, on a queue with a known curve."""

import numpy as np

from adaptinf.rig.rate_sweep import RatePoint, highest_rate


def mm1(service_s: float):
    """An M/M/1 queue's mean response time 1 / (mu - lambda); past capacity, frames fail."""
    def measure(rate: float) -> RatePoint:
        mu = 1.0 / service_s
        if rate >= mu:
            return RatePoint(rate, 100, float("inf"), float("inf"), failed=10)
        return RatePoint(rate, 100, 1.0 / (mu - rate), 0.0, failed=0)
    return measure


def test_the_highest_rate_within_the_bound_and_no_further():
    tried = []
    measure = mm1(0.010)                                   # 100 frames/s at most
    best, points = highest_rate([90, 10, 50, 80, 95, 99], 0.05,   # 1/(100 - rate) <= 50 ms: rate <= 80
                                lambda r: tried.append(r) or measure(r))
    assert best == 80
    assert tried == [10, 50, 80, 90]                       # in order, stopping at the first failure
    assert [p.within(0.05) for p in points] == [True, True, True, False]


def test_a_refused_frame_fails_the_rate_whatever_the_mean():
    assert not RatePoint(10, 100, 0.001, 0.002, failed=1).within(1.0)
    best, points = highest_rate([5, 10], 1.0, lambda r: RatePoint(r, 10, 0.01, 0.01, failed=1))
    assert best is None and len(points) == 1


def test_a_faster_server_sustains_more_at_the_same_bound():
    rates = [float(r) for r in range(10, 400, 10)]
    slow, _ = highest_rate(rates, 0.05, mm1(0.010))
    fast, _ = highest_rate(rates, 0.05, mm1(0.005))
    assert (slow, fast) == (80.0, 180.0)


def test_poisson_arrivals_have_the_rate_and_the_spread():
    from adaptinf.rig.rate_sweep import poisson_offsets

    t = poisson_offsets(50.0, 20_000, seed=3)
    gaps = np.diff(np.concatenate([[0.0], t]))
    assert np.all(gaps > 0) and abs(gaps.mean() - 0.02) < 0.001
    assert abs(gaps.std() / gaps.mean() - 1.0) < 0.05          # exponential: CV 1
    assert np.array_equal(t, poisson_offsets(50.0, 20_000, seed=3))


def test_bisection_narrows_the_bracket():
    measure = mm1(0.010)                                   # within 50 ms up to exactly 80 frames/s
    best, points = highest_rate([20, 60, 100], 0.05, measure, refine=6)
    assert 60 <= best <= 80 and 80 - best < 40 / 2 ** 6 + 1e-9
    assert len(points) == 3 + 6
