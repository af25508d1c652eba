"""`adaptinf record`, `explain` and `replay`: the flight recorder's recordings, pulled from a
running daemon, explained frame by frame, and re-planned offline.

- record:  the daemon's records for the next N seconds (its in-memory ring, polled), or
           those since a time (its rotating files), into one file of the recording format.
- explain: one frame's decision: the telemetry, every candidate's predicted cost (the cost
           model's, recomputed from the recorded telemetry and profile: the planner is
           deterministic), the choice, and predicted against measured. --plot draws the whole
           recording over time.
- replay:  every recorded frame re-planned from its telemetry under another policy, goal or
           profile: agreement with the recorded choices (and why a choice differs), and the
           counterfactual latency and energy of the new choices, with the link rebuilt from
           the recorded uploads and the device from the recorded stage times. --estimator runs
           the recorded upload samples through the link estimator and scores its predictions.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from adaptinf.policies.fixed import FixedPolicy
from adaptinf.policies.plan import FrameContext, Telemetry
from adaptinf.policies.split import CostModel, SplitPolicy
from adaptinf.profile import MOBILE_ONLY, Profile, load_profile, parse_profile
from adaptinf.recording import ESTIMATOR_EVENTS, Recording, encode_line, iter_lines, read_recording

TELEMETRY_FIELDS = ("uplink_bps", "rtt_s", "radio", "cloud_up", "cloud_slowdown", "cloud_queue_s", "device_slowdown",
                    "device_queue_s", "uplink_backlog_s", "device_power_w")
CAPACITY_BIN_S = 1.0
MIN_TIMED_BYTES = 1024          # as the estimator: smaller uploads are RTT jitter


# ---- record -------------------------------------------------------------------------------
def pull(client, seconds: float, out: Path, poll_s: float = 0.5, clock=time.monotonic, sleep=time.sleep) -> int:
    """The daemon's records from now for `seconds`, into `out`; returns the records written."""
    first = client.request("record", {"after": 0, "limit": 1})[0]
    after = first["newest"]
    lines: list[str] = []
    profiles: dict[str, dict] = dict(first.get("profiles") or {})
    header = first.get("header")
    end = clock() + seconds
    while True:
        reply = client.request("record", {"after": after, "limit": 20_000})[0]
        profiles.update(reply.get("profiles") or {})
        for line in reply["lines"]:
            lines.append(line)
        if reply["lines"]:
            after = int(_seq_of(reply["lines"][-1], after))
        if clock() >= end:
            break
        sleep(poll_s)
    _write(out, header, profiles, lines)
    return len(lines)


def since(directory: Path, since_s: float, out: Path, now: float | None = None) -> int:
    """The records of the daemon's files (its recordings directory) from since_s seconds ago."""
    files = sorted(Path(directory).glob("rec-*.jsonl"))
    if not files:
        raise FileNotFoundError(f"no recording files in {directory}")
    cutoff = (time.time() if now is None else now) - since_s
    header, profiles, lines = None, {}, []
    for record in iter_lines(files):
        if record is None:
            continue
        kind = record.get("type")
        if kind == "header":
            header = header or record
        elif kind == "profile":
            profiles[str(record["id"])] = record["profile"]
        elif record.get("t", 0) >= cutoff:
            lines.append(encode_line(record).decode().rstrip("\n"))
    _write(out, header, profiles, lines)
    return len(lines)


def _seq_of(line: str, default: int) -> int:
    try:
        return int(json.loads(line).get("seq", default))
    except (ValueError, TypeError):
        return default


def _write(out: Path, header: dict | None, profiles: dict, lines: list[str]) -> None:
    with open(out, "w") as f:
        if header is not None:
            f.write(encode_line(header).decode())
        for profile_id, profile in profiles.items():
            f.write(encode_line({"type": "profile", "t": header.get("t", 0) if header else 0, "id": profile_id,
                                 "profile": profile}).decode())
        for line in lines:
            f.write(line + "\n")


# ---- the telemetry and profile of a recorded frame ------------------------------------------
class ReplayError(ValueError):
    """A recording that cannot be explained or replayed as asked; the message says why."""


def telemetry_of(frame: dict) -> Telemetry | None:
    """The Telemetry the frame was planned with; None when it was not planned (e.g. refused)."""
    if frame.get("uplink_bps") is None:
        return None
    values = {k: frame[k] for k in TELEMETRY_FIELDS if frame.get(k) is not None}
    return Telemetry(**values)


def context_of(frame: dict, goal: str | None = None) -> FrameContext:
    deadline = frame.get("deadline_ms")
    return FrameContext(goal or frame.get("goal") or "latency", frame.get("mode") or "normal",
                        deadline / 1e3 if deadline else None)


def profile_of(rec: Recording, frame: dict, override: Profile | None = None) -> Profile:
    """The profile the frame was planned with (parsed once per recording), or the override."""
    if override is not None:
        return override
    key = str(frame.get("profile"))
    parsed = rec.parsed_profiles.get(key)
    if parsed is None:
        raw = rec.profiles.get(key)
        if raw is None:
            raise ReplayError(f"frame {frame.get('id')!r} names profile {frame.get('profile')!r}, which the "
                              "recording lacks (its file was rotated away); give --profile")
        parsed = rec.parsed_profiles[key] = parse_profile(raw)
    return parsed


def policy_for(name: str, goal: str | None, profile: Profile):
    """The policies replay can re-plan offline, from telemetry and profile alone: split (the
    adaptive planner) and any fixed partition; None for the others (they need the models)."""
    if name in ("split", "adaptive"):
        return SplitPolicy(goal or "latency")
    if any(p.name == name for p in profile.partitions):
        return FixedPolicy(name)
    return None


# ---- explain ----------------------------------------------------------------------------------
def explain(rec: Recording, frame_id, out=print) -> int:
    frame = rec.frame(frame_id)
    if frame is None:
        raise ReplayError(f"no frame {frame_id!r} in the recording ({len(rec.frames)} frames; ids like "
                          f"{', '.join(repr(f.get('id')) for f in rec.frames[:3])})")
    out(f"frame {frame.get('id')!r} (seq {frame.get('seq')}), client {frame.get('client')}, model "
        f"{frame.get('model')}, policy {frame.get('policy')}, goal {frame.get('goal')}, mode {frame.get('mode')}, "
        f"deadline {frame.get('deadline_ms') or '-'} ms, priority {frame.get('priority')}")
    out(f"answer: {frame.get('code')} on {frame.get('placement')}"
        + (f", fallback: {frame.get('fallback_reason')}" if frame.get("fallback") else "")
        + (f", label {frame['label']} ({frame['confidence']:.1%})" if frame.get("label") is not None else ""))
    telemetry = telemetry_of(frame)
    if telemetry is None:
        out("not planned (refused before planning): nothing to explain beyond the code")
        return 0
    std, age = frame.get("uplink_std_bps"), frame.get("uplink_age_s")
    out(f"telemetry: uplink {telemetry.uplink_bps / 1e6:.3f} Mbit/s"
        + (f" (std {std / 1e6:.3f}" if std is not None else " (std -")
        + (f", {age:.2f} s old)" if age is not None else ")")
        + f", RTT {telemetry.rtt_s * 1e3:.1f} ms, uplink backlog {telemetry.uplink_backlog_s * 1e3:.1f} ms, "
        f"device queue {telemetry.device_queue_s * 1e3:.1f} ms (x{telemetry.device_slowdown:.2f}), cloud "
        f"{'up' if telemetry.cloud_up else 'down'} queue {telemetry.cloud_queue_s * 1e3:.1f} ms "
        f"(x{telemetry.cloud_slowdown:.2f}), radio {telemetry.radio}, power "
        + (f"{telemetry.device_power_w:.2f} W" if telemetry.device_power_w is not None else "from the profile")
        + f" ({frame.get('power_source')})")
    profile = profile_of(rec, frame)
    candidates = CostModel(profile).predict(telemetry)
    chosen = frame.get("partition")
    out(f"\n{'candidate':14} {'kind':7} {'device':>8} {'upload':>8} {'network':>8} {'cloud':>8} {'latency':>9} "
        f"{'energy':>8} {'accuracy':>8}")
    for c in candidates:
        mark = "  <- chosen" if c.name == chosen else ""
        acc = f"{c.accuracy:.1%}" if c.accuracy is not None else "-"
        out(f"{c.name:14} {c.kind:7} {c.device_s * 1e3:8.1f} {c.upload_s * 1e3:8.1f} {c.network_s * 1e3:8.1f} "
            f"{c.cloud_s * 1e3:8.1f} {c.latency_s * 1e3:8.1f}ms {c.energy_j * 1e3:6.1f}mJ {acc:>8}{mark}")
    out("(ms; energy = device compute + uplink radio; predicted by the cost model from this telemetry)")
    stages = frame.get("stages_ms") or {}
    measured = stages.get("total")
    predicted = frame.get("predicted_ms")
    if measured is not None and predicted:
        out(f"\npredicted {predicted:.1f} ms, measured {measured:.1f} ms ({measured / predicted:.2f}x); energy "
            f"predicted {frame.get('predicted_mj', 0):.1f} mJ, measured {frame.get('energy_j', 0) * 1e3:.1f} mJ "
            f"({frame.get('energy_source')})")
        out("measured stages: " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items() if k != "total") + " ms")
    return 0


# ---- the link, rebuilt from the recorded uploads -------------------------------------------------
@dataclass
class RebuiltLink:
    """Capacity per CAPACITY_BIN_S bin, from the uploads' transfer times (wall-clock bins)."""

    start: float
    bps: np.ndarray            # NaN where no upload was timed

    def at(self, t: float) -> float | None:
        i = int((t - self.start) // CAPACITY_BIN_S)
        for j in (i, i - 1, i + 1):             # the frame's bin, else a neighbour
            if 0 <= j < len(self.bps) and np.isfinite(self.bps[j]):
                return float(self.bps[j])
        return None


def rebuild_link(rec: Recording) -> RebuiltLink | None:
    """Each answered upload's transfer time (its round trip less the base RTT and the cloud's
    service time) gives bits / time; a bin's capacity is its uploads' bits over their time."""
    rtts = [e["rtt_s"] for e in rec.events if e.get("kind") == "rtt" and e.get("rtt_s", 0) > 0]
    base = min(rtts) if rtts else 0.0
    samples = []
    for e in rec.events:
        if e.get("kind") == "upload_done" and e.get("bytes", 0) >= MIN_TIMED_BYTES:
            transfer = e["rtt_s"] - base - max(e.get("service_s") or 0.0, 0.0)
            if transfer > 0:
                samples.append((e["t"], e["bytes"] * 8.0, transfer))
    if not samples:
        return None
    start = min(t for t, _, _ in samples)
    n = int((max(t for t, _, _ in samples) - start) // CAPACITY_BIN_S) + 1
    bits, secs = np.zeros(n), np.zeros(n)
    for t, b, s in samples:
        i = int((t - start) // CAPACITY_BIN_S)
        bits[i] += b
        secs[i] += s
    with np.errstate(invalid="ignore", divide="ignore"):
        return RebuiltLink(start, np.where(secs > 0, bits / secs, np.nan))


# ---- replay ------------------------------------------------------------------------------------
@dataclass
class ReplayResult:
    frames: int
    agree: int
    differ: list[tuple[dict, str, str]]         # (frame, recorded, replayed)
    counterfactual_ms: float
    counterfactual_mj: float
    recorded_ms: float
    recorded_mj: float
    model_error: float                          # median |measured - predicted| / measured, recorded choices
    uncertain: int                              # frames with no upload near them: the link is the estimate
    skipped: int


def replay(rec: Recording, policy: str = "recorded", goal: str | None = None,
           profile: Profile | None = None) -> ReplayResult:
    """policy "recorded": each frame under the policy it was recorded with."""
    link = rebuild_link(rec)
    models: dict[int, CostModel] = {}
    agree, differ, new_ms, new_mj, rec_ms, rec_mj, errors, uncertain, skipped = 0, [], [], [], [], [], [], 0, 0
    for frame in rec.frames:
        telemetry = telemetry_of(frame)
        measured = (frame.get("stages_ms") or {}).get("total")
        if telemetry is None or measured is None or frame.get("code") != "OK":
            skipped += 1
            continue
        prof = profile_of(rec, frame, profile)
        name = frame.get("policy") if policy == "recorded" else policy
        planner = policy_for(name, goal, prof)
        if planner is None:
            skipped += 1            # e.g. a speculative policy: its plan needs the models themselves
            continue
        chosen = planner.plan(context_of(frame, goal), telemetry, prof).chosen
        if chosen.name == frame.get("partition"):
            agree += 1
        else:
            differ.append((frame, frame.get("partition"), chosen.name))
        # the counterfactual: the new choice's cost under the link as it was (rebuilt), the
        # device as it was (the recorded slowdown and queue)
        capacity = link.at(frame["t"]) if link is not None else None
        if capacity is None:
            uncertain += 1
            actual = telemetry
        else:
            actual = replace(telemetry, uplink_bps=capacity)
        model = models.get(id(prof)) or models.setdefault(id(prof), CostModel(prof))
        cost = model.predict_one(chosen.name, actual) or chosen
        latency_ms, energy_mj = cost.latency_s * 1e3, cost.energy_j * 1e3
        deadline = frame.get("deadline_ms")
        if cost.kind != "device" and deadline and latency_ms > deadline:
            # the daemon would not wait: at the deadline the frame finishes on the device
            local = model.predict_one(MOBILE_ONLY, actual)
            if local is not None:
                latency_ms = deadline + local.latency_s * 1e3
                energy_mj = min(energy_mj, cost.energy_j * 1e3 * deadline / (cost.latency_s * 1e3)) \
                    + local.energy_j * 1e3
        new_ms.append(latency_ms)
        new_mj.append(energy_mj)
        rec_ms.append(measured)
        rec_mj.append(frame.get("energy_j", 0.0) * 1e3)
        if frame.get("predicted_ms"):
            errors.append(abs(measured - frame["predicted_ms"]) / measured if measured > 0 else 0.0)
    n = len(new_ms)
    return ReplayResult(n, agree, differ, _mean(new_ms), _mean(new_mj), _mean(rec_ms), _mean(rec_mj),
                        float(np.median(errors)) if errors else math.nan, uncertain, skipped)


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def why_differs(frame: dict, policy: str, goal: str | None, profile_given: bool) -> str:
    """Why a replayed choice is not the recorded one, as far as the record tells."""
    missing = [k for k in TELEMETRY_FIELDS if k not in frame and k != "device_power_w"]   # None: left out
    if missing:
        return f"telemetry not recorded: {', '.join(missing)}"
    reasons = []
    if policy != "recorded" and policy != frame.get("policy"):
        reasons.append(f"recorded under {frame.get('policy')}")
    if goal is not None and goal != frame.get("goal"):
        reasons.append(f"recorded for {frame.get('goal')}")
    if profile_given:
        reasons.append("planned with another profile")
    return ", ".join(reasons) or ("same policy, goal and profile: a plan input the recorder does not keep "
                                  "(the policy's own history)")


def report_replay(r: ReplayResult, policy: str, goal: str | None = None, profile_given: bool = False,
                  out=print) -> None:
    what = "the policies they were recorded with" if policy == "recorded" else policy
    out(f"replayed {r.frames} frames under {what}" + (f" for {goal}" if goal else "")
        + f" ({r.skipped} skipped: not planned, not answered OK, or a policy that needs the models)")
    share = r.agree / r.frames if r.frames else math.nan
    out(f"agreement with the recorded choices: {r.agree}/{r.frames} ({share:.2%})")
    for frame, recorded, replayed in r.differ[:10]:
        out(f"  frame {frame.get('id')!r}: recorded {recorded}, replayed {replayed} "
            f"({why_differs(frame, policy, goal, profile_given)})")
    if len(r.differ) > 10:
        out(f"  ... and {len(r.differ) - 10} more")
    out(f"counterfactual mean latency {r.counterfactual_ms:.1f} ms and energy {r.counterfactual_mj:.1f} mJ per "
        f"frame (predicted: the cost model with the link rebuilt from the recorded uploads), against "
        f"{r.recorded_ms:.1f} ms and {r.recorded_mj:.1f} mJ measured")
    band = f"+-{r.model_error:.0%}" if math.isfinite(r.model_error) else "unknown (no recorded predictions)"
    out(f"uncertainty: the cost model's median error on the recorded choices was {band}; "
        f"{r.uncertain} of {r.frames} frames had no timed upload within a second, so their link is the daemon's "
        "estimate, not a measurement" + (" (all of them: no cloud traffic was recorded)" if r.uncertain == r.frames
                                           and r.frames else ""))


# ---- the estimator, replayed ----------------------------------------------------------------------
@dataclass
class EstimatorScore:
    uploads: int
    median_error: float      # |predicted - measured| / measured of each timed upload's round trip
    within_25: float         # share predicted within 25%


def replay_estimator(rec: Recording) -> EstimatorScore:
    """The recorded estimator inputs, fed in order to today's LinkEstimator on the recorded
    clock; before each timed upload's answer, its round trip is predicted from the estimate
    as it stood when the upload was sent."""
    from adaptinf.daemon.link_estimator import LinkEstimator

    now = [0.0]
    est = LinkEstimator(clock=lambda: now[0])
    predicted: dict = {}
    errors = []
    for e in rec.events:
        kind = e.get("kind")
        if kind not in ESTIMATOR_EVENTS:
            continue
        now[0] = e.get("now", now[0])
        token = tuple(e["token"]) if isinstance(e.get("token"), list) else e.get("token")
        if kind == "rtt":
            est.observe_rtt(e["rtt_s"], now=now[0])
        elif kind == "upload_sent":
            estimate = est.estimate()
            if estimate.uplink_bps and estimate.rtt_s is not None and e["bytes"] >= MIN_TIMED_BYTES:
                predicted[token] = e["bytes"] * 8.0 / estimate.uplink_bps + estimate.rtt_s + est.uplink_backlog_s()
            est.sent(e["bytes"], now[0], token=token)
        elif kind == "upload_done":
            guess = predicted.pop(token, None)
            if guess is not None and e["rtt_s"] > 0:
                errors.append(abs(guess + (e.get("service_s") or 0.0) - e["rtt_s"]) / e["rtt_s"])
            est.observe_upload(e["bytes"], e["rtt_s"], e.get("service_s") or 0.0, now[0], token=token)
        elif kind == "upload_lost":
            predicted.pop(token, None)
            est.lost(token, now[0])
        elif kind == "upload_untimed":
            predicted.pop(token, None)
            est.forget(token)
    if not errors:
        return EstimatorScore(0, math.nan, math.nan)
    errors_a = np.array(errors)
    return EstimatorScore(len(errors), float(np.median(errors_a)), float(np.mean(errors_a <= 0.25)))


# ---- the plot -------------------------------------------------------------------------------------
def plot(rec: Recording, path: Path) -> None:
    """Over time: the uplink estimate against the capacity rebuilt from the uploads; each
    frame's choice and latency; each frame's energy. Linear axes from zero."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = [f for f in rec.frames if f.get("t") is not None]
    if not frames:
        raise ReplayError("the recording holds no frame to plot")
    t0 = min(f["t"] for f in frames)
    fig, (up, lat, energy) = plt.subplots(3, 1, figsize=(12, 9), sharex=True)
    link = rebuild_link(rec)
    if link is not None:
        edges = link.start - t0 + np.arange(len(link.bps)) * CAPACITY_BIN_S
        up.step(edges, link.bps / 1e6, where="post", color="0.5", lw=2, label="capacity rebuilt from the uploads")
    est = [(f["t"] - t0, f["uplink_bps"] / 1e6) for f in frames if f.get("uplink_bps")]
    if est:
        up.plot(*zip(*est), color="tab:blue", lw=1, label="the daemon's estimate at each frame")
    up.set_ylim(0, up.get_ylim()[1] * 1.25)      # room above the lines for the legend
    up.set_ylabel("uplink Mbit/s")
    up.legend(fontsize=8, loc="upper right")
    names = sorted({f.get("partition") or f.get("code") or "?" for f in frames})
    colours = plt.get_cmap("tab10")
    for k, name in enumerate(names):
        pts = [(f["t"] - t0, (f.get("stages_ms") or {}).get("total")) for f in frames
               if (f.get("partition") or f.get("code") or "?") == name]
        pts = [p for p in pts if p[1] is not None]
        if pts:
            lat.scatter(*zip(*pts), s=10, color=colours(k % 10), label=name)
        ept = [(f["t"] - t0, f.get("energy_j", 0.0) * 1e3) for f in frames
               if (f.get("partition") or f.get("code") or "?") == name]
        energy.scatter(*zip(*ept), s=10, color=colours(k % 10))
    lat.set_ylim(0, lat.get_ylim()[1] * 1.3)
    lat.set_ylabel("latency ms")
    lat.legend(fontsize=8, loc="upper right", ncol=3, title="partition chosen", title_fontsize=8)
    energy.set_ylim(0, energy.get_ylim()[1] * 1.15)
    energy.set_ylabel("device energy mJ")
    energy.set_xlabel("seconds from the first frame")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def load(path: Path | str) -> Recording:
    return read_recording(path)


def load_profile_arg(path: str | None) -> Profile | None:
    return load_profile(path) if path else None
