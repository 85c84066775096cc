"""The MOS benchmark: per-pair values (each image decoded once, cached, resumed), correlations,
reports and the ``bench --dataset`` command, on fixtures in the official layouts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from percepmetric import create_metric
from percepmetric.bench import DistanceStore, run_benchmark
from percepmetric.bench import mos as mos_bench
from percepmetric.correlation import KINDS
from percepmetric.data.mos import load_mos_dataset
from percepmetric.data.mos_fixtures import make_mos_fixture
from percepmetric.io import load_image

from helpers import metric_params, requires_weights, run_cli, run_cli_subprocess

N_BOOT = 40


@pytest.fixture(scope="module")
def kadid(tmp_path_factory) -> Path:
    """3 references x 8 distortions, 48x40, in KADID-10k's layout."""
    return make_mos_fixture("kadid10k", tmp_path_factory.mktemp("kadid"), references=3, distortions=8)


@pytest.fixture(scope="module")
def dataset(kadid):
    return load_mos_dataset("kadid10k", kadid)


def _per_pair(metric, dataset) -> np.ndarray:
    """The loop a user writes: load both images, the metric per pair."""
    return np.array([float(metric(load_image(dataset.reference_paths[i]), load_image(dataset.distorted[i]))[0])
                     for i in range(len(dataset))])


@pytest.mark.parametrize("name", metric_params(["psnr", "ssim", "lpips"]))
def test_values_equal_the_per_pair_loop(dataset, name):
    metric = create_metric(name)
    (values,) = mos_bench.mos_values([metric], dataset, None, mos_bench.distributed.Group(), batch_size=3)
    np.testing.assert_allclose(values, _per_pair(metric, dataset), rtol=1e-6, atol=1e-7)


@requires_weights("alex", "vgg")
def test_values_to_reference_reuses_the_reference_and_equals_pairs():
    torch.manual_seed(0)
    ref, others = torch.rand(1, 3, 40, 48), torch.rand(4, 3, 40, 48)
    others[1] = ref[0]
    for name in ("lpips", "ssim", "l2", "dists", "stlpips"):
        metric = create_metric(name)
        expected = torch.cat([metric(ref, others[i:i + 1]) for i in range(4)])
        torch.testing.assert_close(metric.values_to_reference(ref, others), expected, rtol=1e-6, atol=1e-7)
    lpips = create_metric("lpips")
    calls, taps = [], lpips.trunk.taps
    lpips.trunk.taps = lambda z: calls.append(z.shape[0]) or taps(z)  # each trunk pass and its batch size
    lpips.values_to_reference(ref, others)
    assert sorted(calls) == [1, 4]  # the reference once, the four others once; not 4 + 4
    dists, images = create_metric("dists"), []
    dists.stages[0].register_forward_pre_hook(lambda module, args: images.append(args[0].shape[0]))
    dists.values_to_reference(ref, others)
    assert images == [5]  # one trunk pass of the reference and its four distortions, not 4 + 4


@requires_weights("alex")
def test_each_image_is_decoded_once_per_run(dataset, monkeypatch, tmp_path):
    decoded = []
    real = mos_bench.read_image_array
    monkeypatch.setattr(mos_bench, "read_image_array", lambda path: decoded.append(Path(path)) or real(path))
    metrics = [create_metric("psnr"), create_metric("ssim"), create_metric("lpips")]
    mos_bench.compute_mos_values(metrics, dataset, DistanceStore(tmp_path), batch_size=5)
    assert len(decoded) == len(set(decoded)) == len(dataset) + len(dataset.references)
    decoded.clear()
    mos_bench.compute_mos_values(metrics, dataset, DistanceStore(tmp_path), batch_size=5)
    assert decoded == []  # all three read back from the store


def test_an_interrupted_run_resumes_with_what_is_missing(dataset, monkeypatch, tmp_path):
    store = DistanceStore(tmp_path)
    expected = mos_bench.compute_mos_values([create_metric("psnr")], dataset, None)[0]
    real, calls = mos_bench._compute_group, []

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C during the second reference
        real(*args)

    monkeypatch.setattr(mos_bench, "_compute_group", interrupted)
    with pytest.raises(KeyboardInterrupt):
        mos_bench.compute_mos_values([create_metric("psnr")], dataset, store)
    entry = store.entry(create_metric("psnr"), dataset)
    assert entry.finished() is None and len(entry.partial()["value"]) == 8  # the first reference's 8 pairs
    decoded = []
    monkeypatch.setattr(mos_bench, "_compute_group", real)
    real_read = mos_bench.read_image_array
    monkeypatch.setattr(mos_bench, "read_image_array", lambda path: decoded.append(path) or real_read(path))
    resumed = mos_bench.compute_mos_values([create_metric("psnr")], dataset, store)[0]
    np.testing.assert_array_equal(resumed, expected)
    assert len(decoded) == 2 * (1 + 8)  # the two remaining references and their distortions


def test_a_changed_score_file_is_not_served_from_the_cache(kadid, tmp_path):
    import shutil

    copy = tmp_path / "kadid"
    shutil.copytree(kadid, copy)
    store = DistanceStore(tmp_path / "store")
    first = load_mos_dataset("kadid10k", copy)
    mos_bench.compute_mos_values([create_metric("psnr")], first, store)
    assert store.entry(create_metric("psnr"), first).finished() is not None
    scores = copy / "dmos.csv"
    scores.write_text(scores.read_text() + "\n")  # the same pairs, other bytes
    second = load_mos_dataset("kadid10k", copy)
    assert second.fingerprint != first.fingerprint
    assert store.entry(create_metric("psnr"), second).finished() is None


@requires_weights("alex")
def test_scores_orient_every_metric_so_that_good_is_positive(dataset):
    metrics = [create_metric("psnr"), create_metric("lpips")]
    values = mos_bench.mos_values(metrics, dataset, None, mos_bench.distributed.Group())
    rows, comparisons = mos_bench.score_dataset(["psnr", "lpips"], metrics, dataset, values, n_boot=N_BOOT)
    whole = {(r["metric"], r["kind"]): r for r in rows if r["split"] == "kadid10k"}
    assert set(k for _, k in whole) == set(KINDS)
    for label in ("psnr", "lpips"):  # the fixture's scores fall with distortion strength: both metrics follow
        assert whole[(label, "srcc")]["score"] > 0.5
        # 3 references are too few to resample: no interval, and the row says why
        assert np.isnan(whole[(label, "srcc")]["ci_low"]) and np.isnan(whole[(label, "srcc")]["ci_high"])
        assert "only 3 reference images to resample" in whole[(label, "srcc")]["note"]
    per_type = [r for r in rows if r["split"].startswith("kadid10k/")]
    assert len(per_type) == 2 * len(set(dataset.distortion)) and all(r["kind"] == "srcc" for r in per_type)
    assert comparisons == []  # no paired test without an interval of the difference


@requires_weights("alex")
def test_scores_compare_metrics_on_enough_references(tmp_path):
    five = load_mos_dataset("kadid10k", make_mos_fixture("kadid10k", tmp_path / "k", references=5, distortions=8))
    metrics = [create_metric("psnr"), create_metric("lpips")]
    values = mos_bench.mos_values(metrics, five, None, mos_bench.distributed.Group())
    rows, comparisons = mos_bench.score_dataset(["psnr", "lpips"], metrics, five, values, n_boot=N_BOOT)
    for r in rows:
        assert (r["ci_low"] <= r["score"] <= r["ci_high"]) or (np.isnan(r["ci_low"]) and r["note"]), r
    assert len(comparisons) == 1 and comparisons[0]["split"] == "kadid10k"


def test_dmos_datasets_are_oriented_too(tmp_path):
    live = load_mos_dataset("live", make_mos_fixture("live", tmp_path / "live", references=2, distortions=20))
    assert not live.higher_is_better
    metric = create_metric("psnr")
    values = mos_bench.mos_values([metric], live, None, mos_bench.distributed.Group())
    rows, _ = mos_bench.score_dataset(["psnr"], [metric], live, values, n_boot=N_BOOT)
    srcc = next(r["score"] for r in rows if r["kind"] == "srcc" and r["split"] == "live")
    assert srcc > 0.5


def test_run_benchmark_writes_one_long_table_and_the_summary(fixture_root, cache, dataset, tmp_path):
    out = tmp_path / "out"
    result = run_benchmark([create_metric("psnr"), create_metric("ssim")], ["val/cnn", "jnd/val/cnn"], fixture_root,
                           out, datasets=[dataset], n_boot=N_BOOT, plot=True)
    assert result.complete
    table = pd.read_csv(out / "results.csv")
    assert set(table["kind"]) == {"2afc", "jnd_map", *KINDS}
    assert set(table[table["kind"] == "plcc_fitted"]["split"]) == {"kadid10k"}
    assert any(s.startswith("kadid10k/") for s in table["split"])
    summary = pd.read_csv(out / "summary.csv", index_col=0)
    assert {"val/cnn", "jnd/val/cnn", "kadid10k srcc", "kadid10k plcc_fitted"} <= set(summary.columns)
    payload = json.loads((out / "results.json").read_text())
    assert payload["datasets"][0]["name"] == "kadid10k" and payload["datasets"][0]["synthetic"] is True
    assert {p.name for p in result.files} >= {"mos_kadid10k.png", "disagreements.png", "two_afc.png"}
    stored = list((out / "distances" / "kadid10k").glob("*.npz"))
    assert len(stored) == 2  # one file of values per metric


@requires_weights("alex")
def test_report_shows_mos_within_the_line_width(fixture_root, cache, dataset):
    from percepmetric.bench.report import LINE_WIDTH, format_report

    metrics = [create_metric("psnr"), create_metric("ssim"), create_metric("lpips")]
    result = run_benchmark(metrics, [], datasets=[dataset], n_boot=N_BOOT)
    text = format_report(result, verbose=True)
    assert "MOS correlation" in text and "SRCC per distortion type" in text and "synthetic MOS set" in text
    assert max(map(len, text.splitlines())) <= LINE_WIDTH
    assert "2AFC" not in text  # no BAPPS split was asked for


def test_bench_dataset_command(kadid, cache, tmp_path):
    out = tmp_path / "out"
    done = run_cli_subprocess("bench", "--dataset", f"kadid10k={kadid}", "-m", "psnr", "-m", "ssim", "--out", out,
                              "--bootstrap", N_BOOT, "--no-progress", "--plot")
    assert done.returncode == 0, done.stderr
    assert "MOS correlation" in done.stdout and "2AFC score" not in done.stdout
    assert (out / "mos_kadid10k.png").read_bytes()[:4] == b"\x89PNG"
    rows = pd.read_csv(out / "results.csv")
    assert set(rows["split"]) >= {"kadid10k"} and set(rows["kind"]) == set(KINDS)


@pytest.mark.parametrize(("args", "message"), [
    (["--dataset", "foo=x"], "--dataset foo=x: unknown dataset 'foo'"),
    (["--dataset", "tid2013=/nonexistent/tid"], "tid2013 /nonexistent/tid: folder does not exist"),
    (["--dataset", "kadid10k=KADID", "--dmos"], "--dmos is for csv: datasets"),
    (["--dataset", "kadid10k=KADID", "--model", "deepsim:x.pt", "--data", "."], "does not combine with"),
])
def test_bad_dataset_options_are_one_line(args, message, kadid, capsys):
    args = [a.replace("KADID", str(kadid)) for a in args]
    code, _, err = run_cli(capsys, "bench", *args, "-m", "psnr")
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_csv_dataset_with_dmos_flag(tmp_path, capsys, cache):
    csv = make_mos_fixture("csv", tmp_path / "csv", references=2, distortions=20)
    code, out, err = run_cli(capsys, "bench", "--dataset", f"csv:{csv}", "--dmos", "-m", "psnr", "--bootstrap",
                             N_BOOT, "--json", "--no-progress")
    assert code == 0, err
    payload = json.loads(out)
    srcc = next(r["score"] for r in payload["results"] if r["kind"] == "srcc" and "/" not in r["split"])
    assert srcc < 0  # the fixture's scores are MOS: read as DMOS, a good metric correlates negatively


def test_default_bench_runs_the_embedded_mos_set_too(cache, tmp_path, capsys):
    code, out, err = run_cli(capsys, "bench", "-m", "psnr", "--split", "val/cnn", "--bootstrap", N_BOOT,
                             "--no-progress")
    assert code == 0, err
    assert "MOS correlation" not in out  # a split named: BAPPS only
    code, out, err = run_cli(capsys, "bench", "-m", "psnr", "--bootstrap", N_BOOT, "--no-progress")
    assert code == 0, err
    assert re.search(r"psnr\s+synthetic-mos\s+96", out) and "synthetic MOS set" in out


def test_interrupted_mos_run_marks_what_is_missing(dataset, cache, monkeypatch, tmp_path):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(mos_bench, "_compute_group", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_benchmark([create_metric("psnr")], [], datasets=[dataset], out_dir=tmp_path / "out", n_boot=N_BOOT)
    table = pd.read_csv(tmp_path / "out" / "results.csv")
    assert set(table["status"]) == {"not computed"} and set(table["kind"]) == set(KINDS)
    assert json.loads((tmp_path / "out" / "results.json").read_text())["complete"] is False
