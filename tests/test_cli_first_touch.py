"""What a user types first: every client subcommand against a real adaptinfd, and the inputs
that used to end in a traceback or pass unchecked (issue 30 items 1-3)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from adaptinf.profile import save_profile
from conftest import DEMO_BUNDLE, serve_bundle
from test_split_policy import PROFILE


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "adaptinf", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    api, service = serve_bundle(tmp_path_factory, DEMO_BUNDLE, "cli")
    yield api
    service.stop()


@pytest.mark.slow
@pytest.mark.parametrize("command", [["status"], ["status", "--json"], ["stats"], ["stats", "--json"], ["models"],
                                     ["health"], ["hello"], ["set-mode", "power-saving"], ["set-mode", "normal"]])
def test_every_client_subcommand_answers_against_a_real_daemon(endpoint, command):
    done = cli(*command, "--endpoint", endpoint)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    if command == ["models"]:
        (model,) = json.loads(done.stdout)
        assert model["name"] == "glyphnet" and model["outputs"][0]["name"] == "logits"
    if "--json" in command or command[0] in ("health", "hello", "set-mode"):
        json.loads(done.stdout)


@pytest.mark.parametrize("args, says", [
    (["keys", "generate", "../../etc/x", "--dir", "."], "a key name is a name, not a path"),
    (["keys", "generate", "", "--dir", "."], "a key name is a name, not a path"),
    (["keys", "generate", "a/b", "--dir", "."], "a key name is a name, not a path"),
    (["mcu", "selftest", "--port", "/dev/null", "--model", "/nonexistent"], "cannot read dsnn_system.aims"),
    (["sim", "--sla-ms", "abc"], "--sla-ms takes comma-separated milliseconds"),
    (["sim", "--sla-ms", "-5"], "--sla-ms values must be positive"),
    (["status", "--watch", "-1"], "expected a positive number of seconds"),
    (["status", "--watch", "nan"], "expected a positive number of seconds"),
    (["stats", "--timeout", "nan"], "expected a positive number of seconds"),
    (["set-mode", "normal", "--timeout", "inf"], "expected a positive number of seconds"),
    (["build", "duo", "--bundle", "."], "not a bundle (no manifest.json)"),
    (["build", "mmnet", "--bundle", "."], "not a bundle (no manifest.json)"),
    (["build", "little", "--bundle", "."], "not a bundle (no manifest.json)"),
])
def test_bad_input_is_one_line_and_exit_2(args, says, tmp_path):
    done = subprocess.run([sys.executable, "-m", "adaptinf", *args], capture_output=True, text=True, cwd=tmp_path,
                          timeout=60)
    assert done.returncode == 2 and says in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not list(tmp_path.iterdir())                          # nothing written anywhere near


def test_plan_refuses_impossible_times_and_says_what_bps_means(tmp_path):
    save_profile(PROFILE, tmp_path / "p.json")
    for option in ("--rtt-ms", "--sla-ms"):
        done = cli("plan", "--profile", str(tmp_path / "p.json"), "--uplink", "5mbit", option, "-3")
        assert done.returncode == 2 and f"{option} must be a finite number" in done.stderr
    done = cli("plan", "--profile", str(tmp_path / "p.json"), "--uplink", "5Mbps")
    assert done.returncode == 0 and "is 40 Mbit/s" in done.stderr and "5mbit" in done.stderr
    assert "note" not in cli("plan", "--profile", str(tmp_path / "p.json"), "--uplink", "5mbit").stderr


def test_a_malformed_endpoint_is_one_line():
    done = cli("status", "--endpoint", "bogus://x")
    assert done.returncode == 1 and "cannot connect to 'bogus://x'" in done.stderr and "Traceback" not in done.stderr
