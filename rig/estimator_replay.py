"""Replay an uplink trace through the daemon's real LinkEstimator, in virtual time.

The long demo runs take minutes per trace; this takes a second, so the estimator can be
judged on every trace and every step (bench/estimator_follow.py, tests). What is real:
- the LinkEstimator (daemon/link_estimator.py), fed exactly as CloudLink feeds it:
  `sent` when an upload leaves, `observe_upload` at its reply;
- the probe rule (daemon/cloud_link.py `probe_plan`): probes only while no upload or probe
  is awaited, spaced by the estimate;
- the link: the trace's delivery opportunities, 1500 bytes each, FIFO
  (rig/link_shaper.TraceBottleneck, the demo's shaper), plus the RTT.
What is modelled: the frames. Each frame either uploads `upload_bytes` or stays on the
device, chosen by `mode`:
- "always": every frame uploads;
- "device": none do, so only probes measure the link;
- "adaptive": a frame uploads when the estimate says its bytes, behind the modelled
  uplink queue, arrive within `budget_s` (a stand-in for the planner's choice).
Before the run, a warm-up measures the link as adaptinfd's does (WARMUP_PROBES probes of
PROBE_BYTES, one after another, on the trace from its start, WARMUP_LEAD_S before the
run's clock starts). Not modelled: heartbeats (a few bytes), reconnects, the cloud's
service time (zero).

The follow metric is issue 15's: for every step of STEP_RATIO or more between two
consecutive 1-s capacity bins (both at least MIN_BPS), the frames and seconds until the
estimate at planning is within WITHIN of the new bin's capacity.
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass

import numpy as np

from adaptinf.daemon.cloud_link import PROBE_BYTES, probe_plan
from adaptinf.daemon.link_estimator import LinkEstimator
from adaptinf.rig.link_shaper import TraceBottleneck
from adaptinf.rig.uplink_trace import UplinkTrace

STEP_RATIO = 4.0
WITHIN = 0.30
MIN_BPS = 0.1e6
GOAL_FRAMES, GOAL_S = 5, 1.0
MODES = ("always", "device", "adaptive")
WARMUP_PROBES = 3             # daemon/warmup.py LINK_PROBES
WARMUP_LEAD_S = 10.0


@dataclass(frozen=True)
class Step:
    at_s: float
    from_bps: float
    to_bps: float
    frames: int | None        # frames after the step until the estimate was within WITHIN; None: never
    seconds: float | None

    @property
    def met(self) -> bool:
        return self.frames is not None and (self.frames <= GOAL_FRAMES or self.seconds <= GOAL_S)


def follow_steps(trace: UplinkTrace, t_s: np.ndarray, est_bps: np.ndarray) -> list[Step]:
    """The capacity steps of `trace` and how soon the estimate (est_bps at frame times t_s;
    nan where there was none) followed each."""
    edges, cap = trace.capacity_bps(1.0)
    steps = []
    for k in range(1, len(cap)):
        a, b = cap[k - 1], cap[k]
        if min(a, b) < MIN_BPS or max(a, b) / min(a, b) < STEP_RATIO or edges[k] > t_s.max():
            continue
        after = np.nonzero(t_s >= edges[k])[0]
        hit = [i for i in after if abs(est_bps[i] - b) / b <= WITHIN]
        first = hit[0] if hit else None
        steps.append(Step(float(edges[k]), float(a), float(b),
                          None if first is None else int(first - after[0] + 1),
                          None if first is None else float(t_s[first] - edges[k])))
    return steps


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Replay:
    t_s: np.ndarray            # each frame's planning time
    est_bps: np.ndarray        # the estimate it was planned with (nan: none yet)
    uploaded: np.ndarray       # whether it uploaded
    probe_bytes: int           # bytes spent on probes


def replay(trace: UplinkTrace, fps: float = 10.0, upload_bytes: int = 6272, mode: str = "adaptive",
           rtt_s: float = 0.040, budget_s: float = 0.25, seconds: float | None = None) -> Replay:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    clock = _Clock()
    estimator = LinkEstimator(clock)
    estimator.observe_rtt(rtt_s)
    clock.now = -WARMUP_LEAD_S
    warmup = TraceBottleneck(trace, clock.now)
    for _ in range(WARMUP_PROBES):
        sent_at = clock.now
        clock.now = warmup.schedule(sent_at, PROBE_BYTES)[-1][0] + rtt_s
        estimator.observe_upload(PROBE_BYTES, clock.now - sent_at, 0.0, clock.now)
    if clock.now > 0:
        raise ValueError(f"{trace.name}: the warm-up probes took {clock.now + WARMUP_LEAD_S:.1f} s, "
                         f"over the {WARMUP_LEAD_S:g} s lead")
    link = TraceBottleneck(trace, 0.0)
    end = trace.duration_s if seconds is None else seconds
    n_frames = int(math.floor(end * fps))
    tokens = itertools.count()
    events: list[tuple[float, int, str, tuple]] = []   # (time, order, kind, data)
    order = itertools.count()
    for i in range(n_frames):
        heapq.heappush(events, (i / fps, next(order), "frame", (i,)))
    awaited: set[int] = set()
    last_upload = 0.0
    probe_total = 0
    t_out, est_out, up_out = np.zeros(n_frames), np.full(n_frames, np.nan), np.zeros(n_frames, bool)

    def send(nbytes: int, now: float) -> None:
        token = next(tokens)
        estimator.sent(nbytes, now, token=token)
        departs = link.schedule(now, nbytes)[-1][0]
        awaited.add(token)
        heapq.heappush(events, (departs + rtt_s, next(order), "reply", (token, nbytes, now)))

    while events:
        now, _, kind, data = heapq.heappop(events)
        clock.now = now
        if kind == "reply":
            token, nbytes, sent_at = data
            awaited.discard(token)
            estimator.observe_upload(nbytes, now - sent_at, 0.0, now, token=token)
        elif kind == "frame":
            (i,) = data
            bps = estimator.estimate().uplink_bps
            t_out[i], est_out[i] = now, np.nan if bps is None else bps
            if mode == "always":
                upload = True
            elif mode == "device" or not bps:
                upload = False
            else:
                upload = estimator.uplink_backlog_s(now) + upload_bytes * 8 / bps + rtt_s <= budget_s
            if upload:
                send(upload_bytes, now)
                up_out[i] = True
                last_upload = now
        # the probe rule, checked at every event as the link thread checks it at every wake-up
        size, every = probe_plan(estimator.estimate().uplink_bps)
        if not awaited and now - last_upload > every and now < end:
            send(size, now)
            probe_total += size
            last_upload = now
            heapq.heappush(events, (now + every, next(order), "wake", ()))
        elif not awaited and now < end:
            heapq.heappush(events, (last_upload + every + 1e-6, next(order), "wake", ()))
    return Replay(t_out, est_out, up_out, probe_total)
