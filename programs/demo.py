"""`adaptinf demo`: the mission on one machine: 224x224 frames over changing uplinks, where
the per-frame planner picks split points and follows the link.

For each link (paper 004's fixed 3G / 4G / Wi-Fi uplinks, and recorded cellular
traces replayed as Mahimahi does), it starts a shaping link in front of a real cloud
worker process, and a real adaptinfd process on the bundle (its warm-up measures the
device, the cloud and the link before the trace clock starts). Then the same frames
arrive open loop at --fps, as a camera's do, under every policy: adaptive for latency,
adaptive for energy, and every static partition (mobile-only, cloud-only, each split
point). Every run restarts the trace at its START on an empty link.

Per link and policy it prints latency (mean, p50, p95, p99), deadline misses, device
energy, bytes up, accuracy, fallbacks and the partitions chosen, beside the
perfect-knowledge bound (rig/oracle.py). --json writes every frame so anyone can
recompute every figure, and beside it, per link, the daemon's flight recording of the
runs (`<json stem>.recordings/<link>.jsonl`, the recorder's format: `adaptinf explain`
and `adaptinf replay` read it); --plot draws the trace, the adaptive picks and latency CDFs.

The device and the cloud share this CPU, so the daemon emulates one device whose full
model takes --device-ms ([device].emulate_slowdown, set from a measurement here); it
runs one frame at a time, as a device with one GPU does.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from adaptinf import __version__
from adaptinf.bundle import Bundle, BundleError, load_bundle
from adaptinf.client import Client
from adaptinf.profile import load_profile
from adaptinf.rig.link_shaper import LINK_PROFILES, LinkProfile, LinkShaper, trace_profile
from adaptinf.rig.open_loop import stream
from adaptinf.rig.oracle import perfect_knowledge
from adaptinf.rig.processes import spawn_cloud, spawn_daemon, write_daemon_config
from adaptinf.rig.uplink_trace import TraceError, parse_trace_spec

PACKAGE = Path(__file__).resolve().parent.parent     # the checkout, or site-packages/adaptinf
DEMO_BUNDLE = PACKAGE / "bundles" / "glyphnet224"
TRACES = PACKAGE / "traces"
# the shipped synthetic traces (traces/README.md), where their capacity moves most: a 3G
# outage and its recovery, an LTE rise
DEFAULT_TRACES = (f"{TRACES / 'synthetic-3g.up'}:21-25", f"{TRACES / 'synthetic-lte.up'}:10-14")
DEFAULT_FPS = 5.0   # at 10 fps the 100 ms device is at utilisation 1.0 (docs/demo.md)
ADAPTIVE = (("adaptive-latency", "latency"), ("adaptive-energy", "energy"))
COMPUTE_POWER_W = 5.0
JSON_VERSION = 1


@dataclass
class Link:
    name: str
    profile: LinkProfile
    radio: str          # the uplink power model (paper 004 Table III) for device energy
    spec: str | None    # the trace spec, for trace links


def parse_links(names: str, traces: list[str], rtt_ms: float) -> list[Link]:
    links = []
    for name in (n.strip().lower() for n in names.split(",") if n.strip()):
        if name == "none":
            continue
        if name not in LINK_PROFILES:
            raise ValueError(f"--links: unknown link {name!r}; choose from {', '.join(LINK_PROFILES)} or none")
        links.append(Link(LINK_PROFILES[name].name, LINK_PROFILES[name], name, None))
    for spec in traces:
        trace = parse_trace_spec(spec)
        radio = min(LINK_PROFILES, key=lambda r: abs(math.log(LINK_PROFILES[r].uplink_bps / trace.mean_bps)))
        links.append(Link(trace.name, trace_profile(trace, rtt_ms / 1e3), radio, spec))
    if not links:
        raise ValueError("no link to run: give --links and/or --uplink-trace")
    return links


def demo_frames(bundle: Bundle, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n held-out glyph frames at the bundle's input size: a seed no build or calibration used."""
    from adaptinf.toolchain.glyphs import make_glyphs
    from adaptinf.toolchain.split_builder import TEST_SEED_OFFSET

    size = bundle.input.shape[1]
    g = make_glyphs(n, seed=int(bundle.data.get("seed", 0)) + TEST_SEED_OFFSET, size=size)
    return g.images[:, None], g.labels


def host_full_model_ms(bundle: Bundle, runs: int = 30) -> float:
    """The full model's median time on this host, one thread, as the daemon's engine runs it."""
    from adaptinf.engines.onnxruntime_engine import OnnxRuntimeEngine

    engine = OnnxRuntimeEngine(bundle.path(bundle.full_model.file))
    frame = np.zeros(bundle.input.shape, bundle.input.dtype)
    times = []
    for _ in range(runs + 3):
        start = time.perf_counter()
        engine.run(frame)
        times.append(time.perf_counter() - start)
    return statistics.median(times[3:]) * 1e3


# ---- running ------------------------------------------------------------------------
def run_link(link: Link, bundle_dir: Path, cloud_endpoint: str, tmp: Path, args, images, labels,
             slowdown: float, out) -> dict:
    host, port = cloud_endpoint.rsplit("//", 1)[1].rsplit(":", 1)
    # the warm-up measures the link at the trace's mean rate, before the trace clock starts:
    # a window that opens with an outage would otherwise leave the profile without the cloud
    warmup = replace(link.profile, uplink_trace=None)
    shaper = LinkShaper((host, int(port)), warmup).start()
    slug = "".join(c if c.isalnum() else "-" for c in link.name.lower())[:40]
    api = f"ipc://{tmp}/api-{slug}.sock"
    state = tmp / slug
    config = write_daemon_config(
        tmp / f"adaptinfd-{slug}.toml",
        daemon={"api_endpoint": api, "bundle": str(bundle_dir), "state_dir": str(state), "workers": 16,
                "queue_size": 256, "warmup_runs": 7, "inline_max_ms": 0.0,
                "max_in_flight_per_client": 272},   # one client streams every frame: its share is all of it
        device={"emulate_slowdown": float(slowdown), "compute_power_w": COMPUTE_POWER_W},
        cloud={"endpoint": shaper.endpoint, "radio": link.radio, "device_id": f"demo-{slug}",
               "timeout_ms": float(args.deadline_ms)},
        power={"source": "none"})
    trace = link.profile.uplink_trace
    what = (f"trace {trace.name}, mean {trace.mean_bps / 1e6:.2f} Mbit/s" if trace else
            f"uplink {link.profile.uplink_bps / 1e6:.2f} Mbit/s")
    out(f"\n{link.name}: {what}, RTT {link.profile.rtt_s * 1e3:.0f} ms; starting adaptinfd "
        "(warm-up measures device, cloud and link)...")
    daemon = spawn_daemon(config)
    try:
        with Client(api, timeout_s=10) as client:
            status = client.status()
        est = status["link"]
        profile = load_profile(state / "profile.json")
        partitions = [p.name for p in profile.partitions]
        out(f"  measured: uplink {(est['uplink_bps'] or 0) / 1e6:.2f} Mbit/s, RTT {est['rtt_ms'] or 0:.1f} ms; "
            f"partitions {', '.join(partitions)}")
        shaper.set_profile(link.profile)
        policies = [(name, "split", goal) for name, goal in ADAPTIVE] + [(p, p, "latency") for p in partitions]
        runs = []
        n = len(images)
        for label, policy, goal in policies:
            start = shaper.restart() + 0.05     # empty link, trace at START; the first frame just after
            bar = tqdm(total=n, desc=f"  {label}", unit="frame", leave=False, disable=None)   # None: no bar in a log
            result = stream(api, images, args.fps, lambda i: {"policy": policy, "goal": goal,
                                                               "deadline_ms": float(args.deadline_ms)},
                            start, drain_s=max(10.0, 4 * args.deadline_ms / 1e3), progress=lambda i: bar.update())
            bar.close()
            runs.append({"policy": label, "frames": [_frame_record(f, start, labels, args.deadline_ms)
                                                     for f in result.frames],
                         "unanswered": result.unanswered, "duplicated": result.duplicated})
    finally:
        daemon.stop()
        shaper.stop()
    recording = None
    if args.json:   # the daemon's flight recording of this link's runs, beside the JSON
        recording = args.json.with_name(f"{args.json.stem}.recordings") / f"{slug}.jsonl"
        recording.parent.mkdir(parents=True, exist_ok=True)
        with open(recording, "wb") as f:
            for part in sorted((state / "recordings").glob("rec-*.jsonl")):
                f.write(part.read_bytes())
    sources = trace.sources if trace else ()
    return {"name": link.name, "radio": link.radio,
            "trace": ({"path": " + ".join(s.path for s in sources), "spec": link.spec,
                       "sha256": sources[0].sha256 if len(sources) == 1 else
                       hashlib.sha256("".join(s.sha256 for s in sources).encode()).hexdigest(),
                       "start_s": sources[0].start_s, "end_s": sources[-1].end_s if len(sources) == 1 else None,
                       "parts": [vars(s) for s in sources]} if trace else None),
            "uplink_bps": None if trace else link.profile.uplink_bps,
            "rtt_ms": link.profile.rtt_s * 1e3, "profile": json.loads((state / "profile.json").read_text()),
            "runs": runs, "recording": str(recording) if recording else None}


def _frame_record(f, start: float, labels: np.ndarray, deadline_ms: float) -> dict:
    h = f.header or {}
    ok = h.get("ok", False)
    served = h.get("served_by", {}) if ok else {}
    latency_ms = f.latency_s * 1e3 if f.latency_s is not None else None
    return {"i": f.i, "t_s": round(f.scheduled_at - start, 6), "partition": served.get("partition"),
            "latency_ms": latency_ms, "energy_j": h.get("energy_j", 0.0) if ok else 0.0,
            "upload_bytes": served.get("upload_bytes", 0), "code": h.get("code", "NO_REPLY"),
            "correct": bool(ok and h.get("label") == int(labels[f.i])), "fallback": bool(served.get("fallback")),
            "deadline_missed": bool(not ok or latency_ms is None or latency_ms > deadline_ms),
            "est_uplink_bps": served.get("est_uplink_bps"), "answers": f.answers}


# ---- summaries ------------------------------------------------------------------------
def summarise(run: dict) -> dict:
    frames = run["frames"]
    lat = np.array([f["latency_ms"] if f["latency_ms"] is not None else np.nan for f in frames])
    answered = lat[~np.isnan(lat)]
    energy = np.array([f["energy_j"] for f in frames])
    return {"mean_ms": float(answered.mean()) if len(answered) else float("nan"),
            "p50_ms": float(np.percentile(answered, 50)) if len(answered) else float("nan"),
            "p95_ms": float(np.percentile(answered, 95)) if len(answered) else float("nan"),
            "p99_ms": float(np.percentile(answered, 99)) if len(answered) else float("nan"),
            "misses": sum(f["deadline_missed"] for f in frames), "energy_mj": float(energy.mean() * 1e3),
            "upload_b": float(np.mean([f["upload_bytes"] for f in frames])),
            "accuracy": float(np.mean([f["correct"] for f in frames])), "fallbacks": sum(f["fallback"] for f in frames),
            "partitions": Counter(f["partition"] or f["code"] for f in frames), "frames": len(frames),
            "unanswered": sum(f["answers"] == 0 for f in frames), "duplicated": sum(f["answers"] > 1 for f in frames)}


def bound_for(link: dict, link_profile: LinkProfile, frames: list[dict]) -> dict:
    from adaptinf.profile import parse_profile

    profile = parse_profile(link["profile"])
    bound = perfect_knowledge(profile, link_profile, link["radio"], np.array([f["t_s"] for f in frames]))
    return {"mean_ms": float(np.mean([b.latency_s for b in bound]) * 1e3),
            "energy_mj": float(np.mean([b.energy_j for b in bound]) * 1e3),
            "latency_partitions": Counter(b.latency_partition for b in bound),
            "energy_partitions": Counter(b.energy_partition for b in bound)}


HEADER = (f"{'policy':17} {'mean ms':>8} {'p50':>7} {'p95':>7} {'p99':>7} {'miss':>5} {'mJ':>7} {'up B':>7} "
          f"{'acc':>6} {'fallb':>5}  partitions chosen")


def report(links: list[dict], link_profiles: list[LinkProfile], deadline_ms: float, out=print) -> list[dict]:
    """The table per link; returns per link the figures the goals are judged on."""
    verdicts = []
    for link, lp in zip(links, link_profiles):
        rows = {run["policy"]: summarise(run) for run in link["runs"]}
        bound = bound_for(link, lp, link["runs"][0]["frames"])
        out(f"\n{link['name']} (RTT {link['rtt_ms']:.0f} ms, deadline {deadline_ms:.0f} ms)")
        out(HEADER)
        for policy, s in rows.items():
            chosen = ", ".join(f"{name} {count}" for name, count in s["partitions"].most_common(3))
            out(f"{policy:17} {s['mean_ms']:8.1f} {s['p50_ms']:7.1f} {s['p95_ms']:7.1f} {s['p99_ms']:7.1f} "
                f"{s['misses']:5d} {s['energy_mj']:7.2f} {s['upload_b']:7.0f} {s['accuracy']:6.1%} "
                f"{s['fallbacks']:5d}  {chosen}")
        static = {p: s for p, s in rows.items() if not p.startswith("adaptive")}
        best_lat = min(static, key=lambda p: static[p]["mean_ms"])
        best_energy = min(static, key=lambda p: static[p]["energy_mj"])
        a_lat, a_energy = rows["adaptive-latency"], rows["adaptive-energy"]
        picks = ", ".join(f"{n} {c}" for n, c in bound["latency_partitions"].most_common(3))
        out(f"{'bound':17} {bound['mean_ms']:8.1f} {'':31} {bound['energy_mj']:7.2f}  (perfect knowledge; "
            f"latency picks {picks})")
        split_share = sum(c for name, c in a_lat["partitions"].items() if name not in
                          ("mobile-only", "cloud-only") and name in static) / max(a_lat["frames"], 1)
        v = {"link": link["name"], "best_static_latency": best_lat, "S_ms": static[best_lat]["mean_ms"],
             "A_ms": a_lat["mean_ms"], "B_ms": bound["mean_ms"],
             "best_static_energy": best_energy, "S_mj": static[best_energy]["energy_mj"],
             "A_mj": a_energy["energy_mj"], "B_mj": bound["energy_mj"], "split_share": split_share,
             "unanswered": sum(s["unanswered"] for s in rows.values()),
             "duplicated": sum(s["duplicated"] for s in rows.values())}
        v["gain_bound"] = (v["S_ms"] - v["B_ms"]) / v["S_ms"]
        v["gain_achieved"] = (v["S_ms"] - v["A_ms"]) / (v["S_ms"] - v["B_ms"]) if v["S_ms"] != v["B_ms"] else float("nan")
        out(f"adaptive (latency) / best static ({best_lat}) = {v['A_ms'] / v['S_ms']:.3f}; / bound = "
            f"{v['A_ms'] / v['B_ms']:.3f}.  adaptive (energy) / best static ({best_energy}) = "
            f"{v['A_mj'] / v['S_mj']:.3f}; / bound = {v['A_mj'] / v['B_mj']:.3f}.  split points served "
            f"{split_share:.0%} of adaptive (latency)'s frames; frames unanswered {v['unanswered']}, "
            f"answered twice {v['duplicated']}")
        verdicts.append(v)
    return verdicts


def best_single(links: list[dict]) -> dict:
    """The one static partition a user would have to pick for the whole deployment: the lowest
    mean latency (and, separately, energy) over every link's frames, beside adaptive's."""
    pooled: dict[str, list[dict]] = {}
    for link in links:
        for run in link["runs"]:
            pooled.setdefault(run["policy"], []).extend(run["frames"])
    rows = {policy: summarise({"frames": frames}) for policy, frames in pooled.items()}
    everywhere = set.intersection(*({run["policy"] for run in link["runs"]} for link in links))
    static = [p for p in rows if not p.startswith("adaptive") and p in everywhere]
    lat = min(static, key=lambda p: rows[p]["mean_ms"])
    energy = min(static, key=lambda p: rows[p]["energy_mj"])
    return {"latency": lat, "S_ms": rows[lat]["mean_ms"], "A_ms": rows["adaptive-latency"]["mean_ms"],
            "energy": energy, "S_mj": rows[energy]["energy_mj"], "A_mj": rows["adaptive-energy"]["energy_mj"],
            "per_link_ms": {link["name"]: summarise(next(r for r in link["runs"] if r["policy"] == lat))["mean_ms"]
                            for link in links}}


def report_overall(verdicts: list[dict], single: dict, out=print) -> None:
    """Per link, adaptive against that link's best static partition and against the best single one."""
    out(f"\nThe best single configuration over all links: {single['latency']} for latency "
        f"({single['S_ms']:.1f} ms mean), {single['energy']} for energy ({single['S_mj']:.2f} mJ)")
    out(f"{'link':34} {'best static':>12} {'adaptive/it':>11} {'adaptive/' + single['latency']:>16}")
    for v in verdicts:
        out(f"{v['link'][:34]:34} {v['best_static_latency']:>12} {v['A_ms'] / v['S_ms']:11.3f} "
            f"{v['A_ms'] / single['per_link_ms'][v['link']]:16.3f}")
    out(f"{'all links':34} {single['latency']:>12} {'':11} {single['A_ms'] / single['S_ms']:16.3f}"
        f"   (energy: adaptive/{single['energy']} = {single['A_mj'] / single['S_mj']:.3f})")


# ---- plot -----------------------------------------------------------------------------
def policy_colours(policies: list[str]) -> dict[str, object]:
    """One colour per policy and partition for the whole figure: the adaptive policies black and
    grey, every static partition its own hue (tab20's strong half, then its pale half)."""
    import matplotlib.pyplot as plt

    # tab20's greys (14, 15) are left out: grey is adaptive-energy's
    palette = [plt.get_cmap("tab20")(i) for i in list(range(0, 20, 2)) + list(range(1, 20, 2)) if i not in (14, 15)]
    colours: dict[str, object] = {"adaptive-latency": "black", "adaptive-energy": "0.55"}
    for name in policies:
        if name not in colours:
            colours[name] = palette[(len(colours) - 2) % len(palette)]
    return colours


def plot(links: list[dict], link_profiles: list[LinkProfile], path: Path) -> None:
    """Per link: the capacity, the daemon's estimate and adaptive's picks over time; latency CDFs;
    mean and p95 latency per policy, adaptive highlighted. Axes start at zero where linear."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    n = len(links)
    fig, axes = plt.subplots(n, 3, figsize=(18, 3.8 * n), squeeze=False,
                             gridspec_kw={"width_ratios": [2.2, 1, 1]})
    names = [r["policy"] for r in links[0]["runs"]]
    for link in links:
        for run in link["runs"]:
            names += [f["partition"] or f["code"] for f in run["frames"]]
    colours = policy_colours(list(dict.fromkeys(names)))
    for row, (link, lp) in enumerate(zip(links, link_profiles)):
        ax, cdf, bars = axes[row]
        adaptive = next(r for r in link["runs"] if r["policy"] == "adaptive-latency")["frames"]
        t = np.array([f["t_s"] for f in adaptive])
        if lp.uplink_trace is not None:
            edges, cap = lp.uplink_trace.capacity_bps(0.5)
            keep = edges <= t.max() + 1
            ax.fill_between(edges[keep], cap[keep] / 1e6, step="post", color="0.85", label="capacity (trace)")
            top = cap[keep].max() / 1e6
            ax.set_xlabel("seconds from the trace window's start")
        else:
            ax.axhspan(0, lp.uplink_bps / 1e6, color="0.85", label="capacity (fixed)")
            top = lp.uplink_bps / 1e6
            ax.set_xlabel("seconds from the run's start")
        est = np.array([(f["est_uplink_bps"] or np.nan) / 1e6 for f in adaptive])
        ax.plot(t, est, color="black", ls="--", lw=1.2, label="daemon's estimate")
        # an estimate spike must not flatten the capacity: clip the axis, and say so
        ceiling = 1.6 * max(top, float(np.nanmedian(est)) if np.isfinite(est).any() else 0.0, 1e-3)
        ax.set_ylim(0, ceiling)
        if np.nanmax(est, initial=0.0) > ceiling:
            ax.text(0.01, 0.97, f"estimate clipped at {ceiling:.1f} Mbit/s (max {np.nanmax(est):.1f})",
                    transform=ax.transAxes, va="top", fontsize=7)
        ax.set_ylabel("uplink Mbit/s")
        ax.set_title(f"{link['name']}: adaptive (latency), each frame's partition and latency")
        lat_ax = ax.twinx()
        for name in sorted({f["partition"] or f["code"] for f in adaptive}):
            pts = [(f["t_s"], f["latency_ms"]) for f in adaptive if (f["partition"] or f["code"]) == name
                   and f["latency_ms"] is not None]
            if pts:
                lat_ax.scatter(*zip(*pts), s=12, color=colours[name], label=name, zorder=3, edgecolors="none")
        lat_ax.set_ylim(0, 1.15 * max((f["latency_ms"] or 0.0 for f in adaptive), default=1.0) + 1e-3)
        lat_ax.set_ylabel("latency ms (dots)")
        handles = ax.get_legend_handles_labels()[0] + lat_ax.get_legend_handles_labels()[0]
        ax.legend(handles, [h.get_label() for h in handles], loc="upper left", bbox_to_anchor=(1.07, 1.0),
                  fontsize=7, frameon=False)
        summaries = []
        for run in link["runs"]:
            lat = np.sort([f["latency_ms"] for f in run["frames"] if f["latency_ms"] is not None])
            adaptive_run = run["policy"].startswith("adaptive")
            if len(lat):
                cdf.plot(lat, np.arange(1, len(lat) + 1) / len(lat), color=colours[run["policy"]],
                         lw=2.2 if adaptive_run else 1.0, ls="-" if run["policy"] != "adaptive-energy" else "--",
                         zorder=3 if adaptive_run else 2)
                summaries.append((run["policy"], float(lat.mean()), float(np.percentile(lat, 95))))
        cdf.set_xscale("log")
        lo, hi = cdf.get_xlim()
        ticks = [t for t in (10, 20, 30, 50, 70, 100, 150, 200, 300, 500, 700, 1000, 2000, 5000, 10000) if lo <= t <= hi]
        cdf.xaxis.set_major_locator(FixedLocator(ticks))
        cdf.xaxis.set_major_formatter(ScalarFormatter())
        cdf.xaxis.set_minor_formatter(NullFormatter())
        cdf.set_ylim(0, 1.0)
        cdf.set_xlabel("latency ms (log scale)")
        cdf.set_ylabel("share of frames")
        cdf.set_title("latency CDF per policy (colours as in the bars)")
        y = np.arange(len(summaries))
        for k, (policy, mean, p95) in enumerate(summaries):
            adaptive_run = policy.startswith("adaptive")
            bars.barh(k, mean, color=colours[policy], edgecolor="red" if adaptive_run else "none",
                      lw=1.5)
            bars.plot([p95], [k], marker="|", color="black", markersize=10, mew=2)
        bars.set_yticks(y, [p for p, _, _ in summaries], fontsize=7)
        for label, (policy, _, _) in zip(bars.get_yticklabels(), summaries):
            if policy.startswith("adaptive"):
                label.set_fontweight("bold")
        bars.invert_yaxis()
        bars.set_xlim(left=0)
        bars.set_xlabel("latency ms: bar = mean, | = p95")
        best = min((s for s in summaries if not s[0].startswith("adaptive")), key=lambda s: s[1], default=None)
        bars.set_title(f"who wins: best static {best[0]}" if best else "latency per policy")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# ---- command ----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="adaptinf demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--bundle", type=Path, default=DEMO_BUNDLE, help="default: the shipped 224x224 bundle")
    parser.add_argument("--links", default="3g,4g,wifi",
                        help="fixed links of paper 004 Table III: 3g, 4g, wifi, comma-separated, or none")
    parser.add_argument("--uplink-trace", action="append", default=None, metavar="FILE[:START-END]",
                        help="a Mahimahi uplink trace, or seconds START-END of one; repeat for more links; "
                             "join with + to play several back to back as one link; 'none' for no trace "
                             "(default: the shipped synthetic traces, " + " and ".join(
                                 Path(t).name for t in DEFAULT_TRACES) + ")")
    parser.add_argument("--seconds", type=float, default=None,
                        help="length of each run (default: the longest trace window, or 10 s on fixed links only)")
    parser.add_argument("--fps", type=float, default=DEFAULT_FPS,
                        help=f"frames per second, open loop (default {DEFAULT_FPS:g}: the emulated device "
                             "at half load under mobile-only)")
    parser.add_argument("--deadline-ms", type=float, default=500.0, help="each frame's deadline (default 500)")
    parser.add_argument("--rtt-ms", type=float, default=40.0, help="RTT of trace links (default 40)")
    parser.add_argument("--device-ms", type=float, default=100.0,
                        help="the emulated device's full-model time (default 100)")
    parser.add_argument("--json", type=Path, default=None, help="write every frame of every run here")
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG: trace, adaptive picks, CDFs")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # the frames are rendered with Pillow (the 'demo' extra): say so before anything starts
    from adaptinf.toolchain import glyphs  # noqa: F401
    traces = list(DEFAULT_TRACES) if args.uplink_trace is None else \
        [t for t in args.uplink_trace if t.strip().lower() != "none"]
    try:
        links = parse_links(args.links, traces, args.rtt_ms)
        bundle = load_bundle(args.bundle)
    except (ValueError, TraceError, BundleError) as exc:
        print(f"adaptinf demo: {exc}", file=sys.stderr)
        return 2
    for name, value in (("--fps", args.fps), ("--deadline-ms", args.deadline_ms), ("--device-ms", args.device_ms),
                        ("--seconds", args.seconds if args.seconds is not None else 1.0)):
        if not (math.isfinite(value) and value > 0):
            print(f"adaptinf demo: {name} must be a positive number", file=sys.stderr)
            return 2
    if bundle.split is None or not bundle.split.points:
        print(f"adaptinf demo: {args.bundle} has no split points: build one with `adaptinf build split`",
              file=sys.stderr)
        return 2
    started = time.time()
    windows = [lk.profile.uplink_trace.duration_s for lk in links if lk.profile.uplink_trace]
    seconds = max(args.seconds or (max(windows) if windows else 10.0), 1.0 / args.fps)
    n = max(1, int(round(seconds * args.fps)))
    images, labels = demo_frames(bundle, n)
    host_ms = host_full_model_ms(bundle)
    slowdown = max(1.0, args.device_ms / host_ms)
    print(f"adaptinf demo: bundle {bundle.name} ({bundle.input.shape[1]}x{bundle.input.shape[2]}, "
          f"{len(bundle.split.points)} split points), {n} frames per run at {args.fps:g} fps, deadline "
          f"{args.deadline_ms:g} ms; full model {host_ms:.1f} ms here, emulated device x{slowdown:.1f} "
          f"= {host_ms * slowdown:.0f} ms")
    results = []
    with tempfile.TemporaryDirectory(prefix="adaptinf-demo-") as tmp:
        cloud = spawn_cloud(args.bundle)
        try:
            for link in links:
                results.append(run_link(link, args.bundle, cloud.endpoint, Path(tmp), args, images, labels,
                                        slowdown, print))
        finally:
            cloud.stop()
    profiles = [lk.profile for lk in links]
    verdicts = report(results, profiles, args.deadline_ms)
    single = best_single(results)
    report_overall(verdicts, single)
    if args.json:
        args.json.write_text(json.dumps({"version": JSON_VERSION, "fps": args.fps, "deadline_ms": args.deadline_ms,
                                         "device_ms": host_ms * slowdown, "links": results, "summary": verdicts,
                                         "best_single": single},
                                        indent=None, default=_jsonable) + "\n")
        print(f"\nframes: {args.json}")
    if args.plot:
        plot(results, profiles, args.plot)
        print(f"plot: {args.plot}")
    runs = sum(len(r["runs"]) for r in results)
    print(f"\n{runs} runs, {runs * n} frames in {time.time() - started:.0f} s. Device energy = compute at the "
          f"modelled {COMPUTE_POWER_W:g} W + uplink radio by paper 004 Table III (no power sensor here).")
    return 0


def _jsonable(value):
    if isinstance(value, Counter):
        return dict(value)
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    raise TypeError(type(value).__name__)
