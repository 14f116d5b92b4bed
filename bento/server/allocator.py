"""The worker's memory allocator, set for large requests: freed memory kept for the next request.

glibc's malloc serves large blocks (128 KB and more at first; it raises the bar as they are freed: a request body,
simdjson's document, the float buffers of a 1,000-row call) with fresh mappings returned to the system when freed, and
trims the heap's free top as soon as it passes a few hundred KB: every large request then touches new pages, and each
first touch is a page fault. A 1,000-row V2 JSON request faulted about 2,000 pages (tests/service/test_v2.py), and the
benchmark's 1,000-row JSON workload went from 1.18x to 2.17x MLServer's once freed memory was kept (bench/run.py;
README, "Performance"). `keep(megabytes)` (READMISSION_KEEP_FREED_MB, called as the worker starts) serves blocks up to
MAX_HEAP_BLOCK from the heap and lets up to `megabytes` of free memory stay there for reuse, through glibc's `mallopt`;
elsewhere (another C library) it does nothing and says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

logger = logging.getLogger("readmission")
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
MAX_HEAP_BLOCK = 32 * 1024 * 1024  # the largest M_MMAP_THRESHOLD glibc takes on 64-bit systems
MIB = 1024 * 1024


def keep(megabytes: int) -> bool:
    """Keep up to `megabytes` of freed memory for reuse and take blocks up to MAX_HEAP_BLOCK from it; 0 leaves the
    allocator as it is. Whether the allocator was set."""
    if megabytes == 0:
        return False
    mallopt = getattr(ctypes.CDLL(ctypes.util.find_library("c")), "mallopt", None)
    if mallopt is None:
        logger.info("READMISSION_KEEP_FREED_MB: the C library has no mallopt (not glibc); its allocator is as it was")
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MAX_HEAP_BLOCK) and mallopt(M_TRIM_THRESHOLD, megabytes * MIB))
