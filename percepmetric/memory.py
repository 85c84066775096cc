"""Process memory settings for long loops of same-sized batches.

glibc's malloc hands large freed blocks back to the kernel, so a loop whose every call allocates
the same temporaries page-faults all of them in again, each call; worse, right after another
library has freed its own memory, the next call starts from an empty heap.
:func:`keep_freed_memory` keeps freed blocks in the process instead. Only a command that owns
the process calls it (``percepmetric bench``, for its batch loop); the library never does, so a
metric used from someone else's program leaves that program's malloc settings alone.

It is process-wide and lasts until the process exits: the peak memory of a loop is unchanged,
but the memory freed after the peak stays with the process (up to the limit) rather than going
back to the system. Set the environment variable ``PERCEPMETRIC_KEEP_FREED_MEMORY=0`` before
the first call to leave malloc's settings alone (then nothing here changes them).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

from .options import parse_bool

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
OPT_OUT_VARIABLE = "PERCEPMETRIC_KEEP_FREED_MEMORY"
_applied = False


def keep_freed_memory(limit_bytes: int = 256 << 20) -> bool:
    """Ask glibc's malloc to keep freed blocks of up to ``limit_bytes`` for reuse.

    By default glibc hands large freed blocks (a batch's temporaries: a few MB each) back to
    the kernel, so the next batch, which allocates the same sizes, page-faults all of them in
    again. Measured on a 2-core machine, those faults took up to 60% of the time of an L2-Lab
    or SSIM batch. Raising the mmap and trim thresholds keeps the blocks in the process: the
    loop's peak memory is unchanged, but it is held until the process exits.

    Process-wide and idempotent; returns True when glibc accepted the settings (False on
    other platforms and C libraries, and when ``PERCEPMETRIC_KEEP_FREED_MEMORY=0`` opts out:
    nothing changes then).
    """
    global _applied
    if _applied:
        return True
    if parse_bool(os.environ.get(OPT_OUT_VARIABLE, "")) is False:
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    _applied = (bool(mallopt(_M_MMAP_THRESHOLD, int(limit_bytes)))
                and bool(mallopt(_M_TRIM_THRESHOLD, 2 * int(limit_bytes))))
    return _applied
