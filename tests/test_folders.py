"""Two folders compared image by image: ``percepmetric distance DIR_A DIR_B`` and ``compare_folders``.

Small images and pixel metrics keep these tests fast; LPIPS appears once, through the CLI.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import percepmetric
from percepmetric import InputError, create_metric, load_image
from percepmetric import compare as compare_module
from percepmetric.compare import compare_folders, plan_chunks, resume_folder, summary_path

from helpers import requires_weights, run_cli, run_cli_subprocess


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def noisy_pair(seed: int, shape=(24, 32, 3)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-30, 31, shape), 0, 255).astype(np.uint8)
    return a, b


def make_folders(root: Path, names: list[str], shape=(24, 32, 3)) -> tuple[Path, Path]:
    for k, name in enumerate(names):
        a, b = noisy_pair(k, shape)
        write_png(root / "A" / name, a)
        write_png(root / "B" / name, b)
    return root / "A", root / "B"


NAMES = ["0001.png", "0002.png", "deep/0003.png", "deep/er/0004.png"]


def test_pairs_by_relative_path_recursively_with_each_metrics_own_value(tmp_path):
    dir_a, dir_b = make_folders(tmp_path, NAMES)
    (dir_a / "notes.txt").write_text("not an image")
    table = compare_folders(dir_a, dir_b, ["psnr", "ssim"], batch_size=3)
    assert list(table.columns) == ["a", "b", "psnr", "ssim(color=grey)"]
    assert list(table["a"]) == sorted(NAMES) and list(table["b"]) == sorted(NAMES)
    psnr, ssim = create_metric("psnr"), create_metric("ssim")
    for row in table.itertuples(index=False):
        x, y = load_image(dir_a / row.a), load_image(dir_b / row.b)
        assert row.psnr == pytest.approx(psnr(x, y).item(), abs=1e-5)  # dB, not the MSE distance
        assert row[3] == pytest.approx(ssim(x, y).item(), abs=1e-6)  # a similarity
    summary = table.attrs["summary"]
    assert [row["metric"] for row in summary] == ["psnr", "ssim(color=grey)"]
    low, high = percepmetric.stats.bootstrap_ci(np.mean, table["psnr"].to_numpy(), n_boot=1000, seed=0)
    assert summary[0]["mean"] == pytest.approx(table["psnr"].mean()) and summary[0]["n"] == len(NAMES)
    assert (summary[0]["ci_low"], summary[0]["ci_high"]) == (low, high) and summary[0]["unit"] == "dB"
    assert percepmetric.compare_folders is compare_folders  # the top-level name, imported on first use


def test_images_of_several_sizes_are_batched_by_size_within_a_pixel_budget(tmp_path, monkeypatch):
    dir_a, dir_b = make_folders(tmp_path, ["s1.png", "s2.png", "s3.png"], shape=(16, 16, 3))
    for name in ("l1.png", "l2.png"):
        a, b = noisy_pair(len(name), (20, 24, 3))
        write_png(dir_a / name, a)
        write_png(dir_b / name, b)
    found = compare_module.match_folders(dir_a, dir_b)
    chunks = plan_chunks(found.pairs, 8, None, ["psnr"])
    sizes = [{(found.pairs[i][0].height, found.pairs[i][0].width) for i in c.indices} for c in chunks]
    assert sizes == [{(16, 16)}, {(20, 24)}]  # one size per chunk
    monkeypatch.setattr(compare_module, "PIXELS_PER_BATCH", 16 * 16 * 2)
    assert [len(c.indices) for c in plan_chunks(found.pairs, 8, None, ["psnr"])] == [2, 1, 1, 1]
    table = compare_folders(dir_a, dir_b, ["psnr"], batch_size=8)
    for row in table.itertuples(index=False):
        expected = create_metric("psnr")(load_image(dir_a / row.a), load_image(dir_b / row.b)).item()
        assert row.psnr == pytest.approx(expected, abs=1e-5)


def test_grey_beside_colour_and_a_metric_too_small_for_the_images(tmp_path):
    dir_a, dir_b = make_folders(tmp_path, ["big.png"])
    grey = np.random.default_rng(5).integers(0, 256, (24, 32), dtype=np.uint8)
    write_png(dir_a / "grey.png", grey)
    write_png(dir_b / "grey.png", np.stack([grey] * 3, axis=-1))
    a, b = noisy_pair(3, (8, 8, 3))
    write_png(dir_a / "tiny.png", a)
    write_png(dir_b / "tiny.png", b)
    table = compare_folders(dir_a, dir_b, ["psnr", "ssim"]).set_index("a")
    assert math.isinf(table.loc["grey.png", "psnr"])  # grey repeated to three channels: identical
    assert math.isnan(table.loc["tiny.png", "ssim(color=grey)"]) and np.isfinite(table.loc["tiny.png", "psnr"])
    ssim_row = next(r for r in table.attrs["summary"] if r["metric"].startswith("ssim"))
    assert ssim_row["not_applicable"] == 1 and "smaller than" in ssim_row["reason"]
    psnr_row = table.attrs["summary"][0]
    assert psnr_row["infinite"] == 1 and psnr_row["n"] == 2  # the mean is over finite values


def test_match_stem_pairs_extensions_and_refuses_ambiguous_stems(tmp_path, capsys):
    a, b = noisy_pair(0)
    write_png(tmp_path / "A" / "0001.png", a)
    write_png(tmp_path / "B" / "0001.bmp", b)
    code, _, err = run_cli(capsys, "distance", tmp_path / "A", tmp_path / "B", "-m", "psnr", "--no-progress")
    assert code == 2 and "only in" in err and "0001.png" in err
    code, out, _ = run_cli(capsys, "distance", tmp_path / "A", tmp_path / "B", "-m", "psnr", "--match", "stem",
                           "--no-progress", "--json")
    assert code == 0
    assert [(p["a"], p["b"]) for p in json.loads(out)["pairs"]] == [("0001.png", "0001.bmp")]
    write_png(tmp_path / "B" / "0001.png", b)
    code, _, err = run_cli(capsys, "distance", tmp_path / "A", tmp_path / "B", "-m", "psnr", "--match", "stem",
                           "--no-progress")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "ambiguous" in err and "0001.bmp" in err and "0001.png" in err


def test_files_on_one_side_only_stop_the_job_unless_allowed(tmp_path, capsys):
    dir_a, dir_b = make_folders(tmp_path, NAMES)
    for k in range(7):
        write_png(dir_a / f"extra/{k}.png", noisy_pair(k)[0])
    write_png(dir_b / "lonely.png", noisy_pair(9)[0])
    code, out, err = run_cli(capsys, "distance", dir_a, dir_b, "-m", "psnr", "--no-progress")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "7 file(s) only in" in err and "extra/0.png" in err and "2 more" in err and "lonely.png" in err
    assert "--allow-missing" in err
    code, out, err = run_cli(capsys, "distance", dir_a, dir_b, "-m", "psnr", "--allow-missing", "--no-progress",
                             "--json")
    assert code == 0 and "skipped 7 file(s)" in err
    document = json.loads(out)
    assert len(document["pairs"]) == len(NAMES) and document["only_b"] == ["lonely.png"]


def test_sizes_that_differ_stop_the_job_unless_a_policy_is_chosen(tmp_path, capsys):
    a, _ = noisy_pair(1, (24, 32, 3))
    b = np.asarray(Image.fromarray(noisy_pair(2, (24, 32, 3))[1]).resize((36, 28), Image.BICUBIC))
    write_png(tmp_path / "A" / "x.png", a)
    write_png(tmp_path / "B" / "x.png", b)
    code, _, err = run_cli(capsys, "distance", tmp_path / "A", tmp_path / "B", "-m", "psnr", "--no-progress")
    assert code == 2 and "1 pair(s) differ in size: x.png (32x24) vs x.png (36x28)" in err
    assert "--size-mismatch" in err
    x, y = load_image(tmp_path / "A" / "x.png"), load_image(tmp_path / "B" / "x.png")
    psnr = create_metric("psnr")
    cropped = compare_folders(tmp_path / "A", tmp_path / "B", ["psnr"], size_mismatch="crop")
    assert cropped["psnr"][0] == pytest.approx(psnr(x, y[..., 2:26, 2:34]).item(), abs=1e-5)  # centres
    resized = compare_folders(tmp_path / "A", tmp_path / "B", ["psnr"], size_mismatch="resize")
    y_resized = torch.nn.functional.interpolate(y, size=(24, 32), mode="bicubic", antialias=True).clamp(0, 1)
    assert resized["psnr"][0] == pytest.approx(psnr(x, y_resized).item(), abs=1e-5)


def test_out_writes_the_table_and_the_summary_beside_it(tmp_path, capsys):
    dir_a, dir_b = make_folders(tmp_path, NAMES)
    out = tmp_path / "res" / "results.csv"
    code, stdout, _ = run_cli(capsys, "distance", dir_a, dir_b, "-m", "psnr", "-m", "l2", "--out", out,
                              "--no-progress")
    assert code == 0 and f"summary: {summary_path(out)}" in stdout
    import pandas as pd

    table = pd.read_csv(out)
    assert list(table.columns) == ["a", "b", "psnr", "l2"]
    summary = pd.read_csv(tmp_path / "res" / "results.summary.csv")
    assert list(summary["metric"]) == ["psnr", "l2"] and set(summary.columns) >= {"mean", "ci_low", "ci_high"}
    assert not resume_folder(out).exists() and sorted(p.name for p in out.parent.iterdir()) == [
        "results.csv", "results.summary.csv"]
    json_out = tmp_path / "results.json"
    code, _, _ = run_cli(capsys, "distance", dir_a, dir_b, "-m", "psnr", "--out", json_out, "--no-progress")
    rows = json.loads(json_out.read_text())
    assert code == 0 and [r["a"] for r in rows] == sorted(NAMES)
    assert rows[0]["psnr"] == pytest.approx(table["psnr"][0], abs=1e-12)
    assert json.loads((tmp_path / "results.summary.json").read_text())[0]["metric"] == "psnr"


@pytest.mark.parametrize(("args", "needle"), [
    # the default metrics (LPIPS among them) are built before --out and --map are checked
    pytest.param(["--out", "r.txt"], "--out", marks=requires_weights("alex")),
    (["--batch-size", "0"], "--batch-size"),
    (["--size-mismatch", "stretch"], "--size-mismatch"),
    pytest.param(["--map", "m.png"], "--map", marks=requires_weights("alex")),
    (["-m", "nope"], "nope"),
])
def test_bad_folder_options_are_one_line_exit_2(tmp_path, capsys, args, needle):
    dir_a, dir_b = make_folders(tmp_path, NAMES[:1])
    code, out, err = run_cli(capsys, "distance", dir_a, dir_b, "--no-progress", *args)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and needle in err


def test_folder_options_with_two_files_are_refused_and_a_file_with_a_folder_too(tmp_path, capsys):
    dir_a, dir_b = make_folders(tmp_path, NAMES[:1])
    code, _, err = run_cli(capsys, "distance", dir_a / NAMES[0], dir_b / NAMES[0], "-m", "psnr",
                           "--out", tmp_path / "r.csv")
    assert code == 2 and "--out applies to two folders" in err
    code, _, err = run_cli(capsys, "distance", dir_a, dir_b / NAMES[0], "-m", "psnr")
    assert code == 2 and "not a folder" in err
    code, out, _ = run_cli(capsys, "distance", dir_a / NAMES[0], dir_b / NAMES[0], "-m", "psnr")
    assert code == 0 and out.startswith("psnr  ") and out.count("\n") == 1  # two files: as before


def test_an_interrupted_run_resumes_computing_only_the_missing_chunks(tmp_path, monkeypatch):
    names = [f"{k:02d}.png" for k in range(7)]
    dir_a, dir_b = make_folders(tmp_path, names)
    clean = tmp_path / "clean.csv"
    compare_folders(dir_a, dir_b, ["psnr", "l2"], out=clean, batch_size=2)  # chunks of 2, 2, 2, 1

    psnr_class = type(create_metric("psnr"))
    original = psnr_class.formula
    calls = {"n": 0, "fail_at": 3}

    def counted(self, x, y):
        calls["n"] += 1
        if calls["n"] == calls["fail_at"]:
            raise KeyboardInterrupt  # as Ctrl-C in the middle of the third chunk
        return original(self, x, y)

    monkeypatch.setattr(psnr_class, "formula", counted)
    out = tmp_path / "run.csv"
    with pytest.raises(KeyboardInterrupt):
        compare_folders(dir_a, dir_b, ["psnr", "l2"], out=out, batch_size=2, workers=2)
    assert not out.exists() and len(list(resume_folder(out).glob("chunk-*.npz"))) == 2
    calls.update(n=0, fail_at=-1)
    compare_folders(dir_a, dir_b, ["psnr", "l2"], out=out, batch_size=2)
    assert calls["n"] == 2  # the two chunks that were missing, not four
    assert out.read_bytes() == clean.read_bytes()
    assert summary_path(out).read_bytes() == summary_path(clean).read_bytes()
    assert not resume_folder(out).exists()


@pytest.mark.parametrize("with_out", [True, False])
def test_ctrl_c_says_what_was_kept_and_how_to_resume(tmp_path, monkeypatch, capsys, with_out):
    """Ctrl-C of `distance DIR DIR` says how many finished chunks were kept and that the same
    command resumes (with --out), or that nothing was kept (without): not only "aborted"."""
    dir_a, dir_b = make_folders(tmp_path, [f"{k:02d}.png" for k in range(7)])
    psnr_class = type(create_metric("psnr"))
    original = psnr_class.formula
    calls = {"n": 0}

    def interrupted(self, x, y):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # as Ctrl-C in the middle of the third chunk
        return original(self, x, y)

    monkeypatch.setattr(psnr_class, "formula", interrupted)
    out = tmp_path / "run.csv"
    args = ["--out", out] if with_out else []
    code, stdout, err = run_cli(capsys, "distance", dir_a, dir_b, "-m", "psnr", "--batch-size", 2, "--no-progress",
                                *args)
    assert code == 130 and stdout == ""
    if with_out:
        assert err == (f"percepmetric: interrupted; 2 finished chunk(s) kept in {resume_folder(out)}: "
                       "run the same command again to resume\n")
    else:
        assert err.startswith("percepmetric: interrupted; nothing was kept (with --out FILE")


def test_saved_chunks_are_not_reused_when_a_file_or_a_metric_changes(tmp_path, monkeypatch):
    dir_a, dir_b = make_folders(tmp_path, NAMES)
    out = tmp_path / "r.csv"
    calls = {"n": 0}
    psnr_class = type(create_metric("psnr"))
    original = psnr_class.formula

    def failing(self, x, y):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt
        return original(self, x, y)

    monkeypatch.setattr(psnr_class, "formula", failing)
    with pytest.raises(KeyboardInterrupt):
        compare_folders(dir_a, dir_b, ["psnr"], out=out, batch_size=1)
    monkeypatch.setattr(psnr_class, "formula", original)
    first_pair = sorted(NAMES)[0]
    write_png(dir_b / first_pair, noisy_pair(42)[1])  # rewritten: its chunk's key changes
    table = compare_folders(dir_a, dir_b, ["psnr"], out=out, batch_size=1)
    fresh = create_metric("psnr")(load_image(dir_a / first_pair), load_image(dir_b / first_pair)).item()
    assert table["psnr"][0] == pytest.approx(fresh, abs=1e-5)
    keys = {c.key for c in plan_chunks(compare_module.match_folders(dir_a, dir_b).pairs, 1, None, ["psnr()"])}
    assert keys.isdisjoint(c.key for c in plan_chunks(compare_module.match_folders(dir_a, dir_b).pairs, 1, None,
                                                      ["psnr(data_range=255)"]))


def test_labels_are_unique_in_the_table(tmp_path):
    dir_a, dir_b = make_folders(tmp_path, NAMES[:2])
    metrics = [create_metric("psnr"), create_metric("psnr"), create_metric("l2"), create_metric("l2", color="lab")]
    table = compare_folders(dir_a, dir_b, metrics)
    assert list(table.columns)[2:4] == ["psnr", "psnr#2"] and len(set(table.columns)) == len(table.columns)
    assert (table["psnr"] == table["psnr#2"]).all()


def test_python_errors_are_input_errors(tmp_path):
    dir_a, dir_b = make_folders(tmp_path, NAMES[:1])
    with pytest.raises(InputError, match="no such folder"):
        compare_folders(tmp_path / "nowhere", dir_b, ["psnr"])
    with pytest.raises(InputError, match="--match"):
        compare_folders(dir_a, dir_b, ["psnr"], match="name")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no image pairs"):
        compare_folders(dir_a, tmp_path / "empty", ["psnr"], allow_missing=True)


@requires_weights("alex")
def test_the_command_with_lpips_in_a_fresh_interpreter(tmp_path):
    dir_a, dir_b = make_folders(tmp_path, NAMES[:2], shape=(32, 32, 3))
    proc = run_cli_subprocess("distance", dir_a, dir_b, "-m", "psnr", "-m", "lpips", "--no-progress",
                              "--device", "cpu", check_rc=0)
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["a", "b", "psnr"] and "lpips(net=alex" in lines[0]
    assert any(line.startswith("lpips(net=alex") and "[" in line for line in lines[3:])
