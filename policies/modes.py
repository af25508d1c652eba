"""The four modes' rules (thesis 4.3.2), in one place for every policy.

- private:          nothing leaves the device;
- mission-critical: the most accurate answer for every frame (no speculation);
- power-saving:     plan for device energy, whatever the request's goal;
- normal:           the request's goal.
"""

from __future__ import annotations

from typing import Any, Callable

from adaptinf.policies.plan import Candidate, FrameContext, Telemetry
from adaptinf.profile import CLOUD_ONLY

POWER_SAVING_LOSS = 0.01     # power-saving's probes may lose "a marginal amount of accuracy" (thesis 4.3.2)


def cloud_allowed(frame: FrameContext, telemetry: Telemetry, profile: Any) -> bool:
    """The cloud may serve this frame: not private, the link up, and the cloud measured."""
    return frame.mode != "private" and telemetry.cloud_up and profile.has(CLOUD_ONLY)


def most_accurate_only(frame: FrameContext) -> bool:
    return frame.mode == "mission-critical"


def goal(frame: FrameContext) -> str:
    """The goal the plan optimises: energy in power-saving mode, else the request's."""
    return "energy" if frame.mode == "power-saving" else frame.goal


def cost_key(goal_name: str) -> Callable[[Candidate], float]:
    return (lambda c: c.energy_j) if goal_name == "energy" else (lambda c: c.latency_s)
