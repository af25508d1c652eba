"""Power sources over fake sysfs trees, energy integration, degradation, and the daemon wired to a sensor."""

import math
import shutil

import numpy as np
import pytest

from adaptinf.client import Client
from adaptinf.daemon.config import parse_config
from adaptinf.daemon.power_monitor import PowerMonitor
from adaptinf.daemon.service import Daemon
from adaptinf.drivers.ina226 import INA226, SensorError
from adaptinf.drivers.power_sources import Ina226Source, discover, find_ina3221, open_power_source
from adaptinf.rig import hwmon_tree
from adaptinf.rig.ina226_emulator import Ina226Emulator


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_ina2xx_hwmon_source(tmp_path):
    d = hwmon_tree.ina2xx_hwmon(tmp_path, index=4, bus_mv=12000, current_ma=1500)
    (sources,) = [discover(tmp_path, use_jtop=False)]
    assert len(sources) == 1 and "ina226" in sources[0].name
    assert sources[0].read_power_w() == pytest.approx(18.0)
    hwmon_tree.set_ina2xx_power(d, 7.5)
    assert sources[0].read_power_w() == pytest.approx(7.5)


def test_ina3221_jetpack5_uses_the_board_total_and_skips_nc_and_sum(tmp_path):
    hwmon_tree.ina3221_jp5(tmp_path, {"VDD_IN": (5000, 1200), "VDD_CPU_GPU_CV": (5000, 400),
                                      "VDD_SOC": (5000, 300)}, hwmon_index=1)
    (source,) = find_ina3221(tmp_path)
    assert [r.label for r in source.rails] == ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"]
    assert source.read_power_w() == pytest.approx(6.0)  # VDD_IN only: the rails are inside it


def test_ina3221_without_a_total_sums_the_rails(tmp_path):
    hwmon_tree.ina3221_jp5(tmp_path, {"GPU": (5000, 400), "CPU": (5000, 200)})
    assert find_ina3221(tmp_path)[0].read_power_w() == pytest.approx(3.0)


def test_ina3221_jetpack4_iio_layout(tmp_path):
    hwmon_tree.ina3221_jp4(tmp_path, {"VDD_IN": 4200, "VDD_SYS_GPU": 1500, "NC": 0})
    (source,) = find_ina3221(tmp_path)
    assert source.layout == "iio" and source.read_power_w() == pytest.approx(4.2)


def test_no_sensor_found_is_a_clear_error(tmp_path):
    config = parse_config({"power": {"source": "hwmon", "sysfs_root": str(tmp_path)}}).power
    with pytest.raises(SensorError, match="no hwmon power sensor"):
        open_power_source(config)


def test_energy_of_a_known_power_trace_within_one_percent():
    """P(t) = 10 + 5 sin(2 pi t): 10 J per second; a 100 Hz sampler integrates it."""
    clock = Clock()
    emu = Ina226Emulator(lambda t: ((10 + 5 * math.sin(2 * math.pi * t)) / 12.0 * 0.002, 12.0), clock)
    dev = INA226(emu, clock=clock)
    dev.configure(averaging=1)
    dev.calibrate(0.002, 10.0)
    monitor = PowerMonitor(Ina226Source(dev), rate_hz=100, clock=clock)
    start = clock.t
    for _ in range(301):
        monitor.sample_once()
        clock.t += 0.01
    expected = 10 * 3.0 + 5 * (1 - math.cos(2 * math.pi * 3.0)) / (2 * math.pi)   # exact integral over 3 s
    measured = monitor.energy_between(start, start + 3.0)
    assert measured == pytest.approx(expected, rel=0.01)
    # a window inside the series is interpolated: one second from t=0.5 s
    expected_window = 10 + 5 * (math.cos(math.pi) - math.cos(3 * math.pi)) / (2 * math.pi)
    assert monitor.energy_between(start + 0.5, start + 1.5) == pytest.approx(expected_window, rel=0.01)


def test_idle_baseline_comes_from_samples_between_frames():
    clock = Clock()
    power = {"w": 2.0}

    class Source:
        name = "test"

        def read_power_w(self):
            return power["w"]

    monitor = PowerMonitor(Source(), rate_hz=100, clock=clock)
    for _ in range(200):
        monitor.sample_once()
        clock.t += 0.01
    monitor.frame_started()
    power["w"] = 9.0
    for _ in range(50):
        monitor.sample_once()
        clock.t += 0.01
    monitor.frame_finished()
    assert monitor.idle_power_w == pytest.approx(2.0)  # busy samples never enter the baseline


def test_a_sensor_that_dies_degrades_and_comes_back(tmp_path):
    d = hwmon_tree.ina2xx_hwmon(tmp_path, bus_mv=12000, current_ma=500)
    (source,) = discover(tmp_path, use_jtop=False)
    clock = Clock()
    monitor = PowerMonitor(source, rate_hz=100, clock=clock)
    assert monitor.sample_once() and monitor.healthy
    backup = tmp_path / "saved"
    shutil.move(str(d), str(backup))          # the sensor vanishes
    clock.t += 0.01
    assert not monitor.sample_once()
    assert not monitor.healthy and monitor.errors == 1 and "cannot read" in monitor.last_error
    assert monitor.energy_between(clock.t - 0.01, clock.t) is None  # nothing measured: the model answers
    shutil.move(str(backup), str(d))          # and comes back
    clock.t += 0.01
    assert monitor.sample_once() and monitor.healthy


def test_daemon_reports_measured_energy_and_plans_with_measured_power(bundle, tmp_short, glyph_frames):
    import time

    emu = Ina226Emulator(lambda t: (7.0 / 12.0 * 0.002, 12.0), time.monotonic)   # a steady 7 W board
    dev = INA226(emu)
    dev.configure(averaging=1)
    dev.calibrate(0.002, 10.0)
    config = parse_config({"daemon": {"api_endpoint": f"ipc://{tmp_short}/a.sock", "bundle": str(bundle.root),
                                      "state_dir": str(tmp_short), "warmup_runs": 3},
                           "device": {"compute_power_w": 5.0}, "power": {"rate_hz": 200.0}})
    daemon = Daemon(config, power_source=Ina226Source(dev)).start()
    try:
        with Client(f"ipc://{tmp_short}/a.sock") as c:
            time.sleep(0.1)
            results = [c.infer(glyph_frames.images[i:i + 1]) for i in range(10)]
            power = c.status()["power"]
            emu.nack = True                      # the sensor is pulled mid-stream
            time.sleep(0.1)
            degraded = c.infer(glyph_frames.images[:1])
            power_after = c.status()["power"]
    finally:
        daemon.stop()
    r = results[-1]
    assert r.energy_source == "sensor:ina226@0x40"
    duration_s = (r.latency_ms["total"] - r.latency_ms["queue"]) / 1e3
    assert r.energy_j == pytest.approx(7.0 * duration_s, rel=0.3)   # 7 W over the frame's run
    assert power["healthy"] and power["power_w"] == pytest.approx(7.0, rel=0.01)
    assert power["active_power_w"] == pytest.approx(7.0, rel=0.01)  # what the energy goal plans with
    assert daemon.telemetry.snapshot(daemon.profile).device_power_w is None  # unhealthy now: the profile's
    assert degraded.energy_source == "model" and power_after["healthy"] is False
    assert power_after["source"] == "model (sensor failing)" and power_after["errors"] >= 1
    assert np.isfinite(degraded.energy_j)


def test_power_cli_finds_sensors_and_prints_samples(tmp_path, capsys):
    from adaptinf.programs.cli import main

    hwmon_tree.ina3221_jp5(tmp_path, {"VDD_IN": (5000, 1400), "VDD_GPU": (5000, 600)})
    assert main(["power", "--sysfs-root", f"{tmp_path}/", "--count", "2", "--rate", "50"]) == 0
    out = capsys.readouterr().out
    assert "found ina3221:hwmon:VDD_IN" in out and out.count("7.000 W") == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["power", "--sysfs-root", f"{empty}/", "--count", "1"]) == 1
