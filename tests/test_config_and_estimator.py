import pytest

from adaptinf.daemon.config import ConfigError, load_config, parse_config
from adaptinf.daemon.link_estimator import LinkEstimator


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


def test_estimator_converges_on_bandwidth_and_rtt():
    est = LinkEstimator()
    for _ in range(40):
        est.observe_rtt(0.020)
    # 3072 B at 1.1 Mbit/s takes 22.34 ms on the wire, plus 20 ms RTT and 1 ms of cloud service
    for _ in range(40):
        est.observe_upload(3072, 3072 * 8 / 1.1e6 + 0.020 + 0.001, 0.001)
    e = est.estimate()
    assert e.rtt_s == pytest.approx(0.020, rel=1e-3)
    assert e.uplink_bps == pytest.approx(1.1e6, rel=1e-3)
    # small uploads are all RTT jitter: ignored
    est.observe_upload(100, 1.0, 0.0)
    assert est.estimate().bandwidth_samples == 40


def test_estimator_tracks_a_slower_link_and_reports_variation():
    est = LinkEstimator()
    est.observe_rtt(0.01)
    for bps in [18.88e6] * 20 + [1.1e6] * 30:
        est.observe_upload(16384, 16384 * 8 / bps + 0.01, 0.0)
    e = est.estimate()
    assert e.uplink_bps == pytest.approx(1.1e6, rel=0.05)
    assert e.uplink_bps_std > 0
