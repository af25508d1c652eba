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
from adaptinf.calib import measure
from adaptinf.daemon.cloud_link import CloudLink
from adaptinf.daemon.device_models import DeviceModels
from adaptinf.daemon.link_estimator import LinkEstimator
from adaptinf.profile import CLOUD_ONLY, MOBILE_ONLY, LinkProfile, PartitionProfile, Profile

LINK_PROBES = 3


def median_ms(engine, spec, runs: int) -> float:
    """One engine's median time on a frame of the bundle's input spec (the speculative
    policies' little models and Minions: the profile times only the full model)."""
    frame = (np.random.default_rng(0).random(spec.shape) * 255).astype(spec.dtype)
    return statistics.median(measure.time_engine(engine, frame, runs, warmup=1))


def measure_profile(bundle: Bundle, models: DeviceModels, link: CloudLink | None, estimator: LinkEstimator,
                    power_w: float, runs: int, progress: bool = False) -> Profile:
    frame = (np.random.default_rng(0).random(bundle.input.shape) * 255).astype(bundle.input.dtype)
    points = bundle.split.points if bundle.split else ()
    full = bundle.full_model
    steps = tqdm(total=1 + len(points) + 2, desc="warm-up", disable=not progress, leave=False)
    full_ms = statistics.median(measure.time_engine(models.full, frame, runs, warmup=1))
    steps.update()
    head_ms = {}
    for p in points:
        head_ms[p.name] = statistics.median(measure.time_engine(models.heads[p.name], frame, runs, warmup=1))
        steps.update()
    partitions = [PartitionProfile(MOBILE_ONLY, full_ms, power_w, 0.0, 0, full.accuracy)]
    link_profile = None
    if link is not None and link.up:
        # the same measurements as adaptinf-calib; a cloud that fails them leaves mobile-only
        try:
            cloud = {name: t["ms"] for name, t in measure.measure_cloud(link, runs).items()}
        except RuntimeError:
            cloud = {}
        steps.update()
        try:
            measured = measure.measure_link(link, estimator, LINK_PROBES, progress=False)
            link_profile = LinkProfile(measured["uplink_bps"], measured["rtt_ms"])
        except RuntimeError:
            pass
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
