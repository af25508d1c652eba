import json

from adaptinf.programs.cli import main, parse_rate
from adaptinf.profile import save_profile
from test_split_policy import PROFILE


def test_rates_parse_with_units():
    assert parse_rate("5.85Mbit") == 5.85e6
    assert parse_rate("800kbit") == 8e5
    assert parse_rate("5.85Mbit/s") == 5.85e6
    assert parse_rate("1100000") == 1.1e6
    # tc's units: bps suffixes are BYTES per second
    assert parse_rate("5MB/s") == 40e6
    assert parse_rate("5mbps") == 40e6
    assert parse_rate("1kibit") == 1024
    assert parse_rate("2kB/s") == 16e3


def test_plan_prints_every_candidate_and_the_choice(tmp_path, capsys):
    save_profile(PROFILE, tmp_path / "p.json")
    assert main(["plan", "--profile", str(tmp_path / "p.json"), "--uplink", "5.85Mbit", "--rtt-ms", "10"]) == 0
    out = capsys.readouterr().out
    for name in ("mobile-only", "cloud-only", "RB1", "RB8"):
        assert name in out
    assert "->RB1" in out and "chosen: RB1 (min latency)" in out
    assert main(["plan", "--profile", str(tmp_path / "p.json"), "--uplink", "1.1Mbit", "--rtt-ms", "30",
                 "--goal", "energy", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["chosen"] == "RB1"


def test_plan_refuses_a_bad_profile(tmp_path, capsys):
    (tmp_path / "p.json").write_text(json.dumps({"version": 1, "bundle": "h", "partitions": [
        {"name": "RB1", "device_ms": -3, "device_power_w": 5, "cloud_ms": 1, "upload_bytes": 10}]}))
    assert main(["plan", "--profile", str(tmp_path / "p.json"), "--uplink", "1Mbit"]) == 2
    assert "device_ms = -3 is below 0" in capsys.readouterr().err


def test_documented_examples_stay_true(capsys):
    """docs/examples: the estimated ResNet-50 profile picks RB1 on 4G and Wi-Fi (paper 004 Table V)."""
    from adaptinf.daemon.config import load_config
    from conftest import REPO

    profile = str(REPO / "docs" / "examples" / "resnet50-tx2-estimated.json")
    for uplink in ("5.85Mbit", "18.88Mbit"):
        assert main(["plan", "--profile", profile, "--uplink", uplink, "--rtt-ms", "0", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["chosen"] == "RB1"
    assert load_config(REPO / "systemd" / "adaptinfd.toml").cloud.radio == "4g"
