"""The daemon's life under systemd: notify/watchdog with a NOTIFY_SOCKET the test owns, SIGHUP, SIGTERM."""

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import msgpack
import pytest
import zmq

from adaptinf.programs.cli import main as cli_main
from adaptinf.client import Client
from adaptinf.daemon.systemd_notify import Notifier
from adaptinf.rig.link_shaper import LinkProfile, LinkShaper
from adaptinf.rig.processes import spawn_cloud, spawn_daemon, write_daemon_config
from conftest import DEMO_BUNDLE


@pytest.fixture
def notify_socket(tmp_short):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_short / "notify.sock")
    sock.bind(path)
    sock.settimeout(0.1)
    yield sock, path
    sock.close()


def messages(sock, until, timeout_s=10.0):
    """Notify messages received until `until(messages)` holds or the timeout passes."""
    got = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not until(got):
        try:
            got.append(sock.recv(4096).decode())
        except socket.timeout:
            pass
    return got


def test_notifier_protocol(notify_socket):
    sock, path = notify_socket
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "3000000"})
    assert n.watchdog_interval_s == 1.5
    assert n.ready("serving") and n.watchdog()
    assert messages(sock, lambda m: len(m) == 2) == ["READY=1\nSTATUS=serving", "WATCHDOG=1"]
    assert Notifier({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}).watchdog_interval_s is None  # not ours
    assert not Notifier({}).ready()  # not under systemd: nothing sent, nothing raised


def test_notifier_abstract_namespace():
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"adaptinf-test-{time.monotonic_ns()}"
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).stopping()
        assert sock.recv(100) == b"STOPPING=1"
    finally:
        sock.close()


def test_ready_watchdog_reload_and_graceful_stop(tmp_short, notify_socket, glyph_frames):
    sock, path = notify_socket
    cloud = spawn_cloud(DEMO_BUNDLE)
    host, port = cloud.endpoint.rsplit("//", 1)[1].rsplit(":", 1)
    shaper = LinkShaper((host, int(port)), LinkProfile("slow", 2e6, 20e6, 0.05)).start()
    api = f"ipc://{tmp_short}/api.sock"
    sections = dict(daemon={"api_endpoint": api, "bundle": str(DEMO_BUNDLE), "state_dir": str(tmp_short),
                            "warmup_runs": 3, "workers": 8},
                    cloud={"endpoint": shaper.endpoint, "timeout_ms": 3000.0})
    config = write_daemon_config(tmp_short / "adaptinfd.toml", **sections)
    daemon = spawn_daemon(config, env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
    try:
        got = messages(sock, lambda m: sum(x == "WATCHDOG=1" for x in m) >= 3)
        starting = [m for m in got if m.startswith("STATUS=")]
        ready = next(i for i, m in enumerate(got) if m.startswith("READY=1"))
        # start-up says what it is doing (systemctl status) and extends its timeout, step by step
        assert starting and got[:len(starting)] == starting and ready == len(starting)
        assert any("warm-up" in m for m in starting) and all("EXTEND_TIMEOUT_USEC=" in m for m in starting)
        assert got.count("WATCHDOG=1") >= 3  # pinged every 0.2 s

        write_daemon_config(config, **{**sections, "policy": {"goal": "energy"}})
        daemon.process.send_signal(signal.SIGHUP)
        got = messages(sock, lambda m: "RELOADING=1" in m and any(x.startswith("READY=1") for x in m))
        assert "RELOADING=1" in got
        with Client(api) as c:
            assert c.status()["goal"] == "energy"

        # frames in flight to the cloud (50 ms RTT) when SIGTERM arrives: every one is answered
        dealer = zmq.Context.instance().socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(api)
        for i in range(12):
            header = {"v": [1, 0], "op": "infer", "id": i, "policy": "cloud-only",
                      "tensor": {"dtype": "uint8", "shape": [1, 32, 32, 3]}}
            dealer.send_multipart([msgpack.packb(header), glyph_frames.images[i:i + 1].tobytes()])
        time.sleep(0.05)
        daemon.process.send_signal(signal.SIGTERM)
        replies = {}
        while dealer.poll(3000):
            reply = msgpack.unpackb(dealer.recv_multipart()[0])
            replies.setdefault(reply["id"], []).append(reply["code"])
        dealer.close()
        assert daemon.process.wait(15) == 0
        assert "STOPPING=1" in messages(sock, lambda m: "STOPPING=1" in m, timeout_s=2)
    finally:
        daemon.stop()
        shaper.stop()
        cloud.stop()
    assert sorted(replies) == list(range(12))                     # every frame answered...
    assert all(len(codes) == 1 for codes in replies.values())     # ...exactly once
    assert set(c for codes in replies.values() for c in codes) <= {"OK", "UNAVAILABLE"}


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_installed_unit_passes_systemd_analyze_verify(tmp_path, capsys):
    assert cli_main(["install-service", "--root", str(tmp_path)]) == 0
    unit = tmp_path / "etc/systemd/system/adaptinfd.service"
    text = unit.read_text()
    assert "@ADAPTINFD@" not in text and "Type=notify" in text and "WatchdogSec=" in text
    directives = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert not any(line.startswith("PrivateDevices") for line in directives)  # it would hide ttyACM and i2c
    assert "DevicePolicy=closed" in directives and "DeviceAllow=char-ttyACM rw" in directives
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    broken = tmp_path / "broken.service"
    broken.write_text(text.replace("Type=notify", "Type=bogus").replace("ExecStart=", "ExecStart=relative/"))
    bad = subprocess.run(["systemd-analyze", "verify", str(broken)], capture_output=True, text=True)
    assert bad.returncode != 0 or bad.stderr  # the check does check
    assert (tmp_path / "etc/udev/rules.d/99-adaptinf.rules").exists()
    assert (tmp_path / "etc/adaptinf/adaptinfd.toml").exists()
    assert (tmp_path / "etc/sysusers.d/adaptinf.conf").exists()
    docs = next(line for line in directives if line.startswith("Documentation="))
    assert "@DOCS@" not in docs and docs.split("=", 1)[1].split()[0].startswith("file:///")
    assert Path(docs.split("=", 1)[1].split()[0][len("file://"):]).is_file()


def test_logs_carry_syslog_priorities_under_the_journal():
    import io
    import logging

    from adaptinf import logging_setup

    logging_setup.configure("INFO", "adaptinfd", environ={"JOURNAL_STREAM": "8:1234"})
    stream = io.StringIO()
    logging.getLogger().handlers[0].setStream(stream)
    logging.getLogger("adaptinf.test").warning("link down")
    logging.getLogger("adaptinf.test").info("link up")
    assert stream.getvalue().splitlines() == ["<4>logger=adaptinf.test link down", "<6>logger=adaptinf.test link up"]
    logging_setup.configure("INFO", "adaptinfd", environ={})
    assert not isinstance(logging.getLogger().handlers[0].formatter, logging_setup.JournalFormatter)


def _directives(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_the_unit_follows_systemds_conventions_for_a_jetson_service():
    from importlib import resources

    files = resources.files("adaptinf.systemd")
    unit = _directives(files.joinpath("adaptinfd.service").read_text())
    assert "RestartPreventExitStatus=2" in unit and "UMask=0007" in unit and "CapabilityBoundingSet=" in unit
    for setting in ("ProtectKernelTunables=yes", "ProtectKernelLogs=yes", "ProtectClock=yes",
                    "RestrictNamespaces=yes", "RestrictSUIDSGID=yes", "SystemCallFilter=@system-service"):
        assert setting in unit, setting
    groups = next(line for line in unit if line.startswith("SupplementaryGroups=")).split("=", 1)[1].split()
    assert {"video", "render", "dialout", "i2c"} <= set(groups)
    allowed = [line.split("=", 1)[1].split()[0] for line in unit if line.startswith("DeviceAllow=")]
    assert "/dev/nvmap" in allowed and "/dev/nvhost-ctrl-gpu" in allowed and "char-drm" in allowed
    assert "/dev/host1x-fence" in allowed and "/dev/nvgpu/igpu0/power" in allowed
    # systemd takes exact paths or char-<group>, never globs
    assert all(a.startswith("char-") or (a.startswith("/dev/") and not set("*?[") & set(a)) for a in allowed)
    rules = files.joinpath("99-adaptinf.rules").read_text()
    stm32 = [line for line in rules.splitlines() if "adaptinf-stm32" in line and not line.startswith("#")]
    assert stm32 and all('ENV{ID_MM_DEVICE_IGNORE}="1"' in line for line in stm32)
    config = files.joinpath("adaptinfd.toml").read_text()
    assert "example" not in next(line for line in config.splitlines() if line.startswith("endpoint"))


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_units_security_exposure_is_low(tmp_path):
    assert cli_main(["install-service", "--root", str(tmp_path)]) == 0
    unit = tmp_path / "etc/systemd/system/adaptinfd.service"
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)],
                            capture_output=True, text=True)
    if "--offline" in result.stderr:
        pytest.skip("this systemd-analyze has no --offline (systemd < 250)")
    exposure = float(result.stdout.rsplit("exposure level for adaptinfd.service:", 1)[1].split()[0])
    assert exposure <= 1.6, result.stdout[-2000:]        # 7.4 MEDIUM before the hardening, 1.5 measured


def test_install_service_warns_when_the_unit_would_hide_the_daemon():
    from adaptinf.programs.cli import hidden_by_unit

    assert any("ProtectHome" in w for w in hidden_by_unit("/home/me/venv/bin/adaptinfd"))
    assert any("PrivateTmp" in w for w in hidden_by_unit("/tmp/venv/bin/adaptinfd"))
    assert hidden_by_unit("/opt/adaptinf/venv/bin/adaptinfd") == []


def test_install_service_names_the_real_path_that_is_hidden(tmp_path):
    """A venv reached through a symlink: the warning names where it really is."""
    from adaptinf.programs.cli import hidden_by_unit

    home = tmp_path / "home-like"
    (home / "venv" / "bin").mkdir(parents=True)
    (home / "venv" / "bin" / "adaptinfd").write_text("")
    link = tmp_path / "opt-link"
    link.symlink_to(home)
    warnings = hidden_by_unit(str(link / "venv" / "bin" / "adaptinfd"))
    # tmp_path is under /tmp: hidden by PrivateTmp, and the warning says through which path
    assert warnings and "PrivateTmp" in warnings[0]
    assert len(warnings) == 1      # one warning per setting, not one per path


def test_sysusers_file_creates_the_user_and_every_supplementary_group_debian_may_lack():
    from importlib import resources

    files = resources.files("adaptinf.systemd")
    unit = _directives(files.joinpath("adaptinfd.service").read_text())
    groups = next(line for line in unit if line.startswith("SupplementaryGroups=")).split("=", 1)[1].split()
    assert "jtop" in groups
    entries = [line.split() for line in files.joinpath("adaptinf.sysusers.conf").read_text().splitlines()
               if line and not line.startswith("#")]
    assert ["u", "adaptinf"] == entries[0][:2]
    created = {e[1] for e in entries if e[0] == "g"}
    # Debian and L4T ship dialout and video themselves; the others are created if absent
    assert set(groups) - {"dialout", "video"} <= created
