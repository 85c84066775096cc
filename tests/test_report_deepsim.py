"""``deepsim_bench.png`` (``bench --model deepsim:... --plot``): a title saying what is shown and
a legend naming the models and the marks, read from the matplotlib figure it saves."""

from __future__ import annotations

import math

import matplotlib
import pandas as pd
import pytest

from percepmetric.deepsim import evaluate

matplotlib.use("Agg", force=True)
from matplotlib.figure import Figure  # noqa: E402


def _table(models: list[str], closer: bool) -> pd.DataFrame:
    rows = []
    for metric, label, base in (("l2", "l2", 0.01), ("psnr", "psnr as mse", 0.01), ("lpips", "lpips", 0.4)):
        for k, model in enumerate(models):
            rows.append({"model": model, "checkpoint": f"{model}/final.pt", "task": "autoencoder", "loss": "image",
                         "metric": metric, "metric_name": metric, "distance": label, "n_images": 16, "note": "",
                         "mean_distance": base * (1 + k), "ci_low": base * (0.9 + k), "ci_high": base * (1.1 + k)})
    table = pd.DataFrame(rows)
    if closer:
        table["closer_fraction"] = [0.75, 0.25] * 3
        table["closer_ci_low"] = [0.6, 0.1] * 3
        table["closer_ci_high"] = [0.9, 0.4] * 3
    return table


@pytest.fixture
def saved(monkeypatch):
    """The figures ``savefig`` writes, kept for inspection."""
    figures: list[Figure] = []
    real = Figure.savefig

    def keep(self, *args, **kwargs):
        figures.append(self)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return figures


@pytest.mark.parametrize("models, closer", [(["image_loss", "deepsim"], True), (["deepsim"], False)])
def test_deepsim_bench_figure_has_a_title_and_a_legend(saved, tmp_path, models, closer):
    evaluate.plot_bench(_table(models, closer), tmp_path / "deepsim_bench.png")
    assert (tmp_path / "deepsim_bench.png").read_bytes()[:4] == b"\x89PNG"
    (fig,) = saved
    title = fig._suptitle.get_text() if fig._suptitle is not None else ""
    assert "reconstruction" in title.lower() and "16 images" in title, title
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert legends, "no legend"
    entries = [t.get_text() for legend in legends for t in legend.get_texts()]
    for model in models:
        assert model in entries, entries
    assert any("95%" in e for e in entries), entries
    assert any("0.5" in e for e in entries) == closer, entries
    # the panels keep their titles: what each metric's numbers are
    assert {"l2", "psnr as mse", "lpips"} <= {ax.get_title() for ax in fig.axes}
    assert not math.isnan(fig.get_figwidth())
