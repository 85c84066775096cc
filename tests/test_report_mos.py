"""What the MOS benchmark shows a reader: the printed table (aligned for negative values, a note
when the scores' direction looks reversed), the fitted curves of its figure (monotone, and the
very curves PLCC and RMSE are computed from) and the figure's axes (the metric's unit)."""

from __future__ import annotations

import re

import matplotlib
import numpy as np
import pytest

from percepmetric import create_metric
from percepmetric.bench import mos as mos_bench
from percepmetric.bench import report
from percepmetric.bench.runner import BenchResult
from percepmetric.correlation import plcc
from percepmetric.data.mos_fixtures import embedded_mos_dataset
from percepmetric.registry import short_labels

matplotlib.use("Agg", force=True)
import matplotlib.pyplot as plt  # noqa: E402

N_BOOT = 30


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """The built-in synthetic-mos set (96 pairs) with the values of l2, psnr and ssim on it."""
    dataset = embedded_mos_dataset(tmp_path_factory.mktemp("mos-cache"))
    metrics = [create_metric("l2"), create_metric("psnr"), create_metric("ssim")]
    values = mos_bench.mos_values(metrics, dataset, None, mos_bench.distributed.Group())
    return dataset, metrics, values


def _mos_row(metric: str, split: str, kind: str, score: float, low: float, high: float) -> dict:
    return {"metric": metric, "spec": metric, "split": split, "kind": kind, "n": 40, "score": score,
            "ci_low": low, "ci_high": high, "status": "complete"}


def _mos_result(scores: dict[str, tuple[float, float, float]]) -> BenchResult:
    """A benchmark result of one MOS dataset ``study``: per metric (srcc, krcc, plcc_fitted)."""
    rows = []
    for metric, (s, k, p) in scores.items():
        rows += [_mos_row(metric, "study", "srcc", s, s - 0.08, s + 0.09),
                 _mos_row(metric, "study", "krcc", k, k - 0.1, k + 0.1),
                 _mos_row(metric, "study", "plcc_fitted", p, p - 0.05, min(1.0, p + 0.05)),
                 _mos_row(metric, "study", "rmse_fitted", 0.6, 0.5, 0.7)]
    return BenchResult(root=None, splits=[], metrics=list(scores), synthetic=False, rows=rows,
                       datasets=[{"name": "study", "kind": "csv", "root": "/data", "description": "study: 40 pairs",
                                  "synthetic": False, "n": 40, "higher_is_better": True}])


# ---------------------------------------------------------------- the printed table

def _right_edges(line: str) -> list[int]:
    """Where each cell of a table line ends: a cell is a number or a heading, with its [interval]."""
    return [m.end() for m in re.finditer(r"[^\s\[]+(?: \[[^\]]*\])?", line)]


def test_negative_correlations_keep_the_columns_aligned():
    text = report.format_mos_results(_mos_result({"psnr": (-0.707, -0.512, 0.745), "ssim": (0.801, 0.62, 0.83)}))
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("metric"))
    table = [line for line in lines if line.startswith(("psnr ", "ssim "))]
    assert len(table) == 2
    assert len({len(line) for line in [header, *table]}) == 1, "\n".join([header, *table])
    krcc_end = header.index("KRCC") + len("KRCC")
    for line in table:
        assert krcc_end in _right_edges(line), "\n".join([header, *table])
    assert "-0.707 [-0.787, -0.617]" in text


def test_opposite_signs_of_srcc_and_plcc_say_the_direction_is_probably_reversed():
    reversed_scores = report.format_mos_results(_mos_result({"psnr": (-0.707, -0.512, 0.745),
                                                             "ssim": (-0.801, -0.62, 0.83)}))
    assert max(map(len, reversed_scores.splitlines())) <= report.LINE_WIDTH
    reversed_scores = " ".join(reversed_scores.split())  # the note's lines joined
    assert "scores is probably reversed" in reversed_scores and "check --dmos" in reversed_scores
    one_metric = report.format_mos_results(_mos_result({"psnr": (-0.707, -0.512, 0.745), "ssim": (0.8, 0.62, 0.83)}))
    assert "--dmos" in one_metric and "psnr" in one_metric.split("NOTE", 1)[1]
    agreeing = report.format_mos_results(_mos_result({"psnr": (0.707, 0.512, 0.745)}))
    assert "reversed" not in agreeing and "--dmos" not in agreeing


# ---------------------------------------------------------------- the figure's curves

def test_fitted_curves_are_monotone_over_the_values(embedded):
    dataset, metrics, values = embedded
    for metric, points in zip(metrics, mos_bench.scatter_points(metrics, values, dataset)):
        steps = np.diff(points["curve_score"])
        assert np.all(steps >= 0) or np.all(steps <= 0), (metric.name, points["form"])
        assert points["curve_value"].min() == pytest.approx(points["value"].min())
        assert points["curve_value"].max() == pytest.approx(points["value"].max())


def test_reported_plcc_and_rmse_are_those_of_the_drawn_curve(embedded):
    dataset, metrics, values = embedded
    labels = [m.name for m in metrics]
    rows, _ = mos_bench.score_dataset(labels, metrics, dataset, values, n_boot=N_BOOT)
    reported = {(r["metric"], r["kind"]): r["score"] for r in rows if r["split"] == dataset.name}
    for label, points in zip(labels, mos_bench.scatter_points(metrics, values, dataset)):
        # the curve drawn, evaluated at each pair's value: the drawn line passes through these points
        drawn = np.interp(points["value"], *_increasing(points["curve_value"], points["curve_score"]))
        on_curve = points["score_sign"] * points["fit"](points["quality"])
        np.testing.assert_allclose(drawn, on_curve, atol=0.02 * np.ptp(points["score"]))
        assert plcc(on_curve, points["score"]) == pytest.approx(reported[(label, "plcc_fitted")], abs=1e-9)
        rmse = np.sqrt(np.mean((on_curve - points["score"]) ** 2))
        assert rmse == pytest.approx(reported[(label, "rmse_fitted")], abs=1e-9)


def _increasing(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(x)
    return x[order], y[order]


# ---------------------------------------------------------------- the figure's axes

def test_mos_figure_axes_carry_the_metric_unit(embedded):
    dataset, metrics, values = embedded
    labels = [m.name for m in metrics]
    result = BenchResult(root=None, splits=[], metrics=labels, synthetic=False,
                         datasets=[{"name": dataset.name, "kind": "csv", "root": str(dataset.root),
                                    "description": dataset.describe(), "synthetic": True, "n": len(dataset),
                                    "higher_is_better": True}])
    for label, points in zip(labels, mos_bench.scatter_points(metrics, values, dataset)):
        result.scatter[(label, dataset.name)] = points
    fig = report._plot_mos(plt, result, result.datasets[0], short_labels(labels))
    try:
        xlabels = {ax.get_title().split(":")[0]: ax.get_xlabel() for ax in fig.axes if ax.get_visible()}
    finally:
        plt.close(fig)
    assert "dB" in xlabels["psnr"], xlabels
    assert "dB" not in xlabels["l2"] and "dB" not in xlabels["ssim"], xlabels


def test_mos_figure_says_when_the_scores_look_reversed():
    result = _mos_result({"psnr": (-0.707, -0.512, 0.745), "ssim": (-0.801, -0.62, 0.83)})
    rng = np.random.default_rng(0)
    for label, unit in (("psnr", "dB"), ("ssim", "")):
        value = rng.uniform(20, 40, 40)
        result.scatter[(label, "study")] = {
            "value": value, "score": -value + rng.normal(size=40), "curve_value": np.linspace(20, 40, 200),
            "curve_score": -np.linspace(20, 40, 200), "form": "logistic5", "converged": True,
            "monotone_fallback": False, "unit": unit, "lower_is_better": False}
    fig = report._plot_mos(plt, result, result.datasets[0], short_labels(result.metrics))
    try:
        title = fig._suptitle.get_text()
    finally:
        plt.close(fig)
    assert "probably reversed" in title and "--dmos" in title, title
