"""Issue 18's reproductions against adaptinfd: each of these once broke the daemon.

In-process daemons where the defect is in the service; real processes where it is in
the program (exit codes, signals, READY)."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import msgpack
import numpy as np
import pytest
import zmq

from adaptinf.client import ApiFailure, Client
from adaptinf.cloud.worker import CloudWorker
from adaptinf.daemon.config import ConfigError, parse_config
from adaptinf.daemon.service import Daemon, StartupError
from adaptinf.rig.processes import spawn_daemon, write_daemon_config
from conftest import DEMO_BUNDLE, free_port

REPO = DEMO_BUNDLE.parent.parent
FRAME = np.zeros((1, 32, 32, 3), np.uint8)


def daemon_config(tmp, **sections):
    daemon = {"api_endpoint": f"ipc://{tmp}/api.sock", "bundle": str(DEMO_BUNDLE), "state_dir": str(tmp),
              "warmup_runs": 3, **sections.pop("daemon", {})}
    return parse_config({"daemon": daemon, **sections})


def dealer(endpoint, identity=None):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if identity:
        sock.setsockopt(zmq.IDENTITY, identity)
    sock.connect(endpoint)
    return sock


def infer_frames(i, **extra):
    header = {"v": [1, 0], "op": "infer", "id": i, "tensor": {"dtype": "uint8", "shape": [1, 32, 32, 3]}, **extra}
    return [msgpack.packb(header), FRAME.tobytes()]


def collect(sock, quiet_ms=3000, replies=None):
    """Every reply until the socket has been quiet for quiet_ms: {id: [codes]}."""
    replies = {} if replies is None else replies
    while sock.poll(quiet_ms):
        reply = msgpack.unpackb(sock.recv_multipart()[0])
        replies.setdefault(reply["id"], []).append(reply["code"])
    return replies


def send_reading(sock, messages, replies):
    """Send each message, reading whatever replies have come meanwhile, as a client that
    keeps up does (one that never reads has its replies dropped past the socket's HWM)."""
    for frames in messages:
        sock.send_multipart(frames)
        collect(sock, quiet_ms=0, replies=replies)


# ---- 2: an over-long multipart message is dropped as it is read, and answered TOO_LARGE ----
def test_a_message_of_many_large_frames_gets_too_large_and_the_daemon_serves_on(tmp_short):
    daemon = Daemon(daemon_config(tmp_short, daemon={"max_message_bytes": 1 << 20})).start()
    try:
        sock = dealer(daemon.api.bound_endpoint)
        header = msgpack.packb({"v": [1, 0], "op": "infer", "id": "big",
                                "tensor": {"dtype": "uint8", "shape": [1, 32, 32, 3]}})
        for _ in range(8):                                   # 8 messages of 64 frames x 256 KiB
            sock.send_multipart([header] + [bytes(256 * 1024)] * 64)
        replies = [msgpack.unpackb(sock.recv_multipart()[0]) for _ in range(8) if sock.poll(10_000)]
        assert [r["code"] for r in replies] == ["TOO_LARGE"] * 8 and all(r["id"] == "big" for r in replies)
        assert "the limit is 1048576 bytes" in replies[0]["message"]
        with Client(daemon.api.bound_endpoint) as c:
            assert c.infer(FRAME).label >= 0
        assert daemon.stats.snapshot()["codes"]["TOO_LARGE"] == 8
    finally:
        daemon.stop()


# ---- 3: unreadable config or profile: refused, at start-up (exit 2) and on SIGHUP (kept) ----
@pytest.mark.parametrize("breakage", ["non-utf8", "directory"])
def test_an_unreadable_config_is_refused_at_start_with_exit_2(tmp_short, breakage):
    config = tmp_short / "adaptinfd.toml"
    if breakage == "non-utf8":
        config.write_bytes(b'[policy]\ngoal = "lat\xffency"\n')
    else:
        config.mkdir()
    run = subprocess.run([sys.executable, "-m", "adaptinf.daemon.main", "--config", str(config)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert str(config) in run.stderr and "READY" not in run.stdout


def test_sighup_with_unreadable_files_keeps_the_daemon_serving(tmp_short):
    sections = dict(daemon={"api_endpoint": f"ipc://{tmp_short}/api.sock", "bundle": str(DEMO_BUNDLE),
                            "state_dir": str(tmp_short), "warmup_runs": 3})
    config = write_daemon_config(tmp_short / "adaptinfd.toml", **sections)
    service = spawn_daemon(config)
    try:
        def hup_and_check():
            before = "\n".join(service.output).count("SIGHUP")
            service.process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 10       # the main loop takes a signal on its next tick:
            while "\n".join(service.output).count("SIGHUP") == before and time.monotonic() < deadline:
                time.sleep(0.02)                   # two quick SIGHUPs would otherwise coalesce
            with Client(service.endpoint, timeout_s=10) as c:   # and frames are still answered
                assert c.infer(FRAME).label >= 0
            assert service.process.poll() is None

        config.write_bytes(b'[policy]\ngoal = "\xff"\n')            # one non-UTF-8 byte
        hup_and_check()
        config.unlink()
        config.mkdir()                                              # replaced by a directory
        hup_and_check()
        config.rmdir()
        (tmp_short / "profile-dir").mkdir()                         # a profile that is a directory
        write_daemon_config(config, daemon={**sections["daemon"], "profile": str(tmp_short / "profile-dir")})
        hup_and_check()
        time.sleep(0.5)
        log = "\n".join(service.output)
        assert "Traceback" not in log and log.count("SIGHUP") >= 3, log
    finally:
        assert service.stop() == 0


# ---- 4: READY means serving: a bind failure is a start-up error ----
def test_an_api_endpoint_that_cannot_be_bound_is_a_startup_error(tmp_short):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        for endpoint in (f"tcp://127.0.0.1:{busy.getsockname()[1]}", "bogus://x"):
            with pytest.raises(StartupError, match="cannot serve the API"):
                Daemon(daemon_config(tmp_short, daemon={"api_endpoint": endpoint})).start()
    finally:
        busy.close()


def test_an_absurd_message_limit_is_refused_by_the_config():
    with pytest.raises(ConfigError, match=r"max_message_bytes = 9000000000000000000 is above its maximum"):
        parse_config({"daemon": {"max_message_bytes": 9_000_000_000_000_000_000}})


def test_a_bind_failure_exits_2_without_ready(tmp_short):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    config = write_daemon_config(tmp_short / "d.toml", daemon={
        "api_endpoint": f"tcp://127.0.0.1:{busy.getsockname()[1]}", "bundle": str(DEMO_BUNDLE),
        "state_dir": str(tmp_short), "warmup_runs": 3})
    try:
        run = subprocess.run([sys.executable, "-m", "adaptinf.daemon.main", "--config", str(config)],
                             capture_output=True, text=True, timeout=120)
    finally:
        busy.close()
    assert run.returncode == 2 and "READY" not in run.stdout and "Traceback" not in run.stderr
    assert "cannot serve the API" in run.stderr


# ---- 5: group members can connect: the socket is 0660 whatever the umask ----
def test_the_ipc_socket_is_group_read_write(tmp_short):
    old = os.umask(0o022)
    try:
        daemon = Daemon(daemon_config(tmp_short)).start()
    finally:
        os.umask(old)
    try:
        assert os.stat(tmp_short / "api.sock").st_mode & 0o777 == 0o660
    finally:
        daemon.stop()


# ---- 6: a cloud that comes up after start-up is measured then and used ----
def test_a_cloud_that_was_down_at_start_up_is_used_once_it_comes_up(tmp_short, bundle):
    port = free_port()
    daemon = Daemon(daemon_config(tmp_short, cloud={"endpoint": f"tcp://127.0.0.1:{port}",
                                                    "timeout_ms": 3000.0})).start()
    worker = None
    try:
        with Client(daemon.api.bound_endpoint, timeout_s=10) as c:
            assert c.models()[0]["partitions"] == ["mobile-only"]
            pinned = c.infer(FRAME, policy="cloud-only")                    # pinned: runs on the device
            assert pinned.served_by["placement"] == "device"
            assert c.infer(FRAME, policy="mdinference").label >= 0           # no KeyError: 'cloud-only'
            worker = CloudWorker(bundle, f"tcp://127.0.0.1:{port}").start()
            deadline = time.monotonic() + 60
            while "cloud-only" not in c.models()[0]["partitions"] and time.monotonic() < deadline:
                daemon.tick()                                                # adaptinfd's main loop does this
                time.sleep(0.2)
            partitions = c.models()[0]["partitions"]
            assert "cloud-only" in partitions and "RB1" in partitions
            assert daemon.profile.partition("cloud-only").cloud_ms > 0      # measured, not assumed
            assert c.infer(FRAME, policy="cloud-only").served_by["placement"] == "cloud"
            assert c.infer(FRAME, policy="mdinference").served_by["answered_by"] in ("cloud", "device")
            worker.stop()
            worker = None
            deadline = time.monotonic() + 30
            while "cloud-only" in c.models()[0]["partitions"] and time.monotonic() < deadline:
                time.sleep(0.2)
            assert c.models()[0]["partitions"] == ["mobile-only"]           # gone with the link
    finally:
        daemon.stop()
        if worker is not None:
            worker.stop()


# ---- 7: SIGHUP cannot switch to a policy the bundle lacks ----
def test_reload_refuses_a_policy_the_bundle_lacks_and_keeps_the_running_one(tmp_short):
    daemon = Daemon(daemon_config(tmp_short)).start()
    try:
        with pytest.raises(ConfigError, match=r"'mmnet' is not available with bundle 'glyphnet'"):
            daemon.reload(daemon_config(tmp_short, policy={"name": "mmnet"}))
        assert daemon.config.policy.name == "split"
        with Client(daemon.api.bound_endpoint) as c:
            assert c.infer(FRAME).served_by["policy"] == "split"
    finally:
        daemon.stop()


# ---- 8: shutdown answers every request it received ----
def test_stop_answers_every_request_already_sent(tmp_short, bundle):
    worker = CloudWorker(bundle, "tcp://127.0.0.1:*").start()
    daemon = Daemon(daemon_config(tmp_short, daemon={"workers": 2, "queue_size": 64,
                                                     "max_in_flight_per_client": 10_000},
                                  cloud={"endpoint": worker.bound_endpoint})).start()
    try:
        sock = dealer(daemon.api.bound_endpoint)
        replies = {}
        # queued, running, and waiting in the socket
        send_reading(sock, (infer_frames(i, policy="cloud-only") for i in range(300)), replies)
        stopper = threading.Thread(target=daemon.stop)
        stopper.start()
        send_reading(sock, (infer_frames(i) for i in range(300, 600)), replies)   # arriving while it drains
        collect(sock, replies=replies)
        stopper.join()
    finally:
        worker.stop()
    assert sorted(replies) == list(range(600)), daemon.stats.snapshot()["counters"]   # every one answered...
    assert all(len(codes) == 1 for codes in replies.values())         # ...once
    codes = {c for codes in replies.values() for c in codes}
    assert codes <= {"OK", "UNAVAILABLE", "RESOURCE_EXHAUSTED"} and "UNAVAILABLE" in codes


# ---- 10: config numbers are finite and in range; a bad ipc path is a start-up error ----
@pytest.mark.parametrize("sections, message", [
    ({"cloud": {"timeout_ms": float("nan")}}, r"\[cloud\]\.timeout_ms must be a finite number"),
    ({"device": {"emulate_slowdown": float("nan")}}, r"\[device\]\.emulate_slowdown must be a finite number"),
    ({"device": {"emulate_slowdown": float("inf")}}, r"\[device\]\.emulate_slowdown must be a finite number"),
    ({"daemon": {"workers": 10**12}}, r"\[daemon\]\.workers = 1000000000000 is above its maximum"),
    ({"daemon": {"queue_size": -1}}, r"\[daemon\]\.queue_size must be positive"),
])
def test_config_numbers_must_be_finite_and_in_range(sections, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(sections)


def test_an_ipc_path_under_a_file_is_a_startup_error(tmp_short):
    (tmp_short / "afile").write_text("")
    with pytest.raises(StartupError, match=r"cannot create its directory"):
        Daemon(daemon_config(tmp_short, daemon={"api_endpoint": f"ipc://{tmp_short}/afile/api.sock"})).start()


# ---- 11: SIGTERM during warm-up stops it there, before READY ----
def test_sigterm_during_warm_up_stops_the_daemon_before_ready(tmp_short):
    config = write_daemon_config(tmp_short / "d.toml", daemon={
        "api_endpoint": f"ipc://{tmp_short}/api.sock", "bundle": str(DEMO_BUNDLE), "state_dir": str(tmp_short),
        "warmup_runs": 10_000}, device={"emulate_slowdown": 20.0})   # a warm-up of minutes
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_short / "notify"))
    notify.settimeout(60)
    proc = subprocess.Popen([sys.executable, "-m", "adaptinf.daemon.main", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "NOTIFY_SOCKET": str(tmp_short / "notify")})
    try:
        while "warm-up" not in notify.recv(4096).decode():
            pass
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)   # minutes of warm-up left: it stopped, not finished
    finally:
        proc.kill()
        notify.close()
    assert proc.returncode == 0 and "READY" not in out and "Traceback" not in err
    assert "SIGTERM during start-up" in err


# ---- 12: one flooding client does not starve the others ----
def polite_client_codes(endpoint: str, frames: int = 20) -> list[str]:
    """A client that sends one frame at a time and waits for each answer: the codes it got."""
    codes = []
    with Client(endpoint, timeout_s=10) as c:
        for _ in range(frames):
            try:
                c.infer(FRAME, policy="cloud-only")
                codes.append("OK")
            except ApiFailure as exc:
                codes.append(exc.code)
    return codes


def test_a_flooding_client_gets_its_share_and_the_others_are_served(tmp_short, bundle):
    worker = CloudWorker(bundle, "tcp://127.0.0.1:*").start()
    daemon = Daemon(daemon_config(tmp_short, daemon={"workers": 2, "queue_size": 32,
                                                     "max_in_flight_per_client": 8},
                                  cloud={"endpoint": worker.bound_endpoint})).start()
    try:
        flood = dealer(daemon.api.bound_endpoint, b"flooder")
        flood.setsockopt(zmq.RCVHWM, 1)                       # and it never reads
        for i in range(400):
            flood.send_multipart(infer_frames(i, policy="cloud-only"))
        assert polite_client_codes(daemon.api.bound_endpoint) == ["OK"] * 20
        assert daemon.stats.snapshot()["codes"].get("RESOURCE_EXHAUSTED", 0) > 300   # the flooder's excess
        flood.close()
    finally:
        daemon.stop()
        worker.stop()


def test_reload_applies_live_settings_as_start_does_and_keeps_a_set_mode(tmp_short):
    daemon = Daemon(daemon_config(tmp_short)).start()
    try:
        with Client(daemon.api.bound_endpoint) as c:
            c.set_mode("power-saving")
        changes = daemon.reload(daemon_config(tmp_short, policy={"goal": "energy"}, cloud={"timeout_ms": 250.0}))
        assert daemon.policies["split"].default_goal == "energy" and daemon.executor.cloud_timeout_s == 0.25
        assert daemon.mode == "power-saving"                   # the file did not change the mode
        assert any(c.startswith("policy") for c in changes) and "cloud.timeout_ms" in changes
        daemon.reload(daemon_config(tmp_short, policy={"goal": "energy", "mode": "private"}))
        assert daemon.mode == "private"                        # now it did
    finally:
        daemon.stop()


def test_one_process_with_eight_sockets_that_never_read_does_not_starve_a_polite_client(tmp_short, bundle):
    """Issue 29 item 15: fairness was per socket, so one process with 8 DEALER sockets that
    never read left a polite client 0-2 of 20 OK. Each identity's share now shrinks as more
    of them hold frames, always keeping room for one more client."""
    worker = CloudWorker(bundle, "tcp://127.0.0.1:*").start()
    daemon = Daemon(daemon_config(tmp_short, daemon={"workers": 2, "queue_size": 32,
                                                     "max_in_flight_per_client": 16},
                                  cloud={"endpoint": worker.bound_endpoint})).start()
    floods = []
    try:
        for k in range(8):
            flood = dealer(daemon.api.bound_endpoint, f"flooder-{k}".encode())
            flood.setsockopt(zmq.RCVHWM, 1)                       # and it never reads
            floods.append(flood)
        for i in range(100):
            for flood in floods:
                flood.send_multipart(infer_frames(i, policy="cloud-only"))
        assert polite_client_codes(daemon.api.bound_endpoint) == ["OK"] * 20
    finally:
        for flood in floods:
            flood.close()
        daemon.stop()
        worker.stop()


def test_shares_shrink_with_the_clients_holding_frames_and_keep_room_for_one_more():
    from adaptinf.daemon.client_shares import ClientShares

    shares = ClientShares(limit=16, capacity=34)
    assert shares.share(b"a") == 16                       # alone: min(16, 34 // 2)
    held = {f"s{k}".encode(): 0 for k in range(8)}
    for _ in range(40):
        for peer in held:
            held[peer] += shares.take(peer)
    assert shares.total() <= 34 - shares.share(b"newcomer")      # the newcomer's share is free
    assert shares.take(b"newcomer")
    assert shares.total() <= 34                                  # never more than the capacity


def test_a_burst_of_new_clients_still_leaves_a_newcomer_room():
    """While the shares adjust (the first clients took large shares before the others came),
    a client already holding frames may not take the last of the capacity."""
    from adaptinf.daemon.client_shares import ClientShares

    shares = ClientShares(limit=16, capacity=34)
    for k in range(8):                         # each takes all it may at once, in turn
        while shares.take(f"burst-{k}".encode()):
            pass
    assert shares.total() < 34 and shares.take(b"polite")
    for k in range(8):
        while shares.in_flight(f"burst-{k}".encode()):
            shares.give_back(f"burst-{k}".encode())
    assert shares.total() == 1 and shares.clients() == 1