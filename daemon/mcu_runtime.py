"""The MCU as adaptinfd uses it: one serial link, one loaded multi-dsNN, and its host twin.

- `infer(x)`: on the MCU. A reset seen mid-request (the firmware's boot HELLO) or a
  NOT_LOADED answer reloads the model and asks once more. A failed exchange raises
  McuError for that frame, which the caller answers another way. Silence (not a byte back)
  marks the MCU down at once; a garbled exchange (a noisy line that the driver's one
  retransmission did not cure) does so only after FAILURES_TO_DOWN in a row, so a slightly
  noisy line keeps the MCU in use.
- While down, a prober thread reopens the port (a board's ttyACM vanishes while it
  resets) and handshakes, with backoff from `retry_s` to RETRY_MAX_S; frames never wait
  for it. It reloads the model only when HELLO says the MCU does not hold this exact one
  (its length and CRC-16), not on every reconnect.
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


FAILURES_TO_DOWN = 3     # exchanges failed in a row before the MCU is marked down
RETRY_MAX_S = 30.0       # the prober's backoff ceiling


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
        self.reloads_skipped = 0          # reconnects that found this model loaded already
        self.failures = 0
        self._failed_in_a_row = 0
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
        wait = self.retry_s
        while not self._stop.wait(wait):
            try:
                if self.up:
                    wait = self.retry_s
                elif not self.connect():
                    wait = min(wait * 2, RETRY_MAX_S)    # a board that stays away is not hammered
            except Exception as exc:     # whatever a reconnect raised: the prober goes on, or the MCU is lost
                log.exception("MCU prober: %s: %s; retrying", type(exc).__name__, exc)
                self._mark_down(exc)
                wait = min(wait * 2, RETRY_MAX_S)

    def prober_alive(self) -> bool:
        return self._prober is None or self._prober.is_alive() or self._stop.is_set()

    def _load(self, force: bool = False) -> None:
        """Load the model, unless (not forced) HELLO says this exact one is loaded already."""
        if not force and self.client.hello().holds(self.blob):
            self.reloads_skipped += 1
            return
        self.client.load_blob(self.blob)
        self.reloads += 1

    def _mark_down(self, exc: Exception) -> None:
        if self.up:
            log.warning("MCU on %s down: %s (frames run on the host meanwhile)", self.port, exc)
        self.up = False
        self.failures += 1
        self._failed_in_a_row = 0
        self.last_error = str(exc)

    def _failed(self, exc: McuError) -> None:
        """One exchange failed: the frame is answered another way; the MCU is marked down only
        after FAILURES_TO_DOWN in a row."""
        self.failures += 1
        self._failed_in_a_row += 1
        self.last_error = str(exc)
        if self._failed_in_a_row >= FAILURES_TO_DOWN:
            self._mark_down(exc)

    # ---- frames --------------------------------------------------------------------
    def infer(self, x: np.ndarray) -> McuResult:
        if x.shape != (self.system.input_dim,):
            raise ValueError(f"the MCU model takes {self.system.input_dim} features, got shape {x.shape}")
        if not self.up:   # checked before the lock: the prober may hold it for a slow handshake
            raise McuError(f"MCU down: {self.last_error or 'not connected'}")
        with self._lock:
            for _ in range(3):
                heard = self.client.bytes_received
                try:
                    result = self.client.infer(x)
                    self._failed_in_a_row = 0
                    return result
                except McuReset as exc:
                    reason = exc
                except McuError as exc:
                    if exc.status != proto.Status.NOT_LOADED:
                        if self.client.bytes_received > heard:
                            self._failed(exc)       # it answered, garbled: a noisy line, try it again
                        else:
                            self._mark_down(exc)    # silence: down now, frames must not wait on it
                        raise
                    reason = exc
                log.info("MCU lost its model (%s): reloading", reason)
                try:
                    self._load(force=True)
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
                "reloads_skipped": self.reloads_skipped, "failures": self.failures, "last_error": self.last_error,
                "resets_seen": c.boot_hellos if c else 0, "retransmissions": c.retransmissions if c else 0,
                "bad_frames": c.bad_frames if c else 0}
