"""Issue 29, item 9: a CRC-valid reply that is too short is the MCU's fault, said as an
McuError (so the daemon falls back to the host twin and the prober carries on), never a
struct.error that kills a thread."""

from __future__ import annotations

import socket
import threading

import pytest

from adaptinf.drivers import mcu_protocol as proto
from adaptinf.drivers.mcu import McuClient, McuError


class ShortBoard:
    """A TCP 'serial line' (pyserial's socket://) whose MCU answers every request with a
    CRC-valid frame of the right type and a 3-byte payload."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        conn, _ = self.server.accept()
        buffer = b""
        while True:
            data = conn.recv(4096)
            if not data:
                return
            buffer += data
            while b"\x00" in buffer:
                encoded, buffer = buffer.split(b"\x00", 1)
                frame = proto.parse(encoded)
                if isinstance(frame, proto.Frame):
                    reply = {proto.FrameType.HELLO: proto.FrameType.HELLO_REPLY,
                             proto.FrameType.INFER: proto.FrameType.RESULT}.get(frame.type, proto.FrameType.ACK)
                    conn.sendall(proto.encode(reply, frame.seq, b"\x01\x02\x03"))


@pytest.mark.parametrize("call", ["hello", "infer"])
def test_a_short_reply_is_an_mcu_error(call):
    board = ShortBoard()
    with McuClient(f"socket://127.0.0.1:{board.port}", timeout_s=0.5, retries=0) as mcu:
        with pytest.raises(McuError, match="of 3 bytes"):
            mcu.hello(attempts=1) if call == "hello" else mcu.infer([0.0] * 4)
