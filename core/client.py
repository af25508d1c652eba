"""Python client for adaptinfd's local API v1 (used by local apps, the CLI and the demo).

    from adaptinf.client import Client
    with Client("ipc:///run/adaptinfd/api.sock") as c:
        result = c.infer(frame)              # numpy uint8 (1, H, W, C)
        print(result.label_name, result.served_by["placement"])

Every call has a timeout (the client's default or the call's own); a call that times
out raises ApiTimeout, and the socket is rebuilt so a late reply can never be taken
for the answer to the next request.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass, field

import numpy as np
import zmq

from adaptinf import api_protocol as api

DEFAULT_ENDPOINT = "ipc:///run/adaptinfd/api.sock"
ENDPOINT_ENV = "ADAPTINF_API"          # overrides the default endpoint for the CLI and apps


def default_endpoint() -> str:
    return os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT


class ApiFailure(Exception):
    """The daemon answered ok=false."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ApiTimeout(TimeoutError):
    pass


class ApiUnreachable(ConnectionError):
    """The daemon's socket is not there, or this user may not use it: said at once, not
    after a timeout."""


def check_reachable(endpoint: str) -> None:
    """For an ipc endpoint: the socket file exists and this user can connect to it."""
    if not endpoint.startswith("ipc://") or endpoint.startswith("ipc://@"):
        return
    path = endpoint[len("ipc://"):]
    hint = "is adaptinfd running? see `systemctl status adaptinfd`"
    if not os.path.exists(path):
        directory = os.path.dirname(path) or "."
        if os.path.isdir(directory) and not os.access(directory, os.X_OK):
            raise ApiUnreachable(f"permission denied on {directory}: join the daemon's group "
                                 f"(usermod -aG adaptinf $USER, then log in again); {hint}")
        raise ApiUnreachable(f"no adaptinfd socket at {path}: {hint}")
    if not os.access(path, os.R_OK | os.W_OK):
        raise ApiUnreachable(f"permission denied on {path}: join the daemon's group "
                             f"(usermod -aG adaptinf $USER, then log in again); {hint}")


# numpy's dtype.name is computed in Python on every call; the API's dtypes, looked up
_DTYPE_NAMES = {np.dtype(name): name for name in api.TENSOR_DTYPES}


@dataclass(frozen=True)
class InferResult:
    id: object
    label: int | None                # None: the model is not a classifier (see outputs)
    label_name: str | None
    confidence: float | None
    scores: np.ndarray | None        # a classifier's class probabilities
    served_by: dict
    latency_ms: dict
    energy_j: float
    energy_source: str
    outputs: dict = field(default_factory=dict)   # every model: its named output tensors (numpy arrays)


def _tensor(described: dict, frames: list) -> np.ndarray:
    """A reply tensor: {dtype, shape, buffer: index into the reply's buffers}, C order, little-endian."""
    data = frames[described.get("buffer", 0)]
    return np.frombuffer(data, dtype=np.dtype(described["dtype"]).newbyteorder("<")).reshape(described["shape"])


def decode_infer_reply(header: dict, frames: list) -> InferResult:
    scores = _tensor(header["scores"], frames).reshape(-1) if "scores" in header and frames else None
    outputs = {o["name"]: _tensor(o, frames) for o in header.get("outputs", ())}
    label = header.get("label")
    return InferResult(header["id"], label, header.get("class", None if label is None else str(label)),
                       header.get("confidence"), scores, header["served_by"], header["latency_ms"],
                       header["energy_j"], header.get("energy_source", "model"), outputs)


class Client:
    def __init__(self, endpoint: str | None = None, timeout_s: float = 5.0, context: zmq.Context | None = None):
        """endpoint: default $ADAPTINF_API, else DEFAULT_ENDPOINT. ApiUnreachable at once if an
        ipc socket is missing or not ours to use."""
        self.endpoint = endpoint or default_endpoint()
        check_reachable(self.endpoint)
        self.timeout_s = timeout_s
        self._ctx = context or zmq.Context.instance()
        self._ids = itertools.count(1)
        self._prefix = f"{os.getpid()}-{id(self) & 0xffff:x}-"
        self._sock = self._open()

    def _open(self) -> zmq.Socket:
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.endpoint)
        self._rcvtimeo_ms = None
        return sock

    def close(self) -> None:
        self._sock.close(0)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- transport --------------------------------------------------------------------
    def request(self, op: str, body: dict | None = None, buffers: tuple = (), timeout_s: float | None = None,
                raise_on_error: bool = True) -> tuple[dict, list]:
        req_id = self._prefix + str(next(self._ids))
        self._sock.send_multipart(api.encode_request(op, req_id, body, buffers), copy=False)
        timeout_ms = int(1000 * (self.timeout_s if timeout_s is None else timeout_s))
        deadline = time.monotonic() + timeout_ms / 1e3
        while True:
            # a blocking receive with the socket's own timeout: one wake-up, where a poll
            # before the receive costs a second one on every request
            left_ms = max(1, int((deadline - time.monotonic()) * 1e3))
            if left_ms != self._rcvtimeo_ms:
                self._sock.setsockopt(zmq.RCVTIMEO, left_ms)
                self._rcvtimeo_ms = left_ms
            try:
                reply = self._sock.recv_multipart()
            except zmq.Again:
                # Drop the socket: its late reply must not answer the next request.
                self._sock.close(0)
                self._sock = self._open()
                raise ApiTimeout(f"no reply to {op} within {timeout_ms} ms from {self.endpoint}") from None
            header, frames = api.decode_reply(reply)
            if header.get("id") == req_id:
                break  # anything else is a stale reply to an earlier, timed-out request
        if raise_on_error and not header.get("ok"):
            raise ApiFailure(header.get("code", "?"), header.get("message", ""))
        return header, frames

    # ---- operations -------------------------------------------------------------------
    def hello(self) -> dict:
        return self.request("hello")[0]

    def health(self) -> dict:
        return self.request("health")[0]

    def models(self) -> list[dict]:
        return self.request("models")[0]["models"]

    def status(self) -> dict:
        return self.request("status")[0]

    def stats(self) -> dict:
        return self.request("stats")[0]

    def set_mode(self, mode: str) -> dict:
        return self.request("set_mode", {"mode": mode})[0]

    def infer(self, frame: np.ndarray, model: str | None = None, deadline_ms: float | None = None,
              priority: int | None = None, mode: str | None = None, policy: str | None = None,
              goal: str | None = None, timeout_s: float | None = None, color: str | None = None) -> InferResult:
        """frame: the model's exact tensor, or (a model with preprocessing) a camera frame, uint8
        H x W x 3 of any size, RGB unless color="BGR" (OpenCV's order)."""
        frame = np.ascontiguousarray(frame)
        body: dict = {"tensor": {"dtype": _DTYPE_NAMES.get(frame.dtype) or frame.dtype.name, "shape": list(frame.shape)}}
        for key, value in (("model", model), ("deadline_ms", deadline_ms), ("priority", priority),
                           ("mode", mode), ("policy", policy), ("goal", goal), ("color", color)):
            if value is not None:
                body[key] = value
        header, frames = self.request("infer", body, (frame,), timeout_s)
        return decode_infer_reply(header, frames)
