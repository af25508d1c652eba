"""`adaptinf perf`: a load generator for adaptinfd, in the manner of Triton's perf_analyzer.

    adaptinf perf --concurrency 1,4,16 --seconds 5 [--policy split] [--json]
    adaptinf perf --rate 50,100 --seconds 5

--concurrency N keeps N frames in flight on one connection (closed loop: a new frame as
each answer arrives); --rate R sends R frames/s on a fixed schedule (open loop: a slow
daemon shows as latency and refusals, not as a slower sender). Each step reports
frames/s answered, client-side latency p50/p90/p99 (send to answer), the placements the
daemon chose, and errors by code. The frame is the served model's own input (random
values), or `--camera HxW` for camera frames through the bundle's preprocessing.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

from adaptinf.client import Client, take_answered


@dataclass
class Step:
    mode: str                        # "concurrency" or "rate"
    value: float
    seconds: float = 0.0
    sent: int = 0
    answered: int = 0
    latencies_ms: list = field(default_factory=list)
    placements: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict:
        lat = np.array(self.latencies_ms)
        return {self.mode: self.value, "seconds": round(self.seconds, 3), "sent": self.sent,
                "answered": self.answered, "frames_per_s": round(self.answered / self.seconds, 2),
                "latency_ms": ({p: round(float(np.percentile(lat, q)), 3) for p, q in
                                (("p50", 50), ("p90", 90), ("p99", 99))} if len(lat) else None),
                "placements": dict(self.placements), "errors": dict(self.errors)}


def model_frame(client: Client, model: str | None, camera: tuple[int, int] | None, seed: int = 0) -> np.ndarray:
    """A frame the served model takes: its input spec (from `models`), or a camera frame."""
    if camera is not None:
        return np.random.default_rng(seed).integers(0, 256, (*camera, 3), dtype=np.uint8)
    models = client.models()
    chosen = next((m for m in models if m["name"] == model), models[0]) if model else models[0]
    spec = chosen["inputs"][0]
    rng = np.random.default_rng(seed)
    if spec["dtype"] in ("uint8", "int8"):
        return rng.integers(0, 128, spec["shape"]).astype(spec["dtype"])
    return rng.standard_normal(spec["shape"]).astype(spec["dtype"])


def _settle(step: Step, flying: deque, block: bool, client: Client) -> None:
    for (sent_at, _), result, error in take_answered(client, flying, block):
        if error is not None:
            step.errors[getattr(error, "code", "TIMEOUT")] += 1
            continue
        step.answered += 1
        step.latencies_ms.append((time.perf_counter() - sent_at) * 1e3)
        step.placements[result.served_by.partition or result.served_by.placement] += 1


def run_step(client: Client, frame: np.ndarray, mode: str, value: float, seconds: float, options: dict) -> Step:
    step = Step(mode, value)
    flying: deque = deque()
    start = time.perf_counter()
    end = start + seconds
    if mode == "concurrency":
        while time.perf_counter() < end:
            while len(flying) >= value:
                _settle(step, flying, True, client)
            flying.append((time.perf_counter(), client.infer_async(frame, **options)))
            step.sent += 1
    else:
        n = 0
        while True:
            due = start + n / value
            if due >= end:
                break
            while time.perf_counter() < due:
                _settle(step, flying, False, client)
                time.sleep(min(0.001, max(0.0, due - time.perf_counter())))
            flying.append((time.perf_counter(), client.infer_async(frame, **options)))
            step.sent += 1
            n += 1
    while flying:
        _settle(step, flying, True, client)
    step.seconds = time.perf_counter() - start
    return step


def print_table(steps: list[Step], out) -> None:
    print(f"{'':12} {'frames/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'sent':>6} {'errors':>7}  placements",
          file=out)
    for s in steps:
        d = s.to_dict()
        where = ", ".join(f"{k} {v}" for k, v in sorted(s.placements.items(), key=lambda kv: -kv[1]))
        errors = sum(s.errors.values())
        label = f"{'conc' if s.mode == 'concurrency' else 'rate'} {s.value:g}"
        lat = d["latency_ms"] or {"p50": float("nan"), "p90": float("nan"), "p99": float("nan")}
        print(f"{label:12} {d['frames_per_s']:9.1f} {lat['p50']:8.2f} {lat['p90']:8.2f} "
              f"{lat['p99']:8.2f} {s.sent:6d} {errors:7d}  {where}"
              + (f"  errors: {dict(s.errors)}" if errors else ""), file=out)
