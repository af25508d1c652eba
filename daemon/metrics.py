"""Prometheus metrics through prometheus_client (off by default: [daemon].metrics_endpoint = "host:port").

Each daemon has its own registry:
- frame latency as a histogram (buckets sum across devices, so a fleet's p99 is
  `histogram_quantile(0.99, sum by (le) (rate(adaptinf_frame_latency_seconds_bucket[5m])))`),
  and an energy counter, both observed as frames are answered;
- what the daemon already counts (frames per placement, replies per code, stage
  times, link, cloud, power), read from its status and statistics at scrape time;
- process metrics (CPU, RSS, open fds) and build info.
"""

from __future__ import annotations

import logging
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, Info, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from adaptinf.daemon.status import DaemonStatus

log = logging.getLogger(__name__)

# Seconds: from a 1 ms device frame to a cloud frame over a bad 3G link.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)


class FrameMetrics:
    """Observed once per answered frame, on the thread that answers it."""

    def __init__(self, registry: CollectorRegistry):
        self.latency = Histogram("adaptinf_frame_latency_seconds", "Frame latency, request received to answer.",
                                 ["placement"], buckets=LATENCY_BUCKETS, registry=registry)
        self.energy = Counter("adaptinf_frame_energy_joules", "Device energy spent on answered frames.",
                              ["source"], registry=registry)

        # each label value's child, kept: labels() takes a lock and builds its key on every call,
        # and this runs once per frame (the values are few: placements, energy sources)
        self._latency_of: dict[str, object] = {}
        self._energy_of: dict[str, object] = {}

    def observe(self, placement: str, latency_s: float, energy_j: float, energy_source: str) -> None:
        latency = self._latency_of.get(placement)
        if latency is None:
            latency = self._latency_of[placement] = self.latency.labels(placement=placement)
        latency.observe(latency_s)
        if energy_j > 0:
            energy = self._energy_of.get(energy_source)
            if energy is None:
                energy = self._energy_of[energy_source] = self.energy.labels(
                    source=energy_source.split(":")[0].split("+")[0])
            energy.inc(energy_j)


class DaemonCollector(Collector):
    """The daemon's own counters and gauges, read from status and statistics per scrape."""

    def __init__(self, status: Callable[[], DaemonStatus], stats: Callable[[], dict]):
        self._status, self._stats = status, stats

    def collect(self):
        status, stats = self._status(), self._stats()

        def counter(name, doc, label, items):
            family = CounterMetricFamily(name, doc, labels=[label] if label else [])
            for key, value in items:
                family.add_metric([key] if label else [], value)
            return family

        def gauge(name, doc, value, labels=None):
            family = GaugeMetricFamily(name, doc, labels=list(labels or {}))
            family.add_metric(list((labels or {}).values()), value)
            return family

        yield counter("adaptinf_frames", "Frames answered, by where they ran.", "placement",
                      sorted(stats["placements"].items()))
        yield counter("adaptinf_replies", "Replies sent, by code.", "code", sorted(stats["codes"].items()))
        yield counter("adaptinf_stage_seconds", "Time spent per stage of a frame.", "stage",
                      [(k, v["ns"] / 1e9) for k, v in stats["stages"].items()])
        yield counter("adaptinf_stage_frames", "Frames that went through each stage.", "stage",
                      [(k, v["count"]) for k, v in stats["stages"].items()])
        yield counter("adaptinf_events", "Fallbacks, inline frames, dropped replies.", "event",
                      sorted(stats["counters"].items()))
        link, cloud, power, device = status.link, status.cloud, status.power, status.device
        yield gauge("adaptinf_link_up", "1 when the cloud link is up.", float(link.state == "up"))
        if link.uplink_bps is not None:
            yield gauge("adaptinf_link_uplink_bits_per_second", "Measured uplink bandwidth.", link.uplink_bps)
        if link.rtt_s is not None:
            yield gauge("adaptinf_link_rtt_seconds", "Measured round-trip time.", link.rtt_s)
        yield gauge("adaptinf_cloud_queue_depth", "The cloud worker's reported queue depth.", cloud.queue_depth)
        yield counter("adaptinf_cloud_reconnects", "Cloud link reconnections.", None, [(None, cloud.reconnects)])
        yield counter("adaptinf_cloud_retries", "Cloud requests resent.", None, [(None, cloud.retries)])
        yield counter("adaptinf_cloud_late_replies", "Cloud replies dropped after a fallback.", None,
                      [(None, cloud.late_replies_dropped)])
        yield gauge("adaptinf_device_queue_depth", "Frames waiting for a frame worker.", device.queue_depth)
        yield gauge("adaptinf_power_sensor_healthy", "1 when a power sensor is read successfully.",
                    float(bool(power.get("healthy"))))
        if power.get("power_w") is not None:
            yield gauge("adaptinf_power_watts", "Device power from the sensor.", power["power_w"],
                        {"sensor": power["sensor"]})


def make_registry(status: Callable[[], DaemonStatus], stats: Callable[[], dict], build: dict[str, str]
                  ) -> tuple[CollectorRegistry, FrameMetrics]:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    Info("adaptinf_build", "adaptinf's version and the bundle it serves.", registry=registry).info(build)
    registry.register(DaemonCollector(status, stats))
    return registry, FrameMetrics(registry)


class MetricsServer:
    """prometheus_client's own HTTP exposition of one registry on host:port."""

    def __init__(self, endpoint: str, registry: CollectorRegistry):
        host, _, port = endpoint.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"metrics_endpoint must be host:port, got {endpoint!r}")
        self._address = (host, int(port))
        self._registry = registry
        self._server = None

    def start(self) -> "MetricsServer":
        self._server, _ = start_http_server(self._address[1], self._address[0], registry=self._registry)
        self.port = self._server.server_address[1]
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
