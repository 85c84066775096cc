"""Confidence intervals for FID that take its bias into account, computed on the features.

FID between ``n`` images per set overestimates the FID of the two distributions: with many
images ``FID_n ~ FID_inf + k / n`` (Chong & Forsyth, CVPR 2020). A naive percentile bootstrap
(resample each set, recompute FID, take quantiles) therefore lies mostly *above* the estimate
and rarely covers either target. :func:`fid_interval` gives two intervals instead:

* ``low .. high``: for ``E[FID_n]``, the FID that a fresh draw of the same numbers of images
  gives on average. It contains the estimate.
* ``infinite_low .. infinite_high`` around ``infinite``: for ``FID_inf``, the FID with
  infinitely many images (the ``1 / n`` bias removed). NaN when a set has fewer images than
  feature dimensions (see below).

**Bootstrap** (``method="bootstrap"``; what ``"auto"`` uses when a set has fewer than ``d``
images): resample the rows of each set with replacement (``B = resamples`` times, a
:func:`numpy.random.default_rng` of its own); ``FID*`` of each resample is computed with
the formula of ``frechet_distance(feature_stats(x), feature_stats(y))`` (unbiased
covariances; equal to 1e-8). With ``m*`` the mean of the ``FID*``, ``q_lo, q_hi`` their
``(1 -+ confidence) / 2`` quantiles and ``est`` the estimate:

* bias ``b = m* - est``, the bootstrap's estimate of ``E[FID_n] - FID_inf``;
* ``FID_inf``: the basic bootstrap ``[2 est - q_hi, 2 est - q_lo]``, point ``est - b``. The
  premise: ``FID* - est`` is distributed as ``est - FID_inf`` (bias and noise together);
* ``E[FID_n]``: ``[est - (q_hi - m*), est + (m* - q_lo)]``, the same interval moved up by
  ``b``. The premise: ``FID* - m*`` is distributed as ``est - E[FID_n]`` (the noise alone;
  the bias is in both ``m*`` and ``E[FID_n]``, so it cancels). It contains ``est`` when
  ``q_lo <= m* <= q_hi``, which holds in practice; otherwise it is widened to ``est``.

**Grouped jackknife** (``method="jackknife"``; what ``"auto"`` uses when both sets have at
least ``d`` images): the rows of each set are dealt at random into ``G = min(25, n_a, n_b)``
groups; ``FID_-g`` drops group ``g`` of *both* sets, so both keep the share ``(G - 1) / G`` of
their images. If ``E[FID_n] = FID_inf + k_a / n_a + k_b / n_b``, the pseudo-values
``G est - (G - 1) FID_-g`` are unbiased for ``FID_inf`` (Quenouille's bias correction, the
same ``1 / n`` extrapolation as Chong & Forsyth's). ``infinite`` is their mean, ``se`` their
standard error, which is also the jackknife standard error of ``est``. Intervals:
``infinite +- t se`` and ``est +- t se``, ``t`` the Student quantile with ``G - 1`` degrees
of freedom. It needs ``G`` FIDs instead of ``B``. Why not the bootstrap there: it costs 200
``d x d`` problems (see the table), and its bias estimate is too small unless ``n`` is many
times ``d``. In simulations (Gaussians, d = 64, 95 % intervals) the bootstrap's ``FID_inf``
interval covered in 15/60 runs at n = 96 and 43/60 at n = 200, the jackknife's in 98/100 and
99/100; at n = 10 d both do (bootstrap 30/30; d = 16, n = 50: 197/200 and 192/200).

**Fewer images than dimensions**: FID's bias is then not ``k / n``. Two sets of ``n << d``
images span nearly orthogonal subspaces and the trace term collapses. Neither method can
estimate this bias from the sets themselves (simulations, d = 64, n = 32: 0/100 coverage of
``FID_inf`` by both), so ``infinite``, ``infinite_low`` and ``infinite_high`` are NaN (n/a).
The ``E[FID_n]`` interval needs only the spread and stays valid (100/100 there, a little
wide). With Inception features (d = 2048) this is every set under 2048 images.

**Clipping**: ``FID_inf >= 0``, so ``infinite``, ``infinite_low`` and ``infinite_high`` are
each ``max(0, .)``: an interval ``[0, x]`` says that the estimate is consistent with
identical distributions. ``low`` is ``max(0, .)`` too. Nothing else is changed.

**n/a** (``None``): fewer than :data:`MIN_IMAGES` (10) images in a set (a resample of 9
images holds about 6 distinct ones: the spread of such sets is not estimable, and the
jackknife would have fewer than 9 degrees of freedom), non-finite features or estimate, or
non-finite resampled values.

**Cost**, measured on a 2-core machine, d = 2048, float64, default settings; "quiet": nothing else
running, "loaded": other jobs kept the load at 3 to 5 (OpenBLAS then slows 2 to 5 times).
Bootstrap times from 2000 images on are extrapolated from 3 to 20 resamples.

===========  ===========================  ==============  ==============
n per set    ``"auto"`` uses              quiet           loaded
===========  ===========================  ==============  ==============
200          bootstrap, Gram route        0.3 s           3 s
1000         bootstrap, Gram route        6 s             17 to 27 s
2000         bootstrap, Gram route                        40 to 160 s
1000 + 10000 bootstrap, Gram route                        40 to 120 s
5000         jackknife                                    100 to 210 s
10000        jackknife                    31 s            195 to 210 s
50000        jackknife                                    200 s
5000         (bootstrap, d-space: forced)                 9 to 22 min
10000        (bootstrap, d-space: forced) 16 min          20 to 22 min
===========  ===========================  ==============  ==============

The jackknife costs one scatter matrix per set (n d^2) and 25 ``d x d`` problems (d^3, about
1 s each on a quiet machine), so it grows slowly with n. The bootstrap in d-space costs
``n d^2 + d^3`` per resample, which is why ``"auto"`` does not use it.

How ``FID*`` is computed: a resample is a vector of multinomial counts ``w`` on the rows;
only the rows drawn (about 63 %) enter. When a set has at most ``d`` images (Gram route),
``K_ab = Y_a Y_b^T`` of the centred features is computed once; per resample, the weighted
means, ``tr(S*)`` from the rows' squared norms, and ``tr((S*_a S*_b)^(1/2))`` = the sum of
singular values of ``F_a F_b^T`` (``F = diag(sqrt(w)) (Y - m*) / sqrt(n - 1)``, so
``S* = F^T F``), from the eigenvalues of the smaller side's Gram matrix. No ``d x d``
matrix is formed. Otherwise (d-space route) ``S* = Y^T diag(w) Y`` (n d^2) and
:func:`~percepmetric.metrics.frechet.trace_sqrt_product` (d^3). The jackknife forms
each set's scatter once and subtracts a group's own scatter for each ``FID_-g``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from ..errors import InputError
from ..student_t import t_quantile
from .frechet import feature_stats, frechet_distance, trace_sqrt_product

__all__ = ["FIDInterval", "fid_interval", "MIN_IMAGES", "JACKKNIFE_GROUPS"]

#: Fewest images per set for an interval (fewer: ``None``).
MIN_IMAGES = 10
#: Groups of the grouped jackknife (fewer when a set has fewer images).
JACKKNIFE_GROUPS = 25

Method = Literal["auto", "bootstrap", "jackknife"]


@dataclass(frozen=True)
class FIDInterval:
    """Intervals for FID (see the module docstring).

    ``low .. high``: for ``E[FID_n]``, the mean FID of sets of these sizes (contains the
    estimate). ``infinite``: the bias-corrected FID with infinitely many images,
    ``infinite_low .. infinite_high`` its interval (all three NaN when a set has fewer images
    than feature dimensions; clipped at 0). ``resamples``: bootstrap resamples, or jackknife
    groups. ``method``: what was done, in words."""

    low: float
    high: float
    confidence: float
    resamples: int
    infinite: float
    infinite_low: float
    infinite_high: float
    method: str


def _floor0(x: float) -> float:
    """``max(0, x)``, NaN kept (``max(0.0, nan)`` would be 0)."""
    return x if math.isnan(x) else max(0.0, x)


def _as_features(x: torch.Tensor | np.ndarray, name: str) -> np.ndarray:
    f = np.asarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    if f.ndim != 2:
        raise InputError(f"{name}: expected an (n, d) array of features, got shape {f.shape}")
    return f


class _Gram:
    """FID of weighted resamples from the cross Gram matrix ``K_ab = Y_a Y_b^T`` of the centred
    features (computed once; the route when a set has at most ``d`` images)."""

    def __init__(self, a: np.ndarray, b: np.ndarray) -> None:
        mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
        self.ya, self.yb = a - mean_a, b - mean_b
        self.delta = mean_a - mean_b
        self.kab = self.ya @ self.yb.T
        self.norm_a = np.einsum("ij,ij->i", self.ya, self.ya)
        self.norm_b = np.einsum("ij,ij->i", self.yb, self.yb)

    def fid(self, wa: np.ndarray, wb: np.ndarray) -> float:
        ia, ib = np.flatnonzero(wa), np.flatnonzero(wb)
        ca, cb = wa[ia].astype(np.float64), wb[ib].astype(np.float64)
        na, nb = ca.sum(), cb.sum()
        rows_a, rows_b = self.ya[ia], self.yb[ib]
        ma, mb = ca @ rows_a / na, cb @ rows_b / nb  # resample means (of the centred rows)
        trace_a = (ca @ self.norm_a[ia] - na * (ma @ ma)) / (na - 1)
        trace_b = (cb @ self.norm_b[ib] - nb * (mb @ mb)) / (nb - 1)
        diff = self.delta + ma - mb
        # F_a F_b^T, F = diag(sqrt(w)) (Y - m*) / sqrt(n - 1): its singular values' sum is
        # tr((S*_a S*_b)^(1/2)) since S* = F^T F
        cross = self.kab[np.ix_(ia, ib)] - (rows_a @ mb)[:, None] - (rows_b @ ma)[None, :] + ma @ mb
        cross *= np.sqrt(ca)[:, None] * np.sqrt(cb)[None, :] / math.sqrt((na - 1) * (nb - 1))
        # The singular values from the eigenvalues of the smaller side's Gram (F_a S*_b F_a^T
        # or its twin), as trace_sqrt_product does; rounding's tiny negative ones count as 0.
        # An SVD was 2 to 8 times slower. It is used only when both sides exceed d (then many
        # singular values are 0 and their squares' rounding would add up to 1e-8 of the sum;
        # fid_interval does not take this route then).
        if min(cross.shape) > len(self.delta):
            nuclear = np.linalg.svd(cross, compute_uv=False).sum()
        else:
            small = cross @ cross.T if cross.shape[0] <= cross.shape[1] else cross.T @ cross
            nuclear = np.sqrt(np.clip(np.linalg.eigvalsh(small), 0, None)).sum()
        return float(diff @ diff + trace_a + trace_b - 2 * nuclear)


def _weighted_stats(y: np.ndarray, w: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Mean, unbiased covariance and (fewer rows than ``dim``) factor of the rows of ``y``
    repeated ``w`` times."""
    idx = np.flatnonzero(w)
    c = w[idx].astype(np.float64)
    n = c.sum()
    rows = y[idx]
    mean = c @ rows / n
    factor = (rows - mean) * np.sqrt(c / (n - 1))[:, None]
    return mean, factor.T @ factor, factor if n < dim else None


def _dspace_fid(ya: np.ndarray, yb: np.ndarray, delta: np.ndarray, wa: np.ndarray, wb: np.ndarray) -> float:
    """FID of weighted resamples in feature space (as ``frechet_distance``)."""
    d = ya.shape[1]
    ma, sa, fa = _weighted_stats(ya, wa, d)
    mb, sb, fb = _weighted_stats(yb, wb, d)
    diff = delta + ma - mb
    if fa is None and fb is not None:
        sa, sb, fa = sb, sa, fb
    return float(diff @ diff + np.trace(sa) + np.trace(sb) - 2 * trace_sqrt_product(sa, sb, fa))


def _bootstrap(a: np.ndarray, b: np.ndarray, resamples: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    na, nb, d = len(a), len(b), a.shape[1]
    if min(na, nb) <= d:
        gram = _Gram(a, b)

        def one(wa: np.ndarray, wb: np.ndarray) -> float:
            return gram.fid(wa, wb)
        route = "Gram"
    else:
        mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
        ya, yb, delta = a - mean_a, b - mean_b, mean_a - mean_b

        def one(wa: np.ndarray, wb: np.ndarray) -> float:
            return _dspace_fid(ya, yb, delta, wa, wb)
        route = "feature-space"
    values = np.empty(resamples)
    for r in range(resamples):
        wa = np.bincount(rng.integers(0, na, na), minlength=na)
        wb = np.bincount(rng.integers(0, nb, nb), minlength=nb)
        values[r] = one(wa, wb)
    return values, route


def _jackknife(a: np.ndarray, b: np.ndarray, groups: int, rng: np.random.Generator) -> np.ndarray:
    """``FID_-g`` for ``g < groups``: both sets without their ``g``-th random group."""
    d = a.shape[1]
    mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
    ya, yb, delta = a - mean_a, b - mean_b, mean_a - mean_b
    ga = np.array_split(rng.permutation(len(a)), groups)
    gb = np.array_split(rng.permutation(len(b)), groups)
    # Scatter of all rows once; a group's own scatter is subtracted from it (n d^2 in all).
    big = min(len(a), len(b)) >= d
    ta = ya.T @ ya if big else None
    tb = yb.T @ yb if big else None
    out = np.empty(groups)
    for g in range(groups):
        stats = []
        for y, total, drop in ((ya, ta, ga[g]), (yb, tb, gb[g])):
            keep = np.ones(len(y), dtype=bool)
            keep[drop] = False
            n = int(keep.sum())
            if total is None:  # few rows: direct, with the factor (as feature_stats)
                rows = y[keep]
                mean = rows.mean(axis=0)
                factor = (rows - mean) / math.sqrt(n - 1)
                stats.append((mean, factor.T @ factor, factor if n < d else None))
            else:
                sub = y[drop]
                mean = -sub.sum(axis=0) / n  # the rows are centred: sum(kept) = -sum(dropped)
                scatter = total - sub.T @ sub - n * np.outer(mean, mean)
                stats.append((mean, scatter / (n - 1), None))
        (ma, sa, fa), (mb, sb, fb) = stats
        diff = delta + ma - mb
        if fa is None and fb is not None:
            sa, sb, fa = sb, sa, fb
        out[g] = diff @ diff + np.trace(sa) + np.trace(sb) - 2 * trace_sqrt_product(sa, sb, fa)
    return out


def fid_interval(fa: torch.Tensor | np.ndarray, fb: torch.Tensor | np.ndarray, estimate: float | None = None,
                 confidence: float = 0.95, resamples: int = 200, seed: int | None = 0,
                 method: Method = "auto") -> FIDInterval | None:
    """Intervals for FID between the feature sets ``fa`` (n_a, d) and ``fb`` (n_b, d), or
    ``None`` (n/a) when they cannot be computed meaningfully (see the module docstring).

    ``estimate``: the FID of these same features, if already computed (else computed here).
    ``resamples``: bootstrap resamples (at least 10). ``seed``: of a generator of its own.
    ``method``: ``"bootstrap"``, ``"jackknife"`` or ``"auto"`` (the bootstrap when a set has
    fewer than d images, the grouped jackknife otherwise: cheaper, and its bias correction is
    the one that holds for n near d). The jackknife ignores ``resamples``."""
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise InputError(f"confidence must be strictly between 0 and 1, got {confidence!r}")
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)) or resamples < 10:
        raise InputError(f"resamples must be an integer of at least 10, got {resamples!r}")
    if method not in ("auto", "bootstrap", "jackknife"):
        raise InputError(f"method must be 'auto', 'bootstrap' or 'jackknife', got {method!r}")
    a, b = _as_features(fa, "fa"), _as_features(fb, "fb")
    if a.shape[1] != b.shape[1]:
        raise InputError(f"features of different dimensions: {a.shape[1]} and {b.shape[1]}")
    na, nb, d = len(a), len(b), a.shape[1]
    if min(na, nb) < MIN_IMAGES or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return None
    est = frechet_distance(feature_stats(a), feature_stats(b)) if estimate is None else float(estimate)
    if not math.isfinite(est):
        return None
    rng = np.random.default_rng(seed)
    enough = min(na, nb) >= d  # FID_inf is estimable (see "Fewer images than dimensions")
    if method == "auto":
        method = "jackknife" if enough else "bootstrap"
    if method == "bootstrap":
        values, _ = _bootstrap(a, b, int(resamples), rng)
        if not np.isfinite(values).all():
            return None
        mean = float(values.mean())
        q_lo, q_hi = (float(q) for q in np.quantile(values, [(1 - confidence) / 2, (1 + confidence) / 2]))
        low, high = min(est, est - (q_hi - mean)), max(est, est + (mean - q_lo))
        infinite, inf_low, inf_high = 2 * est - mean, 2 * est - q_hi, 2 * est - q_lo
        count, text = int(resamples), f"bias-corrected bootstrap, {resamples} resamples"
    else:
        groups = min(JACKKNIFE_GROUPS, na, nb)
        values = _jackknife(a, b, groups, rng)
        if not np.isfinite(values).all():
            return None
        pseudo = groups * est - (groups - 1) * values
        infinite = float(pseudo.mean())
        se = float(pseudo.std(ddof=1)) / math.sqrt(groups)
        t = t_quantile((1 + confidence) / 2, groups - 1)
        low, high = est - t * se, est + t * se
        inf_low, inf_high = infinite - t * se, infinite + t * se
        count, text = groups, f"grouped jackknife, {groups} groups"
    if not enough:
        infinite = inf_low = inf_high = math.nan
    return FIDInterval(low=_floor0(low), high=high, confidence=float(confidence), resamples=count,
                       infinite=_floor0(infinite), infinite_low=_floor0(inf_low), infinite_high=_floor0(inf_high),
                       method=text)
