import pytest

from adaptinf.daemon.config import ConfigError, load_config, parse_config
from adaptinf.daemon.link_estimator import SILENCE_GRACE_S, LinkEstimator


def test_defaults_and_overrides(tmp_path):
    (tmp_path / "a.toml").write_text('[policy]\ngoal = "energy"\n[cloud]\ntimeout_ms = 250\nradio = "3g"\n')
    cfg = load_config(tmp_path / "a.toml")
    assert cfg.policy.goal == "energy" and cfg.cloud.timeout_ms == 250.0 and cfg.daemon.workers == 4


@pytest.mark.parametrize("raw,message", [
    ({"policy": {"goall": "x"}}, r"\[policy\] has unknown key\(s\) \['goall'\]"),
    ({"cloud": {"timeout_ms": "fast"}}, r"\[cloud\]\.timeout_ms must be float"),
    ({"policy": {"mode": "turbo"}}, r"\[policy\]\.mode = 'turbo'; choose one of"),
    ({"daemon": {"workers": 0}}, r"\[daemon\]\.workers must be positive"),
    ({"gpu": {}}, r"unknown section"),
])
def test_errors_name_the_key(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


def test_bad_toml_is_reported_with_the_file(tmp_path):
    (tmp_path / "b.toml").write_text("[policy\n")
    with pytest.raises(ConfigError, match="b.toml: not valid TOML"):
        load_config(tmp_path / "b.toml")


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_estimator_converges_on_bandwidth_and_rtt():
    clock = FakeClock()
    est = LinkEstimator(clock)
    for _ in range(40):
        est.observe_rtt(0.020)
    # 3072 B at 1.1 Mbit/s takes 22.34 ms on the wire, plus 20 ms RTT and 1 ms of cloud service
    for _ in range(40):
        clock.now += 0.1
        est.observe_upload(3072, 3072 * 8 / 1.1e6 + 0.020 + 0.001, 0.001)
    e = est.estimate()
    assert e.rtt_s == pytest.approx(0.020, rel=1e-3)
    assert e.uplink_bps == pytest.approx(1.1e6, rel=1e-3)
    # small uploads are all RTT jitter: ignored
    est.observe_upload(100, 1.0, 0.0)
    assert est.estimate().bandwidth_samples == 40


def test_estimator_tracks_a_slower_link_and_reports_variation():
    clock = FakeClock()
    est = LinkEstimator(clock)
    est.observe_rtt(0.01)
    for bps in [18.88e6] * 20 + [1.1e6] * 30:
        clock.now += 0.2
        est.observe_upload(16384, 16384 * 8 / bps + 0.01, 0.0)
    e = est.estimate()
    assert e.uplink_bps == pytest.approx(1.1e6, rel=0.05)
    for bps in (1.0e6, 1.2e6):                 # variation within the window is reported
        clock.now += 0.2
        est.observe_upload(16384, 16384 * 8 / bps + 0.01, 0.0)
    assert est.estimate().uplink_bps_std > 0


def test_back_to_back_uploads_are_timed_from_when_the_link_took_them():
    """Two uploads sent together over a FIFO link: the second waits for the first. Timing it
    from its own send would halve the bandwidth it measures."""
    clock, bps, rtt, nbytes = FakeClock(), 2e6, 0.04, 5000
    est = LinkEstimator(clock)
    est.observe_rtt(rtt)
    sent = clock.now
    for k in (1, 2):
        clock.now = sent + k * nbytes * 8 / bps + rtt
        est.observe_upload(nbytes, clock.now - sent, 0.0)
    assert est.estimate().uplink_bps == pytest.approx(bps, rel=1e-6)


@pytest.mark.parametrize("ratio", [4.0, 0.25, 6.0])
def test_after_a_4x_step_the_estimate_is_within_30_percent_within_5_uploads(ratio):
    clock, rtt, nbytes = FakeClock(), 0.04, 3000
    est = LinkEstimator(clock)
    est.observe_rtt(rtt)
    old = 1e6
    for _ in range(10):                         # one upload per 100 ms frame
        clock.now += 0.1
        est.observe_upload(nbytes, nbytes * 8 / old + rtt, 0.0)
    new = old * ratio
    for k in range(1, 6):
        clock.now += 0.1
        est.observe_upload(nbytes, nbytes * 8 / new + rtt, 0.0)
    assert abs(est.estimate().uplink_bps - new) / new <= 0.30


def test_the_estimate_reports_its_age_and_the_uplink_queue():
    clock = FakeClock()
    est = LinkEstimator(clock)
    assert est.estimate().uplink_age_s is None
    est.observe_rtt(0.02)
    est.observe_upload(10_000, 10_000 * 8 / 1e6 + 0.02, 0.0)
    clock.now += 2.5
    assert est.estimate().uplink_age_s == pytest.approx(2.5, abs=1e-6)
    est.sent(50_000)                            # 0.4 s at 1 Mbit/s
    est.sent(25_000)                            # queued behind it: 0.6 s in all
    assert est.uplink_backlog_s() == pytest.approx(0.6, rel=1e-6)
    clock.now += 0.5
    assert est.uplink_backlog_s() == pytest.approx(0.1, rel=1e-6)


def _steady(est: LinkEstimator, clock: FakeClock, bps: float, nbytes: int = 6272, frames: int = 10) -> None:
    for _ in range(frames):                     # one answered upload per 100 ms frame
        clock.now += 0.1
        est.observe_upload(nbytes, nbytes * 8 / bps + 0.04, 0.0)


def _awaiting(nbytes: int, token: str) -> tuple[FakeClock, LinkEstimator]:
    """An estimator at a steady 8 Mbit/s (RTT 40 ms) with one more upload sent and unanswered."""
    clock = FakeClock()
    est = LinkEstimator(clock)
    est.observe_rtt(0.04)
    _steady(est, clock, 8e6)
    est.sent(nbytes, token=token)
    return clock, est


def test_an_upload_unanswered_for_longer_than_the_estimate_allows_caps_the_estimate():
    nbytes = 6272
    clock, est = _awaiting(nbytes, "a")
    clock.now += 0.04 + SILENCE_GRACE_S         # within its allowance: no evidence yet
    assert est.estimate().uplink_bps == pytest.approx(8e6, rel=0.01)
    clock.now += 0.5                            # 0.5 s past it, and still not across
    assert est.estimate().uplink_bps == pytest.approx(nbytes * 8 / 0.5, rel=0.01)
    clock.now += 0.05
    est.observe_upload(nbytes, 0.59, 0.0, token="a")    # its reply ends the bound
    assert est.estimate().uplink_bps > nbytes * 8 / 0.5


def test_a_small_upload_stalled_by_an_outage_caps_the_estimate_too():
    """A 588-byte split upload (RB5) is below MIN_UPLOAD_BYTES, too jittery to time when it is
    answered; stalled by an outage, its silence is still evidence. The energy policy kept
    choosing RB5 through a 2-second outage (every frame a 500 ms fallback) because no bound
    was kept for it."""
    nbytes = 588
    clock, est = _awaiting(nbytes, "small")
    clock.now += 0.04 + SILENCE_GRACE_S + 0.5
    assert est.estimate().uplink_bps == pytest.approx(nbytes * 8 / 0.5, rel=0.01)
    clock.now += 0.05
    est.observe_upload(nbytes, 0.6, 0.0, token="small")     # answered: the bound ends, no sample
    assert est.estimate().uplink_bps == pytest.approx(8e6, rel=0.01)


def test_an_upload_the_link_lost_leaves_its_silence_as_a_sample():
    nbytes = 6272
    clock, est = _awaiting(nbytes, "a")
    clock.now += 2.0 + 0.04 + SILENCE_GRACE_S
    est.lost("a")
    assert est.estimate().uplink_bps == pytest.approx(nbytes * 8 / 2.0, rel=0.01)
    est.forget("never-sent")                   # unknown tokens are ignored
    est.lost("never-sent")
    assert est.estimate().bandwidth_samples == 11


def test_a_retried_upload_answered_is_forgotten_without_a_sample():
    clock, est = _awaiting(6272, "r")
    est.forget("r")
    clock.now += 5.0
    assert est.estimate().uplink_bps == pytest.approx(8e6, rel=0.01)


def test_an_upload_too_fast_to_time_raises_the_estimate_at_most_4x():
    clock = FakeClock()
    est = LinkEstimator(clock)
    est.observe_rtt(0.04)
    _steady(est, clock, 0.5e6, nbytes=1500, frames=3)
    clock.now += 2.0                              # the old samples leave the window
    est.observe_upload(1200, 0.04 + 0.0003, 0.0)   # one packet that met a burst: "32 Mbit/s"
    assert est.estimate().uplink_bps == pytest.approx(4 * 0.5e6, rel=0.01)
    clock.now += 2.0
    est.observe_upload(12_000, 0.04 + 0.004, 0.0)  # 4 ms is resolvable: 24 Mbit/s is believed
    assert est.estimate().uplink_bps == pytest.approx(12_000 * 8 / 0.004, rel=0.01)


def test_architecture_doc_lists_every_config_key():
    """docs/architecture.md's configuration table is every key of every section, no more."""
    import re
    from dataclasses import fields
    from pathlib import Path

    from adaptinf.daemon.config import Config

    doc = (Path(__file__).resolve().parents[1] / "docs" / "architecture.md").read_text()
    table = {m.group(1): [k.strip() for k in m.group(2).split(",")]
             for m in re.finditer(r"^\| `\[(\w+)\]` \| ([^|]+) \|$", doc, re.MULTILINE)}
    code = {f.name: [g.name for g in fields(f.default_factory())] for f in fields(Config)}
    assert table == code


def test_a_stream_of_replies_corrects_a_slow_start_up_rtt():
    """The first heartbeat of a busy start-up read 90 ms; the link's RTT is 15 ms. Frames
    that stream give RTT samples of their own (their crossing taken out), so the planner's
    RTT is right within a few frames instead of keeping the start-up reading."""
    clock, rtt, bps, nbytes = FakeClock(), 0.015, 5.85e6, 3072
    est = LinkEstimator(clock)
    est.observe_rtt(0.090)
    for _ in range(3):                          # heartbeats every 0.5 s, and idle probes
        clock.now += 0.5
        est.observe_rtt(rtt)
        est.observe_upload(16384, 16384 * 8 / bps + rtt, 0.0)
    assert est.estimate().rtt_s > 0.060        # the heartbeats alone move it slowly
    for _ in range(20):
        clock.now += 0.025
        est.observe_upload(nbytes, nbytes * 8 / bps + rtt + 0.001, 0.001)
    assert est.estimate().rtt_s == pytest.approx(rtt, abs=0.004)


def test_a_reply_mostly_crossing_is_not_an_rtt_sample():
    """A 150 KB frame's round trip is mostly its crossing: what is left after taking out the
    estimated crossing is that estimate's error, not the RTT."""
    clock, bps = FakeClock(), 5.85e6
    est = LinkEstimator(clock)
    est.observe_rtt(0.015)
    for _ in range(10):
        clock.now += 0.5
        est.observe_upload(150_000, 150_000 * 8 / bps * 1.3 + 0.015, 0.0)   # 30% slower than estimated
    assert est.estimate().rtt_s == pytest.approx(0.015)


def _idle_wifi_link(clock, bps: float) -> LinkEstimator:
    """An estimator that has seen 1.5 s of an idle 4 ms link: heartbeats and 16 KiB probes."""
    est = LinkEstimator(clock)
    for _ in range(3):
        clock.now += 0.5
        est.observe_rtt(0.004)
        est.observe_upload(16384, 16384 * 8 / bps + 0.004, 0.0)
    return est


def test_a_slow_reply_does_not_raise_the_rtt():
    """What a reply leaves after its crossing and the cloud's reported service still holds
    the cloud's queue and a busy host's scheduling: it bounds the RTT from above only."""
    clock, bps = FakeClock(), 18.88e6
    est = _idle_wifi_link(clock, bps)
    clock.now += 0.5
    est.observe_upload(3072, 3072 * 8 / bps + 0.004 + 0.300, 0.001)   # 300 ms nobody reported
    assert est.estimate().rtt_s == pytest.approx(0.004)


def test_an_unanswered_upload_does_not_push_its_own_resend_away():
    """The silence bound lowers the estimate as an upload waits; the resend is timed by what
    the answered uploads measured, so a stalled link still gets its retry."""
    clock, bps = FakeClock(), 18.88e6
    est = _idle_wifi_link(clock, bps)
    est.sent(3072, token="stalled")
    clock.now += 1.0                                   # no reply: the link stalls
    assert est.estimate().uplink_bps < 0.1e6           # the planner sees the silence
    assert est.measured_uplink_bps() == pytest.approx(bps, rel=0.01)
