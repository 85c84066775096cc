"""The Fréchet distance between the Gaussians of two sets of features, and the statistics it is
computed from: the FID's arithmetic, apart from images and networks
(:mod:`percepmetric.metrics.distribution` extracts the features; the interval of
:mod:`percepmetric.metrics.fid_interval` resamples them).

``d^2 = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2))`` (Dowson & Landau 1982;
Heusel et al. 2017), in float64, the last trace without ``scipy.linalg.sqrtm``
(:func:`trace_sqrt_product`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError

__all__ = ["FeatureStats", "feature_stats", "trace_sqrt_product", "frechet_distance"]


@dataclass(frozen=True)
class FeatureStats:
    """Mean (d,), unbiased covariance (d, d) and count of a set of features, float64.
    ``factor``: when there are fewer features than dimensions, the (n, d) centred features over
    ``sqrt(n - 1)`` (``cov = factor.T @ factor``), which makes the Fréchet distance cheap
    (:func:`trace_sqrt_product`); None otherwise (and for statistics read back from a file)."""

    mean: np.ndarray
    cov: np.ndarray
    count: int
    factor: np.ndarray | None = None
    #: The mode the features were extracted in, and the network file's SHA-256 (None: unknown).
    mode: str | None = None
    network: str | None = None


def feature_stats(features: torch.Tensor | np.ndarray, mode: str | None = None,
                  network: str | None = None) -> FeatureStats:
    f = np.asarray(features.numpy() if isinstance(features, torch.Tensor) else features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise InputError(f"FID needs at least two images per set, got features of shape {f.shape}")
    mean = f.mean(axis=0)
    factor = (f - mean) / np.sqrt(len(f) - 1)
    return FeatureStats(mean, factor.T @ factor, len(f), factor if len(f) < f.shape[1] else None, mode, network)


def psd_factor(s: np.ndarray) -> np.ndarray:
    """An (r, d) ``F`` with ``F.T F = S`` for a symmetric positive semi-definite (d, d) ``S`` of
    rank r: its eigenvectors scaled by the square roots of the eigenvalues above rounding
    (``max eigenvalue * d * eps``). Dropping the rest matters: ``tr((S1 S2)^(1/2))`` through a
    full ``S^(1/2)`` takes square roots of the ~d - r rounding-level eigenvalues of
    ``S^(1/2) S2 S^(1/2)``, each about ``1e-8`` of the largest, and their sum shows (FID of a
    set's statistics with themselves came out -1.4e-4 for 10 images)."""
    w, v = np.linalg.eigh(s)
    keep = w > max(w[-1], 0.0) * len(w) * np.finfo(np.float64).eps
    return (v[:, keep] * np.sqrt(w[keep])).T


def trace_sqrt_product(s1: np.ndarray, s2: np.ndarray, factor1: np.ndarray | None = None) -> float:
    """``tr((S1 S2)^(1/2))`` of two covariance matrices, in float64, without a general matrix
    square root: ``S1 S2`` is similar to the symmetric positive semi-definite
    ``M = S1^(1/2) S2 S1^(1/2)`` (``S1 S2 = S1^(1/2) M S1^(-1/2)`` when S1 is invertible, and by
    continuity otherwise), so the trace is the sum of the square roots of M's eigenvalues (two
    symmetric eigendecompositions; rounding's tiny negative eigenvalues count as 0).

    ``factor1``: an (n, d) ``F`` with ``S1 = F.T F`` (:attr:`FeatureStats.factor`); then the
    nonzero eigenvalues of M are those of the n x n ``F S2 F.T`` (``AB`` and ``BA`` share
    them), one small eigendecomposition instead of two d x d ones. Without it, a Cholesky
    factor ``S1 = L L.T`` takes the place of ``S1^(1/2)`` (``L.T S2 L`` has the same
    eigenvalues); a singular S1 (fewer images than dimensions) is factored as ``F.T F`` by
    :func:`psd_factor` and takes the first form."""
    a = np.asarray(s1, dtype=np.float64)
    b = np.asarray(s2, dtype=np.float64)
    if factor1 is not None:
        f = np.asarray(factor1, dtype=np.float64)
        m = f @ b @ f.T
    else:
        try:  # S1 = L L.T: M' = L.T S2 L is similar to S1 S2 as well, and a Cholesky is cheap
            lower = np.linalg.cholesky(a)  # reads one triangle: no symmetrising copy needed
            m = lower.T @ b @ lower
        except np.linalg.LinAlgError:  # S1 singular (fewer images than dimensions): its PSD root
            f = psd_factor(a)
            m = f @ b @ f.T
    w = np.linalg.eigvalsh(m)  # reads one triangle of the (rounding apart) symmetric m
    # Eigenvalues at rounding level are zeros (e.g. the one centring removes): their square
    # roots, about 1e-8 of the largest's, would add up to a visible error.
    w[w < max(w[-1], 0.0) * len(w) * np.finfo(np.float64).eps] = 0
    return float(np.sqrt(w).sum())


def frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
    """The Fréchet distance between the Gaussians of two :class:`FeatureStats`."""
    if a.mean.shape != b.mean.shape:
        raise InputError(f"feature statistics of different dimensions: {a.mean.shape} and {b.mean.shape}")
    diff = a.mean - b.mean
    if a.factor is None and b.factor is not None:
        a, b = b, a  # tr((S_a S_b)^(1/2)) is symmetric in the two sets
    trace = trace_sqrt_product(a.cov, b.cov, a.factor)
    return float(diff @ diff + np.trace(a.cov) + np.trace(b.cov) - 2 * trace)
