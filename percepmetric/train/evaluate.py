"""Scoring a trained metric on 2AFC triplets (the end of a training run, and the tests).

The 2AFC score of a metric on a split is the mean, over triplets, of the share of people who
agree with it (Zhang et al. 2018, Sec. 2.2; ties count one half): :func:`percepmetric.stats.two_afc_score`
on the distances that :func:`percepmetric.evaluation.metric_distances` computes, batch by batch,
from the float images (``x / 255``, as the metric sees them in training).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data.bapps import TwoAFCSplit, to_tensor
from ..evaluation import metric_distances
from ..io import to_value_range
from ..metrics.base import Metric
from ..stats import two_afc_score

__all__ = ["evaluate_weights", "present_val_splits", "two_afc"]


def two_afc(metric: Metric, split: TwoAFCSplit, batch_size: int = 100, device: torch.device | None = None) -> float:
    """2AFC score in [0, 1] of ``metric`` on a split with ``ref, p0, p1, judge``, computed on
    ``device`` (default: the CPU; the metric is moved there)."""
    device = device or torch.device("cpu")
    metric = metric.to(device)
    def prepare(rows, target: torch.device) -> torch.Tensor:  # 8-bit rows in the metric's declared input range
        return to_value_range(to_tensor(rows, target), metric.value_range)

    d0, d1 = metric_distances(metric, (split.ref, split.p0, split.p1), batch_size=batch_size, device=device,
                              prepare=prepare)
    return two_afc_score(d0, d1, np.asarray(split.judge))


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
