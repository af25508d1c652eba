"""Issue 29, items 6 and 11: a cloud worker that cannot compute, or whose allow-list has a
malformed key file, refuses or skips it instead of serving half-dead."""

from __future__ import annotations

import subprocess
import sys

import zmq.auth

from adaptinf.cloud.curve_auth import DeviceAllowList
from conftest import DEMO_BUNDLE


def test_no_compute_threads_is_refused_at_start():
    for threads in ("0", "-3"):
        done = subprocess.run([sys.executable, "-m", "adaptinf.cloud.main", "--bundle", str(DEMO_BUNDLE),
                               "--endpoint", "tcp://127.0.0.1:*", "--threads", threads],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and "--threads must be at least 1" in done.stderr
        assert "READY" not in done.stdout


def test_a_malformed_key_file_is_skipped_and_the_good_ones_still_admit(tmp_path):
    public, _ = zmq.auth.create_certificates(str(tmp_path), "good-device")
    (tmp_path / "broken.key").write_text("metadata\ncurve\n    public-key\n")            # no '='
    (tmp_path / "empty.key").write_text("")
    allow = DeviceAllowList(tmp_path)
    key, _ = zmq.auth.load_certificate(public)
    assert allow.device_for(key) == "good-device"
    assert allow.device_for(b"x" * 40) is None


def test_a_config_or_profile_that_never_ends_is_refused_not_read(tmp_path):
    from adaptinf.daemon.config import ConfigError, load_config
    from adaptinf.profile import ProfileError, load_profile

    import pytest

    for loader, error in ((load_config, ConfigError), (load_profile, ProfileError)):
        with pytest.raises(error, match="larger than"):
            loader("/dev/zero")
    done = subprocess.run([sys.executable, "-m", "adaptinf.daemon.main", "--config", "/dev/zero"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "larger than" in done.stderr
