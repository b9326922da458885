"""Process-wide settings that make long batched runs faster; the CLI applies them at start.

:func:`keep_freed_memory`: glibc's malloc returns freed memory at the top of its heap to the operating system
once more than a threshold is free there, and serves large requests with fresh ``mmap`` pages; both thresholds
adapt to the sizes freed so far. A workspace cycle at batch 256 allocates and frees megabytes of intermediate
tensors every cycle, so the heap is trimmed and grown again and every cycle pays for page faults on memory it
just gave back (``make bench`` prints the faults per cycle with and without). Keeping freed memory in the heap
(a fixed mmap threshold, no trimming) costs at most the peak of what the process had allocated, which it holds
anyway while it runs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (glibc's malloc.h)
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's largest allowed mmap threshold on 64-bit systems


def keep_freed_memory(mmap_threshold: int = _MMAP_THRESHOLD_MAX) -> bool:
    """Make glibc's malloc keep freed memory for reuse: requests below ``mmap_threshold`` bytes come from the heap,
    and the heap is never trimmed. Returns True when applied, False where it does not apply (not Linux with glibc).

    ``mmap_threshold`` in 1 .. 32 MiB (glibc refuses larger values). Process-wide and not undone; call it once,
    early (the CLI does; a notebook may)."""
    if not isinstance(mmap_threshold, int) or not 0 < mmap_threshold <= _MMAP_THRESHOLD_MAX:
        raise ValueError(f"mmap_threshold={mmap_threshold!r} is out of range; allowed: integer bytes in "
                         f"1..{_MMAP_THRESHOLD_MAX}")
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # another C library (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
