"""Process-wide allocator settings for the array-heavy commands.

The KS test allocates and frees arrays of a few megabytes per feature. glibc serves those with fresh
mmap()s by default and returns them on free, so every array is paid for again in page faults: a third of
`retrain drift`'s time at a million rows. Keeping freed memory in the heap for re-use removes that.
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD = 256 << 20  # only allocations above this get their own mapping
TRIM_THRESHOLD = 1 << 30  # free memory kept for re-use before the heap is trimmed
TOP_PAD = 256 << 20


def reuse_freed_memory() -> bool:
    """Tune glibc malloc for many large short-lived arrays; False (and no change) elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    settings = ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD))
    applied = all(libc.mallopt(option, value) == 1 for option, value in settings)
    log.debug("malloc tuned for large arrays: %s", applied)
    return applied
