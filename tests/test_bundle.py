import json
import shutil

import pytest

from adaptinf.bundle import VERSION, BundleError, load_bundle
from conftest import DEMO_BUNDLE


@pytest.fixture
def copy(tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(DEMO_BUNDLE, dst)
    return dst


def edit_manifest(root, change):
    path = root / "manifest.json"
    raw = json.loads(path.read_text())
    change(raw)
    path.write_text(json.dumps(raw))


def test_round_trip_of_the_demo_bundle(bundle):
    assert bundle.name == "glyphnet" and bundle.input.shape == (1, 32, 32, 3) and bundle.input.dtype == "uint8"
    assert [p.name for p in bundle.split.points] == [f"RB{i}" for i in range(1, 7)]
    assert len(bundle.manifest_sha256) == 64
    for p in bundle.split.points:
        assert p.upload_bytes < bundle.input.nbytes  # every point uploads less than the raw frame
        assert p.accuracy >= bundle.split.baseline_accuracy - bundle.split.accuracy_loss_bound - 0.01


def test_corrupt_file_is_named(copy):
    path = copy / "RB3.tail.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"RB3\.tail\.onnx does not match its sha256"):
        load_bundle(copy)


def test_missing_file_is_named(copy):
    (copy / "RB2.head.onnx").unlink()
    with pytest.raises(BundleError, match=r"missing file RB2\.head\.onnx"):
        load_bundle(copy)


def test_wrong_input_spec_is_refused(copy):
    edit_manifest(copy, lambda m: m["input"].update(shape=[1, 64, 64, 3]))
    with pytest.raises(BundleError, match=r"preprocess makes NHWC \[1, 32, 32, 3\] but the input is"):
        load_bundle(copy)
    edit_manifest(copy, lambda m: m.pop("preprocess"))
    with pytest.raises(BundleError, match=r"input spec"):
        load_bundle(copy)


def test_newer_manifest_version_is_refused_with_advice(copy):
    edit_manifest(copy, lambda m: m.update(version=VERSION + 1))
    with pytest.raises(BundleError, match=r"newer than this adaptinf supports"):
        load_bundle(copy)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="not a bundle"):
        load_bundle(tmp_path)
    (tmp_path / "manifest.json").write_text("{broken")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(tmp_path)


def test_bad_d_r_is_refused(copy):
    edit_manifest(copy, lambda m: m["split"]["points"][0].update(D_r=0))
    with pytest.raises(BundleError, match=r"D_r=0 outside"):
        load_bundle(copy)


# ---- every field, every wrong shape: a BundleError naming the manifest, never a traceback ----
def _with_every_section(raw: dict) -> dict:
    """The demo manifest plus the optional sections (multiplexer, dynamic_duo, mmnet), pointing
    at its one model, so the fuzz below reaches their fields too."""
    n = len(raw["classes"])
    little = {"little": "full", "thresholds": [0.5] * n, "power_saving_thresholds": [0.4] * n,
              "recovery_rate": 0.2, "power_saving_recovery_rate": 0.3}
    return dict(raw, multiplexer={"pool": ["full", "full"], "costs": [1.0, 2.0], "model": "full", "threshold": 0.5,
                                  "pair": {"model": "full", "device": "full", "cloud": "full", "threshold": 0.5}},
                dynamic_duo=dict(little, big="full", target_accuracy=0.8, alternatives=[dict(little)]),
                mmnet={"minions": ["full", "full"], "master": "full", "thresholds": [0.5, 0.5],
                       "recovery_rate": 0.1, "target_accuracy": 0.8})


def _paths(value, path=()):
    """Every key of every object, and the first element of every list."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield path + (key,)
            yield from _paths(child, path + (key,))
    elif isinstance(value, list) and value:
        yield path + (0,)
        yield from _paths(value[0], path + (0,))


def _replaced(raw, path, new):
    raw = json.loads(json.dumps(raw))
    parent = raw
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = new
    return raw


def test_no_manifest_field_of_any_wrong_shape_gives_a_traceback(tmp_path):
    base = _with_every_section(json.loads((DEMO_BUNDLE / "manifest.json").read_text()))
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(base))
    load_bundle(tmp_path, verify=False)                     # the augmented manifest itself is valid
    refused = attempts = 0
    for field_path in _paths(base):
        if field_path[0] in ("files", "created"):            # hashes: checked with the files, not here
            continue
        for wrong in ("x", None, [], {}, -1, 1.5, float("inf")):
            attempts += 1
            path.write_text(json.dumps(_replaced(base, field_path, wrong)))
            try:
                load_bundle(tmp_path, verify=False)
            except BundleError as exc:
                assert "manifest" in str(exc)
                refused += 1
    # the fuzz reached the fields, and most wrong shapes are refused (free-form ones such as
    # data.* and derivation are kept as they are)
    assert attempts > 400 and refused > attempts / 2, (refused, attempts)


@pytest.mark.parametrize("field, value, message", [
    (("models", 0, "params"), "x", r"models\[0\]\.params has the wrong type"),
    (("models", 0, "params"), None, r"models\[0\]\.params has the wrong type"),
    (("models", 0, "params"), [], r"models\[0\]\.params has the wrong type"),
    (("models", 0, "params"), {}, r"models\[0\]\.params has the wrong type"),
    (("split", "points", 1, "search"), None, r"split\.points\[1\]\.search has the wrong type"),
    (("split", "points", 0, "reduced_shape"), [0], r"split\.points\[0\]\.reduced_shape must be a list of positive"),
])
def test_a_malformed_field_is_named(copy, field, value, message):
    edit_manifest(copy, lambda m: _set(m, field, value))
    with pytest.raises(BundleError, match=message):
        load_bundle(copy)


def _set(raw, path, value):
    for key in path[:-1]:
        raw = raw[key]
    raw[path[-1]] = value


def test_a_truncated_model_whose_hash_was_updated_is_refused_by_name(copy):
    from adaptinf.bundle import sha256_file

    model = copy / "RB2.head.onnx"
    model.write_bytes(model.read_bytes()[:300])
    edit_manifest(copy, lambda m: m["files"]["RB2.head.onnx"].update(sha256=sha256_file(model)))
    with pytest.raises(BundleError, match=r"RB2\.head\.onnx is not a model onnxruntime can load"):
        load_bundle(copy)
