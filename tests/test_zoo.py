"""The model zoo (`adaptinf build zoo`): a bundle of classifiers from different families,
each served on its own by the cloud worker, and MDInference choosing among them in
adaptinfd (the pool as served, the duplicate on the device's cheapest zoo model)."""

import json
import shutil

import msgpack
import numpy as np
import onnxruntime as ort
import pytest
import zmq

from adaptinf.bundle import BundleError, load_bundle, write_manifest
from adaptinf.client import Client
from adaptinf.cloud import protocol
from adaptinf.cloud.worker import CloudWorker
from adaptinf.daemon.config import parse_config
from adaptinf.daemon.service import Daemon
from adaptinf.policies.mdinference import MdInferencePolicy
from adaptinf.policies.plan import FrameContext, Telemetry
from adaptinf.profile import CLOUD_ONLY, MOBILE_ONLY, ModelProfile, PartitionProfile, Profile
from conftest import laddered_zoo_copy

pytestmark = pytest.mark.slow


def test_the_zoo_spans_families_flops_and_accuracy(zoo_bundle):
    b = load_bundle(zoo_bundle)
    assert b.zoo is not None and len(b.zoo.models) == 6
    figures = b.zoo.figures
    assert len({figures[m]["family"] for m in b.zoo.models}) == 3           # MLP, MobileNet, ResNet
    assert len({figures[m]["resolution"] for m in b.zoo.models}) == 3       # 8, 16 and 32 pixels
    flops = [b.model(m).flops for m in b.zoo.models]
    assert max(flops) / min(flops) >= 20
    assert all(b.model(m).accuracy is not None and figures[m]["host_ms"] > 0 for m in b.zoo.models)
    assert b.full_model.accuracy == max(b.model(m).accuracy for m in b.zoo.models)   # most accurate first


@pytest.mark.parametrize("zoo, message", [
    ({"models": ["mlp_r8"]}, "at least two"),
    ({"models": ["mlp_r8", "nope"]}, "'nope', which is not one of"),
    ({"models": ["mlp_r8", "mlp_r8"]}, "twice"),
    ([1, 2], "must be an object"),
])
def test_a_bad_zoo_section_is_refused_by_name(zoo_bundle, tmp_path, zoo, message):
    copy = tmp_path / "b"
    shutil.copytree(zoo_bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["zoo"] = zoo
    for key in ("files", "format", "version"):
        manifest.pop(key, None)
    write_manifest(copy, manifest)
    with pytest.raises(BundleError, match=message):
        load_bundle(copy)


def test_the_cloud_worker_serves_every_zoo_model_on_its_own(zoo_bundle, glyph_frames):
    b = load_bundle(zoo_bundle)
    worker = CloudWorker(b, "tcp://127.0.0.1:*").start()
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(worker.bound_endpoint)
    frame = glyph_frames.images[:1]
    try:
        for k, name in enumerate(b.zoo.models):
            header = dict(protocol.Infer(name, frame.shape).header(), v=1, rid=[1, k])
            sock.send_multipart([msgpack.packb(header), frame.tobytes()])
            assert sock.poll(10_000)
            reply = sock.recv_multipart()
            assert protocol.unpack_reply(reply[0])["ok"]
            session = ort.InferenceSession(str(b.path(b.model(name).file)), providers=["CPUExecutionProvider"])
            expected = session.run(None, {"image": frame})[0].reshape(-1)
            np.testing.assert_allclose(np.frombuffer(reply[1], np.float32), expected, rtol=1e-4, atol=1e-5)
    finally:
        sock.close()
        worker.stop()


def profile_with(models: list[ModelProfile]) -> Profile:
    return Profile(bundle="x", partitions=(PartitionProfile(MOBILE_ONLY, 50.0, 5.0, 0.0, 0, 0.8),
                                           PartitionProfile(CLOUD_ONLY, 0.0, 5.0, 200.0, 3072, 0.8)),
                   models=tuple(models))


def test_selection_uses_the_served_zoo_and_the_cheapest_device_model():
    # MDInference's paper-like regime: models of 20-200 ms in the cloud, a budget that moves
    models = [ModelProfile("small", 2.0, 0.1, 20.0, 5.0, 5.0, 0.60), ModelProfile("mid", 5.0, 0.2, 60.0, 15.0, 5.0, 0.70),
              ModelProfile("mid2", 6.0, 0.2, 70.0, 15.0, 5.0, 0.72), ModelProfile("big", 20.0, 1.0, 200.0, 30.0, 5.0, 0.80),
              ModelProfile("device-only", 1.0, 0.1, 0.0, 0.0, 5.0, 0.50)]   # not served in the cloud
    policy = MdInferencePolicy(0.25, 3072, seed=1, zoo=("small", "mid", "mid2", "big", "device-only"))
    chosen = set()
    for rtt in np.linspace(0.01, 0.15, 40):
        plan = policy.plan(FrameContext(deadline_s=0.25), Telemetry(uplink_bps=20e6, rtt_s=float(rtt)),
                           profile_with(models))
        chosen.add(plan.chosen.name)
        assert plan.decision.device_model == "device-only"        # the zoo's cheapest on the device
        assert plan.decision.selection.budget_s == pytest.approx(0.25 - 2 * 3072 * 8 / 20e6 - rtt)
    assert "device-only" not in chosen and len(chosen) >= 2          # only what the cloud serves, and a real choice
    # replies' compute times replace the profile's: a model that turns slow stops being chosen
    for _ in range(30):
        policy.observe("big", 0.5)
    plans = [policy.plan(FrameContext(deadline_s=0.25), Telemetry(uplink_bps=20e6, rtt_s=0.01), profile_with(models))
             for _ in range(20)]
    assert all(p.chosen.name != "big" for p in plans)


def test_mdinference_in_the_daemon_chooses_among_the_served_zoo(zoo_bundle, tmp_short, glyph_frames):
    from adaptinf.rig.processes import spawn_cloud

    cloud = spawn_cloud(zoo_bundle)
    config = parse_config({"daemon": {"api_endpoint": f"ipc://{tmp_short}/a.sock", "bundle": str(zoo_bundle),
                                      "state_dir": str(tmp_short), "warmup_runs": 3},
                           "cloud": {"endpoint": cloud.endpoint, "timeout_ms": 2000.0}})
    daemon = Daemon(config).start()
    try:
        with Client(f"ipc://{tmp_short}/a.sock", timeout_s=10) as c:
            replies = [c.infer(glyph_frames.images[i:i + 1], policy="mdinference", deadline_ms=250.0)
                       for i in range(20)]
        profile = daemon.profile
    finally:
        daemon.stop()
        cloud.stop()
    zoo = load_bundle(zoo_bundle).zoo.models
    served = {m.name: m for m in profile.models}
    assert set(zoo) <= set(served) and all(served[m].cloud_ms > 0 and served[m].device_ms > 0 for m in zoo)
    cheapest = min(zoo, key=lambda m: served[m].device_ms)
    for r in replies:
        s = r.served_by
        assert s["placement"] == "duplicate" and s["device_model"] == cheapest
        assert 0 < s["budget_ms"] < 250.0 and s["answered_by"] in ("cloud", "device")
        if s["answered_by"] == "cloud":    # the cloud's MDInference chose it, and says so
            assert s["model"] in zoo
    assert sum(r.served_by["answered_by"] == "cloud" for r in replies) >= 15


def test_the_zoo_multiplexer_benchmark_compares_like_for_like(zoo_bundle, tmp_path):
    from adaptinf.toolchain import zoo_multiplexer as zm

    r = zm.evaluate(zoo_bundle, zm.ZooMuxConfig(n_mux=400, n_val=200, mux_epochs=1), progress=False, workdir=tmp_path)
    assert len(r["models"]) == 6 and r["best"] == max(r["models"], key=lambda m: m["flops"])["name"]
    assert sum(r["cheapest"]["share"]) == pytest.approx(1.0)
    assert r["random"]["share"] == pytest.approx(r["cheapest"]["share"], abs=0.08)    # the same shares, drawn
    assert r["cascade"]["flops"] >= next(m["flops"] for m in r["models"])             # at least the cheapest runs
    assert 0.0 <= r["oracle_gain"] <= r["oracle_accuracy"] <= 1.0
    assert r["cheapest"]["flops"] > r["multiplexer_flops"] > 0                         # eq. 14 includes the mux


def test_calibration_measures_every_zoo_model_on_the_device_and_in_the_cloud(zoo_bundle, tmp_path):
    from adaptinf.calib import measure
    from adaptinf.calib.calibrate import build_profile
    from adaptinf.daemon.device_models import DeviceModels

    b = load_bundle(zoo_bundle)
    models = DeviceModels.load(b, "onnxruntime", str(tmp_path))
    device = measure.measure_device(b, models, None, 5.0, runs=3, progress=False)
    # the cloud's timing reply names every target it serves: the full model and each zoo model
    cloud = {"full": {"ms": 0.5, "ms_std": 0.05}, **{n: {"ms": 0.1 * (k + 1), "ms_std": 0.01}
                                                     for k, n in enumerate(b.zoo.models)}}
    profile = build_profile(b, {"device": device, "cloud": cloud}, ("device", "cloud"))
    timed = {m.name: m for m in profile.models}
    assert set(b.zoo.models) <= set(timed)
    for k, name in enumerate(b.zoo.models):
        if name != b.full_model.name:
            assert timed[name].device_ms == device[f"zoo:{name}"]["ms"] > 0
            assert timed[name].cloud_ms == pytest.approx(0.1 * (k + 1))


def test_the_multiplexer_policy_picks_a_zoo_model_per_frame_and_places_it(zoo_bundle, tmp_path, tmp_short,
                                                                           glyph_frames):
    from adaptinf.policies.multiplexer import select_cheapest
    from adaptinf.rig.processes import spawn_cloud
    from adaptinf.toolchain import zoo_multiplexer as zm

    copy = tmp_path / "zoo"
    shutil.copytree(zoo_bundle, copy)
    result = zm.evaluate(copy, zm.ZooMuxConfig(n_mux=400, n_val=200, mux_epochs=1), progress=False)
    zm.attach(copy, result)
    b = load_bundle(copy)
    assert b.zoo.multiplexer == "zoo_multiplexer" and list(b.zoo.models) == result["names"]
    cloud = spawn_cloud(copy)
    config = parse_config({"daemon": {"api_endpoint": f"ipc://{tmp_short}/a.sock", "bundle": str(copy),
                                      "state_dir": str(tmp_short), "warmup_runs": 3},
                           "policy": {"name": "multiplexer"},
                           "cloud": {"endpoint": cloud.endpoint, "timeout_ms": 2000.0}})
    daemon = Daemon(config).start()
    try:
        with Client(f"ipc://{tmp_short}/a.sock", timeout_s=10) as c:
            replies = [c.infer(glyph_frames.images[i:i + 1]) for i in range(12)]
            private = [c.infer(glyph_frames.images[i:i + 1], mode="private") for i in range(4)]
    finally:
        daemon.stop()
        cloud.stop()
    for r in replies + private:
        s = r.served_by
        assert s["placement"] == "multiplex" and len(s["w"]) == len(b.zoo.models)
        expected = b.zoo.models[int(select_cheapest(np.array(s["w"]), b.zoo.threshold)[0].argmax())]
        assert s["model"] == expected                                   # Algorithm 2 on this frame's w
        assert s["wants"] in ("device", "cloud") and s["answered_by"] in ("device", "cloud")
    assert all(r.served_by["wants"] == "device" for r in private)       # private: nothing leaves the device


def test_dynamic_duo_configures_on_a_zoo(zoo_bundle, tmp_path):
    """`adaptinf build duo` on a zoo: the big model is its most accurate, the little a cheaper
    zoo model, the probes set on the zoo's own validation split."""
    from adaptinf.toolchain.speculative_build import configure, pool_splits

    copy = laddered_zoo_copy(zoo_bundle, tmp_path / "zoo")     # the tiny zoo's best may be its cheapest
    _, val, test, classes = pool_splits(copy)
    data = load_bundle(copy).data
    assert (len(val.labels), len(test.labels)) == (data["n_val"], data["n_test"])
    section = configure(copy)
    b = load_bundle(copy)
    assert section["big"] == b.full_model.name == max(b.models, key=lambda m: m.accuracy).name
    assert section["little"] in b.zoo.models and b.model(section["little"]).flops < b.full_model.flops
    assert b.dynamic_duo.little == section["little"] and len(b.dynamic_duo.thresholds) == len(classes)
