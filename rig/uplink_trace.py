"""Recorded uplink traces in Mahimahi's format, and the link capacity they describe.

A trace file has one integer per line: a time in milliseconds at which one 1500-byte
packet may leave the bottleneck (a delivery opportunity); a millisecond repeated k
times carries k packets. At its end the trace repeats, with a period of its last
timestamp (Mahimahi's mm-link does the same).

A link is a trace spec: `FILE` (all of it), `FILE:START-END` (seconds START to END,
re-based to 0 and repeating with period END-START), and specs joined with `+` play
back to back as one link (`a.up:0-60+b.up:0-60`).

`UplinkTrace.drain_s(t, nbytes)` answers exactly what the perfect-knowledge bound
needs: how long nbytes queued at time t on an otherwise empty link take to leave it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PACKET_BYTES = 1500


class TraceError(ValueError):
    """A trace file or spec that cannot be replayed; the message says which and why."""


@dataclass(frozen=True)
class TraceSource:
    """One file's window, as given on the command line."""

    path: str
    sha256: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class UplinkTrace:
    """Delivery opportunities (ms from the trace's start, sorted; repeats allowed) and the period."""

    opportunities_ms: np.ndarray
    period_ms: int
    name: str
    sources: tuple[TraceSource, ...]

    def __post_init__(self) -> None:
        if self.period_ms <= 0 or len(self.opportunities_ms) == 0:
            raise TraceError(f"{self.name}: no delivery opportunity in the trace")

    # ---- capacity -------------------------------------------------------------------
    def opportunity_s(self, k: int) -> float:
        """Time of the k-th opportunity (k >= 0) of the endlessly repeated trace, in seconds.
        Opportunities lie in (0, period] of each round."""
        n = len(self.opportunities_ms)
        loops, i = divmod(k, n)
        return (loops * self.period_ms + int(self.opportunities_ms[i])) / 1e3

    def first_at_or_after(self, t_s: float) -> int:
        """Index k of the first opportunity at or after t_s."""
        n = len(self.opportunities_ms)
        t_ms = t_s * 1e3
        loops = max(int(-(-t_ms // self.period_ms)) - 1, 0)    # the round whose (0, period] holds t
        i = int(np.searchsorted(self.opportunities_ms, t_ms - loops * self.period_ms, side="left"))
        return loops * n + i

    def drain_s(self, t_s: float, nbytes: int) -> float:
        """Seconds until nbytes, queued at t_s on an empty link, have all left the bottleneck."""
        if nbytes <= 0:
            return 0.0
        packets = -(-nbytes // PACKET_BYTES)
        return self.opportunity_s(self.first_at_or_after(t_s) + packets - 1) - t_s

    def capacity_bps(self, bin_s: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """(bin start times, capacity in bit/s) over one period: for plots and reports."""
        edges = np.arange(0.0, self.period_ms / 1e3 + bin_s, bin_s)
        counts, _ = np.histogram(self.opportunities_ms / 1e3, edges)
        return edges[:-1], counts * PACKET_BYTES * 8 / bin_s

    @property
    def mean_bps(self) -> float:
        return len(self.opportunities_ms) * PACKET_BYTES * 8 / (self.period_ms / 1e3)

    @property
    def duration_s(self) -> float:
        return self.period_ms / 1e3


def read_trace_file(path: Path | str) -> np.ndarray:
    """The opportunities of one Mahimahi file, in ms, sorted."""
    path = Path(path)
    try:
        text = path.read_text(encoding="ascii")
    except OSError as exc:
        raise TraceError(f"{path}: cannot read the trace ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise TraceError(f"{path}: not a Mahimahi trace (one integer of milliseconds per line)") from None
    values = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        if not line.isdigit():
            raise TraceError(f"{path}:{number}: {line[:40]!r} is not a whole number of milliseconds")
        values.append(int(line))
    if not values:
        raise TraceError(f"{path}: empty trace")
    times = np.asarray(values, dtype=np.int64)
    if np.any(np.diff(times) < 0):
        raise TraceError(f"{path}: timestamps go backwards (Mahimahi traces are sorted)")
    return times


def _window(path: str, start_s: float | None, end_s: float | None) -> tuple[np.ndarray, int, TraceSource]:
    full = read_trace_file(path)
    period = int(full[-1])
    if period <= 0:
        raise TraceError(f"{path}: the trace must end after 0 ms")
    start_ms = 0 if start_s is None else int(round(start_s * 1e3))
    end_ms = period if end_s is None else int(round(end_s * 1e3))
    if not 0 <= start_ms < end_ms:
        raise TraceError(f"{path}: window {start_s}-{end_s} s must have 0 <= START < END")
    # the window may run past the file's end: the trace repeats there, as it does when replayed
    # (mm-link: after the last line, the next round starts with period = that last timestamp).
    # A window is (START, END], so the file's own last opportunity belongs to its first round.
    loops = -(-end_ms // period) + 1
    tiled = (full[None, :] + period * np.arange(loops)[:, None]).reshape(-1)
    picked = tiled[(tiled > start_ms) & (tiled <= end_ms)] - start_ms
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return picked, end_ms - start_ms, TraceSource(str(path), digest, start_ms / 1e3, end_ms / 1e3)


def parse_trace_spec(spec: str) -> UplinkTrace:
    """`FILE`, `FILE:START-END`, or such parts joined with `+` into one link."""
    parts, offset, sources = [], 0, []
    for part in spec.split("+"):
        part = part.strip()
        path, start, end = part, None, None
        head, sep, window = part.rpartition(":")
        if sep and "-" in window and not Path(part).exists():
            path = head
            try:
                start, end = (float(v) for v in window.split("-", 1))
            except ValueError:
                raise TraceError(f"{part!r}: the window must be START-END in seconds, e.g. {head}:60-120") from None
        times, period, source = _window(path, start, end)
        parts.append(times + offset)
        offset += period
        sources.append(source)
    name = " + ".join(Path(s.path).name + (f":{s.start_s:g}-{s.end_s:g}") for s in sources)
    return UplinkTrace(np.concatenate(parts), offset, name, tuple(sources))
