"""A user's ONNX model served as any bundle is: a real adaptinfd with a real adaptinf-cloud,
camera frames through the bundle's preprocessing, adaptinf-calib profiling every point and
`adaptinf plan` choosing among them, and the Triton export carrying its outputs.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest

from adaptinf.bundle import load_bundle
from adaptinf.client import ApiFailure, Client
from adaptinf.rig.processes import spawn_cloud, spawn_daemon, write_daemon_config
from adaptinf.toolchain.onnx_split import OnnxSplitConfig, build_onnx_split, read_image
from adaptinf.toolchain.preprocess_graph import preprocess_graph

published = pytest.importorskip("adaptinf.rig.published_models")
pytestmark = pytest.mark.slow
SIZE = 224                                 # the camera test's: an ImageNet-sized model


@pytest.fixture(scope="module")
def resnet224(tmp_path_factory):
    """ResNet-18 (quarter width) at 224x224, built as the README says: --points 4 --samples 32."""
    import torch

    root = tmp_path_factory.mktemp("r224")
    torch.manual_seed(3)
    source = published.export(published.randomise_batchnorm(published.ResNet18(12, width=16)), SIZE,
                              root / "resnet18.onnx")
    build_onnx_split(source, root / "bundle", OnnxSplitConfig(points=4, samples=32), progress=False)
    return source, root / "bundle"


@pytest.fixture(scope="module")
def served(resnet224, tmp_path_factory):
    """(api endpoint, state dir, config path) of adaptinfd serving it with a cloud worker."""
    _, bundle = resnet224
    tmp = tmp_path_factory.mktemp("d", numbered=True)
    short = __import__("tempfile").mkdtemp(prefix="ai-")
    cloud = spawn_cloud(bundle)
    api = f"ipc://{short}/api.sock"
    config = write_daemon_config(tmp / "adaptinfd.toml",
                                 daemon={"api_endpoint": api, "bundle": str(bundle), "state_dir": str(tmp),
                                         "warmup_runs": 3},
                                 device={"emulate_slowdown": 30.0},      # a Jetson-class device
                                 cloud={"endpoint": cloud.endpoint, "radio": "wifi", "timeout_ms": 3000.0})
    daemon = spawn_daemon(config)
    try:
        yield api, tmp, config
    finally:
        daemon.stop()
        cloud.stop()


def reference(source, x: np.ndarray) -> np.ndarray:
    s = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def test_every_placement_answers_the_models_exact_tensor(resnet224, served):
    source, root = resnet224
    bundle = load_bundle(root)
    api, _, _ = served
    rng = np.random.default_rng(2024)
    with Client(api, timeout_s=20) as c:
        (model,) = c.models()
        assert model["outputs"] == [{"name": "output", "dtype": "float32", "shape": [1, 12]}]
        placements = model["partitions"]
        assert placements[:2] == ["mobile-only", "cloud-only"] and len(placements) == 2 + len(bundle.split.points)
        for placement in placements:
            for _ in range(3):
                x = rng.standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)
                r = c.infer(x, policy=placement)
                assert r.served_by["partition"] == placement and not r.served_by["fallback"]
                assert r.label is None and r.scores is None          # no classes declared
                out, ref = r.outputs["output"], reference(source, x)
                assert out.shape == ref.shape and out.dtype == np.float32
                if placement in ("mobile-only", "cloud-only"):
                    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
                else:
                    assert out.argmax() == ref.argmax()
                    if bundle.point(placement).upload == "uint8":
                        assert r.served_by["upload_bytes"] == int(np.prod(bundle.point(placement).reduced_shape))
        # the batch of one may be left out
        x = rng.standard_normal((3, SIZE, SIZE)).astype(np.float32)
        np.testing.assert_allclose(c.infer(x, policy="mobile-only").outputs["output"], reference(source, x[None]),
                                   rtol=1e-4, atol=1e-4)


def test_a_camera_frame_is_answered_and_a_frame_it_cannot_take_is_refused(resnet224, served):
    source, root = resnet224
    api, _, _ = served
    rng = np.random.default_rng(5)
    frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    # what the bundle's preprocessing makes of it, run on its own
    prep = ort.InferenceSession(str(root / "preprocess.onnx"), providers=["CPUExecutionProvider"])
    tensor = prep.run(None, {"frame": frame})[0]
    assert tensor.shape == (1, 3, SIZE, SIZE)
    with Client(api, timeout_s=20) as c:
        r = c.infer(frame, policy="mobile-only")
        np.testing.assert_allclose(r.outputs["output"], reference(source, tensor), rtol=1e-4, atol=1e-4)
        assert r.latency_ms["preprocess"] > 0
        # OpenCV's channel order, said so, gives the same answer as the RGB frame
        bgr = c.infer(np.ascontiguousarray(frame[..., ::-1]), policy="mobile-only", color="BGR")
        np.testing.assert_allclose(bgr.outputs["output"], r.outputs["output"], rtol=1e-5, atol=1e-5)
        assert c.infer(frame, policy="cloud-only").outputs["output"].shape == (1, 12)
        for bad, why in ((np.zeros((480, 640, 4), np.uint8), "RGBA"), (np.zeros((480, 640), np.uint8), "greyscale"),
                         (np.zeros((480, 640, 3), np.float32), "camera frame: uint8")):
            with pytest.raises(ApiFailure) as exc:
                c.infer(bad)
            assert exc.value.code == "INVALID_ARG" and why in exc.value.message
        with pytest.raises(ApiFailure, match="color must be one of"):
            c.infer(frame, color="YUV")


def test_calibration_profiles_every_point_and_plan_chooses_among_them(resnet224, served, tmp_path):
    _, root = resnet224
    _, _, config = served
    bundle = load_bundle(root)
    out = tmp_path / "profile.json"
    done = subprocess.run([sys.executable, "-m", "adaptinf.calib.main", "--config", str(config), "--out", str(out),
                           "--report", str(tmp_path / "report"), "--runs", "3", "--probes", "2",
                           "--only", "device,cloud,link"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    profile = json.loads(out.read_text())
    names = {p["name"] for p in profile["partitions"]}
    assert names == {"mobile-only", "cloud-only", *(p.name for p in bundle.split.points)}
    chosen = set()
    for uplink in ("0.5Mbit", "20Mbit", "1000Mbit"):
        plan = subprocess.run([sys.executable, "-m", "adaptinf", "plan", "--profile", str(out), "--uplink", uplink,
                               "--rtt-ms", "5", "--json"], capture_output=True, text=True, timeout=60)
        assert plan.returncode == 0, plan.stderr
        body = json.loads(plan.stdout)
        assert {c["name"] for c in body["candidates"]} == names
        chosen.add(body["chosen"])
    assert len(chosen) >= 2          # the choice moves with the link


def test_the_triton_export_names_the_cut_models_own_tensors(resnet224, tmp_path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from adaptinf.cloud.triton_repository import export_repository

    _, root = resnet224
    bundle = load_bundle(root)
    names = export_repository(bundle, tmp_path)
    assert len(names) == 1 + len(bundle.split.points)
    for point in bundle.split.points:
        cfg = text_format.Parse((tmp_path / f"{bundle.name}_{point.name}" / "config.pbtxt").read_text(),
                                model_config_pb2.ModelConfig())
        tail = ort.InferenceSession(str(bundle.path(point.tail)), providers=["CPUExecutionProvider"])
        assert cfg.input[0].name == tail.get_inputs()[0].name and cfg.output[0].name == tail.get_outputs()[0].name
        assert list(cfg.output[0].dims) == [12]


@pytest.mark.parametrize("resize", ["stretch", "letterbox", "center-crop"])
def test_the_preprocessing_graph_fits_any_frame_as_declared(resize, tmp_path):
    from adaptinf.bundle import PreprocessSpec

    spec = PreprocessSpec("p.onnx", resize, (32, 64), "RGB", "NCHW", 1 / 255, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    s = ort.InferenceSession(preprocess_graph(spec, "float32").SerializeToString(), providers=["CPUExecutionProvider"])
    # a frame of the model's own size is only normalised
    frame = np.random.default_rng(0).integers(0, 256, (32, 64, 3), dtype=np.uint8)
    np.testing.assert_allclose(s.run(None, {"frame": frame})[0][0],
                               (frame.transpose(2, 0, 1) / 255 - 0.5) / 0.25, atol=1e-4)
    # a tall red frame with a blue band in its middle third
    tall = np.zeros((96, 48, 3), np.uint8)
    tall[..., 0] = 255
    tall[32:64, :, :] = (0, 0, 255)
    out = s.run(None, {"frame": tall})[0][0] * 0.25 + 0.5
    assert out.shape == (3, 32, 64)
    if resize == "letterbox":      # fitted whole: grey bars left and right, the band in the middle
        grey = 114 / 255
        assert np.allclose(out[:, :, :16], grey, atol=1e-3) and np.allclose(out[:, :, -16:], grey, atol=1e-3)
        assert out[2, 16, 32] > 0.9 and out[0, 2, 32] > 0.9
    elif resize == "center-crop":  # filled: only the middle of the frame is left, the blue band
        assert out[2, 16, 32] > 0.9 and out[2].mean() > 0.6
    else:                          # stretched: the band is the middle third
        assert out[2, 16, 32] > 0.9 and out[0, 2, 32] > 0.9 and out[0, 30, 32] > 0.9
    bgr = PreprocessSpec("p.onnx", resize, (32, 64), "BGR", "NHWC", 1.0, (0, 0, 0), (1, 1, 1))
    t = ort.InferenceSession(preprocess_graph(bgr, "uint8").SerializeToString(), providers=["CPUExecutionProvider"])
    small = t.run(None, {"frame": frame})[0][0]
    assert small.dtype == np.uint8 and np.array_equal(small, frame[..., ::-1])


def test_image_files_are_read_as_the_camera_gives_them(tmp_path):
    from PIL import Image

    rgba = np.zeros((5, 7, 4), np.uint8)
    rgba[..., 0] = 200
    Image.fromarray(rgba).save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png")
    assert image.shape == (5, 7, 3) and image.dtype == np.uint8 and image[0, 0, 0] == 200
