"""A register-level INA226 behind the smbus2 interface, for tests and the rig.

The driver cannot tell it from a chip: words go over "SMBus" little-endian while the
registers are big-endian; the power-on values are the datasheet's (Config 0x4127, IDs
0x5449 / 0x2260, everything else 0); current and power are computed by the chip's own
integer arithmetic from the calibration register (Current = Shunt x CAL / 2048, Power =
Current x Bus / 20000); conversions complete every (t_bus + t_shunt) x AVG seconds of an
injected clock, each averaging AVG samples of an injected (shunt V, bus V) trace; CVRF
is set by a completed conversion and cleared by reading Mask/Enable or writing Config;
OVF is set when current or power overflows. `nack = True` makes every transfer fail
like a missing device (OSError 121, Remote I/O error), as smbus2 reports it.
"""

from __future__ import annotations

import errno
import math
from typing import Callable

from adaptinf.drivers import ina226 as chip

Trace = Callable[[float], tuple[float, float]]   # time s -> (shunt V, bus V)


def _swap(word: int) -> int:
    return ((word & 0xFF) << 8) | (word >> 8)


def _to_u16(value: int) -> int:
    return value & 0xFFFF


class Ina226Emulator:
    def __init__(self, trace: Trace, clock: Callable[[], float], address: int = 0x40):
        self.trace = trace
        self.clock = clock
        self.address = address
        self.nack = False
        self._reset()

    def _reset(self) -> None:
        self.regs = {chip.REG_CONFIG: chip.CONFIG_RESET_VALUE, chip.REG_SHUNT_VOLTAGE: 0, chip.REG_BUS_VOLTAGE: 0,
                     chip.REG_POWER: 0, chip.REG_CURRENT: 0, chip.REG_CALIBRATION: 0, chip.REG_MASK_ENABLE: 0,
                     chip.REG_ALERT_LIMIT: 0, chip.REG_MANUFACTURER_ID: chip.MANUFACTURER_ID,
                     chip.REG_DIE_ID: chip.DIE_ID}
        self._epoch = self.clock()
        self._conversions = 0

    # ---- smbus2 interface ----------------------------------------------------------
    def _check(self, i2c_addr: int, register: int) -> None:
        if self.nack or i2c_addr != self.address:
            raise OSError(errno.EREMOTEIO, "Remote I/O error")
        if register not in self.regs:
            raise OSError(errno.EREMOTEIO, "Remote I/O error")

    def read_word_data(self, i2c_addr: int, register: int) -> int:
        self._check(i2c_addr, register)
        self._convert()
        value = self.regs[register]
        if register == chip.REG_MASK_ENABLE:
            self.regs[register] &= ~chip.MASK_CVRF & 0xFFFF
            if not value & chip.MASK_LEN:
                self.regs[register] &= ~chip.MASK_AFF & 0xFFFF
        return _swap(value)

    def write_word_data(self, i2c_addr: int, register: int, value: int) -> None:
        self._check(i2c_addr, register)
        value = _swap(value)
        if register == chip.REG_CONFIG:
            if value & (1 << chip.CONFIG_RST[0]):
                self._reset()
                return
            self.regs[register] = value
            self.regs[chip.REG_MASK_ENABLE] &= ~chip.MASK_CVRF & 0xFFFF  # writing Config clears CVRF
            self._epoch, self._conversions = self.clock(), 0                # and restarts conversions
        elif register == chip.REG_CALIBRATION:
            self.regs[register] = value & 0x7FFF                            # bit 15 is reserved
        elif register == chip.REG_MASK_ENABLE:
            keep = self.regs[register] & (chip.MASK_AFF | chip.MASK_CVRF | chip.MASK_OVF)
            self.regs[register] = (value & 0xFC03) | keep                   # only the enable bits are writable
        elif register == chip.REG_ALERT_LIMIT:
            self.regs[register] = value
        # data and ID registers are read-only: writes are ignored, as on the chip

    # ---- the chip's behaviour --------------------------------------------------------
    def period_s(self) -> float:
        config = self.regs[chip.REG_CONFIG]
        averaging = chip.Averaging(chip._field(config, chip.CONFIG_AVG)).samples
        t_bus = chip.ConversionTime(chip._field(config, chip.CONFIG_VBUSCT)).seconds
        t_shunt = chip.ConversionTime(chip._field(config, chip.CONFIG_VSHCT)).seconds
        return (t_bus + t_shunt) * averaging

    def _convert(self) -> None:
        """Bring the result registers up to the last conversion completed by now."""
        mode = chip._field(self.regs[chip.REG_CONFIG], chip.CONFIG_MODE)
        if mode != chip.Mode.SHUNT_BUS_CONTINUOUS:
            return  # triggered and power-down modes are not emulated: registers hold their last values
        period = self.period_s()
        done = int((self.clock() - self._epoch) / period)
        if done <= self._conversions:
            return
        self._conversions = done
        averaging = chip.Averaging(chip._field(self.regs[chip.REG_CONFIG], chip.CONFIG_AVG)).samples
        end = self._epoch + done * period
        times = [end - period + (i + 0.5) * period / averaging for i in range(averaging)]
        samples = [self.trace(t) for t in times]
        shunt_v = sum(s for s, _ in samples) / averaging
        bus_v = sum(b for _, b in samples) / averaging
        self._latch(shunt_v, bus_v)

    def _latch(self, shunt_v: float, bus_v: float) -> None:
        shunt = max(-32768, min(32767, round(shunt_v / chip.SHUNT_LSB_V)))
        bus = max(0, min(0x7FFF, round(bus_v / chip.BUS_LSB_V)))
        cal = self.regs[chip.REG_CALIBRATION]
        current = math.trunc(shunt * cal / 2048)
        power = math.trunc(abs(current) * bus / 20000)
        overflow = not -32768 <= current <= 32767 or power > 0xFFFF
        current = max(-32768, min(32767, current))
        power = min(power, 0xFFFF)
        self.regs[chip.REG_SHUNT_VOLTAGE] = _to_u16(shunt)
        self.regs[chip.REG_BUS_VOLTAGE] = bus
        self.regs[chip.REG_CURRENT] = _to_u16(current)
        self.regs[chip.REG_POWER] = power
        mask = self.regs[chip.REG_MASK_ENABLE] | chip.MASK_CVRF
        mask = mask | chip.MASK_OVF if overflow else mask & ~chip.MASK_OVF
        self.regs[chip.REG_MASK_ENABLE] = mask & 0xFFFF
