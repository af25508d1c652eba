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
