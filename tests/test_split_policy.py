"""The selection phase of paper 004 Algorithm 1 against hand-computed expectations."""

import pytest

from adaptinf.policies.plan import FrameContext, Telemetry
from adaptinf.policies.radio_power import uplink_power_w
from adaptinf.policies.split import SplitPolicy
from adaptinf.profile import parse_profile

# device 40 ms full at 5 W; cloud 2 ms full; raw frame 150528 B (224x224x3).
# RB1: head 5 ms, 3136 B up, tail 1.5 ms.   RB8: head 20 ms, 1000 B up, tail 1 ms.
PROFILE = parse_profile({"version": 1, "bundle": "h", "partitions": [
    {"name": "mobile-only", "device_ms": 40, "device_power_w": 5, "cloud_ms": 0, "upload_bytes": 0, "accuracy": 0.76},
    {"name": "cloud-only", "device_ms": 0, "device_power_w": 5, "cloud_ms": 2, "upload_bytes": 150528,
     "accuracy": 0.76},
    {"name": "RB1", "device_ms": 5, "device_power_w": 5, "cloud_ms": 1.5, "upload_bytes": 3136, "accuracy": 0.745},
    {"name": "RB8", "device_ms": 20, "device_power_w": 5, "cloud_ms": 1.0, "upload_bytes": 1000, "accuracy": 0.75},
]})


def test_table_iii_power_model():
    # P_u = alpha_u * t_u + beta, paper 004 Table III, in W
    assert uplink_power_w("3g", 1.1e6) == pytest.approx((868.98 * 1.1 + 817.88) / 1000)
    assert uplink_power_w("4g", 5.85e6) == pytest.approx((438.39 * 5.85 + 1288.04) / 1000)
    assert uplink_power_w("wifi", 18.88e6) == pytest.approx((283.17 * 18.88 + 132.86) / 1000)


def plan(uplink, rtt_ms=0.0, goal="latency", mode="normal", radio="4g", deadline_s=None, **kw):
    t = Telemetry(uplink_bps=uplink, rtt_s=rtt_ms / 1e3, radio=radio, **kw)
    return SplitPolicy().plan(FrameContext(goal, mode, deadline_s), t, PROFILE)


def test_latency_goal_by_hand():
    # 4G 5.85 Mbit/s, RTT 10 ms:
    #   mobile-only 40; cloud-only 150528*8/5.85e6 = 205.85 + 10 + 2 = 217.85
    #   RB1 5 + 3136*8/5.85e6 (4.289) + 10 + 1.5 = 20.79;  RB8 20 + 1.367 + 10 + 1 = 32.37
    p = plan(5.85e6, rtt_ms=10)
    assert p.chosen.name == "RB1"
    assert p.chosen.latency_s == pytest.approx((5 + 3136 * 8 / 5.85e6 * 1e3 + 10 + 1.5) / 1e3)
    # 3G 1.1 Mbit/s, RTT 10 ms: RB1 5 + 22.81 + 11.5 = 39.31; RB8 20 + 7.27 + 11 = 38.27; mobile 40
    assert plan(1.1e6, rtt_ms=10, radio="3g").chosen.name == "RB8"
    # 3G with RTT 30 ms: every offload exceeds 40 ms -> mobile-only
    assert plan(1.1e6, rtt_ms=30, radio="3g").chosen.name == "mobile-only"


def test_energy_goal_by_hand():
    # 3G: PU = 1.77377 W. mobile 0.040*5 = 200 mJ; cloud-only 1.0947 s * 1.774 = 1942 mJ;
    #   RB1 0.005*5 + 0.02281*1.774 = 25 + 40.46 = 65.5 mJ; RB8 0.020*5 + 0.00727*1.774 = 100 + 12.9 = 112.9 mJ
    p = plan(1.1e6, rtt_ms=30, goal="energy", radio="3g")
    assert p.chosen.name == "RB1"
    pu = uplink_power_w("3g", 1.1e6)
    assert p.chosen.energy_j == pytest.approx(0.005 * 5 + 3136 * 8 / 1.1e6 * pu)
    # the same conditions for latency choose differently (see above): the goal matters
    assert plan(1.1e6, rtt_ms=30, goal="latency", radio="3g").chosen.name == "mobile-only"


def test_modes():
    assert plan(5.85e6, rtt_ms=10, mode="private").chosen.name == "mobile-only"
    # mission-critical: the most accurate (0.76: mobile-only, cloud-only), then the fastest of them
    assert plan(5.85e6, rtt_ms=10, mode="mission-critical").chosen.name == "mobile-only"
    assert plan(1e9, rtt_ms=1, mode="mission-critical").chosen.name == "cloud-only"
    # power-saving plans for energy whatever the frame asked
    assert plan(1.1e6, rtt_ms=30, goal="latency", mode="power-saving", radio="3g").chosen.name == "RB1"


def test_cloud_down_leaves_the_device():
    assert plan(5.85e6, rtt_ms=10, cloud_up=False).chosen.name == "mobile-only"
    assert plan(1e9, rtt_ms=1, cloud_up=False, mode="mission-critical").chosen.name == "mobile-only"


def test_loaded_cloud_pushes_work_to_the_device():
    # a congested cloud (K_cloud = 20, 25 ms queue): RB1 = 5 + 4.29 + 10 + 30 + 25 = 74 > mobile 40
    assert plan(5.85e6, rtt_ms=10, cloud_slowdown=20.0, cloud_queue_s=0.025).chosen.name == "mobile-only"


def test_deadline_excludes_plans_predicted_to_miss_it():
    # energy wants RB1 (39.3 ms at 3G/RTT 10), but a 39 ms SLA leaves RB8 (38.3) and mobile-only (40 > 39)
    assert plan(1.1e6, rtt_ms=10, goal="energy", radio="3g").chosen.name == "RB1"
    assert plan(1.1e6, rtt_ms=10, goal="energy", radio="3g", deadline_s=0.039).chosen.name == "RB8"
    # an SLA nobody can meet does not leave the frame without a plan
    assert plan(1.1e6, rtt_ms=10, deadline_s=0.001).chosen is not None


def test_bad_goal_or_mode_is_an_error():
    with pytest.raises(ValueError):
        plan(1e6, goal="speed")
    with pytest.raises(ValueError):
        plan(1e6, mode="turbo")


def test_fixed_policies_hold_their_placement_except_in_private_mode():
    from adaptinf.policies.fixed import FixedPolicy

    t = Telemetry(uplink_bps=5.85e6, rtt_s=0.01, radio="4g")
    assert FixedPolicy("cloud-only").plan(FrameContext(), t, PROFILE).chosen.name == "cloud-only"
    assert FixedPolicy("RB8").plan(FrameContext(), t, PROFILE).chosen.name == "RB8"
    assert FixedPolicy("cloud-only").plan(FrameContext(mode="private"), t, PROFILE).chosen.name == "mobile-only"
    # a placement the profile has not measured (the cloud not reachable yet) runs on the device
    assert FixedPolicy("RB99").plan(FrameContext(), t, PROFILE).chosen.name == "mobile-only"


def test_measured_device_power_replaces_the_profiles():
    # profile PM = 5 W; a sensor says 1 W: RB1's energy on 3G becomes 0.005*1 + 0.02281*1.774
    t = Telemetry(uplink_bps=1.1e6, rtt_s=0.03, radio="3g", device_power_w=1.0)
    p = SplitPolicy().plan(FrameContext(goal="energy"), t, PROFILE, explain=True)
    rb1 = next(c for c in p.candidates if c.name == "RB1")
    assert rb1.energy_j == pytest.approx(0.005 * 1.0 + 3136 * 8 / 1.1e6 * uplink_power_w("3g", 1.1e6))
    # at 1 W computing is cheap: mobile-only 40 mJ, RB1 5 + 40.5 = 45.5 mJ, RB8 20 + 12.9 = 32.9 mJ,
    # so RB8 wins where the profile's 5 W chose RB1 (65.5 vs 112.9 mJ, test_energy_goal_by_hand)
    assert p.chosen.name == "RB8"
