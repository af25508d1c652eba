"""Device <-> cloud wire format, version 1: the one definition (design.md, "Cloud link").

Device DEALER (routing id = "<device id>/<boot id, 16 hex digits>") -> cloud ROUTER; the
worker keeps one connection per device id, the first, while it is heard from, and answers
another with code DUPLICATE_DEVICE. Multipart: frame 0 a msgpack
header, then at most one payload buffer.

Request header: {"v": 1, "op": OP, "rid": [boot_id, seq], ...} (boot_id: random 62 bits per
start of the link, never the clock, which may repeat across reboots)
  infer:  "target": "full" | "<split point>" | "<zoo model>" | "mdinference",
          "deadline_ms": budget from sending, "tensor": {"dtype", "shape"} and for a
          split point with a uint8 upload "scale", "zero_point" (the payload is the
          quantised reduced tensor; a float16 upload is the tensor itself; otherwise the
          frame in the model's input dtype). Tensors are C order, little-endian. "mdinference": the worker picks the zoo model
          (paper 003, measured on the server): "sla_ms", and "sent_at" (the send time
          in the worker's wall clock, seconds) or, before the device knows the clocks'
          offset, "network_ms" (its own estimate of the round trip)
  ping:   heartbeat; also how the device measures RTT and the clocks' offset
  probe:  payload of PROBE bytes, discarded; how the device measures the uplink
  timing: "targets": [...], "runs": n; the worker times its own engines (warm-up)
Reply header: {"v": 1, "rid", "ok", "code", "message"?, "load": {"queue_depth",
  "service_s"}, "bundle": the manifest sha256 the worker serves, ...} (a device whose
  bundle differs refuses every reply and keeps its frames on the device); infer adds "compute_s", "queue_s" and the model's outputs as payload
  (float32, all of them flattened and concatenated, as the bundle's graphs answer), and for "mdinference" "model", "budget_ms", "network_ms"; a ping's reply
  carries "clock", the worker's wall clock; a replayed duplicate carries "replayed": true.
infer adds "digest" (request_digest), which the reply echoes.
A retry reuses its rid; the worker de-duplicates on (device id, rid, digest).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any

import msgpack

VERSION = 1
OPS = ("infer", "ping", "probe", "timing")
MAX_HEADER_BYTES = 16 * 1024
MAX_PAYLOAD_BYTES = 64 * 1024 * 1024
PROBE_MAX_BYTES = 256 * 1024     # the largest link probe a device sends
FULL_TARGET = "full"
PAYLOAD_DTYPES = ("uint8", "float16", "float32")   # a frame in the model's dtype; an upload as uint8 or float16
MDINFERENCE_TARGET = "mdinference"   # the worker's MDInference picks a zoo model for the frame


def request_digest(header: dict, payload: Any) -> int:
    """CRC-32 of an infer request's target, tensor description, quantisation and payload.
    The worker de-duplicates on (device, rid, digest) and echoes it; the device takes a reply
    only with its request's digest. So a reused rid (a device whose boot id repeats) can
    never be answered with another frame's stored reply."""
    described = msgpack.packb([header.get("target"), header.get("tensor"), header.get("scale"),
                               header.get("zero_point")], use_bin_type=True)
    crc = zlib.crc32(described)
    if payload is not None:
        crc = zlib.crc32(memoryview(payload).cast("B") if not isinstance(payload, bytes) else payload, crc)
    return crc


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


# ---- typed requests: built here on the device side, parsed here on the cloud side ----------
@dataclass(frozen=True)
class Infer:
    """Run `target` ("full", a zoo model by name, or a split point's tail) on a uint8 tensor
    of `shape`; a split point's tensor is the quantised reduced tensor (scale, zero_point),
    the others take the frame as it is."""

    target: str
    shape: tuple[int, ...]
    scale: float | None = None
    zero_point: int | None = None
    deadline_s: float | None = None     # seconds here; the wire carries deadline_ms
    sla_s: float | None = None          # MDINFERENCE_TARGET: the frame's SLA from sending,
    sent_at: float | None = None        # when it was sent (the worker's wall clock), or
    network_s: float | None = None      # the device's estimate of the round trip
    dtype: str = "uint8"                # the payload's: uint8 (frames, quantised uploads), float16 or float32

    def header(self) -> dict:
        h = {"op": "infer", "target": self.target, "tensor": {"dtype": self.dtype, "shape": list(self.shape)}}
        if self.scale is not None:
            h.update(scale=self.scale, zero_point=self.zero_point)
        for key, seconds in (("deadline_ms", self.deadline_s), ("sla_ms", self.sla_s),
                             ("network_ms", self.network_s)):
            if seconds is not None:
                h[key] = seconds * 1e3
        if self.sent_at is not None:
            h["sent_at"] = self.sent_at
        return h

    @classmethod
    def from_header(cls, h: dict) -> "Infer":
        """ValueError naming the field when a device's header does not make a valid request."""
        target, spec = h.get("target"), h.get("tensor")
        if not isinstance(target, str):
            raise ValueError(f"infer needs a string 'target', got {target!r}")
        shape = spec.get("shape") if isinstance(spec, dict) else None
        if not isinstance(shape, list) or not shape or not all(
                isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
            raise ValueError("infer needs 'tensor': {dtype: uint8, shape: [positive integers]}")
        dtype = spec.get("dtype", "uint8")
        if dtype not in PAYLOAD_DTYPES:
            raise ValueError(f"tensor dtype {dtype!r}: the link carries {list(PAYLOAD_DTYPES)}")
        if dtype != "uint8" and h.get("scale") is not None:
            raise ValueError("only a uint8 tensor is quantised: a scale needs dtype uint8")
        scale, zero_point = h.get("scale"), h.get("zero_point")
        if (scale is not None or zero_point is not None) and not (
                isinstance(scale, (int, float)) and not isinstance(scale, bool) and math.isfinite(scale) and scale > 0
                and isinstance(zero_point, int) and not isinstance(zero_point, bool) and 0 <= zero_point <= 255):
            raise ValueError("a split point's tensor needs a finite positive 'scale' and a uint8 'zero_point'")
        deadline, sla, network = (_optional_ms(h, key) for key in ("deadline_ms", "sla_ms", "network_ms"))
        sent_at = h.get("sent_at")
        if sent_at is not None and not _finite(sent_at):
            raise ValueError(f"sent_at must be a finite number of seconds, got {sent_at!r}")
        if target == MDINFERENCE_TARGET and (sla is None or sla <= 0 or (sent_at is None and network is None)):
            raise ValueError("an mdinference request needs a positive 'sla_ms' and 'sent_at' or 'network_ms'")
        return cls(target, tuple(shape), scale, zero_point, deadline, sla, sent_at, network, dtype)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _optional_ms(h: dict, key: str) -> float | None:
    """h[key], milliseconds on the wire, as seconds; ValueError naming the key if not a number."""
    value = h.get(key)
    if value is None:
        return None
    if not _finite(value) or value < 0:
        raise ValueError(f"{key} must be a non-negative number, got {value!r}")
    return value / 1e3


@dataclass(frozen=True)
class Timing:
    """The worker times its own engines (median and std per target) on synthetic input."""

    runs: int = 20
    targets: tuple[str, ...] | None = None      # None: every target it serves

    def header(self) -> dict:
        h = {"op": "timing", "runs": self.runs}
        if self.targets is not None:
            h["targets"] = list(self.targets)
        return h

    @classmethod
    def from_header(cls, h: dict) -> "Timing":
        runs, targets = h.get("runs", 20), h.get("targets")
        if isinstance(runs, bool) or not isinstance(runs, int):
            raise ValueError("timing needs an integer 'runs'")
        if targets is not None and not (isinstance(targets, list) and all(isinstance(t, str) for t in targets)):
            raise ValueError("timing 'targets' must be a list of names")
        return cls(max(1, min(runs, 1000)), tuple(targets) if targets else None)


DUPLICATE_DEVICE = "DUPLICATE_DEVICE"   # the reply's code when another device holds this device id


def routing_id(device_id: str, boot_id: int) -> bytes:
    """A device's routing id: its device id and its boot id, so two devices configured with the
    same device id are two peers the worker can tell apart (and name), not one that ZeroMQ
    hands from one connection to the other."""
    return f"{device_id}/{boot_id:016x}".encode()


def device_of(routing: bytes) -> bytes:
    """The device id of a routing id (a peer that sends a plain device id is that id)."""
    return routing.split(b"/", 1)[0]


PING = {"op": "ping"}
PROBE = {"op": "probe"}      # its payload (the probe bytes) is discarded
