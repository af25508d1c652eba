"""The cloud tier on Triton: the exported model repository, checked against Triton's own ModelConfig."""

import json
import os

import numpy as np
import pytest
from google.protobuf import text_format

from adaptinf.bundle import sha256_file
from adaptinf.cloud.triton_engine import TritonEngine
from adaptinf.cloud.triton_repository import add_tensorrt_plans, config_pbtxt, export_repository
from adaptinf.engines import EngineError
from adaptinf.engines.tensorrt_engine import tensorrt_available
from conftest import free_port

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")


def parse(path):
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_repository_has_every_cloud_target_as_a_valid_triton_model(bundle, tmp_path):
    names = export_repository(bundle, tmp_path)
    assert names == ["glyphnet_full"] + [f"glyphnet_RB{i}" for i in range(1, 7)]
    full = parse(tmp_path / "glyphnet_full" / "config.pbtxt")
    assert full.platform == "onnxruntime_onnx" and full.max_batch_size == 8
    assert full.input[0].name == "image" and list(full.input[0].dims) == [32, 32, 3]
    assert full.input[0].data_type == model_config_pb2.TYPE_UINT8
    assert list(full.output[0].dims) == [16]
    assert full.dynamic_batching.priority_levels == 2
    assert full.dynamic_batching.default_queue_policy.timeout_action == model_config_pb2.ModelQueuePolicy.REJECT
    for p in bundle.split.points:
        cfg = parse(tmp_path / f"glyphnet_{p.name}" / "config.pbtxt")
        assert cfg.input[0].name == "reduced" and list(cfg.input[0].dims) == list(p.reduced_shape[1:])
        assert cfg.input[0].data_type == model_config_pb2.TYPE_FP32
        assert sha256_file(tmp_path / f"glyphnet_{p.name}" / "1" / "model.onnx") == sha256_file(bundle.path(p.tail))
    meta = json.loads((tmp_path / "adaptinf-export.json").read_text())
    assert meta["manifest_sha256"] == bundle.manifest_sha256


def test_plans_for_several_gpu_types_share_one_model():
    text = config_pbtxt("m_trt", "tensorrt_plan", "reduced", "float32", [2, 16, 16], 16,
                        {"8.6": "model_86.plan", "9.0": "model_90.plan"})
    cfg = text_format.Parse(text, model_config_pb2.ModelConfig())
    assert cfg.platform == "tensorrt_plan"
    assert dict(cfg.cc_model_filenames) == {"8.6": "model_86.plan", "9.0": "model_90.plan"}


@pytest.mark.skipif(not tensorrt_available()[0], reason=f"TensorRT not usable here: {tensorrt_available()[1]}")
def test_tensorrt_plans_are_added_per_compute_capability(bundle, tmp_path):
    names = add_tensorrt_plans(bundle, tmp_path)
    cfg = parse(tmp_path / names[0] / "config.pbtxt")
    (cc, filename), = cfg.cc_model_filenames.items()
    assert (tmp_path / names[0] / "1" / filename).stat().st_size > 0


def test_gateway_refuses_a_triton_it_cannot_reach():
    with pytest.raises(EngineError, match="cannot reach Triton"):
        TritonEngine(f"127.0.0.1:{free_port()}", "glyphnet_full", "image", "uint8", [32, 32, 3], 16)


@pytest.mark.skipif("ADAPTINF_TEST_TRITON_URL" not in os.environ,
                    reason="no Triton server here: serve `adaptinf export triton` output with tritonserver and "
                           "set ADAPTINF_TEST_TRITON_URL=host:8001 to run this")
def test_gateway_answers_like_the_local_engine(bundle, glyph_frames):
    from adaptinf.engines import open_engine

    triton = TritonEngine(os.environ["ADAPTINF_TEST_TRITON_URL"], "glyphnet_full", "image", "uint8",
                          [32, 32, 3], 16)
    local = open_engine(bundle.path(bundle.full_model.file), "onnxruntime")
    x = glyph_frames.images[:1]
    assert np.allclose(triton.run(x), local.run(x), atol=1e-3)
