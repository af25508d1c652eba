"""Fault injection with real processes under a steady stream of frames.

One adaptinfd (with a power sensor in a fake sysfs tree), a cloud worker behind a
shaping link, and a client streaming frames with a few in flight at a time. While it
streams: the link stalls, the cloud worker is killed and restarted, the power sensor
is removed and comes back, the daemon gets SIGHUP, and finally SIGTERM. Every frame
sent must be answered exactly once, and the daemon must exit cleanly.
"""

import shutil
import signal
import threading
import time

import msgpack
import pytest
import zmq

from adaptinf.client import Client
from adaptinf.rig import hwmon_tree
from adaptinf.rig.link_shaper import LINK_PROFILES, LinkShaper
from adaptinf.rig.processes import spawn_cloud, spawn_daemon, write_daemon_config
from conftest import DEMO_BUNDLE, free_port

pytestmark = pytest.mark.slow
WINDOW = 4  # frames in flight


class Stream(threading.Thread):
    """Sends frames continuously (at most WINDOW outstanding) and records every reply by id."""

    def __init__(self, endpoint, frames):
        super().__init__(daemon=True)
        self.endpoint, self.frames = endpoint, frames
        self.sent = 0
        self.replies: dict[int, list] = {}
        self.stop_sending = threading.Event()
        self.done = threading.Event()

    def run(self):
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.endpoint)
        outstanding = 0
        quiet_since = None
        while True:
            while outstanding < WINDOW and not self.stop_sending.is_set():
                i = self.sent
                header = {"v": [1, 0], "op": "infer", "id": i, "deadline_ms": 2000,
                          "tensor": {"dtype": "uint8", "shape": [1, 32, 32, 3]}}
                if i % 2:
                    # every other frame pinned to the cloud: the split policy may (rightly) keep
                    # frames local on a loaded machine, and then no fault would touch a frame
                    header["policy"] = "cloud-only"
                sock.send_multipart([msgpack.packb(header), self.frames[i % len(self.frames)][None].tobytes()])
                self.sent += 1
                outstanding += 1
            if sock.poll(100):
                reply = msgpack.unpackb(sock.recv_multipart()[0])
                self.replies.setdefault(reply["id"], []).append(reply)
                outstanding -= 1
                quiet_since = None
            elif self.stop_sending.is_set():
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since > 2.0:  # nothing more is coming
                    break
        sock.close()
        self.done.set()


def until(api, condition, timeout_s=30.0):
    """The daemon's status once `condition` holds (or the last one after timeout_s): what the
    daemon notices is waited for, not guessed with a fixed sleep that a loaded machine outruns."""
    deadline = time.monotonic() + timeout_s
    with Client(api) as c:
        while True:
            status = c.status()
            if condition(status) or time.monotonic() > deadline:
                return status
            time.sleep(0.1)


def test_faults_under_a_steady_stream(tmp_short, glyph_frames):
    sysfs = tmp_short / "sysfs"
    sensor = hwmon_tree.ina2xx_hwmon(sysfs, bus_mv=5000, current_ma=1200)
    port = free_port()
    cloud_endpoint = f"tcp://127.0.0.1:{port}"
    cloud = spawn_cloud(DEMO_BUNDLE, cloud_endpoint)
    shaper = LinkShaper(("127.0.0.1", port), LINK_PROFILES["4g"]).start()
    api = f"ipc://{tmp_short}/api.sock"
    sections = dict(daemon={"api_endpoint": api, "bundle": str(DEMO_BUNDLE), "state_dir": str(tmp_short),
                            "warmup_runs": 3},
                    device={"emulate_slowdown": 20.0},
                    cloud={"endpoint": shaper.endpoint, "radio": "4g", "timeout_ms": 300.0},
                    power={"source": "hwmon", "sysfs_root": str(sysfs), "rate_hz": 50.0})
    config = write_daemon_config(tmp_short / "adaptinfd.toml", **sections)
    daemon = spawn_daemon(config)
    stream = Stream(api, glyph_frames.images)
    events = []
    try:
        stream.start()
        time.sleep(1.0)
        shaper.stall(True)                     # the radio goes dead for a while
        time.sleep(1.0)
        shaper.stall(False)
        events.append(("stall", stream.sent))
        time.sleep(1.0)
        cloud.kill()                           # the cloud worker dies...
        time.sleep(1.5)
        cloud = spawn_cloud(DEMO_BUNDLE, cloud_endpoint)   # ...and comes back on the same address
        events.append(("cloud restarted", stream.sent))
        time.sleep(2.0)
        backup = tmp_short / "sensor-backup"
        shutil.move(str(sensor), str(backup))  # the power sensor vanishes...
        power_down = until(api, lambda st: st["power"]["healthy"] is False)["power"]
        shutil.move(str(backup), str(sensor))  # ...and comes back
        power_up = until(api, lambda st: st["power"]["healthy"] is True)["power"]
        daemon.process.send_signal(signal.SIGHUP)
        status = until(api, lambda st: st["cloud"]["state"] == "up")   # the restarted cloud is back in use
        stream.stop_sending.set()
        assert stream.done.wait(20), "the stream never finished"
        daemon.process.send_signal(signal.SIGTERM)
        exit_code = daemon.process.wait(15)
    finally:
        stream.stop_sending.set()
        daemon.stop()
        shaper.stop()
        cloud.stop()
    answered = stream.replies
    assert stream.sent > 50
    assert sorted(answered) == list(range(stream.sent)), "a frame was never answered"
    assert all(len(r) == 1 for r in answered.values()), "a frame was answered twice"
    assert all(r[0]["code"] == "OK" for r in answered.values())
    placements = {r[0]["served_by"]["placement"] for r in answered.values()}
    assert "cloud" in placements or "split" in placements   # the cloud was used...
    assert any(r[0]["served_by"]["fallback"] for r in answered.values())  # ...and fallen back from
    assert power_down["healthy"] is False and power_up["healthy"] is True
    assert status["cloud"]["state"] == "up"
    assert exit_code == 0
