"""Training triplets: BAPPS 2AFC splits or any folder in BAPPS layout, joined into one split.

Triplets are :class:`~percepmetric.data.bapps.TwoAFCSplit` here as in the benchmark:
(ref, p0, p1, judge), three uint8 RGB patches and the fraction of people who judged p1 closer
to ref. Splits are read by :mod:`percepmetric.data.bapps` (validated, cached) and kept as uint8
in memory (3 x 64 x 64 x 3 bytes = 36 KB per triplet: BAPPS' 151k training triplets take
5.6 GB); batches become float tensors in [0, 1] only when used.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..data.bapps import TwoAFCSplit
from ..errors import InputError

__all__ = ["join_splits", "load_training_triplets"]


def join_splits(parts: list[tuple[str, TwoAFCSplit]]) -> TwoAFCSplit:
    """Concatenate ``[(name, split), ...]`` into one split whose ``sources`` name each part and
    its count; every split must have the same patch size."""
    if not parts:
        raise InputError("no training triplets: give --split NAME (with --root) or --data FOLDER")
    shape = parts[0][1].ref.shape[1:]
    for name, split in parts:
        if split.ref.shape[1:] != shape:
            raise InputError(f"split {name}: patches of {split.ref.shape[1:]} differ from {parts[0][0]}'s {shape}")
    splits = [split for _, split in parts]
    if len(splits) == 1:  # no copy of the patches (they may be memory-mapped)
        (only,) = splits
        ref, p0, p1, judge, files, fingerprint = only.ref, only.p0, only.p1, only.judge, only.files, only.fingerprint
    else:
        ref, p0, p1, judge = (np.concatenate([getattr(s, key) for s in splits]) for key in ("ref", "p0", "p1", "judge"))
        files = [stem for s in splits for stem in s.files]
        fingerprint = _joined_fingerprint([s.fingerprint for s in splits])
    return TwoAFCSplit(" + ".join(name for name, _ in parts), ref, p0, p1, judge.astype(np.float32), files,
                       fingerprint, [{"name": name, "count": len(s)} for name, s in parts])


def _joined_fingerprint(fingerprints: list[str]) -> str:
    """The data identity of joined splits: known when every part's is (on disk), else ``""``."""
    if not all(fingerprints):
        return ""
    return hashlib.sha1("|".join(fingerprints).encode()).hexdigest()[:20]


def load_training_triplets(root: str | None, splits: list[str], folders: list[str]) -> TwoAFCSplit:
    """Read the named 2AFC ``splits`` under BAPPS ``root`` and every triplet ``folder``; join them.

    ``splits`` use the names and shorthands of ``percepmetric bench --split`` (e.g. ``train/mix``);
    ``folders`` are any folders holding ``ref/ p0/ p1/ judge/`` (your own judgments).
    """
    from ..data import bapps

    parts: list[tuple[str, TwoAFCSplit]] = []
    if splits:
        base = bapps.resolve_root(root)
        for name in bapps.expand_splits(splits):
            if bapps.is_jnd(name):
                raise InputError(f"--split {name}: a JND split has no 2AFC judgments to train on")
            parts.append((name, bapps.load_two_afc(base, name)))
    for folder in folders:
        parts.append((str(Path(folder)), bapps.load_two_afc_folder(folder)))
    return join_splits(parts)
