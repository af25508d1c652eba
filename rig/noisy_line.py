"""A noisy serial line for fault tests: a TCP relay between the host driver and the MCU's
serial port (QEMU's USART1 socket) that damages bytes in both directions.

Each byte is, with probability `corrupt`, XORed with a random non-zero mask, and with
probability `drop`, left out: bit errors and lost bytes as a long or poorly grounded UART
cable produces them. The generator is seeded, so a failing run can be repeated.
"""

from __future__ import annotations

import random
import select
import socket
import threading


class NoisyLine:
    def __init__(self, target_port: int, corrupt: float = 0.0, drop: float = 0.0, seed: int = 0,
                 host: str = "127.0.0.1"):
        self.target = (host, target_port)
        self.corrupt, self.drop = corrupt, drop
        self._random = random.Random(seed)
        self._listener = socket.socket()
        self._listener.bind((host, 0))
        self._listener.listen(1)
        self.port = self._listener.getsockname()[1]
        self.url = f"socket://{host}:{self.port}"
        self.damaged = 0      # bytes changed or dropped, both directions
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="noisy-line", daemon=True)
        self._thread.start()

    def _damage(self, data: bytes) -> bytes:
        out = bytearray()
        for byte in data:
            r = self._random.random()
            if r < self.drop:
                self.damaged += 1
                continue
            if r < self.drop + self.corrupt:
                self.damaged += 1
                byte ^= self._random.randrange(1, 256)
            out.append(byte)
        return bytes(out)

    def _serve(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._listener], [], [], 0.1)
            if not ready:
                continue
            client, _ = self._listener.accept()
            upstream = socket.create_connection(self.target)
            pair = {client: upstream, upstream: client}
            try:
                while not self._stop.is_set():
                    readable, _, _ = select.select(list(pair), [], [], 0.1)
                    for sock in readable:
                        data = sock.recv(4096)
                        if not data:
                            raise ConnectionError
                        pair[sock].sendall(self._damage(data))
            except OSError:
                pass
            finally:
                client.close()
                upstream.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._listener.close()
