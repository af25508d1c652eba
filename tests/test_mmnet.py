"""M&MNet (thesis ch.5): the detector, threshold and Minion configuration, the selector, and
the policy in adaptinfd on a tiny pool of three glyph models."""

import json

import numpy as np
import pytest

from adaptinf.policies import mmnet
from adaptinf.policies.dynamic_duo import ModelOutputs
from adaptinf.policies.plan import FrameContext, Telemetry
from conftest import served_probabilities
from test_dynamic_duo import _profile


def outputs(name, confidence, predicted, right, cost):
    return ModelOutputs(name, np.array(confidence), np.array(predicted), np.array(right, bool), cost)


def test_detector_recovers_on_low_confidence_or_disagreement():
    rec = mmnet.recover([0.9, 0.9, 0.3, 0.9], [1, 1, 1, 2], [0.8, 0.2, 0.9, 0.9], [1, 1, 1, 1], 0.5, 0.5)
    assert rec.tolist() == [False, True, True, True]


def test_thresholds_take_the_fewest_recoveries_that_reach_the_target():
    # frame 2: both minions agree but wrong at confidence 0.4 / 0.45: thresholds must catch it
    m1 = outputs("a", [0.9, 0.8, 0.4, 0.9], [0, 1, 2, 3], [True, True, False, True], 1.0)
    m2 = outputs("b", [0.9, 0.9, 0.45, 0.6], [0, 1, 2, 3], [True, True, False, True], 2.0)
    master = outputs("M", [1.0] * 4, [0, 1, 0, 3], [True] * 4, 10.0)
    pair = mmnet.configure(m1, m2, master, target=1.0)
    assert pair.recovery_rate == 0.25 and pair.accuracy == 1.0
    assert pair.cost == pytest.approx(1.0 + 2.0 + 10.0 * 0.25)
    assert mmnet.select_minions([m1, m2, master], master, 1.0).minions == ("a", "b")
    # minions that together cost more than the Master are not a pair
    dear = outputs("b", [0.9, 0.9, 0.45, 0.6], [0, 1, 2, 3], [True, True, False, True], 9.5)
    assert mmnet.select_minions([m1, dear, master], master, 1.0) is None


@pytest.mark.parametrize("uplink, mode, expected", [
    # L_m (the device's 40 ms) vs L_t (upload + 1 ms RTT + 2 ms) places the Master; Minions cost 10 ms
    (0.5e6, "normal", ("minions", "device")),       # L_t = 52 ms: the Master on the device; 10 + 0.3 x 40 < 40
    (1.1e6, "normal", ("minions", "cloud")),        # L_t = 25 ms: in the cloud; 10 + 0.3 x 25 < 25
    (200e6, "normal", ("cloud", "cloud-only")),     # L_t = 3 ms: the Master alone beats 10 + 0.3 x 3
    (1.1e6, "mission-critical", ("cloud", "cloud-only")),
    (1.1e6, "private", ("minions", "device")),
])
def test_master_placement_and_modes(uplink, mode, expected):
    policy = mmnet.MmNetPolicy(3072, minion_share=0.25, recovery_rate=0.3)
    telemetry = Telemetry(uplink_bps=uplink, rtt_s=0.001, radio="wifi", cloud_up=True)
    plan = policy.plan(FrameContext(mode=mode), telemetry, _profile(device_ms=40.0, cloud_ms=2.0))
    assert (plan.chosen.kind, plan.chosen.name) == expected


def test_selector_prefers_the_master_alone_when_minions_do_not_pay():
    policy = mmnet.MmNetPolicy(3072, minion_share=0.9, recovery_rate=0.6)
    telemetry = Telemetry(uplink_bps=1.1e6, rtt_s=0.001, radio="wifi", cloud_up=False)
    plan = policy.plan(FrameContext(), telemetry, _profile(40.0, 2.0))
    # L_m1 + L_m2 + 0.6 L_Master = 36 + 24 ms > 40 ms
    assert (plan.chosen.kind, plan.chosen.name) == ("device", "mobile-only")


def _frames():
    from adaptinf.toolchain import datasets

    return datasets.glyphs(64, 11).images[:, None]          # (64, 1, 32, 32, 3): one frame each


FRAMES = _frames()


def _probs(bundle_dir, name):
    return served_probabilities(bundle_dir / f"{name}.onnx", FRAMES)


@pytest.fixture(scope="module")
def mmnet_bundle(tmp_path_factory):
    """A tiny pool (widths 8, 12, 32; seconds of training) configured by `adaptinf build mmnet`'s
    code; the test then sets Minion 1's threshold to its median confidence on the FRAMES where
    the Minions agree (and P_r to 0.1, so that the selector speculates: adaptinfd measures the
    Minions at about a third of the Master's time), whatever the tiny models learned."""
    from adaptinf.bundle import write_manifest
    from adaptinf.toolchain.multiplexer import MuxConfig
    from adaptinf.toolchain.multiplexer_build import build
    from adaptinf.toolchain.speculative_build import configure_mmnet

    out = tmp_path_factory.mktemp("mmnet")
    build(out, MuxConfig(widths=(8, 12, 32), epochs=4, mux_epochs=1, batch_size=64), n_train=768, n_eval=128,
          progress=False)
    section = configure_mmnet(out)
    manifest = json.loads((out / "manifest.json").read_text())
    p1, p2 = (_probs(out, m) for m in section["minions"])
    threshold = float(np.median(p1.max(1)[p1.argmax(1) == p2.argmax(1)]))
    manifest["mmnet"].update(thresholds=[threshold, 0.0], recovery_rate=0.1)
    write_manifest(out, manifest)
    return out, manifest["mmnet"]


@pytest.mark.slow
def test_mmnet_in_adaptinfd_answers_with_the_minions_or_the_master(mmnet_bundle, tmp_short):
    from adaptinf.client import Client
    from adaptinf.daemon.config import parse_config
    from adaptinf.daemon.service import Daemon

    out, section = mmnet_bundle
    assert section["master"] == "pool_w32" and sorted(section["minions"]) == ["pool_w12", "pool_w8"]
    (p1, p2), master = [_probs(out, m) for m in section["minions"]], _probs(out, "pool_w32")
    config = parse_config({"daemon": {"api_endpoint": f"ipc://{tmp_short}/a.sock", "bundle": str(out),
                                      "state_dir": str(tmp_short), "warmup_runs": 2},
                           "policy": {"name": "mmnet"}})
    daemon = Daemon(config).start()
    try:
        with Client(f"ipc://{tmp_short}/a.sock", timeout_s=10) as c:
            results = [c.infer(f) for f in FRAMES]
            mission = c.infer(FRAMES[0], mode="mission-critical")
    finally:
        daemon.stop()
    expected = mmnet.recover(p1.max(1), p1.argmax(1), p2.max(1), p2.argmax(1), *section["thresholds"])
    assert 0 < expected.sum() < len(FRAMES)          # both outcomes are exercised
    for r, rec, a, m in zip(results, expected, p1, master):
        assert r.served_by["placement"] == "minions" and r.served_by["recovered"] == bool(rec)
        assert r.served_by["answered_by"] == ("big:device" if rec else "minions")
        assert np.allclose(r.scores, m if rec else a, atol=1e-4)
    assert mission.served_by["placement"] == "device" and np.allclose(mission.scores, master[0], atol=1e-4)
