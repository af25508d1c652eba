"""Real processes over real sockets: adaptinf-cloud, a shaping proxy, adaptinfd, clients."""

from __future__ import annotations

import threading
import time

import msgpack
import numpy as np
import pytest
import zmq

from adaptinf.client import Client
from adaptinf.cloud import protocol
from adaptinf.cloud.worker import CloudWorker
from adaptinf.policies.plan import FrameContext, Telemetry
from adaptinf.policies.split import SplitPolicy
from adaptinf.profile import load_profile
from adaptinf.rig.link_shaper import LINK_PROFILES, LinkProfile, LinkShaper
from adaptinf.rig.processes import spawn_cloud, spawn_daemon, write_daemon_config
from conftest import DEMO_BUNDLE, free_port

pytestmark = pytest.mark.slow
ORDER = ["cloud-only", "RB1", "RB2", "RB3", "RB4", "RB5", "RB6", "mobile-only"]  # device share grows ->


def start_daemon(tmp, cloud_endpoint, radio="wifi", timeout_ms=1000.0, slowdown=20.0):
    api = f"ipc://{tmp}/api.sock"
    config = write_daemon_config(tmp / "adaptinfd.toml",
                                 daemon={"api_endpoint": api, "bundle": str(DEMO_BUNDLE), "state_dir": str(tmp),
                                         "warmup_runs": 5},
                                 device={"emulate_slowdown": slowdown},
                                 cloud={"endpoint": cloud_endpoint, "radio": radio, "timeout_ms": timeout_ms})
    return spawn_daemon(config), api


def test_partition_moves_toward_the_device_as_the_uplink_slows(tmp_short, glyph_frames):
    # a device 100x this CPU (the full model about 90 ms): on Wi-Fi the cloud is clearly
    # faster even when a loaded host slows the cloud worker and the shaper, and at 0.3 Mbit/s
    # the device is (at 20x, a loaded CI host once made mobile-only the Wi-Fi choice too)
    cloud = spawn_cloud(DEMO_BUNDLE)
    host, port = cloud.endpoint.rsplit("//", 1)[1].rsplit(":", 1)
    shaper = LinkShaper((host, int(port)), LINK_PROFILES["wifi"]).start()
    daemon, api = start_daemon(tmp_short, shaper.endpoint, slowdown=100.0)
    try:
        with Client(api, timeout_s=10) as c:
            fast = [c.infer(glyph_frames.images[i:i + 1]).served_by["partition"] for i in range(15)]
            shaper.set_profile(LinkProfile("slow", 0.3e6, 5e6, 0.030))
            slow = [c.infer(glyph_frames.images[i:i + 1]).served_by["partition"] for i in range(40)]
            status = c.status()
    finally:
        daemon.stop()
        shaper.stop()
        cloud.stop()
    assert max(ORDER.index(p) for p in fast[-5:]) < ORDER.index(slow[-1])  # moved toward the device
    assert status["link"]["uplink_bps"] < 1e6  # the estimator saw the slower link
    # ...and it is the choice the cost model makes from the daemon's own profile and link estimate
    profile = load_profile(tmp_short / "profile.json")
    telemetry = Telemetry(uplink_bps=status["link"]["uplink_bps"], rtt_s=status["link"]["rtt_ms"] / 1e3,
                          radio="wifi", cloud_slowdown=status["cloud"]["time_vs_profile"],
                          device_slowdown=status["device"]["time_vs_profile"])
    assert SplitPolicy().plan(FrameContext(), telemetry, profile).chosen.name == slow[-1]


def stream(sock, frames, start, count, policy="cloud-only"):
    """Send frames one by one on a raw DEALER; returns {id: [reply headers]}."""
    replies = {}
    for i in range(start, start + count):
        header = {"v": [1, 0], "op": "infer", "id": i, "policy": policy,
                  "tensor": {"dtype": "uint8", "shape": [1, 32, 32, 3]}}
        sock.send_multipart([msgpack.packb(header), frames[i % len(frames)][None].tobytes()])
        assert sock.poll(10_000), f"frame {i} was not answered"
        reply = msgpack.unpackb(sock.recv_multipart()[0])
        replies.setdefault(reply["id"], []).append(reply)
    return replies


def drain(sock, wait_s=1.5):
    """Anything still arriving would be a second answer to a frame."""
    extra = []
    deadline = time.monotonic() + wait_s
    while sock.poll(max(1, int((deadline - time.monotonic()) * 1000))):
        extra.append(msgpack.unpackb(sock.recv_multipart()[0]))
    return extra


@pytest.fixture
def dealer():
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    yield sock
    sock.close()


def test_killing_the_cloud_loses_no_frame_and_the_daemon_comes_back(tmp_short, glyph_frames, dealer):
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    cloud = spawn_cloud(DEMO_BUNDLE, endpoint)
    daemon, api = start_daemon(tmp_short, endpoint, timeout_ms=300.0)
    dealer.connect(api)
    try:
        replies = stream(dealer, glyph_frames.images, 0, 10)
        cloud.kill()
        replies.update(stream(dealer, glyph_frames.images, 10, 15))
        cloud = spawn_cloud(DEMO_BUNDLE, endpoint)
        back = None
        for i in range(25, 200):
            replies.update(stream(dealer, glyph_frames.images, i, 1))
            if not replies[i][0]["served_by"]["fallback"]:
                back = i
                break
            time.sleep(0.05)
        extra = drain(dealer)
        with Client(api) as c:
            counters = c.stats()
    finally:
        daemon.stop()
        cloud.stop()
    assert extra == []
    assert all(len(r) == 1 and r[0]["ok"] for r in replies.values())  # every frame: exactly one OK answer
    assert all(not replies[i][0]["served_by"]["fallback"] for i in range(10))
    assert all(replies[i][0]["served_by"]["fallback"] for i in range(12, 25))  # answered on the device
    assert back is not None, "the daemon never went back to the cloud"
    assert counters["counters"]["fallbacks"] >= 13


def test_late_cloud_reply_after_fallback_is_dropped(tmp_short, glyph_frames, dealer):
    cloud = spawn_cloud(DEMO_BUNDLE)
    host, port = cloud.endpoint.rsplit("//", 1)[1].rsplit(":", 1)
    shaper = LinkShaper((host, int(port)), LINK_PROFILES["wifi"]).start()
    daemon, api = start_daemon(tmp_short, shaper.endpoint, timeout_ms=150.0)
    dealer.connect(api)
    try:
        replies = stream(dealer, glyph_frames.images, 0, 3)
        shaper.stall(True)
        replies.update(stream(dealer, glyph_frames.images, 3, 3))  # each waits 150 ms, then falls back
        shaper.stall(False)
        time.sleep(0.5)  # the stalled replies now reach the daemon, late
        replies.update(stream(dealer, glyph_frames.images, 6, 3))
        extra = drain(dealer)
        with Client(api) as c:
            status = c.status()
    finally:
        daemon.stop()
        shaper.stop()
        cloud.stop()
    assert extra == [] and all(len(r) == 1 for r in replies.values())
    assert all(replies[i][0]["served_by"]["fallback"] for i in (3, 4, 5))
    assert status["cloud"]["late_replies_dropped"] >= 1


def test_cloud_worker_runs_a_retried_request_once(bundle, dealer):
    worker = CloudWorker(bundle, "tcp://127.0.0.1:*").start()
    dealer.setsockopt(zmq.ROUTING_ID, b"device-7")
    dealer.connect(worker.bound_endpoint)
    frame = np.zeros((1, 32, 32, 3), np.uint8)
    request = [protocol.pack({"op": "infer", "rid": [1, 42], "target": "full",
                              "tensor": {"dtype": "uint8", "shape": [1, 32, 32, 3]}}), frame.tobytes()]
    # Hold the first request in the engine until the retry has been received, so the retry
    # meets a running request on any machine, however loaded.
    engine, gate = worker._engines[protocol.FULL_TARGET], threading.Event()
    real_run = engine.run
    engine.run = lambda x: (gate.wait(10), real_run(x))[1]
    try:
        dealer.send_multipart(request)
        dealer.send_multipart(request)  # a retry while the first is queued or running: absorbed
        deadline = time.monotonic() + 10
        while worker.counters["absorbed"] < 1 and time.monotonic() < deadline:
            gate.wait(0.01)
        gate.set()
        assert dealer.poll(5000)
        first = dealer.recv_multipart()
        dealer.send_multipart(request)  # a retry after the answer: the stored reply, replayed
        assert dealer.poll(5000)
        second = dealer.recv_multipart()
        time.sleep(0.2)
        assert not dealer.poll(100)  # and nothing else
    finally:
        worker.stop()
    h1, h2 = protocol.unpack_reply(first[0]), protocol.unpack_reply(second[0])
    assert h1["ok"] and h2.get("replayed") is True and first[1] == second[1]
    assert "queue_depth" in h1["load"] and "service_s" in h1["load"]
    assert worker.counters["requests"] == 1
    assert worker.counters["absorbed"] == 1 and worker.counters["replayed"] == 1
