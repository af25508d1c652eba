#!/usr/bin/env python3
"""Issue 18's memory reproduction: one message of many large frames against a real adaptinfd.

    python bench/oversize_memory.py [--frames 1024] [--frame-mib 1] [--messages 1]

libzmq's MAXMSGSIZE bounds each frame, not a message, so a client can hand the daemon a
message of 1024 frames of 1 MiB. The daemon must answer TOO_LARGE, keep serving, and not
keep the memory. Reports the daemon's RSS (/proc/PID/status VmRSS) before, at its peak
(sampled every 20 ms) and 2 s after, and the replies counted.
"""

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import msgpack
import numpy as np
import zmq

from adaptinf.client import Client
from adaptinf.rig.processes import resident_mib, spawn_daemon, write_daemon_config

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=1024)
    parser.add_argument("--frame-mib", type=float, default=1.0)
    parser.add_argument("--messages", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ai-oversize-") as tmp:
        api = f"ipc://{tmp}/api.sock"
        config = write_daemon_config(Path(tmp) / "d.toml", daemon={
            "api_endpoint": api, "bundle": str(REPO / "bundles" / "glyphnet"), "state_dir": tmp, "warmup_runs": 3})
        daemon = spawn_daemon(config)
        pid = daemon.process.pid
        try:
            with Client(api) as c:                     # warm: a few frames first
                for _ in range(20):
                    c.infer(np.zeros((1, 32, 32, 3), np.uint8))
            before = resident_mib(pid)
            peak = [before]
            done = threading.Event()

            def sample() -> None:
                while not done.is_set():
                    peak.append(resident_mib(pid))
                    time.sleep(0.02)

            threading.Thread(target=sample, daemon=True).start()
            sock = zmq.Context.instance().socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(api)
            frame = bytes(int(args.frame_mib * 2**20))
            header = msgpack.packb({"v": [1, 0], "op": "infer", "id": "huge",
                                    "tensor": {"dtype": "uint8", "shape": [1, 32, 32, 3]}})
            codes = []
            for _ in range(args.messages):
                sock.send_multipart([header] + [frame] * args.frames)
                if sock.poll(60_000):
                    codes.append(msgpack.unpackb(sock.recv_multipart()[0])["code"])
            sock.close(0)
            time.sleep(2.0)
            done.set()
            after = resident_mib(pid)
            with Client(api) as c:
                serving = c.infer(np.zeros((1, 32, 32, 3), np.uint8)).label >= 0
        finally:
            daemon.stop()
    size = args.frames * args.frame_mib
    print(f"{args.messages} message(s) of {args.frames} frames x {args.frame_mib:g} MiB ({size:.0f} MiB each)")
    print(f"replies: {codes}; serving afterwards: {serving}")
    print(f"daemon RSS: before {before:.0f} MiB, peak {max(peak):.0f} MiB, 2 s after {after:.0f} MiB "
          f"(kept {after - before:+.0f} MiB = {(after - before) / size:.1%} of one message)")
    print(f"reproduce: python bench/oversize_memory.py --frames {args.frames} --frame-mib {args.frame_mib:g} "
          f"--messages {args.messages}")
    return 0 if codes == ["TOO_LARGE"] * args.messages and serving else 1


if __name__ == "__main__":
    sys.exit(main())
