"""The flight recorder's format: JSON Lines, one record per line, read by anything that reads
JSON (pandas.read_json(lines=True), polars.read_ndjson, DuckDB's read_json_auto).

Every line is an object with "type" and "t" (wall-clock seconds):
- "header":  {"schema": SCHEMA, "daemon", "bundle", "bundle_sha256", "started"}; first in
             every file.
- "profile": {"id", "profile"}: the profile the planner used (core/profile.py's JSON), written
             before the first frame planned with it; frames name it by "profile".
- "frame":   one answered frame (FRAME_FIELDS): the request, the telemetry the plan used,
             the choice and its prediction, and the outcome. Every candidate's prediction is
             not stored: it follows from the telemetry and the profile through the cost
             model (`adaptinf explain` recomputes them), which keeps recording cheap.
- "event":   {"kind", ...}: link and daemon events (EVENT_KINDS): each upload's send and
             reply with its bytes (the link estimator's raw samples), RTT samples, probes,
             link state changes, mode changes, reloads, start and stop, sampled frames.

A line that does not parse (the torn tail of a file cut by a crash or power loss) is
skipped and counted. docs/recorder.md documents each field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import msgspec

SCHEMA = 1
# the frame record's fields, in order (docs/recorder.md)
FRAME_FIELDS = (
    "seq", "id", "client", "model", "policy", "goal", "mode", "deadline_ms", "priority", "arrived",
    # the telemetry the plan used
    "uplink_bps", "uplink_std_bps", "uplink_age_s", "rtt_s", "uplink_backlog_s", "device_queue_s", "cloud_queue_s",
    "cloud_slowdown", "device_slowdown", "cloud_up", "radio", "device_power_w", "power_source", "profile",
    # the choice
    "partition", "kind", "predicted_ms", "predicted_mj",
    # the outcome
    "code", "placement", "stages_ms", "energy_j", "energy_source", "upload_bytes", "fallback", "fallback_reason",
    "label", "confidence", "frame_sha256",
)
# the link estimator's inputs, one event per call (daemon/link_estimator.py's observer), and
# the daemon's own events
ESTIMATOR_EVENTS = ("upload_sent", "upload_done", "upload_lost", "upload_untimed", "rtt")
EVENT_KINDS = ESTIMATOR_EVENTS + ("start", "stop", "link_state", "mode", "reload", "frame_sample", "dropped")

class FrameRecord(msgspec.Struct, omit_defaults=True, tag_field="type", tag="frame"):
    """One answered frame (docs/recorder.md): built by the recorder's writer thread and encoded
    by msgspec in C, the cheapest way to a JSON object per frame. Fields left unset (a frame
    refused before planning has no telemetry) are left out of the line."""

    t: float
    seq: int = 0
    id: Any = None
    client: str = ""
    model: str = ""
    policy: str = ""
    goal: str = ""
    mode: str = ""
    deadline_ms: float | None = None
    priority: int = 0
    arrived: float | None = None
    profile: str | None = None
    uplink_bps: float | None = None
    uplink_std_bps: float | None = None
    uplink_age_s: float | None = None
    rtt_s: float | None = None
    uplink_backlog_s: float | None = None
    device_queue_s: float | None = None
    cloud_queue_s: float | None = None
    cloud_slowdown: float | None = None
    device_slowdown: float | None = None
    cloud_up: bool | None = None
    radio: str | None = None
    device_power_w: float | None = None
    partition: str | None = None
    kind: str | None = None
    predicted_ms: float | None = None
    predicted_mj: float | None = None
    code: str = ""
    placement: str | None = None
    stages_ms: dict = {}
    energy_j: float = 0.0
    energy_source: str = ""
    power_source: str = ""
    upload_bytes: int | None = None
    fallback: bool = False
    fallback_reason: str | None = None
    label: int | None = None
    confidence: float | None = None
    frame_sha256: str | None = None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


def encode_line(record) -> bytes:
    """One record (a dict or a FrameRecord) as a JSON line. Non-finite floats become null (JSON
    has no NaN)."""
    try:
        return _encoder.encode(record) + b"\n"
    except (TypeError, ValueError, OverflowError):
        if isinstance(record, msgspec.Struct):
            record = msgspec.to_builtins(record)
        return _encoder.encode(_finite(record)) + b"\n"


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


@dataclass
class Recording:
    """A recording read back: its headers, profiles by id, frames and events in file order."""

    headers: list[dict] = field(default_factory=list)
    profiles: dict[str, dict] = field(default_factory=dict)
    frames: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    skipped_lines: int = 0
    parsed_profiles: dict = field(default_factory=dict)     # filled by whoever parses them

    def frame(self, frame_id) -> dict | None:
        """The frame whose request id (as the client sent it, or its text) or seq is frame_id."""
        for f in self.frames:
            if f.get("id") == frame_id or str(f.get("id")) == str(frame_id) or str(f.get("seq")) == str(frame_id):
                return f
        return None


class RecordingError(ValueError):
    """A file that is not a recording; the message says which and why."""


def iter_lines(paths: Iterable[Path | str]) -> Iterator[dict | None]:
    """Every record of the files in order; None for a line that does not parse."""
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise RecordingError(f"{path}: cannot read it ({exc.strerror or exc})") from None
        for line in data.split(b"\n"):
            if not line.strip():
                continue
            try:
                record = _decoder.decode(line)
            except msgspec.DecodeError:
                yield None
                continue
            yield record if isinstance(record, dict) else None


def read_recording(paths: Iterable[Path | str] | Path | str) -> Recording:
    """Read a recording (one file, a directory of rotated files, or a list of files)."""
    if isinstance(paths, (str, Path)):
        path = Path(paths)
        paths = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    paths = list(paths)
    if not paths:
        raise RecordingError("no recording files")
    rec = Recording()
    for record in iter_lines(paths):
        kind = record.get("type") if record is not None else None
        if kind == "frame":
            rec.frames.append(record)
        elif kind == "event":
            rec.events.append(record)
        elif kind == "profile":
            rec.profiles[str(record.get("id"))] = record.get("profile")
        elif kind == "header":
            if record.get("schema") != SCHEMA:
                raise RecordingError(f"schema {record.get('schema')!r}; this adaptinf reads schema {SCHEMA}")
            rec.headers.append(record)
        else:
            rec.skipped_lines += 1
    if not rec.headers:
        raise RecordingError(f"{paths[0]}: no recording header: not an adaptinf recording")
    return rec
