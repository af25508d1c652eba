"""Issue 19: each bad input gets its one-line message (no traceback), and the client
commands follow their ecosystem's conventions."""

import os
import subprocess
import sys
import time

import pytest

from adaptinf.programs.cli import main as cli_main
from adaptinf.daemon.config import parse_config
from adaptinf.daemon.service import Daemon
from conftest import DEMO_BUNDLE

REPO = DEMO_BUNDLE.parent.parent


def run(*args, **kwargs):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, cwd=REPO, **kwargs)


def one_line_error(result, *words):
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert all(w in result.stderr for w in words), result.stderr


def test_a_bad_log_level_is_a_usage_error():
    one_line_error(run("-m", "adaptinf.daemon.main", "--log-level", "LOUD"), "not a log level", "DEBUG")
    one_line_error(run("-m", "adaptinf.cloud.main", "--bundle", str(DEMO_BUNDLE), "--log-level", "LOUD"),
                   "not a log level")


def test_a_cloud_endpoint_that_is_not_an_address_is_refused():
    one_line_error(run("-m", "adaptinf.cloud.main", "--bundle", str(DEMO_BUNDLE), "--endpoint",
                       "tcp://0.0.0.0:notaport"), "cannot serve on tcp://0.0.0.0:notaport")


def test_a_dataset_folder_that_is_not_there_is_refused(tmp_path, capsys):
    pytest.importorskip("torch", reason="build split needs the 'build' extra")
    assert cli_main(["build", "split", "--out", str(tmp_path / "b"), "--dataset", "folder:/nonexistent"]) == 2
    err = capsys.readouterr().err
    assert "/nonexistent" in err and "Traceback" not in err


def test_a_closed_pipe_ends_quietly(tmp_path):
    from adaptinf.profile import save_profile
    from test_split_policy import PROFILE

    save_profile(PROFILE, tmp_path / "p.json")
    result = subprocess.run(f"{sys.executable} -m adaptinf plan --profile {tmp_path / 'p.json'} --uplink 5mbit "
                            "| head -c 10", shell=True, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert len(result.stdout) == 10 and "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


def test_a_missing_socket_is_said_at_once_with_what_to_check(tmp_path, capsys):
    start = time.monotonic()
    assert cli_main(["status", "--endpoint", f"ipc://{tmp_path}/none.sock", "--timeout", "30"]) == 1
    err = capsys.readouterr().err
    assert "no adaptinfd socket" in err and "systemctl status adaptinfd" in err
    assert time.monotonic() - start < 10          # not the 30 s timeout


def test_permission_denied_is_said_with_the_group_to_join(tmp_path, capsys, monkeypatch):
    sock = tmp_path / "api.sock"
    sock.write_text("")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(sock) else real_access(p, mode))
    assert cli_main(["health", "--endpoint", f"ipc://{sock}"]) == 1
    err = capsys.readouterr().err
    assert "permission denied" in err and "group" in err and "systemctl status adaptinfd" in err


@pytest.fixture
def live_daemon(tmp_short):
    daemon = Daemon(parse_config({"daemon": {"api_endpoint": f"ipc://{tmp_short}/api.sock",
                                             "bundle": str(DEMO_BUNDLE), "state_dir": str(tmp_short),
                                             "warmup_runs": 1}})).start()
    yield f"ipc://{tmp_short}/api.sock"
    daemon.stop()


def test_client_commands_take_the_endpoint_from_adaptinf_api(live_daemon, capsys, monkeypatch):
    monkeypatch.setenv("ADAPTINF_API", live_daemon)
    assert cli_main(["health"]) == 0
    assert '"live": true' in capsys.readouterr().out
    assert cli_main(["stats"]) == 0
    out = capsys.readouterr().out
    assert "replies by code" in out and "{" not in out                         # a table
    assert cli_main(["stats", "--json"]) == 0
    body = capsys.readouterr().out
    assert '"codes"' in body and '"ok"' not in body                           # the body, no envelope


def test_status_watch_writes_no_terminal_codes_into_a_pipe(live_daemon):
    proc = subprocess.Popen([sys.executable, "-m", "adaptinf", "status", "--endpoint", live_daemon, "--watch",
                             "0.3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    time.sleep(3)
    proc.terminate()
    out, _ = proc.communicate(timeout=10)
    assert out.count("adaptinfd  glyphnet") >= 2 and "\x1b" not in out
