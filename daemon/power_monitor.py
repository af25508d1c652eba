"""Power sampling, energy integration and per-frame attribution.

A thread reads the power source at `rate_hz` and integrates energy with the trapezoid
rule into a cumulative series (t, joules). A frame's energy is the series' difference
between its start and end, interpolated between samples (and extrapolated at the
latest power past the last sample). The idle baseline is the smoothed power of
samples taken while no frame was running; a frame's `idle_j` is that baseline times
its duration, reported separately so the extra energy a frame costs is visible.

A sensor that fails (NACK, missing file, overflow) marks the monitor unhealthy: the
executor then uses the model-based estimate and `status` says so. The thread keeps
retrying with a bounded backoff, so a sensor that comes back is used again; nothing
here can raise into, or block, a frame.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

from adaptinf.drivers.power_sources import PowerSource

log = logging.getLogger(__name__)

HISTORY_S = 60.0             # energy series kept for attribution
IDLE_GAIN = 0.05             # EWMA gain of the idle baseline
ACTIVE_GAIN = 0.2            # EWMA gain of the power while frames run
MAX_BACKOFF_S = 1.0


@dataclass(frozen=True)
class PowerStatus:
    source: str
    healthy: bool
    power_w: float | None
    idle_power_w: float | None
    active_power_w: float | None
    samples: int
    errors: int
    last_error: str | None


MIN_RATE_HZ = 0.1          # one read in 10 s: slower measures nothing per frame
MAX_RATE_HZ = 100_000.0


class PowerMonitor:
    def __init__(self, source: PowerSource, rate_hz: float = 100.0, clock: Callable[[], float] = time.monotonic):
        if not MIN_RATE_HZ <= rate_hz <= MAX_RATE_HZ:
            raise ValueError(f"rate_hz must be in [{MIN_RATE_HZ}, {MAX_RATE_HZ}], got {rate_hz}")
        self.source = source
        self.period_s = 1.0 / rate_hz
        self._clock = clock
        self._lock = threading.Lock()
        self._times: deque[float] = deque(maxlen=int(HISTORY_S * rate_hz) + 2)
        self._energy: deque[float] = deque(maxlen=int(HISTORY_S * rate_hz) + 2)
        self._last_power: float | None = None
        self._running_frames = 0
        self.idle_power_w: float | None = None
        self.active_power_w: float | None = None
        self.healthy = False
        self.samples = 0
        self.errors = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- sampling ------------------------------------------------------------------------
    def sample_once(self) -> bool:
        """Read the sensor once and integrate; False (and unhealthy) when the read failed."""
        try:
            power = float(self.source.read_power_w())
        except Exception as exc:  # SensorError, OSError, anything a driver throws: degrade, never raise
            with self._lock:
                if self.healthy:
                    log.warning("power sensor %s failed: %s; using the model-based estimate", self.source.name, exc)
                self.healthy = False
                self.errors += 1
                self.last_error = str(exc)
                self._times.clear()      # a gap: never integrate across it
                self._energy.clear()
                self._last_power = None
            return False
        now = self._clock()
        with self._lock:
            if self._times:
                dt = now - self._times[-1]
                self._energy.append(self._energy[-1] + 0.5 * (power + self._last_power) * dt)
            else:
                self._energy.append(0.0)
            self._times.append(now)
            self._last_power = power
            self.samples += 1
            if not self.healthy and self.errors:
                log.info("power sensor %s is back", self.source.name)
            self.healthy = True
            if self._running_frames == 0:
                self.idle_power_w = power if self.idle_power_w is None else \
                    self.idle_power_w + IDLE_GAIN * (power - self.idle_power_w)
        return True

    def start(self) -> "PowerMonitor":
        self.sample_once()
        self._thread = threading.Thread(target=self._run, name="power-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)

    def _run(self) -> None:
        backoff = self.period_s
        try:
            while not self._stop.wait(backoff):
                backoff = self.period_s if self.sample_once() else min(backoff * 2, MAX_BACKOFF_S)
        except Exception as exc:
            # a dead sampler is a dead sensor: energy falls back to the model, and status says why,
            # instead of reporting the last power reading as healthy forever
            log.critical("power sampler died: %s: %s", type(exc).__name__, exc, exc_info=True)
            self.healthy = False
            self.last_error = f"sampler died: {type(exc).__name__}: {exc}"

    # ---- attribution ---------------------------------------------------------------------
    def frame_started(self) -> None:
        with self._lock:
            self._running_frames += 1

    def frame_finished(self) -> None:
        with self._lock:
            self._running_frames = max(0, self._running_frames - 1)

    def _cumulative(self, t: float) -> float | None:
        """Energy integrated up to time t, interpolated; None outside the series."""
        times, energy = self._times, self._energy
        if not times or t < times[0]:
            return None
        if t >= times[-1]:
            return energy[-1] + (self._last_power or 0.0) * (t - times[-1])
        i = bisect.bisect_right(times, t)
        t0, t1 = times[i - 1], times[i]
        return energy[i - 1] + (energy[i] - energy[i - 1]) * (t - t0) / (t1 - t0)

    def energy_between(self, start: float, end: float, computing: bool = False) -> float | None:
        """Joules the device used between two clock readings, or None when not measured.

        computing: the window was device compute; its mean power updates `active_power_w`,
        the power the planner uses for PM.
        """
        with self._lock:
            if not self.healthy or end < start:
                return None
            a, b = self._cumulative(start), self._cumulative(end)
            if a is None or b is None:
                return None
            energy = b - a
            if computing and end > start:
                power = energy / (end - start)
                self.active_power_w = power if self.active_power_w is None else \
                    self.active_power_w + ACTIVE_GAIN * (power - self.active_power_w)
            return energy

    def status(self) -> PowerStatus:
        with self._lock:
            return PowerStatus(self.source.name, self.healthy, self._last_power if self.healthy else None,
                               self.idle_power_w, self.active_power_w, self.samples, self.errors, self.last_error)
