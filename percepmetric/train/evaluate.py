"""Scoring a trained metric on 2AFC triplets (the end of a training run, and the tests).

The 2AFC score of a metric on a split is the mean, over triplets, of the share of people who
agree with it (Zhang et al. 2018, Sec. 2.2; ties count one half), computed by the benchmark's
:func:`percepmetric.bench.scores.two_afc_score`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data.bapps import to_tensor

__all__ = ["metric_distances", "two_afc", "evaluate_weights", "present_val_splits"]


def metric_distances(metric, ref: np.ndarray, p0: np.ndarray, p1: np.ndarray, batch_size: int = 100,
                     device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(d0, d1)``, each ``(N,)`` on the CPU: ``metric``'s distances of uint8 ``(N,H,W,3)`` triplets."""
    device = device or torch.device("cpu")
    metric = metric.to(device)
    d0, d1 = [], []
    with torch.inference_mode():
        for start in range(0, len(ref), batch_size):
            r, a, b = (to_tensor(x[start:start + batch_size], device) for x in (ref, p0, p1))
            d0.append(metric.to_distance(metric(r, a)).float().cpu())
            d1.append(metric.to_distance(metric(r, b)).float().cpu())
    return torch.cat(d0), torch.cat(d1)


def two_afc(metric, split, batch_size: int = 100, device: torch.device | None = None) -> float:
    """2AFC score in [0, 1] of ``metric`` on a split with ``ref, p0, p1, judge``."""
    from ..bench.scores import two_afc_score

    d0, d1 = metric_distances(metric, split.ref, split.p0, split.p1, batch_size, device)
    return two_afc_score(d0.numpy(), d1.numpy(), np.asarray(split.judge))


def present_val_splits(root: str | Path | None) -> list[str]:
    """The 2AFC validation splits (``val/*``) whose folders exist under the BAPPS ``root``."""
    from ..data import bapps

    base = bapps.resolve_root(root)
    return [name for name in bapps.VAL_SPLITS if bapps.split_dir(base, name).is_dir()]


def evaluate_weights(weights: str | Path, root: str | Path | None, splits: list[str], folders: list[str],
                     device: str | None = None, batch_size: int = 100) -> list[dict]:
    """Reload the metric from its weight file (``create_metric("lpips", weights=...)``) and score it.

    Returns ``[{"split": name, "triplets": N, "2afc": score}, ...]`` for each named 2AFC split
    under ``root`` and each triplet folder.
    """
    from ..data import bapps
    from ..devices import resolve_device
    from ..registry import create_metric

    metric = create_metric("lpips", weights=str(weights))
    dev = resolve_device(device) if device else None
    rows = []
    sources = [(name, lambda name=name: bapps.load_two_afc(bapps.resolve_root(root), name)) for name in splits]
    sources += [(str(f), lambda f=f: bapps.load_two_afc_folder(f)) for f in folders]
    for name, load in sources:
        split = load()
        rows.append({"split": name, "triplets": len(split.judge), "2afc": two_afc(metric, split, batch_size, dev)})
    return rows
