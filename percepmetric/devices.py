"""Which torch device a command or function runs on: one rule, one error message.

``auto`` (or None) means CUDA when this machine has a usable GPU, else the CPU. ``cpu``,
``cuda`` and ``cuda:N`` are taken as given, after checking that they exist here, so that a
typo or a missing GPU is one line naming the option, before anything is read or written.
"""

from __future__ import annotations

import torch

from .errors import InputError

__all__ = ["resolve_device"]


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
