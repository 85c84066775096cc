"""Metric x split -> distances (batched, cached, resumable) -> scores.

:func:`compute_distances` runs one registry :class:`~percepmetric.metrics.base.Metric` over
one split and returns its per-item distances ``metric.to_distance(metric(x, y))``. It is made
of three parts:

* **the batch loop**: the one every evaluation shares,
  :func:`percepmetric.evaluation.distances_in_batches` (uint8 batches under
  ``torch.inference_mode()``, formula metrics several batches at once in threads);
* **checkpoints** (:class:`~percepmetric.bench.store.ResumableDistances`): an unfinished split
  is kept in ``...partial.npz`` and resumed from there;
* **the cache** (:class:`~percepmetric.bench.store.DistanceStore`): distances are stored per
  (metric, split) and reused by the next run while they record the same metric identity
  (its ``spec`` and the content hash of each weight file) and split identity.

The last two live in :mod:`percepmetric.bench.store`, which the MOS benchmark
(:mod:`percepmetric.bench.mos`) uses in the same way.

:func:`run_benchmark` validates every requested split first (before computing anything),
then scores each metric on each split with 95% bootstrap intervals, the human ceiling and
paired tests between metrics (:mod:`percepmetric.stats`), and writes tables and figures
(:mod:`percepmetric.bench.report`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
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
from ..evaluation import distances_in_batches, metric_device
from ..metrics.base import Metric
from ..registry import unique_labels
from .store import (
    CHECKPOINT_SECONDS,
    DistanceEntry,
    DistanceStore,
    ResumableDistances,
    Split,
    _as_arrays,
    _as_result,
    _as_store,
    _distance_keys,
    _images,
    _progress,
    has_weights,
    shared_over_ranks,
)

DEFAULT_BATCH_SIZE = 100  # triplets (2AFC) or pairs (JND) per forward; a 2AFC batch is 2x this many pairs
# Formula metrics (no weights): batches small enough that their temporaries stay in the CPU
# cache, large enough to amortise the per-call work (BAPPS's 64x64 triplets: 16 was the fastest
# size for L2 and SSIM).
FORMULA_BATCH_SIZE = 16


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


def _check_patch_sizes(metrics: Sequence, loaded: dict) -> None:
    """Refuse, before any work, a metric whose smallest size exceeds a BAPPS split's patches
    (BAPPS's are 64x64: VIF needs 72, IW-SSIM 176), saying where it can be benchmarked."""
    for name, split in loaded.items():
        height, width = split.p0.shape[1:3]
        for metric in metrics:
            if min(height, width) < metric.min_size:
                raise InputError(
                    f"{metric.name} needs {metric.min_size}x{metric.min_size} images, BAPPS patches ({name}) are "
                    f"{width}x{height}: benchmark it on MOS datasets alone (--dataset, no --split)")


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

    It changes no process-wide setting (malloc's, torch's thread count, the environment): the
    ``bench`` command tunes its own process for the loop (docs/bench.md, "Process settings").
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
    bapps_root = resolve_root(root) if names else None
    cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    out_path = Path(out_dir) if out_dir is not None else None
    store = _distance_store(out_path, cache_root)
    loaded = {name: load_split(bapps_root, name, cache_dir=cache_root) for name in names}  # validate all first
    _check_patch_sizes(metrics, loaded)
    labels = unique_labels(metrics)
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
