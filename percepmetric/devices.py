"""Where work runs: which torch device (one rule, one error message) and how many CPUs.

``auto`` (or None) means CUDA when this machine has a usable GPU, else the CPU. ``cpu``,
``cuda`` and ``cuda:N`` are taken as given, after checking that they exist here, so that a
typo or a missing GPU is one line naming the option, before anything is read or written.

:func:`usable_cpus` is the one count of CPUs that thread pools (image decoding, header
probing) are sized from.
"""

from __future__ import annotations

import os

import torch

from .errors import InputError

__all__ = ["decoding_threads", "resolve_device", "usable_cpus"]


def usable_cpus() -> int:
    """The CPUs this process may run on, at least 1: ``os.process_cpu_count()`` (Python 3.13+),
    else the size of the affinity mask (``os.sched_getaffinity``, Linux), else ``os.cpu_count()``.

    A job started with ``taskset``, in a container limited by cpuset, or by a scheduler that
    pins it to a few cores sees the cores it may use, not every core of the machine: threads
    beyond those only wait for each other.
    """
    process_cpu_count = getattr(os, "process_cpu_count", None)
    if process_cpu_count is not None:
        return process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def decoding_threads(workers: int | None) -> int:
    """How many threads read and decode images: ``workers`` as given (at least 1), by default
    the usable CPUs, at most 8 (beyond that, decoding outruns any metric or network)."""
    return max(1, workers if workers is not None else min(8, usable_cpus()))


def resolve_device(spec: str | torch.device | None = "auto", option: str = "--device") -> torch.device:
    """``auto`` (or None) -> CUDA when available, else the CPU; ``cpu``, ``cuda``, ``cuda:N`` as given.

    Raises :class:`InputError` naming ``option`` for anything else, for CUDA on a machine
    without a usable GPU, and for a GPU index that does not exist.
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("auto", "")):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec.strip().lower() if isinstance(spec, str) else spec)
    except (RuntimeError, TypeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda") or (device.type == "cpu" and device.index not in (None, 0)):
        raise InputError(f"{option} {spec!r}: expected auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"{option} {spec}: CUDA is not available on this machine (use --device cpu or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(f"{option} {spec}: no such GPU (this machine has {torch.cuda.device_count()})")
    return device
