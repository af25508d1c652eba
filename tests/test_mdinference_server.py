"""MDInference where the paper puts it: the cloud worker measures each frame's upload from the
device's send stamp (moved onto its clock by the offset the device measured with pings) and
picks the zoo model; and the pieces that make it testable on one machine: emulated cloud
times and the link shaper's seeded per-message network times."""

import socket
import threading

import numpy as np
import pytest

from adaptinf.cloud import protocol
from adaptinf.cloud.zoo_selection import ZooSelection
from adaptinf.daemon.clock_offset import ClockOffset
from adaptinf.engines.emulated_times import EmulatedTimes
from adaptinf.policies.mdinference import ModelStats, Network, read_model_table
from adaptinf.rig.link_shaper import LinkProfile, LinkShaper, MessageDelay

POOL = [ModelStats("fast", 0.50, 0.010, 0.001), ModelStats("mid", 0.70, 0.050, 0.002),
        ModelStats("big", 0.80, 0.110, 0.002)]


def request(**fields) -> protocol.Infer:
    return protocol.Infer(protocol.MDINFERENCE_TARGET, (1, 4), **fields)


def test_the_budget_is_the_sla_less_twice_the_measured_upload_and_the_queue():
    selection = ZooSelection(POOL)
    # sent at 100.000 on the worker's clock, arrived 40 ms later, started 5 ms after that
    choice = selection.choose(request(sla_s=0.25, sent_at=100.0), arrived_at=100.040, now=100.045)
    assert choice.network_s == pytest.approx(0.080)
    assert choice.budget_s == pytest.approx(0.25 - 0.040 - 0.005 - 0.040)
    assert choice.model == "big"                       # 0.112 fits 0.165
    slow = selection.choose(request(sla_s=0.25, sent_at=100.0), arrived_at=100.080, now=100.080)
    assert slow.budget_s == pytest.approx(0.09) and slow.model == "mid"
    late = selection.choose(request(sla_s=0.25, sent_at=100.0), arrived_at=100.200, now=100.200)
    assert late.model == "fast"                        # nothing fits: the fastest


def test_without_the_clocks_offset_the_devices_estimate_is_used():
    choice = ZooSelection(POOL).choose(request(sla_s=0.25, network_s=0.15), arrived_at=5.0, now=5.0)
    assert choice.network_s == pytest.approx(0.15) and choice.budget_s == pytest.approx(0.1) and choice.model == "mid"


def test_a_models_time_follows_its_runs():
    selection = ZooSelection(POOL)
    for _ in range(400):
        selection.observe("big", 0.300)                 # the big model became slow
    big = {m.name: m for m in selection.pool()}["big"]
    assert big.mean_s == pytest.approx(0.300, rel=1e-3) and big.std_s < 0.0001
    assert selection.choose(request(sla_s=0.25, sent_at=0.0), arrived_at=0.04, now=0.04).model == "mid"


@pytest.mark.parametrize("fields, message", [
    ({"sla_ms": 250.0}, "sent_at' or 'network_ms"),
    ({"network_ms": 80.0}, "positive 'sla_ms'"),
    ({"sla_ms": 250.0, "sent_at": "noon"}, "sent_at must be"),
    ({"sla_ms": 250.0, "sent_at": float("nan")}, "sent_at must be"),
    ({"sla_ms": -1.0, "sent_at": 1.0}, "sla_ms must be"),
])
def test_a_malformed_mdinference_request_is_refused_by_name(fields, message):
    header = {"op": "infer", "target": protocol.MDINFERENCE_TARGET, "tensor": {"dtype": "uint8", "shape": [1, 4]},
              **fields}
    with pytest.raises(ValueError, match=message):
        protocol.Infer.from_header(header)


def test_the_request_round_trips_through_its_header():
    sent = request(sla_s=0.2, sent_at=1234.5, deadline_s=0.19)
    assert protocol.Infer.from_header(sent.header()) == sent


def test_the_clock_offset_is_the_shortest_round_trips():
    offset = ClockOffset()
    assert offset.offset_s is None and offset.cloud_time(10.0) is None
    # the cloud's clock is ours + 3 s; the first exchange waited 40 ms on the way up only
    offset.observe(sent_at=100.0, received_at=100.050, cloud_clock=103.045)
    offset.observe(sent_at=101.0, received_at=101.010, cloud_clock=104.005)    # symmetric, short
    offset.observe(sent_at=102.0, received_at=101.9, cloud_clock=0.0)          # our clock stepped: ignored
    assert offset.offset_s == pytest.approx(3.0)
    assert offset.cloud_time(200.0) == pytest.approx(203.0)
    offset.reset()                                   # a reconnect: perhaps another server
    assert offset.offset_s is None


class FakeEngine:
    backend = "fake"
    inputs = outputs = ()

    def __init__(self, clock, takes_s):
        self.clock, self.takes_s = clock, takes_s

    def run(self, x):
        self.clock.now += self.takes_s
        return x


class Clock:
    now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, s):
        self.now += s


def test_emulated_times_are_seeded_draws_never_below_the_real_run():
    clock = Clock()
    engine = EmulatedTimes(FakeEngine(clock, 0.004), 0.010, 0.005, seed=7, clock=clock, sleep=clock.sleep)
    took = []
    for _ in range(200):
        start = clock.now
        engine.run(np.zeros(1))
        took.append(clock.now - start)
    draws = np.maximum(np.random.default_rng(7).normal(0.010, 0.005, 200), 0.0)
    assert took == pytest.approx(np.maximum(draws, 0.004).tolist())
    with pytest.raises(ValueError, match="mean > 0"):
        EmulatedTimes(FakeEngine(clock, 0.0), float("nan"), 0.0)


def test_a_bad_model_table_is_refused_by_line(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("# name,accuracy,mean,std\na,50,10,1\nb,70,50,2\n")
    assert [m.name for m in read_model_table(good)] == ["a", "b"]
    for text, line in (("a,50,10\n", 1), ("a,50,10,1\nb,170,5,1\n", 2), ("a,50,-3,1\n", 1)):
        bad = tmp_path / "bad.csv"
        bad.write_text(text)
        with pytest.raises(ValueError, match=f"bad.csv:{line}:"):
            read_model_table(bad)


def test_a_reply_goes_back_over_the_path_its_request_came_by():
    """Per-message network times: the uplink holds half of each drawn round trip, and the
    downlink what it reads next for the same half, so request + reply = the sim's draw."""
    server = socket.create_server(("127.0.0.1", 0))
    shaper = LinkShaper(("127.0.0.1", server.getsockname()[1]), LinkProfile(
        "seeded", 50e6, 50e6, 0.0, message_delay=MessageDelay(0.1, 0.05, seed=3)))
    draws = Network(0.1, 0.05).sample(3, np.random.default_rng(3))
    assert shaper.one_way_delay(uplink=False) == 0.0            # nothing drawn yet: the profile's rtt
    for drawn in draws:
        assert shaper.one_way_delay(uplink=True) == pytest.approx(drawn / 2)
        assert shaper.one_way_delay(uplink=False) == pytest.approx(drawn / 2)
    server.close()


@pytest.mark.slow
def test_a_worker_chooses_with_the_upload_it_measures(zoo_bundle, glyph_frames):
    """A real worker: the reply names the model, T_budget and the T_nw it measured."""
    import time

    import zmq

    from adaptinf.bundle import load_bundle
    from adaptinf.cloud.worker import CloudWorker

    bundle = load_bundle(zoo_bundle)
    worker = CloudWorker(bundle, "tcp://127.0.0.1:*", emulate_times={bundle.zoo.models[-1]: (0.05, 0.001)}).start()
    ctx = zmq.Context.instance()
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(worker.bound_endpoint)
    try:
        frame = np.ascontiguousarray(glyph_frames.images[:1])
        sent = protocol.Infer(protocol.MDINFERENCE_TARGET, frame.shape, sla_s=0.25, sent_at=time.time() - 0.03)
        dealer.send_multipart([protocol.pack(dict(sent.header(), rid=[1, 1])), frame])
        assert dealer.poll(5000)
        header = protocol.unpack_reply(dealer.recv_multipart()[0])
    finally:
        dealer.close(0)
        worker.stop()
    assert header["ok"] and header["model"] in bundle.zoo.models
    assert 60 <= header["network_ms"] < 80          # 2 x (30 ms before sending + the hop)
    assert header["budget_ms"] == pytest.approx(250 - header["network_ms"], abs=5)
