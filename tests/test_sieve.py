"""SIEVE's selector and speculation history (thesis 4.3.2)."""

import pytest

from adaptinf.policies.dynamic_duo import DynamicDuoPolicy
from adaptinf.policies.plan import FrameContext, Telemetry
from adaptinf.policies.sieve import DIRECT_TO_CLOUD, NORMAL, TRUST_LITTLE, SievePolicy, SpeculationHistory
from test_dynamic_duo import _profile


def test_history_rule_1_trusts_the_little_model_after_an_agreeing_recovery():
    h = SpeculationHistory(window_s=0.1)
    h.record(b"cam", 10.0, recovered=True, agreed=True)
    assert h.advice(b"cam", 10.05) == TRUST_LITTLE
    assert h.advice(b"cam", 10.2) == NORMAL          # too far apart in time: not the same view
    assert h.advice(b"other", 10.05) == NORMAL       # another client's stream


def test_history_rule_2_goes_straight_to_the_server_after_a_disagreeing_recovery():
    h = SpeculationHistory(window_s=0.1)
    h.record(b"cam", 10.0, recovered=True, agreed=False)
    assert h.advice(b"cam", 10.08) == DIRECT_TO_CLOUD
    h.record(b"cam", 10.08, recovered=False)        # a confident frame resets the history
    assert h.advice(b"cam", 10.1) == NORMAL


def sieve(p_r=0.4):
    return SievePolicy(DynamicDuoPolicy(3072, little_share=0.25, recovery_rate=p_r,
                                        power_saving_recovery_rate=p_r / 2))


def telemetry(uplink_bps=20e6, slowdown=1.0, cloud_up=True):
    return Telemetry(uplink_bps=uplink_bps, rtt_s=0.005, radio="wifi", cloud_up=cloud_up, cloud_slowdown=slowdown)


def test_selector_speculates_when_l_m_plus_l_t_p_r_beats_l_t():
    # L_m = 10 ms (a quarter of a 40 ms device model), L_t = 1.2 + 5 + 2 ms = 8.2 ms:
    # 10 + 0.4 x 8.2 > 8.2, so the frame goes straight to the original CNN ...
    plan = sieve().plan(FrameContext(), telemetry(), _profile(device_ms=40.0, cloud_ms=2.0))
    assert (plan.chosen.kind, plan.chosen.name) == ("cloud", "cloud-only")
    # ... and on a slow uplink (3G: L_t = 22 + 5 + 2 ms) speculation wins: 10 + 0.4 x 29.3 < 29.3
    plan = sieve().plan(FrameContext(), telemetry(uplink_bps=1.1e6), _profile(40.0, 2.0))
    assert (plan.chosen.kind, plan.chosen.name) == ("speculate", "cloud")
    assert plan.chosen.latency_s == pytest.approx(0.010 + 0.4 * (3072 * 8 / 1.1e6 + 0.005 + 0.002))


def test_a_loaded_server_turns_the_detector_off():
    plan = sieve().plan(FrameContext(), telemetry(uplink_bps=1.1e6, slowdown=5.0), _profile(40.0, 2.0))
    assert plan.chosen.name == "detector-off" and plan.chosen.cloud_s == 0.0


@pytest.mark.parametrize("mode, expected", [("mission-critical", ("cloud", "cloud-only")),
                                            ("private", ("speculate", "device"))])
def test_sieve_modes(mode, expected):
    plan = sieve().plan(FrameContext(mode=mode), telemetry(uplink_bps=1.1e6), _profile(40.0, 2.0))
    assert (plan.chosen.kind, plan.chosen.name) == expected and plan.policy == "sieve"


def test_the_cnn_selector_picks_the_speculative_cnn_cheapest_on_this_link():
    # on 3G, L_t = 3072 B / 1.1 Mbit/s + 5 + 2 ms = 29.3 ms; the bundle's own little: 10 + 0.4 L_t = 21.7 ms
    fast = DynamicDuoPolicy(3072, little_share=0.05, recovery_rate=0.6, power_saving_recovery_rate=0.3)
    sloppy = DynamicDuoPolicy(3072, little_share=0.2, recovery_rate=0.9, power_saving_recovery_rate=0.5)
    policy = SievePolicy(sieve().duo, alternatives={"fast": fast, "sloppy": sloppy})
    plan = policy.plan(FrameContext(), telemetry(uplink_bps=1.1e6), _profile(40.0, 2.0))
    l_t = 3072 * 8 / 1.1e6 + 0.005 + 0.002
    assert plan.chosen.model == "fast"                       # 2 + 0.6 L_t = 19.6 ms beats 21.7 and 34.4
    assert plan.chosen.latency_s == pytest.approx(0.002 + 0.6 * l_t)
    # without the fast one, the bundle's own little (model None) beats the sloppy one
    plan = SievePolicy(sieve().duo, alternatives={"sloppy": sloppy}).plan(
        FrameContext(), telemetry(uplink_bps=1.1e6), _profile(40.0, 2.0))
    assert plan.chosen.kind == "speculate" and plan.chosen.model is None


def test_the_thesis_detector_takes_the_lowest_threshold_that_meets_the_target():
    from adaptinf.policies.sieve import distribution_threshold

    # 100 validation frames in 4 confidence bins; 70 correct, 20 correctable, 10 uncorrectable
    confidence = {"bins": [0.0, 0.25, 0.5, 0.75, 1.0], "correct": [0, 10, 20, 40],
                  "correctable": [8, 6, 4, 2], "uncorrectable": [5, 3, 1, 1]}
    # quality at each edge: 0.70, 0.78, 0.84, 0.88, 0.90; recomputed: 0, 13, 32, 57, 100 %
    assert distribution_threshold(confidence, 0.78) == (0.25, pytest.approx(0.13))
    assert distribution_threshold(confidence, 0.80) == (0.5, pytest.approx(0.32))
    assert distribution_threshold(confidence, 0.70) == (0.0, 0.0)            # met without recomputing
    assert distribution_threshold(confidence, 0.95) == (1.0, pytest.approx(1.0))   # unreachable: recompute all


def test_the_thesis_detector_gives_one_threshold_for_every_class_and_its_recovery_rates():
    from adaptinf.bundle import SpeculativeModel
    from adaptinf.policies.sieve import threshold_detector

    spec = SpeculativeModel("little", (0.9, 0.1, 0.5), (0.8, 0.1, 0.4), 0.4, 0.3)
    confidence = {"bins": [0.0, 0.5, 1.0], "correct": [10, 70], "correctable": [15, 0], "uncorrectable": [3, 2]}
    detector = threshold_detector(spec, confidence, 0.85, classes=3)
    assert detector.thresholds == (0.5, 0.5, 0.5) and detector.recovery_rate == pytest.approx(0.28)
    assert detector.power_saving_thresholds == (0.5,) * 3        # 0.84 is not met without recomputing either
    assert detector.little == "little"
