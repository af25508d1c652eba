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


def test_the_prober_survives_whatever_a_reconnect_raises(tmp_path):
    """A prober that died on an unexpected exception left the MCU unused for good while the
    daemon looked healthy. It now logs, marks the MCU down and retries; the daemon's health
    check watches the thread."""
    import threading

    import numpy as np

    from adaptinf.daemon.mcu_runtime import McuRuntime
    from adaptinf.drivers.mcu_model import McuSystem, quantize_net, system_blob

    rng = np.random.default_rng(0)
    net = quantize_net([rng.normal(size=(8, 64)), rng.normal(size=(10, 8))], [np.zeros(8), np.zeros(10)],
                       rng.random((10, 64)))
    (tmp_path / "m.aims").write_bytes(system_blob(McuSystem((net,), (tuple(range(10)),))))
    runtime = McuRuntime("loop://", tmp_path / "m.aims", retry_s=0.01)
    calls = threading.Semaphore(0)

    def broken_connect():
        calls.release()
        raise RuntimeError("an unexpected error in a reconnect")

    runtime.connect = broken_connect
    runtime.start_prober()
    try:
        for _ in range(3):
            assert calls.acquire(timeout=10)        # it keeps trying
        assert runtime.prober_alive() and not runtime.up and "unexpected" in runtime.last_error
    finally:
        runtime.close()
