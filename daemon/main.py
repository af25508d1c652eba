"""adaptinfd: run the daemon until SIGTERM/SIGINT.

    adaptinfd --config /etc/adaptinf/adaptinfd.toml
"""

from __future__ import annotations

import argparse
import logging
import sys

from adaptinf.bundle import BundleError
from adaptinf.daemon.config import ConfigError, load_config
from adaptinf.daemon.service import Daemon, StartupError
from adaptinf.engines import EngineError
from adaptinf.router_loop import wait_until_terminated

DEFAULT_CONFIG = "/etc/adaptinf/adaptinfd.toml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="adaptinfd", description="adaptinf per-frame inference daemon")
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="TOML config (default %(default)s)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s adaptinfd %(levelname)s %(name)s: %(message)s")
    try:
        daemon = Daemon(load_config(args.config)).start()
    except (ConfigError, BundleError, StartupError, EngineError) as exc:
        print(f"adaptinfd: {exc}", file=sys.stderr)
        return 2
    print(f"READY {daemon.api.bound_endpoint}", flush=True)  # parents (demo, tests) wait for this line
    wait_until_terminated()
    daemon.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
