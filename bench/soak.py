#!/usr/bin/env python3
"""Soak: a long stream of frames through a real adaptinfd; memory and open files must stay flat.

    python bench/soak.py [--frames 20000] [--slowdown 12]

A cloud worker behind a Wi-Fi-shaped link and adaptinfd (demo bundle; the emulated
device slowdown picks the path soaked: 12x sends frames to the cloud, 5x keeps them on
the device), four frames in flight from one client. Every
10% it reads the daemon's RSS (/proc/PID/status VmRSS) and open descriptors
(/proc/PID/fd). Reports first vs last, after a warm-up tenth.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import zmq

from adaptinf.rig.link_shaper import LINK_PROFILES, LinkShaper
from adaptinf.rig.processes import spawn_cloud, spawn_daemon, write_daemon_config
from adaptinf.toolchain.glyphs import make_glyphs

REPO = Path(__file__).resolve().parent.parent
WINDOW = 4


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--slowdown", type=float, default=12.0,
                        help="emulated device slowdown: 12 sends frames to the cloud, 5 keeps them on the device")
    args = parser.parse_args()
    frames = make_glyphs(256, seed=7).images
    bundle = REPO / "bundles" / "glyphnet"
    with tempfile.TemporaryDirectory(prefix="ai-soak-") as tmp:
        cloud = spawn_cloud(bundle)
        host, port = cloud.endpoint.rsplit("//", 1)[1].rsplit(":", 1)
        shaper = LinkShaper((host, int(port)), LINK_PROFILES["wifi"]).start()
        api = f"ipc://{tmp}/api.sock"
        config = write_daemon_config(Path(tmp) / "d.toml",
                                     daemon={"api_endpoint": api, "bundle": str(bundle), "state_dir": tmp,
                                             "warmup_runs": 5},
                                     device={"emulate_slowdown": args.slowdown}, cloud={"endpoint": shaper.endpoint})
        daemon = spawn_daemon(config)
        pid = daemon.process.pid
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.connect(api)
        sent = answered = 0
        placements: dict[str, int] = {}
        marks = []
        step = max(1, args.frames // 10)
        start = time.monotonic()
        try:
            while answered < args.frames:
                while sent < args.frames and sent - answered < WINDOW:
                    header = {"v": [1, 0], "op": "infer", "id": sent,
                              "tensor": {"dtype": "uint8", "shape": [1, 32, 32, 3]}}
                    sock.send_multipart([msgpack.packb(header), frames[sent % len(frames)][None].tobytes()])
                    sent += 1
                if not sock.poll(10_000):
                    print(f"stalled at {answered} answers", file=sys.stderr)
                    return 1
                reply = msgpack.unpackb(sock.recv_multipart()[0])
                answered += 1
                where = reply.get("served_by", {}).get("placement", reply["code"])
                placements[where] = placements.get(where, 0) + 1
                if answered % step == 0:
                    marks.append((answered, rss_kib(pid), open_fds(pid)))
        finally:
            sock.close(0)
            daemon.stop()
            shaper.stop()
            cloud.stop()
    elapsed = time.monotonic() - start
    print(f"{answered} frames in {elapsed:.0f} s ({answered / elapsed:.0f} frames/s), placements {placements}")
    print(f"{'frames':>8} {'RSS MiB':>8} {'open fds':>9}")
    for n, rss, fds in marks:
        print(f"{n:8d} {rss / 1024:8.1f} {fds:9d}")
    first, last = marks[0], marks[-1]
    print(f"after warm-up: RSS {first[1] / 1024:.1f} -> {last[1] / 1024:.1f} MiB "
          f"(ratio {last[1] / first[1]:.3f}), open fds {first[2]} -> {last[2]}")
    print(f"reproduce: python bench/soak.py --frames {args.frames} --slowdown {args.slowdown:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
