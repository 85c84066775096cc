"""How well distances agree with people: 2AFC credit and score, human ceiling, JND average
precision, bootstrap intervals and paired tests.

The one home of percepmetric's statistics: the benchmark (``bench``), the evaluation of a
trained LPIPS (``train``) and the DeePSiM tables (``deepsim``) all score with these functions,
so a number means the same wherever it is printed. Pure NumPy, no I/O, and nothing from the
applications: only :mod:`percepmetric.errors` is imported.

Definitions follow the evaluation of the LPIPS paper (Zhang et al., CVPR 2018, Sec. 2 and 5)
and its reference code (``score_2afc_dataset``, ``score_jnd_dataset`` / ``voc_ap``):

* **2AFC**: per triplet, ``judge`` = fraction of people who found ``p1`` closer to ``ref``.
  A metric earns ``judge`` when ``d1 < d0``, ``1 - judge`` when ``d0 < d1`` and ``0.5`` on a
  tie (:func:`two_afc_credit`); the score is the mean credit (:func:`two_afc_score`). People
  themselves, if each answered with the group's proportion ``p``, would agree with a random
  other person ``p^2 + (1 - p)^2`` of the time: the human ceiling is its mean.
* **JND**: pairs ordered by ascending distance; precision and recall of "same" (fractional
  labels count fractionally) down that list; the score is the VOC-style average precision:
  the area under the precision envelope (precision made non-increasing from the right),
  summed where recall changes (PASCAL VOC 2010+, ``use_07_metric=False``).
  Ties in distance are ordered as NumPy's default ``argsort`` orders them, as the reference does.

All statistics are "higher is better". Confidence intervals are percentile bootstraps over
triplets (or pairs); :func:`paired_test` resamples the same triplets for two metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import numpy.typing as npt

from .errors import InputError

if TYPE_CHECKING:
    import torch

__all__ = [
    "PairedTest",
    "average_precision",
    "bootstrap_ci",
    "human_ceiling",
    "jnd_map",
    "paired_test",
    "precision_recall",
    "two_afc_credit",
    "two_afc_score",
]

FloatArray = npt.NDArray[np.float64]
Statistic = Callable[..., float]

_CHUNK_ELEMENTS = 4_000_000  # bootstrap resamples are drawn in chunks of about this many indices


def _as_1d(a: npt.ArrayLike) -> FloatArray:
    return np.asarray(a, dtype=np.float64).reshape(-1)


def _check_same_length(**arrays: FloatArray) -> int:
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise InputError(f"arrays differ in length: {', '.join(f'{k}={n}' for k, n in lengths.items())}")
    n = next(iter(lengths.values()))
    if n == 0:
        raise InputError("no triplets or pairs to score (empty arrays)")
    return n


# ---------------------------------------------------------------- 2AFC

@overload
def two_afc_credit(d0: torch.Tensor, d1: torch.Tensor, judge: torch.Tensor) -> torch.Tensor: ...
@overload
def two_afc_credit(d0: npt.ArrayLike, d1: npt.ArrayLike, judge: npt.ArrayLike) -> FloatArray: ...
def two_afc_credit(d0: Any, d1: Any, judge: Any) -> Any:
    """Per-triplet credit: ``judge`` if ``d1 < d0``, ``1 - judge`` if ``d0 < d1``, 0.5 on a tie
    (or when a distance is NaN: neither is smaller).

    Broadcasts (``(..., N)`` in, ``(..., N)`` out). Array-likes give float64 NumPy arrays;
    torch tensors give a tensor of ``d0``'s dtype on their device (training totals its running
    2AFC score this way without leaving the GPU).
    """
    if hasattr(d0, "__torch_function__"):  # a torch tensor: the same selection, with its own where
        judge = judge.to(d0.dtype)
        return judge.where(d1 < d0, (1 - judge).where(d0 < d1, 0.5))
    d0, d1, judge = (np.asarray(a, dtype=np.float64) for a in (d0, d1, judge))
    return np.where(d1 < d0, judge, np.where(d0 < d1, 1.0 - judge, 0.5))


def two_afc_score(d0: npt.ArrayLike, d1: npt.ArrayLike, judge: npt.ArrayLike) -> float:
    """2AFC score in [0, 1]: mean of :func:`two_afc_credit` over the ``N`` triplets.

    ``d0, d1``: distances ``(N,)`` from the reference to p0 and p1 (lower = more alike);
    ``judge``: ``(N,)`` in [0, 1], the fraction of people who chose p1.
    """
    d0, d1, judge = _as_1d(d0), _as_1d(d1), _as_1d(judge)
    _check_same_length(d0=d0, d1=d1, judge=judge)
    return float(two_afc_credit(d0, d1, judge).mean())


def human_ceiling(judge: npt.ArrayLike) -> float:
    """Mean of ``p^2 + (1 - p)^2`` over triplets: how often one person agrees with another (LPIPS paper, Sec. 5)."""
    p = _as_1d(judge)
    _check_same_length(judge=p)
    return float(np.mean(p * p + (1.0 - p) ** 2))


# ---------------------------------------------------------------- JND

def precision_recall(d: npt.ArrayLike, same: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Precision and recall of "same" down the list of pairs ordered by ascending distance.

    ``d``: ``(..., N)`` distances; ``same``: ``(..., N)`` fractions in [0, 1]. Returns
    ``(precision, recall)``, each ``(..., N)``: after the k closest pairs,
    ``TP = sum(same)``, ``FP = sum(1 - same)``, ``precision = TP / (TP + FP)``,
    ``recall = TP / sum(all same)``.
    """
    d = np.asarray(d, dtype=np.float64)
    same = np.asarray(same, dtype=np.float64)
    order = np.argsort(d, axis=-1)  # default kind, as the reference (ties matter for fractional labels)
    s = np.take_along_axis(same, order, axis=-1)
    tp = np.cumsum(s, axis=-1)
    fp = np.cumsum(1.0 - s, axis=-1)
    fn = tp[..., -1:] - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / (tp + fp), tp / (tp + fn)


def average_precision(recall: npt.ArrayLike, precision: npt.ArrayLike) -> FloatArray:
    """VOC average precision (``use_07_metric=False``) of PR curves ``(..., N)`` -> ``(...)``.

    With sentinels ``recall = [0, r..., 1]``, ``precision = [0, p..., 0]``: the envelope
    ``P_k = max_{j >= k} p_j``; ``AP = sum_k (r_{k+1} - r_k) P_{k+1}`` (terms where recall
    does not change add nothing).
    """
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    lead = recall.shape[:-1]
    mrec = np.concatenate([np.zeros(lead + (1,)), recall, np.ones(lead + (1,))], axis=-1)
    mpre = np.concatenate([np.zeros(lead + (1,)), precision, np.zeros(lead + (1,))], axis=-1)
    envelope = np.flip(np.maximum.accumulate(np.flip(mpre, axis=-1), axis=-1), axis=-1)
    step = np.diff(mrec, axis=-1)
    return np.sum(np.where(step != 0, step * envelope[..., 1:], 0.0), axis=-1)


def _jnd_map_rows(d: FloatArray, same: FloatArray) -> FloatArray:
    precision, recall = precision_recall(d, same)
    return average_precision(recall, precision)


def jnd_map(d: npt.ArrayLike, same: npt.ArrayLike) -> float:
    """JND score in [0, 1]: VOC average precision of "same" when pairs are ordered by ascending ``d``.

    ``d``: ``(N,)`` distances of the pairs; ``same``: ``(N,)`` fraction of people who judged
    them identical. See the module docstring; :class:`InputError` when nobody said "same".
    """
    d, same = _as_1d(d), _as_1d(same)
    _check_same_length(d=d, same=same)
    if not np.sum(same) > 0:
        raise InputError("jnd_map: no pair was judged 'same' (sum of same is 0): precision-recall is undefined")
    return float(_jnd_map_rows(d, same))


# ---------------------------------------------------------------- bootstrap

def _item_values(statistic: Statistic, arrays: Sequence[FloatArray]) -> FloatArray | None:
    """Per-item values whose mean is ``statistic(*arrays)``, for the statistics that are means
    (2AFC, human ceiling, ``np.mean``); ``None`` for any other statistic."""
    if statistic is two_afc_score:
        return two_afc_credit(*arrays)
    if statistic is human_ceiling:
        p = arrays[0]
        return p * p + (1.0 - p) ** 2
    if statistic is np.mean:
        return arrays[0]
    return None


def _rows_statistic(statistic: Statistic) -> Callable[..., FloatArray]:
    """A version of a (non-mean) ``statistic`` taking ``(B, N)`` resampled arrays, returning ``(B,)``."""
    if statistic is jnd_map:
        return _jnd_map_rows
    return lambda *rows: np.array([statistic(*(r[b] for r in rows)) for b in range(len(rows[0]))])


def _bootstrap_means(values: FloatArray, n_boot: int, rng: np.random.Generator) -> FloatArray:
    """Means of ``n_boot`` resamples (``N`` draws with replacement) of ``values`` ``(N,)``.

    A resample's mean depends only on how often each distinct value is drawn, and those counts
    are multinomial(N, frequencies): drawing them is the same distribution as drawing N
    indices, at the cost of K draws for K distinct values. 2AFC credits take a handful of
    values (BAPPS judgments are fractions of 3 or 5 people), so a 36k-triplet split costs
    1000 x K draws instead of 36 million. Many distinct values (a binomial draw costs a few
    index draws): indices, in chunks.
    """
    n = len(values)
    distinct, counts = np.unique(values, return_counts=True)
    if len(distinct) <= n // 8:
        return rng.multinomial(n, counts / n, size=n_boot) @ distinct / n
    chunk = max(1, _CHUNK_ELEMENTS // n)
    return np.concatenate([values[rng.integers(0, n, size=(min(chunk, n_boot - start), n))].mean(axis=1)
                           for start in range(0, n_boot, chunk)])


def _resampled(statistic: Statistic, arrays: Sequence[FloatArray], n_boot: int, seed: int,
               second: Sequence[FloatArray] | None = None) -> FloatArray:
    """``statistic`` on ``n_boot`` bootstrap resamples ``(n_boot,)``; with ``second``, the
    difference ``statistic(arrays) - statistic(second)`` on the same resampled items."""
    rng = np.random.default_rng(seed)
    items = _item_values(statistic, arrays)
    if items is not None:  # a mean: the difference of means is the mean of the differences
        others = _item_values(statistic, second) if second is not None else None
        return _bootstrap_means(items - others if others is not None else items, n_boot, rng)
    rows_stat = _rows_statistic(statistic)
    n = len(arrays[0])
    chunk = max(1, _CHUNK_ELEMENTS // n)
    out = []
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_boot - start), n))
        value = rows_stat(*(a[idx] for a in arrays))
        out.append(value - rows_stat(*(b[idx] for b in second)) if second is not None else value)
    return np.concatenate(out)


def bootstrap_ci(statistic: Statistic, *arrays: npt.ArrayLike, n_boot: int = 1000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval ``(low, high)`` of ``statistic(*arrays)``.

    ``arrays`` are ``(N,)`` each, resampled together (the same triplets/pairs), ``n_boot``
    times. ``statistic`` is any function of them returning a float; :func:`two_afc_score`,
    :func:`jnd_map` and :func:`human_ceiling` are evaluated vectorized. Deterministic in ``seed``.
    Example: ``bootstrap_ci(two_afc_score, d0, d1, judge)``.
    """
    data = [_as_1d(a) for a in arrays]
    _check_same_length(**{f"array{i}": a for i, a in enumerate(data)})
    if not 0 < level < 1:
        raise InputError(f"level must be in (0, 1), got {level}")
    values = _resampled(statistic, data, int(n_boot), seed)
    alpha = (1.0 - level) / 2.0
    low, high = np.nanquantile(values, [alpha, 1.0 - alpha])
    return float(low), float(high)


@dataclass(frozen=True)
class PairedTest:
    """Result of :func:`paired_test`: is metric A better than B on the same data, and how sure."""

    score_a: float
    score_b: float
    difference: float  # score_a - score_b (both higher-is-better)
    ci_low: float
    ci_high: float
    p_value: float  # two-sided, bootstrap: how often the resampled difference crosses 0
    better: str  # "a", "b", or "neither" when the interval contains 0

    def as_dict(self) -> dict[str, float | str]:
        return asdict(self)


def paired_test(statistic: Statistic, arrays_a: Sequence[npt.ArrayLike], arrays_b: Sequence[npt.ArrayLike],
                n_boot: int = 1000,
                level: float = 0.95, seed: int = 0) -> PairedTest:
    """Compare two metrics on the same triplets/pairs by a paired bootstrap.

    ``arrays_a`` / ``arrays_b``: the arguments of ``statistic`` for metric A and B, e.g.
    ``paired_test(two_afc_score, (d0_a, d1_a, judge), (d0_b, d1_b, judge))`` or
    ``paired_test(jnd_map, (d_a, same), (d_b, same))``. Each resample draws the same
    indices for both, so the difference's interval accounts for their correlation.
    ``p_value = min(1, 2 min(P*(diff <= 0), P*(diff >= 0)))`` over resamples, at least
    ``1 / n_boot``. ``better`` names the metric whose advantage the ``level`` interval supports.
    """
    a = [_as_1d(x) for x in arrays_a]
    b = [_as_1d(x) for x in arrays_b]
    _check_same_length(**{f"a{i}": x for i, x in enumerate(a)}, **{f"b{i}": x for i, x in enumerate(b)})
    score_a, score_b = float(statistic(*a)), float(statistic(*b))
    diff = _resampled(statistic, a, int(n_boot), seed, second=b)
    alpha = (1.0 - level) / 2.0
    quantiles = np.nanquantile(diff, [alpha, 1.0 - alpha])
    low, high = float(quantiles[0]), float(quantiles[1])
    p = min(1.0, 2.0 * min(float(np.mean(diff <= 0)), float(np.mean(diff >= 0))))
    p = max(p, 1.0 / n_boot)
    better = "a" if low > 0 else "b" if high < 0 else "neither"
    return PairedTest(score_a, score_b, score_a - score_b, low, high, float(p), better)
