"""percepmetric.student_t.t_quantile: Student's t quantiles without SciPy, checked against
scipy.stats.t.ppf (where SciPy itself is accurate), mpmath (where it is not) and closed forms."""

from __future__ import annotations

import math
import statistics

import pytest

from percepmetric.errors import InputError
from percepmetric.student_t import t_quantile

# p in (0.5, 1) at least 1e-2 away from 1/2: closer than that scipy.stats.t.ppf itself loses
# digits (2e-11 relative at p = 0.501, df = 4; 4e-4 at p = 0.5000001):
# those are checked against mpmath instead.
PROBABILITIES = (0.51, 0.52, 0.6, 0.7, 0.75, 0.7500001, 0.8, 0.9, 0.95, 0.975, 0.99, 0.995,
                 0.999, 0.9999, 1 - 1e-6, 1 - 1e-9, 1 - 1e-12, 1 - 1e-15, 1 - 2.0 ** -53)
DEGREES = (1, 1.5, 2, 2.5, 3, 4, 5, 7, 9, 10, 19, 29, 30, 99, 100, 999, 1234.5, 9999, 1e4, 10001,
           3e4, 1e5, 123456.7, 1e6, 1e7, 1e8)


def _relative(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def test_against_scipy_on_a_grid() -> None:
    stats = pytest.importorskip("scipy.stats")
    worst = max(
        (_relative(t_quantile(p, df), float(stats.t.ppf(p, df))), p, df)
        for p in PROBABILITIES for df in DEGREES
    )
    assert worst[0] <= 1e-12, worst


def test_against_scipy_at_random_points() -> None:
    import random

    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(20261207)
    for _ in range(400):
        p = 0.51 + 0.49 * rng.random() if rng.random() < 0.5 else 1 - 10 ** rng.uniform(-15, -3)
        df = math.exp(rng.uniform(0, math.log(1e8)))
        for nu in (df, float(round(df))):
            got, want = t_quantile(p, nu), float(stats.t.ppf(p, nu))
            assert _relative(got, want) <= 1e-12, (p, nu, got, want)


@pytest.mark.parametrize(("p", "df"), [(0.501, 4), (0.505, 2.5), (0.5000001, 4), (0.5000000001, 6), (0.50001, 30),
                                       (0.5000001, 1e6), (0.9999999999999999, 0.1), (1e-300, 3)])
def test_near_one_half_and_far_tails_against_mpmath(p: float, df: float) -> None:
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 50
    nu = mp.mpf(df)
    tail = 1 - mp.mpf(p) if p > 0.5 else mp.mpf(p)

    def residual(s):  # log P(|T| > e^s) / 2 - log(tail), in s = log t so that huge t stay exact
        x = nu / (nu + mp.exp(2 * s))
        return mp.log(mp.betainc(nu / 2, mp.mpf(1) / 2, 0, x, regularized=True) / 2) - mp.log(tail)

    got = t_quantile(p, df)
    want = mp.exp(mp.findroot(residual, mp.log(abs(got)))) * (1 if p > 0.5 else -1)
    assert abs(float((got - want) / want)) <= 1e-12


def test_closed_forms() -> None:
    for p in (0.6, 0.9, 0.975, 0.999999):
        assert _relative(t_quantile(p, 1), 1 / math.tan(math.pi * (1 - p))) <= 1e-12  # Cauchy
        assert _relative(t_quantile(p, 2), (2 * p - 1) / math.sqrt(2 * p * (1 - p))) <= 1e-12
        assert _relative(t_quantile(p, math.inf), statistics.NormalDist().inv_cdf(p)) <= 1e-12


def test_known_interval_factors() -> None:
    # The 95% two-sided t factors of textbook tables, to the digits those tables give.
    assert t_quantile(0.975, 1) == pytest.approx(12.706204736174698, rel=1e-14)
    assert t_quantile(0.975, 9) == pytest.approx(2.262157162798205, rel=1e-13)
    assert t_quantile(0.975, 29) == pytest.approx(2.045229642132703, rel=1e-13)


def test_symmetry_and_centre() -> None:
    assert t_quantile(0.5, 7) == 0.0
    for p, df in ((0.9, 3), (0.999, 50.5), (0.51, 1e6)):
        assert t_quantile(1 - p, df) == pytest.approx(-t_quantile(p, df), rel=1e-12)


def test_quantiles_beyond_the_float_range_are_infinite() -> None:
    assert t_quantile(1e-300, 0.01) == -math.inf
    assert t_quantile(1 - 2.0 ** -53, 0.01) == math.inf


@pytest.mark.parametrize(("p", "df"), [(0.0, 3), (1.0, 3), (-0.1, 3), (math.nan, 3), (0.9, 0), (0.9, -1),
                                       (0.9, math.nan)])
def test_bad_arguments_are_input_errors(p: float, df: float) -> None:
    with pytest.raises(InputError):
        t_quantile(p, df)
