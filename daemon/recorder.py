"""The flight recorder: every answered frame's decision and outcome, and the link's and the
daemon's events, kept in memory for `adaptinf record` and in rotating files for history.

Recording never blocks a frame. The frame's thread builds and encodes its record (a few
microseconds: core/recording.py's FrameRecord, encoded by msgspec) and appends the line
to a queue and to the ring that `adaptinf record` reads; a writer thread does the file
I/O. A full queue or a failing disk drops records, counted, never frames. The files are flushed every FLUSH_S and fsynced every SYNC_S, so a crash or power
cut loses at most the last second; a torn last line is skipped when read. They rotate at
max_bytes / SEGMENTS each, and the oldest go first when all of them pass `max_bytes` or a
file passes `max_age`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
import random
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from adaptinf.recording import SCHEMA, FrameRecord, encode_line

log = logging.getLogger(__name__)

FLUSH_S = 0.2
SYNC_S = 1.0
SEGMENTS = 8                 # files the budget is spread over: deleting one frees an eighth
QUEUE_CAPACITY = 100_000     # records waiting for the writer; beyond that they are dropped
WRITE_BATCH = 64             # lines per write: a segment overshoots by at most one batch
MAX_LINE_BYTES = 2048        # a frame record is about 650 bytes; the budget leaves room for a batch of these


class FlightRecorder:
    def __init__(self, directory: Path | str, max_bytes: int, max_age_s: float, ring: int, record_frames: float,
                 header: dict, clock=time.time):
        self.directory = Path(directory)
        self.max_bytes, self.max_age_s = max_bytes, max_age_s
        self.segment_bytes = max(64 * 1024, max_bytes // SEGMENTS)
        self.record_frames = record_frames
        self._header = header
        self._clock = clock
        self._queue: deque[bytes] = deque()          # encoded lines, for the writer
        self._ring: deque[tuple[int, bytes]] = deque(maxlen=ring)
        self._ring_lock = threading.Lock()
        self._seq = itertools.count(1)
        self._newest = 0
        self.dropped = 0            # records lost to a full queue or a failing disk
        self.written = 0
        self._file = None
        self._file_bytes = 0
        self._file_index = 0
        self._profiles: dict[int, tuple[Any, str]] = {}     # id(profile) -> (profile, its id in the recording)
        self._profiles_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._disk_error_logged = 0.0
        self._record_error_logged = -math.inf
        self._rng = random.Random()

    # ---- the frame's thread: a few microseconds, no I/O, never blocks -------------------
    def frame(self, job, result, latency_ms: dict | None = None) -> None:
        """Record one answered frame. The record is built and encoded here (in C, by msgspec):
        a writer thread doing it instead would hold the GIL in bursts that the frame threads
        queue behind, which measured costlier. Only the file I/O is the writer's."""
        if len(self._queue) >= QUEUE_CAPACITY:
            self.dropped += 1
            return
        try:
            self._frame(job, result, latency_ms)
        except Exception as exc:    # a record that cannot be made must not cost the frame its answer
            self._failed(exc)

    def _frame(self, job, result, latency_ms: dict | None) -> None:
        t = self._clock()
        planned = result.planned
        profile_id = self._profile_id(planned.profile, t) if planned is not None else None
        record = frame_record(t, job.id, job.peer, job.model, job.policy, job.context, job.priority, result,
                              profile_id, latency_ms)
        if self.record_frames and job.frame is not None and self._rng.random() < self.record_frames:
            record.frame_sha256 = self._sample(job.frame)
        self._push(record)

    def event(self, kind: str, fields: dict | None = None) -> None:
        if len(self._queue) >= QUEUE_CAPACITY:
            self.dropped += 1
            return
        try:
            self._push({"type": "event", "t": self._clock(), "kind": kind, **(fields or {})})
        except Exception as exc:    # the link's or the daemon's thread goes on
            self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        self.dropped += 1
        if time.monotonic() - self._record_error_logged > 60:
            self._record_error_logged = time.monotonic()
            log.exception("flight recorder: a record could not be made (%s: %s); it is dropped and counted",
                          type(exc).__name__, exc)

    def _push(self, record) -> None:
        seq = next(self._seq)
        if type(record) is dict:
            record["seq"] = seq
        else:
            record.seq = seq
        line = encode_line(record)
        with self._ring_lock:
            self._ring.append((seq, line))
            self._newest = max(self._newest, seq)
        self._queue.append(line)

    def _profile_id(self, profile, t: float) -> str:
        """The profile's id in the recording; its first frame queues its record first."""
        known = self._profiles.get(id(profile))
        if known is not None and known[0] is profile:
            return known[1]
        text = json.dumps(profile.to_json(), sort_keys=True)
        profile_id = hashlib.sha256(text.encode()).hexdigest()[:12]
        with self._profiles_lock:
            if len(self._profiles) > 16:
                self._profiles.clear()
            self._profiles[id(profile)] = (profile, profile_id)
        self._queue.append(encode_line({"type": "profile", "t": t, "id": profile_id, "profile": profile.to_json()}))
        return profile_id

    def _sample(self, frame: np.ndarray) -> str:
        """Keep the frame's tensor as frames/<sha256>.npy (counted against max_bytes)."""
        frame = np.ascontiguousarray(frame)
        digest = hashlib.sha256(frame.tobytes()).hexdigest()
        path = self.directory / "frames" / f"{digest}.npy"
        try:
            path.parent.mkdir(exist_ok=True)
            if not path.exists():
                np.save(path, frame)
        except OSError:
            self.dropped += 1
        return digest

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
            lines = [line for s, line in self._ring if s > seq][:limit]
            return lines, self._newest

    def header(self) -> dict:
        return {"type": "header", "t": self._clock(), "schema": SCHEMA, **self._header}

    def profiles(self) -> dict[str, dict]:
        """The profiles frames were planned with lately, by their id in the recording."""
        with self._profiles_lock:
            known = list(self._profiles.values())
        return {profile_id: profile.to_json() for profile, profile_id in known}

    def status(self) -> dict:
        return {"directory": str(self.directory), "written": self.written, "dropped": self.dropped,
                "queued": len(self._queue), "max_bytes": self.max_bytes}

    # ---- the writer thread: file I/O only -------------------------------------------------
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
            batch = [self._queue.popleft() for _ in range(min(len(self._queue), WRITE_BATCH))]
            try:
                self._write(batch)
            except OSError as exc:
                self.dropped += len(batch)
                self._close_file()      # reopened on the next record: the disk may recover
                if time.monotonic() - self._disk_error_logged > 60:
                    self._disk_error_logged = time.monotonic()
                    log.warning("flight recorder: cannot write to %s (%s); records are dropped and counted, "
                                "frames are not", self.directory, exc.strerror or exc)

    def _write(self, batch: list[bytes]) -> None:
        if self._file is None or self._file_bytes >= self.segment_bytes:
            self._rotate()
        data = b"".join(batch)
        self._file.write(data)
        self._file_bytes += len(data)
        self.written += len(batch)

    def _rotate(self) -> None:
        self._close_file()
        self._file_index += 1
        path = self.directory / f"rec-{int(self._clock() * 1000):013d}-{os.getpid()}-{self._file_index:05d}.jsonl"
        self._file = open(path, "ab")
        self._file_bytes = 0
        start = [encode_line(self.header())]
        with self._profiles_lock:
            known = list(self._profiles.values())
        for profile, profile_id in known:       # every file reads on its own
            start.append(encode_line({"type": "profile", "t": self._clock(), "id": profile_id,
                                      "profile": profile.to_json()}))
        for line in start:
            self._file.write(line)
            self._file_bytes += len(line)
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
            # room for the current segment to fill, and for its last batch to overshoot it
            if (total <= self.max_bytes - self.segment_bytes - WRITE_BATCH * MAX_LINE_BYTES
                    and now - mtime <= self.max_age_s):
                break
            try:
                path.unlink()
                total -= size
            except OSError:
                pass


def frame_record(t: float, job_id, peer: bytes, model: str, policy: str, context, priority, result,
                 profile_id: str | None, latency_ms: dict | None = None) -> FrameRecord:
    """One frame's record (core/recording.py's FrameRecord), in one constructor call: this runs
    once per frame on the writer thread, and the daemon's frame threads share its GIL."""
    planned = result.planned
    served = result.served_by
    stages = result.stages
    total = stages.total
    deadline = context.deadline_s
    labelled = result.scores is not None and result.label >= 0
    if latency_ms is None:
        latency_ms = stages.to_reply_ms()
    if planned is None:
        return FrameRecord(
            t, id=job_id, client=peer.hex(), model=model, policy=policy, goal=context.goal, mode=context.mode,
            deadline_ms=deadline * 1e3 if deadline else None, priority=priority,
            arrived=t - total if total is not None else None, code=result.code,
            stages_ms=latency_ms, energy_j=result.energy_j,
            energy_source=result.energy_source, power_source=result.energy_source.split("+")[0],
            placement=served.placement if served else None, upload_bytes=served.upload_bytes if served else None,
            fallback=served.fallback if served else False, fallback_reason=served.fallback_reason if served else None,
            label=result.label if labelled else None, confidence=result.confidence if labelled else None)
    tel, plan = planned.telemetry, planned.plan
    chosen = plan.chosen
    return FrameRecord(
        t, id=job_id, client=peer.hex(), model=model, policy=policy, goal=plan.goal, mode=plan.mode,
        deadline_ms=deadline * 1e3 if deadline else None, priority=priority,
        arrived=t - total if total is not None else None, profile=profile_id,
        uplink_bps=tel.uplink_bps, uplink_std_bps=tel.uplink_std_bps, uplink_age_s=tel.uplink_age_s, rtt_s=tel.rtt_s,
        uplink_backlog_s=tel.uplink_backlog_s, device_queue_s=tel.device_queue_s, cloud_queue_s=tel.cloud_queue_s,
        cloud_slowdown=tel.cloud_slowdown, device_slowdown=tel.device_slowdown, cloud_up=tel.cloud_up,
        radio=tel.radio, device_power_w=tel.device_power_w, partition=chosen.name, kind=chosen.kind,
        predicted_ms=chosen.latency_s * 1e3, predicted_mj=chosen.energy_j * 1e3, code=result.code,
        stages_ms=latency_ms, energy_j=result.energy_j,
        energy_source=result.energy_source, power_source=result.energy_source.split("+")[0],
        placement=served.placement if served else None, upload_bytes=served.upload_bytes if served else None,
        fallback=served.fallback if served else False, fallback_reason=served.fallback_reason if served else None,
        label=result.label if labelled else None, confidence=result.confidence if labelled else None)
