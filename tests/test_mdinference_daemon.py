"""MDInference in adaptinfd: request duplication bounds every frame by its SLA, even when the
cloud stalls (a real cloud worker process, SIGSTOPped; real sockets)."""

import signal
import time

import pytest

from adaptinf.client import Client
from adaptinf.daemon.config import parse_config
from adaptinf.daemon.service import Daemon
from adaptinf.rig.processes import spawn_cloud
from conftest import DEMO_BUNDLE

pytestmark = pytest.mark.slow

SLA_MS = 150.0
CLOUD_TIMEOUT_MS = 2000.0


def test_duplication_answers_within_the_sla_when_the_cloud_stalls(tmp_short, glyph_frames):
    cloud = spawn_cloud(DEMO_BUNDLE)
    config = parse_config({"daemon": {"api_endpoint": f"ipc://{tmp_short}/a.sock", "bundle": str(DEMO_BUNDLE),
                                      "state_dir": str(tmp_short), "warmup_runs": 3},
                           "cloud": {"endpoint": cloud.endpoint, "timeout_ms": CLOUD_TIMEOUT_MS}})
    daemon = Daemon(config).start()
    frames = glyph_frames.images
    try:
        with Client(f"ipc://{tmp_short}/a.sock", timeout_s=10) as c:
            healthy = [c.infer(frames[i:i + 1], policy="mdinference", deadline_ms=SLA_MS) for i in range(10)]
            cloud.process.send_signal(signal.SIGSTOP)          # the cloud stalls: nothing comes back
            stalled, observed = [], []
            for i in range(10, 30):
                start = time.monotonic()
                stalled.append(c.infer(frames[i:i + 1], policy="mdinference", deadline_ms=SLA_MS))
                observed.append((time.monotonic() - start) * 1e3)
            private = c.infer(frames[:1], policy="mdinference", deadline_ms=SLA_MS, mode="private")
    finally:
        cloud.process.send_signal(signal.SIGCONT)
        daemon.stop()
        cloud.stop()
    assert all(r.served_by["placement"] == "duplicate" for r in healthy)
    assert sum(r.served_by["answered_by"] == "cloud" for r in healthy) >= 8   # a healthy cloud answers
    # stalled: sent to the cloud and answered by the device's duplicate at the SLA, until the
    # link's heartbeats declare the cloud down; from then on the plan is the device alone
    duplicated = [r for r in stalled if r.served_by["placement"] == "duplicate"]
    assert len(duplicated) >= 3 and all(r.served_by["answered_by"] == "device" for r in duplicated)
    assert all(r.served_by["placement"] in ("duplicate", "device") for r in stalled)
    # answered at the SLA, not at the 2 s cloud timeout. The bound is the behaviour (SLA vs timeout),
    # with room for a loaded CI machine: no tight timing threshold in a unit test.
    assert all(r.latency_ms["total"] < CLOUD_TIMEOUT_MS / 2 for r in healthy + stalled)  # the daemon's clock
    assert max(observed) < CLOUD_TIMEOUT_MS / 2                                           # the client's
    assert private.served_by["placement"] == "device"                          # private: no duplicate sent
