#!/usr/bin/env python3
"""Local API round trip vs a raw pyzmq round trip of the same bytes.

    python bench/api_roundtrip.py

For 32x32x3 and 224x224x3 uint8 frames: (a) raw pyzmq, a DEALER sending
[msgpack header, frame] to a ROUTER in another process that answers a small header,
and (b) a real adaptinfd process answering `infer` over the same ipc transport, on a bundle whose model is a single
global-average-pool + linear layer (so the figure is the API's cost, not a CNN's;
the model's own time is printed too), plus a header-only `health` request against a
raw header-only round trip: the API layer alone. A third baseline sends the same frame to
a hand-written pyzmq server that runs the same model with onnxruntime and answers the
label and scores: the least any server does for this job. All interleaved in one run.
Goal: ratio <= 1.5.
"""

import statistics
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import numpy as np
import torch
import zmq

from adaptinf.bundle import write_manifest
from adaptinf.client import Client
from adaptinf.rig.processes import spawn_daemon, spawn_script, write_daemon_config
from adaptinf.engines import open_engine
from adaptinf.toolchain.models import Preprocess
from adaptinf.toolchain.onnx_export import export_onnx

ROUNDS = int(__import__("os").environ.get("ADAPTINF_BENCH_ROUNDS", 1500))


class PoolLinear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.pre = Preprocess((0.5,) * 3, (0.25,) * 3)
        self.fc = torch.nn.Linear(3, 16)

    def forward(self, x):
        return self.fc(self.pre(x).mean(dim=(2, 3)))


def tiny_bundle(root: Path, side: int) -> Path:
    root.mkdir(parents=True)
    export_onnx(PoolLinear().eval(), torch.zeros(1, side, side, 3, dtype=torch.uint8), root / "full.onnx",
                "image", "logits")
    write_manifest(root, {"name": f"pool{side}", "classes": [str(i) for i in range(16)],
                          "input": {"name": "image", "dtype": "uint8", "shape": [1, side, side, 3]},
                          "models": [{"name": "full", "file": "full.onnx", "role": "big", "accuracy": 0.0,
                                      "flops": 96}]})
    return root


RAW_SERVER = """
import sys, msgpack, zmq
router = zmq.Context.instance().socket(zmq.ROUTER)
router.bind(sys.argv[1])
print("READY " + sys.argv[1], flush=True)
reply = msgpack.packb({"v": [1, 0], "id": 0, "ok": True, "code": "OK", "label": 3})
while True:
    peer, *message = router.recv_multipart(copy=False)
    router.send_multipart([peer, reply])
"""


# The least a hand-written server does for the same job: run the same ONNX model on the
# frame (one onnxruntime thread, as adaptinfd's worker) and answer the label and scores.
RAW_MODEL_SERVER = """
import sys, msgpack, numpy as np, onnxruntime as ort, zmq
options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(sys.argv[2], options, providers=["CPUExecutionProvider"])
shape = [int(d) for d in sys.argv[3].split(",")]
router = zmq.Context.instance().socket(zmq.ROUTER)
router.bind(sys.argv[1])
print("READY " + sys.argv[1], flush=True)
while True:
    peer, header, frame = router.recv_multipart(copy=False)
    x = np.frombuffer(frame.buffer, np.uint8).reshape(shape)
    z = session.run(None, {"image": x})[0].reshape(-1)
    e = np.exp(z - z.max())
    e /= e.sum()
    label = int(e.argmax())
    reply = msgpack.packb({"v": [1, 0], "id": msgpack.unpackb(header.bytes)["id"], "ok": True, "code": "OK",
                           "label": label, "confidence": float(e[label])})
    router.send_multipart([peer, reply, e.tobytes()])
"""


def main() -> int:
    ctx = zmq.Context.instance()
    with tempfile.TemporaryDirectory(prefix="ai-bench-") as tmp:
        tmp = Path(tmp)
        print(f"{'frame':12} {'raw p50 us':>10} {'api p50 us':>10} {'ratio':>6} {'api p99 us':>10} {'model us':>8}")
        for side in (32, 224):
            bundle = tiny_bundle(tmp / f"b{side}", side)
            frame = np.random.default_rng(0).integers(0, 256, (1, side, side, 3), dtype=np.uint8)
            config = write_daemon_config(tmp / f"d{side}.toml", daemon={
                "api_endpoint": f"ipc://{tmp}/api{side}.sock", "bundle": str(bundle), "state_dir": str(tmp),
                "warmup_runs": 3, "workers": 1})
            daemon = spawn_daemon(config)
            raw_endpoint = f"ipc://{tmp}/raw{side}.sock"
            server = spawn_script("raw-server", RAW_SERVER, [raw_endpoint])
            model_endpoint = f"ipc://{tmp}/rawmodel{side}.sock"
            model_server = spawn_script("raw-model-server", RAW_MODEL_SERVER,
                                        [model_endpoint, str(bundle / "full.onnx"), ",".join(map(str, frame.shape))])
            raw_model = ctx.socket(zmq.DEALER)
            raw_model.connect(model_endpoint)
            raw = ctx.socket(zmq.DEALER)
            raw.connect(raw_endpoint)
            header = msgpack.packb({"v": [1, 0], "op": "infer", "id": 1,
                                    "tensor": {"dtype": "uint8", "shape": list(frame.shape)}})
            client = Client(f"ipc://{tmp}/api{side}.sock")
            raw_us, api_us, raw_ctl_us, api_ctl_us, raw_model_us = [], [], [], [], []
            control = msgpack.packb({"v": [1, 0], "op": "health", "id": 1})
            for i in range(ROUNDS + 100):  # interleaved; the first 100 are warm-up
                start = time.perf_counter_ns()
                raw.send_multipart([header, frame], copy=False)
                raw.recv_multipart()
                t_raw = time.perf_counter_ns() - start
                start = time.perf_counter_ns()
                client.infer(frame)
                t_api = time.perf_counter_ns() - start
                start = time.perf_counter_ns()
                raw.send_multipart([control])
                raw.recv_multipart()
                t_raw_ctl = time.perf_counter_ns() - start
                start = time.perf_counter_ns()
                client.health()
                t_api_ctl = time.perf_counter_ns() - start
                start = time.perf_counter_ns()
                raw_model.send_multipart([header, frame], copy=False)
                raw_model.recv_multipart()
                t_raw_model = time.perf_counter_ns() - start
                if i >= 100:
                    raw_model_us.append(t_raw_model / 1e3)
                    raw_us.append(t_raw / 1e3)
                    api_us.append(t_api / 1e3)
                    raw_ctl_us.append(t_raw_ctl / 1e3)
                    api_ctl_us.append(t_api_ctl / 1e3)
            engine = open_engine(bundle / "full.onnx", "onnxruntime")
            model_us = []
            for _ in range(300):
                start = time.perf_counter_ns()
                engine.run(frame)
                model_us.append((time.perf_counter_ns() - start) / 1e3)
            r, a = statistics.median(raw_us), statistics.median(api_us)
            print(f"{side}x{side}x3    {r:10.1f} {a:10.1f} {a / r:6.2f} {np.percentile(api_us, 99):10.1f} "
                  f"{statistics.median(model_us):8.1f}")
            rc, ac = statistics.median(raw_ctl_us), statistics.median(api_ctl_us)
            print(f"{'health op':12} {rc:10.1f} {ac:10.1f} {ac / rc:6.2f} {np.percentile(api_ctl_us, 99):10.1f} "
                  f"{'-':>8}   (header only: the API layer without inference)")
            rm = statistics.median(raw_model_us)
            print(f"{'  vs server':12} {rm:10.1f} {a:10.1f} {a / rm:6.2f} {'':>10} {'':>8}   (the same frame to a "
                  f"hand-written pyzmq server running the same model)")
            client.close()
            raw.close(0)
            raw_model.close(0)
            server.stop()
            model_server.stop()
            daemon.stop()
    print("reproduce: python bench/api_roundtrip.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
