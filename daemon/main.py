"""adaptinfd: run the daemon under systemd (Type=notify) or by hand.

    adaptinfd --config /etc/adaptinf/adaptinfd.toml

The main loop owns the service's life: READY=1 once serving; every half watchdog
interval, WATCHDOG=1 only if the health check passes (a hung API or worker thread
stops the pings and systemd restarts the unit); SIGHUP re-reads the config file and
the profile (RELOADING=1 ... READY=1); SIGTERM or SIGINT stops taking frames,
answers every frame in flight, and exits 0 (STOPPING=1).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from adaptinf import __version__
from adaptinf.bundle import BundleError
from adaptinf.daemon.config import ConfigError, load_config
from adaptinf.daemon.service import Daemon, StartupError
from adaptinf.daemon.systemd_notify import Notifier
from adaptinf.daemon import logging_setup
from adaptinf.engines import EngineError

DEFAULT_CONFIG = "/etc/adaptinf/adaptinfd.toml"
IDLE_TICK_S = 1.0   # health-check period without a systemd watchdog

log = logging.getLogger("adaptinfd")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="adaptinfd", description="adaptinf per-frame inference daemon")
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="TOML config (default %(default)s)")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    args = parser.parse_args(argv)
    logging_setup.configure(args.log_level, "adaptinfd")

    wake = threading.Event()
    pending: set[int] = set()

    def on_signal(signum, _frame) -> None:
        pending.add(signum)
        wake.set()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)

    notifier = Notifier()
    try:
        daemon = Daemon(load_config(args.config)).start()
    except (ConfigError, BundleError, StartupError, EngineError) as exc:
        print(f"adaptinfd: {exc}", file=sys.stderr)
        return 2
    print(f"READY {daemon.api.bound_endpoint}", flush=True)  # parents (demo, tests) wait for this line
    notifier.ready(f"serving {daemon.bundle.name} on {daemon.api.bound_endpoint}")
    tick = notifier.watchdog_interval_s or IDLE_TICK_S
    while True:
        wake.wait(tick)
        wake.clear()
        if pending & {signal.SIGTERM, signal.SIGINT}:
            notifier.stopping()
            daemon.stop()
            return 0
        if signal.SIGHUP in pending:
            pending.discard(signal.SIGHUP)
            notifier.reloading()
            try:
                daemon.reload(load_config(args.config))
            except ConfigError as exc:
                log.error("SIGHUP: config refused, keeping the running one: %s", exc)
            notifier.ready()
        problem = daemon.health_problem()
        if problem is None:
            notifier.watchdog()
        else:
            log.error("unhealthy, withholding the watchdog ping: %s", problem)


if __name__ == "__main__":
    sys.exit(main())
