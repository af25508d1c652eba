"""The cloud tier on Triton: the exported model repository, checked against Triton's own ModelConfig."""

import json
import time

import numpy as np
import pytest
from google.protobuf import text_format

from adaptinf.bundle import sha256_file
from adaptinf.cloud.triton_engine import TritonEngine
from adaptinf.cloud.triton_repository import Target, add_tensorrt_plans, config_pbtxt, export_repository
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
    text = config_pbtxt("m_trt", "tensorrt_plan", Target("t.onnx", "reduced", "float32", [2, 16, 16], "logits", [16]),
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
        TritonEngine(f"127.0.0.1:{free_port()}", "glyphnet_full", "image", "uint8", [32, 32, 3], "logits", [16])


# ---- live: a real tritonserver (nvidia-pytriton's binary, the test extra) on loopback ----
@pytest.fixture(scope="module")
def triton(bundle, tmp_path_factory):
    from adaptinf.rig.triton_server import TritonServer, TritonUnavailable

    repo = tmp_path_factory.mktemp("triton-repo")
    export_repository(bundle, repo, backend="python")
    try:
        server = TritonServer(repo).start()
    except TritonUnavailable as exc:
        pytest.skip(f"no tritonserver here: {exc}")
    yield server
    server.close()


def test_the_python_backend_repository_is_a_valid_triton_model(bundle, tmp_path):
    export_repository(bundle, tmp_path, backend="python")
    full = parse(tmp_path / "glyphnet_full" / "config.pbtxt")
    assert full.backend == "python" and full.max_batch_size == 8 and full.dynamic_batching.max_queue_delay_microseconds
    assert full.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert (tmp_path / "glyphnet_full" / "1" / "model.py").is_file()
    unbatched = parse_text(config_pbtxt("m", "python", Target("m.onnx", "image", "uint8", [32, 32, 3], "logits", [16]),
                                        dynamic_batching=False))
    assert not unbatched.HasField("dynamic_batching")


def parse_text(text):
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def test_the_gateway_forwards_live_to_tritonserver(bundle, glyph_frames, triton):
    """adaptinf-cloud --triton: a device's request goes through the gateway into a real
    tritonserver and comes back with the logits the local engine computes."""
    import zmq

    from adaptinf.cloud import protocol
    from adaptinf.cloud.worker import CloudWorker
    from adaptinf.engines import open_engine

    worker = CloudWorker(bundle, "tcp://127.0.0.1:*", triton_url=triton.grpc_url).start()
    dealer = zmq.Context.instance().socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(worker.bound_endpoint)
    try:
        x = glyph_frames.images[:1]
        dealer.send_multipart([protocol.pack({"op": "infer", "rid": [1, 1], "target": "full",
                                              "tensor": {"dtype": "uint8", "shape": [1, 32, 32, 3]}}), x.tobytes()])
        assert dealer.poll(20_000), "the gateway did not answer"
        reply = dealer.recv_multipart()
    finally:
        dealer.close(0)
        worker.stop()
    header = protocol.unpack_reply(reply[0])
    assert header["ok"], header
    local = open_engine(bundle.path(bundle.full_model.file), "onnxruntime").run(x)
    assert np.allclose(np.frombuffer(reply[1], np.float32), local.reshape(-1), atol=1e-4)


def test_triton_killed_mid_stream_and_restarted(bundle, glyph_frames, triton, tmp_short):
    """Frames pinned to the cloud through adaptinfd -> gateway -> Triton: Triton dies, the
    frames fall back to the device, one answer each; Triton comes back on its port and the
    gateway forwards again."""
    from adaptinf.client import Client
    from adaptinf.cloud.worker import CloudWorker
    from adaptinf.daemon.config import parse_config
    from adaptinf.daemon.service import Daemon

    worker = CloudWorker(bundle, "tcp://127.0.0.1:*", triton_url=triton.grpc_url).start()
    daemon = Daemon(parse_config({"daemon": {"api_endpoint": f"ipc://{tmp_short}/api.sock", "bundle": str(bundle.root),
                                             "state_dir": str(tmp_short), "warmup_runs": 3},
                                  "cloud": {"endpoint": worker.bound_endpoint, "timeout_ms": 3000.0}})).start()
    answers = []
    try:
        with Client(f"ipc://{tmp_short}/api.sock", timeout_s=20) as c:
            def stream(n):
                for i in range(n):
                    answers.append(c.infer(glyph_frames.images[i:i + 1], policy="cloud-only"))
            stream(5)
            assert all(a.served_by["placement"] == "cloud" and not a.served_by["fallback"] for a in answers)
            triton.kill()
            stream(5)
            assert all(a.served_by["fallback"] for a in answers[5:])          # answered on the device
            triton.start()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                answers.append(c.infer(glyph_frames.images[:1], policy="cloud-only"))
                if not answers[-1].served_by["fallback"]:
                    break
            assert not answers[-1].served_by["fallback"]                      # forwarding resumed
    finally:
        daemon.stop()
        worker.stop()
    # the client raises on anything but OK: each frame got its one answer, through the outage too
    assert len(answers) >= 11 and all(a.label >= 0 for a in answers)
