"""Synthetic cellular uplink traces in Mahimahi's format, from a seeded stochastic model.

The recorded traces adaptinf is tested against (../shared/traces) are GPL-3.0 data that stay
outside the product, so the demo ships traces of its own: `traces/*.up`, written by
`python scripts/make_traces.py` from the presets below, byte for byte the same on every run.

The model is the usual one for a fading cellular link (and what makes per-frame planning
worth doing): the capacity in each 100 ms step is log-normal around a median, correlated
in time (a first-order autoregression of its logarithm, with a correlation time of a few
seconds), and a two-state Markov chain drops it to nothing for outages (a handover, a
tunnel). The rate is then turned into delivery opportunities of 1500-byte packets, one
line per packet, as Mahimahi's recorded traces are. A preset's parameters are chosen so
that its per-second percentiles and outage share look like the recorded network it is
named after (published summary statistics only; no recorded data is used).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from adaptinf.rig.uplink_trace import PACKET_BYTES

STEP_MS = 100


@dataclass(frozen=True)
class TraceModel:
    name: str
    mean_bps: float         # the trace's mean capacity, outages included
    sigma: float            # std of log-capacity per step (the fading depth)
    corr_s: float           # correlation time of log-capacity
    outage_per_s: float     # rate at which outages start
    outage_mean_s: float    # mean outage length
    seconds: int
    seed: int


# Shaped after the summary statistics of the recorded T-Mobile UMTS and Verizon LTE uplinks
# (../shared/traces/README.md: means 0.94 and 5.95 Mbit/s, deep fades, ~3% of 3G seconds empty).
PRESETS = {
    "synthetic-3g": TraceModel("synthetic-3g", 1.0e6, 0.8, 3.0, 0.03, 1.5, 60, 2),
    "synthetic-lte": TraceModel("synthetic-lte", 6.0e6, 0.6, 2.0, 0.005, 0.6, 30, 4),
}


def capacity_steps(model: TraceModel) -> np.ndarray:
    """The capacity in bit/s of each STEP_MS step."""
    rng = np.random.default_rng(model.seed)
    n = model.seconds * 1000 // STEP_MS
    step_s = STEP_MS / 1e3
    phi = float(np.exp(-step_s / model.corr_s))
    x = np.empty(n)
    x[0] = rng.normal(0.0, model.sigma)
    noise = rng.normal(0.0, model.sigma * np.sqrt(1 - phi * phi), n)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + noise[i]
    up = np.empty(n, dtype=bool)
    enter, leave = model.outage_per_s * step_s, step_s / model.outage_mean_s
    draws = rng.random(n)
    state = False
    for i in range(n):
        state = draws[i] >= leave if state else draws[i] < enter
        up[i] = not state
    rate = np.exp(x) * up
    return rate * (model.mean_bps / rate.mean())    # the preset's mean, exactly


def opportunities_ms(rates_bps: np.ndarray) -> np.ndarray:
    """Delivery opportunities (ms, from 1) for a capacity per STEP_MS step: one per 1500 bytes
    of accumulated capacity, the last millisecond always holding one so the period is the
    full length (Mahimahi repeats a trace with a period of its last timestamp)."""
    bits_per_ms = np.repeat(rates_bps / 1e3, STEP_MS)
    packets = np.floor(np.cumsum(bits_per_ms) / (PACKET_BYTES * 8)).astype(np.int64)
    per_ms = np.diff(np.concatenate([[0], packets]))
    per_ms[-1] = max(per_ms[-1], 1)
    return np.repeat(np.arange(1, len(per_ms) + 1), per_ms)


def render(model: TraceModel) -> str:
    """The Mahimahi file's text."""
    return "".join(f"{t}\n" for t in opportunities_ms(capacity_steps(model)))


def per_second_stats(times_ms: np.ndarray) -> dict:
    """Mean, per-second p10/p50/p90 (bit/s) and empty seconds: the figures traces/README.md gives."""
    seconds = int(np.ceil(times_ms[-1] / 1e3))
    counts = np.bincount(((times_ms - 1) // 1000).astype(int), minlength=seconds)[:seconds]
    bps = counts * PACKET_BYTES * 8.0
    return {"seconds": seconds, "mean_bps": float(len(times_ms) * PACKET_BYTES * 8 / (times_ms[-1] / 1e3)),
            "p10_bps": float(np.percentile(bps, 10)), "p50_bps": float(np.percentile(bps, 50)),
            "p90_bps": float(np.percentile(bps, 90)), "empty_seconds": int(np.sum(counts == 0))}
