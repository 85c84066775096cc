"""percepmetric.stats: 2AFC credit and score, human ceiling, JND mAP (VOC average precision),
bootstrap intervals, paired tests; one module that bench, train and deepsim share."""

from __future__ import annotations

import numpy as np
import pytest

from percepmetric.errors import InputError
from percepmetric.stats import (
    bootstrap_ci,
    human_ceiling,
    jnd_map,
    paired_test,
    precision_recall,
    two_afc_credit,
    two_afc_score,
)


def test_two_afc_score_hand_computed_with_tie():
    d0 = [1.0, 2.0, 3.0, 1.0]
    d1 = [2.0, 1.0, 3.0, 0.5]
    judge = [0.2, 0.6, 0.9, 1.0]
    # d0 < d1 -> 1 - 0.2; d1 < d0 -> 0.6; tie -> 0.5; d1 < d0 -> 1.0
    np.testing.assert_allclose(two_afc_credit(d0, d1, judge), [0.8, 0.6, 0.5, 1.0])
    assert two_afc_score(d0, d1, judge) == pytest.approx(2.9 / 4)


def test_two_afc_score_symmetry_and_bounds():
    rng = np.random.default_rng(0)
    d0, d1, judge = rng.random(200), rng.random(200), rng.random(200)
    # Swapping p0 and p1 and flipping the judgment changes nothing.
    assert two_afc_score(d1, d0, 1 - judge) == pytest.approx(two_afc_score(d0, d1, judge))
    # A metric that always agrees with the majority earns mean(max(p, 1 - p)).
    oracle = two_afc_score(judge >= 0.5, judge < 0.5, judge)  # d1 < d0 exactly when judge >= 0.5
    assert oracle == pytest.approx(np.mean(np.maximum(judge, 1 - judge)))


def test_human_ceiling_hand_computed():
    # p^2 + (1-p)^2: 0.68, 1.0, 0.5
    assert human_ceiling([0.2, 1.0, 0.5]) == pytest.approx((0.68 + 1.0 + 0.5) / 3)


def test_two_afc_rejects_mismatched_lengths():
    with pytest.raises(InputError, match="differ in length"):
        two_afc_score([1, 2], [1], [0.5, 0.5])
    with pytest.raises(InputError, match="empty"):
        two_afc_score([], [], [])


def _voc_ap_direct(d, same):
    """Straight from the definition, one threshold at a time (slow, obviously right)."""
    order = np.argsort(d)
    s = np.asarray(same, dtype=float)[order]
    total = s.sum()
    precisions, recalls = [], []
    for k in range(1, len(s) + 1):
        tp = s[:k].sum()
        precisions.append(tp / k)
        recalls.append(tp / total)
    recalls = [0.0] + recalls + [1.0]
    precisions = [0.0] + precisions + [0.0]
    area = 0.0
    for i in range(len(recalls) - 1):
        if recalls[i + 1] != recalls[i]:
            area += (recalls[i + 1] - recalls[i]) * max(precisions[i + 1:])
    return area


def test_jnd_map_hand_computed_voc_value():
    # Sorted by distance the labels are 1, 0, 0, 1, 1: precision 1, .5, .333, .5, .6 at recall
    # 1/3, 1/3, 1/3, 2/3, 1. VOC envelope: 1 on (0, 1/3], 0.6 on (1/3, 1] -> 1/3 + 2/3 * 0.6.
    d = [0.1, 0.2, 0.3, 0.4, 0.5]
    same = [1, 0, 0, 1, 1]
    assert jnd_map(d, same) == pytest.approx(1 / 3 + 2 / 3 * 0.6)
    # sklearn's average_precision (no envelope) would give 1/3 + 1/3 * 0.5 + 1/3 * 0.6 = 0.7: VOC differs.
    assert jnd_map(d, same) != pytest.approx(0.7)


def test_jnd_map_matches_direct_computation_and_reference_voc_ap():
    import lpips  # the original implementation (test extra): its voc_ap is the reference

    rng = np.random.default_rng(1)
    for n in (7, 50, 300):
        d = rng.random(n)
        same = rng.choice([0.0, 1 / 3, 2 / 3, 1.0], n)
        same[0] = 1.0
        expected = _voc_ap_direct(d, same)
        assert jnd_map(d, same) == pytest.approx(expected, abs=1e-12)
        precision, recall = precision_recall(d, same)
        assert lpips.voc_ap(recall, precision) == pytest.approx(expected, abs=1e-12)


def test_jnd_map_perfect_and_undefined():
    assert jnd_map([0.0, 0.0, 1.0, 2.0], [1, 1, 0, 0]) == pytest.approx(1.0)
    with pytest.raises(InputError, match="same"):
        jnd_map([0.1, 0.2], [0, 0])


def _two_afc_score_direct(d0, d1, judge) -> float:
    """2AFC score from its definition, one triplet at a time."""
    credit = [j if b < a else 1 - j if a < b else 0.5 for a, b, j in zip(d0, d1, judge, strict=True)]
    return sum(credit) / len(credit)


def _human_ceiling_direct(judge) -> float:
    """How often two people agree, p^2 + (1 - p)^2 per triplet (LPIPS paper, Sec. 5), averaged."""
    return sum(p * p + (1 - p) ** 2 for p in judge) / len(judge)


def _bootstrap_ci_loop(statistic, arrays, n_boot: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap, one resample at a time: resample b takes the items of row b of
    ``default_rng(seed).integers(0, N, (n_boot, N))`` -- the draws percepmetric.stats makes when
    the items' values are many (here: continuous random data) -- and the interval is the
    (1 - level) / 2 and (1 + level) / 2 quantiles of the ``n_boot`` values."""
    arrays = [np.asarray(a, dtype=float) for a in arrays]
    rows = np.random.default_rng(seed).integers(0, len(arrays[0]), (n_boot, len(arrays[0])))
    values = [statistic(*(a[row] for a in arrays)) for row in rows]
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def test_bootstrap_ci_properties():
    rng = np.random.default_rng(2)
    n = 400
    judge = rng.random(n)
    d0, d1 = rng.random(n), rng.random(n)
    score = two_afc_score(d0, d1, judge)
    low, high = bootstrap_ci(two_afc_score, d0, d1, judge, n_boot=500, seed=3)
    assert low < score < high
    assert (low, high) == bootstrap_ci(two_afc_score, d0, d1, judge, n_boot=500, seed=3)  # deterministic
    # The vectorized statistic and the generic path (any callable) both agree with a plain loop.
    reference = _bootstrap_ci_loop(_two_afc_score_direct, (d0, d1, judge), n_boot=200, seed=3)
    generic = bootstrap_ci(lambda a, b, c: two_afc_score(a, b, c), d0, d1, judge, n_boot=200, seed=3)
    fast = bootstrap_ci(two_afc_score, d0, d1, judge, n_boot=200, seed=3)
    np.testing.assert_allclose(generic, reference)
    np.testing.assert_allclose(fast, reference)
    # More data, narrower interval (about 1/sqrt(n)).
    big = np.tile(np.stack([d0, d1, judge]), 16)
    low_b, high_b = bootstrap_ci(two_afc_score, *big, n_boot=300, seed=3)
    assert high_b - low_b < (high - low) / 2
    # JND and the human ceiling also have vectorized paths.
    same = (rng.random(n) < 0.5).astype(float)
    lo, hi = bootstrap_ci(jnd_map, d0, same, n_boot=200)
    assert lo <= jnd_map(d0, same) <= hi
    np.testing.assert_allclose((lo, hi), _bootstrap_ci_loop(_voc_ap_direct, (d0, same), n_boot=200, seed=0))
    lo, hi = bootstrap_ci(human_ceiling, judge, n_boot=200)
    assert lo <= human_ceiling(judge) <= hi
    np.testing.assert_allclose((lo, hi), _bootstrap_ci_loop(_human_ceiling_direct, (judge,), n_boot=200, seed=0))


def test_bootstrap_by_counts_matches_bootstrap_by_indices():
    # BAPPS judgments are fractions of five people: 2AFC credits take a few values, and the
    # bootstrap draws how often each value is resampled instead of 36k indices per resample.
    rng = np.random.default_rng(5)
    n = 3000
    judge = rng.integers(0, 6, n) / 5.0
    d0, d1 = rng.random(n), rng.random(n)
    by_counts = bootstrap_ci(two_afc_score, d0, d1, judge, n_boot=4000, seed=1)
    by_indices = bootstrap_ci(lambda a, b, c: two_afc_score(a, b, c), d0, d1, judge, n_boot=4000, seed=2)
    width = by_indices[1] - by_indices[0]
    assert abs(by_counts[0] - by_indices[0]) < 0.05 * width and abs(by_counts[1] - by_indices[1]) < 0.05 * width
    paired = paired_test(two_afc_score, (d0, d1, judge), (d1, d0, judge), n_boot=2000)
    assert paired.ci_low < paired.difference < paired.ci_high


def test_paired_test_detects_the_better_metric():
    rng = np.random.default_rng(4)
    n = 300
    judge = (rng.random(n) < 0.5).astype(float)
    # Metric A agrees with people 90% of the time, B is a coin toss.
    agree = rng.random(n) < 0.9
    good_d1 = np.where(agree == (judge == 1), 0.0, 1.0)
    good = (np.full(n, 0.5), good_d1, judge)
    noise = (rng.random(n), rng.random(n), judge)
    result = paired_test(two_afc_score, good, noise, n_boot=500)
    assert result.better == "a" and result.ci_low > 0 and result.p_value < 0.01
    assert result.difference == pytest.approx(result.score_a - result.score_b)
    swapped = paired_test(two_afc_score, noise, good, n_boot=500)
    assert swapped.better == "b"
    same = paired_test(two_afc_score, good, good, n_boot=200)
    assert same.better == "neither" and same.p_value == 1.0 and same.difference == 0.0
    d = rng.random(n)
    jnd = paired_test(jnd_map, (d, judge), (d * 2.0, judge), n_boot=100)  # a monotone map: identical mAP
    assert jnd.difference == 0.0 and jnd.better == "neither"


# ---------------------------------------------------------------- one statistics module for every application

def test_two_afc_credit_is_the_one_credit_for_arrays_and_tensors():
    """Training's running 2AFC score and the benchmark's use this one function (it was written
    twice: ``two_afc_credit`` in NumPy, ``two_afc_agreement`` in torch)."""
    import torch

    d0, d1 = [0.1, 0.5, 0.3, np.nan], [0.2, 0.4, 0.3, 0.1]
    judge = [0.25, 0.25, 0.9, 0.6]
    expected = [0.75, 0.25, 0.5, 0.5]  # d0 < d1: 1 - judge; d1 < d0: judge; tie or NaN: 1/2
    np.testing.assert_array_equal(two_afc_credit(d0, d1, judge), expected)
    as_tensors = [torch.tensor(a, dtype=torch.float32) for a in (d0, d1, judge)]
    credit = two_afc_credit(*as_tensors)
    assert isinstance(credit, torch.Tensor) and credit.dtype == torch.float32
    torch.testing.assert_close(credit, torch.tensor(expected))
    half = two_afc_credit(as_tensors[0].half(), as_tensors[1].half(), as_tensors[2])
    assert half.dtype == torch.float16  # the distances' dtype, as training computes them
    # Broadcasting: one judgment for every item (DeePSiM's "which reconstruction is closer").
    np.testing.assert_array_equal(two_afc_credit([1.0, 2.0, 3.0], [2.0, 2.0, 1.0], 1.0), [0.0, 0.5, 1.0])


def test_bench_exports_the_statistics_of_percepmetric_stats():
    from percepmetric import bench, stats

    for name in stats.__all__:
        assert getattr(bench, name) is getattr(stats, name), name

