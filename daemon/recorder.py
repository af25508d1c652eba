"""The flight recorder: every answered frame's decision and outcome, and the link's and the
daemon's events, kept in memory for `adaptinf record` and in rotating files for history.

Recording never blocks a frame. The frame's thread only appends a tuple of references to a
queue; a writer thread builds the records (core/recording.py's format), writes them, and
keeps the newest in a ring. A full queue or a failing disk drops records, counted, never
frames. The files are flushed every FLUSH_S and fsynced every SYNC_S, so a crash or power
cut loses at most the last second; a torn last line is skipped when read. They rotate at
max_bytes / SEGMENTS each, and the oldest go first when all of them pass `max_bytes` or a
file passes `max_age`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from adaptinf.recording import SCHEMA, encode_line

log = logging.getLogger(__name__)

FLUSH_S = 0.2
SYNC_S = 1.0
SEGMENTS = 8                 # files the budget is spread over: deleting one frees an eighth
QUEUE_CAPACITY = 100_000     # records waiting for the writer; beyond that they are dropped
_FRAME, _EVENT = 0, 1


class FlightRecorder:
    def __init__(self, directory: Path | str, max_bytes: int, max_age_s: float, ring: int, record_frames: float,
                 header: dict, clock=time.time):
        self.directory = Path(directory)
        self.max_bytes, self.max_age_s = max_bytes, max_age_s
        self.segment_bytes = max(64 * 1024, max_bytes // SEGMENTS)
        self.record_frames = record_frames
        self._header = header
        self._clock = clock
        self._queue: deque = deque()
        self._ring: deque[tuple[int, bytes]] = deque(maxlen=ring)
        self._ring_lock = threading.Lock()
        self._seq = 0
        self.dropped = 0            # records lost to a full queue or a failing disk
        self.written = 0
        self._file = None
        self._file_bytes = 0
        self._file_index = 0
        self._profiles: dict[int, tuple[Any, str]] = {}     # id(profile) -> (profile, its id in the recording)
        self._in_this_file: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._disk_error_logged = 0.0
        self._rng = random.Random()

    # ---- the frame's thread: cheap, never blocks --------------------------------------
    def frame(self, job, result) -> None:
        if len(self._queue) >= QUEUE_CAPACITY:
            self.dropped += 1
            return
        sample = None
        if self.record_frames and job.frame is not None and self._rng.random() < self.record_frames:
            sample = np.array(job.frame, copy=True)
        self._queue.append((_FRAME, self._clock(), job.id, job.peer, job.model, job.policy, job.context,
                            job.priority, result, sample))

    def event(self, kind: str, fields: dict | None = None) -> None:
        if len(self._queue) >= QUEUE_CAPACITY:
            self.dropped += 1
            return
        self._queue.append((_EVENT, self._clock(), kind, fields or {}))

    # ---- life cycle ---------------------------------------------------------------------
    def start(self) -> "FlightRecorder":
        self.directory.mkdir(parents=True, exist_ok=True)
        self._enforce_budget()
        self.event("start", {"pid": os.getpid()})
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        self.event("stop", {"written": self.written, "dropped": self.dropped})
        self._stop.set()
        self._thread.join(10)
        self._thread = None
        if self._file is not None:
            self._sync()
            self._file.close()
            self._file = None

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def records_after(self, seq: int, limit: int) -> tuple[list[bytes], int]:
        """The ring's records with a seq above `seq` (at most limit), and the newest seq."""
        with self._ring_lock:
            newest = self._ring[-1][0] if self._ring else self._seq
            lines = [line for s, line in self._ring if s > seq][:limit]
        return lines, newest

    def header(self) -> dict:
        return {"type": "header", "t": self._clock(), "schema": SCHEMA, **self._header}

    def profiles(self) -> dict[str, dict]:
        """The profiles frames were planned with lately, by their id in the recording."""
        return {profile_id: profile.to_json() for profile, profile_id in list(self._profiles.values())}

    def status(self) -> dict:
        return {"directory": str(self.directory), "written": self.written, "dropped": self.dropped,
                "queued": len(self._queue), "max_bytes": self.max_bytes}

    # ---- the writer thread ---------------------------------------------------------------
    def _run(self) -> None:
        last_sync = time.monotonic()
        while True:
            stopping = self._stop.wait(FLUSH_S)
            try:
                self._drain()
                if self._file is not None:
                    self._file.flush()
                    if stopping or time.monotonic() - last_sync >= SYNC_S:
                        self._sync()
                        last_sync = time.monotonic()
            except Exception as exc:    # the recorder must not take frames down with it
                log.exception("flight recorder: %s: %s", type(exc).__name__, exc)
            if stopping:
                return

    def _drain(self) -> None:
        while self._queue:
            item = self._queue.popleft()
            try:
                if item[0] == _FRAME:
                    lines = self._frame_lines(item)
                else:
                    _, t, kind, fields = item
                    lines = [self._numbered({"type": "event", "t": t, "kind": kind, **fields})]
                for line in lines:
                    self._write(line)
            except OSError as exc:
                self.dropped += 1
                self._close_file()      # reopened on the next record: the disk may recover
                if time.monotonic() - self._disk_error_logged > 60:
                    self._disk_error_logged = time.monotonic()
                    log.warning("flight recorder: cannot write to %s (%s); records are dropped and counted, "
                                "frames are not", self.directory, exc.strerror or exc)

    def _numbered(self, record: dict) -> bytes:
        self._seq += 1
        record["seq"] = self._seq
        line = encode_line(record)
        with self._ring_lock:
            self._ring.append((self._seq, line))
        return line

    def _frame_lines(self, item) -> list[bytes]:
        _, t, job_id, peer, model, policy, context, priority, result, sample = item
        lines = []
        planned = result.planned
        profile_id = None
        if planned is not None:
            profile_id, profile_line = self._profile(planned.profile, t)
            if profile_line is not None:
                lines.append(profile_line)
        record = frame_record(t, job_id, peer, model, policy, context, priority, result, profile_id)
        if sample is not None:
            record["frame_sha256"] = self._save_frame(sample)
        lines.append(self._numbered(record))
        return lines

    def _profile(self, profile, t: float) -> tuple[str, bytes | None]:
        """The profile's id in the recording, and its record when this file lacks it yet."""
        known = self._profiles.get(id(profile))
        if known is None or known[0] is not profile:
            text = json.dumps(profile.to_json(), sort_keys=True)
            known = (profile, hashlib.sha256(text.encode()).hexdigest()[:12])
            if len(self._profiles) > 16:
                self._profiles.clear()
            self._profiles[id(profile)] = known
        profile_id = known[1]
        if profile_id in self._in_this_file:
            return profile_id, None
        self._in_this_file.add(profile_id)
        return profile_id, encode_line({"type": "profile", "t": t, "id": profile_id, "profile": profile.to_json()})

    def _save_frame(self, frame: np.ndarray) -> str:
        digest = hashlib.sha256(frame.tobytes()).hexdigest()
        path = self.directory / "frames" / f"{digest}.npy"
        path.parent.mkdir(exist_ok=True)
        if not path.exists():
            np.save(path, frame)        # counted against max_bytes with the files (_enforce_budget)
        return digest

    def _write(self, line: bytes) -> None:
        if self._file is None or self._file_bytes >= self.segment_bytes:
            self._rotate()
        self._file.write(line)
        self._file_bytes += len(line)
        self.written += 1

    def _rotate(self) -> None:
        self._close_file()
        self._file_index += 1
        path = self.directory / f"rec-{int(self._clock() * 1000):013d}-{os.getpid()}-{self._file_index:05d}.jsonl"
        self._file = open(path, "ab")
        self._file_bytes = 0
        self._in_this_file = set()
        header = encode_line({"type": "header", "t": self._clock(), "schema": SCHEMA, **self._header})
        self._file.write(header)
        self._file_bytes += len(header)
        for profile, profile_id in list(self._profiles.values()):   # every file reads on its own
            self._file.write(encode_line({"type": "profile", "t": self._clock(), "id": profile_id,
                                          "profile": profile.to_json()}))
            self._in_this_file.add(profile_id)
        self._enforce_budget()

    def _close_file(self) -> None:
        if self._file is not None:
            try:
                self._sync()
                self._file.close()
            except OSError:
                pass
            self._file = None

    def _sync(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def _enforce_budget(self) -> None:
        """Delete the oldest files (never the one being written) past max_bytes or max_age."""
        current = Path(self._file.name) if self._file is not None else None
        files = [p for p in self.directory.glob("rec-*.jsonl")] + list((self.directory / "frames").glob("*.npy"))
        entries = []
        for p in files:
            try:
                st = p.stat()
            except OSError:
                continue
            entries.append((st.st_mtime, st.st_size, p))
        entries.sort()
        total = sum(size for _, size, _ in entries)
        now = time.time()
        for mtime, size, path in entries:
            if path == current:
                continue
            if total <= self.max_bytes - self.segment_bytes and now - mtime <= self.max_age_s:
                break
            try:
                path.unlink()
                total -= size
            except OSError:
                pass


def frame_record(t: float, job_id, peer: bytes, model: str, policy: str, context, priority, result,
                 profile_id: str | None) -> dict:
    """One frame's record (core/recording.py FRAME_FIELDS)."""
    planned = result.planned
    telemetry = planned.telemetry if planned is not None else None
    chosen = planned.plan.chosen if planned is not None else None
    served = result.served_by
    stages = result.stages
    total = stages.total
    record = {"type": "frame", "t": t, "id": job_id, "client": peer.hex(), "model": model, "policy": policy,
              "goal": planned.plan.goal if planned is not None else context.goal,
              "mode": planned.plan.mode if planned is not None else context.mode,
              "deadline_ms": context.deadline_s * 1e3 if context.deadline_s else None, "priority": priority,
              "arrived": t - total if total is not None else None, "profile": profile_id}
    if telemetry is not None:
        record.update(uplink_bps=telemetry.uplink_bps, uplink_std_bps=telemetry.uplink_std_bps,
                      uplink_age_s=telemetry.uplink_age_s, rtt_s=telemetry.rtt_s,
                      uplink_backlog_s=telemetry.uplink_backlog_s, device_queue_s=telemetry.device_queue_s,
                      cloud_queue_s=telemetry.cloud_queue_s, cloud_slowdown=telemetry.cloud_slowdown,
                      device_slowdown=telemetry.device_slowdown, cloud_up=telemetry.cloud_up, radio=telemetry.radio,
                      device_power_w=telemetry.device_power_w)
    if chosen is not None:
        record.update(partition=chosen.name, kind=chosen.kind, predicted_ms=chosen.latency_s * 1e3,
                      predicted_mj=chosen.energy_j * 1e3)
    record.update(code=result.code, stages_ms=stages.to_reply_ms(), energy_j=result.energy_j,
                  energy_source=result.energy_source, power_source=result.energy_source.split("+")[0])
    if served is not None:
        record.update(placement=served.placement, upload_bytes=served.upload_bytes, fallback=served.fallback,
                      fallback_reason=served.fallback_reason)
    if result.scores is not None and result.label >= 0:
        record.update(label=result.label, confidence=result.confidence)
    return record
