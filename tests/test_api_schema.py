"""docs/api-schema.json cannot drift: it is what core/api_schema.py generates, every reply a
real adaptinfd sends fits it, and the daemon accepts what it accepts and refuses what it
refuses."""

from __future__ import annotations

import json
import sys

import msgpack
import msgspec
import numpy as np
import pytest
import zmq

from adaptinf.api_schema import REPLIES, REQUESTS, InferRequest, json_schema
from conftest import DEMO_BUNDLE, REPO, serve_bundle

pytestmark = pytest.mark.slow


def test_the_committed_schema_is_the_generated_one():
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from api_schema import render
    finally:
        sys.path.remove(str(REPO / "scripts"))
    assert (REPO / "docs" / "api-schema.json").read_text() == render(), \
        "docs/api-schema.json is stale: run python scripts/api_schema.py"
    schema = json_schema()
    assert set(schema["requests"]) == set(schema["replies"]) == set(REQUESTS) == set(REPLIES)


@pytest.fixture(scope="module")
def dealer(tmp_path_factory):
    endpoint, service = serve_bundle(tmp_path_factory, DEMO_BUNDLE, "schema")
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.RCVTIMEO, 10_000)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    yield sock
    sock.close(0)
    service.stop()


def ask(sock, header: dict, *buffers: bytes) -> tuple[dict, list]:
    sock.send_multipart([msgpack.packb(header), *buffers])
    reply, *frames = sock.recv_multipart()
    return msgpack.unpackb(reply), frames


FRAME = np.zeros((1, 32, 32, 3), np.uint8).tobytes()


def test_every_reply_of_a_real_daemon_fits_its_schema(dealer):
    for op in REQUESTS:
        header = {"v": [1, 0], "op": op, "id": op}
        buffers = ()
        if op == "set_mode":
            header["mode"] = "normal"
        if op == "infer":
            header.update(tensor={"dtype": "uint8", "shape": [1, 32, 32, 3]}, policy="mobile-only")
            buffers = (FRAME,)
        msgspec.convert(header, REQUESTS[op])                       # what we send is a valid request
        reply, frames = ask(dealer, header, *buffers)
        typed = msgspec.convert(reply, REPLIES[op])                 # and what comes back fits
        assert typed.ok, reply
        if op == "infer":
            assert all(o.buffer < len(frames) for o in typed.outputs) and typed.scores.buffer == 0
    # an error reply fits the same schema
    reply, _ = ask(dealer, {"v": [1, 0], "op": "infer", "id": 9, "tensor": {"dtype": "uint8", "shape": [2]}}, b"ab")
    assert msgspec.convert(reply, REPLIES["infer"]).code == "INVALID_ARG"


BAD_INFERS = [
    {"tensor": {"dtype": "float64", "shape": [1, 32, 32, 3]}},
    {"tensor": {"dtype": "uint8", "shape": [0, 32]}},
    {"tensor": {"dtype": "uint8", "shape": [1] * 9}},
    {"tensor": {"dtype": "uint8", "shape": [1, 32, 32, 3]}, "priority": 256},
    {"tensor": {"dtype": "uint8", "shape": [1, 32, 32, 3]}, "priority": -1},
    {"tensor": {"dtype": "uint8", "shape": [1, 32, 32, 3]}, "deadline_ms": 0},
    {"tensor": {"dtype": "uint8", "shape": [1, 32, 32, 3]}, "deadline_ms": 4e6},
    {"tensor": {"dtype": "uint8", "shape": [1, 32, 32, 3]}, "mode": "turbo"},
    {"tensor": {"dtype": "uint8", "shape": [1, 32, 32, 3]}, "goal": "speed"},
    {"tensor": {"dtype": "uint8", "shape": [1, 32, 32, 3]}, "color": "YUV"},
]


@pytest.mark.parametrize("fields", BAD_INFERS)
def test_what_the_schema_refuses_the_daemon_refuses(dealer, fields):
    header = {"v": [1, 0], "op": "infer", "id": "bad", **fields}
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(header, InferRequest)
    reply, _ = ask(dealer, header, FRAME)
    assert reply["code"] == "INVALID_ARG", reply


def test_what_the_schema_accepts_the_daemon_accepts(dealer):
    header = {"v": [1, 0], "op": "infer", "id": "good", "tensor": {"dtype": "uint8", "shape": [48, 64, 3]},
              "policy": "mobile-only", "mode": "normal", "goal": "energy", "deadline_ms": 2000, "priority": 255,
              "color": "BGR"}
    msgspec.convert(header, InferRequest)
    reply, _ = ask(dealer, header, np.zeros((48, 64, 3), np.uint8).tobytes())
    assert reply["ok"], reply
    assert json.loads((REPO / "docs" / "api-schema.json").read_text())["requests"]["infer"]
