"""Metric x MOS dataset -> per-pair values (each image decoded once, cached, resumable) -> correlations.

A mean-opinion-score dataset (:class:`~percepmetric.data.mos.MOSDataset`: TID2013, KADID-10k,
LIVE, CSIQ, PIPAL, a CSV) is a list of (reference, distorted image, score) pairs. Its benchmark
asks how well each metric's own value on the pairs (PSNR in dB, SSIM, LPIPS's distance) follows
the people's scores: SRCC, KRCC, PLCC and RMSE, raw and after the logistic fit, with intervals
that resample reference images (:mod:`percepmetric.correlation`).

**Computing the values** (:func:`compute_mos_values`): the pairs are taken reference by
reference (the *processing order*: pairs sorted by reference, stably), so each reference is
decoded once and, for deep metrics, goes through the network once
(:meth:`~percepmetric.metrics.base.Metric.values_to_reference`) for all its distortions; every
metric of the run is computed on one decoded group before the next, so each image file is
decoded once per run. Decoding runs ahead in threads. Values are kept per (metric, dataset) in
the benchmark's :class:`~percepmetric.bench.store.DistanceStore` (key ``value``, in processing
order), checkpointed and resumed exactly like BAPPS distances; under torchrun each rank takes a
contiguous block of the processing order (:func:`percepmetric.bench.store.shared_over_ranks`).

**Scoring** (:func:`score_dataset`): a metric's values are oriented so that higher means better
quality (negated for lower-is-better metrics), the scores likewise (a DMOS is negated), so a
good metric always shows positive correlations. A PSNR of identical images (+inf) is replaced
by the largest finite PSNR of the dataset, which keeps its rank and keeps the fit finite.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import correlation, distributed
from ..data.mos import MOSDataset
from ..devices import resolve_device, usable_cpus
from ..evaluation import Batch, metric_device
from ..io import as_batch, read_image_array, to_value_range
from ..metrics.base import Metric
from .store import (
    CHECKPOINT_SECONDS,
    MOS_VALUE_KEY,
    DistanceStore,
    ResumableDistances,
    _progress,
    has_weights,
    shared_over_ranks,
)

#: Distorted images per forward pass of a metric with weights (LPIPS, DISTS): 512x384 images are
#: ~2.4 MB each as float32, ~0.3 GB of AlexNet activations per batch.
DEFAULT_MOS_BATCH_SIZE = 16
#: Pixels per batch of a formula metric (PSNR, SSIM, ...): its temporaries should stay in the CPU
#: cache (the BAPPS runner's 16 patches of 64x64); a 512x384 image alone is more, so such metrics
#: take one pair at a time there (batches of 16 were 1.6x slower for SSIM, 4x for PSNR).
FORMULA_BATCH_PIXELS = 16 * 64 * 64
#: Distorted images decoded together (a reference with more is taken in several groups, its
#: image decoded once and kept), so memory stays bounded whatever a reference's distortions.
GROUP_SIZE = 32
#: Groups decoded ahead of the one being computed.
DECODE_AHEAD = 2
#: Paired comparisons between metrics are made on this statistic (rank-based: needs no fit).
COMPARED_KIND = "srcc"


def processing_order(dataset: MOSDataset) -> np.ndarray:
    """Pair indices sorted by reference (stable): the order values are computed and stored in."""
    return np.argsort(dataset.reference_index, kind="stable")


@dataclass(frozen=True)
class _Group:
    """Pairs ``first..stop`` of the processing order: one reference and (some of) its distortions."""

    first: int
    stop: int
    reference: Path
    distorted: tuple[Path, ...]


def _groups(dataset: MOSDataset, order: np.ndarray, first: int, stop: int) -> list[_Group]:
    """The groups covering positions ``first..stop`` of ``order``: runs of pairs with one reference,
    at most :data:`GROUP_SIZE` each."""
    refs = dataset.reference_index[order]
    groups = []
    position = first
    while position < stop:
        end = position
        while end < stop and end - position < GROUP_SIZE and refs[end] == refs[position]:
            end += 1
        groups.append(_Group(position, end, dataset.references[int(refs[position])],
                             tuple(dataset.distorted[int(i)] for i in order[position:end])))
        position = end
    return groups


def _decoded(groups: Sequence[_Group], workers: int) -> Iterator[tuple[_Group, np.ndarray, list[np.ndarray]]]:
    """Each group with its decoded reference and distorted images, in order; files are decoded
    in ``workers`` threads, up to :data:`DECODE_AHEAD` groups ahead of the consumer."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[tuple[_Group, Future, list[Future]]] = deque()
        upcoming = iter(groups)
        reference: tuple[Path, Future] | None = None  # consecutive groups of one reference share it
        try:
            while True:
                while len(pending) <= DECODE_AHEAD:
                    group = next(upcoming, None)
                    if group is None:
                        break
                    if reference is None or reference[0] != group.reference:
                        reference = (group.reference, pool.submit(read_image_array, group.reference))
                    pending.append((group, reference[1], [pool.submit(read_image_array, p) for p in group.distorted]))
                if not pending:
                    return
                group, ref, distorted = pending.popleft()
                yield group, ref.result(), [f.result() for f in distorted]
        finally:
            for _, ref, distorted in pending:
                for future in [ref, *distorted]:
                    future.cancel()


def _batch_tensor(arrays: Sequence[np.ndarray], device: torch.device) -> torch.Tensor:
    """Decoded images of one size -> ``(B,C,H,W)`` float32 in [0, 1] on ``device`` (as
    :func:`percepmetric.io.load_image` converts one file)."""
    return torch.cat([as_batch(a) for a in arrays]).to(device)


def compute_mos_values(metrics: Sequence[Metric], dataset: MOSDataset, store: DistanceStore | None = None, *,
                       items: tuple[int, int] | None = None, batch_size: int | None = None,
                       device: torch.device | str | None = None, progress: bool = False,
                       checkpoint_seconds: float = CHECKPOINT_SECONDS,
                       workers: int | None = None) -> list[np.ndarray]:
    """Each metric's own value on the pairs ``items`` (default: all) of the processing order
    (:func:`processing_order`): one float64 array per metric.

    ``store``: finished values are read back, unfinished ones resumed (as
    :func:`~percepmetric.bench.runner.compute_distances`). ``batch_size``: distorted images per
    forward of a metric with weights (default :data:`DEFAULT_MOS_BATCH_SIZE`; formula metrics:
    see :data:`FORMULA_BATCH_PIXELS`). ``workers``: decoding threads (default:
    the usable CPUs, at most 8). ``device``: default where the first metric's parameters are.
    """
    n = len(dataset)
    first, stop = items if items is not None else (0, n)
    dev = resolve_device(device, option="device") if device is not None else metric_device(metrics[0])
    batch_size = int(batch_size) if batch_size is not None else DEFAULT_MOS_BATCH_SIZE
    workers = workers if workers is not None else min(8, usable_cpus())
    entries = [store.entry(m, dataset, items) if store is not None else None for m in metrics]
    done: list[Any] = [e.finished() if e is not None else None for e in entries]
    runs = {i: ResumableDistances((MOS_VALUE_KEY,), stop - first, entries[i], checkpoint_seconds)
            for i, d in enumerate(done) if d is None}
    if runs:
        start = first + min(run.done for run in runs.values())
        bar = _progress(stop - first, start - first, dataset.name, progress)
        try:
            with contextlib.ExitStack() as stack:
                for run in runs.values():
                    stack.enter_context(run.saved_if_interrupted())
                groups = _groups(dataset, processing_order(dataset), start, stop)
                for group, ref, distorted in _decoded(groups, workers):
                    _compute_group(metrics, runs, group, ref, distorted, first, batch_size, dev)
                    bar.update(group.stop - group.first)
        finally:
            bar.close()
        for i, run in runs.items():
            done[i] = run.finish()
    return [np.asarray(d, dtype=np.float64) for d in done]


def _compute_group(metrics: Sequence[Metric], runs: dict[int, ResumableDistances], group: _Group, ref: np.ndarray,
                   distorted: list[np.ndarray], offset: int, batch_size: int, device: torch.device) -> None:
    """Every unfinished metric on one group: ``batch_size`` distorted images at a time for metrics
    with weights, :data:`FORMULA_BATCH_PIXELS` worth for formula metrics."""
    reference = _batch_tensor([ref], device)
    images = _batch_tensor(distorted, device)
    pixels = images.shape[-2] * images.shape[-1]
    for i, run in runs.items():
        size = batch_size if has_weights(metrics[i]) else max(1, FORMULA_BATCH_PIXELS // pixels)
        for k in range(0, len(distorted), size):
            lo, hi = group.first + k - offset, min(group.first + k + size, group.stop) - offset
            if run.done >= hi:
                continue  # resumed past this batch
            with torch.inference_mode():  # the decoded [0, 1] images in the metric's declared input range
                value_range = metrics[i].value_range
                values = metrics[i].values_to_reference(to_value_range(reference, value_range),
                                                        to_value_range(images[k:k + size], value_range))
            run.add(Batch(lo, hi, (values.detach().to(torch.float64).cpu().numpy().reshape(-1),)))


def mos_values(metrics: Sequence[Metric], dataset: MOSDataset, store: DistanceStore | None,
               group: distributed.Group, **job: Any) -> list[np.ndarray]:
    """:func:`compute_mos_values` of all pairs, shared by the ranks of ``group``, returned in the
    dataset's own order (pair ``i`` of the score file at position ``i``)."""
    order = processing_order(dataset)
    n = len(dataset)

    def entries(items: tuple[int, int] | None) -> list:
        return [store.entry(m, dataset, items) if store is not None else None for m in metrics]

    def compute(items: tuple[int, int] | None) -> list[dict[str, np.ndarray]]:
        return [{MOS_VALUE_KEY: v} for v in compute_mos_values(metrics, dataset, store, items=items, **job)]

    in_order = shared_over_ranks(group, n, entries, compute)
    values = []
    for arrays in in_order:
        back = np.empty(n, dtype=np.float64)
        back[order] = arrays[MOS_VALUE_KEY]
        values.append(back)
    return values


# ---------------------------------------------------------------- scores

def oriented_quality(metric: Metric, values: np.ndarray) -> np.ndarray:
    """The metric's values as a quality, higher = better: negated for lower-is-better metrics;
    +inf (PSNR of identical images) replaced by the largest finite value (see the module docstring)."""
    quality = -values if metric.lower_is_better else values.astype(np.float64, copy=True)
    infinite = np.isposinf(quality)
    if infinite.any() and (~infinite).any():
        quality[infinite] = quality[~infinite].max()
    return quality


def score_dataset(labels: Sequence[str], metrics: Sequence[Metric], dataset: MOSDataset, values: Sequence[np.ndarray],
                  *, fit: str = "logistic5", n_boot: int = 1000, level: float = 0.95,
                  seed: int = 0) -> tuple[list[dict], list[dict]]:
    """``(rows, comparisons)`` of one dataset.

    ``rows``: per metric one row per statistic of :data:`percepmetric.correlation.KINDS` on
    the whole dataset (``split`` = the dataset's name), then the SRCC of each distortion type
    (``split`` = ``name/type``), each with its interval by resampling references (or the
    groups a CSV's ``group`` column names), ``fit_failures`` and ``note``
    (:func:`percepmetric.correlation.correlation_table`): a score or interval that cannot be
    given is NaN, and ``note`` says why (too few pairs, all scores equal, fewer than
    :data:`percepmetric.correlation.MIN_GROUPS` references, fits that did not converge).
    ``comparisons``: the best metric by SRCC against each other one, paired over the same
    reference resamples: only between metrics whose SRCC is defined, and only when the
    difference has an interval (no comparison is made on fewer than ``MIN_GROUPS`` references).
    """
    mos, references = dataset.mos, dataset.groups  # the resampled units: references, or a CSV's groups
    words = {"item": "pair", "group": "group" if dataset.group_index is not None else "reference image"}
    qualities = [oriented_quality(m, v) for m, v in zip(metrics, values)]
    rows: list[dict] = []
    for label, metric, quality in zip(labels, metrics, qualities):
        base = {"metric": label, "spec": metric.spec, "status": "complete"}
        for stat in correlation.correlation_table(quality, mos, references, fit=fit, n_boot=n_boot, level=level,
                                                  seed=seed, **words):
            rows.append({**base, "split": dataset.name, "n": len(dataset), **stat})
        for kind in sorted(set(dataset.distortion) - {""}):
            mask = np.asarray(dataset.distortion) == kind
            (stat,) = correlation.correlation_table(quality[mask], mos[mask], references[mask], n_boot=n_boot,
                                                    level=level, seed=seed, kinds=(COMPARED_KIND,), **words)
            rows.append({**base, "split": f"{dataset.name}/{kind}", "n": int(mask.sum()), **stat})
    comparisons = []
    scores = np.array([correlation.srcc(q, mos) for q in qualities])
    scored = [int(i) for i in np.flatnonzero(np.isfinite(scores))]
    if len(scored) > 1 and len(np.unique(references)) >= correlation.MIN_GROUPS:
        best = scored[int(np.argmax(scores[scored]))]
        for j in scored:
            if j == best:
                continue
            test = correlation.paired_correlation_test(COMPARED_KIND, qualities[best], qualities[j], mos, references,
                                                       fit=fit, n_boot=n_boot, level=level, seed=seed)
            if not (np.isfinite(test["ci_low"]) and np.isfinite(test["ci_high"])):
                continue  # no interval for the difference: nothing to say about which is better
            better = "neither" if test["ci_low"] <= 0 <= test["ci_high"] else ("a" if test["difference"] > 0 else "b")
            comparisons.append({"split": dataset.name, "metric_a": labels[best], "metric_b": labels[j],
                                "score_a": test["score_a"], "score_b": test["score_b"],
                                "difference": test["difference"], "ci_low": test["ci_low"],
                                "ci_high": test["ci_high"], "p_value": test["p_value"], "better": better})
    return rows, comparisons


def scatter_points(metrics: Sequence[Metric], values: Sequence[np.ndarray], dataset: MOSDataset,
                   fit: str = "logistic5") -> list[dict[str, Any]]:
    """Per metric, what its scatter plot shows, in the metric's and the score file's own units:
    ``value`` and ``score`` (one point per pair), and the fitted logistic as ``curve_value``,
    ``curve_score`` (200 even steps over the values' range and each pair's value), with ``form``, ``converged`` and
    ``monotone_fallback`` (the 5-parameter fit was not monotone: this is the 4-parameter one).

    The curve is the one :func:`score_dataset` computes PLCC and RMSE after the fit from
    (:func:`percepmetric.correlation.fit_logistic` of the same oriented quality and scores):
    ``fit`` (a :class:`~percepmetric.correlation.LogisticFit`) maps ``quality`` (the oriented
    values) to oriented scores; ``score_sign * fit(quality)`` is the drawn curve at each pair.
    ``unit``: the metric's unit (``dB`` for PSNR, ``""`` for unitless values);
    ``lower_is_better``: the metric's direction."""
    mos = dataset.mos
    score_sign = 1.0 if dataset.higher_is_better else -1.0
    points = []
    for metric, v in zip(metrics, values):
        quality = oriented_quality(metric, v)
        curve = correlation.fit_logistic(quality, mos, form=fit)
        # 200 even steps plus every pair's own value: where values crowd (L2 near 0) a steep fit
        # would otherwise be drawn as a chord that misses the pairs it was fitted to
        grid = np.union1d(np.linspace(quality.min(), quality.max(), 200), quality)
        value_sign = -1.0 if metric.lower_is_better else 1.0
        points.append({"value": value_sign * quality, "score": score_sign * mos, "curve_value": value_sign * grid,
                       "curve_score": score_sign * curve(grid), "form": curve.form, "converged": curve.converged,
                       "monotone_fallback": curve.monotone_fallback, "fit": curve, "quality": quality,
                       "score_sign": score_sign, "unit": metric.unit, "lower_is_better": metric.lower_is_better})
    return points
