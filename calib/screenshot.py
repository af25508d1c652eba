"""A picture of the calibration report as a browser shows it: headless Chromium, for docs and tests."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


def screenshot(page: Path | str, png: Path | str, width: int = 1200, height: int = 3000) -> Path:
    """Render `page` (an HTML file) to `png`; RuntimeError naming what to install if no Chromium."""
    browser = find_browser()
    if browser is None:
        raise RuntimeError("no headless Chromium found: apt install chromium (or google-chrome)")
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="adaptinf-chromium-") as profile:   # never the user's profile
        result = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={profile}",
             f"--window-size={width},{height}", f"--screenshot={png}", Path(page).resolve().as_uri()],
            capture_output=True, text=True, timeout=120)
    if not png.is_file():
        raise RuntimeError(f"{browser} wrote no screenshot (exit {result.returncode}): {result.stderr[-500:]}")
    return png
