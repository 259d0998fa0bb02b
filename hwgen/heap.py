"""Large blocks freed back to the system: a bounded footprint for loops of big temporaries.

glibc serves an allocation from ``mmap`` (returned to the system when freed) only above a
threshold that it raises, up to 32 MiB, each time such a block is freed. A loop that
allocates tens of megabytes per step (the QONNX check: every node of every batch, its
tensors created anew) then takes them from the heap, which fragments and grows by about
1 MiB a step: 480 images of a 512x512 graph held 800 MiB. :func:`fixed_mmap_threshold`
pins the threshold, so such blocks are mapped and unmapped every time (their footprint
measured the same run at 230 MiB).
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_MMAP_THRESHOLD = -3  # mallopt's parameter number in glibc's malloc.h
_applied = False


def fixed_mmap_threshold(size: int = 1 << 20) -> bool:
    """Allocations of ``size`` bytes or more are mapped and unmapped from now on, in the
    whole process; returns whether that took effect (only under glibc; once per process)."""
    global _applied
    if _applied:
        return True
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to pin
        return False
    if mallopt is None:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, size))
    return _applied
