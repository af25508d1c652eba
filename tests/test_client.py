"""The Python clients against a real adaptinfd: shared by threads, pipelined, asyncio, typed;
and a plain REQ socket, as a program in another language would connect."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import msgpack
import numpy as np
import pytest
import zmq

from adaptinf import api_protocol as api
from adaptinf.client import (ERRORS, ApiError, ApiTimeout, Client, InvalidArgument, Latency, NotFound,
                             ResourceExhausted, ServedBy)
from adaptinf.client.aio import AsyncClient
from adaptinf.engines.onnxruntime_engine import OnnxRuntimeEngine
from conftest import DEMO_BUNDLE, serve_bundle

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    endpoint, service = serve_bundle(tmp_path_factory, DEMO_BUNDLE, "client",
                                     daemon={"workers": 2, "max_in_flight_per_client": 16})
    yield endpoint
    service.stop()


@pytest.fixture(scope="module")
def frames(glyph_frames):
    engine = OnnxRuntimeEngine(DEMO_BUNDLE / "full.onnx")
    images = glyph_frames.images[:32]
    return images, [int(engine.run(f[None]).argmax()) for f in images]


def test_one_client_shared_by_eight_threads_answers_every_frame_once(daemon, frames):
    images, labels = frames
    answers: dict[int, list] = {}
    errors = []
    client = Client(daemon, timeout_s=30)

    def work(t: int) -> None:
        try:
            for i in range(500):
                k = (t * 500 + i) % len(images)
                r = client.infer(images[k][None], policy="mobile-only")
                answers.setdefault(t, []).append((k, r.label, r.id))
        except Exception as exc:  # reported below, with the thread
            errors.append((t, exc))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    client.close()
    assert not errors
    ids = [a[2] for per in answers.values() for a in per]
    assert len(ids) == 8 * 500 and len(set(ids)) == len(ids)         # every frame once
    assert all(label == labels[k] for per in answers.values() for k, label, _ in per)


def test_infer_async_pipelines_with_back_pressure_not_refusals(daemon, frames):
    images, labels = frames
    with Client(daemon, timeout_s=30) as c:
        futures = [c.infer_async(images[i % len(images)][None], policy="mobile-only") for i in range(100)]
        results = [f.result() for f in futures]
        assert [r.label for r in results] == [labels[i % len(images)] for i in range(100)]
        # past the daemon's own limit the daemon refuses, as a typed error
        with Client(daemon, timeout_s=30, max_in_flight=40) as greedy:
            burst = [greedy.infer_async(images[0][None], policy="mobile-only") for _ in range(40)]
            outcomes = Counter(type(f.exception()).__name__ if f.exception() else "ok" for f in burst)
        assert outcomes["ok"] >= 16 and set(outcomes) <= {"ok", "ResourceExhausted"}


def test_results_and_errors_are_typed(daemon, frames):
    images, _ = frames
    with Client(daemon, timeout_s=10) as c:
        assert c.is_ready() and c.models()[0]["name"] == "glyphnet"
        r = c.infer(images[0][None], policy="mobile-only")
        assert isinstance(r.served_by, ServedBy) and r.served_by.placement == "device"
        assert r.served_by.partition == r.served_by["partition"] == "mobile-only"
        assert isinstance(r.latency_ms, Latency) and r.latency_ms.total > 0 and r.latency_ms.cloud is None
        assert "cloud" not in r.latency_ms and r.latency_ms["device"] > 0
        with pytest.raises(InvalidArgument, match="model takes uint8"):
            c.infer(np.zeros((1, 8, 8, 3), np.float32))
        with pytest.raises(NotFound):
            c.infer(images[0][None], model="nope")
        with pytest.raises(ApiError) as exc:
            c.infer(images[0][None], policy="warp-speed")
        assert exc.value.code == api.INVALID_ARG


def test_every_api_code_has_its_exception():
    assert set(ERRORS) == set(api.CODES) - {api.OK}
    assert all(issubclass(cls, ApiError) and cls.code_name == code for code, cls in ERRORS.items())
    assert issubclass(ResourceExhausted, ApiError)


def test_a_timeout_resets_the_connection_so_a_late_reply_never_answers_the_next_request(tmp_short):
    """A server that answers its first request late: that call times out, and the next one
    gets its own answer, not the late one."""
    endpoint = f"ipc://{tmp_short}/slow.sock"
    router = zmq.Context.instance().socket(zmq.ROUTER)
    router.bind(endpoint)
    stop = threading.Event()

    def serve():
        first = True
        while not stop.is_set():
            if not router.poll(50):
                continue
            peer, header = router.recv_multipart()[:2]
            req = msgpack.unpackb(header)
            if first:
                stop.wait(0.5)                  # the client has given up by then
                first = False
            router.send_multipart([peer, msgpack.packb({"v": [1, 0], "id": req["id"], "ok": True, "code": "OK",
                                                        "live": True, "ready": req["id"].endswith("-2")})])

    server = threading.Thread(target=serve)
    server.start()
    try:
        with Client(endpoint, timeout_s=0.2) as c:
            with pytest.raises(ApiTimeout):
                c.health()
            assert c.health(timeout_s=5)["ready"] is True      # request 2's own reply
    finally:
        stop.set()
        server.join()
        router.close(0)


def test_the_asyncio_client_pipelines_on_one_connection(daemon, frames):
    images, labels = frames

    async def main():
        async with AsyncClient(daemon, timeout_s=30) as c:
            assert await c.is_ready()
            results = await asyncio.gather(*(c.infer(images[i % 32][None], policy="mobile-only")
                                             for i in range(64)))
            with pytest.raises(InvalidArgument):
                await c.infer(np.zeros((2, 2), np.uint8))
            return results

    results = asyncio.run(main())
    assert [r.label for r in results] == [labels[i % 32] for i in range(64)]


def test_a_req_socket_is_answered_in_its_envelope(daemon, frames):
    """Written from docs/protocols.md alone: a REQ socket, msgpack header, raw buffer."""
    images, labels = frames
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 10_000)
    sock.connect(daemon)
    try:
        sock.send(msgpack.packb({"v": [1, 0], "op": "health", "id": 1}))
        assert msgpack.unpackb(sock.recv())["ready"] is True
        header = {"v": [1, 0], "op": "infer", "id": "f", "policy": "mobile-only",
                  "tensor": {"dtype": "uint8", "shape": [1, 32, 32, 3]}}
        sock.send_multipart([msgpack.packb(header), images[3][None].tobytes()])
        reply, *buffers = sock.recv_multipart()
        reply = msgpack.unpackb(reply)
        assert reply["id"] == "f" and reply["label"] == labels[3]
        scores = np.frombuffer(buffers[reply["scores"]["buffer"]], "<f4")
        assert scores.argmax() == labels[3]
        sock.send(b"\xc1")                      # not msgpack: still answered, in the envelope
        assert msgpack.unpackb(sock.recv())["code"] == "INVALID_ARG"
    finally:
        sock.close(0)
