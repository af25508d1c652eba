"""Dynamic Duo's probe configuration and pair selection (thesis 6.4), on hand-computed cases."""

import numpy as np
import pytest

from adaptinf.policies.dynamic_duo import ModelOutputs, per_class_thresholds, select_pair, single_threshold


def outputs(name, confidence, predicted, right, cost=1.0):
    return ModelOutputs(name, np.array(confidence), np.array(predicted), np.array(right, bool), cost)


BIG = outputs("big", [0.99] * 5, [0, 0, 0, 1, 1], [True] * 5, cost=10.0)
# class 0: two right at 0.6, one wrong at 0.3; class 1: wrong at 0.7, right at 0.9
LITTLE = outputs("little", [0.6, 0.6, 0.3, 0.7, 0.9], [0, 0, 0, 1, 1], [True, True, False, False, True])


def test_single_threshold_is_the_lowest_that_reaches_the_target():
    probe = single_threshold(LITTLE, BIG, target=1.0, num_classes=2)
    recovered = probe.recover(LITTLE.confidence, LITTLE.predicted)
    # the wrong answer at 0.7 forces t > 0.7, which also recovers both right answers at 0.6
    assert recovered.tolist() == [True, True, True, True, False]
    assert 0.7 < probe.thresholds[0] <= 0.71


def test_per_class_thresholds_recover_only_what_each_class_needs():
    probe = per_class_thresholds(LITTLE, BIG, target=1.0, num_classes=2)
    assert 0.3 < probe.thresholds[0] <= 0.31 and 0.7 < probe.thresholds[1] <= 0.71
    assert probe.recover(LITTLE.confidence, LITTLE.predicted).tolist() == [False, False, True, True, False]


@pytest.mark.parametrize("per_class", [False, True])
def test_probes_always_meet_their_target_on_the_data_they_were_set_on(per_class):
    rng = np.random.default_rng(3)
    n, classes = 2000, 10
    labels = rng.integers(0, classes, n)
    confidence = rng.random(n)
    little_right = rng.random(n) < confidence            # confident answers are more often right
    big_right = rng.random(n) < 0.85
    little = ModelOutputs("l", confidence, np.where(little_right, labels, (labels + 1) % classes), little_right, 1)
    big = ModelOutputs("b", np.ones(n), labels, big_right, 10)
    configure = per_class_thresholds if per_class else single_threshold
    recoveries = []
    for target in (0.80, 0.84, 0.86):
        probe = configure(little, big, target, classes)
        recovered = probe.recover(little.confidence, little.predicted)
        assert np.where(recovered, big.right, little.right).mean() >= target
        recoveries.append(recovered.mean())
    assert recoveries[0] < 1.0


def test_unreachable_target_gives_no_probe():
    weak_big = outputs("big", [0.99] * 5, [0, 0, 0, 1, 1], [True, False, False, False, True], cost=10.0)
    assert single_threshold(LITTLE, weak_big, target=1.0, num_classes=2) is None
    assert per_class_thresholds(LITTLE, weak_big, target=1.0, num_classes=2) is None


def test_pair_selection_takes_the_cheapest_pair_by_e_pair():
    # two littles: the cheaper one needs recovering everything, the dearer one 40%
    cheap = outputs("cheap", [0.5] * 5, [0, 0, 0, 1, 1], [False] * 5, cost=0.5)
    pool = [cheap, LITTLE, BIG]
    pair = select_pair(pool, target=1.0, num_classes=2)
    assert (pair.little, pair.big) == ("little", "big")
    assert pair.recovery_rate == pytest.approx(0.4)
    assert pair.cost == pytest.approx(1.0 + 10.0 * 0.4)          # E_little + E_big x P_r
    # cheap + big costs 0.5 + 10 x 1.0: worse, though the little is cheaper
    heuristic = select_pair(pool, target=1.0, num_classes=2, exhaustive=False, top_k=2)
    assert (heuristic.little, heuristic.big, heuristic.cost) == (pair.little, pair.big, pair.cost)
    assert select_pair(pool, target=1.01, num_classes=2) is None


def _profile(device_ms, cloud_ms):
    from adaptinf.profile import CLOUD_ONLY, MOBILE_ONLY, PartitionProfile, Profile

    return Profile(bundle="b", partitions=(PartitionProfile(MOBILE_ONLY, device_ms, 5.0, 0.0, 3072, 0.8),
                                           PartitionProfile(CLOUD_ONLY, 0.0, 5.0, cloud_ms, 3072, 0.8)))


@pytest.mark.parametrize("mode, cloud_up, expected", [
    ("normal", True, ("speculate", "cloud")),          # a slow device: recover in the cloud
    ("private", True, ("speculate", "device")),        # nothing leaves the device
    ("normal", False, ("speculate", "device")),
    ("mission-critical", True, ("cloud", "cloud-only")),
    ("mission-critical", False, ("device", "mobile-only")),
])
def test_duo_policy_places_recovery_and_honours_the_modes(mode, cloud_up, expected):
    from adaptinf.policies.dynamic_duo import DynamicDuoPolicy
    from adaptinf.policies.plan import FrameContext, Telemetry

    policy = DynamicDuoPolicy(3072, little_share=0.25, recovery_rate=0.4,
                              power_saving_recovery_rate=0.2)
    telemetry = Telemetry(uplink_bps=20e6, rtt_s=0.005, radio="wifi", cloud_up=cloud_up)
    plan = policy.plan(FrameContext(mode=mode), telemetry, _profile(device_ms=40.0, cloud_ms=2.0))
    assert (plan.chosen.kind, plan.chosen.name) == expected
    if expected == ("speculate", "cloud"):
        # L = L_little + P_r x (upload + RTT + cloud): 10 ms + 0.4 x (1.2288 + 5 + 2) ms
        assert plan.chosen.latency_s == pytest.approx(0.010 + 0.4 * (3072 * 8 / 20e6 + 0.005 + 0.002))


def test_power_saving_plans_with_the_relaxed_recovery_rate_for_energy():
    from adaptinf.policies.dynamic_duo import DynamicDuoPolicy
    from adaptinf.policies.plan import FrameContext, Telemetry

    policy = DynamicDuoPolicy(3072, 0.25, recovery_rate=0.4, power_saving_recovery_rate=0.2)
    telemetry = Telemetry(uplink_bps=20e6, rtt_s=0.005, radio="wifi", cloud_up=False)
    plan = policy.plan(FrameContext(mode="power-saving"), telemetry, _profile(40.0, 2.0))
    assert plan.goal == "energy"
    assert plan.chosen.latency_s == pytest.approx(0.010 + 0.2 * 0.040)
