"""`adaptinf infer IMAGE...` and `adaptinf stream --source URI`: what a camera app does.

infer sends image files and prints, per file, the answer, where it ran, its latency and
energy (or `--json`, one line each).

stream sends a source's frames at the source's own rate (a file's frame rate, a camera's
clock, or `--fps`), keeping up to `--in-flight` frames in flight on one connection, and
prints one JSON line per frame (stdout) and a summary (stderr; `--summary-json` for a
machine). With `--drop`, a frame that arrives while the daemon still has `--in-flight`
frames of this stream is dropped, as a camera pipeline's leaky queue drops it, and
counted; without it the source waits (a file is then read slower than its rate). Either
way every frame is answered, refused with its code, or counted as dropped: never lost.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from adaptinf.client import ApiError, Client, InferResult, take_answered
from adaptinf.programs.frame_sources import Source, SourceError, read_image


def frame_record(index: int, result: InferResult | None, error: Exception | None, sent_at: float) -> dict:
    """One frame's JSON line."""
    if result is None:
        code = getattr(error, "code", type(error).__name__)
        return {"frame": index, "t": round(sent_at, 6), "code": code, "message": str(error)}
    record = {"frame": index, "t": round(sent_at, 6), "code": "OK", "placement": result.served_by.placement,
              "partition": result.served_by.partition, "fallback": result.served_by.fallback,
              "latency_ms": round(result.latency_ms.total, 3), "energy_j": result.energy_j}
    if result.label is not None:
        record.update(label=result.label, **{"class": result.label_name}, confidence=round(result.confidence, 5))
    else:
        record["outputs"] = {name: list(value.shape) for name, value in result.outputs.items()}
    return record


def run_infer(client: Client, paths: list[str], as_json: bool, options: dict, out=sys.stdout) -> int:
    failed = 0
    for path in paths:
        try:
            result = client.infer(read_image(path), **options)
        except (SourceError, ApiError) as exc:
            failed += 1
            print(json.dumps({"file": path, "code": getattr(exc, "code", "UNREADABLE"), "message": str(exc)})
                  if as_json else f"{path}: {exc}", file=out if as_json else sys.stderr)
            continue
        record = frame_record(0, result, None, 0.0)
        record.pop("frame"), record.pop("t")
        if as_json:
            print(json.dumps({"file": path, **record}), file=out)
        else:
            what = (f"{record['class']} ({record['confidence']:.1%})" if "class" in record
                    else ", ".join(f"{k} {v}" for k, v in record["outputs"].items()))
            print(f"{path}: {what}  on {record['partition'] or record['placement']}"
                  f"{' (fallback)' if record['fallback'] else ''}, {record['latency_ms']:.1f} ms, "
                  f"{record['energy_j'] * 1e3:.1f} mJ", file=out)
    return 1 if failed else 0


@dataclass
class StreamSummary:
    source: str
    frames: int = 0                  # read from the source
    answered: int = 0                # OK
    errors: Counter = field(default_factory=Counter)    # by code
    dropped: int = 0                 # never sent: the daemon had --in-flight frames already
    seconds: float = 0.0
    latencies_ms: list = field(default_factory=list)
    placements: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict:
        lat = np.array(self.latencies_ms)
        return {"source": self.source, "frames": self.frames, "answered": self.answered,
                "errors": dict(self.errors), "dropped": self.dropped, "seconds": round(self.seconds, 3),
                "answered_per_s": round(self.answered / self.seconds, 2) if self.seconds else 0.0,
                "latency_ms": ({p: round(float(np.percentile(lat, q)), 3) for p, q in
                                (("p50", 50), ("p90", 90), ("p99", 99))} if len(lat) else None),
                "placements": dict(self.placements)}


def run_stream(client: Client, source: Source, fps: float | None, drop: bool, in_flight: int, options: dict,
               emit: Callable[[dict], None], max_frames: int | None = None, clock=time.monotonic,
               sleep=time.sleep, progress: bool | None = None) -> StreamSummary:
    """Stream `source` into the daemon; emit(record) per frame, in frame order."""
    from tqdm import tqdm

    rate = fps or (None if source.live else source.fps)     # a live source paces itself
    summary = StreamSummary(source.uri)
    flying: deque = deque()                                 # (index, sent_at, future), oldest first
    start = clock()
    bar = tqdm(total=source.total if max_frames is None else max_frames, unit="frame", desc="stream",
               disable=(None if progress is None else not progress), file=sys.stderr, leave=False)

    waiting = [0]                                           # frames sent and not yet answered

    def settle(block: bool) -> None:
        """Emit the oldest frames that are answered or dropped (waiting for the oldest when block)."""
        for (index, sent_at, future), result, error in take_answered(client, flying, block):
            if future is None:                              # dropped: its line, in its place
                emit({"frame": index, "t": round(sent_at - start, 6), "code": "DROPPED"})
                bar.update()
                continue
            waiting[0] -= 1
            record = frame_record(index, result, error, sent_at - start)
            if result is None:
                summary.errors[record["code"]] += 1
            else:
                summary.answered += 1
                summary.latencies_ms.append(record["latency_ms"])
                summary.placements[record["partition"] or record["placement"]] += 1
            emit(record)
            bar.update()

    try:
        for index, frame, color in source.frames:
            if max_frames is not None and index >= max_frames:
                break
            if rate:                                        # the source's own clock
                due = start + index / rate
                while clock() < due:
                    settle(False)
                    sleep(min(0.002, max(0.0, due - clock())))
            summary.frames += 1
            settle(False)
            if waiting[0] >= in_flight:
                if drop:                                    # a leaky queue: the newest frame goes
                    summary.dropped += 1
                    flying.append((index, clock(), None))
                    continue
                while waiting[0] >= in_flight:
                    settle(True)
            flying.append((index, clock(), client.infer_async(frame, color=color, **options)))
            waiting[0] += 1
        while flying:
            settle(True)
    finally:
        summary.seconds = clock() - start
        bar.close()
    return summary
