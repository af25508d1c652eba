"""Give freed memory back to the system (glibc), so a burst of large messages leaves no RSS behind.

glibc raises its mmap threshold after large blocks are freed (up to 32 MiB), so later
large blocks come from the heap and stay there after free: a client that sends one
huge message would leave the daemon holding that much for good. Fixing the threshold
keeps large blocks (ZeroMQ frames, tensors) in their own mappings, returned on free;
`release_freed` trims what smaller blocks leave in the heaps. Elsewhere (musl, macOS)
both are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3             # mallopt's parameter number (malloc.h)
MMAP_THRESHOLD_BYTES = 256 * 1024


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 -- both exist only in glibc
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _glibc()


def keep_large_blocks_returnable() -> bool:
    """Call once at start-up; True when glibc took the setting."""
    if _LIBC is None:
        return False
    ok = bool(_LIBC.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    if not ok:
        log.warning("mallopt(M_MMAP_THRESHOLD) refused: freed large messages may stay resident")
    return ok


def release_freed() -> None:
    """Return free heap pages to the system now (after dropping a large message)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
