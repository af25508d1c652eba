"""Mahimahi uplink traces: parsing, windows, joins, the exact drain time, and the shaper
replaying them (the bottleneck's schedule equals the trace's drain time)."""

import socket
import threading

import numpy as np
import pytest

from adaptinf.rig.link_shaper import LinkShaper, TraceBottleneck, trace_profile
from adaptinf.rig.uplink_trace import PACKET_BYTES, TraceError, parse_trace_spec, read_trace_file


@pytest.fixture
def trace_file(tmp_path):
    # 1 packet at 10, 2 at 20, none until 1000, then 1 at 1000: period 1000 ms
    path = tmp_path / "tiny.up"
    path.write_text("10\n20\n20\n1000\n")
    return path


def test_a_trace_file_is_read_as_delivery_opportunities(trace_file):
    assert read_trace_file(trace_file).tolist() == [10, 20, 20, 1000]
    t = parse_trace_spec(str(trace_file))
    assert t.period_ms == 1000 and t.mean_bps == pytest.approx(4 * PACKET_BYTES * 8 / 1.0)


@pytest.mark.parametrize("text, message", [("10\nabc\n", "not a whole number"), ("", "empty"),
                                           ("20\n10\n", "backwards"), ("\xff\n", "not a Mahimahi trace")])
def test_bad_trace_files_are_refused_by_name(tmp_path, text, message):
    path = tmp_path / "bad.up"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(TraceError, match=message):
        parse_trace_spec(str(path))


def test_a_missing_file_and_a_bad_window_are_refused(tmp_path, trace_file):
    with pytest.raises(TraceError, match="cannot read"):
        parse_trace_spec(str(tmp_path / "nope.up"))
    with pytest.raises(TraceError, match="START < END"):
        parse_trace_spec(f"{trace_file}:5-5")
    with pytest.raises(TraceError, match="START-END"):
        parse_trace_spec(f"{trace_file}:a-b")


def test_drain_time_counts_packets_and_repeats_the_trace(trace_file):
    t = parse_trace_spec(str(trace_file))
    assert t.drain_s(0.0, 1) == pytest.approx(0.010)            # the first opportunity
    assert t.drain_s(0.0, 3 * PACKET_BYTES) == pytest.approx(0.020)
    assert t.drain_s(0.0, 4 * PACKET_BYTES) == pytest.approx(1.000)   # waits through the dead time
    assert t.drain_s(0.0, 5 * PACKET_BYTES) == pytest.approx(1.010)   # the trace repeats after 1000 ms
    assert t.drain_s(0.015, PACKET_BYTES) == pytest.approx(0.005)
    assert t.drain_s(2.5, 0) == 0.0


def test_windows_rebase_and_joins_play_back_to_back(trace_file):
    w = parse_trace_spec(f"{trace_file}:0.015-1.5")    # runs past the end: the repeat continues
    assert w.opportunities_ms.tolist() == [5, 5, 985, 995, 1005, 1005] and w.period_ms == 1485
    j = parse_trace_spec(f"{trace_file}:0-0.5+{trace_file}:0-0.5")
    assert j.opportunities_ms.tolist() == [10, 20, 20, 510, 520, 520] and j.period_ms == 1000
    assert [s.start_s for s in j.sources] == [0.0, 0.0] and len(j.sources[0].sha256) == 64


def test_the_shared_traces_parse(shared_traces):
    for name in ("TMobile-UMTS-driving.up", "Verizon-LTE-short.up"):
        t = parse_trace_spec(str(shared_traces / name))
        assert 0.5e6 < t.mean_bps < 10e6


def test_the_bottleneck_schedule_is_the_traces_drain_time(trace_file):
    """What the shaper does (schedule) and what the bound assumes (drain_s) agree, for an
    upload on an empty link; and opportunities that find the queue empty are lost."""
    t = parse_trace_spec(f"{trace_file}:0-3")
    rng = np.random.default_rng(0)
    for _ in range(50):
        b = TraceBottleneck(t, now=10.0)
        sent = float(rng.uniform(0, 2.5))
        nbytes = int(rng.integers(1, 8 * PACKET_BYTES))
        pieces = b.schedule(10.0 + sent, nbytes)
        assert sum(size for _, size in pieces) == nbytes
        assert pieces[-1][0] - 10.0 - sent == pytest.approx(t.drain_s(sent, nbytes))
    b = TraceBottleneck(t, now=0.0)
    b.schedule(0.0, PACKET_BYTES)                 # leaves at 10 ms
    assert b.schedule(0.5, PACKET_BYTES)[0][0] == pytest.approx(1.0)   # 20 ms's two went unused
    b.restart(5.0)                                # trace time 0 is now 5.0
    assert b.schedule(5.0, 1)[0][0] == pytest.approx(5.010)


def sink(nbytes: int) -> tuple[socket.socket, bytearray, threading.Event]:
    """A server that keeps what one connection sends until nbytes have come: (server, bytes, done)."""
    server = socket.create_server(("127.0.0.1", 0))
    received = bytearray()
    done = threading.Event()

    def serve():
        conn, _ = server.accept()
        while len(received) < nbytes:
            data = conn.recv(65536)
            if not data:
                break
            received.extend(data)
        done.set()

    threading.Thread(target=serve, daemon=True).start()
    return server, received, done


def test_the_shaper_replays_a_trace_in_order_and_restart_empties_it(trace_file):
    server, received, done = sink(40_000)
    # 4 packets a second: 40 kB would take 7 s; restart() must deliver it at once
    shaper = LinkShaper(("127.0.0.1", server.getsockname()[1]), trace_profile(parse_trace_spec(str(trace_file)),
                                                                                0.002)).start()
    payload = bytes(np.random.default_rng(1).integers(0, 256, 40_000, dtype=np.uint8))
    with socket.create_connection(("127.0.0.1", shaper.port)) as client:
        client.sendall(payload)
        while shaper.bytes_up < len(payload):
            threading.Event().wait(0.01)
        shaper.restart()
        assert done.wait(10)
    shaper.stop()
    assert bytes(received) == payload


def test_per_message_delays_are_the_sims_draws_and_restart_replays_them():
    from adaptinf.programs.sim import Network
    from adaptinf.rig.link_shaper import LinkProfile, MessageDelay

    profile = LinkProfile("delayed", 50e6, 50e6, 0.0, message_delay=MessageDelay(0.1, 0.05, seed=3))
    server = socket.create_server(("127.0.0.1", 0))
    shaper = LinkShaper(("127.0.0.1", server.getsockname()[1]), profile)
    expected = Network(0.1, 0.05).sample(20, np.random.default_rng(3))   # what `adaptinf sim --seed 3` draws
    assert [shaper.draw_delay() for _ in range(20)] == pytest.approx(expected.tolist())
    shaper.restart()
    assert shaper.draw_delay() == pytest.approx(expected[0])
    shaper.set_profile(LinkProfile("plain", 50e6, 50e6, 0.01))
    assert shaper.draw_delay() is None
    server.close()


def test_per_message_delays_keep_the_uplink_in_order():
    from adaptinf.rig.link_shaper import LinkProfile, MessageDelay

    server, received, done = sink(200)
    # a wide spread: later messages often draw shorter delays than earlier ones
    profile = LinkProfile("delayed", 50e6, 50e6, 0.0, message_delay=MessageDelay(0.02, 0.02, seed=1))
    shaper = LinkShaper(("127.0.0.1", server.getsockname()[1]), profile).start()
    with socket.create_connection(("127.0.0.1", shaper.port)) as client:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(200):
            client.sendall(bytes([i]))
            threading.Event().wait(0.001)     # separate reads, so each byte draws its own delay
        assert done.wait(10)
    shaper.stop()
    assert bytes(received) == bytes(range(200))
