"""Optional extras: the sentence a user sees when a command's extra is not installed.

A device install (`pip install adaptinf`) carries only the daemon's run-time set. The
build toolchain, calibration, the demo and the Triton paths need more; when one of
those commands meets a missing module it says which extra brings it, instead of a
traceback. Whatever module is missing, the advice is the command's extra: that is
what the user can act on.
"""

from __future__ import annotations

import sys
from typing import Callable

EXIT_MISSING_EXTRA = 2   # like a config error: retrying without a change cannot help


def missing_extra_message(program: str, extra: str, module: str | None) -> str:
    missing = f" (missing module: {module})" if module else ""
    return f"{program} needs the '{extra}' extra: pip install 'adaptinf[{extra}]'{missing}"


def run_needing_extra(program: str, extra: str, command: Callable[[], int]) -> int:
    """Run `command`; a module it cannot import becomes one line naming the extra, and exit 2.

    A missing module of adaptinf itself is a broken install, not a missing extra: that one
    propagates.
    """
    try:
        return command()
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] == "adaptinf":
            raise
        print(missing_extra_message(program, extra, exc.name), file=sys.stderr)
        return EXIT_MISSING_EXTRA
