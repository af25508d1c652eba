"""Values that cross the policy boundary: what a policy sees and what it decides."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Any, Protocol

GOALS = ("latency", "energy")
MODES = ("normal", "mission-critical", "power-saving", "private")


@dataclass(frozen=True)
class Telemetry:
    """What the runtime knows right now; every field measured, none configured."""

    uplink_bps: float
    rtt_s: float
    radio: str = "4g"
    cloud_up: bool = True
    cloud_slowdown: float = 1.0   # K_cloud: measured / profiled cloud service time
    cloud_queue_s: float = 0.0    # expected wait in the cloud's queue
    device_slowdown: float = 1.0  # K_mobile: measured / profiled device time
    device_queue_s: float = 0.0   # predicted wait for the device (one frame at a time)
    uplink_backlog_s: float = 0.0  # predicted wait behind uploads already on the uplink
    device_power_w: float | None = None  # measured power while computing (sensor); None: the profile's
    # the uplink estimate's spread and age: not planned on, kept for the flight recorder
    uplink_std_bps: float | None = None
    uplink_age_s: float | None = None

    # The cost terms every policy plans with, defined once (paper 004 eq. 1-4's TM and TC):
    def compute_s(self, profiled_device_s: float) -> float:
        """The device's compute time now for a graph profiled at profiled_device_s."""
        return profiled_device_s * self.device_slowdown

    def cloud_s(self, profiled_cloud_s: float) -> float:
        """The cloud's time now for a graph profiled at profiled_cloud_s: service and queue."""
        return profiled_cloud_s * self.cloud_slowdown + self.cloud_queue_s

    def upload_s(self, upload_bytes: float) -> float:
        """Sending upload_bytes now: behind what is already on the uplink."""
        return upload_bytes * 8.0 / self.uplink_bps + self.uplink_backlog_s


@dataclass(frozen=True)
class FrameContext:
    goal: str = "latency"
    mode: str = "normal"
    deadline_s: float | None = None


@dataclass(frozen=True)
class Candidate:
    """One way to run the frame and what the cost model predicts for it."""

    name: str          # partition name, or mobile-only / cloud-only
    kind: str          # device | cloud | split | duplicate | multiplex | speculate | minions (daemon/executor.py)
    device_s: float
    upload_s: float
    network_s: float   # round trip, excluding transfer time
    cloud_s: float
    latency_s: float
    energy_j: float    # device energy: compute + uplink radio
    accuracy: float | None
    model: str | None = None   # the speculative model, where a policy chooses among several (SIEVE)


@dataclass(frozen=True)
class Plan:
    chosen: Candidate
    goal: str
    mode: str
    policy: str
    candidates: tuple[Candidate, ...] = ()  # all that were considered, for explanations
    decision: Any = None                    # what else the policy decided, for its own execute


Answer = tuple  # (logits: np.ndarray, bytes sent up the uplink: int)


class Steps(Protocol):
    """What a policy's execution may do with its frame (the daemon's daemon/steps.py)."""

    job: Any                # the frame: .frame, .peer, .received, .deadline
    models: Any             # the device's engines: full, heads, tails, littles, minions, pair
    bundle: Any
    served: Any             # ServedBy, for the reply: a policy adds what it decided
    stages: Any             # StageTimes: where the frame's time went so far

    def count(self, name: str) -> None: ...
    def on_device(self, engine: Any, stage: str, x: Any = None) -> Any: ...
    def partition(self, name: str) -> Answer: ...
    def full_in_cloud(self, fallback_engine: Any) -> Answer: ...
    def duplicate(self, target: str = "full", local: tuple | None = None) -> Answer: ...
    def duplicate_choosing_in_cloud(self, local: tuple, network_s: float) -> Answer: ...
    def model_in_cloud(self, name: str, fallback_engine: Any) -> Answer: ...
    def on_mcu(self, features: Any) -> Any: ...
    def on_host_twin(self, features: Any) -> tuple: ...
    def mcu_labels(self, net: int) -> tuple: ...
    def set_energy(self, joules: float, source: str) -> None: ...


class Policy(Protocol):
    """Every policy: `plan` a frame from the telemetry and profile, then `execute` the plan
    through the frame's steps. One registry (daemon/service.py) builds them."""

    name: str

    def plan(self, frame: FrameContext, telemetry: Telemetry, profile: Any, explain: bool = False) -> Plan: ...
    def execute(self, job: Any, plan: Plan, steps: Steps) -> Answer: ...


@dataclass
class StageTimes:
    """Where one frame's time went, in seconds; unset stages are None. Filled in as the frame
    runs (the executor, then the steps), read by the statistics, and turned into the reply's
    `latency_ms` at the API edge (`to_reply_ms`). docs/protocols.md lists the stages."""

    queue: float | None = None          # waiting for a worker
    plan: float | None = None           # the policy's plan
    preprocess: float | None = None     # a camera frame made the model's tensor (the bundle's graph)
    device_wait: float | None = None    # waiting for the one device
    mux: float | None = None            # the multiplexer's selector
    device: float | None = None         # on the device (the head, or the whole model)
    recovery: float | None = None       # the big model after a misspeculation
    network: float | None = None        # the cloud call, send to reply
    cloud: float | None = None          # the cloud's compute, as it reported
    fallback: float | None = None       # the device after a failed cloud call
    mcu: float | None = None            # the MCU's round trip
    host: float | None = None           # the host's copy of the MCU's model
    total: float | None = None          # receipt to answer

    NAMES: ClassVar[tuple[str, ...]] = ("queue", "plan", "preprocess", "device_wait", "mux", "device", "recovery", "network",
                                        "cloud", "fallback", "mcu", "host", "total")

    def add(self, stage: str, seconds: float) -> None:
        """Accumulate: a stage may run more than once in a frame (e.g. two device steps)."""
        if stage not in self.NAMES:
            raise ValueError(f"unknown stage {stage!r}; stages are {', '.join(self.NAMES)}")
        setattr(self, stage, (getattr(self, stage) or 0.0) + seconds)

    def items(self) -> list[tuple[str, float]]:
        # the instance's dict holds the fields in NAMES' order (the dataclass sets them so);
        # reading it is a third of the cost of getattr per name, and this runs per frame
        return [(name, value) for name, value in self.__dict__.items() if value is not None]

    def to_reply_ms(self) -> dict[str, float]:
        return {name: value * 1e3 for name, value in self.__dict__.items() if value is not None}


@dataclass
class ServedBy:
    """What served one frame, filled in as it runs (the executor, then the policy's execution)
    and turned into the reply's `served_by` at the API edge (`to_reply`: unset fields left out,
    seconds as the API's milliseconds). docs/protocols.md lists the fields."""

    placement: str
    policy: str
    goal: str
    mode: str
    partition: str | None = None
    fallback: bool = False
    fallback_reason: str | None = None
    predicted_s: float | None = None
    est_uplink_bps: float | None = None
    upload_bytes: int | None = None
    answered_by: str | None = None          # duplicate, multiplex, speculate, minions
    device_reason: str | None = None
    model: str | None = None                # mdinference: the cloud model chosen
    device_model: str | None = None         # mdinference: the duplicate's device model
    budget_s: float | None = None           # mdinference: T_budget
    w: list | None = None                   # multiplexer
    wants: str | None = None
    predicted_side_s: dict | None = None
    little: str | None = None               # dynamic-duo, sieve
    little_confidence: float | None = None
    threshold: float | None = None
    recovered: bool | None = None           # also mmnet
    detector: bool | None = None
    history: str | None = None              # sieve
    minions: list | None = None             # mmnet
    minion_confidence: list | None = None
    minions_agree: bool | None = None
    net: str | None = None                  # the MCU's multi-dsNN
    mcu_ticks: int | None = None
    dtype: str | None = None

    def to_reply(self) -> dict:
        out = {key: value for key, value in self.__dict__.items() if value is not None}
        for key in _SECONDS_FIELDS:                       # the API speaks milliseconds
            if key not in out:
                continue
            value = out.pop(key)
            out[key[:-2] + "_ms"] = ({k: v * 1e3 for k, v in value.items()} if key == "predicted_side_s"
                                     else value * 1e3)
        return out


_SECONDS_FIELDS = ("predicted_s", "budget_s", "predicted_side_s")
