"""adaptinf host <-> MCU serial protocol, version 1: the host's half.

The firmware's half is firmware/stm32/src/proto.c; the numbers below are those of
firmware/stm32/include/proto.h (a test parses the header and compares). A frame before
stuffing is

    version u8 | type u8 | seq u8 | flags u8 | length u16 LE | payload | CRC-16 LE

with CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) over everything before it, then
COBS-encoded and ended by 0x00. COBS leaves no zero inside a frame, so after line noise
a receiver resynchronises at the next 0x00 (the header and CRC can never fake a start,
the trap of framings that stuff only the payload). The reply echoes the request's seq,
so a late reply can never be taken for the answer to a newer request.
"""

from __future__ import annotations

import binascii
import enum
import struct
from dataclasses import dataclass

VERSION = 1
HEADER_BYTES = 6
CRC_BYTES = 2
MAX_PAYLOAD = 512
MAX_RAW = HEADER_BYTES + MAX_PAYLOAD + CRC_BYTES
MAX_ENCODED = MAX_RAW + MAX_RAW // 254 + 2
_HEADER = struct.Struct("<BBBBH")


class FrameType(enum.IntEnum):
    HELLO = 0x01
    HELLO_REPLY = 0x02
    PING = 0x03
    PONG = 0x04
    LOAD_BEGIN = 0x05
    LOAD_CHUNK = 0x06
    LOAD_END = 0x07
    INFER = 0x08
    RESULT = 0x09
    ACK = 0x0A
    INPUT_CHUNK = 0x0B      # {u16 offset in features, float32 values}: an input over one payload
    ERROR = 0x7F


class Status(enum.IntEnum):
    """Error codes of ERROR replies and of the decoder (proto_status in proto.h)."""

    OK = 0
    CRC = 1
    VERSION = 2
    LENGTH = 3
    TYPE = 4
    TOO_LARGE = 5
    COBS = 6
    NOT_LOADED = 7
    MODEL = 8
    BUSY = 9


# A MODEL error's second byte: why the firmware's parser refused the blob (fc_status in fc.h).
MODEL_REASONS = {1: "not an AIFC/AIMS blob", 2: "unsupported blob version", 3: "inconsistent shapes",
                 4: "truncated blob", 5: "bad input", 6: "more input features than the firmware takes",
                 7: "a layer wider than the firmware takes"}


@dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    payload: bytes


@dataclass(frozen=True)
class BadFrame:
    """A delimited frame that failed a check; decoding goes on with the next one."""

    status: Status


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: binascii's CRC-CCITT (poly 0x1021, MSB first) started at 0xFFFF.
    The firmware's table-free loop computes the same (tests compare both on random frames)."""
    return binascii.crc_hqx(data, 0xFFFF)


def cobs_encode(data: bytes) -> bytes:
    out = bytearray([0])
    code_at, code = 0, 1
    for byte in data:
        if byte == 0:
            out[code_at] = code
            code_at, code = len(out), 1
            out.append(0)
        else:
            out.append(byte)
            code += 1
            if code == 0xFF:
                out[code_at] = code
                code_at, code = len(out), 1
                out.append(0)
    out[code_at] = code
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(data):
        code = data[i]
        i += 1
        if code == 0 or i + code - 1 > len(data) or 0 in data[i:i + code - 1]:
            raise ValueError("not valid COBS")
        out += data[i:i + code - 1]
        i += code - 1
        if code != 0xFF and i < len(data):
            out.append(0)
    return bytes(out)


def encode(frame_type: int, seq: int, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds the protocol's {MAX_PAYLOAD}")
    raw = _HEADER.pack(VERSION, frame_type, seq & 0xFF, 0, len(payload)) + payload
    return cobs_encode(raw + struct.pack("<H", crc16(raw))) + b"\x00"


def parse(encoded: bytes) -> Frame | BadFrame:
    try:
        raw = cobs_decode(encoded)
    except ValueError:
        return BadFrame(Status.COBS)
    if len(raw) < HEADER_BYTES + CRC_BYTES:
        return BadFrame(Status.LENGTH)
    version, frame_type, seq, _, length = _HEADER.unpack_from(raw)
    if length > MAX_PAYLOAD or len(raw) != HEADER_BYTES + length + CRC_BYTES:
        return BadFrame(Status.LENGTH)
    if struct.unpack_from("<H", raw, len(raw) - CRC_BYTES)[0] != crc16(raw[:-CRC_BYTES]):
        return BadFrame(Status.CRC)
    if version != VERSION:
        return BadFrame(Status.VERSION)
    return Frame(frame_type, seq, bytes(raw[HEADER_BYTES:HEADER_BYTES + length]))


class Decoder:
    """Bytes in, frames (or BadFrame records) out; never raises, never holds more than one frame."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._overflowed = False
        self.bad_frames = 0

    def feed(self, data: bytes) -> list[Frame | BadFrame]:
        out: list[Frame | BadFrame] = []
        data = bytes(data)
        start = 0
        while True:
            end = data.find(b"\x00", start)
            piece = data[start:] if end < 0 else data[start:end]
            if not self._overflowed:
                if len(self._buffer) + len(piece) > MAX_ENCODED:
                    self._overflowed = True   # too long to be ours: drop until the delimiter
                    self._buffer.clear()
                else:
                    self._buffer += piece
            if end < 0:
                return out
            if self._overflowed:
                out.append(BadFrame(Status.TOO_LARGE))
            elif self._buffer:
                out.append(parse(bytes(self._buffer)))
            if out and isinstance(out[-1], BadFrame):
                self.bad_frames += 1
            self._buffer.clear()
            self._overflowed = False
            start = end + 1
