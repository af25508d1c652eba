"""adaptinfd's configuration: one frozen value loaded from TOML and passed down.

Every key is declared here with its type and default; an unknown key, a wrong type
or a value out of range is an error that names the key (`[cloud].timeout_ms`).
Example: systemd/adaptinfd.toml (installed as /etc/adaptinf/adaptinfd.toml).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # JetPack 6's Python 3.10: the same parser, as the backport
    import tomli as tomllib

from adaptinf.api_protocol import DEFAULT_MAX_MESSAGE_BYTES
from adaptinf.policies import registry as policy_registry
from adaptinf.profile import read_capped
from adaptinf.policies.mcu_placement import ENERGY_PER_CYCLE_NJ
from adaptinf.policies.plan import GOALS, MODES
from adaptinf.policies.radio_power import RADIOS
from adaptinf.policies.sieve import DETECTORS as SIEVE_DETECTORS

POLICIES = policy_registry.NAMES
BACKENDS = ("auto", "tensorrt", "onnxruntime")


MAX_DEVICE_ID_BYTES = 255 - 17     # a routing id's 255, less "/" and the boot id's 16 hex digits


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class DaemonSection:
    api_endpoint: str = "ipc:///run/adaptinfd/api.sock"
    bundle: str = "/var/lib/adaptinf/bundle"
    state_dir: str = "/var/lib/adaptinf"
    profile: str = ""                 # empty: measure at start-up, write state_dir/profile.json
    workers: int = 4                  # frames in flight (most of a frame's time is waiting on the link)
    queue_size: int = 64              # frames waiting beyond that get RESOURCE_EXHAUSTED
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    warmup_runs: int = 20
    # Run-to-completion: a device-only frame predicted to take at most this long is run
    # in the API thread when no frame is in the pool, saving two thread hand-offs; it
    # holds other clients up by at most this much. 0 disables.
    inline_max_ms: float = 1.0
    metrics_endpoint: str = ""        # "127.0.0.1:9464" serves Prometheus metrics at /metrics; empty: off
    # Fairness: frames one client may have queued or running; more get RESOURCE_EXHAUSTED,
    # so a client that floods (or never reads its replies) cannot take the others' share.
    max_in_flight_per_client: int = 16

    @property
    def inline_max_s(self) -> float:     # the file holds ms; the run-time code, seconds
        return self.inline_max_ms / 1e3


@dataclass(frozen=True)
class PolicySection:
    name: str = "split"
    goal: str = "latency"
    mode: str = "normal"
    # sieve: frames of one client closer than this are "similar" (speculation history, thesis 4.3.2)
    history_ms: float = 100.0
    # sieve's misspeculation detector: "probe" (Dynamic Duo's per-class thresholds) or
    # "threshold" (the thesis's one threshold from the confidence distributions, 4.3.1)
    sieve_detector: str = "probe"

    @property
    def history_s(self) -> float:
        return self.history_ms / 1e3


@dataclass(frozen=True)
class DeviceSection:
    engine: str = "auto"
    plan_cache: str = "/var/cache/adaptinf/engines"
    # Model-based device power while computing, used until a power sensor is wired in.
    compute_power_w: float = 5.0
    # Emulation only: make device engines this many times slower than the host CPU
    # runs them, so a demo on one machine has a device slower than its cloud (a
    # Jetson TX2 is ~30x slower than the paper's GTX 1080 Ti). 1.0 on real devices.
    emulate_slowdown: float = 1.0


@dataclass(frozen=True)
class CloudSection:
    endpoint: str = ""                # empty: no cloud, everything on the device
    device_id: str = "adaptinf-device"
    timeout_ms: float = 1000.0        # longest a frame waits for the cloud before falling back
    radio: str = "wifi"               # uplink power model of paper 004 Table III
    # CURVE (both or neither): this device's .key_secret file and the cloud's public .key file
    curve_secret_key: str = ""
    curve_server_key: str = ""

    @property
    def timeout_s(self) -> float:
        return self.timeout_ms / 1e3


POWER_SOURCES = ("auto", "none", "ina226", "hwmon", "ina3221", "jtop")


@dataclass(frozen=True)
class PowerSection:
    # auto: the first sensor found under sysfs_root (INA3221 rails, then ina2xx hwmon,
    # then jtop); ina226: the chip itself on /dev/i2c-<i2c_bus>; none: model only.
    source: str = "auto"
    sysfs_root: str = "/"
    i2c_bus: int = 1
    address: int = 0x40
    shunt_ohms: float = 0.002
    max_current_a: float = 10.0
    rate_hz: float = 100.0


MCU_POLICIES = ("auto", "mcu", "host")


@dataclass(frozen=True)
class McuSection:
    # An FC model (adaptinf build dsnn) served on an STM32 over serial, with the same model
    # on the host as its fallback. Empty port: no MCU.
    port: str = ""                    # /dev/adaptinf-stm32, /dev/ttyACM0, socket://127.0.0.1:PORT (QEMU)
    model: str = ""                   # the exported directory (dsnn.json + dsnn_system.aims)
    name: str = "digits-dsnn"         # the model name local apps ask for
    policy: str = "auto"              # auto (by goal) | mcu | host
    timeout_ms: float = 200.0         # per serial exchange; then one retransmission
    baudrate: int = 115200
    # Cortex-M4 cost model (policies/mcu_placement.py, docs/mcu.md)
    clock_hz: float = 16e6            # the firmware runs on the HSI reset clock
    cycles_per_tick: float = 1.0      # 1 on silicon; 1/0.168 for QEMU -icount shift=0
    energy_per_cycle_nj: float = ENERGY_PER_CYCLE_NJ   # 238 uA/MHz x 3.3 V (ST), a lower bound

    @property
    def timeout_s(self) -> float:
        return self.timeout_ms / 1e3


@dataclass(frozen=True)
class RecorderSection:
    # The flight recorder (daemon/recorder.py, docs/recorder.md): every frame's decision and
    # the link's samples, in rotating JSON Lines files under state_dir/recordings.
    enabled: bool = True
    max_bytes: int = 64 * 1024 * 1024  # all the files together; the oldest go first
    max_age: float = 7 * 86400.0       # seconds; older files are deleted
    ring: int = 20_000                 # records kept in memory for `adaptinf record`
    record_frames: float = 0.0         # share of frames whose tensor is kept too (privacy: none by default)


@dataclass(frozen=True)
class Config:
    daemon: DaemonSection = field(default_factory=DaemonSection)
    policy: PolicySection = field(default_factory=PolicySection)
    device: DeviceSection = field(default_factory=DeviceSection)
    cloud: CloudSection = field(default_factory=CloudSection)
    power: PowerSection = field(default_factory=PowerSection)
    mcu: McuSection = field(default_factory=McuSection)
    recorder: RecorderSection = field(default_factory=RecorderSection)


_CHOICES = {("policy", "name"): POLICIES, ("policy", "goal"): GOALS, ("policy", "mode"): MODES,
            ("policy", "sieve_detector"): SIEVE_DETECTORS,
            ("device", "engine"): BACKENDS, ("cloud", "radio"): tuple(RADIOS), ("power", "source"): POWER_SOURCES,
            ("mcu", "policy"): MCU_POLICIES}
_POSITIVE = {("daemon", "workers"), ("daemon", "max_in_flight_per_client"), ("daemon", "queue_size"), ("daemon", "max_message_bytes"),
             ("daemon", "warmup_runs"), ("device", "emulate_slowdown"), ("cloud", "timeout_ms"),
             ("power", "shunt_ohms"), ("power", "max_current_a"), ("power", "rate_hz"),
             ("mcu", "timeout_ms"), ("mcu", "baudrate"), ("mcu", "clock_hz"), ("mcu", "cycles_per_tick"),
             ("mcu", "energy_per_cycle_nj"), ("recorder", "max_bytes"), ("recorder", "max_age"),
             ("recorder", "ring")}


# Lower bounds above zero: a power sampler slower than one read in 10 s measures nothing per
# frame (and 1e-300 Hz overflowed its wait)
_MINIMUM = {("power", "rate_hz"): 0.1, ("recorder", "max_bytes"): 1 << 20}

# Upper bounds: far above any sane setting, low enough that a typo cannot exhaust memory
# or overflow the C libraries the values go to (libzmq's int64 message size, thread counts).
_MAXIMUM = {("daemon", "workers"): 256, ("daemon", "queue_size"): 100_000,
            ("daemon", "max_message_bytes"): 1 << 30, ("daemon", "warmup_runs"): 10_000,
            ("daemon", "inline_max_ms"): 1000.0, ("daemon", "max_in_flight_per_client"): 100_000,
            ("policy", "history_ms"): 3_600_000.0,
            ("device", "compute_power_w"): 10_000.0, ("device", "emulate_slowdown"): 1000.0,
            ("cloud", "timeout_ms"): 3_600_000.0, ("power", "rate_hz"): 100_000.0, ("power", "i2c_bus"): 255,
            ("power", "address"): 0x7F, ("power", "shunt_ohms"): 1000.0, ("power", "max_current_a"): 1000.0,
            ("mcu", "timeout_ms"): 3_600_000.0, ("mcu", "baudrate"): 10_000_000, ("mcu", "clock_hz"): 1e10,
            ("mcu", "cycles_per_tick"): 1e6, ("mcu", "energy_per_cycle_nj"): 1e6,
            ("recorder", "max_bytes"): 1 << 40, ("recorder", "max_age"): 10 * 365 * 86400.0,
            ("recorder", "ring"): 1_000_000, ("recorder", "record_frames"): 1.0}


def _section(cls: type, name: str, raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{name}] must be a table")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(f"[{name}] has unknown key(s) {unknown}; known: {sorted(known)}")
    values = {}
    for key, value in raw.items():
        expected = type(getattr(cls(), key))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not expected:
            raise ConfigError(f"[{name}].{key} must be {expected.__name__}, got {type(value).__name__} {value!r}")
        if (name, key) in _CHOICES and value not in _CHOICES[(name, key)]:
            raise ConfigError(f"[{name}].{key} = {value!r}; choose one of {list(_CHOICES[(name, key)])}")
        if expected is float and not math.isfinite(value):
            raise ConfigError(f"[{name}].{key} must be a finite number, got {value}")
        if (name, key) in _POSITIVE and value <= 0:
            raise ConfigError(f"[{name}].{key} must be positive, got {value}")
        if expected in (int, float) and value < 0:
            raise ConfigError(f"[{name}].{key} must not be negative, got {value}")
        if (name, key) in _MAXIMUM and value > _MAXIMUM[(name, key)]:
            raise ConfigError(f"[{name}].{key} = {value} is above its maximum, {_MAXIMUM[(name, key)]}")
        if (name, key) in _MINIMUM and value < _MINIMUM[(name, key)]:
            raise ConfigError(f"[{name}].{key} = {value} is below its minimum, {_MINIMUM[(name, key)]}")
        values[key] = value
    return cls(**values)


def parse_config(raw: dict) -> Config:
    sections = {f.name: f.default_factory for f in fields(Config)}  # type: ignore[misc]
    unknown = sorted(set(raw) - set(sections))
    if unknown:
        raise ConfigError(f"unknown section(s) {unknown}; known: {sorted(sections)}")
    config = Config(**{name: _section(type(factory()), name, raw.get(name, {})) for name, factory in sections.items()})
    device_id = config.cloud.device_id
    if (not device_id or len(device_id.encode()) > MAX_DEVICE_ID_BYTES or device_id.startswith("\0")
            or "/" in device_id):
        # ZeroMQ routing ids are 1..255 bytes, one that starts with a zero byte is reserved, and
        # the link's is "<device id>/<16 hex digits of boot id>" (cloud/protocol.py)
        raise ConfigError(f"[cloud].device_id must be 1 to {MAX_DEVICE_ID_BYTES} bytes, without '/', and not "
                          f"start with a zero byte, got {len(device_id.encode())} bytes: {device_id[:40]!r}")
    return config


def load_config(path: Path | str | None, overrides: dict[tuple[str, str], Any] | None = None) -> Config:
    """The config file (None: none, all defaults) with {(section, key): value} set over it
    (adaptinfd's command-line options)."""
    raw: dict = _read_toml(Path(path)) if path is not None else {}
    for (section, key), value in (overrides or {}).items():
        raw.setdefault(section, {})
        if not isinstance(raw[section], dict):
            raise ConfigError(f"{path}: [{section}] must be a table")
        raw[section][key] = value
    try:
        return parse_config(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}" if path is not None else str(exc)) from None


MAX_CONFIG_BYTES = 1024 * 1024


def _read_toml(path: Path) -> dict:
    try:
        text = read_capped(path, MAX_CONFIG_BYTES)     # /dev/zero must not read until memory runs out
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc})") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except OSError as exc:  # a directory, no permission, an I/O error: refused like a syntax error
        raise ConfigError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
