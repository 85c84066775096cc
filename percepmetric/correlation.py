"""How well a metric's values agree with mean opinion scores (MOS): SRCC, KRCC, PLCC, RMSE, the
VQEG logistic fit, group-bootstrap intervals and paired tests.

The statistics of the MOS benchmark (TID2013, KADID-10k, LIVE, CSIQ, PIPAL, any CSV of
(reference, distorted, score)), computed one documented way so that a number reproduces. Pure
NumPy/SciPy, no I/O; of percepmetric it imports only :mod:`percepmetric.errors` and
:mod:`percepmetric.stats`. The BAPPS statistics (2AFC, JND) live in :mod:`percepmetric.stats`.

Conventions
-----------
* ``quality`` is oriented so that HIGHER means BETTER quality: the caller passes ``-distance``
  for a lower-is-better metric. ``mos`` is oriented the same way (a DMOS is negated by the
  caller) and may be on any real scale. A good metric therefore shows positive SRCC, KRCC and
  PLCC; a metric passed with the wrong orientation shows negative ones. PLCC_fitted and
  RMSE_fitted do not show orientation: the fitted logistic may be decreasing, and a
  least-squares fit that contains a constant and a multiple of its own shape always has
  ``cov(fitted, mos) = var(fitted) >= 0``.
* Inputs are 1-D of equal length ``N`` (anything that flattens to it). NaN or inf in any
  array raises :class:`InputError` naming the array and the count; mismatched lengths and
  empty arrays raise :class:`InputError` too.
* Degenerate data give NaN, not exceptions: with fewer than 3 items, or a constant
  ``quality`` or ``mos``, SRCC, KRCC, PLCC, PLCC_fitted and RMSE_fitted are NaN (nothing can
  be ranked or fitted); :func:`correlation_table` says why in each row's ``note``. Raw RMSE
  is always computed.
* Correlations are clipped to ``[-1, 1]`` (rounding gives 1.0000000000000002 on an exact line).

The statistics (``KINDS``, in the order of reporting)
------------------------------------------------------
* ``srcc``: Spearman's rank correlation, the Pearson correlation of the ranks, ties given
  their average rank (the same number as ``scipy.stats.spearmanr``).
* ``krcc``: Kendall's tau-b, ``(C - D) / sqrt((n0 - n1)(n0 - n2))`` with ``n0 = N(N-1)/2``
  and ``n1``, ``n2`` the pairs tied in quality, in MOS (computed by ``scipy.stats.kendalltau``).
* ``plcc``: Pearson's correlation of the raw values (no fit).
* ``rmse``: ``sqrt(mean((quality - mos)^2))`` on the raw values. Meaningless unless the metric
  is already on the MOS's scale; reported because it is asked for.
* ``plcc_fitted``, ``rmse_fitted``: Pearson correlation and RMS error between ``mos`` and
  the logistic map of quality fitted to it (:func:`fit_logistic`); RMSE in the MOS's units.

The logistic fit (VQEG practice)
--------------------------------
Before PLCC and RMSE, quality is mapped to MOS by a monotonic logistic fitted by least
squares, as the Video Quality Experts Group prescribes (VQEG, Final report on the
validation of objective models of video quality assessment, FR-TV Phase I, 2000 and Phase
II, 2003; Sheikh, Sabir and Bovik, "A statistical evaluation of recent full reference image
quality assessment algorithms", IEEE TIP 2006):

* ``logistic5(x) = b1 (1/2 - 1 / (1 + exp(b2 (x - b3)))) + b4 x + b5`` (Sheikh et al. 2006,
  Eq. 1; VQEG Phase II), the default;
* ``logistic4(x) = (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2`` (VQEG Phase I final report,
  2000, Sec. 5; used by Ding et al., DISTS, TPAMI 2020): from ``b2`` at low to ``b1`` at high
  quality.

Starting values change the result (an open issue of Python-IW-SSIM, #2), so they are fixed
here. Quality is first STANDARDISED, ``z = (x - mean(x)) / std(x)`` (population std), so
that the same starting values work whether quality is ~1e-4 (an LPIPS distance) or ~40 (PSNR
in dB): the fit, and so PLCC_fitted, do not change when quality is multiplied by a positive
constant or shifted. With ``s = +1`` if ``pearson(x, mos) >= 0`` else ``-1`` (so that a
reversed metric is fitted as the mirror image of the right one), the starting values in z
units are

* logistic5: ``b1 = max(mos) - min(mos)``, ``b2 = s``, ``b3 = 0``, ``b4 = 0``, ``b5 = mean(mos)``
  (a curve spanning the MOS range, centred on the mean quality, slope ``range / 4`` per std);
* logistic4: ``b1 = max(mos)``, ``b2 = min(mos)`` (swapped when ``s = -1``), ``b3 = 0``, ``b4 = 1``.

Optimiser: ``scipy.optimize.curve_fit(method="lm")`` (MINPACK's Levenberg-Marquardt,
``lmder``, with the analytic Jacobian), default tolerances, ``maxfev = 2000``. Deterministic.
The parameters are then converted back to raw quality units (:class:`LogisticFit`). If the
optimiser reports no convergence, or returns non-finite values, or there are no more items
than parameters, the fit falls back to the least-squares LINEAR map ``mos ~ a x + c`` and is
marked ``converged=False`` with ``form="linear"`` (and :func:`correlation_table`'s note on
``plcc_fitted`` and ``rmse_fitted`` says so). A fit needs MORE items than parameters: with as
many, the curve passes through every point. (When the data show no curvature the
5-parameter fit creeps along a valley, ``b1 -> inf`` and ``b2 -> 0`` with ``b1 b2`` fixed,
towards a straight line and hits ``maxfev``: the linear map is that limit. Then
``plcc_fitted = |plcc|``, which holds for any fit as a lower bound.)

The map must be MONOTONE over the data, as VQEG requires of it: it may change the scale of
quality, never its order. ``logistic4`` always is; ``logistic5``'s free linear term can make
it rise and then fall (a PSNR curve turning down above 40 dB, a U-shaped curve of L2). Its
slope is ``b1 b2 g(x) + b4`` with ``g = s (1 - s) > 0`` (``s`` the logistic), largest at
``x = b3``, so over ``[min(x), max(x)]`` it takes every value between its values at ``x = b3``
(clipped to the range) and at the flatter end: the curve is monotone there exactly when those
two do not have opposite signs. When the ``logistic5`` optimum fails that test, it is replaced
by the ``logistic4`` fit (its documented start, same optimiser), marked
``monotone_fallback=True`` (``form="logistic4"``); a ``logistic5`` optimum that passes is kept
unchanged. ``plcc_fitted`` and ``rmse_fitted`` are always those of the curve
:func:`fit_logistic` returns (the one the benchmark's figures draw).

Intervals and tests
-------------------
The distortions of one reference image are not independent (they share its content), so
intervals resample GROUPS (normally: reference images): each bootstrap resample draws the
``G`` groups with replacement and takes all items of each drawn group (a group drawn twice
contributes its items twice). The statistic is computed on the resample as on the full data;
the logistic is refitted on each resample (a weighted least-squares fit, the same objective as
on the repeated items), starting from the full data's optimum of the same form, with at most
5,000 function evaluations, under the same monotone rule over the resample's range. The
interval is the percentile interval of the ``n_boot`` values; resamples where a statistic is
NaN (e.g. a constant resample) are left out. :func:`paired_correlation_test` uses the same
resamples for both metrics; its p-value is the one of :func:`percepmetric.stats.paired_test`.

An interval always holds its estimate, or is NaN with the reason in the row's ``note``:

* fewer than :data:`MIN_GROUPS` (5) groups: no interval (one group: every resample is the data
  itself; a handful: most resamples hold one or two groups);
* a resample whose logistic fit does not converge (or cannot be made) has NO value, never the
  value of a straight line (another statistic); ``fit_failures`` counts them. With ``F`` such
  resamples of ``B``, the interval is the widest the percentile interval could be whatever
  their values: the lower end at position ``alpha (B - 1) - F`` of the known values in order,
  the upper end at ``(1 - alpha)(B - 1)``; with ``F > alpha (B - 1)`` (24 of 1000 at 95%) no
  interval, and fitting stops there (the rest would not change that). When the whole data's
  fit itself fell back to the linear map, the resamples use the linear map too (the same
  statistic as the estimate) and the estimate's note says so;
* an estimate outside its percentile interval (resampled values that are biased: a resample
  repeats some groups and misses others) gets the interval extended to it, and the note gives
  the resamples' own range.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import optimize, special
from scipy import stats as scipy_stats

from .errors import InputError
from .stats import _as_1d, _check_same_length

__all__ = [
    "FORMS",
    "KINDS",
    "MIN_GROUPS",
    "LogisticFit",
    "bootstrap_by_group",
    "correlation_table",
    "correlations",
    "fit_logistic",
    "krcc",
    "logistic4",
    "logistic5",
    "paired_correlation_test",
    "plcc",
    "plcc_fitted",
    "rmse",
    "rmse_fitted",
    "srcc",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
Statistic = Callable[[FloatArray, FloatArray], float]

#: The statistics of a correlation table, in the order of reporting.
KINDS = ("srcc", "krcc", "plcc", "rmse", "plcc_fitted", "rmse_fitted")
#: The logistic forms :func:`fit_logistic` knows.
FORMS = ("logistic5", "logistic4")

_MAXFEV = 2000  # function evaluations allowed to MINPACK; a fit from the documented start takes ~10-40
_CHUNK_ELEMENTS = 4_000_000  # vectorised resamples are processed in chunks of about this many item weights
_MIN_ITEMS = 3


# ---------------------------------------------------------------- input checks

def _checked(quality: npt.ArrayLike, mos: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    q, m = _checked_named(quality=quality, mos=mos)
    return q, m


def _checked_named(**named: npt.ArrayLike) -> list[FloatArray]:
    """Flatten to float64, check equal non-zero length and finiteness, naming the argument."""
    arrays = {name: _as_1d(a) for name, a in named.items()}
    if all(len(a) == 0 for a in arrays.values()):
        raise InputError("no items to score (empty arrays)")
    _check_same_length(**arrays)
    for name, a in arrays.items():
        bad = int(np.count_nonzero(~np.isfinite(a)))
        if bad:
            raise InputError(f"{name} has {bad} non-finite value(s) (NaN or inf) among {len(a)}")
    return list(arrays.values())


def _group_codes(groups: npt.ArrayLike, n: int) -> tuple[IntArray, int]:
    """Group labels (any hashable values: names, ids) -> codes ``0..G-1`` per item and ``G``."""
    labels = np.asarray(groups).reshape(-1)
    if len(labels) != n:
        raise InputError(f"arrays differ in length: groups={len(labels)}, quality={n}")
    try:
        distinct, codes = np.unique(labels, return_inverse=True)
    except TypeError as exc:  # mixed label types that do not sort
        raise InputError(f"groups: labels must be mutually comparable (all names or all numbers): {exc}") from None
    return codes.reshape(-1).astype(np.intp), len(distinct)


def _check_level(level: float, n_boot: int) -> None:
    if not 0 < level < 1:
        raise InputError(f"level must be in (0, 1), got {level}")
    if n_boot < 1:
        raise InputError(f"n_boot must be at least 1, got {n_boot}")


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise InputError(f"unknown correlation kind {kind!r}; expected one of {', '.join(KINDS)}")


def _check_form(form: str) -> None:
    if form not in FORMS:
        raise InputError(f"unknown logistic form {form!r}; expected one of {', '.join(FORMS)}")


def _degenerate(q: FloatArray, m: FloatArray) -> bool:
    """Too few items or nothing varies: no rank, correlation or fit is defined."""
    return len(q) < _MIN_ITEMS or np.ptp(q) == 0 or np.ptp(m) == 0


# ---------------------------------------------------------------- weighted kernels (rows = resamples)
# A group resample is the full item set with integer weights (how often each item's group was
# drawn): every statistic below on weights ``w`` equals the statistic on the items repeated
# ``w`` times, so all resamples of a chunk are one array operation.

def _weighted_pearson(x: FloatArray, y: FloatArray, w: FloatArray) -> FloatArray:
    """Pearson correlation per row; ``x``, ``y`` ``(N,)`` or ``(B, N)``, ``w`` ``(B, N)`` -> ``(B,)``."""
    total = w.sum(axis=-1, keepdims=True)
    dx = x - (w * x).sum(axis=-1, keepdims=True) / total
    dy = y - (w * y).sum(axis=-1, keepdims=True) / total
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (w * dx * dy).sum(axis=-1) / np.sqrt((w * dx * dx).sum(axis=-1) * (w * dy * dy).sum(axis=-1))
    return np.clip(r, -1.0, 1.0)  # rounding gives 1.0000000000000002 on an exact line; NaN stays NaN


def _weighted_ranks(codes: IntArray, counts: IntArray, w: FloatArray) -> FloatArray:
    """Average ranks (1-based, ties averaged) of the items in each weighted resample.

    ``codes``: ``(N,)`` index of each item's distinct value in ascending order; ``counts``:
    ``(U,)`` items per distinct value. With ``T_k`` the weight of value ``k`` and ``S_k`` the
    weight of the smaller values, all copies of value ``k`` share rank ``S_k + (T_k + 1) / 2``.
    """
    order = np.argsort(codes, kind="stable")
    cumulative = np.cumsum(w[:, order], axis=1)[:, np.cumsum(counts) - 1]  # (B, U): weight up to value k
    totals = np.diff(cumulative, axis=1, prepend=0.0)
    ranks_of_values = cumulative - totals + (totals + 1.0) / 2.0
    return ranks_of_values[:, codes]


def _varies(x: FloatArray, present: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Per row: does ``x`` take at least two values among the present items?"""
    return np.where(present, x, np.inf).min(axis=1) < np.where(present, x, -np.inf).max(axis=1)


class _Data:
    """One dataset prepared for resampling: values, distinct-value codes, group codes."""

    def __init__(self, q: FloatArray, m: FloatArray, group_codes: IntArray, n_groups: int) -> None:
        self.q, self.m = q, m
        _, self.q_codes, self.q_counts = np.unique(q, return_inverse=True, return_counts=True)
        _, self.m_codes, self.m_counts = np.unique(m, return_inverse=True, return_counts=True)
        self.q_codes, self.m_codes = self.q_codes.reshape(-1), self.m_codes.reshape(-1)
        self.group_codes, self.n_groups = group_codes, n_groups

    def vectorised(self, kind: str, w: FloatArray) -> FloatArray:
        """``srcc``, ``plcc`` or ``rmse`` on each row of item weights ``w`` ``(B, N)`` -> ``(B,)``."""
        if kind == "rmse":
            return np.sqrt((w * (self.q - self.m) ** 2).sum(axis=1) / w.sum(axis=1))
        if kind == "srcc":
            value = _weighted_pearson(_weighted_ranks(self.q_codes, self.q_counts, w),
                                      _weighted_ranks(self.m_codes, self.m_counts, w), w)
        else:
            value = _weighted_pearson(self.q, self.m, w)
        present = w > 0
        valid = (w.sum(axis=1) >= _MIN_ITEMS) & _varies(self.q, present) & _varies(self.m, present)
        return np.where(valid, value, np.nan)


_VECTORISED = ("srcc", "plcc", "rmse")


def _draw_group_counts(n_groups: int, n_boot: int, seed: int) -> IntArray:
    """``(n_boot, G)``: how often each group is drawn when ``G`` groups are drawn with replacement."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_groups, size=(n_boot, n_groups))
    rows = np.arange(n_boot)[:, None] * n_groups
    return np.bincount((draws + rows).reshape(-1), minlength=n_boot * n_groups).reshape(n_boot, n_groups)


@dataclass
class _FitCount:
    """What the resample fits did: ``failed[b]`` when the logistic fit of resample ``b`` did not
    converge (or could not be made); ``examined`` resamples were fitted before the count of
    failures passed ``limit`` and fitting stopped (``examined == len(failed)``: all were)."""

    failed: npt.NDArray[np.bool_]
    examined: int
    limit: int | None


def _resampled_kinds(data: _Data, kinds: Sequence[str], n_boot: int, seed: int, fit: str,
                     statistic: Statistic | None = None, max_failures: int | None = None,
                     ) -> tuple[dict[str, FloatArray], _FitCount | None]:
    """Each of ``kinds`` (and ``statistic`` under the key ``""``) on the same ``n_boot`` group
    resamples, and what the resample fits did (None when no fitted kind was asked for).
    ``max_failures``: stop fitting once more resample fits than this have failed."""
    counts = _draw_group_counts(data.n_groups, n_boot, seed)
    out = {kind: np.full(n_boot, np.nan) for kind in kinds}
    vectorised = [k for k in kinds if k in _VECTORISED]
    chunk = max(1, _CHUNK_ELEMENTS // len(data.q))
    for start in range(0, n_boot, chunk) if vectorised else ():
        w = counts[start:start + chunk, data.group_codes].astype(np.float64)
        for kind in vectorised:
            out[kind][start:start + chunk] = data.vectorised(kind, w)
    fitted = [k for k in kinds if k in ("plcc_fitted", "rmse_fitted")]
    fit_count = None
    if fitted:
        out["plcc_fitted"], out["rmse_fitted"], fit_count = _resampled_fits(data, counts, fit, max_failures)
    looped = [k for k in kinds if k not in _VECTORISED and k not in fitted]
    if statistic is not None:
        out[""] = np.full(n_boot, np.nan)
    if looped or statistic is not None:
        items = np.arange(len(data.q))
        for b in range(n_boot):
            idx = np.repeat(items, counts[b, data.group_codes])  # the items of the drawn groups, with repeats
            q, m = data.q[idx], data.m[idx]
            if looped:
                for kind, value in _kinds_unchecked(q, m, looped, fit).items():
                    out[kind][b] = value
            if statistic is not None:
                out[""][b] = statistic(q, m)
    return out, fit_count


#: Function evaluations allowed to a resample's fit, which starts from the whole data's optimum.
#: A fit that converges is the same fit whatever its budget; the budget only decides how long a
#: creeping fit is followed before it counts as failed. At 200, 77 of 1000 resample fits of a
#: 6 x 5 set failed; at 5000, 1 (docs/mos.md, "Intervals", has the measurements). A resample
#: that converges needs no more evaluations than before, so data whose fits converge (a
#: TID2013-sized set: 1000 resamples in 2-3 s) cost what they did.
_RESAMPLE_MAXFEV = 5000


def _resampled_fits(data: _Data, counts: IntArray, form: str, max_failures: int | None = None,
                    ) -> tuple[FloatArray, FloatArray, _FitCount]:
    """PLCC and RMSE after the logistic fit on each group resample (rows of ``counts``), and
    which resample fits failed.

    A resample is the items weighted by how often their group was drawn, so its fit is the
    weighted least-squares fit (``curve_fit`` with ``sigma = 1 / sqrt(weight)``): the same
    objective as on the repeated items. It is made in the whole data's standardised units and
    starts from the whole data's optimum of the same form, which a resample's optimum lies
    near. As on the whole data, a 5-parameter fit that is not monotone over the resample's
    range is replaced by the 4-parameter one.

    The statistic of a resample must be the statistic of the whole data, computed again: when
    the whole data's logistic fit converged, a resample whose fit does not converge (or cannot
    be made: no more distinct items than parameters) has no value (NaN, ``failed``), never the
    value of a straight line, which is another statistic. When the whole data's fit itself fell
    back to the linear map, every resample gets the linear map too (the same statistic).
    Fitting stops once more than ``max_failures`` have failed (the interval is not given then
    anyway: see :func:`_interval`).
    """
    n_boot = len(counts)
    plcc_values, rmse_values = np.full(n_boot, np.nan), np.full(n_boot, np.nan)
    failed = np.zeros(n_boot, dtype=bool)
    q, m = data.q, data.m
    if _degenerate(q, m):
        return plcc_values, rmse_values, _FitCount(failed, n_boot, max_failures)
    whole, _ = _fit(q, m, form)
    center, scale = float(q.mean()), float(q.std())
    z = (q - center) / scale
    direction = _direction(z, m)
    optima: dict[str, FloatArray | None] = {}

    def whole_optimum(shape: str) -> FloatArray | None:
        """The whole data's unconstrained optimum of ``shape`` (from the documented start): where
        a resample's fit of that shape starts."""
        if shape not in optima:
            fits = len(q) > _N_PARAMS[shape]
            optima[shape] = _lm_fit(shape, z, m, _starting_values(shape, m, direction), _MAXFEV) if fits else None
        return optima[shape]

    examined = n_boot
    for b in range(n_boot):
        if max_failures is not None and failed.sum() > max_failures:
            examined = b
            break
        w = counts[b, data.group_codes].astype(np.float64)
        present = w > 0
        zi, mi, wi = z[present], m[present], w[present]
        if wi.sum() < _MIN_ITEMS or np.ptp(zi) == 0 or np.ptp(mi) == 0:
            continue  # nothing to correlate on this resample: NaN, left out (not a failure of the fit)
        if whole.converged:
            fitted = (_monotone_lm_fit(form, zi, mi, whole_optimum, _RESAMPLE_MAXFEV, weights=wi)
                      if len(zi) > _N_PARAMS[form] else None)
            if fitted is None:
                failed[b] = True
                continue
            values = _CURVES[fitted[0]][0](zi, *fitted[1])
        else:
            mean_z, mean_m = np.average(zi, weights=wi), np.average(mi, weights=wi)
            slope = np.sum(wi * (zi - mean_z) * (mi - mean_m)) / np.sum(wi * (zi - mean_z) ** 2)
            values = mean_m + slope * (zi - mean_z)
        if np.ptp(values) > 0:
            plcc_values[b] = float(_weighted_pearson(values, mi, wi[None])[0])
        rmse_values[b] = float(np.sqrt(np.sum(wi * (values - mi) ** 2) / wi.sum()))
    return plcc_values, rmse_values, _FitCount(failed, examined, max_failures)


def _failure_limit(n_boot: int, level: float) -> int:
    """The most resample fits that may fail for a ``level`` interval of ``n_boot`` resamples to
    be given (:func:`_interval`): ``floor((1 - level) / 2 * (n_boot - 1))``, 24 of 1000 at 95%."""
    return int(np.floor((1.0 - level) / 2.0 * (n_boot - 1) + 1e-9))


#: An estimate this far (relative) outside its resamples' range is rounding, not bias: no note.
_ROUNDING = 1e-12


def _interval(values: FloatArray, estimate: float, level: float, fits: _FitCount | None = None,
              ) -> tuple[float, float, list[str]]:
    """The ``level`` interval of an estimate from its resampled ``values``: ``(low, high, notes)``.

    * The percentile interval of the finite values (resamples where the statistic is undefined,
      e.g. a constant resample, are left out).
    * Resamples whose fit failed (``fits.failed``) have an unknown value. With ``F`` of them
      among ``B`` resamples, the interval is widened to the widest the percentile interval could
      be whatever their values: the lower end is the value at position ``alpha (B - 1) - F`` of
      the known values in order, the upper end the one at ``(1 - alpha)(B - 1)``. That needs
      ``F <= alpha (B - 1)`` (24 of 1000 at 95%); with more, no interval (NaN) and the reason.
    * An estimate outside the interval (the resampled values are biased, e.g. a statistic that
      resamples repeating some groups make smaller) is not passed over: the interval is
      extended to it, and a note gives the resamples' own range.
    An estimate that is NaN has no interval (its reason is the estimate's).
    """
    nan = float("nan")
    if not np.isfinite(estimate):
        return nan, nan, []
    notes: list[str] = []
    failures = int(fits.failed.sum()) if fits is not None else 0
    if fits is not None and fits.examined < len(fits.failed):
        return nan, nan, [f"no interval: the logistic fit did not converge on {failures} of the first "
                          f"{fits.examined} resamples (more than {fits.limit} of {len(fits.failed)} leave no "
                          "honest interval)"]
    known = np.sort(values[np.isfinite(values)])
    total = len(known) + failures
    if len(known) == 0:
        return nan, nan, ["no interval: no resample gave a value" + (
            f" (the logistic fit did not converge on all {failures})" if failures else "")]
    alpha = (1.0 - level) / 2.0
    lower, upper = alpha * (total - 1) - failures, (1.0 - alpha) * (total - 1)
    if lower < -1e-9:
        return nan, nan, [f"no interval: the logistic fit did not converge on {failures} of {total} resamples "
                          f"(at most {_failure_limit(total, level)} may fail)"]
    span = max(len(known) - 1, 1)
    low, high = (float(v) for v in np.quantile(known, [max(lower, 0.0) / span, min(upper / span, 1.0)]))
    if failures:
        notes.append(f"the logistic fit did not converge on {failures} of {total} resamples: the interval is "
                     "widened to hold any values they could have")
    tolerance = _ROUNDING * max(1.0, abs(estimate))
    if estimate < low - tolerance or estimate > high + tolerance:
        notes.append(f"the resamples' {100 * level:g}% range [{low:.4g}, {high:.4g}] excluded the estimate: "
                     "extended to it")
    return min(low, estimate), max(high, estimate), notes


# ---------------------------------------------------------------- the statistics

def _srcc(q: FloatArray, m: FloatArray) -> float:
    if _degenerate(q, m):
        return float("nan")
    data = _Data(q, m, np.zeros(len(q), dtype=np.intp), 1)
    return float(data.vectorised("srcc", np.ones((1, len(q))))[0])


def _krcc(q: FloatArray, m: FloatArray) -> float:
    if _degenerate(q, m):
        return float("nan")
    return float(np.clip(scipy_stats.kendalltau(q, m, variant="b", method="asymptotic").statistic, -1.0, 1.0))


def _plcc(q: FloatArray, m: FloatArray) -> float:
    if _degenerate(q, m):
        return float("nan")
    return float(_weighted_pearson(q, m, np.ones((1, len(q))))[0])


def _rmse(q: FloatArray, m: FloatArray) -> float:
    return float(np.sqrt(np.mean((q - m) ** 2)))


def srcc(quality: npt.ArrayLike, mos: npt.ArrayLike) -> float:
    """Spearman rank correlation: Pearson correlation of the average ranks (ties share the mean of
    their ranks); equals ``scipy.stats.spearmanr``. NaN for fewer than 3 items or constant input."""
    return _srcc(*_checked(quality, mos))


def krcc(quality: npt.ArrayLike, mos: npt.ArrayLike) -> float:
    """Kendall's tau-b, ``(C - D) / sqrt((n0 - n1)(n0 - n2))`` (ties in either array counted as
    in ``scipy.stats.kendalltau(variant="b")``, which computes it). NaN for fewer than 3 items or constant input."""
    return _krcc(*_checked(quality, mos))


def plcc(quality: npt.ArrayLike, mos: npt.ArrayLike) -> float:
    """Pearson linear correlation of the raw values (no fit). NaN for fewer than 3 items or constant input."""
    return _plcc(*_checked(quality, mos))


def rmse(quality: npt.ArrayLike, mos: npt.ArrayLike) -> float:
    """``sqrt(mean((quality - mos)^2))`` on the raw values: only meaningful when quality is on the MOS's scale."""
    return _rmse(*_checked(quality, mos))


# ---------------------------------------------------------------- the logistic fit

def logistic5(x: npt.ArrayLike, b1: float, b2: float, b3: float, b4: float, b5: float) -> FloatArray:
    """VQEG Phase II / Sheikh et al. (IEEE TIP 2006) 5-parameter logistic:
    ``b1 (1/2 - 1 / (1 + exp(b2 (x - b3)))) + b4 x + b5`` (evaluated with ``expit``: no overflow)."""
    x = np.asarray(x, dtype=np.float64)
    return b1 * (0.5 - special.expit(-b2 * (x - b3))) + b4 * x + b5


def logistic4(x: npt.ArrayLike, b1: float, b2: float, b3: float, b4: float) -> FloatArray:
    """VQEG Phase I (2000) 4-parameter logistic: ``(b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2``,
    rising from ``b2`` (low quality) to ``b1`` (high quality) around ``x = b3`` with width ``|b4|``."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (b1 - b2) * special.expit((x - b3) / abs(b4)) + b2


def _jacobian5(x: FloatArray, b1: float, b2: float, b3: float, b4: float, b5: float) -> FloatArray:
    s = special.expit(-b2 * (x - b3))
    slope = s * (1.0 - s)
    return np.stack([0.5 - s, b1 * slope * (x - b3), -b1 * b2 * slope, x, np.ones_like(x)], axis=1)


def _jacobian4(x: FloatArray, b1: float, b2: float, b3: float, b4: float) -> FloatArray:
    width = abs(b4)
    h = special.expit((x - b3) / width)
    slope = (b1 - b2) * h * (1.0 - h)
    return np.stack([h, 1.0 - h, -slope / width, -slope * (x - b3) * np.sign(b4) / width**2], axis=1)


_CURVES: dict[str, tuple[Callable[..., FloatArray], Callable[..., FloatArray]]] = {
    "logistic5": (logistic5, _jacobian5),
    "logistic4": (logistic4, _jacobian4),
}
_N_PARAMS = {"logistic5": 5, "logistic4": 4}


@dataclass(frozen=True)
class LogisticFit:
    """A fitted map from quality to MOS: ``form`` with ``params`` in raw quality units.

    ``form`` is ``"logistic5"`` (``params = (b1..b5)`` of :func:`logistic5`), ``"logistic4"``
    (``(b1..b4)`` of :func:`logistic4`), or ``"linear"`` (``(a, c)``: ``a x + c``), the fallback
    when the logistic fit failed, with ``converged=False``. ``monotone_fallback``: a
    ``logistic5`` fit was asked for, but its optimum was not monotone over the data's range, so
    this is the ``logistic4`` fit that replaced it. Calling it evaluates the curve.
    """

    form: str
    params: tuple[float, ...]
    converged: bool
    monotone_fallback: bool = False

    def __call__(self, x: npt.ArrayLike) -> FloatArray:
        if self.form == "linear":
            slope, intercept = self.params
            return slope * np.asarray(x, dtype=np.float64) + intercept
        return _CURVES[self.form][0](x, *self.params)


def _linear_fit(q: FloatArray, m: FloatArray) -> LogisticFit:
    dq = q - q.mean()
    spread = float(np.dot(dq, dq))
    slope = float(np.dot(dq, m - m.mean()) / spread) if spread > 0 else 0.0
    return LogisticFit("linear", (slope, float(m.mean() - slope * q.mean())), converged=False)


def _starting_values(form: str, m: FloatArray, direction: float) -> tuple[float, ...]:
    """Documented start in standardised quality units (module docstring)."""
    if form == "logistic5":
        return (float(np.ptp(m)), direction, 0.0, 0.0, float(m.mean()))
    high, low = float(m.max()), float(m.min())
    return (high, low, 0.0, 1.0) if direction > 0 else (low, high, 0.0, 1.0)


def _to_raw_units(form: str, p: FloatArray, center: float, scale: float) -> tuple[float, ...]:
    """Parameters fitted on ``z = (x - center) / scale`` -> the same curve in ``x``."""
    if form == "logistic5":
        b1, b2, b3, b4, b5 = (float(v) for v in p)
        return (b1, b2 / scale, center + scale * b3, b4 / scale, b5 - b4 * center / scale)
    b1, b2, b3, b4 = (float(v) for v in p)
    return (b1, b2, center + scale * b3, scale * b4)


def _direction(z: FloatArray, m: FloatArray) -> float:
    """``+1`` if quality and MOS correlate positively (or not at all), else ``-1``: the sign of the start."""
    return 1.0 if float(_weighted_pearson(z, m, np.ones((1, len(z))))[0]) >= 0 else -1.0


def _lm_fit(form: str, z: FloatArray, m: FloatArray, start: Sequence[float] | FloatArray, maxfev: int,
            weights: FloatArray | None = None) -> FloatArray | None:
    """MINPACK's Levenberg-Marquardt least squares of ``m ~ form(z)`` from ``start`` (weighted by
    ``weights`` when given); None when it does not converge or gives non-finite values."""
    curve, jacobian = _CURVES[form]
    sigma = None if weights is None else 1.0 / np.sqrt(weights)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # OptimizeWarning: no covariance (irrelevant: only the curve is used)
            params, _ = optimize.curve_fit(curve, z, m, p0=start, sigma=sigma, jac=jacobian, method="lm",
                                           maxfev=maxfev)
    except (RuntimeError, ValueError, np.linalg.LinAlgError):  # MINPACK did not converge / bad values
        return None
    if not (np.all(np.isfinite(params)) and np.all(np.isfinite(curve(z, *params)))):
        return None
    return params


def _logistic5_is_monotone(params: Sequence[float] | FloatArray, low: float, high: float) -> bool:
    """Does :func:`logistic5` with ``params`` only rise, or only fall, on ``[low, high]``?

    Its slope is ``b1 b2 g(x) + b4`` with ``g = s (1 - s)``, ``s`` the logistic of ``b2 (x - b3)``:
    ``g`` is positive, largest at ``x = b3`` and falls away from it, so over the interval it
    takes every value between its largest (at ``b3`` clipped to the interval) and its smallest
    (at an end), and the slope every value between the two corresponding slopes. The curve is
    monotone exactly when those two slopes do not have opposite signs.
    """
    b1, b2, b3, b4 = (float(v) for v in params[:4])

    def g(x: float) -> float:
        s = float(special.expit(b2 * (x - b3)))
        return s * (1.0 - s)

    steepest = b1 * b2 * g(min(max(b3, low), high)) + b4
    flattest = b1 * b2 * min(g(low), g(high)) + b4
    return steepest * flattest >= 0


def _monotone_lm_fit(form: str, z: FloatArray, m: FloatArray,
                     start: Callable[[str], Sequence[float] | FloatArray | None], maxfev: int,
                     weights: FloatArray | None = None) -> tuple[str, FloatArray, bool] | None:
    """The fit of ``form``, monotone over ``[min(z), max(z)]``: ``(form, params, replaced)``.

    A ``logistic5`` fit that is not monotone there (:func:`_logistic5_is_monotone`) is replaced
    by the ``logistic4`` fit (always monotone), ``replaced=True``. ``start(form)``: where the fit
    of that form starts (None: it cannot be made). None when the fit that counts failed.
    """
    first = start(form)
    params = _lm_fit(form, z, m, first, maxfev, weights) if first is not None else None
    if params is None:
        return None
    if form != "logistic5" or _logistic5_is_monotone(params, float(z.min()), float(z.max())):
        return form, params, False
    second = start("logistic4")
    params = _lm_fit("logistic4", z, m, second, maxfev, weights) if second is not None else None
    return None if params is None else ("logistic4", params, True)


def _fit(q: FloatArray, m: FloatArray, form: str) -> tuple[LogisticFit, FloatArray]:
    """The fit and its values at ``q`` (computed in standardised units, where the fit was made).
    A fit needs more items than parameters: with as many, the curve could pass through every
    point (PLCC 1, RMSE 0, whatever the data)."""
    if len(q) <= _N_PARAMS[form] or np.ptp(q) == 0 or np.ptp(m) == 0:
        linear = _linear_fit(q, m)
        return linear, linear(q)
    center, scale = float(q.mean()), float(q.std())
    z = (q - center) / scale
    direction = _direction(z, m)
    fitted = _monotone_lm_fit(form, z, m, lambda shape: _starting_values(shape, m, direction), _MAXFEV)
    if fitted is None:
        linear = _linear_fit(q, m)
        return linear, linear(q)
    shape, params, replaced = fitted
    fit = LogisticFit(shape, _to_raw_units(shape, params, center, scale), converged=True, monotone_fallback=replaced)
    return fit, _CURVES[shape][0](z, *params)


def fit_logistic(quality: npt.ArrayLike, mos: npt.ArrayLike, form: str = "logistic5") -> LogisticFit:
    """Least-squares fit of ``mos ~ form(quality)`` (VQEG practice), deterministic.

    Quality is standardised first; starting values ``b1 = max(mos) - min(mos), b2 = +-1,
    b3 = 0, b4 = 0, b5 = mean(mos)`` (logistic5) or ``b1 = max(mos), b2 = min(mos), b3 = 0,
    b4 = 1`` (logistic4), in standardised units, the sign following ``pearson(quality, mos)``;
    ``scipy.optimize.curve_fit(method="lm", maxfev=2000)`` with the analytic Jacobian. The
    curve is monotone over ``[min(quality), max(quality)]``: a ``logistic5`` optimum that is not
    is replaced by the ``logistic4`` fit (``monotone_fallback=True``). Falls back to the linear
    least-squares map (``form="linear"``, ``converged=False``) when the fit fails or cannot be
    made (no more items than parameters, constant input). See the module docstring.
    """
    _check_form(form)
    return _fit(*_checked(quality, mos), form)[0]


def _fitted_pair(q: FloatArray, m: FloatArray, form: str) -> tuple[float, float]:
    return _fitted_with(q, m, form)[:2]


def _fitted_with(q: FloatArray, m: FloatArray, form: str) -> tuple[float, float, LogisticFit | None]:
    """PLCC and RMSE after the fit, and the fit (None when nothing can be fitted)."""
    if _degenerate(q, m):
        return float("nan"), float("nan"), None
    fit, fitted = _fit(q, m, form)
    plcc_value = _plcc(fitted, m) if np.ptp(fitted) > 0 else float("nan")
    return plcc_value, _rmse(fitted, m), fit


def plcc_fitted(quality: npt.ArrayLike, mos: npt.ArrayLike, fit: str = "logistic5") -> float:
    """Pearson correlation between ``mos`` and the logistic of quality fitted to it (:func:`fit_logistic`)."""
    _check_form(fit)
    return _fitted_pair(*_checked(quality, mos), fit)[0]


def rmse_fitted(quality: npt.ArrayLike, mos: npt.ArrayLike, fit: str = "logistic5") -> float:
    """RMS error, in MOS units, between ``mos`` and the logistic of quality fitted to it (:func:`fit_logistic`)."""
    _check_form(fit)
    return _fitted_pair(*_checked(quality, mos), fit)[1]


_SIMPLE: dict[str, Callable[[FloatArray, FloatArray], float]] = {
    "srcc": _srcc, "krcc": _krcc, "plcc": _plcc, "rmse": _rmse}


def _kinds_unchecked(q: FloatArray, m: FloatArray, kinds: Sequence[str], fit: str) -> dict[str, float]:
    out = {kind: _SIMPLE[kind](q, m) for kind in kinds if kind in _SIMPLE}
    if "plcc_fitted" in kinds or "rmse_fitted" in kinds:  # one fit serves both
        out["plcc_fitted"], out["rmse_fitted"] = _fitted_pair(q, m, fit)
    return {kind: out[kind] for kind in kinds}


def correlations(quality: npt.ArrayLike, mos: npt.ArrayLike, fit: str = "logistic5") -> dict[str, float]:
    """Every statistic of ``KINDS`` on these arrays, in that order (``fit``: the logistic form)."""
    _check_form(fit)
    return _kinds_unchecked(*_checked(quality, mos), KINDS, fit)


# ---------------------------------------------------------------- intervals and tests

_STATISTIC_KINDS: dict[Any, str] = {srcc: "srcc", krcc: "krcc", plcc: "plcc", rmse: "rmse",
                                    plcc_fitted: "plcc_fitted", rmse_fitted: "rmse_fitted"}

#: The fewest groups an interval is given for. With ``G`` groups a resample is ``G`` draws with
#: replacement: with 1 group every resample is the data itself (a zero-width "interval"), and
#: with few, most resamples hold only one or two groups (G = 4: 34% of them), so that the
#: percentile interval describes those few groups, not the population they were drawn from.
MIN_GROUPS = 5


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _estimate_notes(q: FloatArray, m: FloatArray, kind: str, fit: LogisticFit | None, form: str,
                    item: str) -> list[str]:
    """Why the estimate of ``kind`` on all items is NaN, or not what its name says (the linear map
    instead of the logistic); empty when there is nothing to say."""
    if kind == "rmse":
        return []
    if len(q) < _MIN_ITEMS:
        return [f"only {_plural(len(q), item)}: a correlation needs at least {_MIN_ITEMS} {item}s"]
    if np.ptp(m) == 0:
        return ["all scores are equal: no correlation is defined"]
    if np.ptp(q) == 0:
        return [f"the metric gives every {item} the same value: no correlation is defined"]
    if kind in ("plcc_fitted", "rmse_fitted") and fit is not None and not fit.converged:
        why = (f"a {form} fit needs more than {_plural(_N_PARAMS[form], item)}" if len(q) <= _N_PARAMS[form]
               else f"the {form} fit did not converge ({_MAXFEV} evaluations)")
        return [f"{why}: PLCC and RMSE after the fit are those of the linear map"]
    return []


def _too_few_groups(n_groups: int, group: str) -> str:
    return f"no interval: only {_plural(n_groups, group)} to resample (at least {MIN_GROUPS} needed)"


def bootstrap_by_group(statistic: Statistic, quality: npt.ArrayLike, mos: npt.ArrayLike, groups: npt.ArrayLike,
                       *, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Group-bootstrap interval ``(low, high)`` of ``statistic(quality, mos)``.

    Each of the ``n_boot`` resamples draws the ``G`` distinct ``groups`` (e.g. reference image
    names, one per item) with replacement and takes all items of each drawn group;
    ``statistic`` is computed on each, and the interval is the percentile interval of the finite
    values, made honest by :func:`_interval`: it always holds the estimate (extended to it when
    the resampled values miss it), it is widened for resample fits that failed, and it is
    ``(nan, nan)`` when it cannot be given: fewer than :data:`MIN_GROUPS` groups, too many
    failed fits, an estimate that is NaN. :func:`correlation_table` gives the reasons.
    :func:`srcc`, :func:`plcc` and :func:`rmse` are evaluated for all resamples at once (as
    weighted statistics: exactly equal); :func:`krcc`, :func:`plcc_fitted` (default form),
    :func:`rmse_fitted` and any other ``statistic(quality, mos) -> float`` once per resample.
    Deterministic in ``seed``.
    """
    q, m = _checked(quality, mos)
    _check_level(level, n_boot)
    codes, n_groups = _group_codes(groups, len(q))
    kind = _STATISTIC_KINDS.get(statistic)
    estimate = _kinds_unchecked(q, m, [kind], "logistic5")[kind] if kind is not None else float(statistic(q, m))
    if n_groups < MIN_GROUPS:
        return float("nan"), float("nan")
    data = _Data(q, m, codes, n_groups)
    limit = _failure_limit(int(n_boot), level)
    if kind is not None:
        resampled, fits = _resampled_kinds(data, [kind], int(n_boot), seed, "logistic5", max_failures=limit)
        values = resampled[kind]
    else:
        resampled, fits = _resampled_kinds(data, [], int(n_boot), seed, "logistic5", statistic=statistic)
        values = resampled[""]
    low, high, _ = _interval(values, estimate, level, fits)
    return low, high


def correlation_table(quality: npt.ArrayLike, mos: npt.ArrayLike, groups: npt.ArrayLike, *, fit: str = "logistic5",
                      n_boot: int = 1000, level: float = 0.95, seed: int = 0, kinds: Sequence[str] = KINDS,
                      item: str = "item", group: str = "group") -> list[dict[str, Any]]:
    """One row per entry of ``kinds`` (default :data:`KINDS`), in that order:
    ``{"kind", "score", "ci_low", "ci_high", "fit_failures", "note"}``.

    ``score`` on all items; the interval by the group bootstrap of :func:`bootstrap_by_group`,
    all kinds on the same resamples (one logistic fit per resample serves both fitted kinds).
    ``fit_failures``: for the fitted kinds, how many resample fits did not converge (None when
    nothing was resampled, and for the other kinds). ``note``: why the score or its interval is
    NaN, or what is special about them (the linear map instead of the logistic, an interval
    widened or extended), ``"; "``-joined; ``""`` when there is nothing to say. ``item`` and
    ``group`` name the items and groups in the notes ("pair", "reference image").
    """
    q, m = _checked(quality, mos)
    _check_form(fit)
    _check_level(level, n_boot)
    for kind in kinds:
        _check_kind(kind)
    codes, n_groups = _group_codes(groups, len(q))
    scores = _kinds_unchecked(q, m, kinds, fit)
    whole_fit = _fitted_with(q, m, fit)[2] if {"plcc_fitted", "rmse_fitted"} & set(kinds) else None
    resampled: dict[str, FloatArray] = {}
    fits = None
    if n_groups >= MIN_GROUPS:
        resampled, fits = _resampled_kinds(_Data(q, m, codes, n_groups), kinds, int(n_boot), seed, fit,
                                           max_failures=_failure_limit(int(n_boot), level))
    rows = []
    for kind in kinds:
        fitted = kind in ("plcc_fitted", "rmse_fitted")
        notes = _estimate_notes(q, m, kind, whole_fit, fit, item)
        if n_groups < MIN_GROUPS:
            low = high = float("nan")
            if np.isfinite(scores[kind]):
                notes.append(_too_few_groups(n_groups, group))
        else:
            low, high, more = _interval(resampled[kind], scores[kind], level, fits if fitted else None)
            notes += more
        failures = int(fits.failed.sum()) if fitted and fits is not None else None
        rows.append({"kind": kind, "score": scores[kind], "ci_low": low, "ci_high": high, "fit_failures": failures,
                     "note": "; ".join(notes)})
    return rows


def paired_correlation_test(kind: str, quality_a: npt.ArrayLike, quality_b: npt.ArrayLike, mos: npt.ArrayLike,
                            groups: npt.ArrayLike, *, fit: str = "logistic5", n_boot: int = 1000, level: float = 0.95,
                            seed: int = 0, group: str = "group") -> dict[str, Any]:
    """Is metric A's ``kind`` different from metric B's on the same items? A paired group bootstrap.

    Both metrics are scored on the SAME group resamples (same ``seed``), so the interval of the
    difference accounts for their correlation. Returns ``{"kind", "score_a", "score_b",
    "difference" (= score_a - score_b, on all items), "ci_low", "ci_high" (percentile interval
    of the resampled differences, made honest as in :func:`bootstrap_by_group`), "p_value",
    "fit_failures", "note"}``. Two-sided bootstrap p-value, as in
    :func:`percepmetric.stats.paired_test`: over the resamples where both are finite,
    ``p = min(1, 2 min(P*(diff <= 0), P*(diff >= 0)))``, at least ``1 / n_boot``; identical
    metrics give ``p = 1``. For ``rmse`` kinds lower is better: a negative difference favours A.
    With fewer than :data:`MIN_GROUPS` groups there is no interval and no p-value (NaN; ``note``
    says why). A resample on which either metric's fit failed has no difference.
    """
    _check_kind(kind)
    _check_form(fit)
    _check_level(level, n_boot)
    qa, qb, m = _checked_named(quality_a=quality_a, quality_b=quality_b, mos=mos)
    codes, n_groups = _group_codes(groups, len(m))
    score_a = _kinds_unchecked(qa, m, [kind], fit)[kind]
    score_b = _kinds_unchecked(qb, m, [kind], fit)[kind]
    result: dict[str, Any] = {"kind": kind, "score_a": score_a, "score_b": score_b, "difference": score_a - score_b,
              "ci_low": float("nan"), "ci_high": float("nan"), "p_value": float("nan"), "fit_failures": None,
              "note": ""}
    if n_groups < MIN_GROUPS:
        result["note"] = _too_few_groups(n_groups, group)
        return result
    values_a, fits_a = _resampled_kinds(_Data(qa, m, codes, n_groups), [kind], int(n_boot), seed, fit)
    values_b, fits_b = _resampled_kinds(_Data(qb, m, codes, n_groups), [kind], int(n_boot), seed, fit)
    fits = None
    if fits_a is not None and fits_b is not None:
        fits = _FitCount(fits_a.failed | fits_b.failed, int(n_boot), None)
        result["fit_failures"] = int(fits.failed.sum())
    diff = values_a[kind] - values_b[kind]
    low, high, notes = _interval(diff, result["difference"], level, fits)
    diff = diff[np.isfinite(diff)]
    if len(diff) and np.isfinite(low):
        p = min(1.0, 2.0 * min(float(np.mean(diff <= 0)), float(np.mean(diff >= 0))))
        result["p_value"] = max(p, 1.0 / n_boot)
    result.update(ci_low=low, ci_high=high, note="; ".join(notes))
    return result
