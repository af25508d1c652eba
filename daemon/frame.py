"""One frame's values as the daemon passes them: the job (what arrived), the plan it got
(and the telemetry and profile the plan used), and its result. The executor, the steps,
the worker pool, the API handlers and the flight recorder all speak these; none of them
needs another's module for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from adaptinf.policies.plan import FrameContext, Plan, ServedBy, StageTimes, Telemetry
from adaptinf.profile import Profile


@dataclass
class Job:
    id: Any
    peer: bytes
    frame: np.ndarray
    context: FrameContext
    policy: str
    received: float                  # monotonic
    deadline: float | None = None    # monotonic
    keepalive: Any = None            # the zmq frame the array views: alive until answered
    planned: "Planned | None" = None  # planned on arrival when the pool was idle (not stale)
    model: str = ""                  # which served model (the bundle's, or the MCU's FC model)
    priority: int = 0                # 0..255; higher is served first among queued frames
    camera: bool = False             # frame is a uint8 H x W x 3 image: the bundle's preprocessing makes the tensor


@dataclass
class Planned:
    plan: Plan
    telemetry: Telemetry
    profile: Profile
    plan_s: float


@dataclass
class FrameResult:
    code: str
    message: str | None = None
    label: int = -1
    confidence: float = 0.0
    scores: np.ndarray | None = None     # class probabilities (a classifier's bundle)
    outputs: np.ndarray | None = None    # the model's outputs, flat float32 (bundle.output_specs)
    served_by: ServedBy | None = None
    stages: StageTimes = field(default_factory=StageTimes)
    energy_j: float = 0.0
    energy_source: str = "model"
    energy_idle_j: float | None = None   # the idle baseline's share of energy_j (sensor only)
    planned: "Planned | None" = None     # the plan it ran, and the telemetry and profile it used (the recorder)
    placement: str = ""                  # the statistics' placement: device, cloud, split:<point>, fallback
