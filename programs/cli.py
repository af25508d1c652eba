"""The `adaptinf` command: build bundles, explain plans, run the demo, query the daemon."""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from pathlib import Path

import numpy as np

from adaptinf import __version__
from adaptinf.bundle import BundleError
from adaptinf.extras import run_needing_extra

# tc(8)'s rate units (iproute2 tc_util.c): "bit" suffixes are bits per second, "bps"
# suffixes BYTES per second; k/m/g/t are powers of 1000, ki/mi/gi/ti powers of 1024.
_PREFIX = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "ki": 2.0**10, "mi": 2.0**20, "gi": 2.0**30,
           "ti": 2.0**40}
TC_RATE_UNITS = {**{f"{p}bit": v for p, v in _PREFIX.items()}, **{f"{p}bps": 8 * v for p, v in _PREFIX.items()}}


def parse_rate(text: str) -> float:
    """A rate in tc's units -> bits per second: '5.85mbit' (megabits), '800kbit', '2mbps' or
    '2MB/s' (megaBYTES per second, as tc reads them), or a plain number of bits per second."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z/]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    # the "/s" spellings: Mbit/s is mbit, MB/s is mbps
    unit = re.sub(r"^([kmgt]i?)?b/s$", lambda m: f"{m.group(1) or ''}bps", re.sub(r"bit/s$", "bit", unit))
    if not match or (unit and unit not in TC_RATE_UNITS):
        raise argparse.ArgumentTypeError(
            f"not a rate in tc's units: {text!r}; say 5.85mbit (megabits/s), 800kbit, 2mbps or 2MB/s "
            "(megabytes/s), or a plain number of bits/s")
    value = float(match.group(1)) * TC_RATE_UNITS.get(unit or "bit")
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError("the rate must be a positive, finite number")
    return Rate(value, text.strip(), unit.endswith("bps"))


def _as_bits(text: str) -> str:
    """'5Mbps' -> '5mbit': the same number in bits, as most users meant it."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kmgt]i?)?.*", text.lower())
    return f"{match.group(1)}{match.group(2) or ''}bit" if match else text


class Rate(float):
    """Bits per second, with how the user wrote it (to say when tc's byte units were meant)."""

    def __new__(cls, value: float, text: str = "", bytes_unit: bool = False):
        rate = super().__new__(cls, value)
        rate.text, rate.bytes_unit = text, bytes_unit
        return rate


def nearest_radio(uplink_bps: float) -> str:
    from adaptinf.policies.radio_power import RADIOS

    return min(RADIOS, key=lambda r: abs(RADIOS[r].nominal_uplink_bps - uplink_bps))


def cmd_plan(args: argparse.Namespace) -> int:
    from adaptinf.policies.plan import FrameContext, Telemetry
    from adaptinf.policies.split import SplitPolicy
    from adaptinf.profile import ProfileError, load_profile

    try:
        profile = load_profile(args.profile)
    except ProfileError as exc:
        print(f"adaptinf plan: {exc}", file=sys.stderr)
        return 2
    for option, value in (("--rtt-ms", args.rtt_ms), ("--sla-ms", args.sla_ms)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            print(f"adaptinf plan: {option} must be a finite number of milliseconds >= 0, got {value}",
                  file=sys.stderr)
            return 2
    if getattr(args.uplink, "bytes_unit", False):
        print(f"adaptinf plan: note: --uplink {args.uplink.text} is {args.uplink / 1e6:g} Mbit/s: tc's 'bps' units "
              f"are BYTES per second; for megabits say {_as_bits(args.uplink.text)}",
              file=sys.stderr)
    radio = args.radio or nearest_radio(args.uplink)
    rtt_ms = args.rtt_ms if args.rtt_ms is not None else (profile.link.rtt_ms if profile.link else 0.0)
    telemetry = Telemetry(uplink_bps=args.uplink, rtt_s=rtt_ms / 1e3, radio=radio)
    frame = FrameContext(goal=args.goal, mode=args.mode, deadline_s=args.sla_ms / 1e3 if args.sla_ms else None)
    try:
        plan = SplitPolicy(args.goal).plan(frame, telemetry, profile, explain=True)
    except ValueError as exc:
        print(f"adaptinf plan: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"chosen": plan.chosen.name, "goal": plan.goal, "mode": plan.mode,
                          "candidates": [c.__dict__ for c in plan.candidates]}, indent=1))
        return 0
    print(f"uplink {args.uplink / 1e6:.2f} Mbit/s ({radio} power model), RTT {rtt_ms:.1f} ms, goal {plan.goal}, "
          f"mode {plan.mode}" + (f", SLA {args.sla_ms:.0f} ms" if args.sla_ms else ""))
    print(f"{'':2}{'partition':12} {'device ms':>9} {'upload ms':>9} {'rtt ms':>7} {'cloud ms':>8} "
          f"{'latency ms':>10} {'energy mJ':>9} {'accuracy':>8}")
    for c in plan.candidates:
        mark = "->" if c.name == plan.chosen.name else "  "
        acc = f"{c.accuracy:.3f}" if c.accuracy is not None else "-"
        sla = " misses SLA" if args.sla_ms and c.latency_s * 1e3 > args.sla_ms else ""
        print(f"{mark}{c.name:12} {c.device_s * 1e3:9.2f} {c.upload_s * 1e3:9.2f} {c.network_s * 1e3:7.2f} "
              f"{c.cloud_s * 1e3:8.2f} {c.latency_s * 1e3:10.2f} {c.energy_j * 1e3:9.2f} {acc:>8}{sla}")
    print(f"chosen: {plan.chosen.name} (min {plan.goal})")
    return 0


def cmd_build_split(args: argparse.Namespace) -> int:
    if args.onnx is not None and args.torch is not None:
        print("adaptinf build split: give --onnx (cut as it is) or --torch (butterflies, fine-tuned), not both",
              file=sys.stderr)
        return 2
    if args.onnx is not None:
        return cmd_build_split_onnx(args)
    if args.torch is not None:
        return cmd_build_split_torch(args)
    from adaptinf.toolchain.split_builder import SplitBuildConfig, build_split

    if args.points and args.points.isdigit():
        print("adaptinf build split: --points N (a count) is for --onnx; a trained split takes point names, "
              "e.g. --points RB1,RB3", file=sys.stderr)
        return 2
    config = SplitBuildConfig(name=args.name or "glyphnet", model=args.model, dataset=args.dataset or "glyphs",
                              weights=str(args.weights or ""), n_train=args.n_train,
                              n_val=args.n_val, epochs=args.epochs, finetune_epochs=1 if args.finetune_epochs is None else args.finetune_epochs,
                              accuracy_loss=args.accuracy_loss, seed=args.seed, max_dr=args.max_dr or 0,
                              points=tuple(p for p in args.points.split(",") if p) if args.points else ())
    try:
        manifest = build_split(config, args.out)
    except (OSError, ValueError) as exc:  # a dataset folder that is not there, not images, ...
        print(f"adaptinf build split: {exc}", file=sys.stderr)
        return 2
    split = manifest["split"]
    print(f"bundle {args.out}: baseline accuracy {split['baseline_accuracy']:.3f}, "
          f"bound {split['accuracy_loss_bound']:.3f}")
    for p in split["points"]:
        print(f"  {p['name']:6} D={p['D']:<4} D_r={p['D_r']:<3} upload {p['upload_bytes']:>7} B  "
              f"head {p['head_flops'] / 1e6:8.1f} MFLOP  tail {p['tail_flops'] / 1e6:8.1f} MFLOP  "
              f"accuracy {p['accuracy']:.3f}")
    for p in split.get("rejected_points", []):
        print(f"  {p['name']:6} rejected: no D_r up to the limit met the bound")
    return 0


def _three_floats(text: str, option: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(np.isfinite(values)):
        raise ValueError(f"{option} takes three comma-separated numbers (R,G,B), got {text!r}")
    return values


def cmd_build_split_onnx(args: argparse.Namespace) -> int:
    """`build split --onnx`: cut a trained ONNX model, no training (toolchain/onnx_split.py)."""
    from adaptinf.toolchain.onnx_split import OnnxSplitConfig, OnnxSplitError, build_onnx_split

    program = "adaptinf build split --onnx"
    try:
        points = int(args.points or 4)
        classes = ()
        if args.classes is not None:
            classes = tuple(line.strip() for line in args.classes.read_text().splitlines() if line.strip())
        config = OnnxSplitConfig(name=args.name or "", points=points, samples=args.samples,
                                 calibration=args.calibration or "", dataset=args.dataset or "", upload=args.upload,
                                 resize=args.resize, channel_order=args.channel_order, scale=args.scale,
                                 mean=_three_floats(args.mean, "--mean"), std=_three_floats(args.std, "--std"),
                                 classes=classes, seed=args.seed)
        if not args.onnx.is_file():
            raise OnnxSplitError(f"{args.onnx}: no such file")
        manifest = build_onnx_split(args.onnx, args.out, config)
    except (OnnxSplitError, OSError, ValueError) as exc:
        print(f"{program}: {exc}", file=sys.stderr)
        return 2
    full = manifest["models"][0]
    frame = manifest["input"]
    print(f"bundle {args.out}: {manifest['name']} takes {frame['dtype']}{frame['shape']}"
          + (" or camera frames (uint8 H x W x 3)" if manifest.get("preprocess") else "")
          + f", {full['flops'] / 1e6:.1f} MFLOP, outputs "
          + ", ".join(f"{o['name']} {o['dtype']}{o['shape']}" for o in manifest["outputs"]))
    if full["accuracy"] is not None:
        print(f"  full model accuracy {full['accuracy']:.3f} on {manifest['data']['n_held_out']} held-out images")
    for p in manifest["split"]["points"]:
        a = p["agreement"]
        agree = (f"top-1 agreement {a['top1_agreement']:.1%}" if "top1_agreement" in a
                 else f"max error {a['max_abs_error']:.3g} (outputs span {a['output_range']:.3g})")
        acc = f"  accuracy {p['accuracy']:.3f}" if p["accuracy"] is not None else ""
        print(f"  {p['name']:4} upload {p['upload_bytes']:>8} B {p['upload']:7}  head {p['head_flops'] / 1e6:8.1f} "
              f"MFLOP  tail {p['tail_flops'] / 1e6:8.1f} MFLOP  {agree} on {a['samples']} samples{acc}")
    for p in manifest["split"].get("rejected_points", []):
        print(f"  {p['name']:4} at {p['layer'][:50]} rejected: {p['reason']}")
    return 0


def cmd_build_split_torch(args: argparse.Namespace) -> int:
    """`build split --torch MODULE:FACTORY --weights CKPT`: butterflies in the user's trained model."""
    from adaptinf.toolchain.torch_butterfly import TorchSplitConfig, TorchSplitError, build_torch_split

    program = "adaptinf build split --torch"
    if args.weights is None or not args.dataset:
        print(f"{program}: needs --weights CKPT.pt (the trained model's state_dict) and --dataset folder:PATH "
              "(<class>/<image>, to fine-tune and to measure on)", file=sys.stderr)
        return 2
    try:
        config = TorchSplitConfig(factory=args.torch, weights=str(args.weights), dataset=args.dataset,
                                  name=args.name or "", size=args.size, points=int(args.points or 4),
                                  accuracy_loss=args.accuracy_loss,
                                  max_dr=16 if args.max_dr is None else args.max_dr,
                                  finetune_epochs=2 if args.finetune_epochs is None else args.finetune_epochs, mean=_three_floats(args.mean, "--mean"),
                                  std=_three_floats(args.std, "--std"), resize=args.resize, seed=args.seed)
        manifest = build_torch_split(config, args.out)
    except (TorchSplitError, OSError, ValueError) as exc:
        print(f"{program}: {exc}", file=sys.stderr)
        return 2
    split = manifest["split"]
    print(f"bundle {args.out}: {manifest['name']}, accuracy {split['baseline_accuracy']:.3f} validation, "
          f"{split['baseline_accuracy_test']:.3f} held-out test ({manifest['data']['n_test']} images)")
    print(f"  {'point':5} {'block':24} {'D':>4} {'D_r':>4} {'upload B':>9} {'test acc':>8}   "
          f"plain 8-bit cut: {'upload B':>9} {'test acc':>8}")
    for p in split["points"]:
        plain = p["plain_8bit"]
        print(f"  {p['name']:5} {p['layer'][:24]:24} {p['D']:>4} {p['D_r']:>4} {p['upload_bytes']:>9} "
              f"{p['accuracy_test']:>8.3f}   {'':17}{plain['upload_bytes']:>9} {plain['accuracy_test']:>8.3f}")
    for p in split.get("rejected_points", []):
        print(f"  {p['name']:5} {p['layer'][:24]:24} rejected: {p['reason']}")
    return 0


def cmd_build_preprocess(args: argparse.Namespace) -> int:
    from adaptinf.bundle import BundleError
    from adaptinf.toolchain.preprocess_graph import add_to_bundle

    try:
        manifest = add_to_bundle(args.bundle, args.resize)
    except (BundleError, ValueError, OSError) as exc:
        print(f"adaptinf build preprocess: {exc}", file=sys.stderr)
        return 2
    size = manifest["preprocess"]["size"]
    print(f"{args.bundle}: takes camera frames of any size now ({args.resize} to {size[0]}x{size[1]})")
    return 0


def cmd_build_dsnn(args: argparse.Namespace) -> int:
    from adaptinf.toolchain.datasets import digits_features
    from adaptinf.toolchain.dsnn import DsnnConfig, build_dsnn, export

    x, y = digits_features()
    order = np.random.default_rng(args.seed).permutation(len(y))
    n_val = len(y) // 4
    val, train = order[:n_val], order[n_val:]
    config = DsnnConfig(thresholds=args.thresholds, constraint=args.constraint, seed=args.seed,
                        max_width=args.max_width)
    result = build_dsnn(x[train], y[train], x[val], y[val], config)
    print(f"monolithic {config.baseline_hidden}: accuracy {result.monolithic_accuracy:.3f}, "
          f"{result.monolithic_macs} MACs; {len(result.points)} design points, {len(result.pareto)} on the front")
    for p in result.pareto:
        print(f"  t={p.threshold:.3f} main {list(p.main_hidden)} tail {list(p.tail_hidden)}: accuracy "
              f"{p.accuracy:.3f}, {p.expected_macs:.0f} MACs ({result.monolithic_macs / p.expected_macs:.1f}x fewer)")
    try:
        manifest = export(result, args.out, x[train][:200])
    except ValueError as exc:
        print(f"adaptinf build dsnn: {exc}", file=sys.stderr)
        return 2
    chosen = manifest["chosen"]
    print(f"chosen (>= {args.constraint:.0%} of the monolithic accuracy): accuracy {chosen['accuracy']:.3f}, "
          f"{chosen['expected_macs']:.0f} expected MACs -> {args.out}")
    return 0


def _client(args: argparse.Namespace):
    from adaptinf.client import Client

    return Client(args.endpoint, timeout_s=args.timeout)


def seconds(text: str) -> float:
    """An argparse type: a finite, positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def watch_seconds(text: str) -> float:
    """--watch: 0 (once) or a positive refresh period."""
    return 0.0 if text.strip() in ("0", "0.0") else seconds(text)


def _fmt(value, scale=1.0, unit="", digits=1) -> str:
    return "?" if value is None else f"{value * scale:.{digits}f}{unit}"


def render_status(reply: dict, stats: dict) -> str:
    """The daemon at a glance: what a person checks first (the status reply, read as its typed value)."""
    from adaptinf.daemon.status import DaemonStatus

    st = DaemonStatus.from_reply(reply)
    link, cloud, power, device = st.link, st.cloud, st.power, st.device
    lat = st.latency
    placements = "  ".join(f"{k} {v}" for k, v in sorted(stats["placements"].items(), key=lambda kv: -kv[1]))
    codes = "  ".join(f"{k} {v}" for k, v in sorted(stats["codes"].items()))
    if power.get("sensor"):
        sensor = (f"{power['source']}  {_fmt(power.get('power_w'), unit=' W', digits=2)}  (idle "
                  f"{_fmt(power.get('idle_power_w'), unit=' W', digits=2)}, computing "
                  f"{_fmt(power.get('active_power_w'), unit=' W', digits=2)}, errors {power.get('errors', 0)})")
    else:
        sensor = f"model: {power.get('model_compute_power_w')} W while computing (no sensor)"
    return "\n".join([
        f"adaptinfd  {st.bundle_name} ({st.bundle_sha256[:12]})  up "
        f"{st.uptime_s:.0f} s  mode {st.mode}  policy {st.policy} (goal {st.goal})",
        f"link      {link.state:<10} uplink {_fmt(link.uplink_bps, 1e-6, ' Mbit/s', 2)} "
        f"± {_fmt(link.uplink_bps_std, 1e-6, '', 2)}  RTT {_fmt(link.rtt_s, 1e3, ' ms')} "
        f"± {_fmt(link.rtt_s_std, 1e3)}  radio {link.radio}  measured "
        f"{_fmt(link.uplink_age_s, unit=' s ago')}  uplink queue {_fmt(link.uplink_backlog_s, 1e3, ' ms')}",
        f"cloud     {cloud.state:<10} queue {cloud.queue_depth}  service {_fmt(cloud.service_s, 1e3, ' ms', 2)}"
        f"  compute x{cloud.time_vs_profile:.2f} of profile  retries {cloud.retries}  reconnects {cloud.reconnects}"
        f"  late replies dropped {cloud.late_replies_dropped}",
        f"power     {sensor}",
        f"device    {device.backend}  compute x{device.time_vs_profile:.2f} of profile"
        f"{'  (emulated x%g slower)' % device.emulated_slowdown if device.emulated_slowdown != 1 else ''}"
        f"  queued {device.queue_depth}"
        f"  busy workers {device.busy_workers}  at the device {device.frames_at_device}"
        f" (wait {_fmt(device.device_wait_s, 1e3, ' ms')})",
        f"latency   p50 {_fmt(lat.get('p50_ms'), unit=' ms')}  p95 {_fmt(lat.get('p95_ms'), unit=' ms')}"
        f"  p99 {_fmt(lat.get('p99_ms'), unit=' ms')}",
        f"frames    {placements or 'none yet'}",
        f"replies   {codes or 'none yet'}",
        f"profile   {st.profile}",
    ] + _board_lines(device.board))


def _board_lines(board: dict | None) -> list[str]:
    """What jtop shows on a Jetson: GPU load, temperatures, clocks, power mode."""
    if not board:
        return []
    temps = "  ".join(f"{k} {v:.0f}°C" for k, v in sorted((board.get("temperatures_c") or {}).items()))
    clocks = "  ".join(f"{k} {v:.0f} MHz" for k, v in sorted((board.get("clocks_mhz") or {}).items()))
    return [f"jetson    {board.get('model', '?')}  power mode {board.get('power_mode', '?')}  GPU "
            f"{_fmt(board.get('gpu_load_percent'), unit='%', digits=0)}",
            f"          {temps or 'no temperatures'}",
            f"          {clocks or 'no clocks'}"]


def cmd_status(args: argparse.Namespace) -> int:
    import time

    from adaptinf.client import ApiFailure, ApiTimeout, ApiUnreachable

    try:
        with _client(args) as client:
            while True:
                status, stats = client.status(), client.stats()
                if args.json:
                    print(json.dumps(status, indent=1, default=str))
                else:
                    if args.watch and sys.stdout.isatty():
                        print("\033[2J\033[H", end="")  # clear the terminal between refreshes
                    elif args.watch:
                        print(f"--- {time.strftime('%H:%M:%S')}")  # a pipe or a file: no terminal codes
                    print(render_status(status, stats), flush=True)
                if not args.watch:
                    return 0
                time.sleep(args.watch)
    except (ApiFailure, ApiTimeout, ApiUnreachable) as exc:
        print(f"adaptinf status: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


def cmd_query(args: argparse.Namespace) -> int:
    from adaptinf.client import ApiFailure, ApiTimeout, ApiUnreachable

    try:
        with _client(args) as client:
            if args.command == "set-mode":
                result = client.set_mode(args.mode)
            else:
                result = getattr(client, args.command)()
    except (ApiFailure, ApiTimeout, ApiUnreachable) as exc:
        print(f"adaptinf {args.command}: {exc}", file=sys.stderr)
        return 1
    if isinstance(result, list):            # models: the list itself
        print(json.dumps(result, indent=1, default=str))
        return 0
    body = {k: v for k, v in result.items() if k not in ENVELOPE}
    if args.command == "stats" and not args.json:
        print(render_stats(body))
        return 0
    print(json.dumps(body, indent=1, default=str))
    return 0


ENVELOPE = ("v", "id", "ok", "code", "message")   # the API's reply envelope, not the answer


def _frame_options(args: argparse.Namespace) -> dict:
    return {k: v for k, v in (("model", args.model), ("policy", args.policy), ("goal", args.goal),
                              ("deadline_ms", args.deadline_ms)) if v is not None}


def cmd_infer(args: argparse.Namespace) -> int:
    """`adaptinf infer IMAGE...`: image files to the daemon, one answer each."""
    from adaptinf.client import ApiTimeout, ApiUnreachable
    from adaptinf.programs.stream import run_infer

    try:
        with _client(args) as client:
            return run_infer(client, args.images, args.json, _frame_options(args))
    except (ApiTimeout, ApiUnreachable) as exc:
        print(f"adaptinf infer: {exc}", file=sys.stderr)
        return 1


def cmd_stream(args: argparse.Namespace) -> int:
    """`adaptinf stream --source URI`: a video, a camera or images into the daemon at their rate."""
    from adaptinf.client import ApiTimeout, ApiUnreachable
    from adaptinf.programs.frame_sources import SourceError, open_source
    from adaptinf.programs.stream import run_stream

    if args.fps is not None and not (np.isfinite(args.fps) and args.fps > 0):
        print("adaptinf stream: --fps must be a positive number", file=sys.stderr)
        return 2
    if args.in_flight < 1:
        print("adaptinf stream: --in-flight must be at least 1", file=sys.stderr)
        return 2
    try:
        source = open_source(args.source)
    except SourceError as exc:
        print(f"adaptinf stream: {exc}", file=sys.stderr)
        return 2
    emit = (lambda record: None) if args.quiet else (lambda record: print(json.dumps(record), flush=False))
    try:
        with _client(args) as client:
            summary = run_stream(client, source, args.fps, args.drop, args.in_flight, _frame_options(args), emit,
                                 max_frames=args.frames)
    except (ApiTimeout, ApiUnreachable, SourceError) as exc:
        print(f"adaptinf stream: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    sys.stdout.flush()
    result = summary.to_dict()
    if args.summary_json:
        print(json.dumps({"summary": result}), file=sys.stderr)
    else:
        lat = result["latency_ms"]
        latency = (f"latency p50 {lat['p50']:.1f} / p90 {lat['p90']:.1f} / p99 {lat['p99']:.1f} ms" if lat
                   else "no latency (nothing answered)")
        print(f"{source.uri}: {result['frames']} frames in {result['seconds']:.1f} s: {result['answered']} answered "
              f"({result['answered_per_s']:.1f}/s), {result['dropped']} dropped, errors {result['errors'] or 0}; "
              f"{latency}; placements {result['placements']}", file=sys.stderr)
    return 0


def _numbers(text: str, option: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"{option} takes positive numbers, comma-separated (e.g. 1,4,16), got {text!r}")
    return values


def duration(text: str) -> float:
    """An argparse type: 90, 90s, 10m, 2h or 1d, in seconds."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        value = float(number) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration: a number with s, m, h or d, e.g. 10m") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive duration")
    return value


def cmd_record(args: argparse.Namespace) -> int:
    """`adaptinf record`: the next --seconds of a running daemon's records, or --since AGO from its files."""
    from adaptinf.client import ApiError, ApiTimeout, ApiUnreachable
    from adaptinf.programs import flight

    try:
        with _client(args) as client:
            if args.seconds is not None:
                print(f"recording {args.seconds:g} s from {client.endpoint} ...", file=sys.stderr)
                n = flight.pull(client, args.seconds, args.out)
            else:
                directory = client.request("record", {"after": 0, "limit": 1})[0]["directory"]
                n = flight.since(Path(directory), args.since, args.out)
    except (ApiError, ApiTimeout, ApiUnreachable) as exc:
        print(f"adaptinf record: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"adaptinf record: {exc}", file=sys.stderr)
        return 1
    print(f"{n} records -> {args.out}  (adaptinf explain {args.out} FRAME_ID, adaptinf replay {args.out})")
    return 0


def _recording(path: Path, program: str):
    from adaptinf.programs import flight
    from adaptinf.recording import RecordingError

    try:
        return flight.load(path)
    except RecordingError as exc:
        print(f"adaptinf {program}: {exc}", file=sys.stderr)
        return None


def cmd_explain(args: argparse.Namespace) -> int:
    from adaptinf.profile import ProfileError
    from adaptinf.programs import flight

    rec = _recording(args.recording, "explain")
    if rec is None:
        return 2
    if args.frame is None and args.plot is None:
        print("adaptinf explain: give a FRAME id to explain, or --plot OUT.png", file=sys.stderr)
        return 2
    try:
        if args.frame is not None:
            flight.explain(rec, args.frame)
        if args.plot is not None:
            flight.plot(rec, args.plot)
            print(f"plot: {args.plot}")
    except (flight.ReplayError, ProfileError) as exc:
        print(f"adaptinf explain: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from adaptinf.profile import ProfileError
    from adaptinf.programs import flight

    rec = _recording(args.recording, "replay")
    if rec is None:
        return 2
    try:
        if args.estimator:
            score = flight.replay_estimator(rec)
            if not score.uploads:
                print("no timed upload in the recording: nothing for the estimator to predict")
                return 0
            print(f"link estimator on {score.uploads} recorded uploads: each round trip predicted from the estimate "
                  f"when it was sent; median error {score.median_error:.1%}, within 25% for "
                  f"{score.within_25:.1%}")
            return 0
        profile = flight.load_profile_arg(args.profile)
        result = flight.replay(rec, args.policy, args.goal, profile)
    except (flight.ReplayError, ProfileError, ValueError) as exc:
        print(f"adaptinf replay: {exc}", file=sys.stderr)
        return 2
    flight.report_replay(result, args.policy, args.goal, args.profile is not None)
    return 0


def cmd_perf(args: argparse.Namespace) -> int:
    """`adaptinf perf`: frames/s and latency percentiles under a concurrency or a rate, per step."""
    from adaptinf.client import ApiError, ApiTimeout, ApiUnreachable
    from adaptinf.programs.perf import model_frame, print_table, run_step

    try:
        if args.rate is not None and args.concurrency is not None:
            raise ValueError("give --concurrency or --rate, not both")
        mode = "rate" if args.rate is not None else "concurrency"
        values = _numbers(args.rate if mode == "rate" else (args.concurrency or "1,4,16"), f"--{mode}")
        if mode == "concurrency" and not all(v == int(v) for v in values):
            raise ValueError("--concurrency takes whole numbers")
        if not (np.isfinite(args.seconds) and args.seconds > 0):
            raise ValueError("--seconds must be a positive number")
        camera = None
        if args.camera:
            h, _, w = args.camera.lower().partition("x")
            camera = (int(h), int(w))
    except ValueError as exc:
        print(f"adaptinf perf: {exc}", file=sys.stderr)
        return 2
    try:
        with _client(args) as client:
            client.max_in_flight = max(client.max_in_flight, int(max(values)) if mode == "concurrency" else 16)
            frame = model_frame(client, args.model, camera)
            steps = [run_step(client, frame, mode, v, args.seconds, _frame_options(args)) for v in values]
    except (ApiError, ApiTimeout, ApiUnreachable) as exc:
        print(f"adaptinf perf: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"frame": {"dtype": frame.dtype.name, "shape": list(frame.shape)},
                          "steps": [s.to_dict() for s in steps]}, indent=1))
    else:
        print(f"frame {frame.dtype.name}{list(frame.shape)}, {args.seconds:g} s per step, policy "
              f"{args.policy or 'the daemon default'}")
        print_table(steps, sys.stdout)
    return 0


def render_stats(stats: dict) -> str:
    """`adaptinf stats`: per stage, per placement and per policy, as tables."""
    def table(title: str, rows: list[tuple], header: tuple) -> list[str]:
        widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)] if rows else [len(h) for h in header]
        line = lambda cells: "  ".join(str(c).rjust(w) if i else str(c).ljust(w)  # noqa: E731
                                       for i, (c, w) in enumerate(zip(cells, widths)))
        return [title, line(header), *(line(r) for r in rows), ""] if rows else [title, "  none yet", ""]

    def timed(entries: dict) -> list[tuple]:
        return [(name, e["count"], f"{e['ns'] / e['count'] / 1e6:.2f}", f"{e['ns'] / 1e9:.1f}")
                for name, e in entries.items() if e.get("count")]

    out = [f"uptime {stats.get('uptime_s', 0):.0f} s", ""]
    out += table("time per stage", timed(stats.get("stages", {})), ("stage", "count", "mean ms", "total s"))
    out += table("frames per policy", timed(stats.get("policies", {})), ("policy", "frames", "mean ms", "total s"))
    out += table("frames by placement", sorted(stats.get("placements", {}).items(), key=lambda kv: -kv[1]),
                 ("placement", "frames"))
    out += table("replies by code", sorted(stats.get("codes", {}).items()), ("code", "replies"))
    out += table("counters", sorted(stats.get("counters", {}).items()), ("counter", "value"))
    return "\n".join(out).rstrip()


def cmd_power(args: argparse.Namespace) -> int:
    """Find power sensors and print live samples: for checking the wiring on a board."""
    import time

    from adaptinf.drivers.ina226 import SensorError
    from adaptinf.drivers.power_sources import discover, open_ina226

    sources = []
    if args.i2c_bus is not None:
        try:
            sources.append(open_ina226(args.i2c_bus, args.address, args.shunt_ohms, args.max_current))
        except (SensorError, ValueError) as exc:
            print(f"INA226 on /dev/i2c-{args.i2c_bus} at 0x{args.address:02x}: {exc}", file=sys.stderr)
    sources += discover(args.sysfs_root)
    if not sources:
        print(f"no power sensor found (searched {args.sysfs_root}sys/class/hwmon, the INA3221 drivers"
              f"{', /dev/i2c-%d' % args.i2c_bus if args.i2c_bus is not None else ''} and jtop)", file=sys.stderr)
        return 1
    for s in sources:
        print(f"found {s.name}")
    print("time s  " + "  ".join(f"{s.name:>24}" for s in sources))
    start = time.monotonic()
    for _ in range(args.count):
        cells = []
        for s in sources:
            try:
                cells.append(f"{s.read_power_w():22.3f} W")
            except SensorError as exc:
                cells.append(f"{'error: ' + str(exc)[:17]:>24}")
        print(f"{time.monotonic() - start:6.2f}  " + "  ".join(cells), flush=True)
        time.sleep(1.0 / args.rate)
    return 0


def cmd_install_service(args: argparse.Namespace) -> int:
    """Write the unit, the sysusers.d file, udev rules and (if absent) the config under --root;
    print what to run next."""
    import shutil
    from importlib import resources

    files = resources.files("adaptinf.systemd")
    adaptinfd = shutil.which("adaptinfd") or f"{sys.executable} -m adaptinf.daemon.main"
    for warning in hidden_by_unit(adaptinfd.split()[0]):
        print(f"warning: {warning}", file=sys.stderr)
    # the checkout's docs/, or the installed package's (package data): beside programs/
    docs = Path(__file__).resolve().parent.parent / "docs" / "deployment.md"
    root = Path(args.root)
    targets = {
        root / "etc/systemd/system/adaptinfd.service":
            files.joinpath("adaptinfd.service").read_text().replace("@ADAPTINFD@", adaptinfd)
                                                       .replace("@DOCS@", docs.as_uri()),
        root / "etc/sysusers.d/adaptinf.conf": files.joinpath("adaptinf.sysusers.conf").read_text(),
        root / "etc/udev/rules.d/99-adaptinf.rules": files.joinpath("99-adaptinf.rules").read_text(),
        root / "etc/adaptinf/adaptinfd.toml": files.joinpath("adaptinfd.toml").read_text(),
    }
    for path, text in targets.items():
        if path.name == "adaptinfd.toml" and path.exists():
            print(f"kept      {path} (exists)")
            continue
        if args.dry_run:
            print(f"would write {path}")
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote     {path}")
    print("\nnext, as root:\n"
          "  systemd-sysusers                  # user adaptinf, and the unit's groups the board lacks\n"
          "  udevadm control --reload-rules && udevadm trigger\n"
          "  systemctl daemon-reload && systemctl enable --now adaptinfd\n"
          "  journalctl -u adaptinfd -f        # logs\n"
          "  usermod -aG adaptinf USER         # whose apps use the API; then, as USER: adaptinf status")
    return 0


# What the unit's sandbox hides from the service (systemd.exec(5)): a daemon installed
# there cannot start. The recommended home is a virtualenv in /opt/adaptinf/venv.
HIDDEN_BY_UNIT = {"PrivateTmp=yes": ("/tmp", "/var/tmp"), "ProtectHome=yes": ("/home", "/root", "/run/user")}


def hidden_by_unit(executable: str) -> list[str]:
    """Warnings for an ExecStart the unit would hide: by the path as written (a venv's own
    bin/python under /tmp), and by its real path (a symlinked directory that resolves to /root)."""
    real = os.path.realpath(executable)
    warnings, seen = [], set()
    for path, how in ((os.path.abspath(executable), "is"), (real, f"resolves to {real}, which is")):
        for setting, prefixes in HIDDEN_BY_UNIT.items():
            for prefix in prefixes:
                if (path == prefix or path.startswith(prefix + "/")) and setting not in seen:
                    seen.add(setting)
                    warnings.append(
                        f"ExecStart {executable} {how} under {prefix}, which the unit's {setting} hides from the "
                        "service: it would not start. Install into /opt/adaptinf/venv (python3 -m venv "
                        "/opt/adaptinf/venv && /opt/adaptinf/venv/bin/pip install adaptinf) and run its "
                        "adaptinf install-service")
    return warnings


def cmd_export_triton(args: argparse.Namespace) -> int:
    from adaptinf.bundle import BundleError, load_bundle
    from adaptinf.cloud.triton_repository import add_tensorrt_plans, export_repository

    try:
        bundle = load_bundle(args.bundle)
    except BundleError as exc:
        print(f"adaptinf export triton: {exc}", file=sys.stderr)
        return 2
    backend = "tensorrt" if args.tensorrt else args.backend
    names = export_repository(bundle, args.out, backend="python" if backend == "python" else "onnxruntime",
                              dynamic_batching=not args.no_dynamic_batching)
    if backend == "tensorrt":
        try:
            names += add_tensorrt_plans(bundle, args.out)
        except RuntimeError as exc:
            print(f"adaptinf export triton: {exc}", file=sys.stderr)
            return 2
    print(f"Triton model repository {args.out}: {', '.join(names)}")
    print(f"serve it:  tritonserver --model-repository={args.out}"
          + ("  (the Python backend: nvidia-pytriton's tritonserver runs it on a CPU)" if backend == "python" else
             "  (NVIDIA's container: the onnxruntime and tensorrt backends)"))
    print(f"gateway:   adaptinf-cloud --bundle {args.bundle} --triton <triton-host>:8001 ...")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from adaptinf.cloud.curve_auth import KeyFileError, generate_keypair

    try:
        public, secret = generate_keypair(args.dir, args.name, force=args.force)
    except (KeyFileError, OSError) as exc:
        print(f"adaptinf keys generate: {exc}", file=sys.stderr)
        return 2
    print(f"public key: {public}   (give to the other side: the cloud's allowed-devices dir, or the devices)")
    print(f"secret key: {secret}   (stays here, mode 0600)")
    return 0


def cmd_build_multiplexer(args: argparse.Namespace) -> int:
    from adaptinf.toolchain.multiplexer_build import build_and_report

    return build_and_report(args.out, args.widths, args.epochs, args.mux_epochs, args.n_train, args.seed,
                            args.objective)


def cmd_build_zoo(args: argparse.Namespace) -> int:
    from adaptinf.toolchain.zoo import ZOO, ZooConfig, build_and_report

    members = tuple(m for m in args.models.split(",") if m) if args.models else tuple(m.name for m in ZOO)
    try:
        config = ZooConfig(n_train=args.n_train, epochs=args.epochs, seed=args.seed, members=members)
        return build_and_report(args.out, config)
    except ValueError as exc:
        raise SystemExit(f"adaptinf build zoo: {exc}") from None


def cmd_build_duo(args: argparse.Namespace) -> int:
    from adaptinf.toolchain.speculative_build import configure_and_report

    return configure_and_report(args.bundle, args.little)


def cmd_build_little(args: argparse.Namespace) -> int:
    from adaptinf.toolchain.little_models import LittleConfig, build_and_report

    try:
        config = LittleConfig(width=args.width, resolutions=_int_list(args.resolutions), keep=args.keep,
                              custom_floats=tuple(v for v in args.custom_floats.split(",") if v), epochs=args.epochs,
                              n_explore=args.n_explore, seed=args.seed)
    except ValueError as exc:
        raise SystemExit(f"adaptinf build little: {exc}") from None
    return build_and_report(args.bundle, config)


def _int_list(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v)


def cmd_build_mmnet(args: argparse.Namespace) -> int:
    from adaptinf.toolchain.speculative_build import configure_mmnet_and_report

    return configure_mmnet_and_report(args.bundle)


def cmd_build_frame_pool(args: argparse.Namespace) -> int:
    from adaptinf.toolchain.frame_pool import build_and_report

    if args.out.exists():
        raise SystemExit(f"{args.out} exists: choose a new --out")
    return build_and_report(args.big, args.pool, args.out)


def cmd_mcu_selftest(args: argparse.Namespace) -> int:
    import struct

    from adaptinf.programs.mcu_selftest import selftest

    if args.model is not None:
        blob = args.model / "dsnn_system.aims"
        try:
            from adaptinf.drivers.mcu_model import parse_system

            parse_system(blob.read_bytes())
        except OSError as exc:
            print(f"adaptinf mcu selftest: --model {args.model}: cannot read {blob.name} ({exc.strerror or exc}); "
                  "give the directory `adaptinf build dsnn --out` wrote", file=sys.stderr)
            return 2
        except (ValueError, struct.error, IndexError) as exc:
            print(f"adaptinf mcu selftest: {blob}: not a model the firmware takes ({exc})", file=sys.stderr)
            return 2
    return 0 if selftest(args.port, args.model, args.count) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="adaptinf", description="adaptive edge-cloud inference runtime")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    build = sub.add_parser("build", help="build a model bundle").add_subparsers(dest="kind", required=True)
    split = build.add_parser(
        "split", help="split points -> bundle: any trained ONNX model (--onnx), or butterfly units (paper 004)",
        description="With --onnx MODEL.onnx: cut a trained single-input model at points found in its graph, "
                    "no training. Otherwise: train butterfly units (paper 004 Algorithm 1).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    split.add_argument("--out", type=Path, required=True)
    split.add_argument("--name", default=None, help="bundle name (default: glyphnet, or the ONNX file's stem)")
    split.add_argument("--onnx", type=Path, default=None, metavar="MODEL.onnx",
                       help="a trained ONNX model to cut (opset 13+, one input)")
    split.add_argument("--samples", type=int, default=32, help="--onnx: generated inputs for the checks")
    split.add_argument("--calibration", default=None, metavar="folder:PATH", help="--onnx: images for the checks")
    split.add_argument("--upload", default="auto", choices=["auto", "uint8", "float16"],
                       help="--onnx: what crosses the link (auto: 8 bits where the answers hold)")
    split.add_argument("--resize", default="stretch", choices=["stretch", "letterbox", "center-crop"],
                       help="--onnx: how a camera frame is fitted to the model's size")
    split.add_argument("--channel-order", default="RGB", choices=["RGB", "BGR"], help="--onnx: the model's")
    split.add_argument("--scale", type=float, default=1 / 255, help="--onnx: pixel scale before mean/std")
    split.add_argument("--mean", default="0.485,0.456,0.406", help="--onnx: per-channel mean (R,G,B)")
    split.add_argument("--std", default="0.229,0.224,0.225", help="--onnx: per-channel std (R,G,B)")
    split.add_argument("--classes", type=Path, default=None, metavar="FILE",
                       help="--onnx: class names, one a line: the model is a classifier")
    split.add_argument("--torch", default=None, metavar="MODULE:FACTORY",
                       help="a PyTorch model (e.g. torchvision.models:mobilenet_v3_large) whose trained --weights "
                            "get butterfly units, fine-tuned on --dataset")
    split.add_argument("--weights", type=Path, default=None, metavar="CKPT.pt",
                       help="trained weights (a state_dict) for --torch or --model: no training from scratch")
    split.add_argument("--size", type=int, default=224, help="--torch: the model's input size (pixels)")
    split.add_argument("--model", default="glyph_resnet", choices=["glyph_resnet", "resnet50"])
    split.add_argument("--dataset", default=None,
                       help="glyphs | digits | folder:PATH (default glyphs; with --onnx: labelled images "
                            "<class>/<image> for held-out accuracy)")
    split.add_argument("--n-train", type=int, default=12000)
    split.add_argument("--n-val", type=int, default=2000)
    split.add_argument("--epochs", type=int, default=8)
    split.add_argument("--finetune-epochs", type=int, default=None,
                       help="per (point, D_r) candidate (default 1; --torch: 2)")
    split.add_argument("--accuracy-loss", type=float, default=0.02, help="allowed accuracy loss (fraction)")
    split.add_argument("--points", default="",
                       help="--onnx: how many points (default 4); else comma-separated point names (default: all)")
    split.add_argument("--max-dr", type=int, default=None,
                       help="largest D_r tried (default: D; --torch: 16; 0: D)")
    split.add_argument("--seed", type=int, default=0)
    split.set_defaults(func=cmd_build_split)

    pre = build.add_parser("preprocess", help="let a bundle take camera frames of any size (adds its resize)",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    pre.add_argument("--bundle", type=Path, required=True)
    pre.add_argument("--resize", default="stretch", choices=["stretch", "letterbox", "center-crop"])
    pre.set_defaults(func=cmd_build_preprocess)

    dsnn = build.add_parser("dsnn", help="2-way multi-dsNN for the MCU on scikit-learn's digits (thesis ch.3)")
    dsnn.add_argument("--out", required=True, type=Path)
    dsnn.add_argument("--thresholds", type=int, default=9, help="threshold queue size (default 9)")
    dsnn.add_argument("--constraint", type=float, default=0.99, help="fraction of the monolithic accuracy")
    dsnn.add_argument("--max-width", type=int, default=256)
    dsnn.add_argument("--seed", type=int, default=0)
    dsnn.set_defaults(func=cmd_build_dsnn)

    mux = build.add_parser("multiplexer", help="a model pool and its neural multiplexer (papers 000/001) -> bundle")
    mux.add_argument("--out", required=True, type=Path)
    mux.add_argument("--widths", default="8,16,32", help="glyph_resnet widths of the pool, each >= 8 (default 8,16,32)")
    mux.add_argument("--epochs", type=int, default=6, help="pool training epochs")
    mux.add_argument("--mux-epochs", type=int, default=10, help="multiplexer training epochs")
    mux.add_argument("--n-train", type=int, default=8000, help="pool training frames (the multiplexer gets half)")
    mux.add_argument("--objective", choices=("ensemble", "correctness"), default="ensemble",
                     help="how the multiplexer learns w: eq. 7, the papers' (default), or per-model "
                          "correctness (docs/multiplexer.md)")
    mux.add_argument("--seed", type=int, default=0)
    mux.set_defaults(func=cmd_build_multiplexer)

    zoo = build.add_parser("zoo", help="classifiers of different families for one task (MDInference's and the "
                                       "multiplexer's pool) -> bundle")
    zoo.add_argument("--out", required=True, type=Path)
    zoo.add_argument("--models", default="", help="a comma-separated subset (default: all six)")
    zoo.add_argument("--epochs", type=int, default=8)
    zoo.add_argument("--n-train", type=int, default=8000, help="training frames (1000 validation and 2000 "
                                                               "held-out test frames besides)")
    zoo.add_argument("--seed", type=int, default=0)
    zoo.set_defaults(func=cmd_build_zoo)

    duo = build.add_parser("duo", help="configure Dynamic Duo (thesis ch.6) on a pool bundle, in place")
    duo.add_argument("--bundle", required=True, type=Path, help="a bundle from `adaptinf build multiplexer`")
    duo.add_argument("--little", help="this model speculates (default: the smallest E_pair in FLOPs)")
    duo.set_defaults(func=cmd_build_duo)
    little = build.add_parser("little", help="train and derive small models (width, resolution, double-shot "
                                             "pruning, custom floats) into a pool bundle, in place")
    little.add_argument("--bundle", required=True, type=Path, help="a bundle from `adaptinf build multiplexer`")
    little.add_argument("--width", type=int, default=16, help="glyph_resnet width of every small model")
    little.add_argument("--resolutions", default="24,16", help="input resolutions below 32 to train (empty: none)")
    little.add_argument("--keep", type=float, default=0.1, help="double shot keeps this share of weights (0: skip)")
    little.add_argument("--custom-floats", default="exact,accurate",
                        help="custom-float variants of the dense model: exact, accurate, approximate (empty: none)")
    little.add_argument("--epochs", type=int, default=4)
    little.add_argument("--n-explore", type=int, default=500, help="validation frames of the custom-float search")
    little.add_argument("--seed", type=int, default=0)
    little.set_defaults(func=cmd_build_little)
    mmnet = build.add_parser("mmnet", help="configure M&MNet (thesis ch.5) on a pool bundle, in place")
    mmnet.add_argument("--bundle", required=True, type=Path, help="a bundle from `adaptinf build multiplexer`")
    mmnet.set_defaults(func=cmd_build_mmnet)
    frame_pool = build.add_parser("frame-pool", help="a big model's bundle and a pool's small models on the big "
                                                     "model's (larger) frame: the speculative systems' premise")
    frame_pool.add_argument("--big", required=True, type=Path, help="its full model is the big one, its input the "
                                                                    "frame (e.g. bundles/glyphnet224)")
    frame_pool.add_argument("--pool", required=True, type=Path, help="a zoo or pool bundle: its small models")
    frame_pool.add_argument("--out", required=True, type=Path)
    frame_pool.set_defaults(func=cmd_build_frame_pool)

    plan = sub.add_parser("plan", help="the plan the daemon would choose under given conditions")
    plan.add_argument("--profile", required=True, type=Path)
    plan.add_argument("--uplink", required=True, type=parse_rate,
                      help="tc's units: 5.85mbit is megabits/s, 2mbps or 2MB/s megabytes/s")
    plan.add_argument("--rtt-ms", type=float, default=None, help="default: the profile's measured RTT")
    plan.add_argument("--goal", default="latency", choices=["latency", "energy"])
    plan.add_argument("--mode", default="normal", choices=["normal", "mission-critical", "power-saving", "private"])
    plan.add_argument("--sla-ms", type=float, default=None)
    plan.add_argument("--radio", default=None, choices=["3g", "4g", "wifi"],
                      help="uplink power model (default: nearest to --uplink)")
    plan.add_argument("--json", action="store_true")
    plan.set_defaults(func=cmd_plan)

    power = sub.add_parser("power", help="find power sensors and print live samples")
    power.add_argument("--sysfs-root", default="/", help="root of the sysfs tree (default %(default)s)")
    power.add_argument("--i2c-bus", type=int, default=None, help="also probe an INA226 on /dev/i2c-N")
    power.add_argument("--address", type=lambda v: int(v, 0), default=0x40, help="INA226 address (default 0x40)")
    power.add_argument("--shunt-ohms", type=float, default=0.002)
    power.add_argument("--max-current", type=float, default=10.0, help="A, sets Current_LSB")
    power.add_argument("--count", type=int, default=10)
    power.add_argument("--rate", type=float, default=2.0, help="samples per second")
    power.set_defaults(func=cmd_power)

    install = sub.add_parser("install-service", help="install the systemd unit, udev rules and config")
    install.add_argument("--root", default="/", help="install under this root (default %(default)s)")
    install.add_argument("--dry-run", action="store_true")
    install.set_defaults(func=cmd_install_service)

    export = sub.add_parser("export", help="export a bundle for another runtime").add_subparsers(
        dest="kind", required=True)
    triton = export.add_parser("triton", help="a Triton Inference Server model repository of the cloud side")
    triton.add_argument("--bundle", required=True, type=Path)
    triton.add_argument("--out", required=True, type=Path)
    triton.add_argument("--backend", choices=["onnxruntime", "python", "tensorrt"], default="onnxruntime",
                        help="onnxruntime (NVIDIA's container), python (Python-backend models running onnxruntime: "
                             "any tritonserver, e.g. nvidia-pytriton's on a CPU), tensorrt (adds FP16 plans "
                             "built on this GPU); default %(default)s")
    triton.add_argument("--no-dynamic-batching", action="store_true", help="one request per model call")
    triton.add_argument("--tensorrt", action="store_true",
                        help="the same as --backend tensorrt (run once per cloud GPU type)")
    triton.set_defaults(func=cmd_export_triton)

    keys = sub.add_parser("keys", help="CURVE keys for the cloud link").add_subparsers(dest="action", required=True)
    gen = keys.add_parser("generate", help="write NAME.key (public) and NAME.key_secret")
    gen.add_argument("name", help="a device id, or e.g. 'cloud' for the server")
    gen.add_argument("--dir", default=".", help="an existing directory to write in (default: here)")
    gen.add_argument("--force", action="store_true", help="overwrite an existing key of this name")
    gen.set_defaults(func=cmd_keys)

    mcu = sub.add_parser("mcu", help="the STM32 over serial").add_subparsers(dest="action", required=True)
    selftest = mcu.add_parser("selftest", help="handshake, echo, load, and digits bit-exact with the host")
    selftest.add_argument("--port", required=True,
                          help="/dev/adaptinf-stm32, /dev/ttyACM0, or socket://host:port (the firmware in QEMU)")
    selftest.add_argument("--model", type=Path, default=None,
                          help="an exported multi-dsNN (adaptinf build dsnn); default: a small digits MLP")
    selftest.add_argument("--count", type=int, default=100, help="digits to compare (default 100)")
    selftest.set_defaults(func=cmd_mcu_selftest)

    sim = sub.add_parser("sim", help="replay model selection (MDInference, paper 003) against a model table",
                         add_help=False)
    sim.set_defaults(func=None)

    demo = sub.add_parser("demo", help="run the end-to-end demo (fixed 3G, 4G, Wi-Fi links and cellular traces)", add_help=False)
    demo.set_defaults(func=None)

    def client_options(q: argparse.ArgumentParser) -> None:
        q.add_argument("--endpoint", default=None,
                       help="the daemon's API (default: $ADAPTINF_API, else ipc:///run/adaptinfd/api.sock)")
        q.add_argument("--timeout", type=seconds, default=10.0, help="seconds per frame")
        q.add_argument("--model", default=None, help="which served model (default: the bundle's)")
        q.add_argument("--policy", default=None, help="split, mobile-only, cloud-only, a split point, ...")
        q.add_argument("--goal", default=None, choices=["latency", "energy"])
        q.add_argument("--deadline-ms", type=float, default=None)

    infer = sub.add_parser("infer", help="send image files (JPEG, PNG, ...) and print the answers",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    infer.add_argument("images", nargs="+", help="image files")
    infer.add_argument("--json", action="store_true", help="one JSON line per image")
    client_options(infer)
    infer.set_defaults(func=cmd_infer)

    stream = sub.add_parser("stream", help="stream a video, a camera or images into the daemon",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                            description="URIs: a video file, a glob of images or a directory, /dev/videoN or "
                                        "v4l2:///dev/videoN, rtsp://... One JSON line per frame on stdout, a "
                                        "summary on stderr.")
    stream.add_argument("--source", required=True, metavar="URI")
    stream.add_argument("--fps", type=float, default=None, help="send at this rate (default: the source's own)")
    stream.add_argument("--drop", action="store_true",
                        help="drop frames that arrive while --in-flight are unanswered (a camera's leaky queue)")
    stream.add_argument("--in-flight", type=int, default=4, help="frames in flight before waiting or dropping")
    stream.add_argument("--frames", type=int, default=None, help="stop after this many frames")
    stream.add_argument("--quiet", action="store_true", help="no per-frame lines, the summary only")
    stream.add_argument("--summary-json", action="store_true", help="the summary as JSON (on stderr)")
    client_options(stream)
    stream.set_defaults(func=cmd_stream)

    perf = sub.add_parser("perf", help="load generator: frames/s and latency percentiles per step",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    perf.add_argument("--concurrency", default=None, help="frames in flight per step, e.g. 1,4,16 (default)")
    perf.add_argument("--rate", default=None, help="frames/s per step, open loop, e.g. 50,100")
    perf.add_argument("--seconds", type=float, default=5.0, help="per step")
    perf.add_argument("--camera", default=None, metavar="HxW", help="send camera frames of this size instead")
    perf.add_argument("--json", action="store_true")
    client_options(perf)
    perf.set_defaults(func=cmd_perf)

    record = sub.add_parser("record", help="the flight recorder: pull a running daemon's records into a file",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    record.add_argument("--out", type=Path, required=True, help="the recording to write (JSON Lines)")
    when = record.add_mutually_exclusive_group(required=True)
    when.add_argument("--seconds", type=seconds, help="record the next SECONDS")
    when.add_argument("--since", type=duration, metavar="AGO", help="what the daemon's files hold since AGO: 90s, 10m, 2h")
    record.add_argument("--endpoint", default=None,
                        help="the daemon's API (default: $ADAPTINF_API, else ipc:///run/adaptinfd/api.sock)")
    record.add_argument("--timeout", type=seconds, default=10.0, help="seconds to wait for the daemon")
    record.set_defaults(func=cmd_record)

    explain = sub.add_parser("explain", help="why a recorded frame went where it went; --plot draws the recording")
    explain.add_argument("recording", type=Path, help="a recording: a file, or a daemon's recordings directory")
    explain.add_argument("frame", nargs="?", default=None, help="the frame's request id (or its seq)")
    explain.add_argument("--plot", type=Path, default=None, help="write a PNG: link, choices and latency, energy")
    explain.set_defaults(func=cmd_explain)

    replay = sub.add_parser("replay", help="re-plan a recording under another policy, goal or profile")
    replay.add_argument("recording", type=Path, help="a recording: a file, or a daemon's recordings directory")
    replay.add_argument("--policy", default="recorded",
                        help="recorded (the default: each frame's own), split (adaptive) or a fixed partition")
    replay.add_argument("--goal", default=None, choices=["latency", "energy"],
                        help="the goal to re-plan for (default: each frame's own)")
    replay.add_argument("--profile", default=None, help="a profile.json to plan with (default: the recorded one)")
    replay.add_argument("--estimator", action="store_true",
                        help="instead: replay the recorded upload samples through the link estimator")
    replay.set_defaults(func=cmd_replay)

    for name, help_text in (("status", "the daemon at a glance (--json, --watch)"), ("stats", "daemon statistics"),
                            ("models", "models served"), ("health", "liveness/readiness"),
                            ("hello", "protocol negotiation"), ("set-mode", "switch the daemon's mode")):
        q = sub.add_parser(name, help=help_text)
        q.add_argument("--endpoint", default=None,
                       help="the daemon's API (default: $ADAPTINF_API, else ipc:///run/adaptinfd/api.sock)")
        q.add_argument("--timeout", type=seconds, default=5.0, help="seconds to wait for the daemon")
        if name == "set-mode":
            q.add_argument("mode", choices=["normal", "mission-critical", "power-saving", "private"])
        if name == "status":
            q.add_argument("--json", action="store_true", help="the raw status reply")
            q.add_argument("--watch", type=watch_seconds, default=0.0, metavar="SECONDS", help="refresh every SECONDS")
        if name == "stats":
            q.add_argument("--json", action="store_true", help="the statistics as JSON (the reply's body)")
        q.set_defaults(func=cmd_status if name == "status" else cmd_query)

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sim"]:
        from adaptinf.programs.sim import main as sim_main

        return sim_main(argv[1:])
    if argv[:1] == ["demo"]:
        return run_needing_extra("adaptinf demo", "demo", lambda: _demo_main(argv[1:]))
    args = parser.parse_args(argv)
    try:
        extra = _extra_for(args)
        program = " ".join(["adaptinf", args.command] + ([args.kind] if getattr(args, "kind", None) else []))
        try:
            return args.func(args) if extra is None else run_needing_extra(program, extra, lambda: args.func(args))
        except BundleError as exc:    # any command given a directory that is not a usable bundle
            print(f"{program}: {exc}", file=sys.stderr)
            return 2
    except BrokenPipeError:
        # the reader went away (`adaptinf plan ... | head`): stop quietly, as the Python docs
        # advise, so the interpreter's final flush does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _demo_main(argv: list[str]) -> int:
    from adaptinf.programs.demo import main as demo_main

    return demo_main(argv)


def _extra_for(args: argparse.Namespace) -> str | None:
    """The extra a command needs beyond the device install, if any."""
    if args.command == "build" or (args.command == "mcu" and args.action == "selftest"):
        return "build"
    if args.command == "export":
        return "tensorrt" if args.tensorrt or args.backend == "tensorrt" else None
    if args.command == "stream":
        return "video"
    if args.command == "infer":
        return "demo"              # Pillow reads the images
    return None
