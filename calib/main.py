"""adaptinf-calib: measure this device, its link and its cloud for a bundle; write the profile and a report.

    adaptinf-calib --config /etc/adaptinf/adaptinfd.toml [--only device,link] [--report DIR]

Uses the daemon's own config, so it measures with the same engines (backend, emulated
slowdown), cloud link (CURVE included) and power sensor the daemon will use. Run it with
the daemon stopped (they would compete for the device), then `systemctl reload adaptinfd`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from adaptinf import __version__
from adaptinf.bundle import BundleError, load_bundle
from adaptinf.daemon.cloud_link import CloudLink
from adaptinf.daemon.config import ConfigError, load_config
from adaptinf.daemon.device_models import DeviceModels
from adaptinf.daemon.link_estimator import LinkEstimator
from adaptinf.daemon.power_monitor import PowerMonitor
from adaptinf.drivers.ina226 import SensorError
from adaptinf.drivers.power_sources import open_power_source
from adaptinf.calib import COMPONENTS
from adaptinf.extras import run_needing_extra

LINK_WAIT_S = 5.0
VALIDATION_SEED_OFFSET = 10_000   # held-out glyphs: a seed the bundle's training never used


def validation_frames(bundle, n: int, data: Path | None) -> tuple[np.ndarray, np.ndarray] | None:
    if data is not None:
        with np.load(data) as f:
            return f["images"], f["labels"]
    if bundle.data.get("dataset") == "glyphs":
        try:
            from adaptinf.toolchain.glyphs import make_glyphs
        except ImportError:
            print("no validation data: install adaptinf[build] for glyphs, or pass --data", file=sys.stderr)
            return None
        g = make_glyphs(n, seed=int(bundle.data.get("seed", 0)) + VALIDATION_SEED_OFFSET)
        return g.images, g.labels
    print("no validation data for this bundle's data set: pass --data FILE.npz (images, labels)", file=sys.stderr)
    return None


def build_rig(config_path: Path) -> tuple["Rig", object]:
    from adaptinf.calib.calibrate import Rig

    cfg = load_config(config_path)
    bundle = load_bundle(cfg.daemon.bundle)
    models = DeviceModels.load(bundle, cfg.device.engine, cfg.device.plan_cache, cfg.device.emulate_slowdown)
    estimator = LinkEstimator()
    link = None
    if cfg.cloud.endpoint:
        curve = (cfg.cloud.curve_secret_key, cfg.cloud.curve_server_key) if cfg.cloud.curve_secret_key else None
        link = CloudLink(cfg.cloud.endpoint, cfg.cloud.device_id + "-calib", estimator, curve=curve,
                         bundle_sha256=bundle.manifest_sha256).start()
        deadline = time.monotonic() + LINK_WAIT_S
        while not link.up and time.monotonic() < deadline:
            time.sleep(0.05)
        if not link.up:
            link.stop()
            raise RuntimeError(f"the cloud at {cfg.cloud.endpoint} did not answer: start adaptinf-cloud, or "
                               "calibrate the device alone with --only device,confidence")
    power = None
    if cfg.power.source != "none":
        try:
            power = PowerMonitor(open_power_source(cfg.power), cfg.power.rate_hz).start()
        except SensorError as exc:
            print(f"no power sensor ({exc}): energy will be model-based and marked so", file=sys.stderr)
    return Rig(bundle, models, link, estimator, power, cfg.device.compute_power_w), cfg


def main(argv: list[str] | None = None) -> int:
    class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
        """The module's text as written, and every option's default."""

    parser = argparse.ArgumentParser(prog="adaptinf-calib", description=__doc__, formatter_class=Formatter)
    parser.add_argument("--config", type=Path, default=Path("/etc/adaptinf/adaptinfd.toml"),
                        help="the daemon's config: bundle, cloud endpoint, power sensor and state directory")
    parser.add_argument("--out", type=Path, default=None, help="the profile to write (None: <state_dir>/profile.json)")
    parser.add_argument("--report", type=Path, default=None,
                        help="report folder, tables and plots (None: <state_dir>/calibration-report)")
    parser.add_argument("--only", default=",".join(COMPONENTS),
                        help=f"comma-separated components to measure, of {','.join(COMPONENTS)}")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per graph")
    parser.add_argument("--probes", type=int, default=5, help="link upload probes")
    parser.add_argument("--validation", type=int, default=500,
                        help="held-out frames for accuracy and confidence (rendered glyphs unless --data)")
    parser.add_argument("--data", type=Path, default=None,
                        help="your validation frames: an .npz with 'images' and 'labels' (None: rendered glyphs)")
    parser.add_argument("--mcu-port", default=None,
                        help="the MCU: /dev/adaptinf-stm32, or socket://host:port (QEMU); None: no MCU")
    parser.add_argument("--dsnn", type=Path, default=None,
                        help="dsNNs to measure on the MCU, as `adaptinf build dsnn` wrote them")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    args = parser.parse_args(argv)
    return run_needing_extra("adaptinf-calib", "calib", lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    # the plots (matplotlib), the layer regression (onnx, scipy): the 'calib' extra
    from adaptinf.calib.calibrate import calibrate
    from adaptinf.calib.report import write_report

    components = tuple(c.strip() for c in args.only.split(",") if c.strip())
    try:
        rig, cfg = build_rig(args.config)
        rig.mcu_port, rig.dsnn_dir = args.mcu_port, args.dsnn
    except (ConfigError, BundleError, RuntimeError) as exc:
        print(f"adaptinf-calib: {exc}", file=sys.stderr)
        return 2
    out = args.out or Path(cfg.daemon.state_dir) / "profile.json"
    report = args.report or Path(cfg.daemon.state_dir) / "calibration-report"
    try:
        validation = validation_frames(rig.bundle, args.validation, args.data) if "confidence" in components else None
        profile = calibrate(rig, out, components, args.runs, args.probes, validation)
        index = write_report(rig.bundle, profile, report)
    except (RuntimeError, ValueError) as exc:
        print(f"adaptinf-calib: {exc}", file=sys.stderr)
        return 2
    finally:
        if rig.link is not None:
            rig.link.stop()
        if rig.power is not None:
            rig.power.stop()
    print(f"profile: {out}  ({len(profile.partitions)} partitions, power {profile.device['power_source']})")
    regressions = profile.extra["regression"]
    for side, reg in regressions.items():
        if side != "predicted":
            print(f"layer regression ({side}, {reg['unit']}): leave-one-out error "
                  f"{reg['loo_mean_relative_error']:.1%} mean, {reg['loo_max_relative_error']:.1%} max")
    if regressions.get("predicted"):
        print("predicted by the layer regression (not measured): " + ", ".join(
            f"{name} {p['ms']:.2f} ms {p['mj']:.2f} mJ" for name, p in regressions["predicted"].items()))
    print(f"report:  {index}")
    if str(out) != cfg.daemon.profile:
        print(f"to use it: set [daemon].profile = \"{out}\" in {args.config}, then systemctl reload adaptinfd")
    else:
        print("to use it: systemctl reload adaptinfd")
    return 0


if __name__ == "__main__":
    sys.exit(main())
