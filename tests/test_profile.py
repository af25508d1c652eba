import json

import pytest

from adaptinf.profile import CLOUD_ONLY, MOBILE_ONLY, ProfileError, load_profile, parse_profile, save_profile


def valid() -> dict:
    return {"version": 1, "bundle": "x" * 64, "device": {"name": "hand"}, "link": {"uplink_bps": 5.85e6, "rtt_ms": 10},
            "partitions": [
                {"name": MOBILE_ONLY, "device_ms": 40, "device_power_w": 5, "cloud_ms": 0, "upload_bytes": 0,
                 "accuracy": 0.8},
                {"name": CLOUD_ONLY, "device_ms": 0, "device_power_w": 5, "cloud_ms": 2, "upload_bytes": 150528,
                 "accuracy": 0.8},
                {"name": "RB1", "device_ms": 5, "device_power_w": 5, "cloud_ms": 1.5, "upload_bytes": 3136,
                 "accuracy": 0.79, "note": "extra fields are kept"}],
            "models": [{"name": "big", "device_ms": 40, "accuracy": 0.8}],
            "calibrated_by": "hand"}


def test_round_trip_keeps_everything(tmp_path):
    profile = parse_profile(valid())
    save_profile(profile, tmp_path / "p.json")
    again = load_profile(tmp_path / "p.json")
    assert again == profile
    assert again.partition("RB1").kind == "split" and again.partition(CLOUD_ONLY).kind == "cloud"
    assert json.loads((tmp_path / "p.json").read_text())["calibrated_by"] == "hand"
    assert not list(tmp_path.glob("*.tmp*"))  # atomic write leaves no temp file


@pytest.mark.parametrize("change,message", [
    (lambda p: p.pop("partitions"), "partitions"),
    (lambda p: p["partitions"][2].pop("device_ms"), r"RB1\) is missing 'device_ms'"),
    (lambda p: p["partitions"][2].update(cloud_ms=-1), r"cloud_ms = -1 is below 0"),
    (lambda p: p["partitions"][2].update(device_ms="fast"), "must be a finite number"),
    (lambda p: p["partitions"][2].update(accuracy=79), "not a fraction"),
    (lambda p: p["partitions"][0].update(upload_bytes=10), "uploads nothing"),
    (lambda p: p["partitions"][2].update(upload_bytes=0), "must upload something"),
    (lambda p: p["partitions"].append(dict(p["partitions"][2])), "repeat"),
    (lambda p: p.update(version=2), "version 2 is not supported"),
    (lambda p: p["link"].update(uplink_bps=0), "uplink_bps"),
])
def test_nonsense_is_refused_naming_the_field(change, message):
    raw = valid()
    change(raw)
    with pytest.raises(ProfileError, match=message):
        parse_profile(raw)


def test_unreadable_files(tmp_path):
    with pytest.raises(ProfileError, match="no such profile"):
        load_profile(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ProfileError, match="not valid JSON"):
        load_profile(tmp_path / "bad.json")
