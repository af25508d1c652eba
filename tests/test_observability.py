"""`adaptinf status` for people, /metrics for Prometheus."""

import re
import urllib.error
import urllib.request

import pytest

from adaptinf.cli import main as cli_main
from adaptinf.client import Client
from adaptinf.cloud.worker import CloudWorker
from adaptinf.daemon.config import parse_config
from adaptinf.daemon.service import Daemon
from conftest import free_port

SAMPLE = re.compile(r'^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?[0-9.e+-]+$|^# (HELP|TYPE) ')


@pytest.fixture
def daemon_with_metrics(bundle, tmp_short):
    worker = CloudWorker(bundle, "tcp://127.0.0.1:*").start()
    port = free_port()
    config = parse_config({"daemon": {"api_endpoint": f"ipc://{tmp_short}/a.sock", "bundle": str(bundle.root),
                                      "state_dir": str(tmp_short), "warmup_runs": 3,
                                      "metrics_endpoint": f"127.0.0.1:{port}"},
                           "cloud": {"endpoint": worker.bound_endpoint}})
    daemon = Daemon(config).start()
    yield daemon, f"ipc://{tmp_short}/a.sock", port
    daemon.stop()
    worker.stop()


def test_prometheus_metrics_are_well_formed_and_count_frames(daemon_with_metrics, glyph_frames):
    daemon, api, port = daemon_with_metrics
    with Client(api) as c:
        for i in range(5):
            c.infer(glyph_frames.images[i:i + 1], policy="cloud-only")
        c.infer(glyph_frames.images[:1], policy="mobile-only")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    lines = [line for line in text.splitlines() if line]
    assert all(SAMPLE.match(line) for line in lines), [line for line in lines if not SAMPLE.match(line)]
    assert 'adaptinf_frames_total{placement="cloud"} 5.0' in lines
    assert 'adaptinf_frames_total{placement="device"} 1.0' in lines
    assert "adaptinf_link_up 1.0" in lines
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=5)


def test_status_reads_like_a_dashboard(daemon_with_metrics, glyph_frames, capsys):
    daemon, api, _ = daemon_with_metrics
    with Client(api) as c:
        c.infer(glyph_frames.images[:1], policy="cloud-only")
    assert cli_main(["status", "--endpoint", api]) == 0
    out = capsys.readouterr().out
    for heading in ("link      up", "cloud     up", "power     model", "latency   p50", "frames    cloud 1",
                    "replies   OK"):
        assert heading in out, out
    assert cli_main(["status", "--endpoint", api, "--json"]) == 0
    assert '"mode": "normal"' in capsys.readouterr().out


def test_metrics_are_off_by_default(bundle, tmp_short):
    daemon = Daemon(parse_config({"daemon": {"api_endpoint": f"ipc://{tmp_short}/b.sock",
                                             "bundle": str(bundle.root), "state_dir": str(tmp_short),
                                             "warmup_runs": 1}})).start()
    try:
        assert daemon.metrics is None
    finally:
        daemon.stop()
