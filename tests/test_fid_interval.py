"""percepmetric.metrics.fid_interval: FID intervals that account for FID's bias, checked on
Gaussians whose exact Fréchet distance is known (nothing downloaded, all on features)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from percepmetric.errors import InputError
from percepmetric.metrics.distribution import feature_stats, frechet_distance
from percepmetric.metrics.fid_interval import MIN_IMAGES, FIDInterval, _dspace_fid, _Gram, _jackknife, fid_interval

SEEDS = range(40)  # simulated experiments per coverage test (fixed)


def _fid(x: np.ndarray, y: np.ndarray) -> float:
    return frechet_distance(feature_stats(x), feature_stats(y))


class TwoGaussians:
    """Two d-dimensional Gaussians, the exact Fréchet distance between them (FID_inf), and
    E[FID_n] for n images per set by Monte Carlo."""

    def __init__(self, d: int, n: int) -> None:
        g = np.random.default_rng(123)
        self.d, self.n = d, n
        root1 = g.standard_normal((d, d)) / math.sqrt(d)
        root2 = g.standard_normal((d, d)) / math.sqrt(d)
        s1, s2 = root1 @ root1.T + 0.5 * np.eye(d), root2 @ root2.T + 0.5 * np.eye(d)
        self.mu1, self.mu2 = np.zeros(d), np.full(d, 0.1)
        self.l1, self.l2 = np.linalg.cholesky(s1), np.linalg.cholesky(s2)
        # tr((S1 S2)^(1/2)) from the eigenvalues of S1^(1/2) S2 S1^(1/2) (an own square root)
        w, v = np.linalg.eigh(s1)
        r1 = (v * np.sqrt(w)) @ v.T
        cross = np.sqrt(np.clip(np.linalg.eigvalsh(r1 @ s2 @ r1), 0, None)).sum()
        self.true = float((self.mu1 - self.mu2) @ (self.mu1 - self.mu2) + np.trace(s1) + np.trace(s2) - 2 * cross)
        mc = np.random.default_rng(999)
        self.expected = float(np.mean([_fid(*self.draw(mc)) for _ in range(2000)]))

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        x = rng.standard_normal((self.n, self.d)) @ self.l1.T + self.mu1
        y = rng.standard_normal((self.n, self.d)) @ self.l2.T + self.mu2
        return x, y


@pytest.fixture(scope="module")
def gaussians() -> TwoGaussians:
    return TwoGaussians(d=16, n=50)


def test_true_distance_against_scipy(gaussians: TwoGaussians) -> None:
    linalg = pytest.importorskip("scipy.linalg")
    s1, s2 = gaussians.l1 @ gaussians.l1.T, gaussians.l2 @ gaussians.l2.T
    diff = gaussians.mu1 - gaussians.mu2
    exact = diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.real(np.trace(linalg.sqrtm(s1 @ s2)))
    assert gaussians.true == pytest.approx(exact, rel=1e-9)
    # the setting of the coverage tests: the bias dwarfs the spread
    assert gaussians.expected - gaussians.true > 3.0


def _naive_percentile(x: np.ndarray, y: np.ndarray, seed: int, resamples: int = 200) -> tuple[float, float]:
    rng = np.random.default_rng(seed + 10_000)
    values = [_fid(x[rng.integers(0, len(x), len(x))], y[rng.integers(0, len(y), len(y))]) for _ in range(resamples)]
    lo, hi = np.quantile(values, [0.025, 0.975])
    return float(lo), float(hi)


def test_bootstrap_coverage(gaussians: TwoGaussians) -> None:
    covers_inf = covers_n = contains = naive_covers = naive_above = 0
    for seed in SEEDS:
        x, y = gaussians.draw(np.random.default_rng(seed))
        est = _fid(x, y)
        iv = fid_interval(x, y, method="bootstrap", seed=seed)
        assert iv is not None and iv.method.startswith("bias-corrected bootstrap, 200 resamples")
        covers_inf += iv.infinite_low <= gaussians.true <= iv.infinite_high
        covers_n += iv.low <= gaussians.expected <= iv.high
        contains += iv.low <= est <= iv.high
        assert iv.infinite_low <= iv.infinite <= iv.infinite_high
        lo, hi = _naive_percentile(x, y, seed)
        naive_covers += lo <= gaussians.true <= hi
        naive_above += lo > est
    n = len(SEEDS)
    assert covers_inf >= 0.8 * n  # 95 % intervals (measured: 40/40; 197/200 over 200 seeds)
    assert covers_n >= 0.8 * n  # (measured: 40/40; 196/200)
    assert contains == n
    assert naive_covers <= 0.2 * n  # (measured: 0/40) the naive interval misses FID_inf
    assert naive_above >= 0.75 * n  # (measured: 40/40) and lies above the estimate


def test_jackknife_coverage(gaussians: TwoGaussians) -> None:
    covers_inf = covers_n = 0
    for seed in SEEDS:
        x, y = gaussians.draw(np.random.default_rng(seed))
        iv = fid_interval(x, y, seed=seed)  # auto: n >= d, the jackknife
        assert iv is not None and iv.method == "grouped jackknife, 25 groups"
        covers_inf += iv.infinite_low <= gaussians.true <= iv.infinite_high
        covers_n += iv.low <= gaussians.expected <= iv.high
        assert iv.low <= _fid(x, y) <= iv.high
    assert covers_inf >= 0.8 * len(SEEDS)  # (measured: 40/40; 192/200 over 200 seeds)
    assert covers_n >= 0.8 * len(SEEDS)


def test_fewer_images_than_dimensions() -> None:
    """n < d: FID's bias is not k / n and FID_inf is reported as n/a (NaN); the E[FID_n]
    interval still covers."""
    sim = TwoGaussians(d=64, n=32)
    covers = 0
    for seed in range(20):
        x, y = sim.draw(np.random.default_rng(seed))
        iv = fid_interval(x, y, seed=seed)
        assert iv is not None and iv.method == "bias-corrected bootstrap, 200 resamples"
        assert math.isnan(iv.infinite) and math.isnan(iv.infinite_low) and math.isnan(iv.infinite_high)
        covers += iv.low <= sim.expected <= iv.high
    assert covers >= 16


def test_resample_equals_frechet_distance() -> None:
    rng = np.random.default_rng(5)
    for na, nb, d in ((30, 40, 64), (40, 25, 64), (60, 70, 16), (30, 90, 48)):
        x = rng.standard_normal((na, d)) + 0.3
        y = rng.standard_normal((nb, d)) * 1.2
        ia, ib = rng.integers(0, na, na), rng.integers(0, nb, nb)
        wa, wb = np.bincount(ia, minlength=na), np.bincount(ib, minlength=nb)
        reference = _fid(x[ia], y[ib])
        gram = _Gram(x, y).fid(wa, wb)
        dspace = _dspace_fid(x - x.mean(0), y - y.mean(0), x.mean(0) - y.mean(0), wa, wb)
        assert gram == pytest.approx(reference, rel=1e-8, abs=0)
        assert dspace == pytest.approx(reference, rel=1e-8, abs=0)


@pytest.mark.parametrize("n", [30, 100])  # n < d (factor route) and n >= d (scatter updates)
def test_jackknife_values_equal_frechet_distance(n: int) -> None:
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((n, 40)) + 0.2, rng.standard_normal((n + 7, 40)) * 0.8
    values = _jackknife(x, y, 5, np.random.default_rng(1))
    again = np.random.default_rng(1)
    ga = np.array_split(again.permutation(len(x)), 5)
    gb = np.array_split(again.permutation(len(y)), 5)
    for g in range(5):
        reference = _fid(np.delete(x, ga[g], axis=0), np.delete(y, gb[g], axis=0))
        assert values[g] == pytest.approx(reference, rel=1e-8, abs=0)


def test_too_few_images_and_non_finite() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((MIN_IMAGES, 8)), rng.standard_normal((20, 8))
    assert fid_interval(x, y) is not None
    assert fid_interval(x[:-1], y) is None
    assert fid_interval(y, x[:-1]) is None
    bad = y.copy()
    bad[3, 2] = np.nan
    assert fid_interval(x, bad) is None
    assert fid_interval(x, y, estimate=math.inf) is None


@pytest.mark.parametrize("kwargs", [{"confidence": 0.0}, {"confidence": 1.0}, {"confidence": 1.5},
                                    {"confidence": "0.9"}, {"resamples": 9}, {"resamples": 50.0},
                                    {"method": "percentile"}])
def test_bad_arguments(kwargs: dict) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((20, 8)), rng.standard_normal((20, 8))
    with pytest.raises(InputError) as info:
        fid_interval(x, y, **kwargs)
    assert "\n" not in str(info.value)


def test_bad_shapes() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(InputError):
        fid_interval(rng.standard_normal((20, 8)), rng.standard_normal((20, 9)))
    with pytest.raises(InputError):
        fid_interval(rng.standard_normal(20), rng.standard_normal((20, 1)))


def test_deterministic_and_inputs(gaussians: TwoGaussians) -> None:
    x, y = gaussians.draw(np.random.default_rng(3))
    for method in ("bootstrap", "jackknife"):
        first = fid_interval(x, y, method=method, seed=7)
        assert isinstance(first, FIDInterval)
        assert fid_interval(x, y, method=method, seed=7) == first
        assert fid_interval(x, y, method=method, seed=8) != first
        # the estimate passed in, and torch tensors: the same numbers
        assert fid_interval(torch.from_numpy(x), torch.from_numpy(y), estimate=_fid(x, y), method=method,
                            seed=7) == first


def test_clipped_at_zero() -> None:
    """Two samples of one distribution: FID_inf = 0, and its interval's lower end (below 0
    before clipping) is 0."""
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((60, 4)), rng.standard_normal((60, 4))
    for method in ("bootstrap", "jackknife"):
        iv = fid_interval(x, y, method=method)
        assert iv is not None
        assert iv.infinite_low == 0.0 and iv.infinite >= 0.0 and iv.low >= 0.0
        assert iv.infinite_high > 0.0
