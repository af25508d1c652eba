"""Issue 29 item 7: SIGTERM with frames waiting on a stalled cloud aborted (exit -6,
"terminate called without an active exception") and left frames unanswered; with shorter
timeouts they were answered only after the whole cloud timeout. Now the waits are cut at
SIGTERM: those frames finish on the device, and adaptinfd exits 0."""

from __future__ import annotations

import signal
import time

import numpy as np

from adaptinf.api_protocol import decode_reply, encode_request
from adaptinf.rig.link_shaper import LINK_PROFILES, LinkShaper
from adaptinf.rig.processes import spawn_cloud, spawn_daemon, write_daemon_config
from conftest import DEMO_BUNDLE


def test_sigterm_with_frames_waiting_on_a_stalled_cloud_answers_them_on_the_device_and_exits_0(tmp_short):
    import zmq

    cloud = spawn_cloud(DEMO_BUNDLE)
    host, port = cloud.endpoint.rsplit("//", 1)[1].rsplit(":", 1)
    shaper = LinkShaper((host, int(port)), LINK_PROFILES["wifi"]).start()
    api = f"ipc://{tmp_short}/api.sock"
    config = write_daemon_config(tmp_short / "adaptinfd.toml",
                                 daemon={"api_endpoint": api, "bundle": str(DEMO_BUNDLE), "state_dir": str(tmp_short),
                                         "workers": 4, "warmup_runs": 2},
                                 cloud={"endpoint": shaper.endpoint, "timeout_ms": 30000.0},
                                 power={"source": "none"})
    daemon = spawn_daemon(config)
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(api)
    try:
        shaper.stall(True)                         # the cloud stops answering (as SIGSTOP does)
        frame = np.zeros((1, 32, 32, 3), np.uint8)
        for i in range(12):
            sock.send_multipart(encode_request("infer", i, {"policy": "cloud-only", "deadline_ms": 60000.0,
                                                            "tensor": {"dtype": "uint8", "shape": [1, 32, 32, 3]}},
                                               (frame.tobytes(),)))
        time.sleep(1.0)                            # four are waiting on the cloud, eight queued
        stopped_at = time.monotonic()
        code = daemon.stop(signal.SIGTERM, timeout_s=25)
        replies = {}
        while sock.poll(2000):
            header, _ = decode_reply(sock.recv_multipart())
            replies.setdefault(header["id"], []).append(header["code"])
    finally:
        sock.close(0)
        shaper.stop()
        cloud.stop()
    assert code == 0, "\n".join(daemon.output[-20:])
    assert sorted(replies) == list(range(12)) and all(len(c) == 1 for c in replies.values())
    assert set(c for codes in replies.values() for c in codes) <= {"OK", "UNAVAILABLE"}
    # bounded by the stop's own timeout above, not by the cloud's 30 s: the waits were cut
    assert time.monotonic() - stopped_at < 25
