"""Training triplets: BAPPS 2AFC splits or any folder in BAPPS layout, joined into one array set.

A triplet is (ref, p0, p1, judge): three uint8 RGB patches and the fraction of people who judged
p1 closer to ref. Splits are read by :mod:`percepmetric.data.bapps` (validated, cached) and
kept as uint8 in memory (3 x 64 x 64 x 3 bytes = 36 KB per triplet: BAPPS' 151k training
triplets take 5.6 GB); batches become float tensors in [0, 1] only when used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = ["Triplets", "join_splits", "load_training_triplets"]


@dataclass
class Triplets:
    """``ref``, ``p0``, ``p1``: uint8 ``(N,H,W,3)``; ``judge``: float32 ``(N,)`` in [0, 1];
    ``sources``: ``[{"name": split or folder, "count": n}, ...]`` in order."""

    ref: np.ndarray
    p0: np.ndarray
    p1: np.ndarray
    judge: np.ndarray
    sources: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.judge.shape[0])

    def subset(self, index: np.ndarray) -> "Triplets":
        return Triplets(self.ref[index], self.p0[index], self.p1[index], self.judge[index],
                        [{"name": "subset", "count": int(len(index))}])


def join_splits(parts: list[tuple[str, object]]) -> Triplets:
    """Concatenate ``[(name, TwoAFCSplit), ...]``; every split must have the same patch size."""
    if not parts:
        raise InputError("no training triplets: give --split NAME (with --root) or --data FOLDER")
    shape = parts[0][1].ref.shape[1:]
    for name, split in parts:
        if split.ref.shape[1:] != shape:
            raise InputError(f"split {name}: patches of {split.ref.shape[1:]} differ from {parts[0][0]}'s {shape}")
    cat = (lambda key: np.concatenate([getattr(s, key) for _, s in parts])) if len(parts) > 1 else \
        (lambda key: getattr(parts[0][1], key))
    return Triplets(cat("ref"), cat("p0"), cat("p1"), cat("judge").astype(np.float32),
                    [{"name": name, "count": int(len(s.judge))} for name, s in parts])


def load_training_triplets(root: str | None, splits: list[str], folders: list[str]) -> Triplets:
    """Read the named 2AFC ``splits`` under BAPPS ``root`` and every triplet ``folder``; join them.

    ``splits`` use the names and shorthands of ``percepmetric bench --split`` (e.g. ``train/mix``);
    ``folders`` are any folders holding ``ref/ p0/ p1/ judge/`` (your own judgments).
    """
    from ..data import bapps

    parts: list[tuple[str, object]] = []
    if splits:
        base = bapps.resolve_root(root)
        for name in bapps.expand_splits(splits):
            if bapps.is_jnd(name):
                raise InputError(f"--split {name}: a JND split has no 2AFC judgments to train on")
            parts.append((name, bapps.load_two_afc(base, name)))
    for folder in folders:
        parts.append((str(Path(folder)), bapps.load_two_afc_folder(folder)))
    return join_splits(parts)
