"""The daemon's M&MNet path and the offline rule (mmnet.recover) decide identically at the
thresholds: a confidence exactly at, one ulp under and one ulp over each threshold.

Engines here are fixed-logit test doubles (the decision is under test, not a model); the
executor, the probability function and the rule are the product's.
"""

from types import SimpleNamespace

import numpy as np
import pytest

from adaptinf.daemon.executor import Executor, Job, Planned
from adaptinf.daemon.stats import Stats
from adaptinf.policies import mmnet
from adaptinf.policies.confidence import probabilities
from adaptinf.policies.plan import Candidate, FrameContext, Plan, Telemetry
from adaptinf.profile import MOBILE_ONLY, PartitionProfile, Profile

CLASSES = 16


class FixedLogits:
    """An engine double: always answers the same logits."""

    backend = "test"

    def __init__(self, logits):
        self.logits = np.asarray(logits, np.float32)[None]

    def run(self, x):
        return self.logits


def logits_for(label: int, margin: float) -> np.ndarray:
    z = np.zeros(CLASSES, np.float32)
    z[label] = margin
    return z


def run_minions(minion_logits, thresholds):
    """served_by of one frame through the executor's M&MNet path, the Master recovering on the device."""
    bundle = SimpleNamespace(mmnet=SimpleNamespace(thresholds=thresholds, minions=("m1", "m2")),
                             classes=[str(i) for i in range(CLASSES)])
    models = SimpleNamespace(minions=tuple(FixedLogits(z) for z in minion_logits),
                             full=FixedLogits(logits_for(0, 9.0)))
    profile = Profile("test", (PartitionProfile(MOBILE_ONLY, 1.0, 5.0, 0.0, 0),))
    policies = {"mmnet": mmnet.MmNetPolicy(32 * 32 * 3, 0.5, 0.1, 0.9)}   # the policy executes its plan
    executor = Executor(bundle, models, policies, lambda: profile, None, None, Stats(), 5.0, 1.0)
    telemetry = Telemetry(uplink_bps=1e6, rtt_s=0.01)
    plan = Plan(Candidate("device", "minions", 0.001, 0, 0, 0, 0.001, 0.0, None), "latency", "normal", "mmnet")
    job = Job(1, b"peer", np.zeros((1, 32, 32, 3), np.uint8), FrameContext(), "mmnet", 0.0)
    return executor.run(job, Planned(plan, telemetry, profile, 0.0)).served_by.to_reply()   # as the reply has it


@pytest.mark.parametrize("margin_1, margin_2", [(2.0, 2.5), (0.7, 3.1), (4.0, 0.3)])
@pytest.mark.parametrize("side_1", ["at", "under", "over"])
@pytest.mark.parametrize("side_2", ["at", "under", "over"])
@pytest.mark.parametrize("agree", [True, False])
def test_daemon_and_offline_rule_agree_at_the_thresholds(margin_1, margin_2, side_1, side_2, agree):
    minion_logits = [logits_for(3, margin_1), logits_for(3 if agree else 5, margin_2)]
    confidence = [float(probabilities(z).max()) for z in minion_logits]
    # the threshold relative to the confidence: equal; one ulp above it (the confidence is
    # just under); one ulp below it (the confidence is just over)
    move = {"at": lambda c: c, "under": lambda c: np.nextafter(c, 2.0), "over": lambda c: np.nextafter(c, -1.0)}
    thresholds = (float(move[side_1](confidence[0])), float(move[side_2](confidence[1])))
    served = run_minions(minion_logits, thresholds)
    offline = bool(mmnet.recover(confidence[0], 3, confidence[1], 3 if agree else 5, *thresholds))
    assert served["minion_confidence"] == confidence
    assert served["recovered"] == offline
    # and the rule itself is strict: at the threshold a Minion is trusted, one ulp under it is not
    assert offline == (not agree or side_1 == "under" or side_2 == "under")
