"""The device/cloud multiplexer (paper 001) in adaptinfd: a real cloud worker, real sockets.

The bundle is the tiny build of conftest's mux_build with its trained pair multiplexer
replaced by a known rule (bright frames to the cloud, dark ones to the device), so that
both sides are exercised deterministically; the trained multiplexer is tested in
test_multiplexer.py.
"""

import json
import shutil
import signal

import numpy as np
import onnxruntime as ort
import pytest
import torch

from adaptinf.bundle import write_manifest
from adaptinf.client import ApiFailure, Client
from adaptinf.daemon.config import parse_config
from adaptinf.daemon.service import Daemon, StartupError
from adaptinf.rig.processes import spawn_cloud
from adaptinf.toolchain.onnx_export import export_onnx
from conftest import DEMO_BUNDLE

pytestmark = pytest.mark.slow


class BrightToCloud(torch.nn.Module):
    """w = softmax([0, (mean pixel - 128) / 4]): bright frames go to the cloud."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = (x.float().mean(dim=(1, 2, 3)) - 128.0) / 4.0
        return torch.softmax(torch.stack([torch.zeros_like(score), score], 1), 1)


@pytest.fixture(scope="module")
def rule_bundle(mux_build, tmp_path_factory):
    out = tmp_path_factory.mktemp("muxrule") / "bundle"
    shutil.copytree(mux_build[0], out)
    export_onnx(BrightToCloud(), torch.zeros(1, 32, 32, 3, dtype=torch.uint8), out / "multiplexer_pair.onnx",
                "image", "weights")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["multiplexer"]["pair"]["threshold"] = 0.5          # the paper's, for the known rule
    write_manifest(out, manifest)
    return out


def frames(brightness: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(brightness + rng.integers(-20, 20, (n, 1, 32, 32, 3)), 0, 255).astype(np.uint8)


def reference(bundle, name, frame) -> np.ndarray:
    session = ort.InferenceSession(str(bundle / f"{name}.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"image": frame})[0].reshape(-1).astype(np.float64)
    e = np.exp(logits - logits.max())
    return e / e.sum()


def daemon_config(bundle, tmp, cloud=None, policy="multiplexer"):
    raw = {"daemon": {"api_endpoint": f"ipc://{tmp}/a.sock", "bundle": str(bundle), "state_dir": str(tmp),
                      "warmup_runs": 2},
           "policy": {"name": policy}}
    if cloud is not None:
        raw["cloud"] = {"endpoint": cloud.endpoint, "timeout_ms": 1000.0}
    return parse_config(raw)


def test_each_frame_goes_where_the_multiplexer_says_and_gets_that_models_answer(rule_bundle, tmp_short):
    cloud = spawn_cloud(rule_bundle)
    daemon = Daemon(daemon_config(rule_bundle, tmp_short, cloud)).start()
    bright, dark = frames(220, 4, 0), frames(30, 4, 1)
    try:
        with Client(f"ipc://{tmp_short}/a.sock", timeout_s=10) as c:
            to_cloud = [c.infer(f) for f in bright]
            local = [c.infer(f) for f in dark]
            private = c.infer(bright[0], mode="private")
            mission = c.infer(dark[0], mode="mission-critical")
            cloud.process.send_signal(signal.SIGSTOP)          # the cloud stalls
            stalled = c.infer(bright[1], deadline_ms=400)
            stats = c.stats()
    finally:
        cloud.process.send_signal(signal.SIGCONT)
        daemon.stop()
        cloud.stop()
    for r, f in zip(to_cloud, bright):
        s = r.served_by
        assert s["placement"] == "multiplex" and s["wants"] == "cloud" and s["answered_by"] == "cloud"
        assert s["w"][1] > 0.5 and sum(s["w"]) == pytest.approx(1.0, abs=1e-3)
        assert set(s["predicted_side_ms"]) == {"cloud", "device"}     # eq. 11 and eq. 12, per frame
        assert s["upload_bytes"] == f.nbytes
        assert np.allclose(r.scores, reference(rule_bundle, "pool_w16", f), atol=1e-4)
    for r, f in zip(local, dark):
        assert r.served_by["wants"] == "device" and r.served_by["answered_by"] == "device"
        assert "mux" in r.latency_ms and "network" not in r.latency_ms and r.served_by["upload_bytes"] == 0
        assert np.allclose(r.scores, reference(rule_bundle, "pool_w8", f), atol=1e-4)
    # private: the multiplexer would send it, but the frame stays on the device's small model
    assert private.served_by["wants"] == "cloud" and private.served_by["answered_by"] == "device"
    assert private.served_by["device_reason"] == "private mode"
    assert np.allclose(private.scores, reference(rule_bundle, "pool_w8", bright[0]), atol=1e-4)
    # mission-critical: the most accurate model even for a frame the multiplexer would keep local
    assert mission.served_by["placement"] == "cloud" and mission.served_by["policy"] == "multiplexer"
    assert np.allclose(mission.scores, reference(rule_bundle, "pool_w16", dark[0]), atol=1e-4)
    # a stalled cloud: the frame still gets one answer, the small model's, within its deadline
    assert stalled.served_by["answered_by"] == "device" and stalled.served_by["fallback"]
    assert np.allclose(stalled.scores, reference(rule_bundle, "pool_w8", bright[1]), atol=1e-4)
    assert stats["stages"]["mux"]["count"] >= 10


def test_multiplexer_policy_needs_a_multiplexer_bundle(tmp_short):
    with pytest.raises(StartupError, match="no multiplexer"):
        Daemon(daemon_config(DEMO_BUNDLE, tmp_short)).start()
    daemon = Daemon(daemon_config(DEMO_BUNDLE, tmp_short, policy="split")).start()
    try:
        with Client(f"ipc://{tmp_short}/a.sock", timeout_s=10) as c:
            with pytest.raises(ApiFailure, match="multiplexer") as failure:
                c.infer(frames(100, 1, 0)[0], policy="multiplexer")
            assert failure.value.code == "NOT_FOUND"
    finally:
        daemon.stop()
