"""adaptinfd: run the daemon under systemd (Type=notify) or by hand.

    adaptinfd --config /etc/adaptinf/adaptinfd.toml

The main loop owns the service's life: READY=1 once serving; every half watchdog
interval, WATCHDOG=1 only if the health check passes (a hung API or worker thread
stops the pings and systemd restarts the unit); SIGHUP re-reads the config file and
the profile (RELOADING=1 ... READY=1); SIGTERM or SIGINT stops taking frames,
answers every frame in flight, and exits 0 (STOPPING=1); during start-up they stop it
where it stands, before READY. A thread that dies makes the daemon exit 1, so that
systemd restarts it rather than leave a process that cannot serve. Exit 2: the
config, bundle or profile is wrong (the unit does not restart on it).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from adaptinf import __version__, memory
from adaptinf.bundle import BundleError
from adaptinf.daemon.config import ConfigError, load_config
from adaptinf.daemon.service import Daemon, StartupError
from adaptinf.daemon.systemd_notify import Notifier
from adaptinf import logging_setup
from adaptinf.engines import EngineError

DEFAULT_CONFIG = "/etc/adaptinf/adaptinfd.toml"
IDLE_TICK_S = 1.0   # health-check period without a systemd watchdog

log = logging.getLogger("adaptinfd")


def config_of(args: argparse.Namespace):
    """The config file with the command line's settings over it: `adaptinfd --bundle DIR` runs
    with no file at all (defaults, e.g. by hand while trying a model)."""
    overrides = {key: value for key, value in ((("daemon", "bundle"), args.bundle),
                                               (("daemon", "api_endpoint"), args.api),
                                               (("cloud", "endpoint"), args.cloud),
                                               (("daemon", "state_dir"), args.state_dir)) if value is not None}
    path = args.config
    if path is None:
        path = DEFAULT_CONFIG if not overrides or Path(DEFAULT_CONFIG).exists() else None
    return load_config(path, overrides)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="adaptinfd", description="adaptinf per-frame inference daemon")
    parser.add_argument("--config", default=None,
                        help=f"TOML config (default {DEFAULT_CONFIG}; none at all when --bundle is given and it is "
                             "not there)")
    parser.add_argument("--bundle", default=None, help="the bundle to serve ([daemon].bundle)")
    parser.add_argument("--api", default=None, metavar="ENDPOINT",
                        help="where local apps connect ([daemon].api_endpoint), e.g. ipc:///tmp/adaptinf.sock")
    parser.add_argument("--cloud", default=None, metavar="ENDPOINT",
                        help="the adaptinf-cloud worker ([cloud].endpoint), e.g. tcp://127.0.0.1:5601")
    parser.add_argument("--state-dir", default=None, help="profile and state ([daemon].state_dir)")
    parser.add_argument("--log-level", default="INFO", type=logging_setup.log_level,
                        help=f"one of {', '.join(logging_setup.LEVELS)} (default %(default)s)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    args = parser.parse_args(argv)
    logging_setup.configure(args.log_level, "adaptinfd")

    memory.keep_large_blocks_returnable()

    wake = threading.Event()
    pending: set[int] = set()
    starting = True

    def on_signal(signum, _frame) -> None:
        pending.add(signum)
        wake.set()
        if starting and signum != signal.SIGHUP:
            raise StoppedDuringStart(signal.Signals(signum).name)  # unwinds start-up where it stands

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)

    notifier = Notifier()
    daemon = None
    try:
        daemon = Daemon(config_of(args), notifier=notifier)
        daemon.start()
        starting = False
    except StoppedDuringStart as exc:
        starting = False
        print(f"adaptinfd: {exc} during start-up: stopped before serving", file=sys.stderr)
        _stop_quietly(daemon)
        return 0
    except (ConfigError, BundleError, StartupError, EngineError) as exc:
        starting = False
        print(f"adaptinfd: {exc}", file=sys.stderr)
        _stop_quietly(daemon)
        return 2
    if pending & {signal.SIGTERM, signal.SIGINT}:  # arrived between the last step and here
        daemon.stop()
        return 0
    print(f"READY {daemon.api.bound_endpoint}", flush=True)  # parents (demo, tests) wait for this line
    notifier.ready(f"serving {daemon.bundle.name} on {daemon.api.bound_endpoint}")
    tick = notifier.watchdog_interval_s or IDLE_TICK_S
    while True:
        wake.wait(tick)
        wake.clear()
        if pending & {signal.SIGTERM, signal.SIGINT}:
            name = signal.Signals(min(pending & {signal.SIGTERM, signal.SIGINT})).name
            log.info("%s: stopping (new frames get UNAVAILABLE; queued ones are answered first)", name)
            notifier.stopping()
            daemon.stop()
            log.info("stopped")
            return 0
        if signal.SIGHUP in pending:
            pending.discard(signal.SIGHUP)
            notifier.reloading()
            try:
                daemon.reload(config_of(args))
            except ConfigError as exc:
                log.error("SIGHUP: config refused, keeping the running one: %s", exc)
            except Exception as exc:  # whatever broke, the running daemon keeps serving
                log.exception("SIGHUP: reload failed, keeping the running config: %s", exc)
            notifier.ready()
        daemon.tick()
        problem = daemon.health_problem()
        if problem is not None:
            # a dead thread leaves a process that cannot serve: exit, and systemd restarts it
            log.critical("unhealthy, exiting for a restart: %s", problem)
            notifier.stopping()
            daemon.stop()
            return 1
        notifier.watchdog()


class StoppedDuringStart(Exception):
    def __init__(self, signal_name: str):
        super().__init__(signal_name)


def _stop_quietly(daemon: "Daemon | None") -> None:
    """Release what a start that did not finish had opened (threads, sockets, the lock file)."""
    if daemon is None:
        return
    try:
        daemon.stop()
    except Exception as exc:  # exiting anyway: say what could not be closed
        log.warning("while stopping a half-started daemon: %s: %s", type(exc).__name__, exc)

if __name__ == "__main__":
    sys.exit(main())
