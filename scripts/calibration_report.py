#!/usr/bin/env python3
"""Calibrate the demo bundle on emulated hardware and picture the report for docs/calibration.md.

    python scripts/calibration_report.py [--out build/calib-report] [--png docs/images/calibration-report.png]

The rig is the test suite's: onnxruntime engines slowed 10x (a device slower than its
cloud), an emulated INA226 reading a steady 6 W board, a cloud worker behind a shaped 4G
link. The report (index.html + PNGs) goes to --out; headless Chromium renders it to --png.
"""

import argparse
import sys
import time
from pathlib import Path

from adaptinf.bundle import load_bundle
from adaptinf.calib.calibrate import Rig, calibrate
from adaptinf.calib.report import write_report
from adaptinf.calib.screenshot import screenshot
from adaptinf.cloud.worker import CloudWorker
from adaptinf.daemon.cloud_link import CloudLink
from adaptinf.daemon.device_models import DeviceModels
from adaptinf.daemon.link_estimator import LinkEstimator
from adaptinf.daemon.power_monitor import PowerMonitor
from adaptinf.drivers.ina226 import INA226
from adaptinf.drivers.power_sources import Ina226Source
from adaptinf.rig.ina226_emulator import Ina226Emulator
from adaptinf.rig.link_shaper import LINK_PROFILES, LinkShaper
from adaptinf.toolchain.glyphs import make_glyphs

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundle", type=Path, default=REPO / "bundles" / "glyphnet")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "calib-report")
    parser.add_argument("--png", type=Path, default=REPO / "docs" / "images" / "calibration-report.png")
    args = parser.parse_args()
    bundle = load_bundle(args.bundle)
    worker = CloudWorker(bundle, "tcp://127.0.0.1:*").start()
    host, port = worker.bound_endpoint.rsplit("//", 1)[1].rsplit(":", 1)
    shaper = LinkShaper((host, int(port)), LINK_PROFILES["4g"]).start()
    chip = INA226(Ina226Emulator(lambda t: (6.0 / 5.0 * 0.002, 5.0), time.monotonic))
    chip.configure(averaging=1)
    chip.calibrate(0.002, 10.0)
    power = PowerMonitor(Ina226Source(chip), rate_hz=200).start()
    estimator = LinkEstimator()
    link = CloudLink(shaper.endpoint, "calib-report", estimator).start()
    try:
        deadline = time.monotonic() + 5
        while not link.up and time.monotonic() < deadline:
            time.sleep(0.02)
        rig = Rig(bundle, DeviceModels.load(bundle, "onnxruntime", str(args.out / "plans"), 10.0), link, estimator,
                  power, 5.0)
        glyphs = make_glyphs(300, seed=bundle.data["seed"] + 10_000)
        profile = calibrate(rig, args.out / "profile.json", runs=15, probes=6,
                            validation=(glyphs.images, glyphs.labels), progress=True)
        index = write_report(bundle, profile, args.out)
    finally:
        link.stop()
        power.stop()
        shaper.stop()
        worker.stop()
    print(f"report: {index}")
    print(f"screenshot: {screenshot(index, args.png, height=2600)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
