"""sd_notify(3) without libsystemd: READY, RELOADING, STOPPING, WATCHDOG, STATUS.

A datagram to the AF_UNIX socket named by $NOTIFY_SOCKET ('@' = abstract namespace).
The watchdog interval is half of $WATCHDOG_USEC (sd_watchdog_enabled(3)); the pings
come from the daemon's main loop after a health check, never from a helper thread
that would keep pinging while the work hangs. Failures are logged, not swallowed
(the `sdnotify` package hides them unless debug=True).
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Mapping

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, environ: Mapping[str, str] = os.environ):
        path = environ.get("NOTIFY_SOCKET", "")
        self.address = ("\0" + path[1:]) if path.startswith("@") else path
        usec = environ.get("WATCHDOG_USEC", "")
        pid = environ.get("WATCHDOG_PID", "")
        watchdog_for_us = usec.isdigit() and (not pid or pid == str(os.getpid()))
        self.watchdog_interval_s = int(usec) / 2e6 if watchdog_for_us and int(usec) > 0 else None
        self._sock: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, message: str) -> bool:
        if not self.enabled:
            return False
        try:
            if self._sock is None:
                # non-blocking: a notify socket nobody reads must never stall the daemon
                self._sock = socket.socket(socket.AF_UNIX,
                                           socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
            self._sock.sendto(message.encode(), self.address)
            return True
        except OSError as exc:
            if not self._warned:
                log.warning("sd_notify to %r failed: %s", self.address, exc)
                self._warned = True
            return False

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def reloading(self) -> bool:
        return self.notify("RELOADING=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def status(self, text: str, extend_timeout_s: float | None = None) -> bool:
        """What `systemctl status` shows while the unit starts (warm-up, engine builds); with
        extend_timeout_s, the start-up timeout restarts at that many seconds from now (a
        TensorRT build can take minutes)."""
        extend = f"\nEXTEND_TIMEOUT_USEC={int(extend_timeout_s * 1e6)}" if extend_timeout_s else ""
        return self.notify(f"STATUS={text}{extend}")
