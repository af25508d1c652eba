"""The MCU over serial: HELLO, PING, chunked model loading, INFER (pyserial; a board or QEMU).

An input over one payload (more than 128 float32 features, up to the firmware's 1024) goes
in INPUT_CHUNKs, then an empty INFER runs on it.

`port` is anything pyserial opens: /dev/ttyACM0 (or the udev name /dev/adaptinf-stm32) on
a board, socket://127.0.0.1:PORT for the firmware running in QEMU. The port is opened
exclusively, stale input is flushed, and every exchange is bounded by a timeout.

What is accepted as an answer: a CRC-checked frame of the expected type that echoes the
request's seq. Everything else is set aside: a late reply to an older request (other
seq), a boot HELLO (seq 0, never used by requests: it means the MCU reset and lost its
model, so the request fails at once with McuReset), a frame the decoder refused. Every
request is idempotent on the firmware's side (a repeated LOAD_CHUNK is ACKed again), so
on silence, on a broken reply, or on the firmware's "I got a broken frame" (ERROR with
seq 255) the same frame is simply sent again, up to `retries` times.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass

import numpy as np
import serial

from adaptinf.drivers import mcu_protocol as proto
from adaptinf.drivers.mcu_model import McuNet, McuSystem, system_blob, to_blob

CHUNK = proto.MAX_PAYLOAD - 4   # LOAD_CHUNK carries a u32 offset
INPUT_CHUNK_FEATURES = (proto.MAX_PAYLOAD - 2) // 4   # INPUT_CHUNK: a u16 offset, then float32s
BOOT_SEQ = 0                    # the firmware's HELLO at boot
UNKNOWN_SEQ = 0xFF              # the firmware's ERROR for a frame it could not decode
REPLY_TYPES = {proto.FrameType.HELLO: proto.FrameType.HELLO_REPLY, proto.FrameType.PING: proto.FrameType.PONG,
               proto.FrameType.INFER: proto.FrameType.RESULT}


HELLO_MIN_BYTES = 12      # version, protocol, firmware (2), max payload (4), model capacity (4)
RESULT_MIN_BYTES = 12     # label, dtype, net, outputs, confidence (4), cycles (4)


class McuError(Exception):
    def __init__(self, message: str, status: proto.Status | None = None):
        super().__init__(message)
        self.status = status


class McuReset(McuError):
    """The MCU announced a boot while a request was out: its model is gone, reload it."""


@dataclass(frozen=True)
class Hello:
    firmware_version: int
    protocol_version: int
    max_payload: int
    model_capacity: int
    model_loaded: int
    max_input: int | None = None     # features a net may take (FC_MAX_INPUT); None from an older firmware
    max_width: int | None = None     # outputs a layer may have (FC_MAX_WIDTH)
    model_crc16: int | None = None   # CRC-16 of the loaded model (firmware 2+); None: not said

    def holds(self, blob: bytes) -> bool:
        """Whether this exact model is loaded already (a reconnect need not send it again)."""
        return (self.model_loaded == len(blob) and self.model_crc16 is not None
                and self.model_crc16 == proto.crc16(blob))


@dataclass(frozen=True)
class McuResult:
    label: int
    confidence: float
    count: int    # SysTick ticks of the inference (QEMU -icount: instructions, not silicon cycles)
    dtype: str
    net: int = 0  # which net the tree chose (0: dsNN_main or the only net, 1: dsNN_tail)
    logits: np.ndarray | None = None   # the chosen net's float32 logits, as the firmware computed them


class McuClient:
    def __init__(self, port: str, timeout_s: float = 2.0, baudrate: int = 115200, retries: int = 3):
        self.port = port
        self.baudrate = baudrate
        self.timeout_s = timeout_s
        self.retries = retries
        self._seq = 0
        self.boot_hellos = 0      # resets seen
        self.retransmissions = 0
        self.bytes_received = 0   # anything heard: a noisy line speaks, a silent MCU does not
        self._open()

    def _open(self) -> None:
        kwargs = {} if self.port.startswith(("socket://", "loop://")) else {"exclusive": True}
        self._serial = serial.serial_for_url(self.port, baudrate=self.baudrate, timeout=0.05, **kwargs)
        self._serial.reset_input_buffer()
        self._decoder = proto.Decoder()
        self._pending: list[proto.Frame] = []
        self._serial.write(b"\x00")   # end whatever half frame the line holds

    def reconnect(self) -> None:
        """Close and reopen the port (a board's USB CDC device vanishes while it resets)."""
        try:
            self._serial.close()
        except (OSError, serial.SerialException):
            pass
        self._open()

    def close(self) -> None:
        self._serial.close()

    def __enter__(self) -> "McuClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def bad_frames(self) -> int:
        return self._decoder.bad_frames

    def _receive(self, deadline: float) -> proto.Frame | proto.BadFrame | None:
        while time.monotonic() < deadline:
            if self._pending:
                return self._pending.pop(0)
            try:
                data = self._serial.read(self._serial.in_waiting or 1)   # whatever is there, or wait for a byte
            except (OSError, serial.SerialException) as exc:
                raise McuError(f"serial port {self.port} failed: {exc}") from exc
            self.bytes_received += len(data)
            self._pending.extend(self._decoder.feed(data))
        return None

    def _next_seq(self) -> int:
        self._seq = self._seq % 254 + 1   # 1..254: 0 is the boot HELLO, 255 the firmware's unknown seq
        return self._seq

    def request(self, frame_type: proto.FrameType, payload: bytes = b"", timeout_s: float | None = None,
                retries: int | None = None) -> proto.Frame:
        seq = self._next_seq()
        encoded = proto.encode(frame_type, seq, payload)
        expected = REPLY_TYPES.get(frame_type, proto.FrameType.ACK)
        timeout_s = timeout_s or self.timeout_s
        retries = self.retries if retries is None else retries
        for attempt in range(retries + 1):
            if attempt:
                self.retransmissions += 1
            try:
                self._serial.write(encoded)
            except (OSError, serial.SerialException) as exc:
                raise McuError(f"serial port {self.port} failed: {exc}") from exc
            deadline = time.monotonic() + timeout_s
            while True:
                frame = self._receive(deadline)
                if frame is None:
                    break                                   # silence: send again
                if isinstance(frame, proto.BadFrame):
                    break                                   # a broken frame may have been our reply
                if frame.type == proto.FrameType.HELLO_REPLY and frame.seq == BOOT_SEQ:
                    self.boot_hellos += 1
                    raise McuReset(f"the MCU reset during {frame_type.name} (seq {seq}); its model is gone")
                if frame.type == proto.FrameType.ERROR and frame.seq == UNKNOWN_SEQ:
                    break                                   # the MCU got a broken frame: maybe ours
                if frame.seq != seq:
                    continue                                # a late reply to an earlier request
                if frame.type == proto.FrameType.ERROR:
                    raise _refusal(frame_type, frame.payload)
                if frame.type != expected:
                    continue
                return frame
        raise McuError(f"no valid reply to {frame_type.name} (seq {seq}) after {retries + 1} attempt(s) "
                       f"of {timeout_s} s")

    def hello(self, attempts: int = 3, timeout_s: float | None = None) -> Hello:
        """The handshake; repeated on silence: a board may be resetting, and until its USART is
        enabled whatever the host sends is lost (QEMU drops input while UE/RE are clear).
        A boot HELLO arriving meanwhile is the answer we want anyway: ask again at once."""
        for _ in range(attempts):
            try:
                p = self.request(proto.FrameType.HELLO, timeout_s=timeout_s, retries=attempts - 1).payload
                if len(p) < HELLO_MIN_BYTES:     # CRC-valid but short: a firmware bug, not a struct.error here
                    raise McuError(f"HELLO_REPLY of {len(p)} bytes; it has at least {HELLO_MIN_BYTES}")
                caps = struct.unpack_from("<HH", p, 12) if len(p) >= 16 else (None, None)
                crc = struct.unpack_from("<H", p, 16)[0] if len(p) >= 18 else None
                return Hello(p[0], p[1], struct.unpack_from("<H", p, 2)[0], *struct.unpack_from("<II", p, 4), *caps,
                             crc)
            except McuReset:
                continue
        raise McuError(f"the MCU on {self.port} keeps resetting")

    def ping(self, payload: bytes = b"") -> bytes:
        return self.request(proto.FrameType.PING, payload).payload

    def load(self, model: McuNet | McuSystem) -> int:
        return self.load_blob(system_blob(model) if isinstance(model, McuSystem) else to_blob(model))

    def load_blob(self, blob: bytes) -> int:
        """Send a model blob in CRC-checked chunks; the firmware checks the whole and parses it."""
        capacity = self.hello().model_capacity
        if len(blob) > capacity:
            raise McuError(f"model of {len(blob)} bytes exceeds the MCU's {capacity}")
        self.request(proto.FrameType.LOAD_BEGIN, struct.pack("<I", len(blob)))
        for offset in range(0, len(blob), CHUNK):
            self.request(proto.FrameType.LOAD_CHUNK, struct.pack("<I", offset) + blob[offset:offset + CHUNK])
        self.request(proto.FrameType.LOAD_END, struct.pack("<H", proto.crc16(blob)))
        return len(blob)

    def infer(self, features: np.ndarray) -> McuResult:
        values = np.ascontiguousarray(features, np.float32).reshape(-1)
        if 4 * values.size <= proto.MAX_PAYLOAD:
            p = self.request(proto.FrameType.INFER, values.tobytes()).payload
        else:     # staged in chunks, in order; a refused chunk restarts the staging on the MCU
            for offset in range(0, values.size, INPUT_CHUNK_FEATURES):
                self.request(proto.FrameType.INPUT_CHUNK, struct.pack("<H", offset)
                             + values[offset:offset + INPUT_CHUNK_FEATURES].tobytes())
            p = self.request(proto.FrameType.INFER, b"").payload
        if len(p) < RESULT_MIN_BYTES:
            raise McuError(f"RESULT of {len(p)} bytes; it has at least {RESULT_MIN_BYTES}")
        confidence, count = struct.unpack_from("<fI", p, 4)
        logits = np.frombuffer(p, np.float32, p[3], 12) if len(p) >= 12 + 4 * p[3] else None
        return McuResult(p[0], confidence, count, "int8" if p[1] == 0 else "float32", p[2], logits)


def _refusal(request: proto.FrameType, payload: bytes) -> McuError:
    """The firmware's ERROR as an exception that says why (a MODEL error carries the parser's reason)."""
    try:
        status = proto.Status(payload[0]) if payload else None
    except ValueError:
        status = None
    message = f"{request.name} refused: {status.name if status else '?'}"
    if status == proto.Status.MODEL and len(payload) > 1:
        message += f" ({proto.MODEL_REASONS.get(payload[1], f'reason {payload[1]}')})"
    return McuError(message, status)
