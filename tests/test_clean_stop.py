"""A stopped daemon leaves nothing behind that makes the next client wait or the next start
trip: no socket, no lock file; a socket left by a killed one is named at once."""

from __future__ import annotations

import socket

import pytest

from adaptinf.client import ApiUnreachable, Client, check_reachable
from adaptinf.daemon.config import parse_config
from adaptinf.daemon.service import Daemon, StartupError


def test_a_clean_stop_removes_the_socket_and_its_lock(bundle, tmp_short):
    api = tmp_short / "api.sock"
    daemon = Daemon(parse_config({"daemon": {"api_endpoint": f"ipc://{api}", "bundle": str(bundle.root),
                                             "state_dir": str(tmp_short), "warmup_runs": 1}})).start()
    assert api.exists() and api.with_name("api.sock.lock").exists()
    daemon.stop()
    assert not api.exists() and not api.with_name("api.sock.lock").exists()
    with pytest.raises(ApiUnreachable, match="no adaptinfd socket"):
        Client(f"ipc://{api}")


def test_a_failed_start_leaves_no_lock_file(bundle, tmp_short):
    api = tmp_short / "api.sock"
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    config = parse_config({"daemon": {"api_endpoint": f"ipc://{api}", "bundle": str(bundle.root),
                                      "state_dir": str(tmp_short), "warmup_runs": 1,
                                      "metrics_endpoint": f"127.0.0.1:{taken.getsockname()[1]}"}})
    daemon = Daemon(config)
    try:
        with pytest.raises(StartupError, match="metrics_endpoint"):    # its port is taken, late in start
            daemon.start()
        daemon.stop()                  # what adaptinfd's main does with a start that failed
    finally:
        taken.close()
    assert not api.exists() and not api.with_name("api.sock.lock").exists()


def test_a_second_daemon_does_not_remove_the_first_ones_socket(bundle, tmp_short):
    api = tmp_short / "api.sock"
    cfg = {"daemon": {"api_endpoint": f"ipc://{api}", "bundle": str(bundle.root), "state_dir": str(tmp_short),
                      "warmup_runs": 1}}
    first = Daemon(parse_config(cfg)).start()
    try:
        second = Daemon(parse_config(cfg))
        with pytest.raises(StartupError, match="already serves"):
            second.start()
        second.stop()
        assert api.exists()
        with Client(f"ipc://{api}") as c:
            assert c.is_ready()
    finally:
        first.stop()


def test_a_socket_left_by_a_killed_daemon_is_named_at_once(tmp_short):
    path = tmp_short / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))          # bound, never listening, closed: what kill -9 leaves
    s.close()
    with pytest.raises(ApiUnreachable, match="no longer running"):    # said, not a timeout
        check_reachable(f"ipc://{path}")
