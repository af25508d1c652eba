#!/usr/bin/env python3
"""Faults side by side in one run: 64 clients stream frames through a real adaptinfd while,
phase by phase, a client floods, one process floods from 8 sockets, the cloud worker is
killed and restarted, the link stalls, the daemon is sent SIGHUP with a broken config, a
cloud that serves another bundle takes the port, a cloud that poisons its replies (NaN
outputs, impossible loads, another frame's digest) takes it, and the daemon reboots (a
new process: its request ids must not collide with the last boot's, which the cloud
still holds).

    python bench/fault_soak.py [--clients 64] [--phase-s 10]

Every client keeps two frames in flight (deadline 2 s, every other frame pinned to the
cloud so the cloud faults reach frames). The flooder sends as fast as it can and never
reads its replies. Reports, for the 64 clients: frames sent, answered, lost (never
answered), duplicated (answered twice) and wrong (a cloud-only answer whose label is not
the full model's on that frame: a replayed, foreign or poisoned reply passed off as right); per phase the answer codes and the latency
p50/p99; the flooder's effect on the others' p99 (flood phase over the baseline phase);
and the daemon's RSS once a second (/proc/PID/status VmRSS).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import msgpack
import numpy as np
import zmq

from adaptinf.rig.link_shaper import LINK_PROFILES, LinkShaper
from adaptinf.bundle import load_bundle
from adaptinf.engines.onnxruntime_engine import OnnxRuntimeEngine
from adaptinf.rig.processes import resident_mib, spawn_cloud, spawn_daemon, spawn_script, write_daemon_config
from adaptinf.toolchain.glyphs import make_glyphs

REPO = Path(__file__).resolve().parent.parent
WINDOW = 2
PHASES = ("baseline", "flood", "8-socket flood", "cloud kill+restart", "stall", "SIGHUP broken config",
          "another bundle's cloud", "poisoned replies", "daemon reboot", "baseline again")
FAKE_CLOUD = """
import sys, msgpack, numpy as np, zmq
mode, endpoint, bundle_sha, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sock = zmq.Context.instance().socket(zmq.ROUTER)
sock.bind(endpoint)
print("READY", endpoint, flush=True)
while True:
    peer, header, *payload = sock.recv_multipart()
    h = msgpack.unpackb(header)
    reply = {"v": 1, "rid": h["rid"], "ok": True, "code": "OK", "bundle": bundle_sha}
    if mode == "poison":    # a load that is not one, and answers that are not answers
        reply["load"] = {"queue_depth": -5, "service_s": float("nan")}
    if h["op"] == "ping":
        reply.update(pong=True, clock=0.0)
    if h["op"] != "infer":
        sock.send_multipart([peer, msgpack.packb(reply)])
        continue
    reply["compute_s"] = 0.001
    if mode == "poison":
        seq = h["rid"][1]
        if seq % 2:
            reply["digest"] = (h.get("digest") or 0) + 1          # another frame's answer
        else:
            reply["digest"] = h.get("digest")
        # NaN outputs, or outputs of the wrong size: detectably not an answer (a finite,
        # well-formed wrong answer with the right digest is an impostor only CURVE keeps out)
        out = np.full(size, np.nan, np.float32) if seq % 3 else np.ones(size - 1, np.float32)
    else:
        reply["digest"] = h.get("digest")
        out = np.zeros(size, np.float32)
    sock.send_multipart([peer, msgpack.packb(reply), out.tobytes()])
"""


class Clients:
    """N DEALERs driven from one thread, WINDOW frames in flight each; replies by id."""

    def __init__(self, endpoint: str, n: int, frames: np.ndarray):
        ctx = zmq.Context.instance()
        self.socks = []
        for i in range(n):
            s = ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.IDENTITY, f"client-{i}".encode())
            s.connect(endpoint)
            self.socks.append(s)
        self.poller = zmq.Poller()
        for s in self.socks:
            self.poller.register(s, zmq.POLLIN)
        self.frames = frames
        self.sent_at: dict[tuple[int, int], tuple[float, str]] = {}
        self.replies: dict[tuple[int, int], list[str]] = defaultdict(list)
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.codes: dict[str, Counter] = defaultdict(Counter)
        self.outstanding = [0] * n
        self.seq = 0
        self.frame_of: dict[tuple[int, int], int] = {}
        self.labels: dict[tuple[int, int], int] = {}       # the label each cloud-only frame was answered

    def send(self, i: int, phase: str) -> None:
        self.seq += 1
        self.frame_of[(i, self.seq)] = self.seq % len(self.frames)
        header = {"v": [1, 0], "op": "infer", "id": self.seq, "deadline_ms": 2000,
                  "tensor": {"dtype": "uint8", "shape": [1, 32, 32, 3]}}
        if self.seq % 2:
            header["policy"] = "cloud-only"
        self.socks[i].send_multipart([msgpack.packb(header), self.frames[self.seq % len(self.frames)][None].tobytes()])
        self.sent_at[(i, self.seq)] = (time.monotonic(), phase)
        self.outstanding[i] += 1

    def pump(self, phase: str | None, timeout_ms: int = 10) -> None:
        """Send up to the window (unless phase is None: draining), then take what replies wait."""
        if phase is not None:
            for i, n in enumerate(self.outstanding):
                for _ in range(WINDOW - n):
                    self.send(i, phase)
        for sock, _ in self.poller.poll(timeout_ms):
            i = self.socks.index(sock)
            while True:
                try:
                    reply = msgpack.unpackb(sock.recv_multipart(zmq.NOBLOCK)[0])
                except zmq.Again:
                    break
                key = (i, reply.get("id"))
                self.replies[key].append(reply["code"])
                if reply["code"] == "OK" and reply.get("id", 0) % 2 and "label" in reply:
                    self.labels[key] = reply["label"]
                if len(self.replies[key]) == 1 and key in self.sent_at:
                    sent, sent_phase = self.sent_at[key]
                    self.outstanding[i] -= 1
                    self.latency[sent_phase].append(time.monotonic() - sent)
                    self.codes[sent_phase][reply["code"]] += 1

    def close(self) -> None:
        for s in self.socks:
            s.close(0)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1e3 if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--phase-s", type=float, default=10.0)
    args = parser.parse_args()
    frames = make_glyphs(256, seed=7).images
    bundle = REPO / "bundles" / "glyphnet"
    loaded = load_bundle(bundle)
    full = OnnxRuntimeEngine(loaded.path(loaded.full_model.file))
    truth = [int(np.argmax(full.run(f[None]))) for f in frames]     # what the cloud's full model answers
    with tempfile.TemporaryDirectory(prefix="ai-fsoak-") as tmp:
        other = Path(tmp) / "retrained"                  # the same graphs under another manifest
        shutil.copytree(bundle, other)
        manifest = json.loads((other / "manifest.json").read_text())
        manifest["name"] += "-retrained"
        (other / "manifest.json").write_text(json.dumps(manifest))
        cloud = spawn_cloud(bundle)
        cloud_endpoint = cloud.endpoint
        host, port = cloud_endpoint.rsplit("//", 1)[1].rsplit(":", 1)
        shaper = LinkShaper((host, int(port)), LINK_PROFILES["wifi"]).start()
        api = f"ipc://{tmp}/api.sock"
        sections = dict(daemon={"api_endpoint": api, "bundle": str(bundle), "state_dir": tmp, "warmup_runs": 5,
                                "workers": 8, "queue_size": 256, "max_in_flight_per_client": 8},
                        device={"emulate_slowdown": 5.0},
                        cloud={"endpoint": shaper.endpoint, "timeout_ms": 1500.0})
        config = write_daemon_config(Path(tmp) / "adaptinfd.toml", **sections)
        daemon = spawn_daemon(config)
        pid = daemon.process.pid
        clients = Clients(api, args.clients, frames)
        flooder = None
        flood_sent = 0
        socket_flooders: list[zmq.Socket] = []
        fake = None
        rss: list[tuple[float, float]] = []
        start = time.monotonic()
        try:
            for phase in PHASES:
                phase_end = time.monotonic() + args.phase_s
                fault_done = False
                while time.monotonic() < phase_end:
                    elapsed = args.phase_s - (phase_end - time.monotonic())
                    if phase == "flood":
                        if flooder is None:
                            flooder = zmq.Context.instance().socket(zmq.DEALER)
                            flooder.setsockopt(zmq.LINGER, 0)
                            flooder.setsockopt(zmq.RCVHWM, 1)
                            flooder.setsockopt(zmq.SNDHWM, 100_000)
                            flooder.connect(api)
                        for _ in range(50):
                            header = {"v": [1, 0], "op": "infer", "id": flood_sent, "policy": "cloud-only",
                                      "tensor": {"dtype": "uint8", "shape": [1, 32, 32, 3]}}
                            flooder.send_multipart([msgpack.packb(header), frames[0][None].tobytes()])
                            flood_sent += 1
                    elif flooder is not None:
                        flooder.close(0)
                        flooder = None
                    if phase == "8-socket flood":
                        if not socket_flooders:
                            for k in range(8):
                                s = zmq.Context.instance().socket(zmq.DEALER)
                                s.setsockopt(zmq.LINGER, 0)
                                s.setsockopt(zmq.RCVHWM, 1)
                                s.setsockopt(zmq.IDENTITY, f"one-process-{k}".encode())
                                s.connect(api)
                                socket_flooders.append(s)
                        for s in socket_flooders:
                            for _ in range(10):
                                header = {"v": [1, 0], "op": "infer", "id": flood_sent, "policy": "cloud-only",
                                          "tensor": {"dtype": "uint8", "shape": [1, 32, 32, 3]}}
                                try:
                                    s.send_multipart([msgpack.packb(header), frames[0][None].tobytes()], zmq.NOBLOCK)
                                except zmq.Again:       # its own send queue is full: it floods on
                                    break
                                flood_sent += 1
                    elif socket_flooders:
                        for s in socket_flooders:
                            s.close(0)
                        socket_flooders = []
                    if phase in ("another bundle's cloud", "poisoned replies") and not fault_done and elapsed > 1:
                        cloud.kill()
                        if phase == "another bundle's cloud":
                            fake = spawn_cloud(other, endpoint=cloud_endpoint)
                        else:
                            fake = spawn_script("poisoned cloud", FAKE_CLOUD, ["poison", cloud_endpoint,
                                                                               loaded.manifest_sha256,
                                                                               str(loaded.output_size)])
                        fault_done = True
                    if phase in ("another bundle's cloud", "poisoned replies") and fake is not None and elapsed > 7:
                        fake.kill()
                        fake = None
                        cloud = spawn_cloud(bundle, endpoint=cloud_endpoint)
                    if phase == "daemon reboot" and not fault_done and elapsed > 1:
                        daemon.stop()
                        daemon = spawn_daemon(config)
                        pid = daemon.process.pid
                        fault_done = True
                    if phase == "cloud kill+restart" and not fault_done and elapsed > 1:
                        cloud.kill()
                        time.sleep(0.5)
                        fault_done = True
                    if phase == "cloud kill+restart" and fault_done and cloud.process.poll() is not None \
                            and elapsed > 4:
                        cloud = spawn_cloud(bundle, endpoint=cloud_endpoint)
                    if phase == "stall" and 1 < elapsed < 4:
                        shaper.stall(True)
                    elif phase == "stall":
                        shaper.stall(False)
                    if phase == "SIGHUP broken config" and not fault_done and elapsed > 1:
                        config.write_bytes(b"[policy]\ngoal = \"\xff\"\n")
                        daemon.process.send_signal(signal.SIGHUP)
                        fault_done = True
                    if phase == "SIGHUP broken config" and fault_done and elapsed > 4 \
                            and not config.read_bytes().startswith(b"[daemon]"):
                        write_daemon_config(config, **sections)   # repaired; the next SIGHUP would read it
                    clients.pump(phase)
                    if not rss or time.monotonic() - start - rss[-1][0] >= 1.0:
                        rss.append((time.monotonic() - start, resident_mib(pid)))
                shaper.stall(False)
            drain_end = time.monotonic() + 10
            while any(clients.outstanding) and time.monotonic() < drain_end:
                clients.pump(None, 100)
            rss.append((time.monotonic() - start, resident_mib(pid)))
            alive = daemon.process.poll() is None
        finally:
            clients.close()
            if flooder is not None:
                flooder.close(0)
            for s in socket_flooders:
                s.close(0)
            if fake is not None:
                fake.kill()
            daemon.stop()
            shaper.stop()
            cloud.stop()

    sent = len(clients.sent_at)
    answered = sum(1 for k in clients.sent_at if clients.replies.get(k))
    duplicated = sum(1 for v in clients.replies.values() if len(v) > 1)
    wrong_by_phase = Counter(clients.sent_at[k][1] for k, label in clients.labels.items()
                             if label != truth[clients.frame_of[k]])
    wrong = sum(wrong_by_phase.values())
    print(f"{args.clients} clients, {args.phase_s:g} s per phase; the flooder sent {flood_sent} frames and read none")
    print(f"frames sent {sent}, answered {answered}, lost {sent - answered}, duplicated {duplicated}, "
          f"wrong {wrong} (of {len(clients.labels)} cloud-only answers checked against the full model); "
          f"daemon alive at the end: {alive}")
    print(f"{'phase':<22} {'answers':>8} {'p50 ms':>8} {'p99 ms':>8} {'wrong':>6}  codes")
    for phase in PHASES:
        lat = clients.latency[phase]
        print(f"{phase:<22} {len(lat):8d} {percentile(lat, 50):8.1f} {percentile(lat, 99):8.1f} "
              f"{wrong_by_phase[phase]:6d}  {dict(clients.codes[phase])}")
    base, flood = clients.latency["baseline"], clients.latency["flood"]
    print(f"flooder's effect on the others: p99 {percentile(base, 99):.1f} -> {percentile(flood, 99):.1f} ms "
          f"(x{percentile(flood, 99) / percentile(base, 99):.2f}); RESOURCE_EXHAUSTED for them in the flood: "
          f"{clients.codes['flood'].get('RESOURCE_EXHAUSTED', 0)}")
    print("RSS MiB over time: " + ", ".join(f"{t:.0f}s {m:.0f}" for t, m in rss[:: max(1, len(rss) // 12)])
          + f", end {rss[-1][1]:.0f}")
    print(f"RSS: first {rss[0][1]:.0f} MiB, max {max(m for _, m in rss):.0f} MiB, last {rss[-1][1]:.0f} MiB; "
          f"median {statistics.median(m for _, m in rss):.0f} MiB")
    print(f"reproduce: python bench/fault_soak.py --clients {args.clients} --phase-s {args.phase_s:g}")
    return 0 if sent == answered and duplicated == 0 and wrong == 0 and alive else 1


if __name__ == "__main__":
    sys.exit(main())
