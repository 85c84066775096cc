"""Where a benchmark's per-item values live while and after they are computed.

Both benchmarks, the BAPPS one (:mod:`percepmetric.bench.runner`: a metric's distances on a
2AFC or JND split) and the MOS one (:mod:`percepmetric.bench.mos`: its values on a MOS
dataset's pairs), keep their numbers the same way:

* **checkpoints** (:class:`ResumableDistances`): an unfinished (metric, split) is kept in
  ``...partial.npz``, written atomically every ``checkpoint_seconds`` and when the run is
  interrupted, so an interrupted run resumes where it stopped; only the complete file counts
  as done;
* **the cache** (:class:`DistanceStore`): values are stored per (metric, split) in
  ``<split folder>/<metric name>-<key>.npz``, so a second run reuses them. Each file records
  what it was computed from: the metric's :func:`metric_identity` (its ``spec`` and the
  content hash of every weight file it was built from) and the split's
  :func:`split_identity`; a file recording anything else, or one that cannot be read
  (truncated, damaged), counts as absent and is computed again;
* **blocks per rank** (:func:`shared_over_ranks`): under torchrun each rank computes, stores
  and resumes a contiguous block of the items, and the blocks are gathered.

This module sits below both benchmarks, which import it and never each other's internals.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
import zipfile
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import distributed
from ..data.bapps import JNDSplit, TwoAFCSplit
from ..data.mos import MOSDataset
from ..errors import InputError
from ..evaluation import Batch
from ..io import atomic_path
from ..metrics.base import Metric

#: Seconds between two saves of an unfinished split's values.
CHECKPOINT_SECONDS = 30.0
Split = TwoAFCSplit | JNDSplit
#: The one array stored per (metric, MOS dataset): the metric's own value on each pair.
MOS_VALUE_KEY = "value"
#: What per-item values are stored for: a BAPPS split or a MOS dataset.
Measured = TwoAFCSplit | JNDSplit | MOSDataset


def has_weights(metric: Metric) -> bool:
    """A network metric (LPIPS, DISTS: large batches pay) rather than a formula (PSNR, SSIM:
    batches whose temporaries stay in the CPU cache are the fastest)."""
    return any(True for _ in metric.parameters())


def _images(split: Split) -> tuple[np.ndarray, ...]:
    """What the metric compares: pairs ``(p0, p1)`` of a JND split, triplets ``(ref, p0, p1)`` of a 2AFC one."""
    return (split.p0, split.p1) if isinstance(split, JNDSplit) else (split.ref, split.p0, split.p1)


def _labels(split: Split) -> np.ndarray:
    return split.same if isinstance(split, JNDSplit) else split.judge


def _distance_keys(split: Measured) -> tuple[str, ...]:
    """The names of the distances of one item, in files and in :class:`~percepmetric.evaluation.Batch` order (a MOS
    dataset's: the metric's own ``value``, see :mod:`percepmetric.bench.mos`)."""
    if isinstance(split, MOSDataset):
        return (MOS_VALUE_KEY,)
    return ("d",) if isinstance(split, JNDSplit) else ("d0", "d1")


# ---------------------------------------------------------------- checkpoints: resuming an interrupted split

class ResumableDistances:
    """The distances (named ``keys``) of the ``total`` items of one (metric, split) or of one
    block of its items, while they are computed.

    With an ``entry`` of the cache, it starts from what an interrupted run left there (its
    partial file, if it records the same metric and split), saves what is done every
    ``checkpoint_seconds`` and when the run is interrupted, and at the end stores the complete
    distances, which alone count as done. Without one it only collects.
    """

    def __init__(self, keys: Sequence[str], total: int, entry: DistanceEntry | None,
                 checkpoint_seconds: float) -> None:
        self.keys = tuple(keys)
        self.total = total
        self.arrays = {k: np.empty(self.total, dtype=np.float64) for k in self.keys}
        self.entry = entry
        self.checkpoint_seconds = checkpoint_seconds
        self.done = 0  # items 0..done are in self.arrays
        partial = entry.partial() if entry is not None else None
        if partial is not None:
            self.done = len(partial[self.keys[0]])
            for k in self.keys:
                self.arrays[k][:self.done] = partial[k]
        self.saved = self.done
        self.last_save = time.monotonic()

    def add(self, batch: Batch) -> None:
        """Take in the next batch (batches arrive in order); save when the last save is old."""
        for k, values in zip(self.keys, batch.distances):
            self.arrays[k][batch.first:batch.stop] = values
        self.done = batch.stop
        if time.monotonic() - self.last_save > self.checkpoint_seconds and self.done < self.total:
            self.save()
            self.last_save = time.monotonic()

    def save(self) -> None:
        """Write what is done to the partial file (nothing without a store or when nothing is new)."""
        if self.entry is not None and self.done > self.saved:
            self.entry.write_partial({k: v[:self.done] for k, v in self.arrays.items()})
            self.saved = self.done

    @contextlib.contextmanager
    def saved_if_interrupted(self) -> Generator[None, None, None]:
        """Whatever stops the computation (Ctrl-C, an error): keep what was computed, so the
        next run resumes from here; then let it propagate."""
        try:
            yield
        except BaseException:
            self.save()
            raise

    def finish(self) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Store the complete distances (replacing the partial file) and return them as
        :func:`~percepmetric.bench.runner.compute_distances` does."""
        if self.entry is not None:
            self.entry.write_complete(self.arrays)
        return _as_result(self.arrays)


# ---------------------------------------------------------------- the cache: where distances live and what keys them

def _names_file(value: Any) -> bool:
    return isinstance(value, (str, os.PathLike)) and str(value) != "" and os.path.isfile(value)


def metric_identity(metric: Metric) -> str:
    """What a metric's cached distances are keyed on: its ``spec`` plus the content hash of each
    weight file it reports having been built from (``weight_files``,
    :func:`~percepmetric.weights.content_identity`), and the content hash of any file an option
    names. Content, not names or times: a retrained or swapped file never reuses stale distances
    (hashes are memoised per file and process, see :func:`~percepmetric.weights.weight_file_digest`)."""
    from ..weights import content_identity, weight_file_digest

    identity = content_identity(metric.spec, getattr(metric, "weight_files", ()))
    files = [f"{k}@{weight_file_digest(v)}"
             for k, v in sorted(getattr(metric, "options", {}).items()) if _names_file(v)]
    return identity + ("|" + ",".join(files) if files else "")


def split_identity(split: Measured) -> str:
    """The split's name, size and data fingerprint (a hash of the arrays for in-memory splits);
    a MOS dataset's kind, name, size and fingerprint (its score file and images)."""
    if isinstance(split, MOSDataset):
        return f"{split.kind}:{split.name}|{len(split)}|{split.fingerprint}"
    fingerprint = split.fingerprint
    if not fingerprint:
        h = hashlib.sha1()
        for arr in _images(split) + (_labels(split),):
            h.update(np.ascontiguousarray(arr).tobytes())
        fingerprint = h.hexdigest()[:20]
    return f"{split.name}|{len(split)}|{fingerprint}"


def _slug(text: str, limit: int = 60) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
    return keep.strip("_")[:limit] or "x"


def _record(metric: Metric, split: Measured, items: tuple[int, int] | None = None) -> dict:
    """What a distance file records about where its numbers came from; checked on reading.
    A file of one block of items (a torchrun rank's) records which: ``items: [first, stop]``."""
    record = {"metric": metric.spec, "identity": metric_identity(metric), "split": split.name,
              "split_identity": split_identity(split), "n": len(split)}
    if items is not None:
        record.update(items=list(items), n=items[1] - items[0])
    return record


def _whole(split: Measured, items: tuple[int, int] | None) -> tuple[int, int] | None:
    """None for all the items of ``split`` (stored as the split's own entry), else ``items``."""
    return None if items is None or tuple(items) == (0, len(split)) else (int(items[0]), int(items[1]))


@dataclass
class DistanceStore:
    """Per-item distances on disk: ``folder/<split>/<metric>-<hash>.npz`` (+ ``.partial.npz``).

    The name's hash is of the metric's ``spec`` and the split's identity; what the numbers were
    computed from (see :func:`_record`) is stored inside and checked on every read, so a file
    made with other weight files is replaced, not reused.
    """

    folder: Path

    def path(self, metric: Metric, split: Measured, items: tuple[int, int] | None = None) -> Path:
        """The file of ``metric`` on ``split``: all its items, or the block ``items`` of them."""
        key = hashlib.sha1(f"{metric.spec}||{split_identity(split)}".encode()).hexdigest()[:16]
        block = _whole(split, items)
        name = f"{_slug(metric.name, 30)}-{key}" + (f".items-{block[0]}-{block[1]}" if block else "")
        return Path(self.folder) / _slug(split.name.replace("/", "_")) / f"{name}.npz"

    @staticmethod
    def partial_path(path: Path) -> Path:
        return path.with_name(path.stem + ".partial.npz")

    @staticmethod
    def read(path: Path) -> dict[str, np.ndarray] | None:
        """The arrays of an ``.npz`` file, or None when it is absent or cannot be read whole
        (truncated by a kill or a full disk, damaged: zip's CRC check fails)."""
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError):
            return None

    def read_matching(self, path: Path, record: dict, keys: Sequence[str]) -> dict[str, np.ndarray] | None:
        """The distances in ``path`` (each key, of one length at most ``record["n"]``) if the file
        records the same metric identity and split identity as ``record``; else None."""
        data = self.read(path)
        if data is None or "meta" not in data or any(k not in data for k in keys):
            return None
        try:
            stored = json.loads(str(data["meta"]))
        except ValueError:
            return None
        if not isinstance(stored, dict) or any(stored.get(k) != record.get(k)
                                               for k in ("identity", "split_identity", "items")):
            return None
        lengths = {len(data[k]) for k in keys}
        if len(lengths) != 1 or lengths.pop() > record["n"]:
            return None
        return {k: data[k] for k in keys}

    def entry(self, metric: Metric, split: Measured, items: tuple[int, int] | None = None) -> DistanceEntry:
        """Where the distances of ``metric`` on ``split`` (or on its block ``items``) live, and
        what they must record."""
        block = _whole(split, items)
        return DistanceEntry(self, self.path(metric, split, block), _record(metric, split, block),
                             _distance_keys(split))

    def finished(self, metric: Metric, split: Split) -> np.ndarray | tuple[np.ndarray, np.ndarray] | None:
        """The complete distances of ``metric`` on ``split`` if they are stored (as
        :func:`~percepmetric.bench.runner.compute_distances` returns them), else None. Never computes."""
        return self.entry(metric, split).finished()

    @staticmethod
    def write(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
        """Atomic: write a temporary file next to ``path``, then rename it. A file that cannot
        be written (a full disk, a folder in its place) is one :class:`InputError` line."""
        contents: dict[str, Any] = {"meta": np.array(json.dumps(meta)), **arrays}
        try:
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                np.savez(f, **contents)
        except OSError as exc:
            raise InputError(f"cannot write the distances file {path}: {exc.strerror or exc}") from None


@dataclass(frozen=True)
class DistanceEntry:
    """One (metric, split) in a :class:`DistanceStore`: its complete file ``path`` and the
    partial one beside it, and the ``record`` (:func:`_record`) that both must hold to be used."""

    store: DistanceStore
    path: Path
    record: dict
    keys: tuple[str, ...]

    def finished(self) -> np.ndarray | tuple[np.ndarray, np.ndarray] | None:
        """The complete distances, if they are stored (as :func:`~percepmetric.bench.runner.compute_distances` returns
        them); else None."""
        done = self.finished_arrays()
        return None if done is None else _as_result(done)

    def finished_arrays(self) -> dict[str, np.ndarray] | None:
        """The complete arrays by key, if they are stored; else None."""
        done = self.store.read_matching(self.path, self.record, self.keys)
        if done is None or len(done[self.keys[0]]) != self.record["n"]:
            return None
        return done

    def partial(self) -> dict[str, np.ndarray] | None:
        """The distances of the first items, as an interrupted run left them; else None."""
        return self.store.read_matching(self.store.partial_path(self.path), self.record, self.keys)

    def write_partial(self, arrays: dict[str, np.ndarray]) -> None:
        done = len(arrays[self.keys[0]])
        self.store.write(self.store.partial_path(self.path), arrays, {**self.record, "done": done})

    def write_complete(self, arrays: dict[str, np.ndarray]) -> None:
        """Store the complete distances; the partial file, now outdone, goes."""
        self.store.write(self.path, arrays, self.record)
        self.store.partial_path(self.path).unlink(missing_ok=True)

    def discard(self) -> None:
        """Remove both files (a rank's block, once the whole split's file holds its distances)."""
        self.path.unlink(missing_ok=True)
        self.store.partial_path(self.path).unlink(missing_ok=True)


def _as_result(arrays: dict[str, np.ndarray]) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """As :func:`~percepmetric.bench.runner.compute_distances` returns distances: ``(d0, d1)`` of a 2AFC split, else the
    one array (``d`` of a JND split, ``value`` of a MOS dataset)."""
    if "d0" in arrays:
        return arrays["d0"], arrays["d1"]
    (array,) = arrays.values()
    return array


def _as_arrays(result: np.ndarray | tuple[np.ndarray, np.ndarray]) -> dict[str, np.ndarray]:
    """The inverse of :func:`_as_result`."""
    return {"d": result} if isinstance(result, np.ndarray) else {"d0": result[0], "d1": result[1]}


def _as_store(cache: DistanceStore | str | os.PathLike | None) -> DistanceStore | None:
    if cache is None or cache is False:
        return None
    return cache if isinstance(cache, DistanceStore) else DistanceStore(Path(cache))


# ---------------------------------------------------------------- progress

class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, initial: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="item", file=sys.stderr, leave=False, dynamic_ncols=True)


def shared_over_ranks(group: distributed.Group, n: int,
                      entries: Callable[[tuple[int, int] | None], Sequence[DistanceEntry | None]],
                      compute: Callable[[tuple[int, int] | None], list[dict[str, np.ndarray]]],
                      ) -> list[dict[str, np.ndarray]]:
    """Arrays of ``n`` items, one dict per output (e.g. per metric), computed by the ranks of
    ``group`` together.

    ``entries(items)``: where each output of the items ``(first, stop)`` is stored (``None``:
    all items; an entry may be None: not stored). ``compute(items)``: each output's arrays on
    those items (reading what is stored, resuming what was interrupted).

    One process: ``compute(None)``. Under torchrun each rank computes its contiguous block of
    items (:func:`~percepmetric.distributed.block`, by item index, so a rerun with as many ranks
    gives each rank the same block), stored and resumed as an entry of its own. A failing rank
    stops every rank (:func:`~percepmetric.distributed.run_part`); what the others finished is
    kept, so the rerun computes only the rest. The blocks are gathered on every rank; rank 0
    stores the whole arrays, the files one process writes, and each rank then removes its
    block's files if it sees the whole ones (on a disk of its own, e.g. another machine, it
    keeps them, to resume from).
    """
    if not group.active:
        return compute(None)
    whole = list(entries(None))
    finished = [e.finished_arrays() if e is not None else None for e in whole]
    items = distributed.block(n, group)

    def my_block() -> list[dict[str, np.ndarray]]:
        if all(f is not None for f in finished):
            return [{k: v[items[0]:items[1]] for k, v in f.items()} for f in finished if f is not None]
        return compute(items)

    blocks = distributed.all_gather(group, distributed.run_part(group, my_block))
    merged = [{k: np.concatenate([b[j][k] for b in blocks]) for k in blocks[0][j]} for j in range(len(whole))]
    if any(e is not None for e in whole) and not all(f is not None for f in finished):
        def store_whole() -> None:
            if group.is_main:
                for entry, arrays in zip(whole, merged):
                    if entry is not None:
                        entry.write_complete(arrays)

        distributed.run_part(group, store_whole)
        for entry, block_entry in zip(whole, entries(items)):
            if entry is not None and block_entry is not None and entry.finished() is not None:
                block_entry.discard()
    return merged
