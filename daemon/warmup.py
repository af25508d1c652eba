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
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from adaptinf.bundle import Bundle
from adaptinf.daemon import measurement
from adaptinf.daemon.cloud_link import CloudLink
from adaptinf.daemon.device_models import DeviceModels
from adaptinf.daemon.link_estimator import LinkEstimator
from adaptinf.profile import CLOUD_ONLY, MOBILE_ONLY, LinkProfile, ModelProfile, PartitionProfile, Profile

LINK_PROBES = 3


def median_ms(engine, spec, runs: int) -> float:
    """One engine's median time on a frame of the bundle's input spec (the speculative
    policies' little models and Minions: the profile times only the full model)."""
    frame = (np.random.default_rng(0).random(spec.shape) * 255).astype(spec.dtype)
    return statistics.median(measurement.time_engine(engine, frame, runs, warmup=1))


@dataclass(frozen=True)
class DeviceTimes:
    """The device's side of the profile: the full model and every head, median ms."""
    full_ms: float
    head_ms: dict[str, float]
    model_ms: dict[str, tuple[float, float]] = field(default_factory=dict)   # zoo models: median, std


def measure_device(bundle: Bundle, models: DeviceModels, runs: int, steps: tqdm | None = None) -> DeviceTimes:
    frame = (np.random.default_rng(0).random(bundle.input.shape) * 255).astype(bundle.input.dtype)
    full_ms = statistics.median(measurement.time_engine(models.full, frame, runs, warmup=1))
    if steps is not None:
        steps.update()
    head_ms = {}
    for p in bundle.split.points if bundle.split else ():
        head_ms[p.name] = statistics.median(measurement.time_engine(models.heads[p.name], frame, runs, warmup=1))
        if steps is not None:
            steps.update()
    model_ms = {}
    timed = dict(models.zoo or {})
    if models.zoo_multiplexer is not None:
        timed[bundle.zoo.multiplexer] = models.zoo_multiplexer
    for name, engine in timed.items():
        samples = measurement.time_engine(engine, frame, runs, warmup=1)
        model_ms[name] = (statistics.median(samples), statistics.pstdev(samples))
    return DeviceTimes(full_ms, head_ms, model_ms)


def cloud_partitions(bundle: Bundle, device: DeviceTimes, link: CloudLink, estimator: LinkEstimator,
                     power_w: float, runs: int, steps: tqdm | None = None
                     ) -> tuple[list[PartitionProfile], LinkProfile | None, dict[str, tuple[float, float]]]:
    """Cloud-only and every split point the cloud answers for, with the cloud's own compute
    times, the link as measured now, and the cloud's times (median, std) of the zoo models
    it serves; ([], None, {}) if the cloud fails the measurements (the same ones as
    adaptinf-calib)."""
    try:
        timings = measurement.measure_cloud(link, runs)
    except RuntimeError:
        timings = {}
    cloud = {name: t["ms"] for name, t in timings.items()}
    zoo = {name: (timings[name]["ms"], timings[name]["ms_std"])
           for name in (bundle.zoo.models if bundle.zoo else ()) if name in timings}
    if steps is not None:
        steps.update()
    link_profile = None
    try:
        measured = measurement.measure_link(link, estimator, LINK_PROBES, progress=False)
        link_profile = LinkProfile(measured["uplink_bps"], measured["rtt_ms"])
    except RuntimeError:
        pass
    if steps is not None:
        steps.update()
    if "full" not in cloud:
        return [], link_profile, {}
    full = bundle.full_model
    points = bundle.split.points if bundle.split else ()
    return ([PartitionProfile(CLOUD_ONLY, 0.0, power_w, cloud["full"], bundle.input.nbytes, full.accuracy)]
            + [PartitionProfile(p.name, device.head_ms[p.name], power_w, cloud[p.name], p.upload_bytes, p.accuracy)
               for p in points if p.name in cloud]), link_profile, zoo


def profile_from(bundle: Bundle, models: DeviceModels, device: DeviceTimes, power_w: float,
                 cloud: list[PartitionProfile] = (), link: LinkProfile | None = None,
                 cloud_models: dict[str, tuple[float, float]] | None = None) -> Profile:
    """The profile; zoo models are in its models, with their device and (when measured) cloud
    times."""
    partitions = [PartitionProfile(MOBILE_ONLY, device.full_ms, power_w, 0.0, 0, bundle.full_model.accuracy), *cloud]
    cloud_models = cloud_models or {}
    zoo = tuple(ModelProfile(name, ms, std, *cloud_models.get(name, (0.0, 0.0)), power_w,
                             bundle.model(name).accuracy, bundle.model(name).flops)
                for name, (ms, std) in device.model_ms.items())
    return Profile(bundle=bundle.manifest_sha256, partitions=tuple(partitions), link=link, models=zoo,
                   device={"host": platform.node(), "backend": models.backend, "power_source": "model",
                           "source": "adaptinfd warm-up", "measured_at": time.time()})


def measure_profile(bundle: Bundle, models: DeviceModels, link: CloudLink | None, estimator: LinkEstimator,
                    power_w: float, runs: int, progress: bool = False) -> tuple[Profile, DeviceTimes]:
    """The profile, and the device times it was built from (kept to add the cloud's
    partitions when a cloud that was down at start-up comes up)."""
    points = bundle.split.points if bundle.split else ()
    steps = tqdm(total=1 + len(points) + 2, desc="warm-up", disable=None if progress else True, leave=False)
    device = measure_device(bundle, models, runs, steps)
    cloud, link_profile, cloud_models = ([], None, {})
    if link is not None and link.up:
        cloud, link_profile, cloud_models = cloud_partitions(bundle, device, link, estimator, power_w, runs, steps)
    steps.close()
    return profile_from(bundle, models, device, power_w, cloud, link_profile, cloud_models), device
