"""Fake sysfs trees in a temp dir, laid out as the Linux ina2xx / ina3221 drivers lay them out.

Values are plain files a test can rewrite (a load step) or delete (a sensor that
vanished); the power sources read them exactly as they read /sys.
"""

from __future__ import annotations

from pathlib import Path


def _write(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{value}\n")


def ina2xx_hwmon(root: Path, index: int = 2, bus_mv: int = 12000, current_ma: int = 500,
                 shunt_uohm: int = 2000) -> Path:
    """An INA226 bound to the kernel ina2xx driver: /sys/class/hwmon/hwmon<index>/."""
    d = Path(root) / f"sys/class/hwmon/hwmon{index}"
    _write(d / "name", "ina226")
    _write(d / "in0_input", round(current_ma * shunt_uohm / 1e6))   # shunt mV (whole mV: coarse)
    _write(d / "in1_input", bus_mv)
    _write(d / "curr1_input", current_ma)
    _write(d / "power1_input", bus_mv * current_ma)                 # mV x mA = uW
    _write(d / "shunt_resistor", shunt_uohm)
    _write(d / "update_interval", 2)
    return d


def set_ina2xx_power(hwmon_dir: Path, power_w: float) -> None:
    _write(Path(hwmon_dir) / "power1_input", int(power_w * 1e6))


def ina3221_jp5(root: Path, rails: dict[str, tuple[int, int]], hwmon_index: int = 3,
                bus_addr: str = "1-0040") -> Path:
    """JetPack 5+ hwmon layout; rails {label: (mV, mA)} on channels 1..; adds an NC and a sum channel."""
    d = Path(root) / f"sys/bus/i2c/drivers/ina3221/{bus_addr}/hwmon/hwmon{hwmon_index}"
    _write(d / "name", "ina3221")
    channel = 0
    for channel, (label, (mv, ma)) in enumerate(rails.items(), start=1):
        _write(d / f"in{channel}_label", label)
        _write(d / f"in{channel}_input", mv)
        _write(d / f"curr{channel}_input", ma)
    _write(d / f"in{channel + 1}_label", "NC")
    _write(d / f"in{channel + 1}_input", 0)
    _write(d / f"curr{channel + 1}_input", 0)
    _write(d / "in7_label", "sum of shunt voltages")
    _write(d / "in7_input", 999)
    _write(d / "curr7_input", 999)
    return d


def ina3221_jp4(root: Path, rails: dict[str, int], bus_addr: str = "0-0040", device: int = 0) -> Path:
    """JetPack 4 iio layout: rails {name: mW}."""
    d = Path(root) / f"sys/bus/i2c/drivers/ina3221x/{bus_addr}/iio:device{device}"
    for channel, (label, mw) in enumerate(rails.items()):
        _write(d / f"rail_name_{channel}", label)
        _write(d / f"in_power{channel}_input", mw)
    return d
