"""`adaptinf build frame-pool` (toolchain/frame_pool.py): a pool's small models behind an
area downscale, on a big model's larger frame."""

import json
from pathlib import Path

import numpy as np
import pytest

from adaptinf.bundle import load_bundle
from adaptinf.engines import open_engine
from adaptinf.toolchain.frame_pool import build_frame_pool
from adaptinf.toolchain.speculative_build import pool_splits

pytestmark = pytest.mark.slow
GLYPHNET224 = Path(__file__).resolve().parents[1] / "bundles" / "glyphnet224"


@pytest.fixture(scope="module")
def frame_pool(zoo_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("frame-pool") / "bundle"
    build_frame_pool(GLYPHNET224, zoo_bundle, out, n_val=16, n_test=24)
    return out


def area_downscale(frames: np.ndarray, size: int) -> np.ndarray:
    n, h, w, c = frames.shape
    return np.round(frames.reshape(n, size, h // size, size, w // size, c).mean(axis=(2, 4))).astype(np.uint8)


def test_each_small_model_answers_the_camera_frame_as_it_answers_the_frame_downscaled(frame_pool, zoo_bundle):
    bundle, zoo = load_bundle(frame_pool), load_bundle(zoo_bundle)
    assert bundle.input.shape == (1, 224, 224, 3) and bundle.full_model.role == "big"
    frames = np.random.default_rng(0).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    small = area_downscale(frames, 32)
    for name in zoo.zoo.models:
        on_frame = open_engine(bundle.path(bundle.model(name).file), "onnxruntime").run(frames)
        alone = open_engine(zoo.path(zoo.model(name).file), "onnxruntime").run(small)
        np.testing.assert_allclose(on_frame, alone, rtol=1e-5, atol=1e-5)
        assert bundle.model(name).flops == pytest.approx(zoo.model(name).flops, rel=1e-3)


def test_its_frames_are_fresh_renders_at_the_big_models_size(frame_pool):
    data = json.loads((frame_pool / "manifest.json").read_text())["data"]
    _, val, test, _ = pool_splits(frame_pool)
    assert val.images.shape == (16, 224, 224, 3) and test.images.shape == (24, 224, 224, 3)
    assert data["size"] == 224 and data["n_train"] == 0
    bundle = load_bundle(frame_pool)
    big = open_engine(bundle.path(bundle.full_model.file), "onnxruntime").run(test.images[:8])
    assert big.shape == (8, 16)


def test_bundles_that_answer_other_classes_are_refused(zoo_bundle, tmp_path):
    manifest = json.loads((zoo_bundle / "manifest.json").read_text())
    assert manifest["classes"] == json.loads((GLYPHNET224 / "manifest.json").read_text())["classes"]
    import shutil

    from adaptinf.bundle import write_manifest

    other = tmp_path / "other"
    shutil.copytree(zoo_bundle, other)
    manifest["classes"] = manifest["classes"][::-1]
    for key in ("files", "format", "version"):
        manifest.pop(key, None)
    write_manifest(other, manifest)
    with pytest.raises(SystemExit, match="same"):
        build_frame_pool(GLYPHNET224, other, tmp_path / "out")
