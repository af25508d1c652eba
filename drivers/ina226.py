"""TI INA226 current/power monitor over SMBus (datasheet SBOS547B).

The driver talks to any smbus2-compatible bus object (`read_word_data(addr, reg)`,
`write_word_data(addr, reg, value)`): smbus2.SMBus on a board, the register-level
emulator (adaptinf.rig.ina226_emulator) in tests. SMBus words are little-endian on
the wire while the chip sends its registers MSB first, so the one byte swap lives in
`_read` / `_write` and nowhere else. All values are SI: V, A, W, s.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import Callable, Protocol

# Register map (datasheet Table 7-1)
REG_CONFIG = 0x00         # power-on 0x4127
REG_SHUNT_VOLTAGE = 0x01  # signed, LSB 2.5 uV
REG_BUS_VOLTAGE = 0x02    # LSB 1.25 mV
REG_POWER = 0x03          # LSB 25 x Current_LSB
REG_CURRENT = 0x04        # signed, LSB Current_LSB
REG_CALIBRATION = 0x05
REG_MASK_ENABLE = 0x06
REG_ALERT_LIMIT = 0x07
REG_MANUFACTURER_ID = 0xFE
REG_DIE_ID = 0xFF

MANUFACTURER_ID = 0x5449  # "TI"
DIE_ID = 0x2260
CONFIG_RESET_VALUE = 0x4127

SHUNT_LSB_V = 2.5e-6
BUS_LSB_V = 1.25e-3
POWER_LSB_FACTOR = 25     # Power_LSB = 25 x Current_LSB (not pi_ina226's 25.2)
CAL_CONSTANT = 0.00512    # CAL = 0.00512 / (Current_LSB x R_shunt)

# Config register fields: (bit position, width)
CONFIG_RST = (15, 1)
CONFIG_AVG = (9, 3)
CONFIG_VBUSCT = (6, 3)
CONFIG_VSHCT = (3, 3)
CONFIG_MODE = (0, 3)

# Mask/Enable bits
MASK_SOL, MASK_SUL, MASK_BOL, MASK_BUL, MASK_POL = 1 << 15, 1 << 14, 1 << 13, 1 << 12, 1 << 11
MASK_CNVR = 1 << 10
MASK_AFF = 1 << 4
MASK_CVRF = 1 << 3
MASK_OVF = 1 << 2
MASK_APOL = 1 << 1
MASK_LEN = 1 << 0


class Averaging(enum.IntEnum):
    """AVG field codes -> number of samples averaged."""

    AVG_1 = 0
    AVG_4 = 1
    AVG_16 = 2
    AVG_64 = 3
    AVG_128 = 4
    AVG_256 = 5
    AVG_512 = 6
    AVG_1024 = 7

    @property
    def samples(self) -> int:
        return (1, 4, 16, 64, 128, 256, 512, 1024)[self.value]

    @classmethod
    def of(cls, samples: int) -> "Averaging":
        for a in cls:
            if a.samples == samples:
                return a
        raise ValueError(f"averaging must be one of 1, 4, 16, 64, 128, 256, 512, 1024; got {samples}")


class ConversionTime(enum.IntEnum):
    """VBUSCT / VSHCT field codes."""

    CT_140_US = 0
    CT_204_US = 1
    CT_332_US = 2
    CT_588_US = 3
    CT_1100_US = 4
    CT_2116_US = 5
    CT_4156_US = 6
    CT_8244_US = 7

    @property
    def seconds(self) -> float:
        return (140e-6, 204e-6, 332e-6, 588e-6, 1.1e-3, 2.116e-3, 4.156e-3, 8.244e-3)[self.value]


class Mode(enum.IntEnum):
    POWER_DOWN = 0
    SHUNT_TRIGGERED = 1
    BUS_TRIGGERED = 2
    SHUNT_BUS_TRIGGERED = 3
    POWER_DOWN_2 = 4
    SHUNT_CONTINUOUS = 5
    BUS_CONTINUOUS = 6
    SHUNT_BUS_CONTINUOUS = 7


class AlertFunction(enum.IntEnum):
    """Which comparison drives the ALERT pin (Mask/Enable bits 15..11)."""

    SHUNT_OVER = 15
    SHUNT_UNDER = 14
    BUS_OVER = 13
    BUS_UNDER = 12
    POWER_OVER = 11


class SMBusLike(Protocol):
    def read_word_data(self, i2c_addr: int, register: int) -> int: ...
    def write_word_data(self, i2c_addr: int, register: int, value: int) -> None: ...


class SensorError(OSError):
    """The sensor is missing, not answering (NACK) or not what it should be."""


@dataclass(frozen=True)
class Reading:
    bus_voltage_v: float
    shunt_voltage_v: float
    current_a: float
    power_w: float
    overflow: bool   # the chip's current/power arithmetic overflowed: current and power are invalid


def _field(value: int, spec: tuple[int, int]) -> int:
    shift, width = spec
    return (value >> shift) & ((1 << width) - 1)


def _set_field(value: int, spec: tuple[int, int], field: int) -> int:
    shift, width = spec
    mask = ((1 << width) - 1) << shift
    return (value & ~mask) | ((field << shift) & mask)


def _signed16(raw: int) -> int:
    return raw - 0x10000 if raw & 0x8000 else raw


class INA226:
    def __init__(self, bus: SMBusLike, address: int = 0x40, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.bus = bus
        self.address = address
        self._clock = clock
        self._sleep = sleep
        self.current_lsb_a: float | None = None
        self.calibration: int | None = None
        self.recalibrations = 0
        manufacturer, die = self._read(REG_MANUFACTURER_ID), self._read(REG_DIE_ID)
        if manufacturer != MANUFACTURER_ID or die != DIE_ID:
            raise SensorError(f"no INA226 at 0x{address:02x}: manufacturer ID 0x{manufacturer:04x} (expected "
                              f"0x{MANUFACTURER_ID:04x}), die ID 0x{die:04x} (expected 0x{DIE_ID:04x}) - "
                              "check the wiring and the A0/A1 address pins")

    # ---- the one place that knows the chip is big-endian -----------------------------
    def _read(self, register: int) -> int:
        try:
            word = self.bus.read_word_data(self.address, register)
        except OSError as exc:
            raise SensorError(f"INA226 at 0x{self.address:02x} did not answer reading register "
                              f"0x{register:02x}: {exc}") from exc
        return ((word & 0xFF) << 8) | (word >> 8)

    def _write(self, register: int, value: int) -> None:
        value &= 0xFFFF
        try:
            self.bus.write_word_data(self.address, register, ((value & 0xFF) << 8) | (value >> 8))
        except OSError as exc:
            raise SensorError(f"INA226 at 0x{self.address:02x} did not answer writing register "
                              f"0x{register:02x}: {exc}") from exc

    # ---- configuration -----------------------------------------------------------------
    def reset(self) -> None:
        """Software reset: every register back to its power-on value, calibration lost."""
        self._write(REG_CONFIG, 1 << CONFIG_RST[0])

    def configure(self, averaging: int = 16, bus_ct: ConversionTime = ConversionTime.CT_1100_US,
                  shunt_ct: ConversionTime = ConversionTime.CT_1100_US,
                  mode: Mode = Mode.SHUNT_BUS_CONTINUOUS) -> None:
        value = 0x4000  # bit 14 is reserved and reads 1 (as in the reset value 0x4127)
        value = _set_field(value, CONFIG_AVG, Averaging.of(averaging))
        value = _set_field(value, CONFIG_VBUSCT, ConversionTime(bus_ct))
        value = _set_field(value, CONFIG_VSHCT, ConversionTime(shunt_ct))
        value = _set_field(value, CONFIG_MODE, Mode(mode))
        self._write(REG_CONFIG, value)

    def config(self) -> dict:
        value = self._read(REG_CONFIG)
        return {"averaging": Averaging(_field(value, CONFIG_AVG)).samples,
                "bus_ct": ConversionTime(_field(value, CONFIG_VBUSCT)),
                "shunt_ct": ConversionTime(_field(value, CONFIG_VSHCT)), "mode": Mode(_field(value, CONFIG_MODE))}

    def conversion_period_s(self) -> float:
        """Time between updates: (t_bus + t_shunt) x averaging in shunt+bus continuous mode."""
        c = self.config()
        return (c["bus_ct"].seconds + c["shunt_ct"].seconds) * c["averaging"]

    def calibrate(self, shunt_ohms: float, max_current_a: float, current_lsb_a: float | None = None) -> int:
        """CAL = 0.00512 / (Current_LSB x R_shunt), Current_LSB >= I_max / 2^15 (datasheet 7.5)."""
        if shunt_ohms <= 0 or max_current_a <= 0:
            raise ValueError("shunt resistance and maximum current must be positive")
        minimum_lsb = max_current_a / 2 ** 15
        lsb = current_lsb_a if current_lsb_a is not None else minimum_lsb
        if lsb < minimum_lsb:
            raise ValueError(f"Current_LSB {lsb} A is below I_max / 2^15 = {minimum_lsb} A")
        cal = int(CAL_CONSTANT / (lsb * shunt_ohms))
        if not 0 < cal <= 0x7FFF:
            raise ValueError(f"calibration {cal} out of range: choose another shunt or Current_LSB")
        self.current_lsb_a, self.calibration = lsb, cal
        self._write(REG_CALIBRATION, cal)
        return cal

    def ensure_calibrated(self) -> bool:
        """Re-write CAL if the chip lost it (reset, brown-out): current and power read 0 without it."""
        if self.calibration is None:
            raise SensorError("INA226 not calibrated: call calibrate() first")
        if self._read(REG_CALIBRATION) != self.calibration:
            self._write(REG_CALIBRATION, self.calibration)
            self.recalibrations += 1
            return True
        return False

    def set_alert(self, function: AlertFunction, limit: float, latch: bool = False,
                  active_high: bool = False) -> None:
        """ALERT on one comparison; limit in V (shunt, bus) or W (power), converted to the register's LSB."""
        if function in (AlertFunction.SHUNT_OVER, AlertFunction.SHUNT_UNDER):
            raw = int(round(limit / SHUNT_LSB_V)) & 0xFFFF
        elif function in (AlertFunction.BUS_OVER, AlertFunction.BUS_UNDER):
            raw = int(round(limit / BUS_LSB_V))
        else:
            if self.current_lsb_a is None:
                raise SensorError("power alerts need calibration first")
            raw = int(round(limit / (POWER_LSB_FACTOR * self.current_lsb_a)))
        if not 0 <= raw <= 0xFFFF:
            raise ValueError(f"alert limit {limit} out of the register's range")
        self._write(REG_ALERT_LIMIT, raw)
        self._write(REG_MASK_ENABLE, (1 << function) | (MASK_LEN if latch else 0) | (MASK_APOL if active_high else 0))

    # ---- measurements ------------------------------------------------------------------
    def mask_enable(self) -> int:
        """Reading Mask/Enable clears CVRF (and AFF when latched), as on the chip."""
        return self._read(REG_MASK_ENABLE)

    def wait_conversion(self, timeout_s: float) -> bool:
        """Poll CVRF until a new conversion is ready, bounded by timeout_s. False on timeout."""
        deadline = self._clock() + timeout_s
        while True:
            if self.mask_enable() & MASK_CVRF:
                return True
            if self._clock() >= deadline:
                return False
            self._sleep(min(0.0005, max(0.0, deadline - self._clock())))

    def bus_voltage_v(self) -> float:
        return self._read(REG_BUS_VOLTAGE) * BUS_LSB_V

    def shunt_voltage_v(self) -> float:
        return _signed16(self._read(REG_SHUNT_VOLTAGE)) * SHUNT_LSB_V

    def read(self) -> Reading:
        if self.current_lsb_a is None:
            raise SensorError("INA226 not calibrated: call calibrate() first")
        overflow = bool(self.mask_enable() & MASK_OVF)
        current = _signed16(self._read(REG_CURRENT)) * self.current_lsb_a
        power = self._read(REG_POWER) * POWER_LSB_FACTOR * self.current_lsb_a
        return Reading(self.bus_voltage_v(), self.shunt_voltage_v(), current, power, overflow)
