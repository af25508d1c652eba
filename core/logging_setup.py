"""Logs for people and for the journal.

Under systemd ($JOURNAL_STREAM is set when stderr is connected to the journal) every line
starts with its syslog priority as `<N>` (sd-daemon(3)), so `journalctl -p warning`
works and the journal stores the level; the line carries logger=... and the message.
Elsewhere: a timestamped line with the same fields.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Mapping

SYSLOG_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}


class JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        priority = SYSLOG_PRIORITY.get(record.levelno, 6)
        text = f"<{priority}>logger={record.name} {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info).replace("\n", f"\n<{priority}>")
        return text


LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_level(text: str) -> str:
    """argparse type for --log-level: a level name, any case; else a one-line usage error."""
    import argparse

    if text.upper() not in LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a log level; choose one of {', '.join(LEVELS)}")
    return text.upper()


def configure(level: str, program: str, environ: Mapping[str, str] = os.environ) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {program} %(levelname)s logger=%(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
