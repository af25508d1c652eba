"""Malformed requests against a live daemon: each gets ok=false with its code; the daemon keeps serving."""

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adaptinf import api_protocol as api
from adaptinf.client import ApiFailure, Client
from adaptinf.cloud.worker import CloudWorker
from adaptinf.daemon.config import parse_config
from adaptinf.daemon.service import Daemon, StartupError

MAX_MESSAGE = 64 * 1024


@pytest.fixture(scope="module")
def system(bundle, tmp_path_factory):
    import tempfile

    d = tempfile.mkdtemp(prefix="ai-")
    worker = CloudWorker(bundle, "tcp://127.0.0.1:*").start()
    config = parse_config({"daemon": {"api_endpoint": f"ipc://{d}/api.sock", "bundle": str(bundle.root),
                                      "state_dir": d, "max_message_bytes": MAX_MESSAGE, "warmup_runs": 3,
                                      "inline_max_ms": 50.0},  # device frames inline, whatever the warm-up measured
                           "cloud": {"endpoint": worker.bound_endpoint}})
    daemon = Daemon(config).start()
    yield daemon, f"ipc://{d}/api.sock"
    daemon.stop()
    worker.stop()


@pytest.fixture
def raw(system):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(system[1])
    yield sock
    sock.close()


def ask(sock, frames, timeout_ms=5000):
    sock.send_multipart(frames)
    assert sock.poll(timeout_ms), "no reply: the daemon stalled"
    header = msgpack.unpackb(sock.recv_multipart()[0])
    assert header["v"] == [1, 0] and isinstance(header["ok"], bool) and header["code"] in api.CODES
    return header


def infer_header(**overrides):
    h = {"v": [1, 0], "op": "infer", "id": "r1", "tensor": {"dtype": "uint8", "shape": [1, 32, 32, 3]}}
    h.update(overrides)
    return msgpack.packb(h)


FRAME = np.zeros((1, 32, 32, 3), np.uint8).tobytes()


@pytest.mark.parametrize("frames,code", [
    ([b"\xc1garbage"], api.INVALID_ARG),                                          # not msgpack
    ([msgpack.packb({"v": [1, 0], "op": "infer", "id": "x"})[:-3]], api.INVALID_ARG),  # truncated
    ([msgpack.packb([1, 2, 3])], api.INVALID_ARG),                                # not a map
    ([msgpack.packb({1: "int key", "id": "x"})], api.INVALID_ARG),               # integer map key
    ([msgpack.packb({"v": [1, 0], "op": "infer"})], api.INVALID_ARG),             # no id
    ([msgpack.packb({"v": [1, 0], "op": "teleport", "id": "x"})], api.NOT_FOUND),  # unknown op
    ([msgpack.packb({"v": [2, 0], "op": "status", "id": "x"})], api.VERSION_MISMATCH),
    ([msgpack.packb({"op": "status", "id": "x"})], api.INVALID_ARG),              # no version
    ([infer_header(tensor={"dtype": "float64", "shape": [1, 32, 32, 3]}), FRAME], api.INVALID_ARG),
    ([infer_header(tensor={"dtype": "uint8", "shape": [1, 32, 32, 4]}), FRAME], api.INVALID_ARG),  # bytes != shape
    ([infer_header(tensor={"dtype": "uint8", "shape": [1, 32, 32]}), FRAME[:3072]], api.INVALID_ARG),  # wrong shape
    ([infer_header(tensor={"dtype": "uint8", "shape": [1, -32, 32, 3]}), FRAME], api.INVALID_ARG),
    ([infer_header()], api.INVALID_ARG),                                          # missing buffer
    ([infer_header(), FRAME, FRAME], api.INVALID_ARG),                            # extra buffer
    ([infer_header(), b"\0" * (MAX_MESSAGE + 1)], api.TOO_LARGE),                 # over the application limit
    ([infer_header(model="resnet"), FRAME], api.NOT_FOUND),
    ([infer_header(mode="turbo"), FRAME], api.INVALID_ARG),
    ([infer_header(policy="magic"), FRAME], api.INVALID_ARG),
    ([infer_header(deadline_ms=-5), FRAME], api.INVALID_ARG),
    ([infer_header(priority="high"), FRAME], api.INVALID_ARG),
    ([msgpack.packb({"v": [1, 0], "op": "set_mode", "id": "x", "mode": "turbo"})], api.INVALID_ARG),
    ([b"\x91" * 2000 + b"\x00"], api.INVALID_ARG),                                # deep nesting
])
def test_bad_request_gets_its_code_and_the_next_request_is_answered(raw, frames, code):
    header = ask(raw, frames)
    assert header["ok"] is False and header["code"] == code and header["message"]
    good = ask(raw, [infer_header(id="after"), FRAME])
    assert good["ok"] is True and good["id"] == "after"


def test_reply_echoes_the_request_id_when_it_was_readable(raw):
    header = ask(raw, [msgpack.packb({"v": [1, 0], "op": "teleport", "id": 77})])
    assert header["id"] == 77


def test_hello_negotiates_even_across_major_versions(raw):
    header = ask(raw, [msgpack.packb({"v": [9, 0], "op": "hello", "id": "h"})])
    assert header["ok"] and header["protocol"] == [1, 0] and "infer" in header["features"]
    assert header["max_message_bytes"] == MAX_MESSAGE


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=3))
def test_fuzzed_messages_always_get_a_well_formed_reply(raw, frames):
    header = ask(raw, frames)
    assert header["ok"] is False or header["code"] == api.OK


def test_client_operations(system, glyph_frames):
    _, endpoint = system
    with Client(endpoint, timeout_s=5) as c:
        assert c.health() ["live"] is True
        assert c.models()[0]["inputs"][0]["shape"] == [1, 32, 32, 3]
        assert c.set_mode("private")["previous"] == "normal"
        r = c.infer(glyph_frames.images[:1])
        assert r.served_by["placement"] == "device"  # private: nothing leaves the device
        c.set_mode("normal")
        r = c.infer(glyph_frames.images[:1], mode="mission-critical")
        assert r.served_by["partition"] in ("mobile-only", "cloud-only")  # the most accurate model
        assert r.scores.shape == (16,) and abs(float(r.scores.sum()) - 1.0) < 1e-4
        assert r.label == int(np.argmax(r.scores)) and r.energy_j > 0
        stats = c.stats()
        assert stats["codes"]["OK"] >= 2 and sum(stats["placements"].values()) >= 2
        with pytest.raises(ApiFailure) as err:
            c.set_mode("turbo")
        assert err.value.code == "INVALID_ARG"


def test_a_second_daemon_does_not_steal_the_socket(system, bundle):
    daemon, endpoint = system
    config = parse_config({"daemon": {"api_endpoint": endpoint, "bundle": str(bundle.root), "warmup_runs": 1}})
    with pytest.raises(StartupError, match="another adaptinfd already serves"):
        Daemon(config).start()
    with Client(endpoint, timeout_s=5) as c:  # the first one still answers
        assert c.health()["live"]


def test_a_client_that_never_reads_does_not_stall_others(system, glyph_frames):
    _, endpoint = system
    ctx = zmq.Context.instance()
    hog = ctx.socket(zmq.DEALER)
    hog.setsockopt(zmq.LINGER, 0)
    hog.setsockopt(zmq.RCVHWM, 1)
    hog.connect(endpoint)
    status = msgpack.packb({"v": [1, 0], "op": "status", "id": "s"})
    for _ in range(2000):  # replies pile up unread
        hog.send_multipart([status])
    with Client(endpoint, timeout_s=10) as c:
        assert c.infer(glyph_frames.images[:1]).label >= 0
        assert c.health()["live"]
    hog.close()


def test_short_device_frames_run_inline_and_cloud_frames_use_the_pool(system, glyph_frames):
    _, endpoint = system
    with Client(endpoint, timeout_s=5) as c:
        before = c.stats()["counters"].get("frames_inline", 0)
        assert c.infer(glyph_frames.images[:1], mode="private").served_by["placement"] == "device"
        after_device = c.stats()["counters"].get("frames_inline", 0)
        assert c.infer(glyph_frames.images[:1], policy="cloud-only").served_by["placement"] == "cloud"
        after_cloud = c.stats()["counters"].get("frames_inline", 0)
    assert after_device == before + 1 and after_cloud == after_device


def test_a_frame_counted_in_the_statistics_the_moment_its_reply_is_read(system, glyph_frames):
    # an inline frame's bookkeeping runs after its reply leaves, but before the next request
    _, endpoint = system
    with Client(endpoint, timeout_s=5) as c:
        for policy in ("mobile-only", "cloud-only"):        # inline, then through a worker
            before = c.stats()["placements"]
            c.infer(glyph_frames.images[:1], policy=policy)
            after = c.stats()["placements"]
            assert sum(after.values()) == sum(before.values()) + 1, policy


def test_a_failing_bookkeeping_step_costs_no_frame_its_answer(system, glyph_frames, monkeypatch):
    daemon, endpoint = system

    def broken(*args, **kwargs):
        raise RuntimeError("a metrics bug")

    monkeypatch.setattr(daemon.frame_metrics, "observe", broken)
    with Client(endpoint, timeout_s=5) as c:
        for policy in ("mobile-only", "cloud-only"):        # the API thread's path, then a worker's
            for _ in range(3):
                assert c.infer(glyph_frames.images[:1], policy=policy).label is not None
        assert c.health()["live"]
    assert daemon.api.alive() and daemon.pool.alive()
