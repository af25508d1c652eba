"""Edges of the runtime: user data, stale profiles, client timeouts, retries that must not run twice."""

import json
import threading
import time

import numpy as np
import pytest
from PIL import Image

from adaptinf.client import ApiTimeout, Client
from adaptinf.cloud.worker import CloudWorker
from adaptinf.daemon.cloud_link import HEARTBEAT_INTERVAL_S, HEARTBEAT_LIVENESS
from adaptinf.daemon.config import parse_config
from adaptinf.daemon.service import Daemon, StartupError
from adaptinf.rig.link_shaper import LINK_PROFILES, LinkShaper
from adaptinf.toolchain.datasets import image_folder
from test_split_policy import PROFILE


def test_image_folder_loads_users_images(tmp_path):
    for label, colour in (("cat", (200, 10, 10)), ("dog", (10, 200, 10))):
        (tmp_path / label).mkdir()
        for i in range(3):
            Image.new("RGB", (50 + i, 40), colour).save(tmp_path / label / f"{i}.png")
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    data = image_folder(tmp_path, (32, 32))
    assert data.images.shape == (6, 32, 32, 3) and data.images.dtype == np.uint8
    assert data.classes == ("cat", "dog") and list(data.labels) == [0, 0, 0, 1, 1, 1]
    assert data.images[0, 5, 5, 0] == 200 and data.images[3, 5, 5, 1] == 200
    with pytest.raises(ValueError, match="one sub-directory per class"):
        image_folder(tmp_path / "cat", (32, 32))


def test_profile_of_another_bundle_is_refused_with_advice(bundle, tmp_short):
    path = tmp_short / "profile.json"
    path.write_text(json.dumps(dict(PROFILE.to_json(), bundle="0" * 64)))
    config = parse_config({"daemon": {"api_endpoint": f"ipc://{tmp_short}/a.sock", "bundle": str(bundle.root),
                                      "profile": str(path)}})
    daemon = Daemon(config)
    with pytest.raises(StartupError, match="recalibrate"):
        daemon.start()
    daemon.stop()


def test_a_given_profile_is_used_instead_of_a_warm_up(bundle, tmp_short, glyph_frames):
    path = tmp_short / "profile.json"
    path.write_text(json.dumps({"version": 1, "bundle": bundle.manifest_sha256, "partitions": [
        {"name": "mobile-only", "device_ms": 1, "device_power_w": 2, "cloud_ms": 0, "upload_bytes": 0}]}))
    config = parse_config({"daemon": {"api_endpoint": f"ipc://{tmp_short}/a.sock", "bundle": str(bundle.root),
                                      "profile": str(path)}})
    daemon = Daemon(config).start()
    try:
        with Client(f"ipc://{tmp_short}/a.sock") as c:
            assert c.status()["profile"] == str(path)
            assert c.infer(glyph_frames.images[:1]).served_by["partition"] == "mobile-only"
    finally:
        daemon.stop()


def test_client_times_out_instead_of_hanging(tmp_short):
    import zmq

    silent = zmq.Context.instance().socket(zmq.ROUTER)     # a socket that takes requests, never answers
    silent.bind(f"ipc://{tmp_short}/silent.sock")
    try:
        with Client(f"ipc://{tmp_short}/silent.sock", timeout_s=0.2) as c:
            start = time.monotonic()
            with pytest.raises(ApiTimeout):
                c.health()
            assert time.monotonic() - start < 5
    finally:
        silent.close(0)


def test_a_retried_upload_is_computed_once_and_answered_once(bundle, tmp_short, glyph_frames):
    """A stall longer than the retry interval but shorter than the deadline: the link resends with the
    same rid, the worker absorbs or replays it, and the frame is answered once, by the cloud. The
    stall is the link's own retry interval (4 SRTT at least, on a loaded host more) plus 0.5 s."""
    worker = CloudWorker(bundle, "tcp://127.0.0.1:*").start()
    host, port = worker.bound_endpoint.rsplit("//", 1)[1].rsplit(":", 1)
    shaper = LinkShaper((host, int(port)), LINK_PROFILES["wifi"]).start()
    config = parse_config({"daemon": {"api_endpoint": f"ipc://{tmp_short}/a.sock", "bundle": str(bundle.root),
                                      "state_dir": str(tmp_short), "warmup_runs": 3},
                           "cloud": {"endpoint": shaper.endpoint, "timeout_ms": 10_000.0}})
    daemon = Daemon(config).start()
    try:
        with Client(f"ipc://{tmp_short}/a.sock", timeout_s=20) as c:
            c.infer(glyph_frames.images[:1], policy="cloud-only")
            before = dict(worker.counters)
            stall_s = daemon.link.retry_after_s(glyph_frames.images[:1].nbytes) + 0.5
            assert stall_s < HEARTBEAT_LIVENESS * HEARTBEAT_INTERVAL_S, \
                f"the link's retry interval ({stall_s - 0.5:.2f} s) is past its liveness: not this test's case"
            shaper.stall(True)
            threading.Timer(stall_s, shaper.stall, args=(False,)).start()
            r = c.infer(glyph_frames.images[1:2], policy="cloud-only")
            status = c.status()
    finally:
        daemon.stop()
        shaper.stop()
        worker.stop()
    assert r.served_by["placement"] == "cloud" and not r.served_by["fallback"]
    assert status["cloud"]["retries"] >= 1
    assert worker.counters["requests"] - before["requests"] == 1  # computed once
    assert (worker.counters["absorbed"] + worker.counters["replayed"]
            - before["absorbed"] - before["replayed"]) >= 1


def test_client_drops_a_late_reply_and_skips_stale_ones(tmp_short):
    """A reply after the timeout never answers the next request; a stale id in between is skipped."""
    import threading

    import msgpack
    import zmq

    router = zmq.Context.instance().socket(zmq.ROUTER)
    router.bind(f"ipc://{tmp_short}/r.sock")

    def serve():
        for n in range(2):
            peer, header = router.recv_multipart()
            req_id = msgpack.unpackb(header)["id"]
            reply = lambda i: [peer, msgpack.packb({"v": [1, 0], "id": i, "ok": True, "code": "OK"})]  # noqa: E731
            if n == 0:
                time.sleep(0.4)                       # past the client's timeout
                router.send_multipart(reply(req_id))
            else:
                router.send_multipart(reply("stale"))
                router.send_multipart(reply(req_id))

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        with Client(f"ipc://{tmp_short}/r.sock", timeout_s=0.2) as c:
            with pytest.raises(ApiTimeout):
                c.health()
            time.sleep(0.3)                           # the late reply has been sent by now
            header = c.health()
            assert header["id"].endswith("-2")        # the second request's own answer
        server.join(2)
    finally:
        router.close(0)
