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
import re
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.bapps import JND_SPLITS, TRAIN_SPLITS, VAL_SPLITS
from ..io import atomic_path, atomic_write_text
from ..registry import short_distance_labels, short_labels

HUMAN = "human (ceiling)"
#: Kinds of the BAPPS rows (the others are MOS correlations, percepmetric.correlation.KINDS).
BAPPS_KINDS = ("2afc", "jnd_map")
#: The MOS statistics the summary table shows, one column each per dataset.
MOS_SUMMARY_KINDS = ("srcc", "plcc_fitted")
#: Fields of the MOS rows beyond the BAPPS ones (percepmetric.correlation.correlation_table):
#: resample fits that did not converge, and why a score or interval is NaN or special.
MOS_ROW_EXTRAS = ("fit_failures", "note")
#: How the printed MOS table names them.
MOS_HEADINGS = {"srcc": "SRCC", "krcc": "KRCC", "plcc": "PLCC raw", "rmse": "RMSE raw", "plcc_fitted": "PLCC",
                "rmse_fitted": "RMSE"}
SYNTHETIC_MOS_NOTE = ("NOTE: {name} is a synthetic MOS set (scores made from distortion strength), NOT human "
                      "opinions: its correlations check the software only.")
#: What the MOS numbers mean, under every report that has them.
MOS_GUIDE = (
    "SRCC / KRCC: rank correlation of the metric with the opinion scores (1 = same order; no fit)",
    "PLCC / RMSE: linear correlation and error after the VQEG logistic fit of metric to scores",
    "MOS intervals resample reference images (their distortions are not independent)",
)
SYNTHETIC_NOTE = ("NOTE: this dataset is synthetic sentinels (percepmetric make-fixture), NOT human judgments: "
                  "scores check the software, not how human-like a metric is.")
#: What the numbers mean, for a reader who has not read the LPIPS paper: one line each,
#: under every text report and in ``bench --help``.
READING_GUIDE = (
    "2AFC: share of people's votes the metric agrees with on which patch is closer (50% = chance)",
    "JND mAP: how well small distances find the pairs people saw as the same (average precision)",
    "human ceiling: how often one person agrees with another (mean of p^2 + (1-p)^2 per triplet)",
)
#: Why metrics score above the "human ceiling" on the built-in sentinels.
SYNTHETIC_GUIDE = (
    "Metrics above the ceiling on the sentinels: their votes are synthetic, always for the weaker",
    "distortion (80 or 100% of votes), so a metric that always picks it beats their 'ceiling'.",
)
#: Every line of the text report stays under this many columns (terminals, logs, e-mails).
LINE_WIDTH = 99
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
    columns += [c for c in MOS_ROW_EXTRAS if any(c in r for r in rows)]  # MOS rows: why a number is NaN
    return pd.DataFrame(rows, columns=columns).astype({"n": "Int64", **{c: "Int64" for c in columns
                                                                      if c == "fit_failures"}})


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
        if r["status"] == "complete" and r["kind"] in BAPPS_KINDS:
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
    for dataset in result.datasets:
        for kind in MOS_SUMMARY_KINDS:
            column = f"{dataset['name']} {kind}"
            table[column] = np.nan
            for r in result.rows:
                if r["status"] == "complete" and r["split"] == dataset["name"] and r["kind"] == kind:
                    table.loc[r["metric"], column] = r["score"]
    table.index.name = "metric"
    return table


def _pct(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def _wrap(text: str, indent: str = "") -> list[str]:
    return textwrap.wrap(text, width=LINE_WIDTH, initial_indent=indent, subsequent_indent=indent + "    ")


def _says_nothing(test: dict) -> bool:
    """A paired test of two metrics that gave the same answer on every item: +0.0 [+0.0, +0.0]."""
    return test["difference"] == 0 and test["ci_low"] == 0 and test["ci_high"] == 0


def format_results(result, verbose: bool = False) -> str:
    """Per (metric, split): score and its confidence interval, in percent; then paired tests
    (those of metrics that agree on every item only with ``verbose``)."""
    short = short_labels(result.metrics)
    w = max([len(HUMAN)] + list(map(len, short.values())))
    lines = [f"{'metric':<{w}} {'split':<20} {'n':>6} {'score %':>8}  {'95% CI':<14} status"]
    order = _column_order(result.splits)
    bapps_rows = [r for r in result.rows if r["kind"] in BAPPS_KINDS]
    for r in sorted(bapps_rows, key=lambda r: (order.index(r["split"]), result.metrics.index(r["metric"]))):
        ci = f"[{_pct(r['ci_low'])}, {_pct(r['ci_high'])}]" if r["status"] == "complete" else ""
        n = "" if r["n"] is None else str(int(r["n"]))
        lines.append(f"{short[r['metric']]:<{w}} {r['split']:<20} {n:>6} {_pct(r['score']):>8}  {ci:<14} "
                     f"{r['status']}")
    for c in result.ceilings:
        lines.append(f"{HUMAN:<{w}} {c['split']:<20} {int(c['n']):>6} {_pct(c['score']):>8}  "
                     f"[{_pct(c['ci_low'])}, {_pct(c['ci_high'])}]")
    comparisons = [t for t in result.comparisons if t["split"] in result.splits]
    shown = [t for t in comparisons if verbose or not _says_nothing(t)]
    hidden = len(comparisons) - len(shown)
    if comparisons:
        lines += ["", "paired tests: best metric on each split minus each other, in points (bootstrap, same items):"]
    if shown:
        lines += _paired_lines(shown, short, "split", 20, scale=100, decimals=1, ci_width=15)
    if hidden:
        lines.append(f"  ({hidden} more with +0.0 [+0.0, +0.0]: the same answer on every item; "
                     "--verbose lists them)")
    return "\n".join(lines)


def _number(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def format_mos_results(result, verbose: bool = False) -> str:
    """Per (metric, MOS dataset): SRCC, KRCC, PLCC and RMSE after the logistic fit, each with its
    95% interval (by resampling references); with ``verbose`` also the SRCC per distortion type.
    Then the paired tests (SRCC of the best metric minus each other one)."""
    if not result.datasets:
        return ""
    short = short_labels(result.metrics)
    w = max(len("metric"), *map(len, short.values()))
    names = [d["name"] for d in result.datasets]
    v = max(len("dataset"), *map(len, names))
    lines = ["MOS correlation (95% intervals resample reference images; PLCC, RMSE after the logistic fit):"]
    by_key = {(r["metric"], r["split"], r["kind"]): r for r in result.rows}
    types: dict[str, list[str]] = {name: [] for name in names}
    for r in result.rows:
        base, _, kind = r["split"].partition("/")
        if kind and base in types and kind not in types[base]:
            types[base].append(kind)
    kinds = MOS_TABLE_KINDS
    sizes = {name: next((r["n"] for r in result.rows if r["split"] == name), "") for name in names}
    head, *table = _mos_table_lines([[short[label], name, str(sizes[name]), *(by_key.get((label, name, kind))
                                                                                for kind in kinds)]
                                     for name in names for label in result.metrics], w, v)
    lines.append(head)
    for k, name in enumerate(names):
        lines += table[k * len(result.metrics):(k + 1) * len(result.metrics)]
        lines += _mos_notes([by_key.get((label, name, kind)) for label in result.metrics for kind in kinds], short)
        lines += _reversed_note(result, name, short)
        if verbose and types[name]:
            lines.append(f"  {name}: SRCC per distortion type")
            t = max(map(len, types[name]))
            lines.append(f"    {'type':<{t}}  " + "  ".join(f"{short[label]:>{max(6, len(short[label]))}}"
                                                          for label in result.metrics))
            for kind in sorted(types[name]):
                per_type = [by_key.get((label, f"{name}/{kind}", "srcc")) for label in result.metrics]
                lines.append(f"    {kind:<{t}}  " + "  ".join(
                    f"{_per_type_cell(r):>{max(6, len(short[label]))}}"
                    for r, label in zip(per_type, result.metrics)))
    tests = [t for t in result.comparisons if t["split"] in names]
    if tests:
        lines += ["", "paired tests: SRCC of the best metric on each dataset minus each other (same resamples):"]
        lines += _paired_lines(tests, short, "dataset", v, scale=1, decimals=3, ci_width=17)
    if not verbose and any(types.values()):
        lines.append("(SRCC per distortion type: in results.csv, or printed with --verbose)")
    return "\n".join(lines)


#: The statistics of the printed MOS table, in its order.
MOS_TABLE_KINDS = ("srcc", "krcc", "plcc_fitted", "rmse_fitted")
#: Marks a cell of the MOS table that a note under the dataset's rows explains.
NOTE_MARK = "*"


def _complete(r: dict | None) -> bool:
    return r is not None and r["status"] == "complete"


def _per_type_cell(r: dict | None) -> str:
    """The SRCC of one distortion type: the number, ``n/a`` when it is not defined (its note
    in results.csv says why), blank when it was not computed."""
    if not _complete(r):
        return ""
    return _number(r["score"]) if _finite(r["score"]) else "n/a"  # type: ignore[index]


def _noted(r: dict | None) -> bool:
    return r is not None and _complete(r) and isinstance(r.get("note"), str) and bool(r["note"])


def _finite(value) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


def _mos_notes(rows: list[dict | None], short: dict[str, str]) -> list[str]:
    """The notes of one dataset's rows in the table (:data:`MOS_TABLE_KINDS`), each once: the
    metrics and statistics it concerns (the statistics only when not all of them), then what
    it says, marked by :data:`NOTE_MARK` as their cells are."""
    said: dict[str, dict[str, list[str]]] = {}  # note -> metric -> headings
    for r in rows:
        if r is not None and _noted(r):
            for note in r["note"].split("; "):
                said.setdefault(note, {}).setdefault(short.get(r["metric"], r["metric"]), []).append(
                    MOS_HEADINGS[r["kind"]])
    lines = []
    for note, who in said.items():
        names = ", ".join(who)
        headings = {tuple(h) for h in who.values()}
        if len(headings) == 1 and len(next(iter(headings))) < len(MOS_TABLE_KINDS):
            names += " " + ", ".join(next(iter(headings)))
        elif len(headings) > 1:
            names = "; ".join(f"{m} {', '.join(h)}" for m, h in who.items())
        lines += textwrap.wrap(f"{NOTE_MARK} {names}: {note}", width=LINE_WIDTH, initial_indent="  ",
                               subsequent_indent="      ")
    return lines


def _mos_table_lines(rows: list[list], w: int, v: int) -> list[str]:
    """The header and one line per ``[metric, dataset, n, srcc, krcc, plcc_fitted, rmse_fitted]``
    (the last four: result rows, or None). Each column is as wide as its widest cell: a negative
    correlation and its interval ("-0.707 [-0.787, -0.617]") move no column. Numbers are right
    aligned, each under the right end of its heading (intervals: the number, then its interval)."""
    def score(r: dict | None) -> str:
        if r is None or not _complete(r):
            return "-"
        return _number(r["score"]) if _finite(r["score"]) else "n/a"

    def interval(r: dict | None) -> str:
        if r is None or not _complete(r) or not _finite(r["score"]):
            return ""  # no score: nothing to give an interval of
        if not (_finite(r["ci_low"]) and _finite(r["ci_high"])):
            return "n/a"
        return f"[{_number(r['ci_low'])}, {_number(r['ci_high'])}]"

    with_ci = [3, 5]
    number_width = {c: max([6] + [len(score(row[c])) for row in rows]) for c in with_ci}
    ci_width = {c: max([0] + [len(interval(row[c])) for row in rows]) for c in with_ci}
    marked = {c: any(_noted(row[c]) for row in rows) for c in range(3, 7)}  # columns with a note mark

    def mark(r: dict | None, c: int) -> str:
        return (NOTE_MARK if _noted(r) else " ") if marked[c] else ""

    def with_interval(r: dict | None, c: int) -> str:
        if r is not None and r["status"] != "complete":
            return "not computed"
        return f"{score(r):>{number_width[c]}} {interval(r):<{ci_width[c]}}".rstrip() + mark(r, c)

    def alone(r: dict | None, c: int) -> str:
        return score(r) + mark(r, c)

    cells = [[row[0], row[1], row[2], with_interval(row[3], 3), alone(row[4], 4), with_interval(row[5], 5),
              alone(row[6], 6)] for row in rows]
    head = ["metric", "dataset", "n", "SRCC [95% CI]", "KRCC", "PLCC [95% CI]", "RMSE"]
    head = [h + (" " if i in (4, 6) and marked[i] else "") for i, h in enumerate(head)]  # numbers under its end
    widths = [max(len(head[i]), *(len(c[i]) for c in cells)) for i in range(len(head))]
    widths[0], widths[1], widths[2] = max(widths[0], w), max(widths[1], v), max(widths[2], 6)
    left = (0, 1, 3, 5)

    def line(parts: list[str]) -> str:
        return "  ".join(p.ljust(width) if i in left else p.rjust(width)
                        for i, (p, width) in enumerate(zip(parts, widths))).rstrip()

    table = [line(head)] + [line(c) for c in cells]
    width = max(map(len, table))
    return [t.ljust(width) for t in table]


def _opposite_signs(result, name: str) -> tuple[list[str], int]:
    """The metrics whose SRCC and PLCC (after the fit) on dataset ``name`` have opposite signs,
    and how many metrics have both."""
    scores = {(r["metric"], r["kind"]): r["score"] for r in result.rows
              if r["split"] == name and r["status"] == "complete" and r["kind"] in ("srcc", "plcc_fitted")}
    pairs: dict[str, tuple[float, float]] = {}
    for label in result.metrics:
        srcc, plcc = scores.get((label, "srcc")), scores.get((label, "plcc_fitted"))
        if srcc is not None and plcc is not None and math.isfinite(srcc) and math.isfinite(plcc):
            pairs[label] = (srcc, plcc)
    return [label for label, (srcc, plcc) in pairs.items() if srcc * plcc < 0], len(pairs)


def _reversed_note(result, name: str, short: dict[str, str]) -> list[str]:
    """A NOTE when SRCC and PLCC (after the fit) of some metric have opposite signs on dataset
    ``name``: the fitted logistic follows the data in either direction, so PLCC after it is
    never negative, and a negative SRCC beside it means that the metric ranks the pairs in
    reverse of the scores: for every metric at once, most likely because the scores are read
    the wrong way round (a DMOS taken for a MOS, or the opposite)."""
    opposite, scored = _opposite_signs(result, name)
    if not opposite:
        return []
    kind = next((d.get("kind") for d in result.datasets if d["name"] == name), "")
    check = ("check --dmos (given for MOS scores, or missing for DMOS ones) or the CSV's dmos column"
             if kind == "csv" else f"check how the {kind or name} scores are read (docs/mos.md)")
    why = "(PLCC after the logistic fit is never negative: the fit follows either direction)"
    if len(opposite) == scored:
        text = (f"NOTE: {name}: SRCC is negative but PLCC positive for every metric {why}: the direction of the "
                f"scores is probably reversed (higher = worse read as higher = better, or the opposite); {check}.")
    else:
        text = (f"NOTE: {name}: SRCC is negative but PLCC positive for {', '.join(short[m] for m in opposite)} {why}: "
                f"{'it ranks' if len(opposite) == 1 else 'they rank'} the pairs in reverse of the scores. If "
                f"{'it' if len(opposite) == 1 else 'they'} should not, the direction of the scores is probably "
                f"reversed; {check}.")
    return _wrap(text)


def _paired_lines(tests: list[dict], short: dict[str, str], place: str, width: int, *, scale: float, decimals: int,
                  ci_width: int) -> list[str]:
    """The table of paired tests: a header, then per test where (the ``place`` column, ``width``
    wide), best - other, the difference and its interval (times ``scale``, ``decimals``
    places), p, and whether the interval excludes 0."""
    v = max(len(short[t[k]]) for t in tests for k in ("metric_a", "metric_b"))
    lines = [f"  {place:<{width}} {'best':<{v}}   {'other':<{v}} {'diff':>6}  {'95% CI':<{ci_width}} {'p':<7} "
             "significant"]
    for t in tests:
        ci = f"[{scale * t['ci_low']:+.{decimals}f}, {scale * t['ci_high']:+.{decimals}f}]"
        lines.append(f"  {t['split']:<{width}} {short[t['metric_a']]:<{v}} - {short[t['metric_b']]:<{v}} "
                     f"{scale * t['difference']:>+6.{decimals}f}  {ci:<{ci_width}} {t['p_value']:<7.2g} "
                     f"{'no' if t['better'] == 'neither' else 'yes'}")
    return lines


#: Column names of the printed summary: split names without their group, short means; and
#: what each mean's short name stands for.
_MEAN_MEMBERS = {"dist.": "trad, cnn", "real-alg.": "superres .. frameint", "all": "the six"}
_SHORT_COLUMNS = {
    "val/traditional": "trad", "val/cnn": "cnn", "2afc dist. mean": "dist.",
    "val/frameinterp": "frameint", "2afc real-alg. mean": "real-alg.", "2afc mean": "all",
    "jnd/val/traditional": "trad", "jnd/val/cnn": "cnn", "jnd mean": "all",
}


def _short_column(column: str) -> str:
    return _SHORT_COLUMNS.get(column) or column.replace("train/", "train ").replace("val/", "")


def format_summary(table: pd.DataFrame, names: dict[str, str] | None = None,
                   intervals: dict[tuple[str, str], tuple[float, float]] | None = None,
                   noted: set[tuple[str, str]] | None = None) -> str:
    """The summary table as text, scores in percent (one decimal), missing as '-': a 2AFC
    block and a JND block, each under :data:`LINE_WIDTH` columns, then a MOS block (SRCC and
    PLCC, three decimals, each with its 95% interval from ``intervals``: (label, column) ->
    (low, high); ``n/a`` for a score or interval that is not defined, and :data:`NOTE_MARK`
    after those in ``noted``, which a note under the MOS table explains). ``names``: label ->
    short name of the rows (see :func:`~percepmetric.registry.short_labels`)."""
    mos_columns = [c for c in table.columns if c.endswith(tuple(f" {k}" for k in MOS_SUMMARY_KINDS))]
    shown = table.map(lambda v: "-" if pd.isna(v) else f"{100 * v:.1f}")
    for column in mos_columns:
        for label in table.index:
            value = table.loc[label, column]
            scored = (label, column) in (intervals or {})  # scored: a NaN there is "not defined", not missing
            low, high = (intervals or {}).get((label, column), (None, None))
            if pd.isna(value):
                shown.loc[label, column] = "n/a" if scored else "-"
            else:
                given = low is not None and high is not None and _finite(low) and _finite(high)
                shown.loc[label, column] = f"{value:.3f}" + (f" [{low:.2f}, {high:.2f}]" if given else
                                                             " n/a" if scored else "")
            if (label, column) in (noted or set()):
                shown.loc[label, column] += NOTE_MARK
    jnd_rows = [label for label in table.index if label != HUMAN]  # the ceiling is a 2AFC notion
    if names:
        shown.index = [names.get(label, label) for label in shown.index]
        jnd_rows = [names.get(label, label) for label in jnd_rows]
    shown.index.name = None
    blocks = []
    two_afc = [c for c in table.columns if not c.startswith("jnd") and c not in mos_columns]
    jnd = [c for c in table.columns if c.startswith("jnd") and c not in mos_columns]
    means = [_short_column(c) for c in two_afc if c in dict(MEANS)]
    if two_afc:
        title = "2AFC score %"
        if means:
            title += " (means: " + "; ".join(f"{m} = {_MEAN_MEMBERS[m]}" for m in means) + ")"
        blocks.append((title, list(shown.index), two_afc))
    if jnd:
        blocks.append(("JND mAP %" + (" (all = mean of both)" if "jnd mean" in jnd else ""), jnd_rows, jnd))
    if mos_columns:
        blocks.append(("MOS: SRCC and PLCC (after the logistic fit), with 95% intervals"
                       + (f" ({NOTE_MARK}: see the MOS notes)" if noted else ""), jnd_rows,
                       mos_columns))
    lines: list[str] = []
    for title, rows, columns in blocks:
        block = shown.loc[rows, columns]
        block.columns = [_short_column(c).replace(" plcc_fitted", " plcc") for c in columns]
        lines += ([""] if lines else []) + [title, block.to_string(line_width=LINE_WIDTH)]
    return "\n".join(lines)


def format_report(result, verbose: bool = False) -> str:
    """Everything printed on stdout by ``percepmetric bench``: what the data is, the metrics'
    full names, the scores with their intervals, the summary table and how to read it."""
    lines = _wrap(SYNTHETIC_NOTE) if result.synthetic else []
    for dataset in result.datasets:
        if dataset["synthetic"]:
            lines += _wrap(SYNTHETIC_MOS_NOTE.format(name=dataset["name"]))
    if result.root is not None:
        lines.append(f"dataset: {result.root}")
    for dataset in result.datasets:
        lines += _wrap(f"dataset: {dataset['description']}")
        lines += _wrap(f"  in {dataset['root']}")
    short = short_labels(result.metrics)
    if any(name != label for label, name in short.items()):
        lines.append("metrics:")
        for label, name in short.items():
            lines += _wrap(f"{name:<{max(map(len, short.values()))}}  {label.replace(',', ', ')}", indent="  ")
    if result.splits:
        lines += ["", format_results(result, verbose=verbose)]
    if result.datasets:
        lines += ["", format_mos_results(result, verbose=verbose)]
    if len(result.splits) + len(result.datasets) > 1:
        title = "summary (% agreement with people; MOS: correlations):" if result.datasets and result.splits else (
            "summary (correlation with people's scores):" if result.datasets else "summary (% agreement with people):")
        intervals = {(r["metric"], f"{r['split']} {r['kind']}"): (r["ci_low"], r["ci_high"]) for r in result.rows
                     if r["status"] == "complete" and r["kind"] in MOS_SUMMARY_KINDS}
        noted = {(r["metric"], f"{r['split']} {r['kind']}") for r in result.rows
                 if r["kind"] in MOS_SUMMARY_KINDS and _noted(r)}
        lines += ["", title, format_summary(summary_table(result), short, intervals, noted)]
    lines += ["", "How to read:"]
    if result.splits:
        lines += [f"  {line}" for line in READING_GUIDE]
    if result.datasets:
        lines += [f"  {line}" for line in MOS_GUIDE]
    if result.synthetic:
        lines += [f"  {line}" for line in SYNTHETIC_GUIDE]
    return "\n".join(lines)


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (np.floating, np.integer)):
        return _jsonable(value.item())
    return value


def write_outputs(result, out_dir: str | os.PathLike, plot: bool = False) -> list[Path]:
    """Write ``results.csv`` (long), ``summary.csv`` (wide), ``comparisons.csv``, ``results.json``
    and, with ``plot``, the figures of :func:`plot_results` into ``out_dir``; return the paths."""
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
        "root": None if result.root is None else str(result.root),
        "synthetic": result.synthetic,
        "note": SYNTHETIC_NOTE if result.synthetic else "human judgments (BAPPS)",
        "splits": result.splits,
        "datasets": result.datasets,
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


#: Per metric, a look that tells it apart without colour (print, colour blindness) and when
#: its curve lies exactly on another's: line style, marker, bar hatch; lines drawn later are thinner.
_LINE_STYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D", "v", "P")
_HATCHES = ("", "//", "..", "xx", "\\\\", "++")


def _style(j: int, n: int) -> dict:
    return {"linestyle": _LINE_STYLES[j % len(_LINE_STYLES)], "marker": _MARKERS[j % len(_MARKERS)],
            "linewidth": 1.2 + 1.6 * (n - 1 - j) / max(1, n - 1), "markersize": 5 + 2 * (n - 1 - j) / max(1, n - 1),
            "markerfacecolor": "none"}


def _plot_two_afc(plt, result, splits: list[str], short: dict[str, str], note: str):
    n = max(1, len(result.metrics))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.3 * len(splits) * (n + 1) + 2.5), 4.2), layout="constrained")
    width = 0.8 / n
    x = np.arange(len(splits))
    lowest = 0.5
    for j, label in enumerate(result.metrics):
        rows = {r["split"]: r for r in result.rows if r["metric"] == label and r["status"] == "complete"}
        score, low, high = (np.array([rows[s][key] if s in rows else np.nan for s in splits], dtype=float)
                            for key in ("score", "ci_low", "ci_high"))
        ax.bar(x - 0.4 + width * (j + 0.5), score, width, label=short[label], hatch=_HATCHES[j % len(_HATCHES)],
               edgecolor="white", linewidth=0, yerr=np.vstack([score - low, high - score]), capsize=3)
        lowest = min([lowest] + [v for v in low if np.isfinite(v)])
    ceiling = {c["split"]: c["score"] for c in result.ceilings}
    for k, s in enumerate(splits):
        if s in ceiling:
            ax.hlines(ceiling[s], k - 0.45, k + 0.45, colors="black", linestyles="--", linewidth=1.5,
                      label="human ceiling" if k == 0 else None)
    ax.set_xticks(x, [s.replace("val/", "").replace("train/", "train ") for s in splits])
    ax.set_ylabel("2AFC score (share of votes agreed with)")
    ax.set_ylim(max(0.0, np.floor(10 * lowest - 0.5) / 10), 1.0)
    ax.axhline(0.5, color="grey", linewidth=0.8)
    ax.set_title("2AFC score per set, with 95% intervals" + note, fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=min(n + 1, 8), fontsize=8, frameon=False)
    return fig


def _plot_jnd(plt, result, splits: list[str], short: dict[str, str], note: str):
    fig, axes = plt.subplots(1, len(splits), figsize=(4.0 * len(splits), 4.6), squeeze=False, layout="constrained")
    n = len(result.metrics)
    for ax, s in zip(axes[0], splits):
        for j, label in enumerate(result.metrics):
            if (label, s) in result.curves:
                precision, recall = result.curves[(label, s)]
                score = next(r["score"] for r in result.rows if r["metric"] == label and r["split"] == s)
                ax.plot(recall, precision, label=f"{short[label]}: mAP {100 * score:.1f}",
                        markevery=(j / (2 * n), 0.15), **_style(j, n))  # markers shifted per metric
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.05)
        ax.grid(alpha=0.3)
        ax.set_title(s.replace("jnd/val/", "JND "), fontsize=10)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=8, frameon=False)
    fig.suptitle("JND: precision and recall of finding the pairs people saw as the same" + note, fontsize=10)
    return fig


def value_axis_label(name: str, unit: str = "", lower_is_better: bool | None = None) -> str:
    """The label of an axis of a metric's own values: its name, its unit (``psnr, dB``) and,
    when known, which way is better."""
    label = f"{name}, {unit}" if unit else name
    if lower_is_better is None:
        return label
    return f"{label} ({'lower' if lower_is_better else 'higher'} = more alike)"


def _curve_legend(points: dict) -> str:
    """What the drawn curve is: the logistic form, and why it is not the one asked for."""
    if not points["converged"]:
        return "linear fallback (the logistic fit failed)"
    if points.get("monotone_fallback"):
        return f"{points['form']} fit (logistic5 was not monotone)"
    return f"{points['form']} fit"


def _plot_mos(plt, result, dataset: dict, short: dict[str, str]):
    """One panel per metric: the metric's value against the people's score on each pair, the
    fitted logistic curve, and SRCC / PLCC in the panel's title."""
    labels = [label for label in result.metrics if (label, dataset["name"]) in result.scatter]
    columns = min(4, len(labels))
    rows = -(-len(labels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.3 * rows + 0.6), squeeze=False,
                             layout="constrained")
    scores = {(r["metric"], r["kind"]): r["score"] for r in result.rows if r["split"] == dataset["name"]}
    score_name = "DMOS (higher = worse)" if dataset.get("higher_is_better") is False else "score (higher = better)"
    for ax, label in zip(axes.flat, labels):
        points = result.scatter[(label, dataset["name"])]
        ax.scatter(points["value"], points["score"], s=6, alpha=0.5, linewidths=0)
        ax.plot(points["curve_value"], points["curve_score"], color="black", linewidth=1.5,
                label=_curve_legend(points))
        srcc, plcc = (scores.get((label, kind), float("nan")) for kind in ("srcc", "plcc_fitted"))
        ax.set_title(f"{short[label]}: SRCC {_number(srcc) if _finite(srcc) else 'n/a'}, "
                     f"PLCC {_number(plcc) if _finite(plcc) else 'n/a'}", fontsize=9)
        ax.set_xlabel(value_axis_label(short[label], points.get("unit", ""), points.get("lower_is_better")),
                      fontsize=8)
        ax.set_ylabel(score_name, fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best", frameon=False)
    for ax in list(axes.flat)[len(labels):]:
        ax.set_visible(False)
    note = "\n(synthetic scores, not human opinions)" if dataset["synthetic"] else ""
    opposite, scored = _opposite_signs(result, dataset["name"])
    if opposite and len(opposite) == scored:
        note += ("\nSRCC < 0 for every metric: the direction of the scores is probably reversed ("
                 + ("check --dmos)" if dataset.get("kind") == "csv" else "check how they are read)"))
    fig.suptitle(f"{dataset['name']}: metric against people's scores, {dataset['n']} pairs{note}", fontsize=10)
    return fig


#: Triplets per metric on the contact sheet of disagreements.
DISAGREEMENTS_SHOWN = 4


def disagreement_triplets(d0: np.ndarray, d1: np.ndarray, judge: np.ndarray, k: int) -> np.ndarray:
    """Indices of at most ``k`` triplets where the metric's choice goes against most people,
    the most disputed first.

    The metric chooses the patch at the smaller distance (``p0`` if ``d0 < d1``); people, the
    patch more than half of them chose (``judge`` is the share who chose ``p1``). A tie of the
    metric (or a NaN distance: no choice) and an even split of people (no majority) are no
    disagreement: exactly the triplets whose 2AFC credit is below 1/2. Ranked by the share of
    people who chose the other patch (``1 - credit``: 100% first), then by how clearly the
    metric chose (the relative gap ``|d0 - d1| / (|d0| + |d1|)``, largest first), then by index.
    """
    from ..stats import two_afc_credit

    d0, d1, judge = (np.asarray(a, dtype=np.float64).reshape(-1) for a in (d0, d1, judge))
    credit = two_afc_credit(d0, d1, judge)
    against = np.flatnonzero(credit < 0.5)
    total = np.abs(d0[against]) + np.abs(d1[against])
    gap = np.divide(np.abs(d0[against] - d1[against]), total, out=np.zeros(len(against)), where=total > 0)
    return against[np.lexsort((against, -gap, credit[against]))][:k]


def _plot_disagreements(plt, result, short: dict[str, str]):
    """One row per metric: the 2AFC triplets (reference | p0 | p1) where its choice goes
    against most people, the most disputed first (:func:`disagreement_triplets`, over all its
    2AFC splits), each with both distances (labelled by what they are:
    :func:`~percepmetric.registry.short_distance_labels`), the metric's choice and the people's
    votes; a metric that never goes against most people gets one line saying so instead of
    images."""
    named = short_distance_labels(result.metrics)
    rows = []  # (label, [(split name, index)], triplets, how many against)
    for label in result.metrics:
        splits = [(name, split, ds[label]) for name, (split, ds) in result.triplets.items() if label in ds]
        if not splits:
            continue
        where = [(name, i) for name, split, _ in splits for i in range(len(split))]
        d0, d1, judge = (np.concatenate(parts) for parts in zip(*[(d[0], d[1], split.judge)
                                                                   for _, split, d in splits]))
        against = disagreement_triplets(d0, d1, judge, len(where))
        rows.append((label, [where[w] for w in against[:DISAGREEMENTS_SHOWN]], len(where), len(against)))
    if not rows:
        return None
    image_rows = sum(1 for row in rows if row[1])
    size = (3.2 * DISAGREEMENTS_SHOWN, 1.9 * image_rows + 0.4 * (len(rows) - image_rows) + 0.6)
    fig = plt.figure(figsize=size, layout="constrained")
    parts = fig.subfigures(len(rows), 1, squeeze=False, height_ratios=[1.9 if row[1] else 0.4 for row in rows])
    for part, (label, shown, n, n_against) in zip(parts[:, 0], rows):
        if not shown:
            ax = part.subplots()
            ax.set_axis_off()
            ax.text(0.0, 0.5, f"{short[label]}: no triplet where its choice goes against most people (on each of "
                    f"the {n}, it picks the majority's patch, its two distances are equal, or people split evenly)",
                    transform=ax.transAxes, ha="left", va="center", fontsize=9)
            continue
        part.suptitle(f"{short[label]}: against most people on {n_against} of {n} triplets"
                      + (f"; the {len(shown)} most disputed:" if n_against > len(shown) else ":"),
                      fontsize=9, x=0.0, ha="left")
        axes = part.subplots(1, DISAGREEMENTS_SHOWN, squeeze=False)[0]
        for ax in axes:
            ax.set_axis_off()
        for ax, (name, i) in zip(axes, shown):
            split, ds = result.triplets[name]
            gap = np.full((split.ref.shape[1], 3, 3), 255, dtype=np.uint8)
            ax.imshow(np.concatenate([split.ref[i], gap, split.p0[i], gap, split.p1[i]], axis=1))
            to_p0, to_p1 = float(ds[label][0][i]), float(ds[label][1][i])
            vote = float(split.judge[i])
            ax.set_title(f"{named[label]}: p0 {to_p0:.3g}, p1 {to_p1:.3g}: picks {'p0' if to_p0 < to_p1 else 'p1'}\n"
                         f"people: {100 * (1 - vote):.0f}% p0, {100 * vote:.0f}% p1 ({name.replace('val/', '')} #{i})",
                         fontsize=7)
    note = " (synthetic sentinels, not human judgments)" if result.synthetic else ""
    fig.suptitle("2AFC triplets where a metric's choice goes against most people, most disputed first: "
                 "reference | p0 | p1" + note, fontsize=10)
    return fig


def plot_results(result, out_dir: str | os.PathLike) -> list[Path]:
    """``two_afc.png``: 2AFC score per split and metric with CI bars and the human ceiling;
    ``jnd_pr.png``: precision-recall curve per JND split and metric; ``disagreements.png``: the
    2AFC triplets where each metric goes against most people; ``mos_<dataset>.png``: each
    metric's values against a MOS dataset's scores, with the fitted curve. Returns the files written.
    Metrics appear under their short names (:func:`~percepmetric.registry.short_labels`); the
    report lists the full ones."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    files = []
    note = "\n(synthetic sentinels, not human judgments)" if result.synthetic else ""
    short = short_labels(result.metrics)
    order = _column_order(result.splits)
    two_afc = [s for s in order if not s.startswith("jnd/")]
    jnd = [s for s in order if s.startswith("jnd/")]
    for name, splits, draw in (("two_afc.png", two_afc, _plot_two_afc), ("jnd_pr.png", jnd, _plot_jnd)):
        if splits:
            fig = draw(plt, result, splits, short, note)
            files.append(_save_figure(fig, out / name))
            plt.close(fig)
    figures = [(DISAGREEMENTS_FIGURE, _plot_disagreements(plt, result, short) if result.triplets else None)]
    figures += [(mos_figure_name(d["name"]), _plot_mos(plt, result, d, short)) for d in result.datasets]
    for name, fig in figures:
        if fig is not None:
            files.append(_save_figure(fig, out / name))
            plt.close(fig)
    return files


DISAGREEMENTS_FIGURE = "disagreements.png"


def mos_figure_name(dataset: str) -> str:
    """``mos_<dataset>.png``: the scatter plots of one MOS dataset."""
    return "mos_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset) + ".png"
