"""Resources that a long run must not accumulate: the demo shaper's file descriptors per
finished connection, and a profile's temporary file when the disk is full."""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from adaptinf.profile import parse_profile, save_profile
from adaptinf.rig.link_shaper import LINK_PROFILES, LinkShaper


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_the_shaper_closes_both_sockets_of_every_finished_connection():
    upstream = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def echo_once():
        while not stop.is_set():
            try:
                conn, _ = upstream.accept()
            except OSError:
                return
            with conn:
                data = conn.recv(100)
                conn.sendall(data)

    threading.Thread(target=echo_once, daemon=True).start()
    shaper = LinkShaper(upstream.getsockname(), LINK_PROFILES["wifi"]).start()
    try:
        baseline = _open_fds()
        for _ in range(60):
            with socket.create_connection(("127.0.0.1", shaper.port)) as c:
                c.sendall(b"ping")
                assert c.recv(100) == b"ping"
        deadline = time.monotonic() + 20      # the writers notice the close within 0.1 s each
        while (shaper.open_sockets() or _open_fds() > baseline + 2) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert shaper.open_sockets() == 0
        assert _open_fds() <= baseline + 2    # 120 sockets were opened; none is left
    finally:
        stop.set()
        shaper.stop()
        upstream.close()


def test_a_full_disk_leaves_no_temporary_profile(tmp_path, monkeypatch):
    from test_profile import valid

    def disk_full(self, data, *args, **kwargs):
        with open(self, "w"):
            pass                                  # the file is created, then the write fails
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError):
        save_profile(parse_profile(valid()), tmp_path / "profile.json")
    assert list(tmp_path.iterdir()) == []
