"""Quantiles of Student's t distribution in pure Python (the standard library's ``math`` only).

:func:`t_quantile` gives the half-width factor of a mean's t-interval (``t_quantile(0.975, n - 1)``
for 95%), so that the metric library needs no SciPy. It agrees with ``scipy.stats.t.ppf`` to a
relative 1e-12 for ``p`` in (0.5, 1) and ``df`` from 1 to 1e8, and with 50-digit mpmath within
1e-2 of ``p = 1/2``, where SciPy itself loses digits (tests/test_student_t.py).

Method. For ``t > 0`` and ``nu`` degrees of freedom the two parts of the distribution are
regularized incomplete beta functions (Abramowitz & Stegun 26.7.1, 26.5.27)::

    tail    Q(t) = P(T > t)     = I_x(nu/2, 1/2) / 2,   x = nu / (nu + t^2)
    centre  C(t) = P(0 < T < t) = I_y(1/2, nu/2) / 2,   y = t^2 / (nu + t^2)

Each is ``K(t) * CF / scale`` with the common factor ``K(t) = t * f(t)`` (f the density) and
``CF`` the continued fraction of the incomplete beta (A&S 26.5.8, evaluated by the modified
Lentz method), which converges fast on one side of ``y = 3 / (nu + 5)`` (Numerical Recipes 6.4);
the other part is then ``1/2`` minus it. ``K`` is computed in logarithms, with
``log1p`` for ``(1 + t^2/nu)^(-nu/2)`` and the ratio ``Gamma(z + 1/2) / Gamma(z)`` from its
asymptotic series (below), so that neither large ``nu`` nor large ``t`` loses digits to
``lgamma`` of big numbers or to underflow.

The quantile solves ``log Q(t) = log(1 - p)`` when ``1 - p <= 1/4`` (the tail, where ``Q``
behaves like a power of ``t``), else ``log C(t) = log(p - 1/2)`` (where ``C`` is nearly
linear in ``t``), by Newton's method in ``s = log t``: both are nearly straight lines in
``s``, and their slopes are ``K/Q`` and ``K/C``, which the same evaluation gives. A bracket
kept from the signs of the residuals turns a step that would leave it into a bisection.
Quantiles beyond 1e300 (``df < 2`` far in the tails) are returned as infinite.
``nu = 1`` (Cauchy) and ``nu = 2`` have closed forms; ``nu = inf`` is the normal distribution.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction

from .errors import InputError

__all__ = ["t_quantile"]

# Bernoulli numbers B_2, B_4, ..., B_16.
_BERNOULLI_EVEN = (Fraction(1, 6), Fraction(-1, 30), Fraction(1, 42), Fraction(-1, 30), Fraction(5, 66),
                   Fraction(-691, 2730), Fraction(7, 6), Fraction(-3617, 510))

# log(Gamma(z + 1/2) / Gamma(z)) - log(z)/2 ~ sum over odd n of c_n / z^n (the difference of the
# two Stirling series of log Gamma(z + a), a = 1/2 and a = 0, DLMF 5.11.8):
# c_n = (-1)^(n+1) (B_{n+1}(1/2) - B_{n+1}) / (n (n+1)), with B_k(1/2) = (2^(1-k) - 1) B_k;
# c_1 = -1/8, c_3 = 1/192, c_5 = -1/640, ...
_RATIO_SERIES = tuple(
    (n, float((Fraction(1, 2 ** n) - 2) * bernoulli / (n * (n + 1))))
    for n, bernoulli in zip(range(1, 16, 2), _BERNOULLI_EVEN)
)
#: Below this ``z`` the ratio is carried up by ``Gamma(z + 1) = z Gamma(z)`` before the series
#: is used (at 20 its last term is below 1e-25).
_SERIES_FROM = 20.0

_LOG_SQRT_PI = 0.5 * math.log(math.pi)
_SQRT_HALF = math.sqrt(0.5)
#: Stop the continued fraction when a step changes it by less than this (relative).
_CF_TOLERANCE = 1e-16
_CF_MAX_TERMS = 1_000_000
#: From this many degrees of freedom (more when the quantile is far out) the expansion in
#: ``1/nu`` around the normal quantile is used: there the continued fraction needs thousands
#: of terms and their rounding errors add up past 1e-12.
_EXPANSION_FROM = 1e4
#: Newton steps in s = log t end when a step is this small (relative change of t).
_NEWTON_TOLERANCE = 1e-15
_NEWTON_MAX_STEPS = 200


def t_quantile(p: float, df: float) -> float:
    """The ``p``-quantile of Student's t distribution with ``df`` degrees of freedom: the ``t``
    with ``P(T <= t) = p``. ``0 < p < 1``; ``df > 0`` (any real, ``math.inf`` for the normal
    distribution). Symmetric: ``t_quantile(1 - p, df) == -t_quantile(p, df)``."""
    p, df = float(p), float(df)
    if not 0.0 < p < 1.0:
        raise InputError(f"t_quantile: p must be strictly between 0 and 1, got {p!r}")
    if not df > 0.0:
        raise InputError(f"t_quantile: df (degrees of freedom) must be positive, got {df!r}")
    if p == 0.5:
        return 0.0
    sign = 1.0 if p > 0.5 else -1.0
    # Both are exact in floating point where they are used: the tail when p >= 1/2 (Sterbenz)
    # or p < 1/2, the centre when 1/4 <= p <= 3/4.
    tail = 1.0 - p if p > 0.5 else p
    centre = p - 0.5 if p > 0.5 else 0.5 - p
    if df == 1.0:  # Cauchy: t = tan(pi (p - 1/2)) = 1 / tan(pi (1 - p))
        return sign * (1.0 / math.tan(math.pi * tail) if tail <= 0.25 else math.tan(math.pi * centre))
    if df == 2.0:  # F(t) = 1/2 + t / (2 sqrt(2 + t^2))  =>  t = (2p - 1) / sqrt(2 p (1 - p))
        return sign * 2.0 * centre / math.sqrt(2.0 * (0.5 + centre) * tail)
    z = _solve(_normal_parts, tail, centre, _first_guess(math.inf, tail), _S_MAX_NORMAL)
    if math.isinf(df) or df >= _EXPANSION_FROM * max(1.0, z * z / 64.0):
        return sign * _cornish_fisher(z, df)
    return sign * _solve(_student_parts(df), tail, centre, _first_guess(df, tail))


def _cornish_fisher(z: float, nu: float) -> float:
    """The t quantile from the normal one ``z`` by the expansion in ``1/nu`` (A&S 26.7.5, four
    terms); its error is below 1e-15 (relative) where it is used: ``nu >= 1e4`` and
    ``z^2 / nu <= 1/156`` (``z`` up to 8 at ``nu = 1e4``; the next term is of order
    ``z^11 / nu^5``)."""
    if math.isinf(nu):
        return z
    z2 = z * z
    g1 = z * (z2 + 1.0) / 4.0
    g2 = z * ((5.0 * z2 + 16.0) * z2 + 3.0) / 96.0
    g3 = z * (((3.0 * z2 + 19.0) * z2 + 17.0) * z2 - 15.0) / 384.0
    g4 = z * ((((79.0 * z2 + 776.0) * z2 + 1482.0) * z2 - 1920.0) * z2 - 945.0) / 92160.0
    return z + (g1 + (g2 + (g3 + g4 / nu) / nu) / nu) / nu


# ---------------------------------------------------------------- the two parts of the distribution

#: ``parts(s) -> (log K, log Q, log C)`` at ``t = exp(s)``: ``K = t f(t)``, ``Q = P(T > t)``,
#: ``C = P(0 < T < t)``. Taking ``s`` rather than ``t`` lets ``t^2`` exceed the float range.
Parts = Callable[[float], tuple[float, float, float]]

#: Newton's method keeps ``s = log t`` in this range: ``t^2`` stays a normal float below it, and
#: a quantile above it (only for ``df < 2`` in tails below 1e-150) is returned as infinity.
_S_MIN = math.log(1e-150)
_S_MAX = math.log(1e300)
#: Below this ``s`` the parts are computed from ``t^2`` directly, above it from ``log(t^2 / nu)``.
_S_DIRECT = 300.0
#: The normal quantile of the smallest positive double is 38.47, so its root lies below 40.
_S_MAX_NORMAL = math.log(40.0)


def _log_gamma_ratio(z: float) -> float:
    """``log(Gamma(z + 1/2) / Gamma(z))`` for ``z > 0``, accurate to a few units in the last
    place also for large ``z`` (where ``lgamma(z + 1/2) - lgamma(z)`` would lose digits)."""
    shift = 0.0
    while z < _SERIES_FROM:  # Gamma(z + 1/2)/Gamma(z) = Gamma(z + 3/2)/Gamma(z + 1) * z / (z + 1/2)
        shift += math.log1p(-0.5 / (z + 0.5))
        z += 1.0
    series = sum(coefficient / z ** n for n, coefficient in _RATIO_SERIES)
    return 0.5 * math.log(z) + series + shift


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of ``I_x(a, b) = x^a (1-x)^b / (a B(a, b)) * CF`` (A&S 26.5.8),
    by the modified Lentz method; it converges fast for ``x < (a + 1) / (a + b + 2)``."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, _CF_MAX_TERMS):
        m2 = 2.0 * m
        for numerator in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                          -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            delta = d * c
            h *= delta
        if abs(delta - 1.0) <= _CF_TOLERANCE:
            return h
    raise ArithmeticError(f"incomplete beta continued fraction did not converge (a={a}, b={b}, x={x})")


def _student_parts(nu: float) -> Parts:
    half_nu = 0.5 * nu
    log_ratio = _log_gamma_ratio(half_nu)  # log Gamma((nu+1)/2) / Gamma(nu/2)
    log_nu = math.log(nu)

    def parts(s: float) -> tuple[float, float, float]:
        # x = nu / (nu + t^2), y = t^2 / (nu + t^2), and log(1 + t^2/nu)
        if s < _S_DIRECT:
            t2 = math.exp(s) ** 2
            x, y = nu / (nu + t2), t2 / (nu + t2)
            log_1p, log_y = math.log1p(t2 / nu), math.log(y)
        else:  # t^2 would overflow: u = log(t^2 / nu) is large, log(1 + e^u) = u + log1p(e^-u)
            u = 2.0 * s - log_nu
            log_1p = u + math.log1p(math.exp(-u))
            log_y = u - log_1p
            x, y = math.exp(-log_1p), math.exp(log_y)
        # K = t f(t) = (1 + t^2/nu)^(-nu/2) * sqrt(y) * Gamma((nu+1)/2) / (Gamma(nu/2) sqrt(pi))
        log_k = -half_nu * log_1p + 0.5 * log_y + log_ratio - _LOG_SQRT_PI
        if y <= 3.0 / (nu + 5.0):  # NR's side: x >= (a + 1)/(a + b + 2) for a = nu/2, b = 1/2
            # C = I_y(1/2, nu/2) / 2 = K * CF(1/2, nu/2, y)
            log_c = log_k + math.log(_beta_continued_fraction(0.5, half_nu, y))
            return log_k, math.log(0.5 - math.exp(log_c)), log_c
        # Q = I_x(nu/2, 1/2) / 2 = K * CF(nu/2, 1/2, x) / nu
        log_q = log_k + math.log(_beta_continued_fraction(half_nu, 0.5, x)) - log_nu
        return log_k, log_q, math.log(0.5 - math.exp(log_q))

    return parts


def _normal_parts(s: float) -> tuple[float, float, float]:
    """The limit ``nu -> inf``: ``K = t phi(t)``, ``Q = erfc(t/sqrt 2)/2``, ``C = erf(t/sqrt 2)/2``."""
    t = math.exp(s)
    log_k = s - 0.5 * t * t - 0.5 * math.log(2.0 * math.pi)
    return log_k, _log_erfc(t * _SQRT_HALF) - math.log(2.0), math.log(0.5 * math.erf(t * _SQRT_HALF))


def _log_erfc(x: float) -> float:
    """``log(erfc(x))``, also where ``erfc(x)`` is subnormal or underflows (``x > 26``): there from
    ``erfc(x) = exp(-x^2) / (x sqrt(pi)) * (1 - 1/(2x^2) + 1*3/(2x^2)^2 - ...)`` (A&S 7.1.23),
    whose terms at ``x >= 20`` fall below 1e-17 after six."""
    if x < 20.0:
        return math.log(math.erfc(x))
    w = 1.0 / (2.0 * x * x)
    series, term = 1.0, 1.0
    for k in range(1, 8):
        term *= -(2 * k - 1) * w
        series += term
    return -x * x - math.log(x) - _LOG_SQRT_PI + math.log(series)


# ---------------------------------------------------------------- solving for t

def _first_guess(nu: float, tail: float) -> float:
    """A starting ``s = log t``: the Cornish-Fisher expansion around the normal quantile (A&S
    26.7.5, two terms) for ``nu >= 4``; for fewer degrees of freedom the larger of that and the
    power law of the tail, ``Q(t) ~ t^(-nu)`` times its constant. Newton's method does the rest."""
    z = _rough_normal_quantile(tail)
    if math.isinf(nu):
        return math.log(z)
    guess = math.log(z + (z ** 3 + z) / (4.0 * nu) + (5.0 * z ** 5 + 16.0 * z ** 3 + 3.0 * z) / (96.0 * nu * nu))
    if nu < 4.0:
        # Q(t) ~ Gamma((nu+1)/2) / (sqrt(pi) Gamma(nu/2)) nu^((nu-1)/2) t^(-nu)
        log_constant = _log_gamma_ratio(0.5 * nu) - _LOG_SQRT_PI + 0.5 * (nu - 1.0) * math.log(nu)
        guess = max(guess, (log_constant - math.log(tail)) / nu)
    return guess


def _rough_normal_quantile(tail: float) -> float:
    """The normal quantile of upper-tail probability ``tail < 1/2`` to about 4.5e-4 (A&S 26.2.23):
    only a starting point."""
    w = math.sqrt(-2.0 * math.log(tail))
    z = w - (2.515517 + 0.802853 * w + 0.010328 * w * w) / (1.0 + 1.432788 * w + 0.189269 * w * w
                                                            + 0.001308 * w ** 3)
    return max(z, 1e-3)


def _solve(parts: Parts, tail: float, centre: float, guess: float, s_max: float = _S_MAX) -> float:
    """The ``t > 0`` with ``Q(t) = tail`` (solved in the tail when ``tail <= 1/4``) or
    ``C(t) = centre``, by safeguarded Newton steps in ``s = log t`` from ``s = guess``, kept
    in ``[_S_MIN, s_max]``; ``math.inf`` when the root lies beyond ``s_max``."""
    use_tail = tail <= 0.25
    target = math.log(tail) if use_tail else math.log(centre)
    low, high = _S_MIN, s_max  # the root lies in (low, high); Newton steps outside are bisected
    s = min(max(guess, low), high)
    for _ in range(_NEWTON_MAX_STEPS):
        log_k, log_q, log_c = parts(s)
        # residual(s) increases with s: log C grows with t, log Q falls.
        if use_tail:
            residual, slope = target - log_q, math.exp(log_k - log_q)
        else:
            residual, slope = log_c - target, math.exp(log_k - log_c)
        if residual == 0.0:
            break
        if residual > 0.0:
            high = s
        else:
            low = s
        step = residual / slope
        if abs(step) <= _NEWTON_TOLERANCE:
            s -= step
            break
        proposed = s - step
        s = proposed if low < proposed < high else 0.5 * (low + high)
    if s >= s_max * (1.0 - 1e-12):
        return math.inf
    return math.exp(s)
