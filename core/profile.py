"""The profile: what calibration (or the daemon's start-up warm-up) measured. Version 1.

  {"version": 1, "bundle": "<manifest sha256>", "device": {...},
   "link": {"uplink_bps": .., "rtt_ms": ..},
   "partitions": [{"name": "RB1", "device_ms": .., "device_power_w": .., "cloud_ms": ..,
                   "upload_bytes": .., "accuracy": ..}, ...],
   "models": [{"name", "device_ms", "device_ms_std", "cloud_ms", "cloud_ms_std",
               "device_power_w", "accuracy", "flops"}, ...]}

Mobile-only and cloud-only are partitions too (MOBILE_ONLY, CLOUD_ONLY): upload_bytes
of the raw input for cloud-only, 0 for mobile-only. Extra fields are kept and
ignored, so profiles written by hand (from a paper's table, another device) plan the
same way. Written atomically (temp file + rename) so a reader never sees half a file.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

VERSION = 1
MOBILE_ONLY = "mobile-only"
CLOUD_ONLY = "cloud-only"


class ProfileError(ValueError):
    """A profile that cannot be planned with; the message names the field."""


class _InSeconds:
    """The file holds milliseconds; the run-time code works in seconds."""

    device_ms: float
    cloud_ms: float

    @property
    def device_s(self) -> float:
        return self.device_ms / 1e3

    @property
    def cloud_s(self) -> float:
        return self.cloud_ms / 1e3


@dataclass(frozen=True)
class PartitionProfile(_InSeconds):
    name: str
    device_ms: float         # head (and reduction unit) on the device; the whole model for mobile-only
    device_power_w: float    # device power while computing
    cloud_ms: float          # tail on the cloud; the whole model for cloud-only
    upload_bytes: int        # what crosses the uplink per frame
    accuracy: float | None = None

    @property
    def kind(self) -> str:
        return {MOBILE_ONLY: "device", CLOUD_ONLY: "cloud"}.get(self.name, "split")



@dataclass(frozen=True)
class ModelProfile(_InSeconds):
    name: str
    device_ms: float
    device_ms_std: float = 0.0
    cloud_ms: float = 0.0
    cloud_ms_std: float = 0.0
    device_power_w: float = 0.0
    accuracy: float | None = None
    flops: int = 0

    @property
    def device_s_std(self) -> float:
        return self.device_ms_std / 1e3

    @property
    def cloud_s_std(self) -> float:
        return self.cloud_ms_std / 1e3


@dataclass(frozen=True)
class LinkProfile:
    uplink_bps: float
    rtt_ms: float


@dataclass(frozen=True)
class Profile:
    bundle: str
    partitions: tuple[PartitionProfile, ...]
    models: tuple[ModelProfile, ...] = ()
    link: LinkProfile | None = None
    device: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    version: int = VERSION

    def partition(self, name: str) -> PartitionProfile:
        found = self._by_name.get(name)
        if found is None:
            raise KeyError(name)
        return found

    @cached_property
    def _by_name(self) -> dict[str, PartitionProfile]:
        """Partitions by name (asked for several times per frame); the first of a name wins."""
        by_name: dict[str, PartitionProfile] = {}
        for p in self.partitions:
            by_name.setdefault(p.name, p)
        return by_name

    def has(self, name: str) -> bool:
        """Whether the profile measured this partition (no cloud configured: no cloud-only)."""
        return any(p.name == name for p in self.partitions)

    def to_json(self) -> dict[str, Any]:
        out = dict(self.extra)
        out.update(version=self.version, bundle=self.bundle, device=self.device,
                   link=asdict(self.link) if self.link else None,
                   partitions=[asdict(p) for p in self.partitions], models=[asdict(m) for m in self.models])
        return out


def _number(raw: dict, key: str, where: str, minimum: float = 0.0, required: bool = True) -> float | None:
    if key not in raw or raw[key] is None:
        if required:
            raise ProfileError(f"profile: {where} is missing {key!r}")
        return None
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ProfileError(f"profile: {where}.{key} must be a finite number, got {value!r}")
    if value < minimum:
        raise ProfileError(f"profile: {where}.{key} = {value} is below {minimum}")
    return float(value)


def _partition(raw: Any, i: int) -> PartitionProfile:
    where = f"partitions[{i}]"
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
        raise ProfileError(f"profile: {where} needs a non-empty string 'name'")
    where = f"partitions[{i}] ({raw['name']})"
    accuracy = _number(raw, "accuracy", where, required=False)
    if accuracy is not None and accuracy > 1.0:
        raise ProfileError(f"profile: {where}.accuracy = {accuracy} is not a fraction in [0, 1]")
    p = PartitionProfile(name=raw["name"], device_ms=_number(raw, "device_ms", where),
                         device_power_w=_number(raw, "device_power_w", where),
                         cloud_ms=_number(raw, "cloud_ms", where),
                         upload_bytes=int(_number(raw, "upload_bytes", where)), accuracy=accuracy)
    if p.name == MOBILE_ONLY and (p.upload_bytes != 0 or p.cloud_ms != 0):
        raise ProfileError(f"profile: {where} uploads nothing and runs nothing in the cloud: "
                           "upload_bytes and cloud_ms must be 0")
    if p.name != MOBILE_ONLY and p.upload_bytes == 0:
        raise ProfileError(f"profile: {where} must upload something (upload_bytes > 0)")
    return p


def _model(raw: Any, i: int) -> ModelProfile:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise ProfileError(f"profile: models[{i}] needs a string 'name'")
    where = f"models[{i}] ({raw['name']})"
    opt = lambda k: _number(raw, k, where, required=False) or 0.0  # noqa: E731
    return ModelProfile(name=raw["name"], device_ms=_number(raw, "device_ms", where),
                        device_ms_std=opt("device_ms_std"), cloud_ms=opt("cloud_ms"), cloud_ms_std=opt("cloud_ms_std"),
                        device_power_w=opt("device_power_w"), accuracy=_number(raw, "accuracy", where, required=False),
                        flops=int(opt("flops")))


def parse_profile(raw: Any) -> Profile:
    if not isinstance(raw, dict):
        raise ProfileError("profile: top level must be a JSON object")
    version = raw.get("version")
    if version != VERSION:
        raise ProfileError(f"profile: version {version!r} is not supported (this adaptinf reads version {VERSION})")
    bundle = raw.get("bundle")
    if not isinstance(bundle, str):
        raise ProfileError("profile: 'bundle' (the bundle manifest's sha256) must be a string")
    parts = raw.get("partitions")
    if not isinstance(parts, list) or not parts:
        raise ProfileError("profile: 'partitions' must be a non-empty list")
    partitions = tuple(_partition(p, i) for i, p in enumerate(parts))
    names = [p.name for p in partitions]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ProfileError(f"profile: partition names repeat: {duplicates}")
    link = None
    if raw.get("link") is not None:
        if not isinstance(raw["link"], dict):
            raise ProfileError("profile: 'link' must be an object")
        link = LinkProfile(_number(raw["link"], "uplink_bps", "link", minimum=1.0),
                           _number(raw["link"], "rtt_ms", "link"))
    models = tuple(_model(m, i) for i, m in enumerate(raw.get("models") or []))
    known = {"version", "bundle", "device", "link", "partitions", "models"}
    return Profile(bundle=bundle, partitions=partitions, models=models, link=link,
                   device=raw.get("device") or {}, extra={k: v for k, v in raw.items() if k not in known})


MAX_PROFILE_BYTES = 16 * 1024 * 1024     # a calibrated profile is kilobytes; /dev/zero is not a profile


def read_capped(path: Path, limit: int) -> str:
    """A text file of at most `limit` bytes (ValueError past it, without reading on): a
    config or profile pointed at a device or a huge file must not eat the memory."""
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"larger than {limit} bytes; this is not a file of that kind")
    return data.decode("utf-8")


def load_profile(path: Path | str) -> Profile:
    path = Path(path)
    try:
        raw = json.loads(read_capped(path, MAX_PROFILE_BYTES))
    except FileNotFoundError:
        raise ProfileError(f"{path}: no such profile") from None
    except UnicodeDecodeError as exc:
        raise ProfileError(f"{path}: not UTF-8 text ({exc})") from None
    except OSError as exc:  # a directory, no permission, an I/O error
        raise ProfileError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ProfileError(f"{path}: not valid JSON ({exc})") from None
    except ValueError as exc:
        raise ProfileError(f"{path}: {exc}") from None
    try:
        return parse_profile(raw)
    except ProfileError as exc:
        raise ProfileError(f"{path}: {exc}") from None


def save_profile(profile: Profile, path: Path | str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        tmp.write_text(json.dumps(profile.to_json(), indent=1) + "\n")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)     # a full disk leaves no empty .tmp<pid> behind per start
        raise
