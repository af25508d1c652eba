"""The executor and the policies' executions with an injected clock and fake engines and link:
no sleeps, no sockets, no real time. What the whole-daemon tests check on real processes,
here decided by the code alone."""

from types import SimpleNamespace

import numpy as np
import pytest

from adaptinf.daemon.cloud_link import CloudError, CloudReply
from adaptinf.daemon.device_queue import DeviceQueue
from adaptinf.daemon.executor import Executor, Job, Planned
from adaptinf.daemon.stats import Stats
from adaptinf.policies.fixed import FixedPolicy
from adaptinf.policies.mdinference import MdInferencePolicy
from adaptinf.policies.plan import FrameContext, Telemetry
from adaptinf.profile import CLOUD_ONLY, MOBILE_ONLY, PartitionProfile, Profile

CLASSES = 4


class Clock:
    """Time moves only when a fake engine or the fake cloud says so."""

    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


class Engine:
    def __init__(self, clock, seconds, label):
        self.clock, self.seconds, self.label = clock, seconds, label
        self.runs = 0

    def run(self, x):
        self.clock.t += self.seconds
        self.runs += 1
        z = np.zeros((1, CLASSES), np.float32)
        z[0, self.label] = 5.0
        return z


class Call:
    def __init__(self, link, reply):
        self.link, self.reply, self.abandoned = link, reply, False

    def wait(self, timeout_s):
        if isinstance(self.reply, Exception):
            self.link.clock.t += timeout_s
            raise self.reply
        self.link.clock.t += self.link.round_trip_s
        return self.reply

    def abandon(self):
        self.abandoned = True


class Link:
    """The cloud as a fake: answers `label` after round_trip_s, or raises `error`."""

    def __init__(self, clock, label=2, round_trip_s=0.02, error=None):
        self.clock, self.label, self.round_trip_s, self.error = clock, label, round_trip_s, error
        self.up, self.calls = True, []

    def call(self, header, payload, budget_s, upload_bytes=0):
        self.calls.append(header)
        if self.error is not None:
            return Call(self, self.error)
        z = np.zeros(CLASSES, np.float32)
        z[self.label] = 5.0
        return Call(self, CloudReply({"ok": True, "code": "OK", "compute_s": 0.001}, z.tobytes(), self.round_trip_s))


PROFILE = Profile("b", (PartitionProfile(MOBILE_ONLY, 50.0, 5.0, 0.0, 0, 0.9),
                        PartitionProfile(CLOUD_ONLY, 0.0, 5.0, 1.0, 3072, 0.9)))


def make(link, device_label=1, device_s=0.05):
    clock = Clock()
    if link is not None:
        link.clock = clock
    full = Engine(clock, device_s, device_label)
    models = SimpleNamespace(full=full, heads={}, tails={})
    bundle = SimpleNamespace(classes=[str(i) for i in range(CLASSES)], output_size=CLASSES, name="b")
    telemetry = SimpleNamespace(device_slowdown=1.0, observe_device=lambda *a: None, observe_cloud=lambda *a: None)
    policies = {"mobile-only": FixedPolicy(MOBILE_ONLY), "cloud-only": FixedPolicy(CLOUD_ONLY),
                "mdinference": MdInferencePolicy(1.0, 3072)}
    executor = Executor(bundle, models, policies, lambda: PROFILE, link, telemetry, Stats(clock), 5.0, 1.0,
                        clock=clock, device=DeviceQueue(clock))
    return executor, clock, full


def run(executor, clock, policy, deadline_s=None):
    job = Job(1, b"peer", np.zeros((1, 32, 32, 3), np.uint8), FrameContext(deadline_s=deadline_s), policy,
              clock.t, clock.t + deadline_s if deadline_s else None)
    t = Telemetry(uplink_bps=10e6, rtt_s=0.01)
    plan = executor.policies[policy].plan(job.context, t, PROFILE)
    return executor.run(job, Planned(plan, t, PROFILE, 0.0))


def test_cloud_only_answers_from_the_cloud_and_times_its_stages():
    link = Link(None, label=2, round_trip_s=0.02)
    executor, clock, full = make(link)
    result = run(executor, clock, "cloud-only")
    assert result.label == 2 and full.runs == 0 and not result.served_by.fallback
    assert result.stages.network == pytest.approx(0.02) and result.stages.cloud == pytest.approx(0.001)
    assert link.calls[0]["target"] == "full"


def test_a_failed_cloud_call_falls_back_to_the_device_once():
    link = Link(None, error=CloudError("DEADLINE", "no reply"))
    executor, clock, full = make(link, device_label=1)
    result = run(executor, clock, "cloud-only")
    assert result.label == 1 and full.runs == 1
    assert result.served_by.fallback and "no reply" in result.served_by.fallback_reason
    assert executor.stats.snapshot()["counters"]["fallbacks"] == 1


def test_no_time_left_for_the_cloud_goes_straight_to_the_device():
    link = Link(None)
    executor, clock, full = make(link, device_s=0.05)
    result = run(executor, clock, "cloud-only", deadline_s=0.04)   # less than the device fallback itself
    assert link.calls == [] and full.runs == 1
    assert result.served_by.fallback_reason == "no time left for the cloud within the deadline"


def test_mdinference_uses_the_clouds_answer_when_it_beats_the_sla():
    link = Link(None, label=3, round_trip_s=0.01)
    executor, clock, full = make(link, device_label=0)
    result = run(executor, clock, "mdinference", deadline_s=0.5)
    assert result.served_by.answered_by == "cloud" and result.label == 3
    assert full.runs == 1                                      # the duplicate ran on the device meanwhile


def test_mdinference_answers_with_the_device_when_the_cloud_misses_the_sla():
    link = Link(None, error=CloudError("DEADLINE", "past the SLA"))
    executor, clock, full = make(link, device_label=0)
    result = run(executor, clock, "mdinference", deadline_s=0.5)
    assert result.served_by.answered_by == "device" and result.label == 0
    assert "past the SLA" in result.served_by.device_reason


def test_a_frame_whose_deadline_passed_in_the_queue_is_not_run():
    executor, clock, full = make(Link(None))
    job = Job(1, b"peer", np.zeros((1, 32, 32, 3), np.uint8), FrameContext(), "mobile-only", clock.t, clock.t + 0.1)
    clock.t += 0.2                                             # it waited in the queue past its deadline
    result = executor.execute(job)
    assert result.code == "DEADLINE_EXCEEDED" and full.runs == 0


# ---- the infer request, validated into a typed value -----------------------------------
def test_an_infer_request_is_checked_against_the_model_it_names():
    from adaptinf import api_protocol as api
    from adaptinf.daemon.infer_request import ServedModel, parse_infer

    served = {"b": ServedModel("b", (1, 2, 2, 3), "uint8", ("split", "mobile-only"), "split", ("a", "b")),
              "fc": ServedModel("fc", (4,), "float32", ("auto", "mcu", "host"), "auto", ("0", "1"), on_mcu=True)}

    def req(**header):
        buffers = [np.zeros((1, 2, 2, 3), np.uint8).tobytes()] if header.get("model") != "fc" else \
            [np.zeros(4, np.float32).tobytes()]
        spec = {"dtype": "uint8", "shape": [1, 2, 2, 3]} if header.get("model") != "fc" else \
            {"dtype": "float32", "shape": [4]}
        return api.Request(1, "infer", {"tensor": spec, **header}, buffers)

    r = parse_infer(req(deadline_ms=250, priority=7), served, "b", "normal", "latency")
    assert (r.model.name, r.policy, r.deadline_s, r.priority, r.frame.shape) == ("b", "split", 0.25, 7, (1, 2, 2, 3))
    assert parse_infer(req(model="fc"), served, "b", "normal", "latency").model.on_mcu
    for header, code in (({"model": "nope"}, "NOT_FOUND"), ({"policy": "mmnet"}, "NOT_FOUND"),
                         ({"policy": 3}, "INVALID_ARG"), ({"mode": "fast"}, "INVALID_ARG"),
                         ({"goal": "speed"}, "INVALID_ARG"), ({"deadline_ms": 0}, "INVALID_ARG"),
                         ({"deadline_ms": True}, "INVALID_ARG"), ({"priority": 256}, "INVALID_ARG")):
        with pytest.raises(api.ApiError) as err:
            parse_infer(req(**header), served, "b", "normal", "latency", known_policies=("mmnet",))
        assert err.value.code == code, header
