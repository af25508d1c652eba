"""The MCU over serial: HELLO, PING, chunked model loading, INFER (pyserial; a board or QEMU).

`port` is anything pyserial opens: /dev/ttyACM0 (or the udev name /dev/adaptinf-stm32) on
a board, socket://127.0.0.1:PORT for the firmware running in QEMU. The port is opened
exclusively, stale input is flushed, and every exchange is bounded by a timeout; replies
must echo the request's seq, anything else (a late reply, a boot HELLO) is set aside.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass

import numpy as np
import serial

from adaptinf.drivers import mcu_protocol as proto
from adaptinf.drivers.mcu_model import McuNet, to_blob

CHUNK = proto.MAX_PAYLOAD - 4   # LOAD_CHUNK carries a u32 offset


class McuError(Exception):
    def __init__(self, message: str, status: proto.Status | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Hello:
    firmware_version: int
    protocol_version: int
    max_payload: int
    model_capacity: int
    model_loaded: int


@dataclass(frozen=True)
class McuResult:
    label: int
    confidence: float
    count: int    # SysTick ticks of the inference (QEMU -icount: instructions, not silicon cycles)
    dtype: str


class McuClient:
    def __init__(self, port: str, timeout_s: float = 2.0, baudrate: int = 115200):
        kwargs = {} if port.startswith(("socket://", "loop://")) else {"exclusive": True}
        self._serial = serial.serial_for_url(port, baudrate=baudrate, timeout=0.05, **kwargs)
        self._serial.reset_input_buffer()
        self._decoder = proto.Decoder()
        self._pending: list[proto.Frame] = []
        self._seq = 0
        self.timeout_s = timeout_s
        self.boot_hellos = 0
        self._serial.write(b"\x00")   # flush whatever half frame the line holds

    def close(self) -> None:
        self._serial.close()

    def __enter__(self) -> "McuClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _receive(self, deadline: float) -> proto.Frame | None:
        while time.monotonic() < deadline:
            if self._pending:
                return self._pending.pop(0)
            for item in self._decoder.feed(self._serial.read(256)):
                if isinstance(item, proto.Frame):
                    self._pending.append(item)
        return None

    def request(self, frame_type: proto.FrameType, payload: bytes = b"", timeout_s: float | None = None) -> proto.Frame:
        self._seq = (self._seq + 1) % 255   # 255 is the firmware's "unknown seq"
        seq = self._seq
        self._serial.write(proto.encode(frame_type, seq, payload))
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while True:
            frame = self._receive(deadline)
            if frame is None:
                raise McuError(f"no reply to {frame_type.name} (seq {seq}) within {timeout_s or self.timeout_s} s")
            if frame.seq != seq:
                if frame.type == proto.FrameType.HELLO_REPLY and frame.seq == 0:
                    self.boot_hellos += 1   # the MCU reset: its model is gone
                continue
            if frame.type == proto.FrameType.ERROR:
                status = proto.Status(frame.payload[0]) if frame.payload else None
                raise McuError(f"{frame_type.name} refused: {status.name if status else '?'}", status)
            return frame

    def hello(self, attempts: int = 3, timeout_s: float | None = None) -> Hello:
        """The handshake; repeated on silence: a board may be resetting, and until its USART is
        enabled whatever the host sends is lost (QEMU drops input while UE/RE are clear)."""
        for attempt in range(attempts):
            try:
                p = self.request(proto.FrameType.HELLO, timeout_s=timeout_s).payload
                return Hello(p[0], p[1], struct.unpack_from("<H", p, 2)[0], *struct.unpack_from("<II", p, 4))
            except McuError as exc:
                if exc.status is not None or attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def ping(self, payload: bytes = b"") -> bytes:
        return self.request(proto.FrameType.PING, payload).payload

    def load(self, net: McuNet) -> int:
        return self.load_blob(to_blob(net))

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
        payload = np.ascontiguousarray(features, np.float32).tobytes()
        p = self.request(proto.FrameType.INFER, payload).payload
        confidence, count = struct.unpack_from("<fI", p, 4)
        return McuResult(p[0], confidence, count, "int8" if p[1] == 0 else "float32")
