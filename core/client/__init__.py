"""Python client for adaptinfd's local API v1 (used by local apps, the CLI and the demo).

    from adaptinf.client import Client
    with Client("ipc:///run/adaptinfd/api.sock") as c:
        result = c.infer(frame)              # the model's tensor, or a camera frame H x W x 3
        print(result.label_name, result.served_by.placement)

Threads: one Client may be shared by any number of threads. ZeroMQ sockets are not
thread-safe, so each thread that uses the Client gets its own DEALER connection (made on
its first call); nothing is locked on the frame path. The daemon's per-client limit on
frames in flight then applies per thread.

Pipelining: `infer_async()` sends at once and returns a concurrent.futures.Future, so up to
`max_in_flight` frames (the daemon's [daemon].max_in_flight_per_client, 16 by default)
are in flight on one connection. Past that it waits for the oldest answers first
(back-pressure), instead of drawing RESOURCE_EXHAUSTED. A future is completed by the
thread that made it, whenever that thread calls the Client (`result()` on the future, or
any other call); wait for it there. The asyncio client, adaptinf.client.aio.AsyncClient,
has the same calls as coroutines.

Errors: a reply that is not OK raises the ApiError subclass of its code (DeadlineExceeded,
ResourceExhausted, ...; core/api_protocol.py's codes); a call that gets no reply in its
timeout raises ApiTimeout, and that thread's socket is rebuilt so a late reply can never
be taken for the answer to the next request.
"""

from __future__ import annotations

import itertools
import math
import os
import socket
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import zmq

from adaptinf import api_protocol as api
from adaptinf.api_protocol import ApiError

DEFAULT_ENDPOINT = "ipc:///run/adaptinfd/api.sock"
ENDPOINT_ENV = "ADAPTINF_API"          # overrides the default endpoint for the CLI and apps
DEFAULT_MAX_IN_FLIGHT = 16             # the daemon's default [daemon].max_in_flight_per_client


def default_endpoint() -> str:
    return os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT


# ---- errors: one class per API code, all ApiError (kept in step with api_protocol.CODES) ----
class InvalidArgument(ApiError):
    code_name = api.INVALID_ARG


class NotFound(ApiError):
    code_name = api.NOT_FOUND


class Unavailable(ApiError):
    code_name = api.UNAVAILABLE


class DeadlineExceeded(ApiError):
    code_name = api.DEADLINE_EXCEEDED


class ResourceExhausted(ApiError):
    code_name = api.RESOURCE_EXHAUSTED


class TooLarge(ApiError):
    code_name = api.TOO_LARGE


class VersionMismatch(ApiError):
    code_name = api.VERSION_MISMATCH


ERRORS: dict[str, type[ApiError]] = {cls.code_name: cls for cls in (
    InvalidArgument, NotFound, Unavailable, DeadlineExceeded, ResourceExhausted, TooLarge, VersionMismatch)}
ApiFailure = ApiError                  # the name this client raised before the typed errors


def error_for(code: str, message: str) -> ApiError:
    """The typed exception of a reply's code (ApiError itself for a code this client does not know)."""
    return ERRORS.get(code, ApiError)(code, message)


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
    # a socket file that nobody listens on (a daemon killed with -9): refused at once, where
    # ZeroMQ would wait out the whole timeout
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        raise ApiUnreachable(f"{path} is left over from an adaptinfd that is no longer running: {hint}") from None
    except OSError:
        pass                # anything else: let ZeroMQ try and say what it finds
    finally:
        probe.close()


# ---- typed results ------------------------------------------------------------------------
class _Fields:
    """Typed fields that still read as the reply's mapping (`r.served_by["partition"]`)."""

    def __getitem__(self, key: str) -> Any:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def get(self, key: str, default: Any = None) -> Any:
        value = getattr(self, key) if key in _KNOWN[type(self)] else self.extra.get(key)
        return default if value is None else value

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        out.update(getattr(self, "extra", {}))
        return {k: v for k, v in out.items() if v is not None}


@dataclass(frozen=True)
class ServedBy(_Fields):
    """What served the frame (docs/protocols.md `served_by`); a policy's own fields are in extra."""

    placement: str
    policy: str | None = None
    goal: str | None = None
    mode: str | None = None
    partition: str | None = None
    fallback: bool = False
    fallback_reason: str | None = None
    predicted_ms: float | None = None
    upload_bytes: int | None = None
    est_uplink_bps: float | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_reply(cls, raw: dict) -> "ServedBy":
        known = _KNOWN[cls]
        return cls(**{k: v for k, v in raw.items() if k in known},
                   extra={k: v for k, v in raw.items() if k not in known})


@dataclass(frozen=True)
class Latency(_Fields):
    """Where the frame's time went, milliseconds per stage (None: the stage did not run)."""

    total: float | None = None
    queue: float | None = None
    plan: float | None = None
    preprocess: float | None = None
    device_wait: float | None = None
    mux: float | None = None
    device: float | None = None
    recovery: float | None = None
    network: float | None = None
    cloud: float | None = None
    fallback: float | None = None
    mcu: float | None = None
    host: float | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_reply(cls, raw: dict) -> "Latency":
        known = _KNOWN[cls]
        return cls(**{k: v for k, v in raw.items() if k in known},
                   extra={k: v for k, v in raw.items() if k not in known})


_KNOWN = {cls: frozenset(f.name for f in fields(cls)) - {"extra"} for cls in (ServedBy, Latency)}
_LITTLE = {}                           # dtype name -> its little-endian numpy dtype


def _tensor(described: dict, frames: list) -> np.ndarray:
    """A reply tensor: {dtype, shape, buffer: index into the reply's buffers}, C order, little-endian."""
    name = described["dtype"]
    dtype = _LITTLE.get(name)
    if dtype is None:
        dtype = _LITTLE[name] = np.dtype(name).newbyteorder("<")
    return np.frombuffer(frames[described.get("buffer", 0)], dtype=dtype).reshape(described["shape"])


class InferResult:
    """One frame's answer. The typed views (served_by, latency_ms, scores, outputs) are made
    from the reply when first read: a caller that reads only the label pays for nothing else."""

    __slots__ = ("_header", "_frames", "_served_by", "_latency", "_scores", "_outputs")

    def __init__(self, header: dict, frames: list):
        self._header, self._frames = header, frames
        self._served_by = self._latency = self._scores = self._outputs = None

    id = property(lambda self: self._header["id"])
    label = property(lambda self: self._header.get("label"), doc="None: the model is not a classifier")
    confidence = property(lambda self: self._header.get("confidence"))
    energy_j = property(lambda self: self._header["energy_j"])
    energy_source = property(lambda self: self._header.get("energy_source", "model"))

    @property
    def label_name(self) -> str | None:
        label = self._header.get("label")
        return self._header.get("class", None if label is None else str(label))

    @property
    def served_by(self) -> ServedBy:
        if self._served_by is None:
            self._served_by = ServedBy.from_reply(self._header["served_by"])
        return self._served_by

    @property
    def latency_ms(self) -> Latency:
        if self._latency is None:
            self._latency = Latency.from_reply(self._header["latency_ms"])
        return self._latency

    @property
    def scores(self) -> np.ndarray | None:
        """A classifier's class probabilities."""
        if self._scores is None and "scores" in self._header and self._frames:
            self._scores = _tensor(self._header["scores"], self._frames).reshape(-1)
        return self._scores

    @property
    def outputs(self) -> dict:
        """Every model's named output tensors (numpy arrays)."""
        if self._outputs is None:
            self._outputs = {o["name"]: _tensor(o, self._frames) for o in self._header.get("outputs", ())}
        return self._outputs

    def __repr__(self) -> str:
        return (f"InferResult(id={self.id!r}, label={self.label!r}, label_name={self.label_name!r}, "
                f"partition={self._header['served_by'].get('partition')!r})")


def decode_infer_reply(header: dict, frames: list) -> InferResult:
    for key in ("served_by", "latency_ms", "energy_j"):       # malformed: said now, not on first read
        if key not in header:
            raise KeyError(key)
    return InferResult(header, frames)


def infer_body(frame: np.ndarray, **options: Any) -> tuple[dict, np.ndarray]:
    """An infer request's header body and its one buffer (C order)."""
    frame = np.ascontiguousarray(frame)
    body: dict = {"tensor": {"dtype": api.dtype_name(frame.dtype), "shape": list(frame.shape)}}
    body.update({k: v for k, v in options.items() if v is not None})
    return body, frame


# ---- the connection of one thread ---------------------------------------------------------
class _Pending(Future):
    """A reply on its way; result() on the thread that sent it receives until it is here."""

    def __init__(self, connection: "_Connection", req_id: str, op: str, deadline: float, decode):
        super().__init__()
        self._connection = connection
        self.req_id, self.op, self.deadline, self._decode = req_id, op, deadline, decode

    def _receive(self, timeout: float | None) -> None:
        if not self.done() and self._connection.owner == threading.get_ident():
            self._connection.receive_until(self, timeout)

    def result(self, timeout: float | None = None):
        self._receive(timeout)
        return super().result(timeout)

    def exception(self, timeout: float | None = None):
        self._receive(timeout)
        return super().exception(timeout)


class _Connection:
    """One thread's DEALER and the requests it has in flight (oldest first)."""

    def __init__(self, client: "Client"):
        self.client = client
        self.owner = threading.get_ident()
        self.pending: OrderedDict[str, _Pending] = OrderedDict()
        self.sock = self._open()

    def _open(self) -> zmq.Socket:
        sock = self.client._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.connect(self.client.endpoint)
        except zmq.ZMQError as exc:        # a malformed endpoint: said, not a ZeroMQ traceback
            sock.close(0)
            raise ApiUnreachable(f"cannot connect to {self.client.endpoint!r}: {exc.strerror}; an endpoint is "
                                 "ipc:///path/to/api.sock or tcp://host:port") from None
        self._rcvtimeo_ms = None
        return sock

    def send(self, op: str, body: dict | None, buffers: tuple, timeout_s: float | None, decode) -> _Pending:
        while len(self.pending) >= self.client.max_in_flight:     # back-pressure: the oldest answer first
            self.receive_until(next(iter(self.pending.values())), None)
        req_id = self.client._next_id()
        timeout = self.client.timeout_s if timeout_s is None else timeout_s
        pending = _Pending(self, req_id, op, time.monotonic() + timeout, decode)
        frames = api.encode_request(op, req_id, body, buffers)
        self.sock.send_multipart(frames, copy=api.copy_when_sent(frames))
        self.pending[req_id] = pending
        return pending

    def receive_until(self, wanted: _Pending, timeout: float | None) -> None:
        """Receive replies (completing whichever futures they answer) until `wanted` is done,
        its own deadline passes (ApiTimeout on it), or `timeout` does (it stays pending)."""
        limit = time.monotonic() + timeout if timeout is not None else None
        while not wanted.done():
            now = time.monotonic()
            if now >= wanted.deadline:
                self._time_out(wanted)
                return
            if limit is not None and now >= limit:
                return
            left_ms = max(1, int((min(wanted.deadline, limit or wanted.deadline) - now) * 1e3))
            # a blocking receive with the socket's own timeout: one wake-up, where a poll
            # before the receive costs a second one on every request
            if left_ms != self._rcvtimeo_ms:
                self.sock.setsockopt(zmq.RCVTIMEO, left_ms)
                self._rcvtimeo_ms = left_ms
            try:
                reply = self.sock.recv_multipart()
            except zmq.Again:
                continue
            header, frames = api.decode_reply(reply)
            pending = self.pending.pop(header.get("id"), None)
            if pending is None:
                continue             # a late reply to a request that timed out
            if not header.get("ok"):
                pending.set_exception(error_for(header.get("code", "?"), header.get("message", "")))
            else:
                try:
                    pending.set_result(pending._decode(header, frames))
                except (KeyError, TypeError, ValueError) as exc:
                    pending.set_exception(ApiError(api.INVALID_ARG, f"malformed reply: {type(exc).__name__}: {exc}"))

    def call(self, op: str, body: dict | None, buffers: tuple, timeout_s: float | None, decode):
        """One request and its reply, now: with nothing else in flight on this connection,
        straight on the socket (no future: the frame path's cost is the API's, not ours)."""
        if self.pending:
            return self.send(op, body, buffers, timeout_s, decode).result()
        req_id = self.client._next_id()
        timeout = self.client.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout
        frames = api.encode_request(op, req_id, body, buffers)
        self.sock.send_multipart(frames, copy=api.copy_when_sent(frames))
        while True:
            # a blocking receive with the socket's own timeout: one wake-up, where a poll
            # before the receive costs a second one on every request
            left_ms = max(1, int((deadline - time.monotonic()) * 1e3))
            if left_ms != self._rcvtimeo_ms:
                self.sock.setsockopt(zmq.RCVTIMEO, left_ms)
                self._rcvtimeo_ms = left_ms
            try:
                reply = self.sock.recv_multipart()
            except zmq.Again:
                self.sock.close(0)           # its late reply must not answer the next request
                self.sock = self._open()
                raise ApiTimeout(f"no reply to {op} within {timeout * 1e3:.0f} ms from {self.client.endpoint}") \
                    from None
            header, frames = api.decode_reply(reply)
            if header.get("id") == req_id:
                break                        # anything else is a late reply to a timed-out request
        if not header.get("ok"):
            raise error_for(header.get("code", "?"), header.get("message", ""))
        return decode(header, frames)

    def receive_available(self, timeout_s: float) -> int:
        """Complete the futures whose replies arrive within timeout_s (0: those already here)."""
        done = 0
        wait_ms = int(timeout_s * 1e3)
        while self.pending and self.sock.poll(wait_ms):
            oldest = next(iter(self.pending.values()))
            before = len(self.pending)
            self.receive_until(oldest, 0.001)
            done += before - len(self.pending)
            wait_ms = 0
        for pending in [p for p in self.pending.values() if time.monotonic() >= p.deadline][:1]:
            self._time_out(pending)
        return done

    def _time_out(self, wanted: _Pending) -> None:
        # Drop the socket: a late reply must not answer a later request. Everything else in
        # flight on it is lost with it, so it fails too.
        self.sock.close(0)
        self.sock = self._open()
        failed, self.pending = list(self.pending.values()), OrderedDict()
        for pending in failed:
            pending.set_exception(ApiTimeout(f"no reply to {pending.op} within its timeout from "
                                             f"{self.client.endpoint}" + ("" if pending is wanted else
                                                                         " (its socket was reset)")))

    def close(self) -> None:
        self.sock.close(0)


def take_answered(client: "Client", window, block: bool):
    """Pop from the left of `window` (a deque of tuples whose last item is a future from
    infer_async, or None for a placeholder such as a dropped frame) each entry in order while
    it is answered: waiting for the oldest first when block, else taking only what has come.
    Yields (entry, result, error): one of result and error is None (both for a placeholder)."""
    while window:
        future = window[0][-1]
        if future is not None and not future.done():
            if not block:
                client.poll(0)
                if not future.done():
                    return
        entry = window.popleft()
        if future is None:
            yield entry, None, None
            continue
        try:
            result, error = future.result(), None
        except (ApiError, ApiTimeout) as exc:
            result, error = None, exc
        yield entry, result, error
        block = False


def _raw(header: dict, frames: list) -> tuple[dict, list]:
    return header, frames


class Client:
    def __init__(self, endpoint: str | None = None, timeout_s: float = 5.0, context: zmq.Context | None = None,
                 max_in_flight: int = DEFAULT_MAX_IN_FLIGHT):
        """endpoint: default $ADAPTINF_API, else DEFAULT_ENDPOINT. ApiUnreachable at once if an
        ipc socket is missing or not ours to use. max_in_flight: frames one thread keeps in
        flight before infer_async waits (the daemon's per-client limit)."""
        self.endpoint = endpoint or default_endpoint()
        check_reachable(self.endpoint)
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        if not (isinstance(timeout_s, (int, float)) and math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
        self.timeout_s = timeout_s
        self.max_in_flight = max_in_flight
        self._ctx = context or zmq.Context.instance()
        self._ids = itertools.count(1)
        self._prefix = f"{os.getpid()}-{id(self) & 0xffff:x}-"
        self._local = threading.local()
        self._all: list[_Connection] = []
        self._lock = threading.Lock()          # only for making a thread's connection
        self._closed = False
        self._connection()                     # the creating thread's, at once (as before)

    def _next_id(self) -> str:
        return self._prefix + str(next(self._ids))     # itertools.count is atomic under the GIL

    def _connection(self) -> _Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            if self._closed:
                raise RuntimeError("this Client is closed")
            connection = _Connection(self)
            self._local.connection = connection
            with self._lock:
                self._all.append(connection)
        return connection

    def close(self) -> None:
        """Close every thread's connection: call it once the threads are done with the Client."""
        with self._lock:
            self._closed = True
            for connection in self._all:
                connection.close()
            self._all.clear()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- transport --------------------------------------------------------------------
    def request(self, op: str, body: dict | None = None, buffers: tuple = (), timeout_s: float | None = None,
                raise_on_error: bool = True) -> tuple[dict, list]:
        """One request, its reply (header, buffers); ApiError subclasses for a reply that is not
        OK unless raise_on_error is False."""
        try:
            return self._connection().call(op, body, buffers, timeout_s, _raw)
        except ApiError as exc:
            if raise_on_error:
                raise
            return {"ok": False, "code": exc.code, "message": exc.message}, []

    # ---- operations -------------------------------------------------------------------
    def hello(self, timeout_s: float | None = None) -> dict:
        return self.request("hello", timeout_s=timeout_s)[0]

    def health(self, timeout_s: float | None = None) -> dict:
        return self.request("health", timeout_s=timeout_s)[0]

    def is_ready(self, timeout_s: float | None = None) -> bool:
        """The daemon is up and serving frames (tritonclient's is_server_ready)."""
        return bool(self.health(timeout_s).get("ready"))

    def models(self, timeout_s: float | None = None) -> list[dict]:
        return self.request("models", timeout_s=timeout_s)[0]["models"]

    def status(self, timeout_s: float | None = None) -> dict:
        return self.request("status", timeout_s=timeout_s)[0]

    def stats(self, timeout_s: float | None = None) -> dict:
        return self.request("stats", timeout_s=timeout_s)[0]

    def set_mode(self, mode: str, timeout_s: float | None = None) -> dict:
        return self.request("set_mode", {"mode": mode}, timeout_s=timeout_s)[0]

    def poll(self, timeout_s: float = 0.0) -> int:
        """Complete this thread's futures whose answers arrive within timeout_s (0: those that
        are already here); returns how many. For loops that do other work between frames."""
        return self._connection().receive_available(timeout_s)

    def infer_async(self, frame: np.ndarray, model: str | None = None, deadline_ms: float | None = None,
                    priority: int | None = None, mode: str | None = None, policy: str | None = None,
                    goal: str | None = None, timeout_s: float | None = None, color: str | None = None
                    ) -> "Future[InferResult]":
        """Send a frame now; its InferResult (or ApiError) arrives in the returned future. Waits
        for the oldest answer first when max_in_flight frames are already in flight here."""
        body, frame = infer_body(frame, model=model, deadline_ms=deadline_ms, priority=priority, mode=mode,
                                 policy=policy, goal=goal, color=color)
        return self._connection().send("infer", body, (frame,), timeout_s, decode_infer_reply)

    def infer(self, frame: np.ndarray, model: str | None = None, deadline_ms: float | None = None,
              priority: int | None = None, mode: str | None = None, policy: str | None = None,
              goal: str | None = None, timeout_s: float | None = None, color: str | None = None) -> InferResult:
        """frame: the model's exact tensor, or (a model with preprocessing) a camera frame, uint8
        H x W x 3 of any size, RGB unless color="BGR" (OpenCV's order)."""
        body, frame = infer_body(frame, model=model, deadline_ms=deadline_ms, priority=priority, mode=mode,
                                 policy=policy, goal=goal, color=color)
        return self._connection().call("infer", body, (frame,), timeout_s, decode_infer_reply)
