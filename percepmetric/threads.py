"""Work split over threads inside one call, without touching the process's thread settings.

Some workloads are many small steps (FSIM's chunks, the benchmark's batches of 64x64 patches):
run with torch's own multi-threaded ops, each step is a fork-join, and on a busy machine a
fork-join waits whenever one of its threads has been descheduled. Running whole pieces side by
side, each with single-threaded ops, avoids that: measured on a loaded 2-core machine, FSIM on
256 pairs of 64x64 took 5-15 s the first way against 1-2 s the second.

``torch.set_num_threads(1)`` would do it, but it is process-wide: it would change the thread
count of every other thread of the caller's program while the work runs (a data-loader thread,
the training loop). The worker threads here instead set their *own* OpenMP thread count (an
OpenMP setting is per thread): the caller's threads keep theirs, and the setting ends with the
worker thread. Where that cannot be done (torch not built with GNU OpenMP), :func:`map_side_by_side`
runs the pieces one after the other with torch's ops as they are: the same numbers, no threads.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

__all__ = ["map_side_by_side", "side_by_side_pool", "single_threaded_ops_available"]

T = TypeVar("T")
R = TypeVar("R")


@functools.cache
def _omp_set_num_threads() -> Callable[[int], object] | None:
    """``omp_set_num_threads`` of the OpenMP runtime torch's CPU ops use, or None."""
    if "OpenMP" not in torch.__config__.parallel_info():
        return None
    folder = os.path.join(os.path.dirname(torch.__file__), "lib")
    candidates = sorted(glob.glob(os.path.join(folder, "libgomp*.so*"))) + ["libgomp.so.1"]
    for candidate in candidates:
        try:
            function = ctypes.CDLL(candidate).omp_set_num_threads
        except (OSError, AttributeError):
            continue
        function.argtypes, function.restype = [ctypes.c_int], None
        return function
    return None


def single_threaded_ops_available() -> bool:
    """Whether a thread can make its own torch CPU ops single-threaded (see the module's doc)."""
    return _omp_set_num_threads() is not None


def _single_threaded_ops_in_this_thread() -> None:
    """Make torch's CPU ops single-threaded in the calling thread only (a pool's initializer)."""
    set_threads = _omp_set_num_threads()
    if set_threads is not None:
        torch.get_num_threads()  # torch sets a new thread's OpenMP count on first use: let it happen first
        set_threads(1)


def side_by_side_pool(workers: int) -> ThreadPoolExecutor:
    """A thread pool whose threads run torch's CPU ops single-threaded (their own setting only)."""
    return ThreadPoolExecutor(max_workers=workers, initializer=_single_threaded_ops_in_this_thread,
                              thread_name_prefix="percepmetric")


def map_side_by_side(compute: Callable[[T], R], parts: Iterable[T], workers: int) -> Iterator[R]:
    """``compute(part)`` for each part, in order; with ``workers > 1`` and single-threaded ops
    available, the parts run in that many threads at once, each with single-threaded ops.
    Grad and inference modes are thread-local in torch, so they are carried into the workers."""
    parts = list(parts)
    if workers <= 1 or len(parts) <= 1 or not single_threaded_ops_available():
        yield from (compute(part) for part in parts)
        return
    inference, grad = torch.is_inference_mode_enabled(), torch.is_grad_enabled()

    def run(part: T) -> R:
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            return compute(part)

    with side_by_side_pool(workers) as pool:
        yield from pool.map(run, parts)
