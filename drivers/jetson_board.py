"""The board as jtop shows it: GPU load, temperatures, clocks and the power mode (nvpmodel).

Read through jetson-stats (the `jetson` extra) when it is installed and its service runs;
`adaptinf status` then shows what a Jetson user checks in jtop. One jtop client per
daemon, started once: jtop streams its readings, and status reads the latest.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def snapshot_from_jtop(stats: dict, gpu: dict | None = None, board: dict | None = None) -> dict:
    """jtop's `stats` dict (GPU load in %, "Temp <zone>" in °C, "nvp model", "jetson_clocks"),
    its `gpu` dict (per GPU, freq.cur in kHz) and `board` -> the status' "board" entry."""
    temperatures = {k[len("Temp "):]: float(v) for k, v in stats.items()
                    if k.startswith("Temp ") and isinstance(v, (int, float)) and v > -256}   # -256: offline
    clocks = {}
    for name, entry in (gpu or {}).items():
        try:
            clocks[f"GPU {name}"] = float(entry["freq"]["cur"]) / 1e3
        except (KeyError, TypeError, ValueError):
            pass
    load = stats.get("GPU")
    model = ((board or {}).get("hardware") or {}).get("Model") or ((board or {}).get("hardware") or {}).get("Module")
    return {"source": "jtop", "model": model or "Jetson", "power_mode": str(stats.get("nvp model", "?")),
            "jetson_clocks": str(stats.get("jetson_clocks", "?")),
            "gpu_load_percent": float(load) if isinstance(load, (int, float)) else None,
            "temperatures_c": temperatures, "clocks_mhz": clocks}


class JetsonBoard:
    def __init__(self, jetson: Any):
        self._jetson = jetson

    @classmethod
    def open(cls) -> "JetsonBoard | None":
        """None (quietly) where jetson-stats is not installed; a warning where it is but its
        service does not answer."""
        try:
            from jtop import jtop  # the 'jetson' extra
        except ImportError:
            return None
        try:
            jetson = jtop()
            jetson.start()
        except Exception as exc:  # jtop's own JtopException: the jtop service is not running
            log.warning("jetson-stats is installed but jtop does not answer (%s): `systemctl status jtop`", exc)
            return None
        return cls(jetson)

    def snapshot(self) -> dict | None:
        try:
            return snapshot_from_jtop(dict(self._jetson.stats), dict(self._jetson.gpu), dict(self._jetson.board))
        except Exception as exc:  # the jtop service went away: status still answers
            return {"source": "jtop", "error": str(exc)}

    def close(self) -> None:
        try:
            self._jetson.close()
        except Exception:  # closing a dead client: nothing left to release
            pass
