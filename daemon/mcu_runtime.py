"""The MCU as adaptinfd uses it: one serial link, one loaded multi-dsNN, and its host twin.

- `infer(x)`: on the MCU. A reset seen mid-request (the firmware's boot HELLO) or a
  NOT_LOADED answer reloads the model and asks once more; silence marks the MCU down and
  raises McuError, so the caller answers the frame another way.
- While down, a prober thread reopens the port (a board's ttyACM vanishes while it
  resets), handshakes and reloads, every `retry_s`; frames never wait for it.
- `reference(x)`: the same system on the Jetson's CPU (drivers/mcu_model.py, bit-exact
  with the firmware): the fallback that keeps every frame answered.
One lock serialises the link: the MCU runs one inference at a time.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from adaptinf.drivers import mcu_protocol as proto
from adaptinf.drivers.mcu import McuClient, McuError, McuReset, McuResult
from adaptinf.drivers.mcu_model import McuSystem, parse_system, reference_predict

log = logging.getLogger(__name__)


class McuRuntime:
    def __init__(self, port: str, model_path: Path | str, timeout_s: float = 0.2, retries: int = 1,
                 baudrate: int = 115200, retry_s: float = 1.0):
        self.port = port
        self.blob = Path(model_path).read_bytes()
        self.system: McuSystem = parse_system(self.blob)
        self.timeout_s, self.retries, self.baudrate, self.retry_s = timeout_s, retries, baudrate, retry_s
        self.client: McuClient | None = None
        self.up = False
        self.reloads = 0
        self.failures = 0
        self.last_error = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._prober: threading.Thread | None = None

    # ---- life cycle ---------------------------------------------------------------
    def connect(self) -> bool:
        """Open, handshake, load; True when the MCU is ready. Failing is not fatal: the prober retries."""
        with self._lock:
            try:
                if self.client is None:
                    self.client = McuClient(self.port, self.timeout_s, self.baudrate, self.retries)
                else:
                    self.client.reconnect()
                self._load()
                self.up = True
                log.info("MCU on %s ready (%d-byte model)", self.port, len(self.blob))
            except (McuError, OSError, ValueError) as exc:
                self._mark_down(exc)
        return self.up

    def start_prober(self) -> "McuRuntime":
        self._prober = threading.Thread(target=self._probe_loop, name="mcu-prober", daemon=True)
        self._prober.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._prober is not None:
            self._prober.join(5)
        with self._lock:
            if self.client is not None:
                self.client.close()

    def _probe_loop(self) -> None:
        while not self._stop.wait(self.retry_s):
            if not self.up:
                self.connect()

    def _load(self) -> None:
        self.client.load_blob(self.blob)
        self.reloads += 1

    def _mark_down(self, exc: Exception) -> None:
        if self.up:
            log.warning("MCU on %s down: %s (frames run on the host meanwhile)", self.port, exc)
        self.up = False
        self.failures += 1
        self.last_error = str(exc)

    # ---- frames --------------------------------------------------------------------
    def infer(self, x: np.ndarray) -> McuResult:
        if x.shape != (self.system.input_dim,):
            raise ValueError(f"the MCU model takes {self.system.input_dim} features, got shape {x.shape}")
        if not self.up:   # checked before the lock: the prober may hold it for a slow handshake
            raise McuError(f"MCU down: {self.last_error or 'not connected'}")
        with self._lock:
            for _ in range(3):
                try:
                    return self.client.infer(x)
                except McuReset as exc:
                    reason = exc
                except McuError as exc:
                    if exc.status != proto.Status.NOT_LOADED:
                        self._mark_down(exc)
                        raise
                    reason = exc
                log.info("MCU lost its model (%s): reloading", reason)
                try:
                    self._load()
                except McuReset:
                    continue                        # reset again while loading: start over
                except McuError as exc:
                    self._mark_down(exc)
                    raise
            error = McuError("the MCU keeps resetting")
            self._mark_down(error)
            raise error

    def reference(self, x: np.ndarray) -> tuple[int, int, np.ndarray]:
        """(label, net, logits) of the same system on the host, bit-exact with the MCU's."""
        return reference_predict(self.system, x)

    def status(self) -> dict:
        c = self.client
        return {"port": self.port, "up": self.up, "model_bytes": len(self.blob), "reloads": self.reloads,
                "failures": self.failures, "last_error": self.last_error,
                "resets_seen": c.boot_hellos if c else 0, "retransmissions": c.retransmissions if c else 0,
                "bad_frames": c.bad_frames if c else 0}
