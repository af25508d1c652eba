"""Local API, version 1.0: the one definition of its wire format (design.md, "Local API").

A message is a ZeroMQ multipart: frame 0 a msgpack map (the header), then zero or
more raw buffers (tensor bytes, never copied into the header). Every request has
`v` ([major, minor] or major), `op` and `id`; every reply has `v`, the same `id`,
`ok` and `code`, plus `message` when not OK. msgpack is unpacked with limits and
strict map keys; nothing else (no pickle) is ever decoded from a socket.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import msgpack
import msgspec
import numpy as np

PROTOCOL_MAJOR = 1
PROTOCOL_MINOR = 0
MAX_HEADER_BYTES = 64 * 1024
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024

OK = "OK"
INVALID_ARG = "INVALID_ARG"
NOT_FOUND = "NOT_FOUND"
UNAVAILABLE = "UNAVAILABLE"
DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
TOO_LARGE = "TOO_LARGE"
VERSION_MISMATCH = "VERSION_MISMATCH"
CODES = (OK, INVALID_ARG, NOT_FOUND, UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, TOO_LARGE, VERSION_MISMATCH)

OPS = ("hello", "health", "models", "status", "stats", "set_mode", "infer", "record")
TENSOR_DTYPES = ("uint8", "int8", "float16", "float32")
_DTYPES = {name: np.dtype(name).newbyteorder("<") for name in TENSOR_DTYPES}   # the wire's: little-endian
_ITEMSIZE = {name: dtype.itemsize for name, dtype in _DTYPES.items()}
_NAMES = {np.dtype(name): name for name in TENSOR_DTYPES}
MAX_TENSOR_RANK = 8
MAX_FRAMES = 16      # a header and its buffers; infer sends one


def dtype_name(dtype: np.dtype) -> str:
    """dtype.name, looked up for the API's dtypes: numpy computes it in Python on every call
    (3 us), and the frame path asks for it per frame."""
    return _NAMES.get(dtype) or dtype.name


class ApiError(Exception):
    """A request that gets ok=false; code is one of CODES."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass
class Request:
    id: Any
    op: str
    header: dict
    buffers: list = field(default_factory=list)  # zmq.Frame or bytes: zero-copy views


def _unpack_header(frame: bytes | memoryview) -> Any:
    if len(frame) > MAX_HEADER_BYTES:
        raise ApiError(TOO_LARGE, f"header is {len(frame)} bytes; the limit is {MAX_HEADER_BYTES}")
    try:
        return msgpack.unpackb(frame, raw=False, strict_map_key=True, use_list=True,
                               max_str_len=MAX_HEADER_BYTES, max_bin_len=MAX_HEADER_BYTES,
                               max_array_len=1024, max_map_len=256, max_ext_len=0)
    except Exception as exc:  # msgpack raises ExtraData, ValueError, StackError, FormatError...
        raise ApiError(INVALID_ARG, f"header is not valid msgpack: {type(exc).__name__}: {exc}") from None


def request_id(frame: Any) -> Any:
    """The id of a request that is refused before it is decoded (too large), or None."""
    try:
        header = _unpack_header(frame)
    except ApiError:
        return None
    req_id = header.get("id") if isinstance(header, dict) else None
    return req_id if isinstance(req_id, (str, int)) and not isinstance(req_id, bool) else None


def _version_ok(v: Any) -> tuple[int, int] | None:
    if isinstance(v, int) and not isinstance(v, bool):
        return v, 0
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        return v[0], v[1]
    return None


def decode_request(frames: list, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Request:
    """Parse and check the envelope. Raises ApiError with the request id when it is known."""
    if not frames:
        raise ApiError(INVALID_ARG, "empty message")
    total = sum(len(f) for f in frames)
    header = _unpack_header(frames[0])
    if not isinstance(header, dict):
        raise ApiError(INVALID_ARG, "header must be a msgpack map")
    req_id = header.get("id")
    if not isinstance(req_id, (str, int)) or isinstance(req_id, bool):
        raise ApiError(INVALID_ARG, "request needs an 'id' (string or integer)")
    try:
        if total > max_message_bytes:
            raise ApiError(TOO_LARGE, f"message is {total} bytes; the limit is {max_message_bytes}")
        op = header.get("op")
        if not isinstance(op, str):
            raise ApiError(INVALID_ARG, "request needs an 'op' (string)")
        version = _version_ok(header.get("v"))
        if version is None:
            raise ApiError(INVALID_ARG, "request needs 'v': [major, minor] or major")
        if version[0] != PROTOCOL_MAJOR and op != "hello":
            raise ApiError(VERSION_MISMATCH, f"protocol {version[0]}.x is not served; this daemon speaks "
                                             f"{PROTOCOL_MAJOR}.{PROTOCOL_MINOR} (send 'hello' to negotiate)")
        if op not in OPS:
            raise ApiError(NOT_FOUND, f"unknown op {op!r}; ops: {', '.join(OPS)}")
    except ApiError as exc:
        exc.request_id = req_id  # type: ignore[attr-defined]
        raise
    return Request(req_id, op, header, list(frames[1:]))


def tensor_from_request(req: Request) -> np.ndarray:
    """The one tensor of an infer request as a zero-copy array (C order, little-endian), its
    description checked against its buffer; what the model takes is the caller's to check."""
    spec = req.header.get("tensor")
    if not isinstance(spec, dict):
        raise ApiError(INVALID_ARG, "infer needs 'tensor': {dtype, shape}")
    dtype, shape = spec.get("dtype"), spec.get("shape")
    if dtype not in TENSOR_DTYPES:
        raise ApiError(INVALID_ARG, f"tensor dtype {dtype!r} is not allowed; allowed: {', '.join(TENSOR_DTYPES)}")
    if (type(shape) is not list or not 0 < len(shape) <= MAX_TENSOR_RANK
            or not all(type(d) is int and d > 0 for d in shape)):     # type(): a bool is not a size
        raise ApiError(INVALID_ARG, f"tensor shape must be a list of 1..{MAX_TENSOR_RANK} positive integers")
    if len(req.buffers) != 1:
        raise ApiError(INVALID_ARG, f"infer takes exactly one tensor buffer, got {len(req.buffers)}")
    buffer = req.buffers[0]
    view = buffer.buffer if hasattr(buffer, "buffer") else memoryview(buffer)
    expected_bytes = math.prod(shape) * _ITEMSIZE[dtype]
    if view.nbytes != expected_bytes:
        raise ApiError(INVALID_ARG, f"tensor {dtype}{shape} is {expected_bytes} bytes but the buffer has {view.nbytes}")
    return np.frombuffer(view, dtype=_DTYPES[dtype]).reshape(shape)


def _numpy_scalar(obj: Any) -> Any:
    """A numpy scalar (a statistic's np.float64) goes out as its Python number."""
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot encode a {type(obj).__name__} in a message")


# Headers are encoded and reply headers decoded by msgspec: the same msgpack, at a third of
# msgpack-python's cost on a frame's reply. Requests are still unpacked by msgpack-python
# above, whose limits bound what a hostile header may make the daemon allocate.
_ENCODER = msgspec.msgpack.Encoder(enc_hook=_numpy_scalar)
_REPLY_DECODER = msgspec.msgpack.Decoder()


# A message this small is cheaper to copy into ZeroMQ than to send without copying: a
# zero-copy send costs a tracked frame and a release through pyzmq's own thread, several
# microseconds, which is what copying ~200 KB costs (measured on inproc, 150 KB to 6 MB).
COPY_BELOW_BYTES = 256 * 1024


def copy_when_sent(frames: list) -> bool:
    """The `copy` argument for sending these frames (bytes, arrays, memoryviews)."""
    return sum(memoryview(f).nbytes if not isinstance(f, bytes) else len(f) for f in frames) < COPY_BELOW_BYTES


def encode_reply(req_id: Any, code: str = OK, message: str | None = None, body: dict | None = None,
                 buffers: tuple = ()) -> list:
    header = {"v": [PROTOCOL_MAJOR, PROTOCOL_MINOR], "id": req_id, "ok": code == OK, "code": code}
    if message is not None:
        header["message"] = message
    if body:
        header.update(body)
    return [_ENCODER.encode(header), *buffers]


def encode_request(op: str, req_id: Any, body: dict | None = None, buffers: tuple = (),
                   version: tuple[int, int] = (PROTOCOL_MAJOR, PROTOCOL_MINOR)) -> list:
    header = {"v": list(version), "op": op, "id": req_id}
    if body:
        header.update(body)
    return [_ENCODER.encode(header), *buffers]


def decode_reply(frames: list) -> tuple[dict, list]:
    try:
        header = _REPLY_DECODER.decode(frames[0])
    except msgspec.DecodeError as exc:
        raise ApiError(INVALID_ARG, f"reply header is not valid msgpack: {exc}") from None
    if not isinstance(header, dict) or "code" not in header:
        raise ApiError(INVALID_ARG, "reply header is not an adaptinf reply")
    return header, list(frames[1:])
