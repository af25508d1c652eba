"""Calibration: measurements -> the versioned profile adaptinfd plans with.

The raw measurements are kept inside the profile ("measurements"), so re-running one
component (`--only link`) re-measures just that and rebuilds the profile from the rest.
The Neurosurgeon-style layer regression is fitted on the device graphs (and the cloud's
times where a cloud is configured), with its leave-one-out error stated, so partitions
and models that were not measured can be estimated.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adaptinf.bundle import Bundle
from adaptinf.calib import COMPONENTS, measure
from adaptinf.calib.layer_features import graph_features
from adaptinf.calib.regression import fit
from adaptinf.daemon import measurement
from adaptinf.daemon.cloud_link import CloudLink
from adaptinf.daemon.device_models import DeviceModels
from adaptinf.daemon.link_estimator import LinkEstimator
from adaptinf.daemon.power_monitor import PowerMonitor
from adaptinf.profile import CLOUD_ONLY, MOBILE_ONLY, LinkProfile, ModelProfile, PartitionProfile, Profile, \
    save_profile


@dataclass
class Rig:
    """What calibration measures with: the daemon's own engines, link, estimator and sensor."""

    bundle: Bundle
    models: DeviceModels
    link: CloudLink | None
    estimator: LinkEstimator
    power: PowerMonitor | None
    model_power_w: float
    mcu_port: str | None = None      # pyserial URL of the MCU (a board, or the firmware in QEMU)
    dsnn_dir: Path | None = None     # the dsNNs to load into it (adaptinf build dsnn)


def previous_measurements(path: Path, bundle: Bundle) -> dict:
    """Measurements of an earlier run for the same bundle, to keep what is not re-measured."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return raw.get("measurements", {}) if raw.get("bundle") == bundle.manifest_sha256 else {}


def run(rig: Rig, components: tuple[str, ...], runs: int, probes: int, validation: tuple | None,
        previous: dict, progress: bool = True) -> dict:
    m = dict(previous)
    if "device" in components:
        m["device"] = measure.measure_device(rig.bundle, rig.models, rig.power, rig.model_power_w, runs, progress)
    if rig.link is not None and "cloud" in components:
        m["cloud"] = measurement.measure_cloud(rig.link, runs)
    if rig.link is not None and "link" in components:
        m["link"] = measurement.measure_link(rig.link, rig.estimator, probes, progress)
    if rig.mcu_port and rig.dsnn_dir and "mcu" in components:
        m["mcu"] = measure.measure_mcu(rig.mcu_port, rig.dsnn_dir, runs, progress)
    if validation is not None and "confidence" in components:
        m["confidence"] = measure.measure_confidence(rig.bundle, rig.models, *validation, progress=progress)
    if "device" not in m:
        raise RuntimeError("no device measurements: run with the device component at least once")
    return m


def fit_regressions(bundle: Bundle, m: dict) -> dict:
    """The device's time (ms) and energy (mJ per inference) regressions, the cloud's time
    regression where there is a cloud, and "predicted": every bundle model the device
    did not run (little models, Minions, pool models), predicted by the device's two."""
    out = {}
    features = {name: graph_features(bundle.path(d["file"])) for name, d in m["device"].items()}
    time = fit([(features[k], d["ms"]) for k, d in m["device"].items()], "ms")
    energy = fit([(features[k], d["energy_j"] * 1e3) for k, d in m["device"].items()], "mJ")
    out["device"], out["device_energy"] = time.to_json(), energy.to_json()
    if "cloud" in m:
        files = {"full": bundle.full_model.file,
                 **{p.name: p.tail for p in (bundle.split.points if bundle.split else ())},
                 **{name: bundle.model(name).file for name in (bundle.zoo.models if bundle.zoo else ())}}
        cloud = [(graph_features(bundle.path(files[k])), v["ms"]) for k, v in m["cloud"].items() if k in files]
        if len(cloud) >= 3:
            out["cloud"] = fit(cloud, "ms").to_json()
    measured = {d["file"] for d in m["device"].values()}
    out["predicted"] = {}
    for model in bundle.models:
        if model.file not in measured:
            f = graph_features(bundle.path(model.file))
            out["predicted"][model.name] = {"ms": time.predict(f), "mj": energy.predict(f),
                                            "source": "layer regression"}
    return out


def build_profile(bundle: Bundle, m: dict, components: tuple[str, ...]) -> Profile:
    dev, cloud, conf = m["device"], m.get("cloud"), m.get("confidence", {})
    full = dev[MOBILE_ONLY]
    accuracy = lambda name, fallback: conf[name]["accuracy"] if name in conf else fallback  # noqa: E731
    partitions = [PartitionProfile(MOBILE_ONLY, full["ms"], full["power_w"], 0.0, 0,
                                   accuracy(MOBILE_ONLY, bundle.full_model.accuracy))]
    if cloud:
        partitions.append(PartitionProfile(CLOUD_ONLY, 0.0, full["power_w"], cloud["full"]["ms"],
                                           bundle.input.nbytes, accuracy(MOBILE_ONLY, bundle.full_model.accuracy)))
        for p in bundle.split.points if bundle.split else ():
            head = dev[f"{p.name}.head"]
            partitions.append(PartitionProfile(p.name, head["ms"], head["power_w"], cloud[p.name]["ms"],
                                               p.upload_bytes, accuracy(p.name, p.accuracy)))
    models = (ModelProfile(bundle.full_model.name, full["ms"], full["ms_std"],
                           cloud["full"]["ms"] if cloud else 0.0, cloud["full"]["ms_std"] if cloud else 0.0,
                           full["power_w"], accuracy(MOBILE_ONLY, bundle.full_model.accuracy),
                           bundle.full_model.flops),)
    # the zoo's other models (MDInference's pool): device and cloud, mean and std
    models += tuple(ModelProfile(name, dev[f"zoo:{name}"]["ms"], dev[f"zoo:{name}"]["ms_std"],
                                 cloud[name]["ms"] if cloud and name in cloud else 0.0,
                                 cloud[name]["ms_std"] if cloud and name in cloud else 0.0,
                                 dev[f"zoo:{name}"]["power_w"], bundle.model(name).accuracy, bundle.model(name).flops)
                    for name in (bundle.zoo.models if bundle.zoo else ()) if f"zoo:{name}" in dev)
    # the bundle's other models the device ran (a pool's), measured
    ran = {key.removeprefix("model:"): v for key, v in dev.items() if key.startswith("model:")}
    models += tuple(ModelProfile(name, v["ms"], v["ms_std"], device_power_w=v["power_w"],
                                 accuracy=bundle.model(name).accuracy, flops=bundle.model(name).flops)
                    for name, v in ran.items())
    # MCU models: the time the host waits for an answer (serial included), as the planner sees it
    models += tuple(ModelProfile(f"mcu:{name}", v["round_trip_ms"], v["round_trip_ms_std"], flops=2 * v["macs"])
                    for name, v in m.get("mcu", {}).get("models", {}).items())
    # the models the device did not run (SIEVE's littles, the Minions): their L_m and E_m
    # from the layer regression (thesis 4.3.2), so the planner needs no constant for them
    regressions = fit_regressions(bundle, m)
    known = {p.name for p in models}
    models += tuple(ModelProfile(name, p["ms"], device_power_w=p["mj"] / p["ms"] if p["ms"] > 0 else full["power_w"],
                                 accuracy=bundle.model(name).accuracy, flops=bundle.model(name).flops)
                    for name, p in regressions["predicted"].items() if name not in known)
    link = LinkProfile(m["link"]["uplink_bps"], m["link"]["rtt_ms"]) if "link" in m else None
    return Profile(
        bundle=bundle.manifest_sha256, partitions=tuple(partitions), models=models, link=link,
        device={"host": platform.node(), "backend": "", "power_source": full["power_source"],
                "source": "adaptinf-calib", "measured_at": time.time()},
        extra={"measurements": m, "regression": regressions,
               "calibration": {"tool": "adaptinf-calib", "components": list(components),
                               "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}})


def calibrate(rig: Rig, out: Path, components: tuple[str, ...] = COMPONENTS, runs: int = 30, probes: int = 5,
              validation: tuple[np.ndarray, np.ndarray] | None = None, progress: bool = True) -> Profile:
    unknown = set(components) - set(COMPONENTS)
    if unknown:
        raise ValueError(f"unknown components {sorted(unknown)}; choose from {COMPONENTS}")
    m = run(rig, components, runs, probes, validation, previous_measurements(out, rig.bundle), progress)
    profile = build_profile(rig.bundle, m, components)
    profile.device["backend"] = rig.models.backend
    save_profile(profile, out)  # atomic: the daemon never reads half a profile
    return profile
