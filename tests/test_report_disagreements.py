"""``disagreements.png``: the 2AFC triplets where a metric's choice goes against most people, the
most disputed first, with its values labelled as what they are (``psnr as mse``), and a line
saying so when a metric never goes against them."""

from __future__ import annotations

import re

import matplotlib
import numpy as np
import pytest

from percepmetric.bench import report
from percepmetric.bench.runner import BenchResult
from percepmetric.data.bapps import TwoAFCSplit
from percepmetric.registry import short_distance_labels, short_labels

matplotlib.use("Agg", force=True)
import matplotlib.pyplot as plt  # noqa: E402


def test_only_triplets_against_the_majority_are_chosen_most_disputed_first():
    judge = np.array([0.9, 0.1, 0.5, 0.7, 0.0, 0.6, 1.0, 0.8])  # the share of people who chose p1
    d0 = np.array([1.0, 1.0, 1.0, 2.0, 1.0, 3.0, 1.0, 5.0])
    d1 = np.array([2.0, 2.0, 2.0, 1.0, 1.0, 4.0, 9.0, 5.0])
    # metric picks (the smaller distance): p0, p0, p0, p1, tie, p0, p0, tie
    # against the majority: #0 (90% p1), #5 (60% p1), #6 (100% p1); #2 is a draw among people,
    # #4 and #7 are ties of the metric: no choice to go against anyone
    chosen = report.disagreement_triplets(d0, d1, judge, 10)
    assert list(chosen) == [6, 0, 5]
    assert list(report.disagreement_triplets(d0, d1, judge, 2)) == [6, 0]
    assert len(report.disagreement_triplets(np.array([1.0, 2.0]), np.array([2.0, 1.0]), np.array([0.2, 0.9]),
                                            4)) == 0


def test_equally_disputed_triplets_show_the_most_confident_wrong_choice_first():
    judge = np.array([1.0, 1.0, 1.0])
    d0 = np.array([1.0, 1.0, 1.0])
    d1 = np.array([1.1, 5.0, 2.0])  # all pick p0; people all chose p1
    assert list(report.disagreement_triplets(d0, d1, judge, 3)) == [1, 2, 0]


def _result() -> BenchResult:
    """One 2AFC split of 6 triplets: l2 agrees with people everywhere; psnr (as MSE) goes against
    them on #1 (70% chose p1) and #4 (all chose p0)."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=(6, 8, 8, 3), dtype=np.uint8) for _ in range(3)]
    judge = np.array([0.2, 0.7, 0.9, 0.1, 0.0, 0.6], dtype=np.float32)
    split = TwoAFCSplit("val/cnn", *images, judge, [f"{i:06d}" for i in range(6)])
    l2 = (np.array([0.01, 0.03, 0.05, 0.02, 0.01, 0.04]), np.array([0.02, 0.01, 0.01, 0.05, 0.03, 0.02]))
    psnr = (np.array([0.01, 0.01, 0.05, 0.02, 0.04, 0.04]), np.array([0.02, 0.03, 0.01, 0.05, 0.03, 0.02]))
    result = BenchResult(root=None, splits=["val/cnn"], metrics=["l2", "psnr"], synthetic=False)
    result.triplets["val/cnn"] = (split, {"l2": l2, "psnr": psnr})
    return result


def test_disagreement_figure_shows_disagreements_labelled_as_distances():
    result = _result()
    fig = report._plot_disagreements(plt, result, short_labels(result.metrics))
    try:
        title = fig._suptitle.get_text() if fig._suptitle else ""
        panels = [ax for ax in fig.axes if ax.images]
        notes = [t.get_text() for ax in fig.axes for t in ax.texts]
        titles = [ax.get_title() for ax in panels]
    finally:
        plt.close(fig)
    assert "against" in title, title
    # psnr's two disagreements, most disputed first (#4: 100% chose p0; #1: 70% chose p1); nothing of l2's
    assert [int(re.search(r"#(\d+)", t).group(1)) for t in titles] == [4, 1], titles
    assert all(t.startswith("psnr as mse:") for t in titles), titles
    assert "psnr:" not in " ".join(titles)
    assert re.search(r"100% p0", titles[0]) and re.search(r"70% p1", titles[1]), titles
    # l2 never goes against most people: a line says so, and no image panel is drawn for it
    assert any(re.search(r"\bl2\b.*\bno\b.*against", n) for n in notes), notes


def test_no_disagreement_at_all_is_said_not_drawn():
    result = _result()
    split, distances = result.triplets["val/cnn"]
    result.triplets["val/cnn"] = (split, {"l2": distances["l2"]})
    result.metrics = ["l2"]
    fig = report._plot_disagreements(plt, result, short_labels(result.metrics))
    assert fig is not None
    try:
        assert not any(ax.images for ax in fig.axes)
        text = " ".join(t.get_text() for ax in fig.axes for t in ax.texts)
    finally:
        plt.close(fig)
    assert "l2" in text and "against" in text


@pytest.mark.parametrize("label, expected", [("psnr", "psnr as mse"), ("l2", "l2"), ("ssim", "ssim as dssim"),
                                             ("lpips(net=alex,variant=lin,weights=v0.1)", "lpips-alex")])
def test_distance_labels_of_the_short_names(label, expected):
    assert short_distance_labels([label])[label] == expected
