"""Dynamic Duo in adaptinfd (thesis ch.6 with the user modes of 4.3.2): a real cloud worker
behind the link shaper, real sockets.

The bundle is conftest's tiny mux_build, configured by `adaptinf build duo`'s code; the
test then sets every class's threshold to the median confidence of the little model on
its frames, so that half of them are recovered whatever the tiny models learned.
"""

import json
import shutil
import signal

import numpy as np
import pytest

from adaptinf.bundle import load_bundle, write_manifest
from adaptinf.client import Client
from adaptinf.daemon.config import parse_config
from adaptinf.daemon.service import Daemon
from adaptinf.rig.link_shaper import LINK_PROFILES, LinkShaper
from adaptinf.rig.processes import spawn_cloud
from adaptinf.toolchain.speculative_build import configure
from conftest import served_probabilities

pytestmark = pytest.mark.slow

N = 12


@pytest.fixture(scope="module")
def duo(mux_build, tmp_path_factory):
    """(bundle dir, frames, little probabilities, big probabilities) with a known probe."""
    out = tmp_path_factory.mktemp("duo") / "bundle"
    shutil.copytree(mux_build[0], out)
    section = configure(out)
    # random noise frames: each is unique on the wire, so the uplink capture can be searched
    frames = np.random.default_rng(7).integers(0, 256, (N, 1, 32, 32, 3), dtype=np.uint8)
    bundle = load_bundle(out)

    def probs(name):
        return served_probabilities(out / bundle.model(name).file, frames)

    little, big = probs(section["little"]), probs(section["big"])
    threshold = float(np.median(little.max(1)))
    manifest = json.loads((out / "manifest.json").read_text())
    classes = len(manifest["classes"])
    manifest["dynamic_duo"].update(thresholds=[threshold] * classes, power_saving_thresholds=[0.0] * classes,
                                   recovery_rate=0.5, power_saving_recovery_rate=0.0)
    write_manifest(out, manifest)
    return out, frames, little, big, threshold


def daemon_for(bundle, tmp, cloud_endpoint=None, slowdown=1.0, policy="dynamic-duo", detector="probe"):
    raw = {"daemon": {"api_endpoint": f"ipc://{tmp}/a.sock", "bundle": str(bundle), "state_dir": str(tmp),
                      "warmup_runs": 2},
           "device": {"emulate_slowdown": slowdown},
           "policy": {"name": policy, "history_ms": 5000.0, "sieve_detector": detector}}
    if cloud_endpoint:
        raw["cloud"] = {"endpoint": cloud_endpoint, "timeout_ms": 1000.0}
    return Daemon(parse_config(raw)).start()


def test_the_little_answers_when_confident_and_the_big_recovers_otherwise(duo, tmp_short):
    bundle, frames, little, big, threshold = duo
    daemon = daemon_for(bundle, tmp_short)
    try:
        with Client(f"ipc://{tmp_short}/a.sock", timeout_s=10) as c:
            results = [c.infer(f) for f in frames]
            saving = [c.infer(f, mode="power-saving") for f in frames]
    finally:
        daemon.stop()
    recovered = little.max(1) < threshold
    assert 0 < recovered.sum() < N                       # both paths are exercised
    for r, rec, p_little, p_big in zip(results, recovered, little, big):
        s = r.served_by
        assert s["placement"] == "speculate" and s["recovered"] == bool(rec)
        assert s["little_confidence"] == pytest.approx(p_little.max(), abs=1e-5)
        assert s["answered_by"] == ("big:device" if rec else "little")
        assert np.allclose(r.scores, p_big if rec else p_little, atol=1e-4)
        assert ("recovery" in r.latency_ms) == bool(rec)
    # power-saving: the relaxed probe (all thresholds 0 here) recovers nothing
    assert not any(r.served_by["recovered"] for r in saving)


def test_modes_and_a_cloud_outage_with_recovery_in_the_cloud(duo, tmp_short):
    bundle, frames, little, big, threshold = duo
    cloud = spawn_cloud(bundle)
    host, port = cloud.endpoint.removeprefix("tcp://").rsplit(":", 1)
    shaper = LinkShaper((host, int(port)), LINK_PROFILES["wifi"], capture_uplink=True).start()
    # a device 60x slower than this CPU: recovering in the cloud is the faster plan
    daemon = daemon_for(bundle, tmp_short, shaper.endpoint, slowdown=60.0)
    recovered = little.max(1) < threshold
    try:
        with Client(f"ipc://{tmp_short}/a.sock", timeout_s=10) as c:
            normal = [c.infer(f) for f in frames]
            sent_before_private = len(shaper.uplink_capture)
            private = [c.infer(f, mode="private") for f in frames]
            private_capture = bytes(shaper.uplink_capture[sent_before_private:])
            mission = [c.infer(f, mode="mission-critical") for f in frames]
            cloud.process.send_signal(signal.SIGSTOP)        # the cloud stalls mid-stream
            outage = [c.infer(f, deadline_ms=3000) for f in frames]
    finally:
        cloud.process.send_signal(signal.SIGCONT)
        daemon.stop()
        shaper.stop()
        cloud.stop()
    for r, rec in zip(normal, recovered):
        assert r.served_by["answered_by"] == ("big:cloud" if rec else "little")
    # the recovered frames' bytes did cross the link in normal mode ...
    capture = bytes(shaper.uplink_capture)
    assert all(frames[i].tobytes()[:256] in capture for i in np.flatnonzero(recovered))
    # ... but in private mode none of the frames' bytes did, checked on the wire
    assert not any(f.tobytes()[:256] in private_capture for f in frames)
    assert all(r.served_by["answered_by"] in ("little", "big:device") for r in private)
    assert sum(r.served_by["answered_by"] == "big:device" for r in private) == recovered.sum()
    # mission-critical: the big model for every frame, in the cloud
    assert all(r.served_by["placement"] == "cloud" and not r.served_by["fallback"] for r in mission)
    assert all(np.allclose(r.scores, p, atol=1e-4) for r, p in zip(mission, big))
    # the cloud stalls: every frame still gets one answer, recoveries fall back to the device
    assert len(outage) == N
    for r, rec, p_little, p_big in zip(outage, recovered, little, big):
        assert np.allclose(r.scores, p_big if rec else p_little, atol=1e-4)
        if rec:
            assert r.served_by["answered_by"] == "big:device"


def test_build_duo_writes_a_section_the_bundle_checks(duo, tmp_path):
    from adaptinf.bundle import BundleError

    bundle_dir = duo[0]
    spec = load_bundle(bundle_dir).dynamic_duo
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    assert spec.big == "pool_w16" and spec.little == "pool_w8"
    assert set(manifest["dynamic_duo"]["confidence"]["pool_w8"]) == {"bins", "correct", "correctable",
                                                                     "uncorrectable"}
    broken = tmp_path / "b"
    shutil.copytree(bundle_dir, broken)
    manifest["dynamic_duo"]["thresholds"] = manifest["dynamic_duo"]["thresholds"][:-1]
    write_manifest(broken, manifest)
    with pytest.raises(BundleError, match="one per class"):
        load_bundle(broken)


def test_sieve_speculation_history_over_real_sockets(duo, tmp_short):
    """Each recovered frame is sent twice in a row: the second copy follows rule 1 (the original
    CNN agreed: the little answers, no detection) or rule 2 (it disagreed: straight to the
    server). A 3G link makes speculation the selector's choice (L_m + L_t P_r < L_t)."""
    bundle, frames, little, big, threshold = duo
    cloud = spawn_cloud(bundle)
    host, port = cloud.endpoint.removeprefix("tcp://").rsplit(":", 1)
    shaper = LinkShaper((host, int(port)), LINK_PROFILES["3g"]).start()
    daemon = daemon_for(bundle, tmp_short, shaper.endpoint, policy="sieve")
    recovered = np.flatnonzero(little.max(1) < threshold)
    try:
        pairs = []
        for i in recovered:     # one client (one camera stream) per pair: history is per client
            with Client(f"ipc://{tmp_short}/a.sock", timeout_s=10) as c:
                pairs.append((c.infer(frames[i]), c.infer(frames[i])))
    finally:
        daemon.stop()
        shaper.stop()
        cloud.stop()
    agreed = little.argmax(1) == big.argmax(1)
    assert 0 < agreed[recovered].sum() < len(recovered)        # both rules are exercised
    for i, (first, second) in zip(recovered, pairs):
        assert first.served_by["placement"] == "speculate" and first.served_by["recovered"]
        assert first.served_by["answered_by"] == "big:cloud"
        if agreed[i]:       # rule 1: on the device, the detector skipped
            assert second.served_by["history"] == "trust-little" and second.served_by["answered_by"] == "little"
            assert not second.served_by["detector"] and second.served_by["upload_bytes"] == 0
        else:               # rule 2: the speculative CNN skipped, straight to the original
            assert second.served_by["history"] == "direct-to-cloud"
            assert second.served_by["answered_by"] == "big:cloud" and "little" not in second.served_by


def test_energy_bench_covers_every_little_and_draws_the_fronts(duo, capsys, tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "bench" / "speculative_energy.py"
    spec = importlib.util.spec_from_file_location("speculative_energy", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--bundle", str(duo[0]), "--plot", str(tmp_path / "fronts.png")]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "fronts.png").stat().st_size > 10_000
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("pool_w8")}
    assert "pool_w8" in rows and "mobile-only" in out
    # the slower the uplink, the dearer the upload (Table III)
    assert bench.cloud_only_j("3g", 3072) > bench.cloud_only_j("4g", 3072) > bench.cloud_only_j("wifi", 3072)
    bundle = load_bundle(duo[0])
    small, large = bundle.model("pool_w8"), bundle.model("pool_w16")
    assert bench.modelled_energy_j(small, duo[0] / small.file) < bench.modelled_energy_j(large, duo[0] / large.file)


def test_the_profile_is_the_one_source_of_model_times(duo, tmp_short):
    """The little model's share of the big one's time comes from the profile; a model the
    profile lacks is measured once at start-up and added to the profile in memory."""
    bundle = duo[0]
    daemon = daemon_for(bundle, tmp_short)
    try:
        little = daemon.bundle.dynamic_duo.little
        measured = {m.name: m.device_ms for m in daemon.profile.models}
        assert little in measured and measured[little] > 0
        full_ms = daemon.profile.partition("mobile-only").device_ms
        assert daemon.policies["dynamic-duo"].little_share == pytest.approx(measured[little] / full_ms)
    finally:
        daemon.stop()


def test_sieve_with_the_thesis_detector_recovers_below_its_one_threshold(duo, tmp_short, tmp_path):
    from adaptinf.policies.sieve import distribution_threshold

    bundle, frames, little, big, median = duo
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    section = manifest["dynamic_duo"]
    # validation histograms whose detector is the frames' median confidence: 80% correct above it,
    # 20% correctable below it, and a target of 90% that needs those recomputed
    section["confidence"][section["little"]] = {"bins": [0.0, median, 1.0], "correct": [0, 80],
                                                "correctable": [20, 0], "uncorrectable": [0, 0]}
    section["target_accuracy"] = 0.9
    write_manifest(copy, manifest)
    threshold, p_r = distribution_threshold(section["confidence"][section["little"]], 0.9)
    assert threshold == pytest.approx(median) and p_r == pytest.approx(0.2)
    daemon = daemon_for(copy, tmp_short, policy="sieve", detector="threshold")
    try:
        with Client(f"ipc://{tmp_short}/a.sock", timeout_s=10) as c:
            results = [c.infer(f) for f in frames]
    finally:
        daemon.stop()
    # frames the speculation history let through without detection (rule 1) are not judged here
    detected = [(r.served_by, p_little) for r, p_little in zip(results, little) if r.served_by.get("detector")]
    assert 0 < sum(s["recovered"] for s, _ in detected) < len(detected)     # both paths are exercised
    for s, p_little in detected:
        assert s["threshold"] == pytest.approx(threshold)                  # the same for every class
        assert s["recovered"] == bool(p_little.max() < threshold)
