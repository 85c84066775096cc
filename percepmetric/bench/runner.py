"""Metric x split -> distances (batched, cached, resumable) -> scores.

:func:`compute_distances` runs one registry :class:`~percepmetric.metrics.base.Metric` over
one split in batches under ``torch.inference_mode()`` and returns its per-item distances
``metric.to_distance(metric(x, y))``. With a cache folder, distances are stored per
(metric identity, split identity): a finished split in ``<key>.npz``, an unfinished one in
``<key>.partial.npz`` (written atomically every ``checkpoint_seconds`` and when the run is
interrupted), so a second run reuses them and an interrupted one resumes where it stopped.
Only the complete file counts as done.

:func:`run_benchmark` validates every requested split first (before computing anything),
then scores each metric on each split with 95% bootstrap intervals, the human ceiling and
paired tests between metrics, and writes tables and figures (:mod:`percepmetric.bench.report`).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from ..data.bapps import (
    JNDSplit,
    TwoAFCSplit,
    default_cache_dir,
    expand_splits,
    is_jnd,
    load_split,
    resolve_root,
    uint8_batch,
)
from ..errors import InputError
from ..registry import metric_label
from . import scores
from ..io import atomic_path
from ..memory import keep_freed_memory

DEFAULT_BATCH_SIZE = 100  # triplets (2AFC) or pairs (JND) per forward; a 2AFC batch is 2x this many pairs
# Formula metrics (no weights): batches small enough to stay in the CPU cache, large enough to
# amortise the per-call work (measured on 64x64 triplets, 2 threads: 16 best for L2 and SSIM).
FORMULA_BATCH_SIZE = 16
CHECKPOINT_SECONDS = 30.0


# ---------------------------------------------------------------- identities and the distance store

def _file_stamp(value: Any) -> str | None:
    """size:mtime of an option that names an existing file (a weight file), so a retrained
    checkpoint at the same path does not reuse stale distances."""
    if isinstance(value, (str, os.PathLike)) and str(value) and os.path.isfile(value):
        st = os.stat(value)
        return f"{st.st_size}:{st.st_mtime_ns}"
    return None


def metric_identity(metric) -> str:
    """The metric's ``spec`` plus the size and time of any weight file it names."""
    stamps = [f"{k}@{s}" for k, v in sorted(getattr(metric, "options", {}).items()) if (s := _file_stamp(v))]
    return metric.spec + ("|" + ",".join(stamps) if stamps else "")


def split_identity(split: TwoAFCSplit | JNDSplit) -> str:
    """The split's name, size and data fingerprint (a hash of the arrays for in-memory splits)."""
    fingerprint = split.fingerprint
    if not fingerprint:
        h = hashlib.sha1()
        for arr in _images(split) + (_labels(split),):
            h.update(np.ascontiguousarray(arr).tobytes())
        fingerprint = h.hexdigest()[:20]
    return f"{split.name}|{len(split)}|{fingerprint}"


def _images(split) -> tuple[np.ndarray, ...]:
    return (split.p0, split.p1) if isinstance(split, JNDSplit) else (split.ref, split.p0, split.p1)


def _labels(split) -> np.ndarray:
    return split.same if isinstance(split, JNDSplit) else split.judge


def _slug(text: str, limit: int = 60) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
    return keep.strip("_")[:limit] or "x"


@dataclass
class DistanceStore:
    """Per-item distances on disk: ``folder/<split>/<metric>-<hash>.npz`` (+ ``.partial.npz``)."""

    folder: Path

    def path(self, metric, split) -> Path:
        key = hashlib.sha1(f"{metric_identity(metric)}||{split_identity(split)}".encode()).hexdigest()[:16]
        return Path(self.folder) / _slug(split.name.replace("/", "_")) / f"{_slug(metric.name, 30)}-{key}.npz"

    @staticmethod
    def partial_path(path: Path) -> Path:
        return path.with_name(path.stem + ".partial.npz")

    @staticmethod
    def read(path: Path) -> dict[str, np.ndarray] | None:
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError):
            return None

    @staticmethod
    def write(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
        """Atomic: write a temporary file next to ``path``, then rename it."""
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, meta=np.array(json.dumps(meta)), **arrays)


def _as_store(cache) -> DistanceStore | None:
    if cache is None or cache is False:
        return None
    return cache if isinstance(cache, DistanceStore) else DistanceStore(Path(cache))


# ---------------------------------------------------------------- distances

def _metric_device(metric) -> torch.device:
    for tensor in list(metric.parameters()) + list(metric.buffers()):
        return tensor.device
    return torch.get_default_device()


def _in_threads(compute: Callable[[int], Any], starts: Sequence[int], workers: int) -> Iterator[tuple[int, Any]]:
    """``(start, compute(start))`` for each start, in order. With ``workers > 1`` the batches run
    in that many threads at once, each op single-threaded (torch's thread count is 1 meanwhile,
    restored after): small batches of elementwise steps waste much of their time in the
    fork-join of two-thread ops (measured on 2 cores: torch SSIM batches 1.2-1.5x faster this
    way), and the compiled SSIM loop, single-threaded, releases the GIL and uses every core
    only so. At most 2 x workers batches are in flight; closing the generator (the caller
    stopped or was interrupted) cancels the rest."""
    if workers <= 1:
        yield from ((start, compute(start)) for start in starts)
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # also the count new threads start with
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        pending = iter(starts)
        running = deque((start, pool.submit(compute, start)) for start in itertools.islice(pending, 2 * workers))
        while running:
            start, future = running.popleft()
            result = future.result()
            running.extend((nxt, pool.submit(compute, nxt)) for nxt in itertools.islice(pending, 1))
            yield start, result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(threads)


def compute_distances(metric, split: TwoAFCSplit | JNDSplit, batch_size: int | None = None, cache=None, *,
                      device: torch.device | str | None = None, progress: bool = False,
                      checkpoint_seconds: float = CHECKPOINT_SECONDS, workers: int | None = None):
    """Distances of ``metric`` on every item of ``split``.

    2AFC: returns ``(d0, d1)``, float64 ``(N,)`` each, ``d_i = to_distance(metric(ref, p_i))``.
    JND: returns ``d``, float64 ``(N,)``, ``to_distance(metric(p0, p1))``.
    Images go to the metric as they are stored, uint8 ``(B,H,W,3)``, through
    :meth:`~percepmetric.metrics.base.Metric.triplet_values_8bit` (JND:
    :meth:`~percepmetric.metrics.base.Metric.values_8bit`), ``batch_size`` items at a time,
    on ``device`` (default: where the metric's parameters are).
    ``cache``: a folder or :class:`DistanceStore`; finished results are read back instead of
    recomputed, unfinished ones resumed. ``workers``: batches computed at once (default:
    torch's thread count for formula metrics on the CPU, else 1; see :func:`_in_threads`).
    """
    has_weights = any(True for _ in metric.parameters()) if hasattr(metric, "parameters") else True
    if batch_size is None:
        batch_size = DEFAULT_BATCH_SIZE if has_weights else FORMULA_BATCH_SIZE
    batch_size = int(batch_size)
    if batch_size < 1:
        raise InputError(f"batch_size must be positive, got {batch_size}")
    jnd = isinstance(split, JNDSplit)
    keys = ("d",) if jnd else ("d0", "d1")
    n = len(split)
    store = _as_store(cache)
    path = store.path(metric, split) if store else None
    if path is not None:
        done = store.read(path)
        if done is not None and all(k in done and len(done[k]) == n for k in keys):
            return done["d"] if jnd else (done["d0"], done["d1"])
    out = {k: np.empty(n, dtype=np.float64) for k in keys}
    start = 0
    if path is not None:
        partial = store.read(store.partial_path(path))
        if partial is not None and all(k in partial for k in keys):
            start = min(len(partial[k]) for k in keys)
            for k in keys:
                out[k][:start] = partial[k][:start]
    meta = {"metric": metric.spec, "identity": metric_identity(metric), "split": split.name,
            "split_identity": split_identity(split), "n": n}

    def save_partial(upto: int) -> None:
        if path is not None and upto > start_saved[0]:
            store.write(store.partial_path(path), {k: v[:upto] for k, v in out.items()}, {**meta, "done": upto})
            start_saved[0] = upto

    start_saved = [start]
    device = torch.device(device) if device is not None else _metric_device(metric)
    if workers is None:
        workers = torch.get_num_threads() if device.type == "cpu" and not has_weights else 1
    images = _images(split)

    def distances(first: int) -> tuple[np.ndarray, ...]:
        with torch.inference_mode():  # per thread: the batches may run in worker threads
            batch = [uint8_batch(a[first:first + batch_size], device) for a in images]
            values = (metric.values_8bit(*batch),) if jnd else metric.triplet_values_8bit(*batch)
            return tuple(_as_distances(metric, v) for v in values)

    bar = _progress(n, start, f"{split.name} {metric.name}", progress)
    position, last_save = start, time.monotonic()
    try:
        with contextlib.closing(_in_threads(distances, range(start, n, batch_size), int(workers))) as batches:
            for first, values in batches:
                stop = min(first + batch_size, n)
                for k, v in zip(keys, values):
                    out[k][first:stop] = v
                bar.update(stop - first)
                position = stop
                if path is not None and time.monotonic() - last_save > checkpoint_seconds and position < n:
                    save_partial(position)
                    last_save = time.monotonic()
    except BaseException:
        save_partial(position)  # keep what was computed; the run resumes from here
        raise
    finally:
        bar.close()
    if path is not None:
        store.write(path, out, meta)
        store.partial_path(path).unlink(missing_ok=True)
    return out["d"] if jnd else (out["d0"], out["d1"])


def _as_distances(metric, values: torch.Tensor) -> np.ndarray:
    return metric.to_distance(values).detach().to(torch.float64).cpu().numpy().reshape(-1)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, initial: int, desc: str, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="item", file=sys.stderr, leave=False, dynamic_ncols=True)


# ---------------------------------------------------------------- the benchmark

@dataclass
class BenchResult:
    """Everything one benchmark run produced.

    ``rows``: one dict per (metric, split): metric (label), spec, split, kind ("2afc"/"jnd"),
    n, score, ci_low, ci_high, status ("complete" or "not computed").
    ``ceilings``: one dict per 2AFC split: split, n, score, ci_low, ci_high (the human ceiling).
    ``comparisons``: paired tests between metrics, per split (see :class:`scores.PairedTest`).
    ``curves``: ``(label, split) -> (precision, recall)`` of each JND split, for plots.
    """

    root: Path
    splits: list[str]
    metrics: list[str]
    synthetic: bool
    rows: list[dict] = field(default_factory=list)
    ceilings: list[dict] = field(default_factory=list)
    comparisons: list[dict] = field(default_factory=list)
    curves: dict = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return all(r["status"] == "complete" for r in self.rows) and len(self.rows) == len(self.splits) * len(self.metrics)

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
                  out_dir: str | os.PathLike | None = None, *, batch_size: int | None = None,
                  device: torch.device | str | None = None, progress: bool = False, n_boot: int = 1000,
                  level: float = 0.95, seed: int = 0, plot: bool = False,
                  cache_dir: str | os.PathLike | None = None) -> BenchResult:
    """Score every metric on every split; return a :class:`BenchResult`.

    ``metrics``: registry :class:`Metric` objects. ``splits``: names or groups (``"val"``,
    ``"jnd"``, ``"val/cnn"``, ...). ``root``: the dataset (see ``resolve_root``). All splits
    are validated and decoded (or read from the uint8 cache) before any distance is computed.
    ``out_dir``: if given, per-item distances go to ``out_dir/distances`` and the tables
    (CSV, JSON) and, with ``plot``, PNG figures next to them; otherwise distances are cached
    under ``cache_dir`` (default: the user cache folder). Scores come with ``level``
    bootstrap intervals (``n_boot`` resamples, deterministic in ``seed``).
    """
    from ..data.fixtures import is_synthetic

    if not metrics:
        raise InputError("no metric to benchmark")
    keep_freed_memory()  # every batch allocates the same temporaries: reuse, do not page-fault them
    names = expand_splits(list(splits))
    root = resolve_root(root)
    cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    loaded = {name: load_split(root, name, cache_dir=cache_root) for name in names}  # validate all first
    out_path = Path(out_dir) if out_dir is not None else None
    store = DistanceStore(out_path / "distances" if out_path else cache_root / "distances")
    labels = _unique_labels(metrics)
    result = BenchResult(root=root, splits=names, metrics=labels, synthetic=is_synthetic(root))
    distances: dict[tuple[int, str], Any] = {}
    try:
        for name in names:
            split = loaded[name]
            if not is_jnd(name):
                lo, hi = scores.bootstrap_ci(scores.human_ceiling, split.judge, n_boot=n_boot, level=level, seed=seed)
                result.ceilings.append({"split": name, "n": len(split), "score": scores.human_ceiling(split.judge),
                                        "ci_low": lo, "ci_high": hi})
            for i, metric in enumerate(metrics):
                d = compute_distances(metric, split, batch_size, store, device=device, progress=progress)
                distances[(i, name)] = d
                result.rows.append(_score_row(labels[i], metric, split, d, n_boot, level, seed))
                if is_jnd(name):
                    result.curves[(labels[i], name)] = scores.precision_recall(d, split.same)
            result.comparisons.extend(_comparisons(labels, split, distances, n_boot, level, seed))
    except KeyboardInterrupt:
        _mark_missing(result, labels, metrics, names)
        if out_path is not None:
            from .report import write_outputs

            result.files = write_outputs(result, out_path, plot=False)
        raise
    if out_path is not None:
        from .report import write_outputs

        result.files = write_outputs(result, out_path, plot=plot)
    return result


def _score_row(label, metric, split, d, n_boot, level, seed) -> dict:
    jnd = isinstance(split, JNDSplit)
    if jnd:
        args = (d, split.same)
        statistic = scores.jnd_map
    else:
        args = (d[0], d[1], split.judge)
        statistic = scores.two_afc_score
    lo, hi = scores.bootstrap_ci(statistic, *args, n_boot=n_boot, level=level, seed=seed)
    return {"metric": label, "spec": metric.spec, "split": split.name, "kind": "jnd" if jnd else "2afc",
            "n": len(split), "score": statistic(*args), "ci_low": lo, "ci_high": hi, "status": "complete"}


def _comparisons(labels, split, distances, n_boot, level, seed) -> list[dict]:
    """Each metric against the best one on this split (paired bootstrap on the same items)."""
    rows = []
    have = [i for i in range(len(labels)) if (i, split.name) in distances]
    if len(have) < 2:
        return rows
    if isinstance(split, JNDSplit):
        statistic, args = scores.jnd_map, {i: (distances[(i, split.name)], split.same) for i in have}
    else:
        statistic = scores.two_afc_score
        args = {i: (*distances[(i, split.name)], split.judge) for i in have}
    values = {i: statistic(*args[i]) for i in have}
    best = max(have, key=lambda i: values[i])
    for i in have:
        if i == best:
            continue
        test = scores.paired_test(statistic, args[best], args[i], n_boot=n_boot, level=level, seed=seed)
        rows.append({"split": split.name, "metric_a": labels[best], "metric_b": labels[i], **test.as_dict()})
    return rows


def _mark_missing(result: BenchResult, labels, metrics, names) -> None:
    done = {(r["metric"], r["split"]) for r in result.rows}
    for name in names:
        for label, metric in zip(labels, metrics):
            if (label, name) not in done:
                result.rows.append({"metric": label, "spec": metric.spec, "split": name,
                                    "kind": "jnd" if is_jnd(name) else "2afc", "n": None, "score": None,
                                    "ci_low": None, "ci_high": None, "status": "not computed"})
