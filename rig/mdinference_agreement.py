"""MDInference in adaptinfd against `adaptinf sim`: the same zoo table, the same seeded network.

Both sides get:
- the zoo bundle's models, each with its held-out test accuracy and a cloud time drawn
  from normal(mean, std): the zoo's measured relative costs, scaled so that the largest
  takes `largest_ms` (paper 003 Table III: NasNet Large, 113 ms) with a CV of `cv`
  (Table III's are 0.3-2.5%). On this CPU the zoo's models all finish in under 1 ms, so
  an SLA would always afford the largest and the selection would never choose: the
  cloud's times are emulated (adaptinf-cloud --emulate-times), its answers are real;
- a network time per frame from normal(mean, std) clipped at 0, seeded, the same draws;
- the SLA, and the zoo's cheapest model on the device as the duplicate.

The daemon's side is real: adaptinf-cloud with its MDInference (which measures each
frame's upload), behind the link shaper's seeded per-message network times (half up,
half back), adaptinfd in this process, frames through the local API one at a time (on
a FIFO link a frame would otherwise wait behind its predecessor, which the sim does not
model). A frame's "model" is the cloud's choice when the cloud's answer was used, else
the device's model: `adaptinf sim`'s usage. Agreement is judged per model share and for
aggregate accuracy, in standard errors of the difference.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from adaptinf.bundle import load_bundle
from adaptinf.client import Client
from adaptinf.daemon.config import parse_config
from adaptinf.daemon.service import Daemon
from adaptinf.policies.mdinference import ModelStats, Network
from adaptinf.rig.mdinference_sim import simulate
from adaptinf.rig.link_shaper import LinkProfile, LinkShaper, MessageDelay
from adaptinf.rig.processes import spawn_cloud
from adaptinf.toolchain.datasets import glyph_bundle_test_split

LINK_BPS = 50e6           # fast enough that the network time is the drawn delay
DEVICE_SUFFIX = " (device)"


@dataclass(frozen=True)
class Setup:
    sla_s: float = 0.25
    network_mean_s: float = 0.1
    network_std_s: float = 0.05
    largest_ms: float = 110.0
    cv: float = 0.02
    seed: int = 0


def zoo_table(bundle, largest_ms: float, cv: float) -> list[ModelStats]:
    """Each zoo model: its test accuracy, and its host time scaled so the largest takes largest_ms."""
    figures = bundle.zoo.figures
    scale = largest_ms / max(figures[n]["host_ms"] for n in bundle.zoo.models)
    return [ModelStats(n, bundle.model(n).accuracy or 0.0, figures[n]["host_ms"] * scale / 1e3,
                       cv * figures[n]["host_ms"] * scale / 1e3) for n in bundle.zoo.models]


def write_table(models: list[ModelStats], path: Path) -> Path:
    """`adaptinf sim --models` and `adaptinf-cloud --emulate-times` read this."""
    lines = ["# name,accuracy(%),mean_ms,std_ms"] + [
        f"{m.name},{m.accuracy * 100:.4f},{m.mean_s * 1e3:.4f},{m.std_s * 1e3:.4f}" for m in models]
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)


@dataclass
class Frame:
    model: str            # the model whose answer was used (DEVICE_SUFFIX: the duplicate's)
    accuracy: float       # that model's test accuracy (the sim's aggregate accuracy is their mean)
    correct: bool         # whether this answer was right
    latency_ms: float     # the daemon's, from receipt to answer
    budget_ms: float | None


def run_daemon(bundle_dir: Path, setup: Setup, frames: int, workdir: Path,
               progress: bool = False) -> tuple[list[Frame], ModelStats]:
    """`frames` frames of the zoo's test split through a real worker, link and adaptinfd;
    returns them and the device's duplicate as the sim sees it."""
    bundle = load_bundle(bundle_dir)
    table = zoo_table(bundle, setup.largest_ms, setup.cv)
    accuracy = {m.name: m.accuracy for m in table}
    test = glyph_bundle_test_split(bundle)
    cloud = spawn_cloud(bundle_dir, extra_args=("--emulate-times", str(write_table(table, workdir / "zoo-times.csv")),
                                                "--seed", str(setup.seed)))
    host, port = cloud.endpoint.removeprefix("tcp://").rsplit(":", 1)
    shaper = LinkShaper((host, int(port)), LinkProfile(
        "seeded", LINK_BPS, LINK_BPS, 0.0,
        message_delay=MessageDelay(setup.network_mean_s, setup.network_std_s, setup.seed))).start()
    endpoint = f"ipc://{workdir}/agreement.sock"
    daemon = None
    try:
        daemon = Daemon(parse_config({
            "daemon": {"api_endpoint": endpoint, "bundle": str(bundle_dir), "state_dir": str(workdir),
                       "warmup_runs": 3},
            "cloud": {"endpoint": shaper.endpoint, "timeout_ms": 2000.0}})).start()
        _wait_for_clock_offset(daemon)
        device = _device_model(daemon.profile, bundle)
        shaper.restart()        # the frames get the network's draws from the first, as the sim's requests
        out = []
        with Client(endpoint, timeout_s=10) as client:
            for i in tqdm(range(frames), desc="mdinference", unit="frame", disable=None if progress else True):
                k = i % len(test.labels)
                r = client.infer(test.images[k:k + 1], policy="mdinference", deadline_ms=setup.sla_s * 1e3)
                s = r.served_by
                cloud_answered = s.get("answered_by") == "cloud"
                name = s["model"] if cloud_answered else s["device_model"] + DEVICE_SUFFIX
                out.append(Frame(name, accuracy[s["model"]] if cloud_answered else device.accuracy,
                                 r.label == int(test.labels[k]), r.latency_ms["total"], s.get("budget_ms")))
    finally:
        if daemon is not None:
            daemon.stop()
        shaper.stop()
        cloud.stop()
    return out, device


def _wait_for_clock_offset(daemon: Daemon, timeout_s: float = 10.0) -> None:
    """The cloud measures uploads once the link knows the clocks' offset (a heartbeat's reply)."""
    deadline = time.monotonic() + timeout_s
    while daemon.link.clock_offset.offset_s is None:
        if time.monotonic() > deadline:
            raise RuntimeError("no heartbeat came back from the cloud: the clocks' offset is unknown")
        time.sleep(0.05)


def _device_model(profile, bundle) -> ModelStats:
    """The duplicate's model as the sim sees it: the zoo's cheapest on this device, as measured."""
    zoo = [m for m in profile.models if m.name in bundle.zoo.models and m.device_ms > 0]
    cheapest = min(zoo, key=lambda m: m.device_ms)
    return ModelStats(cheapest.name + DEVICE_SUFFIX, bundle.model(cheapest.name).accuracy or 0.0,
                      cheapest.device_s, cheapest.device_s_std)


def run_sim(bundle_dir: Path, setup: Setup, frames: int, device: ModelStats):
    bundle = load_bundle(bundle_dir, verify=False)
    return simulate("mdinference", zoo_table(bundle, setup.largest_ms, setup.cv),
                    Network(setup.network_mean_s, setup.network_std_s), setup.sla_s, frames, device, setup.seed)


def compare(sim, daemon_frames: list[Frame]) -> dict:
    """Each model's share and the aggregate accuracy, sim vs daemon, with the difference in
    standard errors (of a difference of two independent proportions, or means)."""
    n_daemon, n_sim = len(daemon_frames), sum(sim.usage.values())
    usage = Counter(f.model for f in daemon_frames)
    shares = {}
    for name in sorted(set(usage) | set(sim.usage)):
        p_d, p_s = usage[name] / n_daemon, sim.usage[name] / n_sim
        pooled = (usage[name] + sim.usage[name]) / (n_daemon + n_sim)
        se = math.sqrt(pooled * (1 - pooled) * (1 / n_daemon + 1 / n_sim))
        shares[name] = {"daemon": p_d, "sim": p_s, "se": se, "z": (p_d - p_s) / se if se > 0 else 0.0}
    accuracies = np.array([f.accuracy for f in daemon_frames])
    # the sim's per-request accuracies have the same spread as the daemon's (same models, same table)
    se = math.sqrt(accuracies.var() * (1 / n_daemon + 1 / n_sim))
    diff = float(accuracies.mean()) - sim.aggregate_accuracy
    latency = np.array([f.latency_ms for f in daemon_frames])
    return {"frames": n_daemon, "shares": shares,
            "accuracy": {"daemon": float(accuracies.mean()), "sim": sim.aggregate_accuracy, "se": se,
                         "z": diff / se if se > 0 else 0.0},
            "measured_accuracy": float(np.mean([f.correct for f in daemon_frames])),
            "sla_met": {"daemon": float(np.mean(latency <= sim.sla_s * 1e3)), "sim": sim.sla_attainment},
            "on_device": {"daemon": sum(f.model.endswith(DEVICE_SUFFIX) for f in daemon_frames) / n_daemon,
                          "sim": sim.on_device_reliance},
            "latency_ms": {"daemon_mean": float(latency.mean()), "daemon_p99": float(np.percentile(latency, 99)),
                           "daemon_max": float(latency.max()), "sim_mean": sim.mean_latency_s * 1e3}}


def report(result: dict, setup: Setup) -> str:
    lines = [f"MDInference, SLA {setup.sla_s * 1e3:.0f} ms, network {setup.network_mean_s * 1e3:.0f} +- "
             f"{setup.network_std_s * 1e3:.0f} ms (seed {setup.seed}), {result['frames']} frames; cloud times "
             f"scaled to {setup.largest_ms:.0f} ms for the largest, CV {setup.cv:.0%}",
             f"{'model':28} {'daemon':>8} {'sim':>8} {'diff/SE':>8}"]
    for name, s in sorted(result["shares"].items(), key=lambda kv: -kv[1]["sim"]):
        lines.append(f"{name:28} {s['daemon']:8.2%} {s['sim']:8.2%} {s['z']:8.2f}")
    a = result["accuracy"]
    lines += [f"{'aggregate accuracy':28} {a['daemon']:8.2%} {a['sim']:8.2%} {a['z']:8.2f}",
              f"{'SLA met':28} {result['sla_met']['daemon']:8.2%} {result['sla_met']['sim']:8.2%}",
              f"{'answered on the device':28} {result['on_device']['daemon']:8.2%} {result['on_device']['sim']:8.2%}",
              f"measured accuracy of the daemon's answers: {result['measured_accuracy']:.2%}; latency mean "
              f"{result['latency_ms']['daemon_mean']:.1f} ms (sim {result['latency_ms']['sim_mean']:.1f}), "
              f"p99 {result['latency_ms']['daemon_p99']:.1f}, max {result['latency_ms']['daemon_max']:.1f}"]
    if "at_effective_sla" in result:
        e = result["at_effective_sla"]
        lines.append(f"the worker's T_budget ran {result['budget_shortfall_ms']:.1f} ms (median) below the sim's; "
                     f"the sim at SLA {(setup.sla_s * 1e3 - result['budget_shortfall_ms']):.1f} ms:")
        for name, share in sorted(e["shares"].items(), key=lambda kv: -kv[1]["sim"]):
            lines.append(f"  {name:26} {share['daemon']:8.2%} {share['sim']:8.2%} {share['z']:8.2f}")
        lines.append(f"  {'aggregate accuracy':26} {e['accuracy']['daemon']:8.2%} {e['accuracy']['sim']:8.2%} "
                     f"{e['accuracy']['z']:8.2f}")
    return "\n".join(lines)


def budget_shortfall_s(setup: Setup, daemon_frames: list[Frame]) -> float:
    """How much less T_budget the worker had than the sim, median over the cloud's answers:
    the sim's T_sla - t (t: the frame's drawn network time, the shaper's draws in order)
    less the worker's. The real link's own time each way and the device's fallback margin
    are in it."""
    drawn = Network(setup.network_mean_s, setup.network_std_s).sample(len(daemon_frames),
                                                                       np.random.default_rng(setup.seed))
    gaps = [setup.sla_s - t - f.budget_ms / 1e3 for t, f in zip(drawn, daemon_frames)
            if f.budget_ms is not None and not f.model.endswith(DEVICE_SUFFIX)]
    return float(np.median(gaps)) if gaps else 0.0


def agreement(bundle_dir: Path, setup: Setup, frames: int, workdir: Path, progress: bool = False) -> dict:
    """The daemon against the sim; and against the sim at the SLA less the budget the real
    link and margin cost (the explanation, when the shares differ)."""
    daemon_frames, device = run_daemon(bundle_dir, setup, frames, workdir, progress)
    result = compare(run_sim(bundle_dir, setup, frames, device), daemon_frames)
    shortfall = budget_shortfall_s(setup, daemon_frames)
    effective = replace(setup, sla_s=setup.sla_s - shortfall)
    result["budget_shortfall_ms"] = shortfall * 1e3
    result["at_effective_sla"] = compare(run_sim(bundle_dir, effective, frames, device), daemon_frames)
    result["setup"] = asdict(setup)
    return result
