"""The LPIPS weight file training writes: what ``percepmetric train`` hands to ``LPIPS(weights=PATH)``.

A ``torch.save``'d dict of plain data, so that it loads with ``torch.load(weights_only=True)``::

    {"format": "percepmetric-lpips", "version": 1, "net": "alex", "variant": "lin",
     "calibration": {"0": (C_0,), "1": (C_1,), ...},      the channel weights w_l, float32
     "trunk": the trunk's state dict (float32), or None,   None: torchvision's ImageNet trunk
     "options": {"eps": ..., "trunk_source": ...}, "meta": {...}}

The writer is here, beside the training that decides what goes into a file (which trunks were
trained, the run's ``meta``); the reader, :func:`percepmetric.metrics.lpips.load_lpips_checkpoint`,
is beside the metric, which needs only net, variant, calibration and trunk from the file and may
not import ``train/``. Both use the metric module's format tag and version.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..checkpoints import save_checkpoint
from ..errors import InputError
from ..metrics.lpips import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, LPIPS

__all__ = ["save_lpips_checkpoint"]


def _cpu_float_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's state dict as float32 copies on the CPU (whatever device and dtype it runs in)."""
    return {k: v.detach().to("cpu", torch.float32, copy=True) for k, v in module.state_dict().items()}


def save_lpips_checkpoint(metric: LPIPS, path: str | os.PathLike, meta: dict | None = None) -> Path:
    """Write ``metric``'s weights to ``path`` atomically (temporary file + rename, the file following
    the umask); returns the path.

    ``lin`` and ``baseline`` models on torchvision's ImageNet trunk store ``trunk=None`` (the
    trunk is torchvision's file, not a copy); every other model stores its trunk. ``meta`` should
    hold plain Python values (str, numbers, bools, lists, dicts) so the file loads with
    ``torch.load(weights_only=True)``. Only an :class:`~percepmetric.metrics.lpips.LPIPS` has this
    format (an ST-LPIPS network is the authors' file, not something training makes).
    """
    if not isinstance(metric, LPIPS):
        raise InputError(f"save_lpips_checkpoint: expected an LPIPS metric, got {type(metric).__name__}")
    imagenet_trunk = metric.variant in ("lin", "baseline") and metric.trunk_source == "torchvision"
    state = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "net": metric.net,
        "variant": metric.variant,
        "calibration": _cpu_float_state(metric.calibration),
        "trunk": None if imagenet_trunk else _cpu_float_state(metric.trunk),
        "options": {"eps": metric.distance.eps, "trunk_source": metric.trunk_source},
        "meta": dict(meta or {}),
    }
    return save_checkpoint(state, path)
