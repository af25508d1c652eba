#!/usr/bin/env python3
"""Where adaptinfd's per-frame Python goes: its infer handler, in process, against a
hand-written one on the same model, and the rungs between them.

    python bench/frame_path.py [--side 32|224]

bench/api_roundtrip.py measures the whole round trip across processes; this takes the
sockets out and times only the work between a request's frames and its reply's, in one
loop, for the same frame (the API's steps themselves, called as the daemon calls them):
- hand-written: unpack the header, view the tensor, onnxruntime, softmax, pack a reply;
- validated: the API's request checks (decode_request, parse_infer) and the same model
  and reply, what any server of this API does;
- + per-client shares and the job;
- + the plan (telemetry and the split policy);
- + the executor (the policy's steps, the device queue, stage times, energy);
- + the full reply (served_by, latency_ms, energy, the named outputs);
- the daemon's handler itself (its bookkeeping runs after the reply, so not here).
Each figure is the best of 40 batches of 200 frames (a shared host's noise only adds).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import numpy as np
import onnxruntime as ort
import zmq

from adaptinf import api_protocol as api
from adaptinf.daemon.config import POLICIES, load_config
from adaptinf.daemon.frame import Job
from adaptinf.daemon.infer_request import parse_infer
from adaptinf.daemon.service import Daemon
from adaptinf.policies.confidence import probabilities
from adaptinf.policies.plan import FrameContext
from adaptinf.rig.processes import write_daemon_config

sys.path.insert(0, str(Path(__file__).parent))
from api_roundtrip import tiny_bundle  # noqa: E402  (the same one-layer model as the round-trip bench)


def best_us(step, batches: int = 40, n: int = 200) -> float:
    for _ in range(n):
        step()
    best = float("inf")
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(n):
            step()
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=32)
    args = parser.parse_args(argv)
    side = args.side
    with tempfile.TemporaryDirectory(prefix="ai-frame-path-") as tmp:
        tmp = Path(tmp)
        bundle = tiny_bundle(tmp / "b", side)
        config = write_daemon_config(tmp / "d.toml", daemon={
            "api_endpoint": f"ipc://{tmp}/api.sock", "bundle": str(bundle), "state_dir": str(tmp),
            "warmup_runs": 3, "workers": 1,
            "inline_max_ms": 50.0})      # every frame inline, even when a loaded host slows the model
        d = Daemon(load_config(config)).start()
        try:
            frame = np.random.default_rng(0).integers(0, 256, (1, side, side, 3), dtype=np.uint8)
            frames = [zmq.Frame(f) for f in api.encode_request(
                "infer", "1", {"tensor": {"dtype": "uint8", "shape": list(frame.shape)}}, (frame,))]
            peer = b"\x00bench"
            handler = d.handlers.table()["infer"]
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            session = ort.InferenceSession(str(bundle / "full.onnx"), options, providers=["CPUExecutionProvider"])
            engine, executor = d.models.full, d.executor

            def hand_written():
                x = np.frombuffer(frames[1].buffer, np.uint8).reshape(frame.shape)
                header = msgpack.unpackb(frames[0].bytes)
                z = session.run(None, {"image": x})[0].reshape(-1)
                e = np.exp(z - z.max())
                e /= e.sum()
                label = int(e.argmax())
                return [msgpack.packb({"v": [1, 0], "id": header["id"], "ok": True, "code": "OK", "label": label,
                                       "confidence": float(e[label])}), e.tobytes()]

            def request():
                req = api.decode_request([f.buffer for f in frames], d.config.daemon.max_message_bytes)
                req.buffers = frames[1:]
                return parse_infer(req, d.served, d.bundle.name, d.mode, d.config.policy.goal, POLICIES)

            def job_of(r):
                now = time.monotonic()
                return Job(r.id, peer, r.frame, FrameContext(r.goal, r.mode, r.deadline_s), r.policy, now, None,
                           keepalive=r.keepalive, model=r.model.name, priority=r.priority, camera=r.camera)

            def short_reply(req_id, probs):
                label = int(probs.argmax())
                return api.encode_reply(req_id, "OK", body={"label": label, "confidence": float(probs[label])},
                                        buffers=(probs.astype(np.float32).tobytes(),))

            def admitted(work):
                """A rung past validation: the client's share taken, the job made, `work` done, the
                share given back."""
                def step():
                    r = request()
                    d.shares.take(peer)
                    try:
                        return work(r, job_of(r))
                    finally:
                        d.shares.give_back(peer)
                return step

            def on_engine(r, job=None):
                return short_reply(r.id, probabilities(np.asarray(engine.run(r.frame), np.float32).reshape(-1)))

            def planned_on_engine(r, job):
                executor.plan(job)
                return on_engine(r, job)

            def executed(r, job):
                return short_reply(r.id, executor.run(job, executor.plan(job)).scores)

            def full_reply(r, job):
                result = executor.run(job, executor.plan(job))
                return d.handlers._reply(job, result, result.stages.to_reply_ms())

            def daemon_handler():
                req = api.decode_request([f.buffer for f in frames], d.config.daemon.max_message_bytes)
                req.buffers = frames[1:]
                return handler(req, peer, frames)

            rungs = [("hand-written handler", hand_written), ("validated request, same model and reply", lambda: on_engine(request())),
                     ("+ per-client shares and the job", admitted(on_engine)),
                     ("+ the plan", admitted(planned_on_engine)), ("+ the executor", admitted(executed)),
                     ("+ the full reply", admitted(full_reply)),
                     ("adaptinfd's infer handler", daemon_handler)]
            base = None
            print(f"{side}x{side}x3 frame; best of 40 x 200 frames, in process (no sockets)")
            print(f"{'step':42} {'us/frame':>9} {'x hand':>7}")
            for name, step in rungs:
                us = best_us(step)
                base = base or us
                print(f"{name:42} {us:9.1f} {us / base:7.2f}")
        finally:
            d.stop()
    print(f"reproduce: python bench/frame_path.py --side {side}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
