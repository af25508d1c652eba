"""`adaptinf status` for people, /metrics for Prometheus."""

import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from adaptinf.programs.cli import main as cli_main
from adaptinf.client import Client
from adaptinf.cloud.worker import CloudWorker
from adaptinf.daemon.config import parse_config
from adaptinf.daemon.service import Daemon
from conftest import free_port

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


def scrape(port: int) -> dict:
    """/metrics parsed by prometheus_client's own parser: {sample name: [(labels, value)]}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    samples: dict = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples, name, **labels):
    return sum(v for got, v in samples.get(name, []) if all(got.get(k) == x for k, x in labels.items()))


def test_prometheus_metrics_parse_and_count_frames(daemon_with_metrics, glyph_frames):
    daemon, api, port = daemon_with_metrics
    with Client(api) as c:
        for i in range(5):
            c.infer(glyph_frames.images[i:i + 1], policy="cloud-only")
        c.infer(glyph_frames.images[:1], policy="mobile-only")
    m = scrape(port)
    assert value(m, "adaptinf_frames_total", model="glyphnet", placement="cloud", partition="cloud-only") == 5
    assert value(m, "adaptinf_frames_total", model="glyphnet", placement="device", partition="mobile-only") == 1
    # one vocabulary: the histogram's placements are the counter's
    assert {lb["placement"] for lb, _ in m["adaptinf_frame_latency_seconds_count"]} == {"cloud", "device"}
    assert value(m, "adaptinf_frame_latency_seconds_count", model="glyphnet", placement="cloud") == 5
    assert value(m, "adaptinf_frames_in_flight") == 0 and "adaptinf_deadline_misses_total" in m
    assert not [name for name in m if name.endswith("_created")]
    assert value(m, "adaptinf_link_up") == 1
    assert value(m, "adaptinf_frame_latency_seconds_count") == 6                      # a histogram...
    assert value(m, "adaptinf_frame_latency_seconds_bucket", le="+Inf") == 6
    assert value(m, "adaptinf_frame_energy_joules_total") > 0                         # ...an energy counter
    assert "adaptinf_cloud_reconnects_total" in m and value(m, "process_resident_memory_bytes") > 0
    assert m["adaptinf_build_info"][0][0]["bundle"] == "glyphnet"


def test_the_latency_histogram_aggregates_across_two_daemons(bundle, tmp_short, glyph_frames):
    """Buckets add up: the fleet's distribution is the sum of the devices' (what PromQL's
    sum by (le) does), which quantile gauges could never give."""
    daemons, ports = [], []
    try:
        for name, frames in (("a", 3), ("b", 5)):
            ports.append(free_port())
            daemons.append(Daemon(parse_config({"daemon": {
                "api_endpoint": f"ipc://{tmp_short}/{name}.sock", "bundle": str(bundle.root),
                "state_dir": str(tmp_short / name), "warmup_runs": 1,
                "metrics_endpoint": f"127.0.0.1:{ports[-1]}"}})).start())
            with Client(f"ipc://{tmp_short}/{name}.sock") as c:
                for i in range(frames):
                    c.infer(glyph_frames.images[i:i + 1])
        scrapes = [scrape(p) for p in ports]
    finally:
        for d in daemons:
            d.stop()
    buckets = {}
    for m in scrapes:
        for labels, v in m["adaptinf_frame_latency_seconds_bucket"]:
            buckets[labels["le"]] = buckets.get(labels["le"], 0) + v
    assert buckets["+Inf"] == 8                                                       # 3 + 5 frames
    ordered = sorted(buckets.items(), key=lambda kv: float(kv[0]))
    assert all(a[1] <= b[1] for a, b in zip(ordered, ordered[1:]))                    # still cumulative
    assert sum(value(m, "adaptinf_frame_latency_seconds_sum") for m in scrapes) > 0


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


def test_status_shows_the_board_as_jtop_does(capsys):
    """jtop's own dict shapes (jetson-stats 4.x: stats, gpu, board), as a Jetson Orin reports them."""
    from adaptinf.programs.cli import render_status
    from adaptinf.drivers.jetson_board import snapshot_from_jtop

    board = snapshot_from_jtop(
        {"GPU": 37.0, "Temp CPU": 48.5, "Temp GPU": 47.25, "Temp CV0": -256, "nvp model": "MAXN",
         "jetson_clocks": "OFF", "Power TOT": 9120},
        {"gpu": {"freq": {"cur": 1020000, "max": 1300500}, "status": {"load": 37.0}}},
        {"hardware": {"Model": "NVIDIA Jetson AGX Orin Developer Kit"}})
    assert board["temperatures_c"] == {"CPU": 48.5, "GPU": 47.25}       # CV0 offline: left out
    assert board["clocks_mhz"] == {"GPU gpu": 1020.0} and board["power_mode"] == "MAXN"
    status = {"mode": "normal", "policy": "split", "goal": "latency", "bundle": {"name": "b", "sha256": "0" * 64},
              "profile": "p", "uptime_s": 1.0,
              "link": {"state": "up", "uplink_bps": 5e6, "uplink_bps_std": 0.0, "rtt_ms": 10.0, "rtt_ms_std": 0.0,
                       "radio": "4g"},
              "power": {"model_compute_power_w": 5.0},
              "cloud": {"state": "up", "queue_depth": 0, "service_ms": 1.0, "time_vs_profile": 1.0, "retries": 0,
                        "reconnects": 0, "late_replies_dropped": 0},
              "device": {"backend": "tensorrt", "time_vs_profile": 1.1, "queue_depth": 0, "busy_workers": 0,
                         "board": board},
              "latency": {}}
    text = render_status(status, {"placements": {}, "codes": {}})
    assert "jetson    NVIDIA Jetson AGX Orin Developer Kit  power mode MAXN  GPU 37%" in text
    assert "CPU 48°C" in text and "GPU gpu 1020 MHz" in text
    assert "slowdown" not in text and "compute x1.10 of profile" in text


def test_a_fallback_counts_where_it_ran_and_a_down_link_shows_no_estimate(bundle, tmp_short, glyph_frames):
    """A frame planned for the cloud that finished on the device counts under device, and as a
    fallback; with the link down, its last bandwidth estimate is not exported as current."""
    worker = CloudWorker(bundle, "tcp://127.0.0.1:*").start()
    port = free_port()
    api = f"ipc://{tmp_short}/f.sock"
    daemon = Daemon(parse_config({"daemon": {"api_endpoint": api, "bundle": str(bundle.root),
                                             "state_dir": str(tmp_short), "warmup_runs": 1,
                                             "metrics_endpoint": f"127.0.0.1:{port}"},
                                  "cloud": {"endpoint": worker.bound_endpoint}})).start()
    try:
        with Client(api) as c:
            c.infer(glyph_frames.images[:1], policy="cloud-only")
            assert "adaptinf_link_uplink_bits_per_second" in scrape(port)
            worker.stop()                                   # the cloud goes away
            deadline = time.monotonic() + 15
            while c.status()["link"]["state"] == "up" and time.monotonic() < deadline:
                time.sleep(0.1)
            reply = c.infer(glyph_frames.images[:1], policy="cloud-only", deadline_ms=2000)
            m = scrape(port)
    finally:
        daemon.stop()
    assert reply.served_by.fallback
    assert value(m, "adaptinf_frames_total", placement="device", partition="cloud-only") == 1
    assert value(m, "adaptinf_frames_total", placement="cloud", partition="cloud-only") == 1
    assert value(m, "adaptinf_fallbacks_total", model="glyphnet", partition="cloud-only") == 1
    assert value(m, "adaptinf_link_up") == 0
    assert "adaptinf_link_uplink_bits_per_second" not in m and "adaptinf_link_rtt_seconds" not in m


def test_jtop_gpu_load_and_temperatures_are_exported():
    from types import SimpleNamespace

    from adaptinf.daemon.metrics import DaemonCollector

    link = SimpleNamespace(state="down", uplink_bps=4.86e9, rtt_s=0.01)
    cloud = SimpleNamespace(queue_depth=0, reconnects=0, retries=0, late_replies_dropped=0)
    board = {"gpu_load_percent": 42.0, "temperatures_c": {"gpu": 51.5, "cpu": 48.0}}
    status = SimpleNamespace(link=link, cloud=cloud, power={"healthy": False},
                             device=SimpleNamespace(queue_depth=0, board=board))
    stats = {"codes": {}, "stages": {}, "counters": {}}
    families = {f.name: f for f in DaemonCollector(lambda: status, lambda: stats, lambda: 3).collect()}
    assert families["adaptinf_gpu_load_ratio"].samples[0].value == pytest.approx(0.42)
    assert {s.labels["zone"]: s.value for s in families["adaptinf_temperature_celsius"].samples} == \
        {"gpu": 51.5, "cpu": 48.0}
    assert families["adaptinf_frames_in_flight"].samples[0].value == 3
    assert "adaptinf_link_uplink_bits_per_second" not in families


def test_idle_connections_to_metrics_do_not_pin_a_thread_each(daemon_with_metrics):
    """300 idle connections took the daemon from 12 to 312 threads: now at most
    MAX_METRICS_CONNECTIONS handler threads, and a scrape still gets through once they time out."""
    import socket
    import threading

    from adaptinf.daemon.metrics import MAX_METRICS_CONNECTIONS

    daemon, _, port = daemon_with_metrics
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(60)]
    try:
        time.sleep(0.5)                          # let the server accept them all
        handlers = [t for t in threading.enumerate() if "process_request" in t.name]
        assert 0 < len(handlers) <= MAX_METRICS_CONNECTIONS
        assert daemon.metrics.refused > 0           # beyond the slots: closed at once (the rest wait in the backlog)
        deadline = time.monotonic() + 15         # the idle ones time out, then a scrape is served
        while time.monotonic() < deadline:
            try:
                if "adaptinf_link_up" in scrape(port):
                    break
            except OSError:
                time.sleep(0.2)
        assert "adaptinf_link_up" in scrape(port)
    finally:
        for s in idle:
            s.close()
    assert daemon.health_problem() is None
