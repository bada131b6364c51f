"""What a worker process gives back after a job, and how much it still holds.

The models' own pools are emptied where they are used (Real-ESRGAN's ncnn pools when an upscale ends, ONNX
Runtime's arena shrunk at the end of each DDColor pass). What is left is glibc's: memory freed by the process that
malloc keeps in its heaps for later. `malloc_trim(0)` returns every whole free page of every heap to the system.
Measured in docs/benchmarks.md ("Worker memory"): alone it returns little, after the pools are emptied it returns
30-130 MB more.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from collections.abc import Callable

import psutil

log = logging.getLogger(__name__)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where the C library has none (musl, macOS, Windows)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the symbols the process already has: its C library's among them
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def resident_bytes() -> int:
    """This process's resident set size (RSS)."""
    return int(psutil.Process().memory_info().rss)


def give_back() -> int:
    """Return the C heap's free pages to the system; then the process's resident set size, in bytes."""
    trim = _malloc_trim()
    if trim is not None:
        try:
            trim(0)
        except OSError as exc:  # never a reason to fail a worker
            log.debug("malloc_trim failed: %s", exc)
    return resident_bytes()
