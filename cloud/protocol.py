"""Device <-> cloud wire format, version 1: the one definition (design.md, "Cloud link").

Device DEALER (routing id = device id) -> cloud ROUTER. Multipart: frame 0 a msgpack
header, then at most one payload buffer.

Request header: {"v": 1, "op": OP, "rid": [boot_epoch, seq], ...}
  infer:  "target": "full" | "<split point>", "deadline_ms": budget from sending,
          "tensor": {"dtype", "shape"} and for a split point "scale", "zero_point"
          (the payload is the uint8 reduced tensor; for "full" the raw frame)
  ping:   heartbeat; also how the device measures RTT
  probe:  payload of PROBE bytes, discarded; how the device measures the uplink
  timing: "targets": [...], "runs": n; the worker times its own engines (warm-up)
Reply header: {"v": 1, "rid", "ok", "code", "message"?, "load": {"queue_depth",
  "service_s"}, ...}; infer adds "compute_s", "queue_s" and the logits as payload
  (float32); a replayed duplicate carries "replayed": true.
A retry reuses its rid; the worker de-duplicates on (device id, rid).
"""

from __future__ import annotations

from typing import Any

import msgpack

VERSION = 1
OPS = ("infer", "ping", "probe", "timing")
MAX_HEADER_BYTES = 16 * 1024
MAX_PAYLOAD_BYTES = 64 * 1024 * 1024
FULL_TARGET = "full"


class ProtocolError(ValueError):
    def __init__(self, message: str, rid: list | None = None):
        super().__init__(message)
        self.rid = rid  # set once the header was readable enough to answer


def pack(header: dict) -> bytes:
    return msgpack.packb(dict(header, v=VERSION), use_bin_type=True)


def unpack_request(frame: Any) -> dict:
    """A device's request header; ProtocolError (with the rid when one was readable) if malformed."""
    header = _unpack(frame)
    if header.get("op") not in OPS:
        raise ProtocolError(f"unknown op {header.get('op')!r}; ops: {list(OPS)}", rid=header["rid"])
    return header


def unpack_reply(frame: Any) -> dict:
    """The worker's reply header."""
    header = _unpack(frame)
    if not isinstance(header.get("code"), str):
        raise ProtocolError("reply header needs a string 'code'", rid=header["rid"])
    return header


def _unpack(frame: Any) -> dict:
    if len(frame) > MAX_HEADER_BYTES:
        raise ProtocolError(f"header of {len(frame)} bytes exceeds {MAX_HEADER_BYTES}")
    try:
        header = msgpack.unpackb(frame, raw=False, strict_map_key=True, max_str_len=MAX_HEADER_BYTES,
                                 max_bin_len=MAX_HEADER_BYTES, max_array_len=4096, max_map_len=256, max_ext_len=0)
    except Exception as exc:
        raise ProtocolError(f"header is not valid msgpack: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError("header must be a map")
    rid = header.get("rid")
    if not (isinstance(rid, list) and len(rid) == 2 and all(isinstance(x, int) and not isinstance(x, bool)
                                                            for x in rid)):
        raise ProtocolError("header needs 'rid': [boot_epoch, seq]")
    if header.get("v") != VERSION:
        raise ProtocolError(f"cloud protocol version {header.get('v')!r} unsupported (speaks {VERSION})", rid=rid)
    return header
