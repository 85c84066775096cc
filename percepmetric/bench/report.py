"""Tables (pandas), files (CSV, JSON) and figures (matplotlib) of a benchmark result.

The summary table has the layout of the LPIPS paper's results: one row per metric plus the
human ceiling; columns for the six 2AFC validation sets (distortions: traditional, cnn;
real algorithms: superres, deblur, color, frameinterp), their means, and the two JND sets.
Scores are fractions in [0, 1]; the printed tables show them in percent, as the paper does.
A (metric, split) whose distances are not all there is shown as missing, never as a score.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.bapps import JND_SPLITS, TRAIN_SPLITS, VAL_SPLITS
from ..io import atomic_path, atomic_write_text

HUMAN = "human (ceiling)"
SYNTHETIC_NOTE = ("NOTE: this dataset is synthetic sentinels (percepmetric make-fixture), NOT human judgments: "
                  "scores check the software, not how human-like a metric is.")
#: Means the summary table adds when all their splits are present: (column, members).
MEANS = (
    ("2afc dist. mean", ("val/traditional", "val/cnn")),
    ("2afc real-alg. mean", ("val/superres", "val/deblur", "val/color", "val/frameinterp")),
    ("2afc mean", VAL_SPLITS),
    ("jnd mean", JND_SPLITS),
)


def results_frame(result) -> pd.DataFrame:
    """Long table: one row per (metric, split) with n, score, CI and status; human ceilings included."""
    rows = list(result.rows) + [{"metric": HUMAN, "spec": "", "kind": "2afc", "status": "complete", **c}
                                for c in result.ceilings]
    columns = ["metric", "split", "kind", "n", "score", "ci_low", "ci_high", "status", "spec"]
    return pd.DataFrame(rows, columns=columns)


def _column_order(splits: list[str]) -> list[str]:
    canonical = list(TRAIN_SPLITS) + list(VAL_SPLITS) + list(JND_SPLITS)
    return sorted(splits, key=lambda s: canonical.index(s) if s in canonical else len(canonical))


def summary_table(result) -> pd.DataFrame:
    """Wide table: index = metrics (then the human ceiling), columns = splits in the paper's order,
    with the means of :data:`MEANS` inserted where all their members were run. Missing = NaN."""
    splits = _column_order(list(result.splits))
    table = pd.DataFrame(index=list(result.metrics) + ([HUMAN] if result.ceilings else []),
                         columns=splits, dtype=float)
    for r in result.rows:
        if r["status"] == "complete":
            table.loc[r["metric"], r["split"]] = r["score"]
    for c in result.ceilings:
        table.loc[HUMAN, c["split"]] = c["score"]
    for column, members in MEANS:
        if all(m in splits for m in members):
            position = max(table.columns.get_loc(m) for m in members) + 1
            while position < len(table.columns) and table.columns[position] in dict(MEANS):
                position += 1  # after the means already placed there (distortions before all)
            # A mean over splits with a missing score stays missing (skipna=False).
            table.insert(position, column, table[list(members)].mean(axis=1, skipna=False))
    table.index.name = "metric"
    return table


def _pct(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def format_results(result) -> str:
    """Per (metric, split): score and its confidence interval, in percent; then paired tests."""
    w = max([len(HUMAN)] + [len(m) for m in result.metrics])
    lines = [f"{'metric':<{w}} {'split':<20} {'n':>6} {'score %':>8}  {'95% CI':<14} status"]
    order = _column_order(result.splits)
    for r in sorted(result.rows, key=lambda r: (order.index(r["split"]), result.metrics.index(r["metric"]))):
        ci = f"[{_pct(r['ci_low'])}, {_pct(r['ci_high'])}]" if r["status"] == "complete" else ""
        n = "" if r["n"] is None else str(r["n"])
        lines.append(f"{r['metric']:<{w}} {r['split']:<20} {n:>6} {_pct(r['score']):>8}  {ci:<14} {r['status']}")
    for c in result.ceilings:
        lines.append(f"{HUMAN:<{w}} {c['split']:<20} {c['n']:>6} {_pct(c['score']):>8}  "
                     f"[{_pct(c['ci_low'])}, {_pct(c['ci_high'])}]")
    if result.comparisons:
        lines.append("")
        lines.append("paired tests (best metric on each split vs each other; bootstrap over the same items):")
        for t in result.comparisons:
            verdict = {"a": f"{t['metric_a']} better", "b": f"{t['metric_b']} better",
                       "neither": "no significant difference"}[t["better"]]
            lines.append(f"  {t['split']:<20} {t['metric_a']} - {t['metric_b']}: {100 * t['difference']:+.1f} pts "
                         f"[{100 * t['ci_low']:+.1f}, {100 * t['ci_high']:+.1f}], p={t['p_value']:.3g}: {verdict}")
    return "\n".join(lines)


def format_summary(table: pd.DataFrame) -> str:
    """The summary table as text, scores in percent (one decimal), missing as '-'."""
    shown = table.map(lambda v: "-" if pd.isna(v) else f"{100 * v:.1f}")
    shown.columns = [c.replace("jnd/val/", "jnd ").replace("val/", "") for c in table.columns]
    return shown.to_string()


def format_report(result) -> str:
    """Everything printed on stdout by ``percepmetric bench``."""
    parts = []
    if result.synthetic:
        parts.append(SYNTHETIC_NOTE)
    parts.append(f"dataset: {result.root}")
    parts.append(format_results(result))
    if len(result.splits) > 1:
        parts.append("\nsummary (% agreement with people: 2AFC score, JND mAP):")
        parts.append(format_summary(summary_table(result)))
    if result.synthetic:
        parts.append(SYNTHETIC_NOTE)
    return "\n".join(parts)


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (np.floating, np.integer)):
        return _jsonable(value.item())
    return value


def write_outputs(result, out_dir: str | os.PathLike, plot: bool = False) -> list[Path]:
    """Write ``results.csv`` (long), ``summary.csv`` (wide), ``comparisons.csv``, ``results.json``
    and, with ``plot``, ``two_afc.png`` and ``jnd_pr.png`` into ``out_dir``; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    long = results_frame(result)
    atomic_write_text(out / "results.csv", long.to_csv(index=False))
    atomic_write_text(out / "summary.csv", summary_table(result).to_csv())
    comparisons = pd.DataFrame(result.comparisons, columns=["split", "metric_a", "metric_b", "score_a", "score_b",
                                                            "difference", "ci_low", "ci_high", "p_value", "better"])
    atomic_write_text(out / "comparisons.csv", comparisons.to_csv(index=False))
    payload = {
        "root": str(result.root),
        "synthetic": result.synthetic,
        "note": SYNTHETIC_NOTE if result.synthetic else "human judgments (BAPPS)",
        "splits": result.splits,
        "metrics": result.metrics,
        "complete": result.complete,
        "results": [{k: _jsonable(v) for k, v in r.items()} for r in result.rows],
        "human_ceiling": [{k: _jsonable(v) for k, v in c.items()} for c in result.ceilings],
        "comparisons": [{k: _jsonable(v) for k, v in c.items()} for c in result.comparisons],
        "distances": str(out / "distances"),
    }
    atomic_write_text(out / "results.json", json.dumps(payload, indent=2))
    written += [out / "results.csv", out / "summary.csv", out / "comparisons.csv", out / "results.json"]
    if plot:
        written += plot_results(result, out)
    return written


# ---------------------------------------------------------------- figures

def _save_figure(fig, path: Path) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
    return path


def plot_results(result, out_dir: str | os.PathLike) -> list[Path]:
    """``two_afc.png``: 2AFC score per split and metric with CI bars and the human ceiling;
    ``jnd_pr.png``: precision-recall curve per JND split and metric. Returns the files written."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    files = []
    title_note = " (synthetic sentinels, not human judgments)" if result.synthetic else ""
    two_afc = [s for s in _column_order(result.splits) if not s.startswith("jnd/")]
    if two_afc:
        fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(two_afc) * max(1, len(result.metrics)) ** 0.5 + 2), 4))
        width = 0.8 / max(1, len(result.metrics))
        x = np.arange(len(two_afc))
        for j, label in enumerate(result.metrics):
            rows = {r["split"]: r for r in result.rows if r["metric"] == label and r["status"] == "complete"}
            score = np.array([rows[s]["score"] if s in rows else np.nan for s in two_afc])
            low = np.array([rows[s]["ci_low"] if s in rows else np.nan for s in two_afc])
            high = np.array([rows[s]["ci_high"] if s in rows else np.nan for s in two_afc])
            ax.bar(x - 0.4 + width * (j + 0.5), score, width, label=label,
                   yerr=np.vstack([score - low, high - score]), capsize=3)
        ceiling = {c["split"]: c["score"] for c in result.ceilings}
        for k, s in enumerate(two_afc):
            if s in ceiling:
                ax.hlines(ceiling[s], k - 0.45, k + 0.45, colors="black", linestyles="--",
                          label=HUMAN if k == 0 else None)
        ax.set_xticks(x, [s.replace("val/", "").replace("train/", "train ") for s in two_afc])
        ax.set_ylabel("2AFC score")
        ax.set_ylim(0.4, 1.02)
        ax.axhline(0.5, color="grey", linewidth=0.5)
        ax.set_title("2AFC agreement with people, 95% CI" + title_note, fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
        files.append(_save_figure(fig, out / "two_afc.png"))
        plt.close(fig)
    jnd = [s for s in _column_order(result.splits) if s.startswith("jnd/")]
    if jnd:
        fig, axes = plt.subplots(1, len(jnd), figsize=(4.2 * len(jnd), 4), squeeze=False)
        for ax, s in zip(axes[0], jnd):
            for label in result.metrics:
                if (label, s) in result.curves:
                    precision, recall = result.curves[(label, s)]
                    score = next(r["score"] for r in result.rows if r["metric"] == label and r["split"] == s)
                    ax.plot(recall, precision, label=f"{label} (mAP {100 * score:.1f})")
            ax.set_xlabel("recall")
            ax.set_ylabel("precision")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.02)
            ax.set_title(s + title_note, fontsize=9)
            ax.legend(fontsize=7, loc="lower left")
        files.append(_save_figure(fig, out / "jnd_pr.png"))
        plt.close(fig)
    return files
