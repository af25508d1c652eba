"""Fixed placements (mobile-only, cloud-only, or one split point) as policies.

A placement the profile has not measured (no cloud reachable yet) runs on the device.

The baselines every adaptive plan is compared with; predictions come from the same
cost model, so `adaptinf plan` and the demo report them side by side.
"""

from __future__ import annotations

import functools

from adaptinf.policies.execution import run_partition
from adaptinf.policies.plan import FrameContext, Plan, Telemetry
from adaptinf.policies.split import CostModel
from adaptinf.profile import MOBILE_ONLY, Profile


class FixedPolicy:
    def __init__(self, partition: str):
        self.name = partition
        self.partition = partition
        self._model: CostModel | None = None

    def plan(self, frame: FrameContext, telemetry: Telemetry, profile: Profile, explain: bool = False) -> Plan:
        if self._model is None or self._model.profile is not profile:
            self._model = CostModel(profile)
        chosen = self._model.predict_one(self.partition, telemetry)
        # Not measured (the cloud has not been reachable since start-up) or private mode: the
        # frame runs on the device, as a pinned cloud placement does when its link is down.
        if chosen is None or (frame.mode == "private" and chosen.kind != "device"):
            chosen = self._model.predict_one(MOBILE_ONLY, telemetry)
        candidates = tuple(self._model.predict(telemetry)) if explain else ()
        return Plan(chosen, frame.goal, frame.mode, self.name, candidates)

    def execute(self, job, plan: Plan, steps):
        return run_partition(plan, steps)

@functools.lru_cache(maxsize=None)
def fixed(partition: str) -> FixedPolicy:
    """One shared FixedPolicy per partition, for policies that also weigh the full model alone
    (its cost model is built once per profile, not per frame)."""
    return FixedPolicy(partition)
