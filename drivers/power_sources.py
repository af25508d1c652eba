"""Power sources the daemon can read: one `read_power_w()` each, SI units, errors as SensorError.

- Ina226Source: the INA226 driver on an I2C bus (smbus2), calibration re-checked.
- HwmonIna2xxSource: the kernel ina2xx driver's hwmon files (power1_input in uW).
- Ina3221Source: Jetson on-board INA3221 rails, JetPack 5+ hwmon layout (inN_label,
  inN_input mV, currN_input mA; "NC" labels and the sum channel skipped; the hwmon
  index varies, so it is globbed) or JetPack 4 iio layout (rail_name_N,
  in_powerN_input mW). The board total is VDD_IN / POM_5V_IN when present, else the
  sum of the rails.
- JtopSource: jetson-stats' jtop, where it is installed.
Every path is under an injected sysfs root, so a fake tree in a temp dir drives them.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from adaptinf.drivers.ina226 import INA226, SensorError

TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")
RECHECK_CALIBRATION_EVERY = 16   # reads between checks that the chip still holds CAL


class PowerSource(Protocol):
    name: str

    def read_power_w(self) -> float: ...


def _read_number(path: Path) -> float:
    try:
        return float(path.read_text().strip())
    except (OSError, ValueError) as exc:
        raise SensorError(f"cannot read {path}: {exc}") from exc


class Ina226Source:
    def __init__(self, device: INA226):
        self.device = device
        self.name = f"ina226@0x{device.address:02x}"
        self._reads = 0

    def read_power_w(self) -> float:
        self._reads += 1
        if self._reads % RECHECK_CALIBRATION_EVERY == 0:
            self.device.ensure_calibrated()
        reading = self.device.read()
        if reading.overflow:
            raise SensorError(f"{self.name}: current/power overflow (OVF): the shunt or Current_LSB is too small")
        return reading.power_w


class HwmonIna2xxSource:
    def __init__(self, hwmon_dir: Path):
        self.dir = Path(hwmon_dir)
        self.name = f"hwmon:{_read_name(self.dir)}:{self.dir.name}"

    def read_power_w(self) -> float:
        return _read_number(self.dir / "power1_input") / 1e6  # uW


@dataclass(frozen=True)
class Rail:
    label: str
    voltage_file: Path | None
    current_file: Path | None
    power_file: Path | None = None  # JetPack 4 iio: mW


class Ina3221Source:
    def __init__(self, rails: list[Rail], layout: str):
        if not rails:
            raise SensorError("no INA3221 rails found")
        self.rails = rails
        self.layout = layout
        total = [r for r in rails if r.label in TOTAL_RAILS]
        self._measured = total[:1] or rails
        self.name = f"ina3221:{layout}:{'+'.join(r.label for r in self._measured)}"

    def rail_power_w(self, rail: Rail) -> float:
        if rail.power_file is not None:
            return _read_number(rail.power_file) / 1e3
        return _read_number(rail.voltage_file) * _read_number(rail.current_file) / 1e6  # mV x mA

    def read_power_w(self) -> float:
        return sum(self.rail_power_w(r) for r in self._measured)


class JtopSource:
    """jetson-stats (AGPL; used as an installed library, never copied from)."""

    name = "jtop"

    def __init__(self):
        from jtop import jtop  # optional: only where jetson-stats is installed

        self._jetson = jtop()
        self._jetson.start()

    def read_power_w(self) -> float:
        try:
            return float(self._jetson.power["tot"]["power"]) / 1e3  # mW
        except (KeyError, TypeError, ValueError) as exc:
            raise SensorError(f"jtop gave no total power: {exc}") from exc


def _read_name(hwmon_dir: Path) -> str:
    try:
        return (hwmon_dir / "name").read_text().strip()
    except OSError:
        return "?"


def find_ina2xx_hwmon(root: Path) -> list[HwmonIna2xxSource]:
    out = []
    for d in sorted(glob.glob(str(root / "sys/class/hwmon/hwmon*"))):
        if _read_name(Path(d)) in ("ina226", "ina219", "ina230", "ina231", "ina260") and \
                os.path.exists(os.path.join(d, "power1_input")):
            out.append(HwmonIna2xxSource(Path(d)))
    return out


def find_ina3221(root: Path) -> list[Ina3221Source]:
    sources = []
    # JetPack 5+: /sys/bus/i2c/drivers/ina3221/<bus-addr>/hwmon/hwmon<N>/ (N varies)
    for d in sorted(glob.glob(str(root / "sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*"))):
        rails = []
        for label_file in sorted(glob.glob(os.path.join(d, "in*_label"))):
            channel = Path(label_file).name[2:-len("_label")]
            label = Path(label_file).read_text().strip()
            if label.upper() == "NC" or channel == "7" or "sum" in label.lower():
                continue  # not connected, or the summing channel (would double count)
            voltage, current = Path(d) / f"in{channel}_input", Path(d) / f"curr{channel}_input"
            if voltage.exists() and current.exists():
                rails.append(Rail(label, voltage, current))
        if rails:
            sources.append(Ina3221Source(rails, "hwmon"))
    # JetPack 4: /sys/bus/i2c/drivers/ina3221x/<bus-addr>/iio:device<K>/
    for d in sorted(glob.glob(str(root / "sys/bus/i2c/drivers/ina3221x/*/iio:device*"))):
        rails = []
        for name_file in sorted(glob.glob(os.path.join(d, "rail_name_*"))):
            channel = Path(name_file).name[len("rail_name_"):]
            label = Path(name_file).read_text().strip()
            power = Path(d) / f"in_power{channel}_input"
            if label.upper() != "NC" and power.exists():
                rails.append(Rail(label, None, None, power))
        if rails:
            sources.append(Ina3221Source(rails, "iio"))
    return sources


def discover(root: Path | str = "/", use_jtop: bool = True) -> list[PowerSource]:
    """Every power source visible under the sysfs root, best first (board total before single shunts)."""
    root = Path(root)
    found: list[PowerSource] = [*find_ina3221(root), *find_ina2xx_hwmon(root)]
    if use_jtop and not found:
        try:
            found.append(JtopSource())
        except Exception:  # jtop missing, or its service not running
            pass
    return found


def open_ina226(bus_number: int, address: int, shunt_ohms: float, max_current_a: float,
                averaging: int = 16) -> Ina226Source:
    """An INA226 on /dev/i2c-<bus_number> (smbus2), configured and calibrated."""
    from smbus2 import SMBus

    try:
        bus = SMBus(bus_number)
    except OSError as exc:
        raise SensorError(f"cannot open /dev/i2c-{bus_number}: {exc}") from exc
    device = INA226(bus, address)
    device.configure(averaging=averaging)
    device.calibrate(shunt_ohms, max_current_a)
    return Ina226Source(device)


def open_power_source(config) -> PowerSource:
    """The source a [power] config section names; SensorError when there is none."""
    kind = config.source
    if kind == "ina226":
        return open_ina226(config.i2c_bus, config.address, config.shunt_ohms, config.max_current_a)
    root = Path(config.sysfs_root)
    if kind == "jtop":
        try:
            return JtopSource()
        except Exception as exc:
            raise SensorError(f"jtop unavailable: {exc}") from exc
    candidates = {"hwmon": find_ina2xx_hwmon(root), "ina3221": find_ina3221(root)}.get(kind) or \
        (discover(root) if kind == "auto" else [])
    if not candidates:
        raise SensorError(f"no {kind} power sensor under {root}")
    return candidates[0]
