"""Issue 20: MOS numbers that do not lie.

* Item 2: every interval holds its estimate or is reported as not available with the reason
  (too few references to resample, a logistic fit that did not converge on the resamples);
  correlations stay in [-1, 1]; resample fits that fail are counted, never silently replaced
  by a straight line.
* Item 3: a dataset on which nothing can be correlated (all scores equal, 1 or 2 pairs) gets its
  rows with ``n/a`` and the reason, not a traceback.
* Item 1 (MOS part): cached values are keyed on the images' content, not on size and mtime.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from percepmetric import correlation, create_metric
from percepmetric.bench import mos as mos_bench
from percepmetric.bench import report, run_benchmark
from percepmetric.bench.runner import BenchResult
from percepmetric.correlation import (
    KINDS,
    bootstrap_by_group,
    correlation_table,
    correlations,
    fit_logistic,
    paired_correlation_test,
    plcc,
    plcc_fitted,
)
from percepmetric.data.mos import load_mos_dataset
from percepmetric.data.mos_fixtures import make_mos_fixture

from helpers import run_cli

#: The fewest groups (references) an interval is given for (docs/mos.md, "Intervals").
MIN_GROUPS = 5


def _saturating(seed: int, n_groups: int = 6, per_group: int = 5, noise: float = 0.3):
    """A small TID-like set (rounded to 4 decimals, as a score file would hold it): quality with a
    saturating relation to MOS and a shared effect per reference."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_groups), per_group)
    effect = rng.normal(size=n_groups)[groups]
    quality = effect + rng.normal(size=len(groups))
    mos = 5 + 2 * np.tanh(quality) + noise * rng.normal(size=len(groups)) + 0.3 * effect
    return np.round(quality, 4), np.round(mos, 4), groups


def _rows(*args, **kwargs) -> dict[str, dict]:
    return {r["kind"]: r for r in correlation_table(*args, **kwargs)}


def _holds_or_says_why(row: dict) -> bool:
    if np.isnan(row["ci_low"]) or np.isnan(row["ci_high"]):
        return np.isnan(row["ci_low"]) and np.isnan(row["ci_high"]) and bool(row["note"])
    return row["ci_low"] <= row["score"] <= row["ci_high"]


# ---------------------------------------------------------------- item 2: intervals

# 5 pairs of one reference: the 5-parameter logistic interpolates them (PLCC 1.0000000000000002
# before the fix), its resamples could only be fitted by a line (0.976 on every one).
FIVE_QUALITY = [20.57378016743889, 22.571404055383994, 22.95852169154912, 29.9855572488023, 32.02996715246715]
FIVE_MOS = [1.2816823046167873, 1.519095797597192, 3.4875343711855313, 4.712844091841478, 4.7933138131671]


def test_one_reference_gives_no_interval_and_says_why():
    assert getattr(correlation, "MIN_GROUPS", None) == MIN_GROUPS
    rows = _rows(FIVE_QUALITY, FIVE_MOS, np.zeros(5), n_boot=200)
    assert list(rows) == list(KINDS)
    for kind, row in rows.items():
        assert np.isnan(row["ci_low"]) and np.isnan(row["ci_high"]), (kind, row)
        assert "1 group" in row["note"] and f"at least {MIN_GROUPS}" in row["note"], row
    # no interpolating 5-parameter curve through 5 points: no PLCC of 1.0000000000000002, no RMSE of 0
    assert rows["plcc_fitted"]["score"] <= 1.0
    assert "linear" in rows["plcc_fitted"]["note"]
    assert bootstrap_by_group(plcc, FIVE_QUALITY, FIVE_MOS, np.zeros(5)) == pytest.approx((np.nan, np.nan),
                                                                                          nan_ok=True)


def test_correlations_stay_within_minus_one_and_one():
    q = np.random.default_rng(2).uniform(20, 40, 5)
    exact = 0.1 * q + 1  # an exact line: Pearson's rounding gave 1.0000000000000002
    assert plcc(q, exact) == 1.0 and plcc(q, -exact) == -1.0
    values = correlations(q, exact)
    assert all(-1.0 <= values[k] <= 1.0 for k in ("srcc", "krcc", "plcc", "plcc_fitted"))
    assert plcc_fitted(FIVE_QUALITY, FIVE_MOS) <= 1.0


def test_one_group_of_thirty_pairs_gives_no_interval():
    quality, mos, _ = _saturating(3)
    rows = _rows(quality, mos, np.full(30, "scene"), n_boot=200)
    assert 0.5 < rows["srcc"]["score"] < 1  # the estimate is there ...
    assert np.isnan(rows["srcc"]["ci_low"]) and np.isnan(rows["srcc"]["ci_high"])  # ... its interval is not
    assert "1 group" in rows["srcc"]["note"]


def test_resample_fits_that_do_not_converge_are_counted_not_replaced_by_a_line():
    # 6 references x 5 distortions. Seed 22: 77 of 1000 resample fits hit the old 200-evaluation cap
    # and became straight lines (interval [0.775, 0.988]); with the whole fit's cap, 1 does not converge.
    quality, mos, groups = _saturating(22)
    assert fit_logistic(quality, mos).converged
    rows = _rows(quality, mos, groups, n_boot=1000)
    fitted, raw = rows["plcc_fitted"], rows["plcc"]
    assert fitted["fit_failures"] == 1 and "1 of 1000 resamples" in fitted["note"], fitted
    assert fitted["ci_low"] <= fitted["score"] <= fitted["ci_high"]
    assert fitted["ci_low"] > 0.9 and abs(fitted["ci_low"] - raw["ci_low"]) > 0.05
    assert rows["rmse_fitted"]["fit_failures"] == 1
    assert rows["srcc"]["fit_failures"] is None  # no fit in a rank correlation
    # Seed 25: the 5-parameter fit creeps on hundreds of resamples whatever the cap: no interval, and why.
    quality, mos, groups = _saturating(25)
    rows = _rows(quality, mos, groups, n_boot=1000)
    for kind in ("plcc_fitted", "rmse_fitted"):
        row = rows[kind]
        assert np.isnan(row["ci_low"]) and np.isnan(row["ci_high"]), row
        assert row["fit_failures"] > 24 and "did not converge" in row["note"], row
        assert np.isfinite(row["score"])
    assert np.isfinite(rows["srcc"]["ci_low"]) and rows["srcc"]["note"] == ""


def _noisy_small(seed: int):
    rng = np.random.default_rng(seed)
    n_groups, per = int(rng.integers(5, 9)), int(rng.integers(2, 6))
    groups = np.repeat(np.arange(n_groups), per)
    q = np.round(rng.normal(size=n_groups * per), 2)
    m = np.round(np.tanh(q) + rng.normal(scale=rng.uniform(0.01, 0.5), size=n_groups * per)
                 + rng.normal(size=n_groups)[groups] * rng.uniform(0, 0.5), 2)
    return q, m, groups


@pytest.mark.parametrize("data", [_noisy_small(166), _saturating(12), _saturating(38), _saturating(7, 8, 4)],
                         ids=["small-166", "6x5-12", "6x5-38", "8x4-7"])
def test_every_interval_holds_its_estimate_or_says_why(data):
    # small-166: PLCC after the fit 0.926 printed with [0.774, 0.924] before the fix
    for row in correlation_table(*data, n_boot=200):
        assert _holds_or_says_why(row), row


def test_an_interval_that_excludes_its_estimate_is_extended_to_it():
    """A statistic whose resamples are biased (distinct quality values: a resample repeats some
    references and misses others, so it has fewer) has a percentile interval below the estimate."""
    quality, mos, groups = _saturating(4, n_groups=8, per_group=4)

    def distinct(q, m):
        return float(len(np.unique(q)))

    low, high = bootstrap_by_group(distinct, quality, mos, groups, n_boot=200)
    assert low <= 32.0 == high


def test_paired_test_needs_enough_references_too():
    quality, mos, _ = _saturating(5)
    test = paired_correlation_test("srcc", quality, quality + 0.5 * np.sin(7 * quality), mos, np.zeros(30),
                                   n_boot=100)
    assert np.isnan(test["ci_low"]) and np.isnan(test["p_value"]) and "1 group" in test["note"]


def test_bench_prints_na_and_the_reason_for_one_reference(tmp_path, capsys, cache):
    csv = make_mos_fixture("csv", tmp_path / "one", references=1, distortions=5)
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, "bench", "--dataset", f"csv:{csv}", "-m", "psnr", "-m", "ssim",
                                "--bootstrap", 100, "--no-progress", "--out", out)
    assert code == 0, err
    table = [line for line in stdout.splitlines() if line.startswith(("psnr ", "ssim "))]
    assert len(table) == 2 and all(line.count("n/a") == 2 for line in table), stdout
    text = " ".join(stdout.split())
    assert "1 reference image" in text and f"at least {MIN_GROUPS}" in text, stdout
    assert max(map(len, stdout.splitlines())) <= report.LINE_WIDTH
    rows = pd.read_csv(out / "results.csv")
    whole = rows[rows["split"] == "scores"]
    assert whole["ci_low"].isna().all() and whole["ci_high"].isna().all()
    assert whole["note"].str.contains("1 reference image").all()
    payload = json.loads((out / "results.json").read_text())
    assert all(r["ci_low"] is None and r["note"] for r in payload["results"] if r["split"] == "scores")


def test_bench_gives_no_interval_for_thirty_pairs_of_one_group(tmp_path, capsys, cache):
    csv = make_mos_fixture("csv", tmp_path / "grouped", references=6, distortions=5)
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join([lines[0] + ",group"] + [line + ",scene" for line in lines[1:]]) + "\n")
    code, stdout, err = run_cli(capsys, "bench", "--dataset", f"csv:{csv}", "-m", "psnr", "--bootstrap", 100,
                                "--no-progress")
    assert code == 0, err
    row = next(line for line in stdout.splitlines() if line.startswith("psnr "))
    assert row.count("n/a") == 2 and "1 group" in " ".join(stdout.split()), stdout


def _result_with(rows: list[dict]) -> BenchResult:
    return BenchResult(root=None, splits=[], metrics=["psnr"], synthetic=False, rows=rows,
                       datasets=[{"name": "study", "kind": "csv", "root": "/data", "description": "study: 40 pairs",
                                  "synthetic": False, "n": 40, "higher_is_better": True}])


def test_printed_table_marks_intervals_with_a_note():
    def row(kind, score, low, high, note="", failures=None):
        return {"metric": "psnr", "spec": "psnr", "split": "study", "kind": kind, "n": 40, "score": score,
                "ci_low": low, "ci_high": high, "status": "complete", "note": note, "fit_failures": failures}

    rows = [row("srcc", 0.8, 0.7, 0.9), row("krcc", 0.6, 0.5, 0.7),
            row("plcc_fitted", 0.85, float("nan"), float("nan"),
                "no interval: the logistic fit did not converge on 25 of the first 61 resamples", 25),
            row("rmse_fitted", 0.5, 0.4, 0.6, "the resamples' 95% range [0.52, 0.6] excluded the estimate")]
    text = report.format_mos_results(_result_with(rows))
    line = next(t for t in text.splitlines() if t.startswith("psnr "))
    assert "0.850 n/a" in line and "0.500*" in line.replace(" [0.400, 0.600]", ""), text
    joined = " ".join(text.split())
    assert "did not converge on 25 of the first 61 resamples" in joined and "excluded the estimate" in joined


# ---------------------------------------------------------------- item 3: degenerate datasets


@pytest.mark.parametrize(("case", "reason"), [
    ("equal", "all scores are equal"),
    ("one", "1 pair"),
    ("two", "2 pairs"),
])
def test_degenerate_datasets_give_rows_with_reasons_not_tracebacks(tmp_path, capsys, cache, case, reason):
    csv = make_mos_fixture("csv", tmp_path / "set", references=2, distortions=4)
    header, *lines = csv.read_text().splitlines()
    if case == "equal":
        lines = [",".join(f.split(",")[:2] + ["3.0"] + f.split(",")[3:]) for f in lines]
    else:
        lines = lines[:{"one": 1, "two": 2}[case]]
    csv.write_text("\n".join([header, *lines]) + "\n")
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, "bench", "--dataset", f"csv:{csv}", "-m", "psnr", "-m", "ssim",
                                "--bootstrap", 50, "--no-progress", "--out", out)
    assert code == 0 and "Traceback" not in err, err
    table = [line for line in stdout.splitlines() if line.startswith(("psnr ", "ssim "))]
    assert len(table) == 2 and all(line.count("n/a") >= 3 for line in table), stdout
    text = " ".join(stdout.split())
    assert reason in text and ("3 pairs" in text or case == "equal"), stdout
    rows = pd.read_csv(out / "results.csv")
    srcc = rows[(rows["split"] == "scores") & (rows["kind"] == "srcc")]
    assert len(srcc) == 2 and srcc["score"].isna().all() and srcc["note"].str.contains(reason).all()


# ---------------------------------------------------------------- item 1: cached values follow the content


def _rewrite_same_size(path: Path, pixels: np.ndarray) -> None:
    """Overwrite ``path`` with ``pixels`` as an uncompressed PNG (its size depends only on the
    image's size), then give it back its modification time."""
    from PIL import Image

    st = path.stat()
    before = st.st_size
    Image.fromarray(pixels).save(path, compress_level=0)
    assert path.stat().st_size == before
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_same_size_same_mtime_rewrite_is_not_served_from_the_cache(tmp_path):
    """A rerun with the same --out after one distorted image got other pixels of the same byte
    size and its old modification time computes that image's values again."""
    from PIL import Image

    csv = make_mos_fixture("csv", tmp_path / "set", references=2, distortions=4)
    target = csv.parent / "distorted" / "r01_noise_1.png"
    pixels = np.asarray(Image.open(target).convert("RGB"))
    Image.fromarray(pixels).save(target, compress_level=0)  # uncompressed from the start
    out = tmp_path / "out"

    def psnr_values(dataset) -> np.ndarray:
        result = run_benchmark([create_metric("psnr")], [], out_dir=out, datasets=[dataset], n_boot=20)
        return result.scatter[("psnr", dataset.name)]["value"]

    first = load_mos_dataset("csv", csv)
    before = psnr_values(first)
    _rewrite_same_size(target, 255 - pixels)
    second = load_mos_dataset("csv", csv)
    assert second.fingerprint != first.fingerprint
    after = psnr_values(second)
    (fresh,) = mos_bench.mos_values([create_metric("psnr")], second, None, mos_bench.distributed.Group())
    np.testing.assert_array_equal(after, fresh)
    changed = [i for i, p in enumerate(second.distorted) if p.name == target.name]
    assert after[changed[0]] != before[changed[0]]
    unchanged = [i for i in range(len(second)) if i not in changed]
    np.testing.assert_array_equal(after[unchanged], before[unchanged])


def test_fingerprint_is_of_the_content_not_the_timestamp(tmp_path):
    csv = make_mos_fixture("csv", tmp_path / "set", references=2, distortions=4)
    first = load_mos_dataset("csv", csv).fingerprint
    image = csv.parent / "distorted" / "r02_blur_1.png"
    st = image.stat()
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10**9))  # touched, same bytes
    assert load_mos_dataset("csv", csv).fingerprint == first
