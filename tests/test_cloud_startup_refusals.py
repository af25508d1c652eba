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


def _daemon_with(tmp_path, **cloud):
    from adaptinf.rig.processes import write_daemon_config

    config = write_daemon_config(tmp_path / "d.toml", daemon={"api_endpoint": f"ipc://{tmp_path}/a.sock",
                                                                "bundle": str(DEMO_BUNDLE), "state_dir": str(tmp_path)},
                                 cloud={"endpoint": "tcp://127.0.0.1:9", **cloud})
    return subprocess.run([sys.executable, "-m", "adaptinf.daemon.main", "--config", str(config)],
                          capture_output=True, text=True, timeout=120)


def test_bad_cloud_settings_are_refused_before_ready_naming_the_key(tmp_path):
    """Issue 29 item 8: each used to print READY, then exit 1 seconds later (a restart loop)."""
    import tempfile

    keys = tempfile.mkdtemp(prefix="ai-keys-")
    zmq.auth.create_certificates(keys, "device")
    zmq.auth.create_certificates(keys, "cloud")
    (tmp_path / "short.key").write_text('metadata\ncurve\n    public-key = "tooshort"\n')
    cases = [
        ({"curve_secret_key": f"{keys}/missing.key_secret", "curve_server_key": f"{keys}/cloud.key"},
         "curve_secret_key"),
        ({"curve_secret_key": f"{keys}/device.key", "curve_server_key": f"{keys}/cloud.key"},
         "holds no secret key"),
        ({"curve_secret_key": f"{keys}/device.key_secret", "curve_server_key": str(tmp_path / "short.key")},
         "curve_server_key"),
        ({"device_id": ""}, "device_id must be 1 to 238 bytes"),
        ({"device_id": "a/b"}, "without '/'"),
        ({"device_id": "x" * 239}, "device_id must be 1 to 238 bytes"),
    ]
    for cloud, says in cases:
        done = _daemon_with(tmp_path, **cloud)
        assert done.returncode == 2 and says in done.stderr, (cloud, done.stderr[-500:])
        assert "READY" not in done.stdout


def test_a_power_sampler_rate_out_of_range_is_refused_and_a_dead_sampler_is_unhealthy():
    """Issue 29 item 10: 1e-300 Hz overflowed the sampler's wait and it died silently while
    status kept a healthy 6 W reading."""
    import threading

    import pytest

    from adaptinf.daemon.config import ConfigError, parse_config
    from adaptinf.daemon.power_monitor import PowerMonitor

    with pytest.raises(ConfigError, match=r"rate_hz = 1e-300 is below its minimum"):
        parse_config({"power": {"rate_hz": 1e-300}})
    with pytest.raises(ValueError, match="rate_hz must be in"):
        PowerMonitor(object(), rate_hz=1e-300)

    class Steady:
        name = "test"

        def read_power_w(self):
            return 6.0

    class OverflowingWait(threading.Event):
        """What Event.wait did with the period of 1e-300 Hz: the sampler's own failure."""

        def __init__(self):
            super().__init__()
            self.calls = 0

        def wait(self, timeout=None):
            self.calls += 1
            if self.calls > 3:
                raise OverflowError("timestamp too large to convert to C _PyTime_t")
            return super().wait(timeout)

    monitor = PowerMonitor(Steady(), rate_hz=200)
    monitor._stop = OverflowingWait()
    monitor.start()
    done = threading.Event()
    for _ in range(200):
        if not monitor.healthy and monitor.last_error:
            done.set()
            break
        done.wait(0.01)
    monitor.stop()
    assert done.is_set() and "sampler died" in monitor.last_error
    assert monitor.status().healthy is False
