"""The benchmark runner (distances, cache, resume), the report, and the `bench` CLI."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from percepmetric.bench import DistanceStore, compute_distances, run_benchmark
from percepmetric.bench.report import HUMAN, summary_table
from percepmetric.data import bapps, fixtures
from percepmetric.errors import InputError
from percepmetric.metrics.pixel import L2
from percepmetric.registry import create_metric

from helpers import FIXTURE_SIZE, run_cli_subprocess, skip_without_weights

SIZE = FIXTURE_SIZE  # items per split of the fixture_root fixture (conftest.py)

# Scores a pixel metric (l2, Lab l2, psnr) must reach on the synthetic sentinels.
# 2AFC (fixtures.sentinel_triplets): 4 or 5 of 5 simulated people choose the weaker distortion,
# and a pixel metric orders every sentinel as they do, so it scores their mean agreement: at
# least 0.8 (0.87-0.95 on this fixture when written). The bound is that floor less what one of
# the SIZE = 12 triplets misordered at 4 of 5 agreement costs: (0.8 - 0.2) / 12 = 0.05.
PIXEL_2AFC_FLOOR = 0.75
# JND (fixtures.sentinel_pairs): the "same" pairs are identical (distance 0), the others
# distorted at full strength, so a pixel metric ranks every "same" pair first: mAP 1; 0.9 is a
# margin below it.
PIXEL_JND_FLOOR = 0.9


class CountingL2(L2):
    """L2 that counts its batches (pairs or triplets) and can fail after a number of them (an
    interrupted run). The count is locked: batches may run in worker threads."""

    calls = 0
    fail_after: int | None = None
    _lock = threading.Lock()

    @staticmethod
    def _count():
        with CountingL2._lock:
            if CountingL2.fail_after is not None and CountingL2.calls >= CountingL2.fail_after:
                raise KeyboardInterrupt
            CountingL2.calls += 1

    # The runner's 8-bit batches reach a subclass through its float formula (metrics.eight_bit).
    def formula(self, x, y):
        self._count()
        return super().formula(x, y)

    def compute_triplet(self, ref, p0, p1):
        self._count()
        return super().compute_triplet(ref, p0, p1)


def _direct_l2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ((a.astype(np.float64) / 255 - b.astype(np.float64) / 255) ** 2).mean(axis=(1, 2, 3))


def _direct_l2_lab_lpips(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The LPIPS code's L2-Lab baseline of uint8 ``(N,H,W,3)`` batches, as that code computes it
    (metrics/pixel.py, metrics/color.py docstrings): ``ToTensor`` + ``Normalize(0.5, 0.5)`` to
    float32 [-1, 1], back to 8 bits by ``((t + 1) * 127.5).astype(uint8)`` (truncation), then
    ``0.5 * mean(((Lab(x) - Lab(y)) / 100)^2)`` with skimage's ``rgb2lab``."""
    from skimage.color import rgb2lab

    def lab_of_8bit_code(u: np.ndarray) -> np.ndarray:
        t = (u.astype(np.float32) / np.float32(255) - np.float32(0.5)) / np.float32(0.5)
        return rgb2lab(((t + np.float32(1)) * np.float32(127.5)).astype(np.uint8))

    return 0.5 * (((lab_of_8bit_code(a) - lab_of_8bit_code(b)) / 100) ** 2).mean(axis=(1, 2, 3))


def test_compute_distances_match_direct_computation(fixture_root, cache):
    split = bapps.load_two_afc(fixture_root, "val/cnn")
    d0, d1 = compute_distances(create_metric("l2"), split, batch_size=3)
    np.testing.assert_allclose(d0, _direct_l2(split.ref, split.p0), rtol=1e-5)
    np.testing.assert_allclose(d1, _direct_l2(split.ref, split.p1), rtol=1e-5)
    jnd = bapps.load_jnd(fixture_root, "jnd/val/traditional")
    d = compute_distances(create_metric("l2"), jnd, batch_size=4)
    np.testing.assert_allclose(d, _direct_l2(jnd.p0, jnd.p1), rtol=1e-5)
    # Batch size does not change the numbers.
    np.testing.assert_allclose(compute_distances(create_metric("l2"), jnd, batch_size=SIZE), d, rtol=1e-6)
    # Similarity metrics are turned into distances; inputs follow the metric's data range.
    psnr_d0, _ = compute_distances(create_metric("psnr", data_range=255), split)
    np.testing.assert_allclose(psnr_d0, _direct_l2(split.ref, split.p0), rtol=1e-4)


def test_second_run_reuses_and_interrupted_run_resumes(fixture_root, cache, tmp_path):
    split = bapps.load_two_afc(fixture_root, "val/deblur")
    store = DistanceStore(tmp_path / "distances")
    CountingL2.fail_after = None  # the same class uninterrupted: a subclass takes the float path
    expected = compute_distances(CountingL2(), split, batch_size=2)

    CountingL2.calls, CountingL2.fail_after = 0, 3  # 12 triplets in batches of 2: stops after 3 of 6
    with pytest.raises(KeyboardInterrupt):  # one worker: batches in order, whatever the timing
        compute_distances(CountingL2(), split, batch_size=2, cache=store, workers=1)
    final = store.path(CountingL2(), split)
    assert not final.exists(), "a partial split must never look complete"
    partial = store.read(store.partial_path(final))
    assert len(partial["d0"]) == 6

    CountingL2.calls, CountingL2.fail_after = 0, None
    d0, d1 = compute_distances(CountingL2(), split, batch_size=2, cache=store, workers=1)
    assert CountingL2.calls == 3, "only the 3 missing batches are computed"
    np.testing.assert_array_equal(d0, expected[0])
    np.testing.assert_array_equal(d1, expected[1])
    assert final.exists() and not store.partial_path(final).exists()

    CountingL2.calls = 0
    again = compute_distances(CountingL2(), split, batch_size=2, cache=store)
    assert CountingL2.calls == 0
    np.testing.assert_array_equal(again[0], expected[0])
    # Other options are another metric: never reuse its distances.
    assert store.path(create_metric("l2", color="lab"), split) != final


def test_batches_in_threads_give_the_same_distances_and_resume(fixture_root, cache, tmp_path):
    split = bapps.load_two_afc(fixture_root, "val/deblur")
    serial = compute_distances(create_metric("ssim", convention="lpips"), split, batch_size=2, workers=1)
    threaded = compute_distances(create_metric("ssim", convention="lpips"), split, batch_size=2, workers=2)
    np.testing.assert_array_equal(serial[0], threaded[0])
    np.testing.assert_array_equal(serial[1], threaded[1])
    assert torch.get_num_threads() == 1  # restored (the suite runs single-threaded)

    store = DistanceStore(tmp_path / "distances")
    CountingL2.calls, CountingL2.fail_after = 0, 3  # 3 batches succeed, the 4th to start fails
    with pytest.raises(KeyboardInterrupt):
        compute_distances(CountingL2(), split, batch_size=2, cache=store, workers=2)
    # Which batches had been taken in before the failure depends on the threads' timing: none
    # (then there is no partial file) or whole batches in order, at most the 3 that succeeded.
    partial = store.read(store.partial_path(store.path(CountingL2(), split)))
    kept = 0 if partial is None else len(partial["d0"])
    assert kept in (0, 2, 4, 6)
    CountingL2.calls, CountingL2.fail_after = 0, None
    d0, d1 = compute_distances(CountingL2(), split, batch_size=2, cache=store, workers=2)
    assert CountingL2.calls == (len(split) - kept) // 2, "the kept batches are not computed again"
    expected = compute_distances(create_metric("l2"), split)
    np.testing.assert_allclose(d0, expected[0], rtol=1e-6)
    np.testing.assert_allclose(d1, expected[1], rtol=1e-6)


def test_run_benchmark_tables_and_files(fixture_root, cache, tmp_path):
    metrics = [create_metric("l2"), create_metric("l2", color="lab", convention="lpips"), create_metric("psnr")]
    result = run_benchmark(metrics, ["all"], fixture_root, tmp_path / "out", n_boot=100, plot=True)
    assert result.synthetic and result.complete
    assert result.metrics == ["l2", "l2(color=lab,convention=lpips)", "psnr"]
    assert len(result.rows) == 3 * 8 and len(result.ceilings) == 6
    for row in result.rows:
        assert row["ci_low"] <= row["score"] <= row["ci_high"]
        assert row["score"] > (PIXEL_2AFC_FLOOR if row["kind"] == "2afc" else PIXEL_JND_FLOOR), row
    table = summary_table(result)
    assert list(table.index) == result.metrics + [HUMAN]
    assert list(table.columns) == ["val/traditional", "val/cnn", "2afc dist. mean", "val/superres", "val/deblur",
                                   "val/color", "val/frameinterp", "2afc real-alg. mean", "2afc mean",
                                   "jnd/val/traditional", "jnd/val/cnn", "jnd mean"]
    assert table.loc["l2", "2afc mean"] == pytest.approx(table.loc["l2", list(bapps.VAL_SPLITS)].mean())
    assert np.isnan(table.loc[HUMAN, "jnd/val/cnn"])
    out = tmp_path / "out"
    for name in ("results.csv", "summary.csv", "comparisons.csv", "results.json", "two_afc.png", "jnd_pr.png"):
        assert (out / name).stat().st_size > 0, name
    data = json.loads((out / "results.json").read_text())
    assert data["synthetic"] and "NOT human judgments" in data["note"] and data["complete"]
    assert len(pd.read_csv(out / "results.csv")) == 3 * 8 + 6
    assert len(result.comparisons) == 2 * 8


def test_validation_happens_before_computing(fixture_root, cache, tmp_path):
    import shutil

    root = tmp_path / "root"
    shutil.copytree(fixture_root / "2afc" / "val" / "cnn", root / "2afc" / "val" / "cnn")
    CountingL2.calls, CountingL2.fail_after = 0, None
    with pytest.raises(InputError, match="split val/color"):
        run_benchmark([CountingL2()], ["val/cnn", "val/color"], root)
    assert CountingL2.calls == 0


# ---------------------------------------------------------------- the CLI

def _run(args, env_extra=None, tmp_path=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PERCEPMETRIC_", "XDG_"))}
    env["HOME"] = str(tmp_path / "home")
    env["PERCEPMETRIC_CACHE"] = str(tmp_path / "cache")
    env["OMP_NUM_THREADS"] = "1"  # tiny batches: threads only add contention
    env.update(env_extra or {})
    return run_cli_subprocess(*args, env=env, timeout=600)


def test_cli_without_dataset_runs_the_synthetic_sentinels(tmp_path):
    run = _run(["bench", "-m", "l2", "--split", "val/traditional", "--split", "jnd/cnn", "--no-progress",
                "--bootstrap", "50"], tmp_path=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "synthetic sentinels" in run.stdout and "NOT human judgments" in run.stdout
    assert "built-in synthetic sentinels" in run.stderr
    assert "val/traditional" in run.stdout and "jnd/val/cnn" in run.stdout


def test_cli_split_out_plot_and_reuse(fixture_root, tmp_path):
    out = tmp_path / "out"
    args = ["bench", "--split", "val/cnn", "--root", str(fixture_root), "-m", "l2", "-m", "psnr",
            "--out", str(out), "--plot", "--no-progress", "--bootstrap", "50"]
    run = _run(args, tmp_path=tmp_path)
    assert run.returncode == 0, run.stderr
    for name in ("results.csv", "results.json", "summary.csv", "two_afc.png"):
        assert (out / name).stat().st_size > 0
    assert (out / "two_afc.png").read_bytes()[:4] == b"\x89PNG"
    saved = sorted((out / "distances").rglob("*.npz"))
    assert len(saved) == 2
    stamps = [p.stat().st_mtime_ns for p in saved]
    # A second run (here in-process, same data and metrics) reuses the saved distances.
    CountingL2.calls, CountingL2.fail_after = 0, None
    rerun = run_benchmark([CountingL2(), create_metric("psnr")], ["val/cnn"], fixture_root, out, n_boot=50,
                          cache_dir=tmp_path / "cache")
    assert CountingL2.calls == 0 and [p.stat().st_mtime_ns for p in saved] == stamps  # reused, not rewritten
    assert [r["score"] for r in rerun.rows] == pytest.approx(pd.read_csv(out / "results.csv")["score"].tolist()[:2])
    row = pd.read_csv(out / "results.csv").set_index(["metric", "split"]).loc[("l2", "val/cnn")]
    assert row["status"] == "complete" and row["score"] > PIXEL_2AFC_FLOOR


def test_cli_all_prints_summary_table(fixture_root, tmp_path):
    run = _run(["bench", "--all", "--root", str(fixture_root), "-m", "l2", "--no-progress", "--bootstrap", "50"],
               tmp_path=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "summary" in run.stdout and "human (ceiling)" in run.stdout
    summary = run.stdout[run.stdout.index("summary"):]  # (its layout belongs to report.py's tests)
    assert "frameint" in summary and "JND" in summary and "cnn" in summary


@pytest.mark.parametrize("args, message", [
    (["bench", "--split", "val/nope", "-m", "l2"], "unknown split 'val/nope'"),
    (["bench", "--split", "val/cnn", "-m", "l2", "--root", "/nonexistent/bapps"],
     "--root /nonexistent/bapps: no such folder"),
])
def test_cli_errors_are_one_line_exit_2(args, message, tmp_path):
    run = _run(args, tmp_path=tmp_path)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and message in run.stderr, run.stderr


def test_model_evaluation_needs_data_and_excludes_splits():
    from percepmetric.bench.commands import bench_command

    with pytest.raises(InputError, match="--model needs --data"):
        bench_command.main(["-m", "l2", "--model", "deepsim:x.pt"], standalone_mode=False)
    with pytest.raises(InputError, match="does not combine"):
        bench_command.main(["-m", "l2", "--model", "deepsim:x.pt", "--data", ".", "--split", "val"],
                           standalone_mode=False)


def test_cli_make_fixture(tmp_path):
    run = _run(["make-fixture", str(tmp_path / "fx"), "--size", "3"], tmp_path=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "synthetic sentinels, not human judgments" in run.stdout
    split = bapps.load_jnd(tmp_path / "fx", "jnd/val/cnn", cache_dir=False)
    assert len(split) == 3 and fixtures.is_synthetic(tmp_path / "fx")


class FloatOnlyL2(L2):
    """An L2 without its 8-bit path: integer paths serve the registry's own classes only, so
    the runner's batches reach a subclass through the float formula."""


@pytest.mark.parametrize("color, convention, direct", [("rgb", "plain", _direct_l2),
                                                       ("lab", "lpips", _direct_l2_lab_lpips)])
def test_8bit_path_and_float_path_equal_a_numpy_l2(fixture_root, cache, color, convention, direct):
    """Both paths against NumPy (and skimage for Lab) on the stored uint8 images, not each other."""
    split = bapps.load_two_afc(fixture_root, "val/superres")
    expected = direct(split.ref, split.p0), direct(split.ref, split.p1)
    eight_bit = compute_distances(create_metric("l2", color=color, convention=convention), split, batch_size=4)
    as_float = compute_distances(FloatOnlyL2(color=color, convention=convention), split, batch_size=5)
    for path in (eight_bit, as_float):
        np.testing.assert_allclose(path[0], expected[0], rtol=1e-6)
        np.testing.assert_allclose(path[1], expected[1], rtol=1e-6)


# ---------------------------------------------------------------- no stale or wrong numbers

def _lpips_weight_files(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    """Private copies of the AlexNet trunk and the v0.1 calibration, where the metric looks for them."""
    import shutil

    from percepmetric.metrics.lpips import official_calibration_path
    from percepmetric.nets.backbones import trunk_weights_path

    skip_without_weights("alex")
    trunk, calibration = trunk_weights_path("alex"), official_calibration_path("alex")
    if not calibration.is_file():
        pytest.skip(f"needs the lpips v0.1 calibration {calibration} (pip install lpips==0.1.4)")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("PERCEPMETRIC_LPIPS_WEIGHTS", str(tmp_path / "lpips_weights"))
    copies = trunk_weights_path("alex"), official_calibration_path("alex")
    for source, copy in zip((trunk, calibration), copies):
        copy.parent.mkdir(parents=True)
        shutil.copyfile(source, copy)
    return copies


def _replace_weights(path: Path, tensor_name: str, factor: float) -> None:
    """Save the file with one tensor scaled, as a user putting another file in its place would."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    state[tensor_name] = state[tensor_name] * factor
    torch.save(state, path.with_name(path.name + ".new"))
    os.replace(path.with_name(path.name + ".new"), path)


def test_swapped_weight_files_are_never_served_stale_distances(fixture_root, cache, tmp_path, monkeypatch):
    trunk, calibration = _lpips_weight_files(tmp_path, monkeypatch)
    out = tmp_path / "out"
    split = bapps.load_two_afc(fixture_root, "val/cnn")

    def bench_distances():
        run_benchmark([create_metric("lpips")], ["val/cnn"], fixture_root, out, n_boot=20)
        (saved,) = (out / "distances" / "val_cnn").glob("lpips*.npz")  # where users find them, one file
        with np.load(saved) as data:
            return data["d0"], data["d1"]

    first = bench_distances()
    _replace_weights(trunk, "features.3.weight", -1.0)  # conv2: the taps after it change
    second = bench_distances()
    assert not np.allclose(second[0], first[0]), "distances of the old trunk were reused"
    np.testing.assert_allclose(second[0], compute_distances(create_metric("lpips"), split)[0], rtol=1e-6)
    _replace_weights(calibration, "lin0.model.1.weight", 3.0)
    third = bench_distances()
    assert not np.allclose(third[0], second[0]), "distances of the old calibration were reused"
    np.testing.assert_allclose(third[1], compute_distances(create_metric("lpips"), split)[1], rtol=1e-6)
    assert np.allclose(bench_distances()[0], third[0])  # unchanged files: reused as before


@pytest.mark.parametrize("damage", ["truncated", "not a zip", "empty"])
def test_damaged_distance_file_is_computed_again(fixture_root, cache, tmp_path, damage):
    split = bapps.load_two_afc(fixture_root, "val/cnn")
    store = DistanceStore(tmp_path / "distances")
    CountingL2.calls, CountingL2.fail_after = 0, None
    expected = compute_distances(CountingL2(), split, batch_size=4, cache=store)
    path = store.path(CountingL2(), split)
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "not a zip": b"x" * len(data), "empty": b""}[damage])
    for _ in range(2):  # recomputed, and the second run reads the repaired file
        CountingL2.calls = 0
        again = compute_distances(CountingL2(), split, batch_size=4, cache=store)
        np.testing.assert_array_equal(again[0], expected[0])
    assert CountingL2.calls == 0 and store.read(path) is not None
    # A damaged partial file of an interrupted run is started over, not a traceback.
    path.unlink()
    store.partial_path(path).write_bytes(data[:100])
    np.testing.assert_array_equal(compute_distances(CountingL2(), split, batch_size=4, cache=store)[1], expected[1])


def test_interrupted_bench_scores_every_stored_split_and_counts_stay_integers(fixture_root, cache, tmp_path,
                                                                             monkeypatch):
    from percepmetric.bench import runner

    real_score_row, calls = runner._score_row, []

    def interrupted_once(*args):  # Ctrl-C while the first split is scored: its .npz is complete
        calls.append(args[2].name)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real_score_row(*args)

    monkeypatch.setattr(runner, "_score_row", interrupted_once)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_benchmark([create_metric("l2")], ["val/cnn", "val/color"], fixture_root, out, n_boot=20)
    table = pd.read_csv(out / "results.csv").set_index(["metric", "split"])
    assert table.loc[("l2", "val/cnn"), "status"] == "complete"
    assert table.loc[("l2", "val/color"), "status"] == "not computed"
    assert table.loc[(HUMAN, "val/cnn"), "status"] == "complete"
    lines = (out / "results.csv").read_text().splitlines()
    n_column = lines[0].split(",").index("n")
    assert {line.split(",")[n_column] for line in lines[1:]} == {str(SIZE)}, lines  # never 12.0
    assert json.loads((out / "results.json").read_text())["complete"] is False


def test_sigterm_stops_bench_as_ctrl_c_does(fixture_root, cache, tmp_path, monkeypatch, capsys):
    """torchrun passes SIGTERM to every rank when it is stopped (schedulers send it before a
    kill): the CLI takes it as Ctrl-C, so the tables are written with what was done."""
    import os
    import signal

    from percepmetric.bench import runner

    from helpers import run_cli

    real_score_row, calls = runner._score_row, []

    def terminated_once(*args):
        calls.append(args[2].name)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # raises in the handler before this returns
        return real_score_row(*args)

    monkeypatch.setattr(runner, "_score_row", terminated_once)
    before = signal.getsignal(signal.SIGTERM)
    code, _, _ = run_cli(capsys, "bench", "--root", fixture_root, "-s", "val/cnn", "-s", "val/color", "-m", "l2",
                         "--out", tmp_path / "out", "--bootstrap", "20", "--no-progress")
    assert code == 130
    assert signal.getsignal(signal.SIGTERM) == before  # the CLI's handler lives only while it runs
    table = pd.read_csv(tmp_path / "out" / "results.csv").set_index(["metric", "split"])
    assert table.loc[("l2", "val/cnn"), "status"] == "complete"
    assert table.loc[("l2", "val/color"), "status"] == "not computed"


def test_device_is_checked_before_cached_distances_are_used(fixture_root, cache, tmp_path):
    split = bapps.load_two_afc(fixture_root, "val/cnn")
    store = DistanceStore(tmp_path / "distances")
    compute_distances(create_metric("l2"), split, cache=store)
    with pytest.raises(InputError, match="device 'foo': expected auto, cpu, cuda or cuda:N"):
        compute_distances(create_metric("l2"), split, cache=store, device="foo")
    with pytest.raises(InputError, match="device 'tpu'"):
        run_benchmark([create_metric("l2")], ["val/cnn"], fixture_root, tmp_path / "out", device="tpu", n_boot=20)
    assert not (tmp_path / "out").exists()
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            compute_distances(create_metric("l2"), split, cache=store, device="cuda")
    cpu = compute_distances(create_metric("l2"), split, cache=store, device="cpu")
    np.testing.assert_array_equal(cpu[0], compute_distances(create_metric("l2"), split, device="auto")[0])


def test_unwritable_cache_folder_is_one_line_and_the_run_goes_on(fixture_root, tmp_path, capsys):
    blocker = tmp_path / "a file"
    blocker.write_text("")
    result = run_benchmark([create_metric("l2")], ["val/cnn"], fixture_root, n_boot=20,
                           cache_dir=blocker / "cache")  # cannot be created: its parent is a file
    assert result.complete
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write to the cache folder" in err and "PERCEPMETRIC_CACHE" in err, err


# ---------------------------------------------------------------- compute_distances in three parts

def test_cache_checkpoint_and_batch_loop_parts_work_apart(fixture_root, cache, tmp_path):
    """compute_distances is its cache (DistanceStore.entry: where the files live, what they
    record), its checkpoints (ResumableDistances: resume, save, finish) and the shared batch
    loop; each part does its job without the others."""
    from percepmetric.bench.runner import ResumableDistances
    from percepmetric.evaluation import Batch

    split = bapps.load_jnd(fixture_root, "jnd/val/traditional")
    store = DistanceStore(tmp_path / "distances")
    entry = store.entry(create_metric("l2"), split)
    assert entry.path == store.path(create_metric("l2"), split) and entry.finished() is None
    assert entry.record["n"] == SIZE and entry.keys == ("d",)

    first = ResumableDistances(entry.keys, SIZE, entry, checkpoint_seconds=-1.0)  # saves after every batch
    first.add(Batch(0, 5, (np.arange(5.0),)))
    assert len(entry.partial()["d"]) == 5
    with pytest.raises(KeyboardInterrupt), first.saved_if_interrupted():
        first.checkpoint_seconds = 3600.0
        first.add(Batch(5, 8, (np.arange(5.0, 8.0),)))
        raise KeyboardInterrupt  # saved on the way out, though no checkpoint was due
    second = ResumableDistances(entry.keys, SIZE, entry, checkpoint_seconds=3600.0)
    assert second.done == 8
    second.add(Batch(8, SIZE, (np.arange(8.0, SIZE),)))
    np.testing.assert_array_equal(second.finish(), np.arange(float(SIZE)))
    np.testing.assert_array_equal(entry.finished(), np.arange(float(SIZE)))
    assert entry.partial() is None and not store.partial_path(entry.path).exists()
    # What the cache holds is what compute_distances serves, without computing.
    CountingL2.calls, CountingL2.fail_after = 0, None
    np.testing.assert_array_equal(compute_distances(create_metric("l2"), split, cache=store), np.arange(float(SIZE)))


def test_training_evaluation_and_bench_score_with_the_same_loop_and_statistics(fixture_root, cache):
    """The 2AFC score at the end of training and the benchmark's come from one loop and one
    statistic: on the same split they agree (the benchmark hands L2 8-bit codes, training
    floats: the same numbers to float rounding)."""
    from percepmetric.stats import two_afc_score
    from percepmetric.train.evaluate import two_afc

    split = bapps.load_two_afc(fixture_root, "val/traditional")
    d0, d1 = compute_distances(create_metric("l2"), split, batch_size=5)
    assert two_afc(create_metric("l2"), split, batch_size=5) == pytest.approx(two_afc_score(d0, d1, split.judge))
