"""Issue 29, items 1, 4 and 5: a reply must belong to its request, and a cloud's load report
is taken only when it is one.

1. A device whose clock repeats at every boot reused its request ids, and the worker replayed
   the previous boot's stored replies as answers to new frames. Now the boot id is random,
   the worker de-duplicates on (device, rid, digest of the request), and the device takes a
   reply only with its request's digest.
4, 5. A load that is not a map killed the link thread; a negative queue depth or a NaN
   service time reached the planner. Now they are ignored and counted."""

from __future__ import annotations

import numpy as np
import pytest
import zmq

from adaptinf.cloud import protocol
from adaptinf.cloud.worker import CloudWorker
from adaptinf.daemon.cloud_link import CloudError, CloudLink, CloudReply
from adaptinf.daemon.link_estimator import LinkEstimator


@pytest.fixture
def worker(bundle):
    w = CloudWorker(bundle, "tcp://127.0.0.1:*").start()
    yield w
    w.stop()


def infer(sock, rid, frame):
    header = protocol.Infer("full", frame.shape).header()
    header["digest"] = protocol.request_digest(header, frame)
    sock.send_multipart([protocol.pack(dict(header, rid=list(rid))), frame.tobytes()])
    assert sock.poll(5000)
    reply, payload = sock.recv_multipart()
    return protocol.unpack_reply(reply), np.frombuffer(payload, np.float32), header["digest"]


def test_a_reused_request_id_with_another_frame_is_answered_for_that_frame(worker, glyph_frames):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.IDENTITY, b"rebooting-device")
    sock.connect(worker.bound_endpoint)
    try:
        a, b = glyph_frames.images[0][None], glyph_frames.images[1][None]
        first, logits_a, digest_a = infer(sock, (1_700_000_000, 1), a)
        again, _, _ = infer(sock, (1_700_000_000, 1), a)            # a true retry: replayed
        reboot, logits_b, digest_b = infer(sock, (1_700_000_000, 1), b)   # same id, next boot's frame
    finally:
        sock.close(0)
    assert again.get("replayed") is True and again["digest"] == digest_a
    assert not reboot.get("replayed") and reboot["digest"] == digest_b != digest_a
    assert not np.array_equal(logits_a, logits_b)


def test_the_device_takes_only_a_reply_with_its_requests_digest():
    logits = np.arange(16, dtype=np.float32).tobytes()
    header = {"rid": [1, 1], "ok": True, "code": "OK", "compute_s": 0.001, "digest": 7}
    assert CloudReply(header, logits, 0.01, digest=7).logits(16)[0][3] == 3
    with pytest.raises(CloudError, match="answers another request"):
        CloudReply(header, logits, 0.01, digest=8).logits(16)
    with pytest.raises(CloudError, match="not all finite"):
        CloudReply(header, np.full(16, np.nan, np.float32).tobytes(), 0.01, digest=7).logits(16)


def test_boot_ids_do_not_come_from_the_clock():
    links = [CloudLink("tcp://127.0.0.1:9", "d", LinkEstimator(), wall_clock=lambda: 1_700_000_000.0)
             for _ in range(3)]
    ids = {link.next_rid()[0] for link in links}
    assert len(ids) == 3 and all(i != 1_700_000_000 for i in ids)


@pytest.mark.parametrize("load", [5, "x", [1], {"queue_depth": -1}, {"queue_depth": 10**9},
                                  {"service_s": float("nan")}, {"service_s": -0.5}, {"queue_depth": True}])
def test_a_load_report_that_is_not_one_is_ignored_and_counted(load):
    link = CloudLink("tcp://127.0.0.1:9", "d", LinkEstimator())
    link.queue_depth, link.service_s = 3, 0.01
    header = {"rid": [1, 1], "ok": True, "code": "OK", "load": load}
    link._on_reply([protocol.pack(header)], {}, 0.0)          # the link thread's own call: must not raise
    assert (link.queue_depth, link.service_s) == (3, 0.01) and link.bad_loads == 1
    link._on_reply([protocol.pack(dict(header, load={"queue_depth": 2, "service_s": 0.02}))], {}, 0.0)
    assert (link.queue_depth, link.service_s) == (2, 0.02) and link.bad_loads == 1


def test_a_cloud_serving_another_bundle_is_refused_and_frames_stay_on_the_device(bundle, tmp_path, tmp_short,
                                                                                 glyph_frames, caplog):
    """Issue 29 item 2: a retrained cloud bundle (same names and shapes, new weights) gave wrong
    answers silently. The worker names its bundle in every reply; a device with another one
    refuses the link, says so, and answers every frame itself."""
    import json
    import shutil
    import time

    from adaptinf.bundle import load_bundle
    from adaptinf.client import Client
    from adaptinf.daemon.config import parse_config
    from adaptinf.daemon.service import Daemon

    other = tmp_path / "retrained"
    shutil.copytree(bundle.root, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["name"] = bundle.name + "-retrained"       # another manifest: another sha256
    (other / "manifest.json").write_text(json.dumps(manifest))
    worker = CloudWorker(load_bundle(other), "tcp://127.0.0.1:*").start()
    api = f"ipc://{tmp_short}/f.sock"
    daemon = Daemon(parse_config({"daemon": {"api_endpoint": api, "bundle": str(bundle.root),
                                             "state_dir": str(tmp_short), "warmup_runs": 1},
                                  "cloud": {"endpoint": worker.bound_endpoint}})).start()
    try:
        deadline = time.monotonic() + 10
        while daemon.link.state != "foreign-bundle" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert daemon.link.state == "foreign-bundle"
        with Client(api) as c:
            replies = [c.infer(glyph_frames.images[i:i + 1], policy="cloud-only") for i in range(4)]
            assert c.status()["link"]["state"] == "foreign-bundle"
        assert all(r.served_by.placement == "device" or r.served_by.fallback for r in replies)
        assert daemon.link.foreign_replies > 0
        assert any("serves bundle" in m and "another model's" in m for m in caplog.messages)
        assert worker.counters["requests"] == 0        # not one frame was sent for it to answer
    finally:
        daemon.stop()
        worker.stop()


def test_two_devices_with_one_device_id_the_first_keeps_the_link_and_both_say_why(worker, caplog):
    """Issue 29 item 17: two devices with the same device_id took the link from each other
    (ROUTER_HANDOVER) with nothing naming the cause. Now the worker keeps the first, warns
    naming the id, and the second device logs why it stays local; when the first goes
    silent (a reboot), the id is free again."""
    import time

    def wait_for(predicate, timeout_s=10.0):
        deadline = time.monotonic() + timeout_s
        while not predicate() and time.monotonic() < deadline:
            time.sleep(0.05)
        return predicate()

    first = CloudLink(worker.bound_endpoint, "camera-7", LinkEstimator()).start()
    second = None
    try:
        assert wait_for(lambda: first.up)
        second = CloudLink(worker.bound_endpoint, "camera-7", LinkEstimator()).start()
        assert wait_for(lambda: second.state == "duplicate-id")
        time.sleep(1.5)                                        # three heartbeats each: no flapping
        assert first.up and first.reconnects == 0 and second.state == "duplicate-id"
        frame = np.zeros((1, 32, 32, 3), np.uint8)
        reply = first.call(protocol.Infer("full", frame.shape).header(), frame, 5.0).wait(5.0)
        assert reply.header["ok"]
        assert worker.counters["duplicate_device"] > 0
        assert any("two devices use device id b'camera-7'" in m for m in caplog.messages)
        assert any("another device is using device id 'camera-7'" in m for m in caplog.messages)
        first.stop()                                           # the first one goes away
        assert wait_for(lambda: second.up)
    finally:
        first.stop()
        if second is not None:
            second.stop()
