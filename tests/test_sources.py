"""`adaptinf infer`, `adaptinf stream` and `adaptinf perf` against a real adaptinfd, on the
shipped 224x224 bundle behind an emulated 100 ms device."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from adaptinf.programs.frame_sources import SourceError, open_source
from adaptinf.rig.processes import resident_mib, spawn_daemon, write_daemon_config
from conftest import REPO

pytestmark = pytest.mark.slow
BUNDLE = REPO / "bundles" / "glyphnet224"
cv2 = pytest.importorskip("cv2", reason="the `video` extra (opencv-python-headless) is not installed")


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "adaptinf", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """adaptinfd on glyphnet224 with its full model emulated at 100 ms (as the demo sets it)."""
    import statistics
    import tempfile

    from adaptinf.engines.onnxruntime_engine import OnnxRuntimeEngine

    engine = OnnxRuntimeEngine(BUNDLE / "full.onnx")
    frame = np.zeros((1, 224, 224, 3), np.uint8)
    host_ms = statistics.median(_timed(engine, frame) for _ in range(20))
    short = tempfile.mkdtemp(prefix="ai-")
    tmp = tmp_path_factory.mktemp("src")
    endpoint = f"ipc://{short}/api.sock"
    config = write_daemon_config(tmp / "d.toml", daemon={"api_endpoint": endpoint, "bundle": str(BUNDLE),
                                                          "state_dir": str(tmp), "warmup_runs": 3},
                                 device={"emulate_slowdown": max(1.0, 100.0 / host_ms)})
    service = spawn_daemon(config)
    yield endpoint, service
    service.stop()


def _timed(engine, frame) -> float:
    import time

    start = time.perf_counter()
    engine.run(frame)
    return (time.perf_counter() - start) * 1e3


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """10 s at 30 fps, 320x240, a bright bar moving over a changing grey."""
    path = tmp_path_factory.mktemp("video") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (320, 240))
    for i in range(300):
        frame = np.full((240, 320, 3), (i * 3) % 255, np.uint8)
        frame[60:180, (i * 2) % 260:(i * 2) % 260 + 60] = (255, 200, 40)
        writer.write(frame)
    writer.release()
    return path


def test_a_video_faster_than_the_device_is_answered_or_dropped_never_lost(daemon, video):
    endpoint, service = daemon
    before = resident_mib(service.process.pid)
    done = cli("stream", "--source", str(video), "--endpoint", endpoint, "--drop", "--in-flight", "2",
               "--summary-json")
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    summary = json.loads(done.stderr.strip().splitlines()[-1])["summary"]
    assert [r["frame"] for r in lines] == list(range(300))                  # each frame once, in order
    codes = {r["code"] for r in lines}
    assert codes <= {"OK", "DROPPED"}
    answered, dropped = sum(r["code"] == "OK" for r in lines), sum(r["code"] == "DROPPED" for r in lines)
    assert answered == summary["answered"] and dropped == summary["dropped"] and answered + dropped == 300
    assert 50 <= answered <= 200 and dropped >= 100          # a 100 ms device keeps up with ~10 of 30 fps
    assert 9.0 <= summary["seconds"] <= 20.0                 # the file's own rate, not as fast as it reads
    assert resident_mib(service.process.pid) - before < 40   # nothing queues without bound
    # without --drop the source waits instead: every frame answered, the file read slower
    slow = cli("stream", "--source", str(video), "--endpoint", endpoint, "--frames", "40", "--quiet",
               "--summary-json")
    summary = json.loads(slow.stderr.strip().splitlines()[-1])["summary"]
    assert summary["answered"] == 40 and summary["dropped"] == 0


def test_an_image_glob_streams_and_infer_prints_each_answer(daemon, tmp_path):
    from PIL import Image

    endpoint, _ = daemon
    for i in range(5):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (100 + i, 150, 3), dtype=np.uint8)).save(
            tmp_path / f"f{i}.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    done = cli("stream", "--source", str(tmp_path / "f*.png"), "--endpoint", endpoint, "--fps", "20")
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["code"] for line in done.stdout.splitlines()] == ["OK"] * 5
    infer = cli("infer", *(str(p) for p in sorted(tmp_path.glob("*.png"))), "--endpoint", endpoint, "--json")
    records = [json.loads(line) for line in infer.stdout.splitlines()]
    assert infer.returncode == 1                                  # one file was not an image
    assert [r["code"] for r in records] == ["UNREADABLE"] + ["OK"] * 5
    assert all("class" in r and "latency_ms" in r and "energy_j" in r for r in records[1:])
    assert "Traceback" not in infer.stderr


def test_perf_reports_each_step(daemon):
    endpoint, _ = daemon
    done = cli("perf", "--endpoint", endpoint, "--concurrency", "1,4", "--seconds", "1.5", "--json")
    assert done.returncode == 0, done.stderr
    steps = json.loads(done.stdout)["steps"]
    assert [s["concurrency"] for s in steps] == [1, 4]
    for s in steps:
        assert s["answered"] == s["sent"] > 0 and not s["errors"]
        assert s["latency_ms"]["p50"] <= s["latency_ms"]["p99"] and s["placements"]
    bad = cli("perf", "--endpoint", endpoint, "--concurrency", "0,x")
    assert bad.returncode == 2 and "positive numbers" in bad.stderr


def test_sources_that_cannot_be_read_are_named(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        open_source(str(tmp_path / "missing.mp4"))
    with pytest.raises(SourceError, match="matches no file"):
        open_source(str(tmp_path / "*.jpg"))
    with pytest.raises(SourceError, match="no such camera"):
        open_source("/dev/video99")
    (tmp_path / "junk.avi").write_bytes(b"junk")
    with pytest.raises(SourceError, match="cannot open it"):
        open_source(str(tmp_path / "junk.avi"))


def _loopback_camera() -> str | None:
    devices = sorted(p for p in Path("/dev").glob("video*"))
    names = [Path(f"/sys/class/video4linux/{d.name}/name").read_text().strip()
             for d in devices if Path(f"/sys/class/video4linux/{d.name}/name").exists()]
    for device, name in zip(devices, names):
        if "loopback" in name.lower() or "dummy" in name.lower():
            return str(device)
    return None


@pytest.mark.skipif(_loopback_camera() is None,
                    reason="no v4l2loopback device (modprobe v4l2loopback needs a kernel that allows it; "
                           "a sandboxed machine does not)")
def test_a_v4l2_camera_streams(daemon):
    endpoint, _ = daemon
    done = cli("stream", "--source", f"v4l2://{_loopback_camera()}", "--endpoint", endpoint, "--frames", "10")
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 10
    assert os.path.exists(_loopback_camera())
