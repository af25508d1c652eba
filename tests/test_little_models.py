"""`adaptinf build little` (toolchain/little_models.py): width, resolution, double-shot and
custom-float small models stored in a pool bundle, and served by adaptinfd."""

import json
import shutil

import msgpack

import numpy as np
import onnxruntime as ort
import pytest
import torch

from adaptinf.bundle import BundleError, load_bundle, write_manifest
from adaptinf.engines import open_engine
from adaptinf.engines.base import EngineError
from adaptinf.packed_floats import load_onnx_model, load_packed
from adaptinf.toolchain import custom_float as cf
from adaptinf.toolchain.little_models import LittleConfig, build_littles, tensor_bytes
from adaptinf.toolchain.models import glyph_resnet
from adaptinf.toolchain.onnx_export import export_onnx
from adaptinf.toolchain.onnx_flops import count_flops, weighted_layers

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def littles(mux_build, tmp_path_factory):
    """`adaptinf build little` on a copy of the tiny pool, through the CLI."""
    from adaptinf.programs.cli import main

    out = tmp_path_factory.mktemp("little") / "bundle"
    shutil.copytree(mux_build[0], out)
    assert main(["build", "little", "--bundle", str(out), "--width", "8", "--resolutions", "16", "--keep", "0.2",
                 "--custom-floats", "exact", "--epochs", "1", "--n-explore", "48"]) == 0
    models = json.loads((out / "manifest.json").read_text())["models"]
    return out, {m["name"]: m for m in models if m["role"] == "little"}


def test_a_second_build_replaces_the_small_models_and_records_its_config(littles, tmp_path):
    out = tmp_path / "bundle"
    shutil.copytree(littles[0], out)
    config = LittleConfig(width=8, resolutions=(), keep=0.0, custom_floats=(), epochs=1)
    assert [e["name"] for e in build_littles(out, config, progress=False)] == ["dense_w8"]
    manifest = json.loads((out / "manifest.json").read_text())
    names = [m["name"] for m in manifest["models"]]
    assert names.count("dense_w8") == 1 and "res16_w8" in names     # replaced, others kept
    assert manifest["data"]["little_config"]["keep"] == 0.0
    load_bundle(out)


def test_the_resolution_multiplier_scales_conv_flops_by_rho_squared(tmp_path):
    example = torch.zeros(1, 32, 32, 3, dtype=torch.uint8)
    flops = {}
    for r in (32, 16):
        model = glyph_resnet(16, 8, r).eval()
        export_onnx(model, example, tmp_path / f"r{r}.onnx", "image", "logits")
        convs = [layer.flops for layer in weighted_layers(tmp_path / f"r{r}.onnx") if layer.op == "Conv"]
        flops[r] = sum(convs)
        frame = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
        onnx_out = ort.InferenceSession(str(tmp_path / f"r{r}.onnx")).run(None, {"image": frame})[0]
        assert np.allclose(onnx_out, model(torch.from_numpy(frame)).detach().numpy(), atol=1e-4)
    assert flops[16] / flops[32] == pytest.approx(0.25, rel=1e-6)    # eq. 5.3 with rho = 1/2
    with pytest.raises(ValueError, match="resolution"):
        glyph_resnet(16, 8, 40)


@pytest.mark.parametrize("bad, message", [({"width": 4}, "width"), ({"resolutions": (32,)}, "resolutions"),
                                          ({"keep": 1.0}, "keep"), ({"custom_floats": ("exactish",)}, "variants")])
def test_a_bad_little_config_is_refused_before_any_training(bad, message):
    with pytest.raises(ValueError, match=message):
        LittleConfig(**bad)


def test_stored_size_takes_the_cheaper_of_dense_and_bitmap_plus_nonzeros():
    weight = np.zeros(100, np.float32)
    weight[:10] = 1.0
    assert tensor_bytes(weight, 32) == (100 + 10 * 32) / 8
    assert tensor_bytes(np.ones(100, np.float32), 8) == 100 * 8 / 8


def test_build_little_adds_described_models_the_bundle_checks(littles):
    out, entries = littles
    bundle = load_bundle(out)
    assert set(entries) == {"dense_w8", "res16_w8", "pruned80_w8", "cf_exact_w8"}
    n_val = json.loads((out / "manifest.json").read_text())["data"]["n_val"]
    for name, e in entries.items():
        model = bundle.model(name)
        assert model.role == "little" and model.size_bytes > 0 and model.activation_bytes > 0
        assert sum(sum(model.confidence[k]) for k in ("correct", "correctable", "uncorrectable")) == n_val
        assert model.derivation["method"] == e["derivation"]["method"]
    dense, res, pruned, custom = (bundle.model(n) for n in ("dense_w8", "res16_w8", "pruned80_w8", "cf_exact_w8"))
    assert res.flops < 0.3 * dense.flops and res.activation_bytes < 0.3 * dense.activation_bytes
    # double shot keeps 20% of the weights: the sparse FLOPs and the stored size shrink with them
    assert pruned.derivation["sparsity"] >= 0.79
    # (per layer: SNIP keeps more of the early convs, whose weights are used at every pixel)
    layers = weighted_layers(out / pruned.file)
    assert pruned.flops == int(sum(layer.flops * np.count_nonzero(layer.weight) / layer.weight.size
                                   for layer in layers))
    assert pruned.flops < 0.5 * dense.flops == 0.5 * count_flops(out / pruned.file)
    assert pruned.size_bytes < 0.35 * dense.size_bytes
    # custom floats: the same FLOPs (computed in full precision), fewer stored bytes
    assert custom.flops == dense.flops
    assert custom.size_bytes < 0.8 * dense.size_bytes
    assert custom.activation_bytes < dense.activation_bytes


def test_custom_float_weights_in_the_graph_are_values_their_formats_hold(littles):
    out, entries = littles
    derivation = entries["cf_exact_w8"]["derivation"]
    formats = [cf.Format(**f) for f in derivation["weights"].values()]

    def representable(weight):
        w = torch.from_numpy(weight.copy())
        return any(torch.equal(cf.quantize(w, fmt), w) for fmt in formats)

    custom = [layer.weight for layer in weighted_layers(out / entries["cf_exact_w8"]["file"])]
    dense = [layer.weight for layer in weighted_layers(out / entries["dense_w8"]["file"])]
    assert all(representable(w) for w in custom)
    assert not all(representable(w) for w in dense)       # the check can tell the difference
    # and each layer's input activation is rounded inside the graph
    graph_ops = {node.op_type for node in load_onnx_model(out / entries["cf_exact_w8"]["file"]).graph.node}
    assert {"Floor", "Round"} <= graph_ops


def test_build_duo_can_be_told_which_little_speculates(littles, tmp_path):
    from adaptinf.toolchain.speculative_build import configure

    out = tmp_path / "bundle"
    shutil.copytree(littles[0], out)
    section = configure(out, little="cf_exact_w8")
    assert section["little"] == "cf_exact_w8"
    assert {"dense_w8", "res16_w8", "pruned80_w8", "cf_exact_w8", "pool_w8"} <= set(section["confidence"])
    with pytest.raises(SystemExit, match="not a candidate"):
        configure(out, little="no_such_model")


def _serve(bundle_dir, tmp, frames, policy, cloud_endpoint=None) -> list:
    """Every frame through a real adaptinfd on `bundle_dir` under `policy`."""
    from adaptinf.client import Client
    from adaptinf.daemon.config import parse_config
    from adaptinf.daemon.service import Daemon

    raw = {"daemon": {"api_endpoint": f"ipc://{tmp}/a.sock", "bundle": str(bundle_dir), "state_dir": str(tmp),
                      "warmup_runs": 2},
           "policy": {"name": policy}}
    if cloud_endpoint:
        raw["cloud"] = {"endpoint": cloud_endpoint, "timeout_ms": 3000.0}
    daemon = Daemon(parse_config(raw)).start()
    try:
        with Client(f"ipc://{tmp}/a.sock", timeout_s=10) as c:
            return [c.infer(f) for f in frames]
    finally:
        daemon.stop()


def test_adaptinfd_serves_a_custom_float_little(littles, tmp_short):
    from adaptinf.toolchain.speculative_build import configure

    out = tmp_short / "bundle"
    shutil.copytree(littles[0], out)
    configure(out, little="cf_exact_w8")
    frames = np.random.default_rng(3).integers(0, 256, (6, 1, 32, 32, 3), dtype=np.uint8)
    engine = open_engine(out / littles[1]["cf_exact_w8"]["file"], "onnxruntime")   # expands the packed weights
    results = _serve(out, tmp_short, frames, "dynamic-duo")
    for frame, r in zip(frames, results):
        assert r.served_by["little"] == "cf_exact_w8"
        if not r.served_by["recovered"]:
            assert r.label == int(engine.run(frame)[0].argmax())


def test_custom_float_weights_are_stored_packed_and_the_loader_expands_them(littles, tmp_path):
    import onnx

    out, entries = littles
    entry = entries["cf_exact_w8"]
    graph, packed = out / entry["file"], out / entry["packed_weights"]
    assert packed.suffix == ".cfw" and packed.stem == graph.stem
    manifest = json.loads((out / "manifest.json").read_text())
    assert entry["packed_weights"] in manifest["files"]                  # hashed like the graph
    # the graph holds no float32 copy of a compressed weight: those are external, expanded on load
    stored = onnx.load(str(graph), load_external_data=False)
    external = [i for i in stored.graph.initializer if i.data_location == onnx.TensorProto.EXTERNAL]
    assert len(external) == len(entry["derivation"]["weights"]) and not any(i.raw_data for i in external)
    # the packed file is the size the manifest claims for those weights (plus per-tensor rounding and header)
    expanded = dict(load_packed(graph))
    biases = sum(onnx.numpy_helper.to_array(i).nbytes for i in stored.graph.initializer
                 if i.data_location != onnx.TensorProto.EXTERNAL)
    payload = sum(len(t["codes"]) + len(t.get("bitmap", b"")) for t in msgpack.unpackb(packed.read_bytes())["tensors"])
    assert payload == pytest.approx(entry["size_bytes"] - biases, abs=len(expanded))     # a byte's rounding each
    assert packed.stat().st_size - payload < 100 * len(expanded)          # names, shapes, formats
    # expanded, the weights equal the float32 values the build measured (its test accuracy is the packed model's)
    frames = np.random.default_rng(5).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    engine = open_engine(graph, "onnxruntime")
    reference = load_onnx_model(graph)                    # the same weights inlined: a plain float32 graph
    onnx.save(reference, str(tmp_path / "inline.onnx"))
    plain = ort.InferenceSession(str(tmp_path / "inline.onnx")).run(None, {"image": frames})[0]
    assert np.array_equal(engine.run(frames), plain)
    # a damaged packed file is refused by name, at load
    copy = tmp_path / "bundle"
    shutil.copytree(out, copy)
    (copy / entry["packed_weights"]).write_bytes(packed.read_bytes()[:-40])
    with pytest.raises(BundleError, match="cfw"):
        load_bundle(copy)
    with pytest.raises(EngineError, match="packed weights"):
        open_engine(copy / entry["file"], "onnxruntime")
    (copy / entry["packed_weights"]).unlink()
    with pytest.raises(BundleError, match="missing file"):
        load_bundle(copy)


def test_the_manifest_refuses_malformed_little_fields(littles, tmp_path):
    out = tmp_path / "bundle"
    shutil.copytree(littles[0], out)
    manifest = json.loads((out / "manifest.json").read_text())
    entry = next(m for m in manifest["models"] if m["name"] == "res16_w8")
    for key, bad, message in (("size_bytes", -1, "size_bytes"),
                              ("confidence", {"bins": [0, 1], "correct": [1, 2]}, "confidence")):
        saved = entry[key]
        entry[key] = bad
        manifest.pop("files", None)
        write_manifest(out, manifest)
        with pytest.raises(BundleError, match=message):
            load_bundle(out)
        entry[key] = saved


def test_sieve_in_adaptinfd_speculates_with_the_little_cheapest_on_the_link(littles, tmp_short):
    """The section's own little recovers every frame (P_r 1) and res16_w8 none (P_r 0): over a
    3G uplink SIEVE's selector must speculate with res16_w8, and the daemon must run it."""
    from adaptinf.rig.link_shaper import LINK_PROFILES, LinkShaper
    from adaptinf.rig.processes import spawn_cloud
    from adaptinf.toolchain.speculative_build import configure

    out = tmp_short / "bundle"
    shutil.copytree(littles[0], out)
    configure(out, little="dense_w8")
    manifest = json.loads((out / "manifest.json").read_text())
    duo, classes = manifest["dynamic_duo"], len(manifest["classes"])
    duo.update(thresholds=[1.0] * classes, recovery_rate=1.0)
    duo["alternatives"] = [{"little": "res16_w8", "thresholds": [0.0] * classes,
                            "power_saving_thresholds": [0.0] * classes, "recovery_rate": 0.0,
                            "power_saving_recovery_rate": 0.0}]
    manifest.pop("files")
    write_manifest(out, manifest)
    assert load_bundle(out).dynamic_duo.speculative("res16_w8").recovery_rate == 0.0

    frames = np.random.default_rng(5).integers(0, 256, (6, 1, 32, 32, 3), dtype=np.uint8)
    session = ort.InferenceSession(str(out / littles[1]["res16_w8"]["file"]))
    cloud = spawn_cloud(out)
    host, port = cloud.endpoint.removeprefix("tcp://").rsplit(":", 1)
    shaper = LinkShaper((host, int(port)), LINK_PROFILES["3g"]).start()
    try:
        results = _serve(out, tmp_short, frames, "sieve", shaper.endpoint)
    finally:
        shaper.stop()
        cloud.stop()
    for frame, r in zip(frames, results):
        assert r.served_by["little"] == "res16_w8" and not r.served_by["recovered"]
        assert r.label == int(session.run(None, {"image": frame})[0].argmax())


def test_the_manifest_refuses_an_alternative_little_it_does_not_have(littles, tmp_path):
    from adaptinf.toolchain.speculative_build import configure

    out = tmp_path / "bundle"
    shutil.copytree(littles[0], out)
    section = configure(out)
    assert {a["little"] for a in section["alternatives"]} == {c["little"] for c in section["candidates"]}
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["dynamic_duo"]["alternatives"][0]["little"] = "no_such_model"
    manifest.pop("files")
    write_manifest(out, manifest)
    with pytest.raises(BundleError, match="no_such_model"):
        load_bundle(out)


def test_calibration_predicts_the_littles_time_and_energy_with_its_layer_regression(littles, tmp_short):
    """Thesis 4.3.2: L_m and E_m of a speculative model from the per-layer regression. The
    device runs the pool (measured through an emulated INA226 on a 7 W board); the little
    models are predicted, and adaptinfd plans SIEVE with the predictions."""
    import time

    from adaptinf.calib.calibrate import Rig, calibrate
    from adaptinf.calib.layer_features import graph_features
    from adaptinf.calib.regression import LayerRegression
    from adaptinf.daemon.config import parse_config
    from adaptinf.daemon.device_models import DeviceModels
    from adaptinf.daemon.link_estimator import LinkEstimator
    from adaptinf.daemon.power_monitor import PowerMonitor
    from adaptinf.daemon.service import Daemon
    from adaptinf.drivers.ina226 import INA226
    from adaptinf.drivers.power_sources import Ina226Source
    from adaptinf.rig.ina226_emulator import Ina226Emulator
    from adaptinf.toolchain.speculative_build import configure

    out = tmp_short / "bundle"
    shutil.copytree(littles[0], out)
    configure(out, little="cf_exact_w8")
    bundle = load_bundle(out)
    dev = INA226(Ina226Emulator(lambda t: (7.0 / 5.0 * 0.002, 5.0), time.monotonic))    # 1.4 A at 5 V
    dev.configure(averaging=1)
    dev.calibrate(0.002, 10.0)
    power = PowerMonitor(Ina226Source(dev), rate_hz=200).start()
    try:
        rig = Rig(bundle, DeviceModels.load(bundle, "onnxruntime", str(tmp_short)), None, LinkEstimator(), power, 5.0)
        profile = calibrate(rig, tmp_short / "profile.json", components=("device",), runs=6, progress=False)
    finally:
        power.stop()
    measured = profile.extra["measurements"]["device"]
    assert all(m["power_source"].startswith("sensor:") and m["power_w"] == pytest.approx(7.0, rel=0.1)
               for m in measured.values())                                  # the sensor's board, not 5 W
    littles_ = {m.name for m in bundle.models if m.role == "little"}
    assert not littles_ & {k.removeprefix("model:") for k in measured}          # the device never ran them
    reg = profile.extra["regression"]
    assert set(reg["predicted"]) == littles_
    time_fit, energy_fit = (LayerRegression.from_json(reg[k]) for k in ("device", "device_energy"))
    models = {m.name: m for m in profile.models}
    for name in littles_:
        features = graph_features(bundle.path(bundle.model(name).file))
        assert models[name].device_ms == pytest.approx(time_fit.predict(features))
        assert models[name].device_power_w * models[name].device_ms == pytest.approx(energy_fit.predict(features))
    # adaptinfd plans with them: L_m / L_full and E_m / E_full from the profile
    raw = {"daemon": {"api_endpoint": f"ipc://{tmp_short}/a.sock", "bundle": str(out), "state_dir": str(tmp_short),
                      "profile": str(tmp_short / "profile.json")},
           "policy": {"name": "sieve"}}
    daemon = Daemon(parse_config(raw)).start()
    try:
        duo, full = daemon.policies["dynamic-duo"], models[bundle.full_model.name]
        little = models["cf_exact_w8"]
        assert duo.little_share == pytest.approx(little.device_ms / full.device_ms)
        assert duo.little_energy_share == pytest.approx(
            little.device_ms * little.device_power_w / (full.device_ms * full.device_power_w))
    finally:
        daemon.stop()
