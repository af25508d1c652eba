import numpy as np
import pytest

from adaptinf.engines import EngineError, available_backends, open_engine
from adaptinf.engines.emulated_slowdown import EmulatedSlowdown
from adaptinf.engines.plan_cache import PlanCache, PlanKey
from adaptinf.engines.tensorrt_engine import tensorrt_available


def test_onnxruntime_engine_exposes_bindings_and_runs(bundle, glyph_frames):
    engine = open_engine(bundle.path(bundle.full_model.file), "onnxruntime")
    assert engine.inputs[0].name == "image" and engine.inputs[0].dtype == "uint8"
    assert engine.inputs[0].shape[1:] == (32, 32, 3)
    logits = engine.run(glyph_frames.images[:4])
    assert logits.shape == (4, len(bundle.classes))


def test_unknown_backend_and_bad_file_are_clear_errors(tmp_path, bundle):
    with pytest.raises(EngineError, match="unknown engine backend"):
        open_engine(bundle.path(bundle.full_model.file), "openvino")
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(EngineError, match="could not load"):
        open_engine(tmp_path / "bad.onnx", "onnxruntime")


def test_tensorrt_requested_where_unavailable_says_why(bundle):
    ok, why = tensorrt_available()
    if ok:
        pytest.skip("TensorRT is available here; the unavailable path cannot be exercised")
    assert available_backends()["tensorrt"] == why
    with pytest.raises(EngineError, match="unavailable"):
        open_engine(bundle.path(bundle.full_model.file), "tensorrt")
    # auto falls back to onnxruntime
    assert open_engine(bundle.path(bundle.full_model.file), "auto").backend == "onnxruntime"


@pytest.mark.skipif(not tensorrt_available()[0], reason=f"TensorRT not usable here: {tensorrt_available()[1]}")
def test_tensorrt_fp16_engine_matches_onnxruntime(tmp_path, bundle, glyph_frames):
    trt = open_engine(bundle.path(bundle.full_model.file), "tensorrt", tmp_path)
    ort = open_engine(bundle.path(bundle.full_model.file), "onnxruntime")
    x = glyph_frames.images[:4]
    assert np.allclose(trt.run(x), ort.run(x), atol=5e-2)  # FP16
    assert list(tmp_path.glob("*.plan"))  # cached under its key
    again = open_engine(bundle.path(bundle.full_model.file), "tensorrt", tmp_path)
    assert np.allclose(again.run(x), trt.run(x))


def test_plan_cache_refuses_a_stale_plan(tmp_path):
    cache = PlanCache(tmp_path)
    key = PlanKey("ab" * 32, "10.3.0", "Orin (nvgpu)", "87", "fp16")
    cache.store(key, b"plan-bytes")
    assert cache.load(key) == b"plan-bytes"
    for other in (PlanKey("cd" * 32, "10.3.0", "Orin (nvgpu)", "87", "fp16"),
                  PlanKey("ab" * 32, "10.4.0", "Orin (nvgpu)", "87", "fp16"),
                  PlanKey("ab" * 32, "10.3.0", "Orin (nvgpu)", "87", "fp32")):
        assert cache.load(other) is None
    # a plan whose stored key was tampered with is stale too
    meta = tmp_path / key.filename().replace(".plan", ".json")
    meta.write_text(meta.read_text().replace("10.3.0", "9.9"))
    assert cache.load(key) is None


def test_emulated_slowdown_keeps_real_answers(bundle, glyph_frames):
    base = open_engine(bundle.path(bundle.full_model.file), "onnxruntime")
    slow = EmulatedSlowdown(base, 5.0)
    x = glyph_frames.images[:1]
    assert np.array_equal(slow.run(x), base.run(x))
    assert "emulated" in slow.backend
    with pytest.raises(ValueError):
        EmulatedSlowdown(base, 0.5)


class _SteppingEngine:
    """An engine double on a fake clock: each run takes the next of `durations` seconds."""

    backend = "test"

    def __init__(self, clock, durations):
        from adaptinf.engines.base import TensorSpec

        self.inputs = (TensorSpec("x", "uint8", (1, 2)),)
        self.outputs = (TensorSpec("y", "float32", (1, 2)),)
        self.clock, self.durations = clock, list(durations)

    def run(self, x):
        self.clock.now += self.durations.pop(0)
        return np.zeros((1, 2), np.float32)


def test_emulated_slowdown_is_factor_times_the_typical_time_not_each_runs():
    class Clock:
        now = 0.0

    clock, slept = Clock(), []

    def sleep(s):
        slept.append(s)
        clock.now += s

    # calibration: three warm-ups (ignored, however slow), then 21 runs with median 1 ms
    engine = _SteppingEngine(clock, [0.05, 0.2, 0.3] + [0.001] * 15 + [0.004] * 3 + [0.0002] * 3
                             + [0.001, 0.003, 0.2])
    slow = EmulatedSlowdown(engine, 100.0, clock=lambda: clock.now, sleep=sleep)
    assert slow.emulated_s == pytest.approx(0.1)
    for expected_sleep in (0.099, 0.097):    # a 3 ms host stall costs 3 ms, not 300 ms
        start = clock.now
        slow.run(np.zeros((1, 2), np.uint8))
        assert clock.now - start == pytest.approx(0.1) and slept[-1] == pytest.approx(expected_sleep)
    slow.run(np.zeros((1, 2), np.uint8))     # a run slower than the emulated time is not slowed further
    assert len(slept) == 2


def test_a_missing_onnxruntime_is_an_engine_error_that_says_where_to_get_it(monkeypatch, tmp_path):
    """On aarch64 the CPU wheel is not a hard dependency (it would displace a Jetson's
    onnxruntime-gpu): without any onnxruntime, opening an engine says what to install."""
    from adaptinf.engines import onnxruntime_engine
    from adaptinf.engines.base import EngineError
    from adaptinf.engines.factory import available_backends

    monkeypatch.setattr(onnxruntime_engine, "ort", None)
    with pytest.raises(EngineError, match="system-site-packages.*adaptinf\\[onnxruntime\\]"):
        onnxruntime_engine.OnnxRuntimeEngine(tmp_path / "any.onnx")
    assert "onnxruntime-gpu" in available_backends()["onnxruntime"]
