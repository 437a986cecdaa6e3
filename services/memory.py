"""Giving memory back after big requests.

A 10-minute /extract makes glibc's allocator and numpy grow the heap by hundreds of MB; freed,
that memory stays mapped in the worker (glibc keeps free heap pages and raises its mmap
threshold after large frees), so every worker settles at the size of its largest request.
`release` asks glibc to return free pages to the system once a worker is idle again; elsewhere
(non-glibc) it does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _libc() -> Any | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def release() -> bool:
    """Return the allocator's free memory to the system; True where that is possible."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def rss_bytes() -> int:
    """This process's resident set size (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
