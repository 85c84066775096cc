"""percepmetric.correlation: SRCC/KRCC/PLCC/RMSE against MOS, the VQEG logistic fit, group-bootstrap
intervals and paired tests."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from percepmetric.correlation import (
    KINDS,
    LogisticFit,
    bootstrap_by_group,
    correlation_table,
    correlations,
    fit_logistic,
    krcc,
    logistic4,
    logistic5,
    paired_correlation_test,
    plcc,
    plcc_fitted,
    rmse,
    rmse_fitted,
    srcc,
)
from percepmetric.errors import InputError


def _mos_dataset(seed: int, n_groups: int = 25, per_group: int = 12, noise: float = 0.3):
    """A TID-like set: quality with a saturating relation to MOS, a shared effect per reference."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_groups), per_group)
    effect = rng.normal(size=n_groups)[groups]
    quality = effect + rng.normal(size=len(groups))
    mos = 5 + 2 * np.tanh(quality) + noise * rng.normal(size=len(groups)) + 0.3 * effect
    return quality, mos, groups


# ---------------------------------------------------------------- rank correlations against scipy

@pytest.mark.parametrize("seed", range(5))
def test_srcc_krcc_equal_scipy_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = 30 + 40 * seed
    quality = np.round(rng.normal(size=n), 1)  # many ties
    mos = np.round(quality + rng.normal(size=n), 0)  # more ties
    assert srcc(quality, mos) == pytest.approx(scipy_stats.spearmanr(quality, mos).statistic, abs=1e-12)
    assert krcc(quality, mos) == pytest.approx(scipy_stats.kendalltau(quality, mos).statistic, abs=1e-12)
    assert plcc(quality, mos) == pytest.approx(scipy_stats.pearsonr(quality, mos).statistic, abs=1e-12)
    assert rmse(quality, mos) == pytest.approx(np.sqrt(np.mean((quality - mos) ** 2)), abs=1e-12)


def test_rank_correlation_edge_cases():
    # Perfect monotone (non-linear) agreement: ranks agree fully, Pearson does not.
    q = np.array([1.0, 2.0, 3.0, 4.0, 10.0])
    m = np.array([0.0, 1.0, 1.5, 1.7, 1.8])
    assert srcc(q, m) == pytest.approx(1.0) and krcc(q, m) == pytest.approx(1.0) and plcc(q, m) < 0.95
    assert srcc(q, -m) == pytest.approx(-1.0) and krcc(q, -m) == pytest.approx(-1.0)
    # All tied but one, in both arrays.
    q2, m2 = [1, 1, 1, 2], [3, 3, 3, 4]
    assert srcc(q2, m2) == pytest.approx(scipy_stats.spearmanr(q2, m2).statistic)
    assert krcc(q2, m2) == pytest.approx(scipy_stats.kendalltau(q2, m2).statistic)
    # Exactly 3 items is enough; 2 is not.
    assert srcc([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    assert np.isnan(srcc([1, 2], [1, 2]))


def test_degenerate_input_gives_nan_not_exceptions():
    values = correlations([1.0, 1.0, 1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert list(values) == list(KINDS)
    assert all(np.isnan(values[k]) for k in KINDS if k != "rmse")
    assert values["rmse"] == pytest.approx(np.sqrt(np.mean((1 - np.arange(1, 7)) ** 2)))
    constant_mos = correlations(np.arange(6.0), np.full(6, 3.0))
    assert all(np.isnan(constant_mos[k]) for k in KINDS if k != "rmse")
    two = correlations([1.0, 2.0], [2.0, 1.0])
    assert all(np.isnan(two[k]) for k in KINDS if k != "rmse")


# ---------------------------------------------------------------- input checks

def test_nan_and_inf_inputs_raise_naming_the_array_and_count():
    with pytest.raises(InputError, match=r"quality has 2 non-finite"):
        srcc([1.0, np.nan, np.inf, 4.0], [1.0, 2.0, 3.0, 4.0])
    with pytest.raises(InputError, match=r"mos has 1 non-finite"):
        correlations([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, np.nan, 4.0])
    with pytest.raises(InputError, match=r"quality_b has 1 non-finite"):
        paired_correlation_test("srcc", [1, 2, 3], [1, np.nan, 3], [1, 2, 3], [0, 1, 2])


def test_length_mismatch_and_empty_raise():
    with pytest.raises(InputError, match="differ in length"):
        plcc([1, 2, 3], [1, 2])
    with pytest.raises(InputError, match="differ in length"):
        correlation_table([1, 2, 3], [1, 2, 3], ["a", "b"])
    with pytest.raises(InputError, match="empty"):
        correlations([], [])
    with pytest.raises(InputError, match="unknown logistic form"):
        fit_logistic([1, 2, 3], [1, 2, 3], form="logistic3")
    with pytest.raises(InputError, match="unknown correlation kind"):
        paired_correlation_test("spearman", [1, 2, 3], [1, 2, 3], [1, 2, 3], [0, 1, 2])


# ---------------------------------------------------------------- orientation and the fit

def test_orientation_higher_is_better():
    quality, mos, _ = _mos_dataset(0)
    right = correlations(quality, mos)
    wrong = correlations(-quality, mos)  # a distance passed without negation
    for kind in ("srcc", "krcc", "plcc"):
        assert right[kind] > 0.7
        assert wrong[kind] == pytest.approx(-right[kind], abs=1e-12)
    # The fit may be decreasing: fitted PLCC does not show orientation (documented), and the
    # mirrored start makes the reversed metric's fit the exact mirror image of the right one.
    assert wrong["plcc_fitted"] == pytest.approx(right["plcc_fitted"], abs=1e-9)
    assert right["plcc_fitted"] >= right["plcc"]


@pytest.mark.parametrize("form", ["logistic5", "logistic4"])
def test_fit_is_scale_and_shift_invariant(form):
    quality, mos, _ = _mos_dataset(1)
    reference = plcc_fitted(quality, mos, fit=form)
    for transformed in (quality * 1e-3, quality * 1e3, quality * 1e-4 + 3e-4, 40 + 5 * quality):
        assert plcc_fitted(transformed, mos, fit=form) == pytest.approx(reference, abs=1e-9)
        assert rmse_fitted(transformed, mos, fit=form) == pytest.approx(rmse_fitted(quality, mos, fit=form), abs=1e-9)


@pytest.mark.parametrize("form", ["logistic5", "logistic4"])
def test_logistic_fit_params_are_in_raw_units(form):
    quality, mos, _ = _mos_dataset(2)
    lpips_like = 1e-4 * quality  # tiny raw values: the stored params must still describe the curve in them
    fitted = fit_logistic(lpips_like, mos, form)
    assert isinstance(fitted, LogisticFit) and fitted.form == form and fitted.converged
    curve = logistic5 if form == "logistic5" else logistic4
    np.testing.assert_allclose(fitted(lpips_like), curve(lpips_like, *fitted.params), rtol=0, atol=1e-12)
    fit_plcc = np.corrcoef(fitted(lpips_like), mos)[0, 1]
    assert fit_plcc == pytest.approx(plcc_fitted(lpips_like, mos, fit=form), abs=1e-9)


def test_logistic5_recovers_a_known_curve():
    x = np.linspace(-3, 3, 200)
    truth = (4.0, 1.5, 0.3, 0.2, 2.0)
    params = fit_logistic(x, logistic5(x, *truth)).params
    np.testing.assert_allclose(params, truth, rtol=1e-6, atol=1e-6)


def test_fit_falls_back_to_linear_documentedly():
    short = fit_logistic([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 5.0])  # 4 items < 5 parameters
    assert short.form == "linear" and not short.converged
    slope, intercept = np.polyfit([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 5.0], 1)
    np.testing.assert_allclose(short.params, (slope, intercept), atol=1e-12)
    np.testing.assert_allclose(short([0.0, 10.0]), [intercept, 10 * slope + intercept], atol=1e-12)


def _rising_then_falling(seed: int = 0):
    """Quality whose MOS rises steeply, then falls slowly (a saturating metric with a drift): the
    free 5-parameter logistic fits it with a falling linear term, so it is not monotone."""
    rng = np.random.default_rng(seed)
    x = np.linspace(-3, 3, 120)
    return x, 3 + 2 * np.tanh(2 * x) - 0.4 * x + 0.1 * rng.normal(size=x.size)


def _single_direction(values) -> bool:
    steps = np.diff(values)
    return bool(np.all(steps >= 0) or np.all(steps <= 0))


@pytest.mark.parametrize("seed", range(3))
def test_fit_is_monotone_over_the_data_range(seed):
    x, mos = _rising_then_falling(seed)
    fit = fit_logistic(x, mos)
    assert _single_direction(fit(np.linspace(x.min(), x.max(), 4001)))
    # the 5-parameter fit turns down at the ends: the documented fallback is the 4-parameter logistic
    assert fit.form == "logistic4" and fit.converged and fit.monotone_fallback
    # PLCC and RMSE after the fit are those of exactly this curve, whatever the units or direction
    assert plcc_fitted(x, mos) == pytest.approx(np.corrcoef(fit(x), mos)[0, 1], abs=1e-12)
    assert rmse_fitted(x, mos) == pytest.approx(np.sqrt(np.mean((fit(x) - mos) ** 2)), abs=1e-12)
    for transformed in (1e-4 * x, 40 + 5 * x, -x):
        assert plcc_fitted(transformed, mos) == pytest.approx(plcc_fitted(x, mos), abs=1e-9)
        assert _single_direction(fit_logistic(transformed, mos)(np.linspace(transformed.min(), transformed.max(),
                                                                            4001)))
    rows = {r["kind"]: r for r in correlation_table(x, mos, np.arange(len(x)) // 6, n_boot=50)}
    assert rows["plcc_fitted"]["score"] == plcc_fitted(x, mos)
    assert rows["plcc_fitted"]["ci_low"] <= rows["plcc_fitted"]["score"] <= rows["plcc_fitted"]["ci_high"]


def test_a_monotone_logistic5_fit_is_kept():
    quality, mos, _ = _mos_dataset(4)
    fit = fit_logistic(quality, mos)
    assert fit.form == "logistic5" and not fit.monotone_fallback
    assert _single_direction(fit(np.linspace(quality.min(), quality.max(), 4001)))


def _independent_model(form, p, x):
    """logistic5 (Sheikh et al. 2006) or logistic4 (VQEG Phase I), written out here again."""
    if form == "logistic5":
        b1, b2, b3, b4, b5 = p
        return b1 * (0.5 - 1.0 / (1.0 + np.exp(b2 * (x - b3)))) + b4 * x + b5
    b1, b2, b3, b4 = p
    return (b1 - b2) / (1.0 + np.exp(-(x - b3) / abs(b4))) + b2


def _independent_jacobian(form, p, x):
    if form == "logistic5":
        b1, b2, b3, _, _ = p
        e = np.exp(b2 * (x - b3))
        d = e / (1.0 + e) ** 2  # derivative of 1 / (1 + e^t) is -d
        return np.stack([0.5 - 1.0 / (1.0 + e), b1 * d * (x - b3), -b1 * d * b2, x, np.ones_like(x)], axis=1)
    b1, b2, b3, b4 = p
    h = 1.0 / (1.0 + np.exp(-(x - b3) / abs(b4)))
    d = (b1 - b2) * h * (1.0 - h)
    return np.stack([h, 1.0 - h, -d / abs(b4), -d * (x - b3) / (b4 * abs(b4))], axis=1)


def _independent_lm_fit(z, mos, start, form="logistic5", iterations=500):
    """Levenberg-Marquardt in plain NumPy on the logistic least squares, with its own Jacobian:
    the parameters."""
    p, damping = np.array(start, dtype=float), 1e-3
    cost = np.sum((mos - _independent_model(form, p, z)) ** 2)
    for _ in range(iterations):
        j, r = _independent_jacobian(form, p, z), mos - _independent_model(form, p, z)
        normal = j.T @ j
        step = np.linalg.solve(normal + damping * np.diag(np.diag(normal)), j.T @ r)
        trial = p + step
        trial_cost = np.sum((mos - _independent_model(form, trial, z)) ** 2)
        if trial_cost < cost:
            p, cost, damping = trial, trial_cost, damping / 3
        else:
            damping *= 4
        if np.max(np.abs(step)) < 1e-13:
            break
    return p


@pytest.mark.parametrize("seed", range(4))
def test_fitted_plcc_equals_an_independent_fit(seed):
    quality, mos, _ = _mos_dataset(seed + 10, noise=0.2 + 0.2 * seed)
    quality = 30 + 4 * quality  # a PSNR-like scale: the module standardises, so does this test
    z = (quality - quality.mean()) / quality.std()
    direction = 1.0 if np.corrcoef(quality, mos)[0, 1] >= 0 else -1.0
    start = (np.ptp(mos), direction, 0.0, 0.0, np.mean(mos))  # the documented start
    params = _independent_lm_fit(z, mos, start)
    fitted = _independent_model("logistic5", params, z)
    if not _single_direction(_independent_model("logistic5", params, np.linspace(z.min(), z.max(), 20001))):
        # not monotone over the data: the documented fallback, the 4-parameter fit from its own start
        start = (mos.max(), mos.min(), 0.0, 1.0) if direction > 0 else (mos.min(), mos.max(), 0.0, 1.0)
        fitted = _independent_model("logistic4", _independent_lm_fit(z, mos, start, "logistic4"), z)
    assert fit_logistic(quality, mos).monotone_fallback == (seed == 0)  # seed 0 turns down at the ends
    assert plcc_fitted(quality, mos) == pytest.approx(np.corrcoef(fitted, mos)[0, 1], abs=1e-6)
    assert rmse_fitted(quality, mos) == pytest.approx(np.sqrt(np.mean((fitted - mos) ** 2)), abs=1e-6)


# ---------------------------------------------------------------- group bootstrap

def test_vectorised_bootstrap_equals_the_generic_loop():
    quality, mos, groups = _mos_dataset(3, n_groups=12, per_group=6)
    quality = np.round(quality, 1)  # ties: the weighted average ranks must handle them
    for statistic in (srcc, plcc, rmse):
        fast = bootstrap_by_group(statistic, quality, mos, groups, n_boot=200, seed=5)
        slow = bootstrap_by_group(lambda q, m, f=statistic: f(q, m), quality, mos, groups, n_boot=200, seed=5)
        np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)


def test_group_resampling_resamples_groups():
    rng = np.random.default_rng(7)
    n_groups, copies = 40, 5
    q_group, m_group = rng.normal(size=(2, n_groups))
    m_group = 0.5 * q_group + m_group
    # Each group's items are exact duplicates: there are only 40 independent observations.
    quality, mos = np.repeat(q_group, copies), np.repeat(m_group, copies)
    groups = np.repeat([f"ref{g:02d}" for g in range(n_groups)], copies)
    items = np.arange(len(quality))
    for statistic in (plcc, srcc, krcc):
        low_g, high_g = bootstrap_by_group(statistic, quality, mos, groups, n_boot=400, seed=1)
        low_i, high_i = bootstrap_by_group(statistic, quality, mos, items, n_boot=400, seed=1)
        # Item-level resampling pretends to 200 independent items: about sqrt(5) too narrow.
        assert high_g - low_g > 1.6 * (high_i - low_i)
        # The group bootstrap of duplicated groups is the item bootstrap of the 40 distinct ones.
        low_d, high_d = bootstrap_by_group(statistic, q_group, m_group, np.arange(n_groups), n_boot=400, seed=1)
        assert high_g - low_g == pytest.approx(high_d - low_d, rel=0.25)


def test_group_bootstrap_interval_coverage():
    """Over 200 simulated datasets (40 groups x 5 items, a strong group effect) the 95% group
    interval covers the true correlation about 95% of the time; the item interval does not."""
    rho_group, rho_item = 0.8, 0.4  # (quality, mos) = group part (variance 3) + item part (variance 1)
    rho = (3 * rho_group + rho_item) / 4  # the population Pearson correlation of an item
    true_srcc = 6 / np.pi * np.arcsin(rho / 2)  # bivariate normal
    rng = np.random.default_rng(2024)
    n_groups, per_group, n_sets = 40, 5, 200
    groups = np.repeat(np.arange(n_groups), per_group)
    items = np.arange(n_groups * per_group)
    covered = {"plcc": 0, "srcc": 0, "plcc_items": 0}
    for s in range(n_sets):
        group_part = rng.multivariate_normal([0, 0], [[3, 3 * rho_group], [3 * rho_group, 3]], size=n_groups)[groups]
        item_part = rng.multivariate_normal([0, 0], [[1, rho_item], [rho_item, 1]], size=len(groups))
        quality, mos = (group_part + item_part).T
        low, high = bootstrap_by_group(plcc, quality, mos, groups, n_boot=300, seed=s)
        covered["plcc"] += low <= rho <= high
        low, high = bootstrap_by_group(srcc, quality, mos, groups, n_boot=300, seed=s)
        covered["srcc"] += low <= true_srcc <= high
        low, high = bootstrap_by_group(plcc, quality, mos, items, n_boot=300, seed=s)
        covered["plcc_items"] += low <= rho <= high
    coverage = {k: v / n_sets for k, v in covered.items()}
    assert 0.88 <= coverage["plcc"] <= 0.99, coverage
    assert 0.88 <= coverage["srcc"] <= 0.99, coverage
    assert coverage["plcc_items"] < coverage["plcc"] - 0.08, coverage  # ignoring groups under-covers


def test_correlation_table_rows():
    quality, mos, groups = _mos_dataset(4, n_groups=15, per_group=8)
    rows = correlation_table(quality, mos, groups, n_boot=60, seed=3)
    assert [r["kind"] for r in rows] == list(KINDS)
    scores = correlations(quality, mos)
    for row in rows:
        assert set(row) == {"kind", "score", "ci_low", "ci_high", "fit_failures", "note"}
        assert row["score"] == scores[row["kind"]]
        assert row["ci_low"] < row["ci_high"]
        assert row["ci_low"] <= row["score"] <= row["ci_high"]
        assert row["note"] == "" and row["fit_failures"] == (0 if "fitted" in row["kind"] else None)
    # Deterministic in the seed, and the same resamples as bootstrap_by_group.
    assert correlation_table(quality, mos, groups, n_boot=60, seed=3) == rows
    srcc_row = rows[0]
    assert (srcc_row["ci_low"], srcc_row["ci_high"]) == bootstrap_by_group(srcc, quality, mos, groups, n_boot=60,
                                                                           seed=3)


# ---------------------------------------------------------------- paired test

@pytest.mark.parametrize("kind", ["srcc", "plcc_fitted"])
def test_paired_test_identical_metrics(kind):
    quality, mos, groups = _mos_dataset(5, n_groups=12, per_group=6)
    result = paired_correlation_test(kind, quality, quality, mos, groups, n_boot=100)
    assert result["difference"] == 0 and result["ci_low"] == 0 and result["ci_high"] == 0
    assert result["p_value"] == 1.0
    assert result["kind"] == kind and result["score_a"] == result["score_b"]


def test_paired_test_detects_a_better_metric():
    quality, mos, groups = _mos_dataset(6, n_groups=20, per_group=8)
    worse = quality + np.random.default_rng(0).normal(scale=1.0, size=len(quality))
    for kind, n_boot in (("srcc", 200), ("krcc", 200), ("plcc_fitted", 50)):  # p >= 1/n_boot: 50 is enough here
        result = paired_correlation_test(kind, quality, worse, mos, groups, n_boot=n_boot, seed=1)
        assert result["difference"] > 0.05 and result["ci_low"] > 0
        assert result["p_value"] < 0.05
        reverse = paired_correlation_test(kind, worse, quality, mos, groups, n_boot=n_boot, seed=1)
        assert reverse["difference"] == pytest.approx(-result["difference"])
        assert reverse["p_value"] == result["p_value"]
