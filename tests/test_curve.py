"""CURVE on the cloud link: allowed devices served, unknown and revoked ones refused, ids not spoofable."""

import time

import numpy as np
import pytest

from adaptinf.programs.cli import main as cli_main
from adaptinf.client import Client
from adaptinf.cloud.curve_auth import generate_keypair
from adaptinf.cloud.worker import CloudWorker
from adaptinf.daemon.cloud_link import CloudError, CloudLink
from adaptinf.daemon.config import parse_config
from adaptinf.daemon.link_estimator import LinkEstimator
from adaptinf.daemon.service import Daemon

FRAME = np.zeros((1, 32, 32, 3), np.uint8)
INFER = {"op": "infer", "target": "full", "tensor": {"dtype": "uint8", "shape": [1, 32, 32, 3]}}


@pytest.fixture
def pki(tmp_path):
    for d in ("server", "allowed", "devices"):
        (tmp_path / d).mkdir()
    server_public, server_secret = generate_keypair(tmp_path / "server", "cloud")
    allowed = tmp_path / "allowed"
    devices = tmp_path / "devices"
    for name in ("dev-a", "dev-b"):
        public, _ = generate_keypair(devices, name)
        (allowed / public.name).write_bytes(public.read_bytes())
    generate_keypair(devices, "stranger")  # has keys, but is not in the allow-list
    return {"server_public": server_public, "server_secret": server_secret, "allowed": allowed,
            "devices": devices}


@pytest.fixture
def worker(bundle, pki):
    w = CloudWorker(bundle, "tcp://127.0.0.1:*", curve_secret_file=str(pki["server_secret"]),
                    allowed_devices_dir=str(pki["allowed"])).start()
    yield w
    w.stop()


def link(worker, pki, device_id, key_name=None):
    secret = pki["devices"] / f"{key_name or device_id}.key_secret"
    return CloudLink(worker.bound_endpoint, device_id, LinkEstimator(),
                     curve=(str(secret), str(pki["server_public"]))).start()


def wait_up(l, timeout_s=3.0):
    deadline = time.monotonic() + timeout_s
    while not l.up and time.monotonic() < deadline:
        time.sleep(0.02)
    return l.up


def test_allowed_device_is_served_over_curve(worker, pki):
    l = link(worker, pki, "dev-a")
    try:
        assert wait_up(l)
        reply = l.call(dict(INFER), FRAME, 5.0, upload_bytes=FRAME.nbytes).wait(5.0)
        assert reply.header["ok"] and len(np.frombuffer(reply.payload, np.float32)) == 16
    finally:
        l.stop()


def test_unknown_key_never_gets_a_link(worker, pki):
    l = link(worker, pki, "stranger")
    try:
        assert not wait_up(l, 1.5)  # the ZAP handler refused it: nothing is ever delivered
        with pytest.raises(CloudError, match="UNAVAILABLE"):
            l.call(dict(INFER), FRAME, 1.0).wait(1.0)
    finally:
        l.stop()
    assert worker.counters["requests"] == 0


def test_revoked_device_is_refused_at_once(worker, pki):
    l = link(worker, pki, "dev-b")
    try:
        assert wait_up(l)
        assert l.call(dict(INFER), FRAME, 5.0).wait(5.0).header["ok"]
        (pki["allowed"] / "dev-b.key").unlink()          # revoke while connected
        with pytest.raises(CloudError, match="DEADLINE_EXCEEDED"):
            l.call(dict(INFER), FRAME, 0.5).wait(0.6)     # dropped by the worker: the device falls back
    finally:
        l.stop()
    assert worker.counters["refused_devices"] >= 1


def test_a_device_cannot_claim_another_devices_id(worker, pki):
    l = link(worker, pki, "dev-a", key_name="dev-b")    # dev-b's (allowed) key, dev-a's routing id
    try:
        assert not wait_up(l, 1.5)                         # every message, heartbeats too, is dropped
        with pytest.raises(CloudError):
            l.call(dict(INFER), FRAME, 0.5).wait(0.6)
    finally:
        l.stop()
    assert worker.counters["refused_devices"] >= 1 and worker.counters["requests"] == 0


def test_daemon_over_curve_and_keys_cli(bundle, worker, pki, tmp_short, glyph_frames, capsys):
    (tmp_short / "k").mkdir()
    assert cli_main(["keys", "generate", "dev-c", "--dir", str(tmp_short / "k")]) == 0
    assert "dev-c.key_secret" in capsys.readouterr().out
    config = parse_config({
        "daemon": {"api_endpoint": f"ipc://{tmp_short}/a.sock", "bundle": str(bundle.root),
                   "state_dir": str(tmp_short), "warmup_runs": 3},
        "cloud": {"endpoint": worker.bound_endpoint, "device_id": "dev-a",
                  "curve_secret_key": str(pki["devices"] / "dev-a.key_secret"),
                  "curve_server_key": str(pki["server_public"])}})
    daemon = Daemon(config).start()
    try:
        with Client(f"ipc://{tmp_short}/a.sock") as c:
            r = c.infer(glyph_frames.images[:1], policy="cloud-only")
    finally:
        daemon.stop()
    assert r.served_by["placement"] == "cloud" and not r.served_by["fallback"]


def test_keys_generate_keeps_an_existing_key_and_refuses_a_missing_directory(tmp_path, capsys):
    from adaptinf.programs.cli import main

    assert main(["keys", "generate", "dev-a", "--dir", str(tmp_path)]) == 0
    secret = tmp_path / "dev-a.key_secret"
    first = secret.read_bytes()
    assert secret.stat().st_mode & 0o777 == 0o600
    capsys.readouterr()
    assert main(["keys", "generate", "dev-a", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "exists" in err and "--force" in err and "Traceback" not in err
    assert secret.read_bytes() == first                                   # untouched
    assert main(["keys", "generate", "dev-a", "--dir", str(tmp_path), "--force"]) == 0
    assert secret.read_bytes() != first
    assert main(["keys", "generate", "x", "--dir", str(tmp_path / "nope")]) == 2
    assert "no such directory" in capsys.readouterr().err and not (tmp_path / "nope").exists()


def test_a_dead_authenticator_ends_the_worker_for_its_supervisor(worker):
    """No device can connect once pyzmq's authenticator thread is gone: the worker must not live
    on half-dead; it fails, and adaptinf-cloud exits non-zero for systemd to restart it."""
    worker._authenticator.stop()            # its thread ends, as a crash would end it
    assert worker.failed.wait(10)
    assert "authenticator" in str(worker.failure)
