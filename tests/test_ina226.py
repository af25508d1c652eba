"""The INA226 driver against the register-level emulator: datasheet vectors, signs, flags, resets."""

import pytest

from adaptinf.drivers import ina226 as chip
from adaptinf.drivers.ina226 import INA226, AlertFunction, ConversionTime, SensorError
from adaptinf.rig.ina226_emulator import Ina226Emulator


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t

    def sleep(self, s):
        self.t += s


def make(trace, **configure):
    clock = Clock()
    emu = Ina226Emulator(trace, clock)
    dev = INA226(emu, clock=clock, sleep=clock.sleep)
    dev.configure(**({"averaging": 1} | configure))
    return emu, dev, clock


def test_datasheet_worked_example_exactly():
    """SBOS547B Table 1: 10 A through 2 mOhm at a 12 V common mode, Current_LSB 1 mA."""
    emu, dev, clock = make(lambda t: (0.020, 11.98))
    assert dev.calibrate(shunt_ohms=0.002, max_current_a=10.0, current_lsb_a=0.001) == 0x0A00
    clock.t += 0.01
    r = dev.read()
    assert emu.regs[chip.REG_SHUNT_VOLTAGE] == 0x1F40 and r.shunt_voltage_v == pytest.approx(0.020)
    assert emu.regs[chip.REG_BUS_VOLTAGE] == 0x2570 and r.bus_voltage_v == pytest.approx(11.98)
    assert emu.regs[chip.REG_CURRENT] == 0x2710 and r.current_a == pytest.approx(10.0)
    assert emu.regs[chip.REG_POWER] == 0x12B8 and r.power_w == pytest.approx(119.8)
    assert not r.overflow


def test_power_on_state_and_identity():
    clock = Clock()
    emu = Ina226Emulator(lambda t: (0.0, 5.0), clock)
    assert emu.regs[chip.REG_CONFIG] == 0x4127
    dev = INA226(emu, clock=clock)
    assert dev.config()["averaging"] == 1 and dev.config()["mode"] == chip.Mode.SHUNT_BUS_CONTINUOUS


def test_wrong_chip_is_refused_with_advice():
    clock = Clock()
    emu = Ina226Emulator(lambda t: (0.0, 5.0), clock)
    emu.regs[chip.REG_DIE_ID] = 0x3220  # an INA3221-like die ID
    with pytest.raises(SensorError, match="check the wiring"):
        INA226(emu, clock=clock)


def test_missing_device_is_a_sensor_error():
    clock = Clock()
    emu = Ina226Emulator(lambda t: (0.0, 5.0), clock)
    with pytest.raises(SensorError, match="did not answer"):
        INA226(emu, address=0x41, clock=clock)  # nobody at 0x41
    dev = INA226(emu, clock=clock)
    emu.nack = True
    with pytest.raises(SensorError):
        dev.bus_voltage_v()


def test_negative_current_is_signed():
    emu, dev, clock = make(lambda t: (-0.005, 12.0))
    dev.calibrate(0.002, 10.0, current_lsb_a=0.001)
    clock.t += 0.01
    r = dev.read()
    assert r.shunt_voltage_v == pytest.approx(-0.005) and r.current_a == pytest.approx(-2.5)
    assert r.power_w == pytest.approx(30.0, rel=1e-3)  # power is |I| x V: never negative


def test_overflow_is_reported():
    # calibrated for 5 A on 1 mOhm (CAL 32000), then 81.9 mV across it: 81.9 A does not fit
    emu, dev, clock = make(lambda t: (0.0819, 12.0))
    assert dev.calibrate(0.001, 5.0, current_lsb_a=0.00016) == 32000
    clock.t += 0.01
    assert dev.read().overflow


def test_conversion_ready_follows_the_configured_period():
    emu, dev, clock = make(lambda t: (0.001, 5.0), averaging=4, bus_ct=ConversionTime.CT_588_US,
                           shunt_ct=ConversionTime.CT_588_US)
    assert dev.conversion_period_s() == pytest.approx(4 * 2 * 588e-6)  # the datasheet's ~4.7 ms example
    assert not dev.mask_enable() & chip.MASK_CVRF
    clock.t += 0.004
    assert not dev.mask_enable() & chip.MASK_CVRF  # 4.0 ms < 4.704 ms: not yet
    assert dev.wait_conversion(timeout_s=0.01)     # bounded poll until CVRF
    assert not dev.mask_enable() & chip.MASK_CVRF  # reading Mask/Enable cleared it
    assert not dev.wait_conversion(timeout_s=0.001)


def test_averaging_averages_the_trace():
    # a square wave between 1 and 3 mV across each 16-sample window averages to 2 mV
    period = 16 * 2 * 140e-6
    emu, dev, clock = make(lambda t: (0.001 if int(t / (period / 16)) % 2 else 0.003, 5.0), averaging=16,
                           bus_ct=ConversionTime.CT_140_US, shunt_ct=ConversionTime.CT_140_US)
    clock.t += period * 1.5
    assert dev.shunt_voltage_v() == pytest.approx(0.002, abs=2.5e-6)


def test_calibration_is_restored_after_a_reset():
    emu, dev, clock = make(lambda t: (0.010, 12.0))
    dev.calibrate(0.002, 10.0, current_lsb_a=0.001)
    dev.reset()  # as a brown-out would: CAL is 0, current and power read 0
    assert emu.regs[chip.REG_CALIBRATION] == 0
    dev.configure(averaging=1)
    assert dev.ensure_calibrated() is True and dev.recalibrations == 1
    clock.t += 0.01
    assert dev.read().current_a == pytest.approx(5.0)
    assert dev.ensure_calibrated() is False


def test_calibration_bounds():
    emu, dev, clock = make(lambda t: (0.0, 5.0))
    with pytest.raises(ValueError, match="below"):
        dev.calibrate(0.002, 10.0, current_lsb_a=1e-6)
    cal = dev.calibrate(0.1, 0.8)  # Current_LSB = 0.8 / 2^15
    assert cal == int(0.00512 / (0.8 / 2 ** 15 * 0.1))


def test_alert_configuration_in_register_units():
    emu, dev, clock = make(lambda t: (0.0, 5.0))
    dev.calibrate(0.002, 10.0, current_lsb_a=0.001)
    dev.set_alert(AlertFunction.BUS_UNDER, 10.0, latch=True)
    assert emu.regs[chip.REG_ALERT_LIMIT] == 8000                  # 10 V / 1.25 mV
    assert emu.regs[chip.REG_MASK_ENABLE] & 0xFC03 == chip.MASK_BUL | chip.MASK_LEN
    dev.set_alert(AlertFunction.POWER_OVER, 50.0)
    assert emu.regs[chip.REG_ALERT_LIMIT] == 2000                  # 50 W / 25 mW
