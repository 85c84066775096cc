"""Running a metric over many image pairs or triplets, a batch at a time.

The benchmark (:mod:`percepmetric.bench.runner`), the score at the end of LPIPS training
(:mod:`percepmetric.train.evaluate`) and DeePSiM's table (:mod:`percepmetric.deepsim.evaluate`)
all do the same thing, and do it here: cut the inputs into batches, move each batch to the
metric's device, ask the metric for its values under inference mode, and turn them into
distances (``metric.to_distance``) as float64 NumPy arrays.

What differs between them is a choice, not another loop: how a slice of the inputs becomes a
tensor on the device (``prepare``: uint8 rows kept 8-bit, uint8 rows made float, or tensors
moved), and whether the metric is asked through its 8-bit entry points
(:func:`~percepmetric.metrics.eight_bit.values_8bit`,
:func:`~percepmetric.metrics.eight_bit.triplet_values_8bit`) or through
:meth:`~percepmetric.metrics.base.Metric.values` (one value per item, whatever the metric's
``reduction``).
Two inputs are pairs (one distance each), three are triplets ``(ref, p0, p1)`` (two: to p0
and to p1).

:func:`distances_in_batches` yields the batches as they finish, for a caller that keeps
them as it goes (the benchmark saves and resumes); :func:`metric_distances` collects them.
Part of the core: it imports nothing from the applications.
"""

from __future__ import annotations

import contextlib
import itertools
from collections import deque
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import torch

from .metrics.base import Metric
from .metrics.eight_bit import triplet_values_8bit, values_8bit
from .threads import side_by_side_pool, single_threaded_ops_available

__all__ = ["Batch", "distances_in_batches", "metric_device", "metric_distances", "move_to"]

Rows = np.ndarray | torch.Tensor
#: The kind of rows one call works on: NumPy arrays (image files as decoded) or tensors.
RowsT = TypeVar("RowsT", np.ndarray, torch.Tensor)
#: How a slice of one input becomes a tensor on the device.
Prepare = Callable[[RowsT, torch.device], torch.Tensor]
T = TypeVar("T")


@dataclass(frozen=True)
class Batch:
    """Items ``first`` to ``stop`` (exclusive) and their distances, one float64 array per output
    (pairs: ``(d,)``; triplets: ``(d0, d1)``)."""

    first: int
    stop: int
    distances: tuple[npt.NDArray[np.float64], ...]


def move_to(rows: Rows, device: torch.device) -> torch.Tensor:
    """The default ``prepare``: rows that already are the metric's input, as a tensor on ``device``."""
    return torch.as_tensor(rows).to(device)


def metric_device(metric: Metric, default: torch.device | None = None) -> torch.device:
    """Where ``metric`` computes: the device of its first parameter or buffer; ``default`` (else
    torch's default device) for a metric that holds none and so runs wherever its input is."""
    for tensor in itertools.chain(metric.parameters(), metric.buffers()):
        return tensor.device
    return default if default is not None else torch.get_default_device()


def distances_in_batches(metric: Metric, inputs: Sequence[RowsT], *, batch_size: int,
                         device: torch.device, prepare: Prepare[RowsT] = move_to, eight_bit: bool = False,
                         start: int = 0, workers: int = 1) -> Generator[Batch, None, None]:
    """The distances of ``metric`` on items ``start..N`` of ``inputs``, one :class:`Batch` at a
    time, in order.

    ``inputs``: two (pairs) or three (triplets ``ref, p0, p1``) arrays or tensors of ``N`` rows.
    Each slice of ``batch_size`` rows goes through ``prepare(rows, device)``; the metric is
    asked through its 8-bit entry points when ``eight_bit`` (``prepare`` then gives uint8
    ``(B,H,W,C)``), else through ``metric.values`` (a triplet as ``values(ref, p0)`` and
    ``values(ref, p1)``: the numbers a user gets from ``metric(ref, p)``). ``workers > 1`` computes
    that many batches at once in threads (see :func:`_in_threads`). Closing the generator early
    stops the batches not yet started.
    """
    if len(inputs) not in (2, 3):
        raise ValueError(f"distances_in_batches: inputs are pairs or triplets, got {len(inputs)} arrays")
    n = len(inputs[0])

    def distances(first: int) -> tuple[npt.NDArray[np.float64], ...]:
        with torch.inference_mode():  # per call: batches may run in worker threads
            batch = [prepare(rows[first:first + batch_size], device) for rows in inputs]
            values = _values(metric, batch, eight_bit)
            return tuple(metric.to_distance(v).detach().to(torch.float64).cpu().numpy().reshape(-1) for v in values)

    with contextlib.closing(_in_threads(distances, range(start, n, batch_size), workers)) as batches:
        for first, values in batches:
            yield Batch(first, min(first + batch_size, n), values)


def metric_distances(metric: Metric, inputs: Sequence[RowsT], *, batch_size: int,
                     device: torch.device | None = None, prepare: Prepare[RowsT] = move_to, eight_bit: bool = False,
                     workers: int = 1, progress: Callable[[int], object] | None = None,
                     ) -> tuple[npt.NDArray[np.float64], ...]:
    """Every distance of :func:`distances_in_batches`, joined: ``(d,)`` for pairs, ``(d0, d1)``
    for triplets, float64 ``(N,)`` each. ``device``: default :func:`metric_device`.
    ``progress(k)`` is called after each batch with its number of items (``tqdm.update`` fits).
    """
    device = device if device is not None else metric_device(metric)
    parts: list[tuple[npt.NDArray[np.float64], ...]] = []
    for batch in distances_in_batches(metric, inputs, batch_size=batch_size, device=device, prepare=prepare,
                                      eight_bit=eight_bit, workers=workers):
        parts.append(batch.distances)
        if progress is not None:
            progress(batch.stop - batch.first)
    outputs = len(inputs) - 1
    if not parts:
        return tuple(np.empty(0, dtype=np.float64) for _ in range(outputs))
    return tuple(np.concatenate([part[k] for part in parts]) for k in range(outputs))


def _values(metric: Metric, batch: list[torch.Tensor], eight_bit: bool) -> tuple[torch.Tensor, ...]:
    """The metric's own values for one batch: ``(value,)`` of a pair, ``(value to p0, value to p1)``
    of a triplet."""
    if eight_bit:
        if len(batch) == 2:
            return (values_8bit(metric, *batch),)
        return triplet_values_8bit(metric, *batch)
    if len(batch) == 2:
        return (metric.values(*batch),)
    ref, p0, p1 = batch
    return metric.values(ref, p0), metric.values(ref, p1)


def _in_threads(compute: Callable[[int], T], starts: Sequence[int],
                workers: int) -> Generator[tuple[int, T], None, None]:
    """``(start, compute(start))`` for each start, in order. With ``workers > 1`` the batches run
    in that many threads at once, each with single-threaded torch ops set in the worker thread
    only (:func:`percepmetric.threads.side_by_side_pool`; the caller's thread count is left
    alone): small batches of elementwise steps waste much of their time in the fork-join of
    multi-threaded ops, so whole batches side by side beat one batch split over the threads
    (torch SSIM batches ran 1.2-1.5x faster this way), and the compiled SSIM loop,
    single-threaded, releases the GIL and uses several cores only so. At most 2 x workers
    batches are in flight; closing the generator (the caller stopped or was interrupted)
    cancels the rest. Where a thread cannot set its own op count, the batches run one by one."""
    if workers <= 1 or not single_threaded_ops_available():
        yield from ((start, compute(start)) for start in starts)
        return
    pool = side_by_side_pool(workers)
    try:
        pending = iter(starts)
        running: deque[tuple[int, Future[T]]] = deque(
            (start, pool.submit(compute, start)) for start in itertools.islice(pending, 2 * workers))
        while running:
            start, future = running.popleft()
            result = future.result()
            running.extend((nxt, pool.submit(compute, nxt)) for nxt in itertools.islice(pending, 1))
            yield start, result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
