"""Start-up warm-up: measure what the planner needs when no calibrated profile is given.

Device time of the full model and of every head (median of `runs`), the cloud's own
compute time of every tail and the full model (it times its engines: the `timing`
op), and the link (heartbeat RTTs and a few upload probes). Device power is the
configured model-based figure and the profile says so ("power_source": "model").
The result is a Profile in the documented format, written where the config says.
"""

from __future__ import annotations

import platform
import statistics
import time

import numpy as np
from tqdm import tqdm

from adaptinf.bundle import Bundle
from adaptinf.daemon.cloud_link import PROBE_BYTES, CloudError, CloudLink
from adaptinf.daemon.device_models import DeviceModels
from adaptinf.daemon.link_estimator import LinkEstimator
from adaptinf.engines import Engine
from adaptinf.profile import CLOUD_ONLY, MOBILE_ONLY, LinkProfile, PartitionProfile, Profile

LINK_PROBES = 3


def _median_ms(engine: Engine, x: np.ndarray, runs: int) -> float:
    engine.run(x)  # first run pays for allocations
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        engine.run(x)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e3


def measure_profile(bundle: Bundle, models: DeviceModels, link: CloudLink | None, estimator: LinkEstimator,
                    power_w: float, runs: int, progress: bool = False) -> Profile:
    frame = (np.random.default_rng(0).random(bundle.input.shape) * 255).astype(bundle.input.dtype)
    points = bundle.split.points if bundle.split else ()
    full = bundle.full_model
    steps = tqdm(total=1 + len(points) + 2, desc="warm-up", disable=not progress, leave=False)
    full_ms = _median_ms(models.full, frame, runs)
    steps.update()
    head_ms = {}
    for p in points:
        head_ms[p.name] = _median_ms(models.heads[p.name], frame, runs)
        steps.update()
    partitions = [PartitionProfile(MOBILE_ONLY, full_ms, power_w, 0.0, 0, full.accuracy)]
    link_profile = None
    if link is not None and link.up:
        cloud = _cloud_timings(link, runs)
        steps.update()
        link_profile = _measure_link(link, estimator)
        steps.update()
        if cloud:
            partitions.append(PartitionProfile(CLOUD_ONLY, 0.0, power_w, cloud["full"], bundle.input.nbytes,
                                               full.accuracy))
            partitions += [PartitionProfile(p.name, head_ms[p.name], power_w, cloud[p.name], p.upload_bytes,
                                            p.accuracy) for p in points if p.name in cloud]
    steps.close()
    return Profile(bundle=bundle.manifest_sha256, partitions=tuple(partitions), link=link_profile,
                   device={"host": platform.node(), "backend": models.backend, "power_source": "model",
                           "source": "adaptinfd warm-up", "measured_at": time.time()})


def _cloud_timings(link: CloudLink, runs: int) -> dict[str, float]:
    try:
        reply = link.call({"op": "timing", "runs": runs}, None, 30.0).wait(30.0)
    except CloudError:
        return {}
    timings = reply.header.get("timings") or {}
    return {name: t["median_s"] * 1e3 for name, t in timings.items()}


def _measure_link(link: CloudLink, estimator: LinkEstimator) -> LinkProfile | None:
    for _ in range(LINK_PROBES):
        try:
            link.call({"op": "probe"}, bytes(PROBE_BYTES), 10.0, upload_bytes=PROBE_BYTES).wait(10.0)
        except CloudError:
            break
    est = estimator.estimate()
    if est.uplink_bps is None or est.rtt_s is None:
        return None
    return LinkProfile(est.uplink_bps, est.rtt_s * 1e3)
