"""Metric x split -> distances (batched, cached, resumable) -> scores.

:func:`compute_distances` runs one registry :class:`~percepmetric.metrics.base.Metric` over
one split and returns its per-item distances ``metric.to_distance(metric(x, y))``. It is made
of three parts, each below it in this file:

* **the batch loop**: the one every evaluation shares,
  :func:`percepmetric.evaluation.distances_in_batches` (uint8 batches under
  ``torch.inference_mode()``, formula metrics several batches at once in threads);
* **checkpoints** (:class:`ResumableDistances`): an unfinished split is kept in
  ``...partial.npz``, written atomically every ``checkpoint_seconds`` and when the run is
  interrupted, so an interrupted run resumes where it stopped; only the complete file counts
  as done;
* **the cache** (:class:`DistanceStore`): distances are stored per (metric, split) in
  ``<split folder>/<metric name>-<key>.npz``, so a second run reuses them. Each file records
  what it was computed from: the metric's :func:`metric_identity` (its ``spec`` and the
  content hash of every weight file it was built from) and the split's
  :func:`split_identity`; a file recording anything else, or one that cannot be read
  (truncated, damaged), counts as absent and is computed again.

:func:`run_benchmark` validates every requested split first (before computing anything),
then scores each metric on each split with 95% bootstrap intervals, the human ceiling and
paired tests between metrics (:mod:`percepmetric.stats`), and writes tables and figures
(:mod:`percepmetric.bench.report`).
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import distributed, stats
from ..data.bapps import (
    JNDSplit,
    TwoAFCSplit,
    default_cache_dir,
    expand_splits,
    is_jnd,
    load_split,
    resolve_root,
    uint8_batch,
    warn_unwritable_cache,
)
from ..data.mos import MOSDataset
from ..devices import resolve_device
from ..errors import InputError
from ..evaluation import Batch, distances_in_batches, metric_device
from ..io import atomic_path
from ..memory import keep_freed_memory
from ..metrics.base import Metric
from ..registry import metric_label

DEFAULT_BATCH_SIZE = 100  # triplets (2AFC) or pairs (JND) per forward; a 2AFC batch is 2x this many pairs
# Formula metrics (no weights): batches small enough that their temporaries stay in the CPU
# cache, large enough to amortise the per-call work (BAPPS's 64x64 triplets: 16 was the fastest
# size for L2 and SSIM).
FORMULA_BATCH_SIZE = 16
CHECKPOINT_SECONDS = 30.0

Split = TwoAFCSplit | JNDSplit
#: The one array stored per (metric, MOS dataset): the metric's own value on each pair.
MOS_VALUE_KEY = "value"
#: What per-item values are stored for: a BAPPS split or a MOS dataset.
Measured = TwoAFCSplit | JNDSplit | MOSDataset


# ---------------------------------------------------------------- distances of one metric on one split

def compute_distances(metric: Metric, split: Split, batch_size: int | None = None,
                      cache: DistanceStore | str | os.PathLike | None = None, *,
                      device: torch.device | str | None = None, progress: bool = False,
                      checkpoint_seconds: float = CHECKPOINT_SECONDS, workers: int | None = None,
                      items: tuple[int, int] | None = None) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Distances of ``metric`` on every item of ``split``.

    2AFC: returns ``(d0, d1)``, float64 ``(N,)`` each, ``d_i = to_distance(metric(ref, p_i))``.
    JND: returns ``d``, float64 ``(N,)``, ``to_distance(metric(p0, p1))``.
    Images go to the metric as they are stored, uint8 ``(B,H,W,3)``, through
    :func:`~percepmetric.metrics.eight_bit.triplet_values_8bit` (JND:
    :func:`~percepmetric.metrics.eight_bit.values_8bit`), ``batch_size`` items at a time,
    on ``device`` (default: where the metric's parameters are), by the loop every evaluation
    shares (:func:`percepmetric.evaluation.distances_in_batches`).
    ``cache``: a folder or :class:`DistanceStore`; finished results are read back instead of
    recomputed, unfinished ones resumed (:class:`ResumableDistances`). ``workers``: batches
    computed at once (default: torch's thread count for formula metrics on the CPU, else 1).
    ``device``: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"`` or a ``torch.device``, checked
    first (a device this machine lacks is an :class:`InputError`, cached distances or not).
    ``items``: ``(first, stop)``, only those items (one rank's block under torchrun, see
    :func:`run_benchmark`); they are stored and resumed as an entry of their own.
    """
    device = resolve_device(device, option="device") if device is not None else metric_device(metric)
    batch_size, workers = _batching(metric, device, batch_size, workers)
    first, stop = items if items is not None else (0, len(split))
    if not 0 <= first <= stop <= len(split):
        raise InputError(f"items {first}:{stop} are not within the {len(split)} items of {split.name}")
    store = _as_store(cache)
    entry = store.entry(metric, split, items) if store is not None else None
    finished = entry.finished() if entry is not None else None
    if finished is not None:
        return finished
    run = ResumableDistances(_distance_keys(split), stop - first, entry, checkpoint_seconds)
    bar = _progress(stop - first, run.done, f"{split.name} {metric.name}", progress)
    images = tuple(array[first:stop] for array in _images(split))
    try:
        if run.done == run.total:  # nothing left (or nothing to do: an empty block of items)
            return run.finish()
        with run.saved_if_interrupted(), contextlib.closing(distances_in_batches(
                metric, images, batch_size=batch_size, device=device, prepare=uint8_batch, eight_bit=True,
                start=run.done, workers=workers)) as batches:
            for batch in batches:
                run.add(batch)
                bar.update(batch.stop - batch.first)
    finally:
        bar.close()
    return run.finish()


def _batching(metric: Metric, device: torch.device, batch_size: int | None,
              workers: int | None) -> tuple[int, int]:
    """Items per batch and batches at once. Formula metrics (no weights) take small batches
    that stay in the CPU cache, several at once in threads on the CPU; metrics with weights
    take large ones, one at a time."""
    weighted = has_weights(metric)
    if batch_size is None:
        batch_size = DEFAULT_BATCH_SIZE if weighted else FORMULA_BATCH_SIZE
    batch_size = int(batch_size)
    if batch_size < 1:
        raise InputError(f"batch_size must be positive, got {batch_size}")
    if workers is None:
        workers = torch.get_num_threads() if device.type == "cpu" and not weighted else 1
    return batch_size, int(workers)


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
    """The names of the distances of one item, in files and in :class:`Batch` order (a MOS
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
        :func:`compute_distances` does."""
        if self.entry is not None:
            self.entry.write_complete(self.arrays)
        return _as_result(self.arrays)


# ---------------------------------------------------------------- the cache: where distances live and what keys them

def _names_file(value: Any) -> bool:
    return isinstance(value, (str, os.PathLike)) and str(value) != "" and os.path.isfile(value)


def metric_identity(metric: Metric) -> str:
    """What a metric's cached distances are keyed on: its ``cache_identity`` (``spec``, plus the
    content hash of each weight file it was built from) and the content hash of any file an
    option names. Content, not names or times: a retrained or swapped file never reuses stale
    distances (hashes are memoised per file and process, see
    :func:`~percepmetric.metrics.lpips.weight_file_digest`)."""
    from ..metrics.lpips import weight_file_digest

    identity = getattr(metric, "cache_identity", None) or metric.spec
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
        :func:`compute_distances` returns them), else None. Never computes."""
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
        """The complete distances, if they are stored (as :func:`compute_distances` returns
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
    """As :func:`compute_distances` returns distances: ``(d0, d1)`` of a 2AFC split, else the
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


# ---------------------------------------------------------------- the benchmark

@dataclass
class BenchResult:
    """Everything one benchmark run produced.

    ``rows``: one dict per (metric, split or dataset, statistic): metric (label), spec, split
    (a BAPPS split, a MOS dataset's name, or ``name/type`` for one distortion type of it), kind
    (``2afc``, ``jnd_map``, or one of :data:`percepmetric.correlation.KINDS`), n, score, ci_low,
    ci_high, status ("complete" or "not computed").
    ``ceilings``: one dict per 2AFC split: split, n, score, ci_low, ci_high (the human ceiling).
    ``comparisons``: paired tests between metrics, per split or dataset (see :class:`stats.PairedTest`).
    ``curves``: ``(label, split) -> (precision, recall)`` of each JND split, for plots.
    ``datasets``: one dict per MOS dataset: name, kind, root, description, synthetic, n.
    ``scatter``: ``(label, dataset) -> (quality, mos, fit)``, for plots.
    ``triplets``: ``split -> (TwoAFCSplit, {label: (d0, d1)})`` of each 2AFC split, for the
    contact sheet of the triplets where metrics disagree most with people.
    """

    root: Path | None
    splits: list[str]
    metrics: list[str]
    synthetic: bool
    rows: list[dict] = field(default_factory=list)
    ceilings: list[dict] = field(default_factory=list)
    comparisons: list[dict] = field(default_factory=list)
    curves: dict = field(default_factory=dict)
    datasets: list[dict] = field(default_factory=list)
    scatter: dict = field(default_factory=dict)
    triplets: dict = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every metric scored on every split and dataset."""
        wanted = {(m, s) for m in self.metrics for s in self.splits + [d["name"] for d in self.datasets]}
        scored = {(r["metric"], r["split"]) for r in self.rows if r["status"] == "complete"}
        return all(r["status"] == "complete" for r in self.rows) and wanted <= scored

    def table(self):
        """The summary table (rows: metrics and the human ceiling; columns: splits and means)."""
        from .report import summary_table

        return summary_table(self)


def _unique_labels(metrics) -> list[str]:
    labels = [metric_label(m) for m in metrics]
    for i, label in enumerate(labels):
        if labels.count(label) > 1:
            labels[i] = metrics[i].spec
    return labels


def run_benchmark(metrics: Sequence, splits: Sequence[str], root: str | os.PathLike | None = None,
                  out_dir: str | os.PathLike | None = None, *, datasets: Sequence[MOSDataset] = (),
                  fit: str = "logistic5", batch_size: int | None = None,
                  device: torch.device | str | None = None, progress: bool = False, n_boot: int = 1000,
                  level: float = 0.95, seed: int = 0, plot: bool = False,
                  cache_dir: str | os.PathLike | None = None) -> BenchResult:
    """Score every metric on every BAPPS split and MOS dataset; return a :class:`BenchResult`.

    ``metrics``: registry :class:`Metric` objects. ``splits``: BAPPS names or groups (``"val"``,
    ``"jnd"``, ``"val/cnn"``, ...; may be empty when ``datasets`` are given). ``root``: the
    BAPPS folder (see ``resolve_root``). All splits are validated and decoded (or read from
    the uint8 cache) before any distance is computed. ``datasets``: loaded MOS datasets
    (:func:`percepmetric.data.mos.load_mos_dataset`), scored by :mod:`percepmetric.bench.mos`
    with the logistic ``fit`` ("logistic5" or "logistic4").
    ``out_dir``: if given, per-item distances go to ``out_dir/distances`` and the tables
    (CSV, JSON) and, with ``plot``, PNG figures next to them; otherwise distances are cached
    under ``cache_dir`` (default: the user cache folder; if it cannot be written, one line on
    stderr says so and distances are not kept). ``device``: as :func:`compute_distances`,
    checked before anything else. Scores come with ``level`` bootstrap intervals (``n_boot``
    resamples, deterministic in ``seed``).

    Under torchrun (``torchrun --nproc-per-node N -m percepmetric bench ...``, or any caller
    that every rank runs) each (metric, split) is split by item index into N contiguous
    blocks; rank ``r`` computes block ``r`` (:func:`shared_over_ranks`; a MOS dataset likewise,
    all metrics at once), the blocks are gathered on every rank, and every rank scores the
    same numbers; rank 0 alone writes the outputs, the same files one process writes.

    Interrupted (KeyboardInterrupt), it still writes the tables: every (metric, split) whose
    complete distances are on disk is scored, the others are marked ``not computed``.
    """
    from ..data.fixtures import is_synthetic
    from .mos import mos_values, scatter_points, score_dataset

    if not metrics:
        raise InputError("no metric to benchmark")
    names = expand_splits(list(splits)) if splits else []
    if not names and not datasets:
        raise InputError("nothing to benchmark: give BAPPS splits or MOS datasets")
    if device is not None:
        device = distributed.rank_device(resolve_device(device, option="device"))
    keep_freed_memory()  # every batch allocates the same temporaries: reuse, do not page-fault them
    bapps_root = resolve_root(root) if names else None
    cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    out_path = Path(out_dir) if out_dir is not None else None
    store = _distance_store(out_path, cache_root)
    loaded = {name: load_split(bapps_root, name, cache_dir=cache_root) for name in names}  # validate all first
    labels = _unique_labels(metrics)
    result = BenchResult(root=bapps_root, splits=names, metrics=labels,
                         synthetic=bapps_root is not None and is_synthetic(bapps_root),
                         datasets=[{"name": d.name, "kind": d.kind, "root": str(d.root), "description": d.describe(),
                                    "synthetic": d.synthetic, "n": len(d), "higher_is_better": d.higher_is_better}
                                   for d in datasets])
    scoring = _Scoring(result, metrics, labels, n_boot, level, seed)
    with distributed.process_group(device if device is not None else metric_device(metrics[0])) as group:
        try:
            for name in names:
                split = loaded[name]
                scoring.add_ceiling(split)
                for i, metric in enumerate(metrics):
                    scoring.add(i, split, _distances_over_ranks(
                        metric, split, store, group, batch_size=batch_size, device=device,
                        progress=progress and group.is_main))
                scoring.compare(split)
            for dataset in datasets:
                values = mos_values(metrics, dataset, store, group, batch_size=batch_size, device=device,
                                    progress=progress and group.is_main)
                rows, comparisons = score_dataset(labels, metrics, dataset, values, fit=fit, n_boot=n_boot,
                                                  level=level, seed=seed)
                result.rows += rows
                result.comparisons += comparisons
                for label, points in zip(labels, scatter_points(metrics, values, dataset, fit)):
                    result.scatter[(label, dataset.name)] = points
        except KeyboardInterrupt:
            with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C skips this, not the tables
                scoring.add_stored(store, [loaded[name] for name in names])
            _mark_missing(result, labels, metrics, loaded)
            if out_path is not None and group.is_main:
                from .report import write_outputs

                result.files = write_outputs(result, out_path, plot=False)
            raise
        scoring.keep_triplets(loaded)
        if out_path is not None:
            from .report import write_outputs

            written = distributed.run_part(group, lambda: write_outputs(result, out_path, plot=plot)
                                           if group.is_main else [])
            result.files = written
    return result


def _distances_over_ranks(metric: Metric, split: Split, store: DistanceStore | None, group: distributed.Group,
                          **job: Any) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """:func:`compute_distances` of ``metric`` on ``split``, shared by the ranks of ``group``
    (:func:`shared_over_ranks`; one process: just :func:`compute_distances`)."""
    if not group.active:
        return compute_distances(metric, split, cache=store, **job)

    def entries(items: tuple[int, int] | None) -> list[DistanceEntry | None]:
        return [store.entry(metric, split, items) if store is not None else None]

    def compute(items: tuple[int, int] | None) -> list[dict[str, np.ndarray]]:
        return [_as_arrays(compute_distances(metric, split, cache=store, items=items, **job))]

    return _as_result(shared_over_ranks(group, len(split), entries, compute)[0])


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


def _distance_store(out_path: Path | None, cache_root: Path) -> DistanceStore | None:
    """Where per-item distances are kept: ``OUT/distances``, else the cache folder's
    ``distances``; None (one line on stderr, shared with the split cache's) when the cache
    folder cannot be written."""
    if out_path is not None:
        folder = out_path / "distances"
        if folder.exists() and not folder.is_dir():
            raise InputError(f"{folder} exists and is not a folder (per-item distances go there): "
                             f"move it away or choose another --out")
        return DistanceStore(folder)
    folder = cache_root / "distances"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        warn_unwritable_cache(cache_root, exc.strerror or exc.__class__.__name__)
        return None
    if not os.access(folder, os.W_OK | os.X_OK):
        warn_unwritable_cache(cache_root, "not writable")
        return None
    return DistanceStore(folder)


class _Scoring:
    """Fills a :class:`BenchResult` as distances arrive: the human ceiling of each 2AFC split,
    one score row per (metric, split), and the paired tests of each split once all its
    metrics are in. Each is added once, whichever way the distances came."""

    def __init__(self, result: BenchResult, metrics, labels, n_boot: int, level: float, seed: int) -> None:
        self.result, self.metrics, self.labels = result, metrics, labels
        self.n_boot, self.level, self.seed = n_boot, level, seed
        self.distances: dict[tuple[int, str], Any] = {}
        self.compared: set[str] = set()

    def add_ceiling(self, split) -> None:
        if isinstance(split, JNDSplit) or any(c["split"] == split.name for c in self.result.ceilings):
            return
        lo, hi = stats.bootstrap_ci(stats.human_ceiling, split.judge, n_boot=self.n_boot, level=self.level,
                                     seed=self.seed)
        self.result.ceilings.append({"split": split.name, "n": len(split), "score": stats.human_ceiling(split.judge),
                                     "ci_low": lo, "ci_high": hi})

    def add(self, i: int, split, d) -> None:
        self.distances[(i, split.name)] = d
        if any(r["metric"] == self.labels[i] and r["split"] == split.name for r in self.result.rows):
            return
        row = _score_row(self.labels[i], self.metrics[i], split, d, self.n_boot, self.level, self.seed)
        if isinstance(split, JNDSplit):
            self.result.curves[(self.labels[i], split.name)] = stats.precision_recall(d, split.same)
        self.result.rows.append(row)

    def compare(self, split) -> None:
        if split.name not in self.compared:
            self.result.comparisons.extend(_comparisons(self.labels, split, self.distances, self.n_boot,
                                                        self.level, self.seed))
            self.compared.add(split.name)

    def keep_triplets(self, loaded: dict) -> None:
        """Each 2AFC split with every metric's distances, for the contact sheet of disagreements."""
        for name, split in loaded.items():
            if isinstance(split, TwoAFCSplit):
                self.result.triplets[name] = (split, {self.labels[i]: self.distances[(i, name)]
                                                      for i in range(len(self.metrics))
                                                      if (i, name) in self.distances})

    def add_stored(self, store: DistanceStore | None, splits) -> None:
        """After an interrupt: score every (metric, split) whose complete distances are in
        ``store`` (computed before the interrupt, in this run or an earlier one), without
        computing any; compare the metrics of the splits that have all of theirs."""
        for split in splits:
            for i, metric in enumerate(self.metrics):
                d = self.distances.get((i, split.name))
                if d is None and store is not None:
                    d = store.finished(metric, split)
                if d is not None:
                    self.add(i, split, d)
            if any((i, split.name) in self.distances for i in range(len(self.metrics))):
                self.add_ceiling(split)
            if all((i, split.name) in self.distances for i in range(len(self.metrics))):
                self.compare(split)


def _score_row(label, metric, split, d, n_boot, level, seed) -> dict:
    jnd = isinstance(split, JNDSplit)
    args: tuple[np.ndarray, ...]
    statistic: stats.Statistic
    if jnd:
        args = (d, split.same)
        statistic = stats.jnd_map
    else:
        args = (d[0], d[1], split.judge)
        statistic = stats.two_afc_score
    lo, hi = stats.bootstrap_ci(statistic, *args, n_boot=n_boot, level=level, seed=seed)
    return {"metric": label, "spec": metric.spec, "split": split.name, "kind": "jnd_map" if jnd else "2afc",
            "n": len(split), "score": statistic(*args), "ci_low": lo, "ci_high": hi, "status": "complete"}


def _comparisons(labels, split, distances, n_boot, level, seed) -> list[dict]:
    """Each metric against the best one on this split (paired bootstrap on the same items)."""
    rows: list[dict] = []
    have = [i for i in range(len(labels)) if (i, split.name) in distances]
    if len(have) < 2:
        return rows
    statistic: stats.Statistic
    args: dict[int, tuple[np.ndarray, ...]]
    if isinstance(split, JNDSplit):
        statistic, args = stats.jnd_map, {i: (distances[(i, split.name)], split.same) for i in have}
    else:
        statistic = stats.two_afc_score
        args = {i: (*distances[(i, split.name)], split.judge) for i in have}
    values = {i: statistic(*args[i]) for i in have}
    best = max(have, key=lambda i: values[i])
    for i in have:
        if i == best:
            continue
        test = stats.paired_test(statistic, args[best], args[i], n_boot=n_boot, level=level, seed=seed)
        rows.append({"split": split.name, "metric_a": labels[best], "metric_b": labels[i], **test.as_dict()})
    return rows


def _mark_missing(result: BenchResult, labels, metrics, loaded: dict) -> None:
    """A ``not computed`` row for each (metric, split) without a score, and for each statistic
    of each (metric, MOS dataset) without one; ``n`` is the split's or dataset's size."""
    from ..correlation import KINDS

    done = {(r["metric"], r["split"]) for r in result.rows}
    missing = {"score": None, "ci_low": None, "ci_high": None, "status": "not computed"}
    for name, split in loaded.items():
        for label, metric in zip(labels, metrics):
            if (label, name) not in done:
                result.rows.append({"metric": label, "spec": metric.spec, "split": name,
                                    "kind": "jnd_map" if is_jnd(name) else "2afc", "n": len(split), **missing})
    for dataset in result.datasets:
        for label, metric in zip(labels, metrics):
            if (label, dataset["name"]) not in done:
                result.rows += [{"metric": label, "spec": metric.spec, "split": dataset["name"], "kind": kind,
                                 "n": dataset["n"], **missing} for kind in KINDS]
