"""`adaptinf demo`: the whole system on one machine, under paper 004's three uplinks.

For each link profile (3G, 4G, Wi-Fi: 1.1, 5.85, 18.88 Mbit/s up) it starts a real
cloud worker process behind a shaping proxy, a real adaptinfd process on the demo
bundle (its warm-up measures the shaped link), and streams the same glyph frames
through the local API under four policies: adaptive split for latency, adaptive
split for energy, mobile-only and cloud-only. It prints, per profile and policy,
the partitions chosen, mean and p95 latency, device energy, bytes uploaded and
accuracy.

The device and the cloud share this CPU, so the daemon emulates a device
`--slowdown` times slower than the host ([device].emulate_slowdown): the paper's
Jetson TX2 is about 30x slower than its GTX 1080 Ti server.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from adaptinf.bundle import load_bundle
from adaptinf.client import Client
from adaptinf.rig.link_shaper import LINK_PROFILES, LinkShaper
from adaptinf.rig.processes import spawn_cloud, spawn_daemon, write_daemon_config

DEMO_BUNDLE = Path(__file__).resolve().parent.parent / "bundles" / "glyphnet"
RUNS = (("adaptive (latency)", "split", "latency"), ("adaptive (energy)", "split", "energy"),
        ("mobile-only", "mobile-only", "latency"), ("cloud-only", "cloud-only", "latency"))


@dataclass
class RunSummary:
    link: str
    policy: str
    partitions: Counter
    latencies_ms: list
    energy_j: list
    upload_bytes: list
    correct: int
    fallbacks: int

    def row(self) -> str:
        lat = np.asarray(self.latencies_ms)
        chosen = ", ".join(f"{name} {count}" for name, count in self.partitions.most_common(3))
        return (f"{self.link:6} {self.policy:19} {np.mean(lat):8.1f} {np.percentile(lat, 95):8.1f} "
                f"{np.mean(self.energy_j) * 1e3:9.2f} {np.mean(self.upload_bytes):8.0f} "
                f"{self.correct / len(lat):6.1%} {self.fallbacks:5d}  {chosen}")


HEADER = (f"{'link':6} {'policy':19} {'mean ms':>8} {'p95 ms':>8} {'energy mJ':>9} {'upload B':>8} "
          f"{'acc':>6} {'fallb':>5}  partitions chosen")


def frames_for_demo(n: int, seed: int = 2024) -> tuple[np.ndarray, np.ndarray]:
    """The same n glyph frames for every run (the glyph renderer needs Pillow: a build dependency)."""
    from adaptinf.toolchain.glyphs import make_glyphs

    g = make_glyphs(n, seed=seed)
    return g.images, g.labels


def run_demo(bundle_dir: Path, frames: int, slowdown: float, links: list[str], out=print) -> list[RunSummary]:
    load_bundle(bundle_dir)  # refuse a broken bundle before starting any process
    images, labels = frames_for_demo(frames)
    summaries = []
    with tempfile.TemporaryDirectory(prefix="adaptinf-demo-") as tmp:
        cloud = spawn_cloud(bundle_dir)
        host, port = cloud.endpoint.rsplit("//", 1)[1].rsplit(":", 1)
        try:
            for link_name in links:
                profile = LINK_PROFILES[link_name]
                shaper = LinkShaper((host, int(port)), profile).start()
                api = f"ipc://{tmp}/api-{link_name}.sock"
                config = write_daemon_config(
                    Path(tmp) / f"adaptinfd-{link_name}.toml",
                    daemon={"api_endpoint": api, "bundle": str(bundle_dir), "state_dir": f"{tmp}/{link_name}"},
                    device={"emulate_slowdown": float(slowdown), "compute_power_w": 5.0},
                    cloud={"endpoint": shaper.endpoint, "radio": link_name, "device_id": f"demo-{link_name}"})
                out(f"\n{profile.name}: uplink {profile.uplink_bps / 1e6:.2f} Mbit/s, RTT {profile.rtt_s * 1e3:.0f} ms "
                    f"(shaped); starting adaptinfd (warm-up measures device, cloud and link)...")
                daemon = spawn_daemon(config)
                try:
                    with Client(api, timeout_s=10) as client:
                        link = client.status()["link"]
                        out(f"  measured: uplink {link['uplink_bps'] / 1e6:.2f} Mbit/s, RTT {link['rtt_ms']:.1f} ms")
                        for label, policy, goal in RUNS:
                            summaries.append(_stream(client, profile.name, label, policy, goal, images, labels))
                finally:
                    daemon.stop()
                    shaper.stop()
        finally:
            cloud.stop()
    return summaries


def _stream(client: Client, link: str, label: str, policy: str, goal: str, images: np.ndarray,
            labels: np.ndarray) -> RunSummary:
    s = RunSummary(link, label, Counter(), [], [], [], 0, 0)
    for i in tqdm(range(len(labels)), desc=f"  {label}", unit="frame", leave=False):
        r = client.infer(images[i:i + 1], policy=policy, goal=goal)
        s.partitions[r.served_by["partition"]] += 1
        s.latencies_ms.append(r.latency_ms["total"])
        s.energy_j.append(r.energy_j)
        s.upload_bytes.append(r.served_by.get("upload_bytes", 0))
        s.correct += int(r.label == labels[i])
        s.fallbacks += int(r.served_by.get("fallback", False))
    return s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="adaptinf demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=DEMO_BUNDLE)
    parser.add_argument("--frames", type=int, default=60, help="frames per link and policy (default %(default)s)")
    parser.add_argument("--slowdown", type=float, default=20.0,
                        help="emulated device slowdown vs this CPU (default %(default)s)")
    parser.add_argument("--links", default="3g,4g,wifi", help="comma-separated: 3g, 4g, wifi")
    args = parser.parse_args(argv)
    if not (args.bundle / "manifest.json").exists():
        from adaptinf.toolchain.split_builder import DEMO_CONFIG, build_split

        print(f"no bundle at {args.bundle}: building the demo bundle (about 6 minutes on 2 cores)")
        build_split(DEMO_CONFIG, args.bundle)
    start = time.time()
    links = [name.strip() for name in args.links.split(",") if name.strip()]
    summaries = run_demo(args.bundle, args.frames, args.slowdown, links)
    print("\n" + HEADER)
    for s in summaries:
        print(s.row())
    print(f"\n{len(summaries) * args.frames} frames in {time.time() - start:.0f} s. Energy is device energy "
          f"(compute at the configured 5 W + uplink radio by paper 004 Table III); no power sensor here.")
    return 0
