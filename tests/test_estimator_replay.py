"""The link estimator replayed on step traces in virtual time (rig/estimator_replay.py):
issue 15's goal, within 30% of a 4x step's new capacity within 5 frames or 1 s."""

import numpy as np
import pytest

from adaptinf.daemon.cloud_link import PROBE_MAX_INTERVAL_S, PROBE_SHARE, probe_plan
from adaptinf.daemon.link_estimator import LinkEstimator
from adaptinf.rig.estimator_replay import follow_steps, replay
from adaptinf.rig.uplink_trace import UplinkTrace

RATES_MBPS = (8, 0.5, 8, 1, 0.15, 2)


def step_trace(rates_mbps=RATES_MBPS, seg_s: int = 5) -> UplinkTrace:
    """Evenly spaced 1500-byte opportunities at each rate for seg_s seconds."""
    parts, start_ms = [], 0
    for rate in rates_mbps:
        n = int(rate * 1e6 / 12000 * seg_s)
        if n:                                   # rate 0: a dead link, no opportunity at all
            gap = seg_s * 1000 / n
            parts.append(start_ms + np.ceil(np.arange(n) * gap + gap).astype(np.int64))
        start_ms += seg_s * 1000
    return UplinkTrace(np.concatenate(parts), start_ms, "steps", ())


def test_while_frames_upload_every_step_is_followed_within_5_frames_or_1_s():
    trace = step_trace()
    # every frame uploads, at 125 kbit/s: within even the slowest step's capacity, so the
    # uplink's queue stays short and the replies come while they still describe the link
    run = replay(trace, mode="always", upload_bytes=1568)
    steps = follow_steps(trace, run.t_s, run.est_bps)
    assert len(steps) == 5                      # every change but the 1 -> 2 Mbit/s one is a 4x step
    assert all(s.met for s in steps), steps


def test_with_only_probes_falls_are_followed():
    trace = step_trace()
    run = replay(trace, mode="device")
    falls = [s for s in follow_steps(trace, run.t_s, run.est_bps) if s.to_bps < s.from_bps]
    assert len(falls) == 3 and all(s.met for s in falls), falls


def test_a_dead_link_is_seen_through_the_silence_of_an_unanswered_probe(monkeypatch):
    trace = step_trace((8, 0, 8))
    dead = slice(60, 100)                       # frames 6.0-9.9 s: 1 s or more into the dead 5 s
    run = replay(trace, mode="device")
    assert np.all(run.est_bps[dead] < 0.05 * 8e6), run.est_bps[dead]   # a 25 KB probe, 1 s late
    # without the bound the estimate stays at the last answered probe's 8 Mbit/s
    monkeypatch.setattr(LinkEstimator, "_silence_bound_locked", lambda self, now: None)
    run = replay(trace, mode="device")
    assert np.all(run.est_bps[dead] > 4e6)


@pytest.mark.parametrize("bps", [0.3e6, 1e6, 8e6, 50e6])
def test_probes_use_at_most_2_percent_of_the_estimated_uplink(bps):
    size, every = probe_plan(bps)
    assert size * 8 / every <= PROBE_SHARE * bps * 1.0001


def test_on_a_nearly_dead_link_one_small_probe_still_goes_every_few_seconds():
    size, every = probe_plan(10e3)
    assert size == 1200 and every == PROBE_MAX_INTERVAL_S
