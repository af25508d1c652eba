"""Executions that several policies share, written against the steps facade (policies/plan.py Steps).

- run_partition: a plan whose choice is a partition (mobile-only, cloud-only, a split
  point) runs it: what the split and fixed policies always do, and what the others do
  when they fall back to a plain placement (private mode, no cloud).
- recover_with_big: the big (full) model answers a frame the speculative models did not,
  in the cloud if the plan put recovery there (with the device as fallback), else here.
"""

from __future__ import annotations

from adaptinf.policies.plan import Answer, Plan, Steps
from adaptinf.profile import CLOUD_ONLY, MOBILE_ONLY


_PARTITION_OF_KIND = {"device": MOBILE_ONLY, "cloud": CLOUD_ONLY}   # else the split point's own name


def run_partition(plan: Plan, steps: Steps) -> Answer:
    kind = plan.chosen.kind
    if kind not in ("device", "cloud", "split"):
        raise ValueError(f"{plan.policy} cannot execute a {kind!r} candidate as a partition")
    return steps.partition(_PARTITION_OF_KIND.get(kind, plan.chosen.name))


def recover_with_big(plan: Plan, steps: Steps) -> Answer:
    if plan.chosen.name == "cloud":
        answer = steps.full_in_cloud(steps.models.full)
        steps.served.answered_by = "big:device" if steps.served.fallback else "big:cloud"
        return answer
    logits = steps.on_device(steps.models.full, "recovery")
    steps.served.answered_by = "big:device"
    return logits, 0
