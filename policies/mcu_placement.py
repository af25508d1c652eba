"""Where an FC model (a multi-dsNN) runs: on the MCU over serial, or on the Jetson's CPU.

The Cortex-M4 cost model (docs/mcu.md):
- compute: cycles = SysTick ticks x cycles_per_tick (1 on silicon, where SysTick counts
  the core clock; 1/0.168 under QEMU -icount shift=0, where a tick is 1/0.168 instructions
  and an instruction is taken as one cycle), time = cycles / clock_hz;
- energy: cycles x energy_per_cycle_nj. The default, ENERGY_PER_CYCLE_NJ (0.785 nJ), is
  238 uA/MHz x 3.3 V: ST's STM32F405/407 page, "as low as 238 uA/MHz at 168 MHz" in run
  mode from flash, so a lower bound (measure your board and set it);
- serial: both frames' encoded bytes x 10 bits (8N1) / baud, until round trips have
  been measured, then the smoothed measured round trip (it includes USB CDC, the host's
  scheduling, everything).
The Jetson side: its measured time for the host reference x device power.

Like every policy it plans, then executes through the frame's steps (policies/plan.py):
on the MCU, or on the host's bit-exact twin of the same system; an MCU that is down,
silent or resetting makes the frame run on the host instead (served_by says fallback and
why), so every frame gets exactly one answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from adaptinf.drivers import mcu_protocol as proto
from adaptinf.drivers.mcu import McuError
from adaptinf.policies import modes
from adaptinf.policies.plan import Answer, Candidate, FrameContext, Plan, Steps, Telemetry

MCU = "mcu"
HOST = "host"
NETS = ("main", "tail")      # the multi-dsNN's two nets, as served_by names them
ENERGY_PER_CYCLE_NJ = 238e-6 * 3.3 * 1e3   # 238 uA/MHz x 3.3 V = 0.785 nJ per cycle (see above)


@dataclass(frozen=True)
class McuCostModel:
    clock_hz: float = 16e6               # the firmware runs on the reset clock (HSI) on a board
    cycles_per_tick: float = 1.0
    energy_per_cycle_nj: float = ENERGY_PER_CYCLE_NJ
    baudrate: int = 115200

    def compute_s(self, ticks: float) -> float:
        return ticks * self.cycles_per_tick / self.clock_hz

    def compute_j(self, ticks: float) -> float:
        return ticks * self.cycles_per_tick * self.energy_per_cycle_nj * 1e-9

    def serial_s(self, input_dim: int, classes: int) -> float:
        def on_wire(payload: int) -> int:
            raw = proto.HEADER_BYTES + payload + proto.CRC_BYTES
            return raw + raw // 254 + 2
        return (on_wire(4 * input_dim) + on_wire(12 + 4 * classes)) * 10 / self.baudrate


@dataclass
class FcObservations:
    """What the runtime has measured so far (EWMA); None until the first sample."""

    mcu_ticks: float | None = None
    mcu_round_trip_s: float | None = None
    host_s: float | None = None
    mcu_up: bool = False

    def observe(self, name: str, value: float, alpha: float = 0.2) -> None:
        old = getattr(self, name)
        setattr(self, name, value if old is None else (1 - alpha) * old + alpha * value)


class McuPlacementPolicy:
    """"auto" picks by goal; "mcu" and "host" pin a placement (an MCU that is down still falls back).
    The policies of one MCU share its observations (`seen`) and whether it is up (`is_up`)."""

    def __init__(self, name: str, model: McuCostModel, input_dim: int, classes: int, host_power_w: float,
                 seen: FcObservations | None = None, is_up: Callable[[], bool] = lambda: True):
        self.name = name
        self.model = model
        self.input_dim, self.classes = input_dim, classes
        self.host_power_w = host_power_w
        self.seen = seen if seen is not None else FcObservations()
        self._is_up = is_up

    def candidates(self, seen: FcObservations) -> tuple[Candidate, ...]:
        ticks = seen.mcu_ticks or 0.0
        compute = self.model.compute_s(ticks)
        serial = self.model.serial_s(self.input_dim, self.classes)
        mcu_latency = seen.mcu_round_trip_s if seen.mcu_round_trip_s is not None else serial + compute
        host_s = seen.host_s or 0.0
        return (Candidate(MCU, "mcu", compute, mcu_latency - compute, 0.0, 0.0, mcu_latency,
                          self.model.compute_j(ticks), None),
                Candidate(HOST, "device", host_s, 0.0, 0.0, 0.0, host_s, host_s * self.host_power_w, None))

    def plan(self, frame: FrameContext, telemetry: Telemetry | None = None, profile: Any = None,
             explain: bool = False) -> Plan:
        """The Jetson's telemetry and profile do not price the MCU: its own observations do."""
        seen = self.seen
        seen.mcu_up = self._is_up()
        mcu, host = candidates = self.candidates(seen)
        if self.name == MCU or self.name == HOST:
            chosen = mcu if self.name == MCU else host
        elif not seen.mcu_up:
            chosen = host
        elif seen.mcu_ticks is None or seen.host_s is None:
            chosen = mcu if seen.mcu_ticks is None else host   # measure both once before choosing
        else:
            chosen = min(candidates, key=modes.cost_key(modes.goal(frame)))
        return Plan(chosen, frame.goal, frame.mode, self.name, candidates)

    def execute(self, job: Any, plan: Plan, steps: Steps) -> Answer:
        x = np.asarray(job.frame, np.float32).reshape(-1)
        served, seen = steps.served, self.seen
        served.partition = served.est_uplink_bps = None     # the Jetson's split and link are not this frame's
        if plan.chosen.name == MCU:
            try:
                r = steps.on_mcu(x)
            except McuError as exc:
                served.fallback, served.fallback_reason = True, str(exc)
                steps.count("mcu_fallbacks")
            else:
                seen.observe("mcu_ticks", r.count)
                seen.observe("mcu_round_trip_s", steps.stages.mcu)
                served.placement, served.net, served.mcu_ticks, served.dtype = MCU, NETS[r.net], r.count, r.dtype
                steps.set_energy(self.model.compute_j(r.count), "mcu-model")
                return self._spread(r.logits, steps.mcu_labels(r.net)), 0
        _, net, logits = steps.on_host_twin(x)
        seen.observe("host_s", steps.stages.host)
        served.placement, served.net = HOST, NETS[net]
        return self._spread(logits, steps.mcu_labels(net)), 0

    def _spread(self, logits: np.ndarray, labels: Sequence[int]) -> np.ndarray:
        """One net's logits over all classes: a dsNN knows only some, the rest get -inf (so
        probability 0)."""
        out = np.full(self.classes, -np.inf, np.float32)
        out[list(labels)] = np.asarray(logits, np.float32).reshape(-1)
        return out
