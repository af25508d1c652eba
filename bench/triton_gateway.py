#!/usr/bin/env python3
"""N emulated devices through the cloud gateway into a real tritonserver, with Triton's
dynamic batching on and off, side by side in one run.

    python bench/triton_gateway.py [--devices 1,4,16] [--seconds 5]

Each device is a DEALER with its own identity, one request in flight (closed loop), the
full model of the demo bundle (32x32 frames). The gateway is `adaptinf-cloud --triton`
in-process (CloudWorker with as many compute threads as devices, so Triton sees the
concurrency); Triton is nvidia-pytriton's tritonserver with the `--backend python`
repository (onnxruntime inside, one CPU instance per model). Reports throughput and p50/p99
latency per N and mode, and the ratio batching on / off.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zmq

from adaptinf.bundle import load_bundle
from adaptinf.cloud import protocol
from adaptinf.cloud.triton_repository import export_repository
from adaptinf.cloud.worker import CloudWorker
from adaptinf.rig.triton_server import TritonServer

REPO = Path(__file__).resolve().parent.parent


_RUNS = iter(range(1, 1 << 30))


def drive(endpoint: str, devices: int, seconds: float, frame: bytes) -> tuple[float, list[float]]:
    ctx = zmq.Context.instance()
    run = next(_RUNS)     # fresh identities: the gateway would replay a previous run's rids
    socks = []
    for i in range(devices):
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.IDENTITY, f"bench-{run}-device-{i}".encode())
        s.connect(endpoint)
        socks.append(s)
    poller = zmq.Poller()
    for s in socks:
        poller.register(s, zmq.POLLIN)
    seq, sent_at, latencies = 0, {}, []

    def send(i: int) -> None:
        nonlocal seq
        seq += 1
        socks[i].send_multipart([protocol.pack({"op": "infer", "rid": [i, seq], "target": "full",
                                                "tensor": {"dtype": "uint8", "shape": [1, 32, 32, 3]}}), frame])
        sent_at[(i, seq)] = time.perf_counter()

    for i in range(devices):
        send(i)
    start = time.perf_counter()
    end = start + seconds
    while time.perf_counter() < end:
        for sock, _ in poller.poll(100):
            i = socks.index(sock)
            header = protocol.unpack_reply(sock.recv_multipart()[0])
            latencies.append(time.perf_counter() - sent_at.pop((i, header["rid"][1])))
            send(i)
    elapsed = time.perf_counter() - start
    for s in socks:
        s.close(0)
    return len(latencies) / elapsed, latencies


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", default="1,4,16")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    counts = [int(n) for n in args.devices.split(",")]
    bundle = load_bundle(REPO / "bundles" / "glyphnet")
    frame = np.zeros((1, 32, 32, 3), np.uint8).tobytes()
    results = {}
    with tempfile.TemporaryDirectory(prefix="ai-triton-bench-") as tmp:
        for batching in (True, False):
            repo = Path(tmp) / ("batched" if batching else "unbatched")
            export_repository(bundle, repo, backend="python", dynamic_batching=batching)
            server = TritonServer(repo).start()
            try:
                for n in counts:
                    worker = CloudWorker(bundle, "tcp://127.0.0.1:*", threads=max(n, 1),
                                         triton_url=server.grpc_url).start()
                    try:
                        drive(worker.bound_endpoint, n, 1.0, frame)                # warm
                        results[(batching, n)] = drive(worker.bound_endpoint, n, args.seconds, frame)
                    finally:
                        worker.stop()
            finally:
                server.close()
    print(f"{'devices':>7} {'batching':>9} {'frames/s':>9} {'p50 ms':>7} {'p99 ms':>7}")
    for n in counts:
        for batching in (True, False):
            rate, lat = results[(batching, n)]
            print(f"{n:7d} {'on' if batching else 'off':>9} {rate:9.0f} {np.percentile(lat, 50) * 1e3:7.2f} "
                  f"{np.percentile(lat, 99) * 1e3:7.2f}")
        on, off = results[(True, n)], results[(False, n)]
        print(f"{'':7} {'on/off':>9} {on[0] / off[0]:9.2f} "
              f"{np.percentile(on[1], 50) / np.percentile(off[1], 50):7.2f} "
              f"{np.percentile(on[1], 99) / np.percentile(off[1], 99):7.2f}")
    print(f"reproduce: python bench/triton_gateway.py --devices {args.devices} --seconds {args.seconds:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
