"""Prometheus metrics through prometheus_client (off by default: [daemon].metrics_endpoint = "host:port").

Each daemon has its own registry. One vocabulary for every label:
- `model`: the served model's name (a daemon serves several);
- `placement`: where the answer was computed: device, cloud, split, mcu, or a seed system's
  kind (duplicate, multiplex, speculate, minions); a frame that fell back from the cloud
  ran on the device, so it counts as `device` (and in adaptinf_fallbacks_total);
- `partition`: the partition the plan chose (mobile-only, cloud-only, RB1, ...).

Observed as frames are answered: frames, fallbacks and deadline misses (counters), latency
(a histogram: buckets sum across devices, so a fleet's p99 is
`histogram_quantile(0.99, sum by (le) (rate(adaptinf_frame_latency_seconds_bucket[5m])))`)
and energy. Read at scrape time: replies per code, stage times, frames in flight, link,
cloud, power, jtop's GPU load and temperatures on a Jetson, process metrics and build info.
The `_created` series are off (disable_created_metrics): they double the series for
nothing a dashboard uses.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
from socketserver import ThreadingMixIn
from typing import Callable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (CollectorRegistry, Counter, Histogram, Info, ProcessCollector,
                               disable_created_metrics, make_wsgi_app)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from adaptinf.daemon.status import DaemonStatus

log = logging.getLogger(__name__)

# Seconds: from a 1 ms device frame to a cloud frame over a bad 3G link.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)


class FrameMetrics:
    """Observed once per answered frame, on the thread that answers it."""

    def __init__(self, registry: CollectorRegistry):
        self.frames = Counter("adaptinf_frames", "Frames answered OK, by model, where they ran and the partition "
                              "planned.", ["model", "placement", "partition"], registry=registry)
        self.fallbacks = Counter("adaptinf_fallbacks", "Frames planned for the cloud and finished on the device.",
                                 ["model", "partition"], registry=registry)
        self.misses = Counter("adaptinf_deadline_misses", "Frames answered after their deadline, or refused "
                              "with DEADLINE_EXCEEDED.", ["model"], registry=registry)
        self.latency = Histogram("adaptinf_frame_latency_seconds", "Frame latency, request received to answer.",
                                 ["model", "placement"], buckets=LATENCY_BUCKETS, registry=registry)
        self.energy = Counter("adaptinf_frame_energy_joules", "Device energy spent on answered frames.",
                              ["model", "source"], registry=registry)
        # each label set's children, kept: labels() takes a lock and builds its key on every
        # call, and this runs once per frame (the label values are few)
        self._children: dict[tuple, tuple] = {}

    def observe(self, model: str, placement: str, partition: str | None, fallback: bool, latency_s: float,
                late: bool, energy_j: float, energy_source: str) -> None:
        if fallback:
            placement = "device"
        key = (model, placement, partition, fallback, energy_source)
        children = self._children.get(key)
        if children is None:
            part = partition or ""
            children = self._children[key] = (
                self.frames.labels(model, placement, part), self.latency.labels(model, placement),
                self.energy.labels(model, energy_source.split(":")[0].split("+")[0]),
                self.fallbacks.labels(model, part) if fallback else None, self.misses.labels(model))
        frames, latency, energy, fallbacks, misses = children
        frames.inc()
        latency.observe(latency_s)
        if energy_j > 0:
            energy.inc(energy_j)
        if fallbacks is not None:
            fallbacks.inc()
        if late:
            misses.inc()

    def missed(self, model: str) -> None:
        """A frame refused with DEADLINE_EXCEEDED."""
        self.misses.labels(model).inc()


class DaemonCollector(Collector):
    """The daemon's own counters and gauges, read from status and statistics per scrape."""

    def __init__(self, status: Callable[[], DaemonStatus], stats: Callable[[], dict], in_flight: Callable[[], int]):
        self._status, self._stats, self._in_flight = status, stats, in_flight

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

        yield counter("adaptinf_replies", "Replies sent, by code.", "code", sorted(stats["codes"].items()))
        yield counter("adaptinf_stage_seconds", "Time spent per stage of a frame.", "stage",
                      [(k, v["ns"] / 1e9) for k, v in stats["stages"].items()])
        yield counter("adaptinf_stage_frames", "Frames that went through each stage.", "stage",
                      [(k, v["count"]) for k, v in stats["stages"].items()])
        yield counter("adaptinf_events", "Fallbacks, inline frames, dropped replies.", "event",
                      sorted(stats["counters"].items()))
        link, cloud, power, device = status.link, status.cloud, status.power, status.device
        yield gauge("adaptinf_frames_in_flight", "Frames received and not yet answered.", self._in_flight())
        yield gauge("adaptinf_link_up", "1 when the cloud link is up.", float(link.state == "up"))
        # the link's estimates only while it is up: a down link's last value would read as current
        if link.state == "up" and link.uplink_bps is not None:
            yield gauge("adaptinf_link_uplink_bits_per_second", "Measured uplink bandwidth.", link.uplink_bps)
        if link.state == "up" and link.rtt_s is not None:
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
        board = device.board or {}
        if board.get("gpu_load_percent") is not None:     # jtop, on a Jetson
            yield gauge("adaptinf_gpu_load_ratio", "GPU load as jtop reads it (0-1).", board["gpu_load_percent"] / 100)
        temperatures = board.get("temperatures_c") or {}
        if temperatures:
            family = GaugeMetricFamily("adaptinf_temperature_celsius", "Thermal zones as jtop reads them.",
                                       labels=["zone"])
            for zone, celsius in sorted(temperatures.items()):
                family.add_metric([zone], celsius)
            yield family


def make_registry(status: Callable[[], DaemonStatus], stats: Callable[[], dict], in_flight: Callable[[], int],
                  build: dict[str, str]) -> tuple[CollectorRegistry, FrameMetrics]:
    disable_created_metrics()
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    Info("adaptinf_build", "adaptinf's version and the bundle it serves.", registry=registry).info(build)
    registry.register(DaemonCollector(status, stats, in_flight))
    return registry, FrameMetrics(registry)


# /metrics is scraped by one Prometheus every few seconds: a handful of connections is plenty,
# and one that sends nothing is closed, so idle peers cannot pin a thread each
MAX_METRICS_CONNECTIONS = 8
METRICS_IDLE_TIMEOUT_S = 5.0


class _QuietHandler(WSGIRequestHandler):
    timeout = METRICS_IDLE_TIMEOUT_S        # socketserver sets it on the connection

    def log_message(self, format, *args):   # noqa: A002 (the stdlib's signature)
        pass


class _BoundedServer(ThreadingMixIn, WSGIServer):
    """One thread per connection, at most MAX_METRICS_CONNECTIONS at once: beyond that a new
    connection is closed at once and counted."""

    daemon_threads = True

    def __init__(self, *args, **kwargs):
        self.slots = threading.BoundedSemaphore(MAX_METRICS_CONNECTIONS)
        self.refused = 0
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address):
        if not self.slots.acquire(blocking=False):
            self.refused += 1
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def handle_error(self, request, client_address):
        # an idle peer timed out or hung up: expected, and no traceback on stderr
        log.debug("/metrics connection from %s ended: %s", client_address, sys.exc_info()[1])

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class MetricsServer:
    """prometheus_client's WSGI exposition of one registry on host:port, with bounded threads
    and an idle timeout (start_http_server has neither)."""

    def __init__(self, endpoint: str, registry: CollectorRegistry):
        host, _, port = endpoint.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"metrics_endpoint must be host:port, got {endpoint!r}")
        self._address = (host, int(port))
        self._registry = registry
        self._server: _BoundedServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> "MetricsServer":
        server_class = _BoundedServer
        if ":" in self._address[0]:
            server_class = type("_BoundedServer6", (_BoundedServer,), {"address_family": socket.AF_INET6})
        self._server = make_server(self._address[0], self._address[1], make_wsgi_app(self._registry),
                                   server_class, handler_class=_QuietHandler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)
        self._thread.start()
        log.info("Prometheus metrics at http://%s:%d/metrics", self._address[0], self.port)
        return self

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def refused(self) -> int:
        return self._server.refused if self._server is not None else 0

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
