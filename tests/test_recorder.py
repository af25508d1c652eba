"""The flight recorder (issue 31): records that read back, within their disk budget, that
never block or lose a frame, that survive kill -9, and that replay to the same choices."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from adaptinf import recording
from adaptinf.client import Client
from adaptinf.daemon import recorder as recorder_module
from adaptinf.daemon.config import parse_config
from adaptinf.daemon.executor import FrameResult
from adaptinf.daemon.recorder import FlightRecorder
from adaptinf.daemon.service import Daemon
from adaptinf.policies.plan import FrameContext, ServedBy, StageTimes
from adaptinf.programs import flight
from adaptinf.rig.link_shaper import LINK_PROFILES, LinkShaper
from adaptinf.rig.processes import spawn_daemon, write_daemon_config
from conftest import DEMO_BUNDLE


def _job(i):
    return SimpleNamespace(id=i, peer=b"\x00abc", model="m", policy="split", context=FrameContext(),
                           priority=0, frame=np.zeros((1, 4), np.uint8))


def _result():
    return FrameResult("OK", served_by=ServedBy("device", "split", "latency", "normal", partition="mobile-only"),
                       stages=StageTimes(total=0.01, device=0.009), energy_j=0.05)


def test_a_torn_tail_is_skipped_and_counted(tmp_path):
    path = tmp_path / "r.jsonl"
    lines = [recording.encode_line({"type": "header", "t": 1.0, "schema": recording.SCHEMA}),
             recording.encode_line({"type": "frame", "t": 2.0, "id": 1, "seq": 1}),
             recording.encode_line({"type": "frame", "t": 3.0, "id": 2, "seq": 2})[:20]]   # cut by a crash
    path.write_bytes(b"".join(lines))
    rec = recording.read_recording(path)
    assert [f["id"] for f in rec.frames] == [1] and rec.skipped_lines == 1
    (tmp_path / "other.jsonl").write_text('{"a": 1}\n')
    with pytest.raises(recording.RecordingError, match="not an adaptinf recording"):
        recording.read_recording(tmp_path / "other.jsonl")


def test_non_finite_values_are_written_as_null():
    assert b'"x":null' in recording.encode_line({"x": float("nan")})


def test_the_files_stay_within_max_bytes_and_every_record_reads_back(tmp_path):
    rec = FlightRecorder(tmp_path / "rec", max_bytes=1 << 20, max_age_s=3600, ring=100, record_frames=0.0,
                         header={"bundle": "b"}).start()
    for i in range(20_000):
        rec.frame(_job(i), _result())
        if i % 2000 == 0:
            time.sleep(0.05)            # let the writer keep up (the queue would drop, counted)
    rec.stop()
    files = list((tmp_path / "rec").glob("rec-*.jsonl"))
    total = sum(p.stat().st_size for p in files)
    assert total <= 1 << 20 and len(files) > 1                  # rotated, and the oldest deleted
    back = recording.read_recording(tmp_path / "rec")
    assert back.frames and back.frames[-1]["id"] == 19_999 and back.skipped_lines == 0
    seqs = [f["seq"] for f in back.frames]
    assert seqs == sorted(seqs) and rec.written + rec.dropped >= 20_000


def test_recording_never_blocks_a_frame_and_counts_what_it_drops(tmp_path, monkeypatch):
    monkeypatch.setattr(recorder_module, "QUEUE_CAPACITY", 10)
    rec = FlightRecorder(tmp_path / "rec", max_bytes=1 << 20, max_age_s=3600, ring=100, record_frames=0.0,
                         header={})            # not started: nothing drains the queue
    for i in range(25):
        rec.frame(_job(i), _result())
    assert rec.dropped == 15


def test_a_failing_disk_drops_records_not_frames(tmp_path, monkeypatch):
    rec = FlightRecorder(tmp_path / "rec", max_bytes=1 << 20, max_age_s=3600, ring=100, record_frames=0.0,
                         header={}).start()

    def full(self, batch):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(FlightRecorder, "_write", full)
    for i in range(50):
        rec.frame(_job(i), _result())
    time.sleep(0.6)
    assert rec.dropped >= 50 and rec.alive()
    rec.stop()


def test_sampled_frames_are_kept_hashed_and_named(tmp_path):
    rec = FlightRecorder(tmp_path / "rec", max_bytes=1 << 20, max_age_s=3600, ring=100, record_frames=1.0,
                         header={}).start()
    job = _job(1)
    job.frame = np.arange(12, dtype=np.uint8).reshape(1, 12)
    rec.frame(job, _result())
    rec.stop()
    frame = recording.read_recording(tmp_path / "rec").frames[0]
    saved = np.load(tmp_path / "rec" / "frames" / f"{frame['frame_sha256']}.npy")
    assert np.array_equal(saved, job.frame)


@pytest.fixture
def recorded_daemon(bundle, tmp_short):
    from adaptinf.cloud.worker import CloudWorker

    worker = CloudWorker(bundle, "tcp://127.0.0.1:*").start()
    host, port = worker.bound_endpoint.rsplit("//", 1)[1].rsplit(":", 1)
    shaper = LinkShaper((host, int(port)), LINK_PROFILES["3g"]).start()
    api = f"ipc://{tmp_short}/a.sock"
    daemon = Daemon(parse_config({"daemon": {"api_endpoint": api, "bundle": str(bundle.root),
                                             "state_dir": str(tmp_short), "warmup_runs": 2},
                                  "device": {"emulate_slowdown": 20.0},
                                  "cloud": {"endpoint": shaper.endpoint, "radio": "3g"}})).start()
    yield daemon, api, tmp_short
    daemon.stop()
    shaper.stop()
    worker.stop()


def test_a_recording_replays_to_the_same_choices_and_explains_them(recorded_daemon, glyph_frames, tmp_path, capsys):
    daemon, api, _ = recorded_daemon
    with Client(api) as c:
        start = c.request("record", {"after": 0, "limit": 1})[0]["newest"]
        for i in range(40):
            policy = ("split", "cloud-only", "RB2", "mobile-only")[i % 4]
            c.infer(glyph_frames.images[i:i + 1], policy=policy, goal=("latency", "energy")[i % 2],
                    deadline_ms=500)
        time.sleep(0.5)                                    # the writer's next round
        reply = c.request("record", {"after": start, "limit": 20_000})[0]
    out = tmp_path / "r.jsonl"
    flight._write(out, reply["header"], reply["profiles"], reply["lines"])
    rec = recording.read_recording(out)
    assert len(rec.frames) == 40
    result = flight.replay(rec)                            # each frame under its recorded policy and goal
    assert result.frames == 40 and result.agree == 40 and not result.differ
    assert result.uncertain < 40                           # the uploads rebuilt the link
    frame = rec.frames[0]
    flight.explain(rec, frame["id"])
    text = capsys.readouterr().out
    assert "<- chosen" in text and f"frame {frame['id']!r}" in text and "telemetry: uplink" in text
    split_all = flight.replay(rec, policy="split", goal="latency")
    reasons = [flight.why_differs(f, "split", "latency", False) for f, _, _ in split_all.differ]
    assert split_all.agree < 40 and all("recorded under" in r or "recorded for energy" in r for r in reasons), reasons
    flight.plot(rec, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_replayed_estimator_scores_the_recorded_uploads(recorded_daemon, glyph_frames):
    daemon, api, state = recorded_daemon
    with Client(api) as c:
        for i in range(15):
            c.infer(glyph_frames.images[i:i + 1], policy="cloud-only", deadline_ms=1000)
    time.sleep(1.2)
    score = flight.replay_estimator(recording.read_recording(state / "recordings"))
    assert score.uploads >= 10 and 0 <= score.median_error < 1.0


def test_record_cli_pulls_seconds_from_a_running_daemon(recorded_daemon, glyph_frames, tmp_path):
    from adaptinf.programs.cli import main as cli_main

    daemon, api, _ = recorded_daemon
    out = tmp_path / "pulled.jsonl"
    import threading

    def traffic():
        time.sleep(0.3)
        with Client(api) as c:
            for i in range(10):
                c.infer(glyph_frames.images[i:i + 1])
    t = threading.Thread(target=traffic)
    t.start()
    assert cli_main(["record", "--seconds", "1.5", "--out", str(out), "--endpoint", api]) == 0
    t.join()
    rec = recording.read_recording(out)
    assert len(rec.frames) >= 1 and rec.headers and all(str(f["profile"]) in rec.profiles for f in rec.frames)
    since = tmp_path / "since.jsonl"
    assert cli_main(["record", "--since", "10m", "--out", str(since), "--endpoint", api]) == 0
    assert len(recording.read_recording(since).frames) >= len(rec.frames)


def test_kill_9_loses_at_most_the_last_second(tmp_short):
    api = f"ipc://{tmp_short}/api.sock"
    config = write_daemon_config(tmp_short / "adaptinfd.toml",
                                 daemon={"api_endpoint": api, "bundle": str(DEMO_BUNDLE), "state_dir": str(tmp_short),
                                         "warmup_runs": 2}, power={"source": "none"})
    daemon = spawn_daemon(config)
    answered_at = []
    try:
        frame = np.zeros((1, 32, 32, 3), np.uint8)
        with Client(api) as c:
            end = time.monotonic() + 2.5
            while time.monotonic() < end:
                c.infer(frame, policy="mobile-only")
                answered_at.append(time.monotonic())
        time.sleep(1.3)                      # everything answered is more than a second old
        killed = time.monotonic()
        os.kill(daemon.process.pid, signal.SIGKILL)
        daemon.process.wait(10)
    finally:
        if daemon.process.poll() is None:
            daemon.process.kill()
    rec = recording.read_recording(tmp_short / "recordings")
    old_enough = sum(1 for t in answered_at if killed - t > 1.0)
    assert len(rec.frames) >= old_enough > 0


def test_a_record_that_cannot_be_made_costs_the_frame_nothing(tmp_path):
    rec = FlightRecorder(tmp_path / "rec", max_bytes=1 << 20, max_age_s=3600, ring=100, record_frames=0.0,
                         header={})
    broken = SimpleNamespace(id=1)         # no peer, no model: building its record raises
    rec.frame(broken, _result())           # and nothing leaves frame()
    rec.event("mode", {"unencodable": object()})
    assert rec.dropped == 2
