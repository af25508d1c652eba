"""The perfect-knowledge bound on hand-computed cases: upload times read from the trace."""

import numpy as np
import pytest

from adaptinf.policies.radio_power import uplink_power_w
from adaptinf.profile import CLOUD_ONLY, MOBILE_ONLY, PartitionProfile, Profile
from adaptinf.rig.link_shaper import LinkProfile, trace_profile
from adaptinf.rig.oracle import perfect_knowledge
from adaptinf.rig.uplink_trace import PACKET_BYTES, parse_trace_spec

PROFILE = Profile("x", (PartitionProfile(MOBILE_ONLY, 100.0, 5.0, 0.0, 0),
                        PartitionProfile("RB2", 20.0, 5.0, 2.0, 2 * PACKET_BYTES),
                        PartitionProfile(CLOUD_ONLY, 0.0, 5.0, 5.0, 100 * PACKET_BYTES)))


def test_on_a_fixed_link_the_bound_is_the_cost_models_best():
    link = LinkProfile("fixed", 1.2e6, 5e6, 0.040)
    [b] = perfect_knowledge(PROFILE, link, "3g", np.array([0.0]))
    rb2 = 0.020 + 2 * PACKET_BYTES * 8 / 1.2e6 + 0.040 + 0.002          # 82 ms
    assert b.latency_partition == "RB2" and b.latency_s == pytest.approx(rb2)
    rb2_energy = 0.020 * 5.0 + 0.020 * uplink_power_w("3g", 1.2e6)
    assert b.energy_partition == "RB2" and b.energy_j == pytest.approx(rb2_energy)


def test_on_a_trace_a_dead_link_sends_the_frame_to_the_device(tmp_path):
    # opportunities every ms during the first 100 ms, then nothing until 3000 ms
    path = tmp_path / "t.up"
    path.write_text("\n".join(str(ms) for ms in range(1, 101)) + "\n3000\n")
    link = trace_profile(parse_trace_spec(str(path)), 0.040)
    early, late = perfect_knowledge(PROFILE, link, "4g", np.array([0.0, 0.5]))
    # at 0: the head is done at 20 ms; RB2's two packets take the opportunities at 20 and 21 ms
    assert early.latency_partition == "RB2" and early.latency_s == pytest.approx(0.021 + 0.040 + 0.002)
    # at 0.5 s the link is dead until 3 s: mobile-only's 100 ms wins
    assert late.latency_partition == MOBILE_ONLY and late.latency_s == pytest.approx(0.100)
