"""Prometheus metrics over HTTP (off by default: [daemon].metrics_endpoint = "host:port").

The text exposition format (version 0.0.4), written by hand from the daemon's own
status and statistics; a standard-library HTTP server on its own thread, GET /metrics.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Exposition:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(self, name: str, kind: str, help_text: str, samples: list[tuple[dict, float]]) -> None:
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for labels, value in samples:
            tag = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{tag}}} {float(value)!r}" if tag else f"{name} {float(value)!r}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def render(status: dict, stats: dict) -> str:
    e = Exposition()
    e.metric("adaptinf_frames_total", "counter", "Frames answered, by where they ran.",
             [({"placement": k}, v) for k, v in sorted(stats["placements"].items())])
    e.metric("adaptinf_replies_total", "counter", "Replies sent, by code.",
             [({"code": k}, v) for k, v in sorted(stats["codes"].items())])
    e.metric("adaptinf_stage_seconds_total", "counter", "Time spent per stage of a frame.",
             [({"stage": k}, v["ns"] / 1e9) for k, v in stats["stages"].items()])
    e.metric("adaptinf_stage_count_total", "counter", "Frames that went through each stage.",
             [({"stage": k}, v["count"]) for k, v in stats["stages"].items()])
    e.metric("adaptinf_events_total", "counter", "Fallbacks, inline frames and dropped replies.",
             [({"event": k}, v) for k, v in sorted(stats["counters"].items())])
    e.metric("adaptinf_latency_seconds", "gauge", "Frame latency over the recent window.",
             [({"quantile": q[1:-3]}, v / 1e3) for q, v in status["latency"].items()])
    link, cloud, power = status["link"], status["cloud"], status["power"]
    e.metric("adaptinf_link_up", "gauge", "1 when the cloud link is up.", [({}, link["state"] == "up")])
    if link["uplink_bps"] is not None:
        e.metric("adaptinf_link_uplink_bits_per_second", "gauge", "Measured uplink bandwidth.",
                 [({}, link["uplink_bps"])])
    if link["rtt_ms"] is not None:
        e.metric("adaptinf_link_rtt_seconds", "gauge", "Measured round-trip time.", [({}, link["rtt_ms"] / 1e3)])
    e.metric("adaptinf_cloud_queue_depth", "gauge", "The cloud worker's reported queue depth.",
             [({}, cloud["queue_depth"])])
    e.metric("adaptinf_cloud_late_replies_total", "counter", "Cloud replies dropped after a fallback.",
             [({}, cloud["late_replies_dropped"])])
    e.metric("adaptinf_cloud_retries_total", "counter", "Cloud requests resent.", [({}, cloud["retries"])])
    e.metric("adaptinf_power_sensor_healthy", "gauge", "1 when a power sensor is read successfully.",
             [({}, bool(power.get("healthy")))])
    if power.get("power_w") is not None:
        e.metric("adaptinf_power_watts", "gauge", "Device power from the sensor.",
                 [({"sensor": power["sensor"]}, power["power_w"])])
    return e.text()


class MetricsServer:
    def __init__(self, endpoint: str, render_text: Callable[[], str]):
        host, _, port = endpoint.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"metrics_endpoint must be host:port, got {endpoint!r}")
        produce = render_text

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404, "only /metrics here")
                    return
                try:
                    body = produce().encode()
                except Exception as exc:  # never take the daemon down for a scrape
                    log.exception("metrics rendering failed")
                    self.send_error(500, str(exc))
                    return
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # scrapes are not news
                pass

        self._server = ThreadingHTTPServer((host, int(port)), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)

    def start(self) -> "MetricsServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
