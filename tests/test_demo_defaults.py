"""The demo's defaults are what the README runs: the shipped traces, 5 fps, and the comparison
with the best single configuration; the shipped traces are what their generator writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from adaptinf.programs import demo
from adaptinf.rig.synthetic_trace import PRESETS, capacity_steps, opportunities_ms, per_second_stats
from adaptinf.rig.uplink_trace import parse_trace_spec

REPO = Path(__file__).resolve().parents[1]


def test_shipped_traces_are_what_the_generator_writes():
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "make_traces.py"), "--check"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_default_trace_windows_parse_and_move():
    for spec in demo.DEFAULT_TRACES:
        trace = parse_trace_spec(spec)
        assert trace.duration_s == pytest.approx(4.0)
        _, cap = trace.capacity_bps(1.0)
        assert cap.max() > 2 * max(cap.min(), 1.0), f"{spec}: the window should move"


def test_cli_defaults_are_the_readme_run():
    args = demo.build_parser().parse_args([])
    assert args.fps == 5.0 and args.uplink_trace is None
    assert demo.DEMO_BUNDLE.is_dir() and (demo.DEMO_BUNDLE / "manifest.json").is_file()


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_synthetic_trace_keeps_its_mean_and_its_outages(name):
    model = PRESETS[name]
    rates = capacity_steps(model)
    assert rates.mean() == pytest.approx(model.mean_bps)
    times = opportunities_ms(rates)
    assert np.all(np.diff(times) >= 0) and times[0] >= 1 and times[-1] == model.seconds * 1000
    stats = per_second_stats(times)
    assert stats["mean_bps"] == pytest.approx(model.mean_bps, rel=0.01)
    assert stats["p10_bps"] < stats["p50_bps"] < stats["p90_bps"]


def _run(policy, latencies, energy=0.1):
    return {"policy": policy, "frames": [
        {"latency_ms": lat, "energy_j": energy, "upload_bytes": 0, "correct": True, "fallback": False,
         "deadline_missed": False, "partition": policy, "code": "OK", "answers": 1} for lat in latencies]}


def test_best_single_configuration_is_the_best_over_all_links():
    # RB1 wins link a, mobile-only link b; over both, mobile-only (100) beats RB1 (50+300)/2
    links = [{"name": "a", "runs": [_run("adaptive-latency", [55] * 4), _run("adaptive-energy", [55] * 4),
                                    _run("mobile-only", [100] * 4), _run("RB1", [50] * 4)]},
             {"name": "b", "runs": [_run("adaptive-latency", [100] * 4), _run("adaptive-energy", [100] * 4),
                                    _run("mobile-only", [100] * 4), _run("RB1", [300] * 4)]}]
    single = demo.best_single(links)
    assert single["latency"] == "mobile-only"
    assert single["S_ms"] == pytest.approx(100.0) and single["A_ms"] == pytest.approx(77.5)
    assert single["per_link_ms"] == {"a": 100.0, "b": 100.0}
    lines = []
    demo.report_overall([{"link": "a", "best_static_latency": "RB1", "A_ms": 55.0, "S_ms": 50.0},
                         {"link": "b", "best_static_latency": "mobile-only", "A_ms": 100.0, "S_ms": 100.0}],
                        single, out=lines.append)
    text = "\n".join(lines)
    assert "mobile-only" in text and "0.775" in text and "1.100" in text


def test_selftest_inputs_need_no_sklearn_for_a_built_model(monkeypatch):
    from adaptinf.drivers.mcu_model import McuSystem, quantize_net
    from adaptinf.programs.mcu_selftest import test_inputs

    rng = np.random.default_rng(1)
    net = quantize_net([rng.normal(size=(16, 100)), rng.normal(size=(10, 16))], [np.zeros(16), np.zeros(10)],
                       rng.random((8, 100)))
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)     # a device install: no sklearn
    x, y, what = test_inputs(McuSystem((net,), (tuple(range(10)),)), 7)
    assert x.shape == (7, 100) and x.dtype == np.float32 and y is None and "random" in what


def test_best_single_only_weighs_partitions_every_link_ran():
    links = [{"name": "a", "runs": [_run("adaptive-latency", [60] * 2), _run("adaptive-energy", [60] * 2),
                                    _run("mobile-only", [100] * 2), _run("RB1", [10] * 2)]},
             {"name": "b", "runs": [_run("adaptive-latency", [90] * 2), _run("adaptive-energy", [90] * 2),
                                    _run("mobile-only", [100] * 2)]}]
    assert demo.best_single(links)["latency"] == "mobile-only"     # RB1 never ran on b
