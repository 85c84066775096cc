"""What `percepmetric bench`, `make-fixture` and `weights` do and print, as a new user meets them.

Errors: one line, exit code 2, before anything is computed or written. The default run: the
LPIPS paper's three metrics, LPIPS left out with one line when its weights cannot be had
(checked offline, in a subprocess whose downloads are refused at once by a local port).
The report: explains itself, lines under 100 columns. Figures: legends clear of the data.
"""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from percepmetric.data import bapps, fixtures

from helpers import requires_weights, run_cli, run_cli_subprocess, synthetic_bapps_root

SIZE = 6  # items per split: enough for every score, fast for LPIPS
DOCS = Path(__file__).resolve().parents[1] / "docs" / "bench.md"


@pytest.fixture(scope="session")
def fixture_root(tmp_path_factory) -> Path:
    return synthetic_bapps_root(tmp_path_factory, size=SIZE)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv(bapps.ENV_CACHE, str(path))
    return path


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _offline_env(tmp_path: Path, proxy_port: int) -> dict[str, str]:
    """No weights (empty TORCH_HOME), no dataset, and every download sent to a local port."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PERCEPMETRIC_", "XDG_"))
           and k.lower() not in ("http_proxy", "https_proxy", "no_proxy")}
    (tmp_path / "empty_torch_home").mkdir(exist_ok=True)
    proxy = f"http://127.0.0.1:{proxy_port}"
    env.update(HOME=str(tmp_path / "home"), PERCEPMETRIC_CACHE=str(tmp_path / "cache"),
               TORCH_HOME=str(tmp_path / "empty_torch_home"), OMP_NUM_THREADS="1",
               http_proxy=proxy, https_proxy=proxy, HTTP_PROXY=proxy, HTTPS_PROXY=proxy, no_proxy="", NO_PROXY="")
    return env


def _long_lines(text: str, tmp_path: Path) -> list[str]:
    # Paths are the user's: count them as one column.
    return [line.rstrip() for line in text.splitlines() if len(line.rstrip().replace(str(tmp_path), "T")) >= 100]


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")} if folder.exists() else {}


# ---------------------------------------------------------------- errors before any work

@pytest.mark.parametrize("device, message", [
    ("foo", "--device 'foo': expected auto, cpu, cuda or cuda:N"),
    pytest.param("cuda", "--device cuda: CUDA is not available", marks=pytest.mark.skipif(
        torch.cuda.is_available(), reason="CUDA is available")),
])
def test_bad_device_is_one_line_before_anything_is_written(fixture_root, tmp_path, capsys, device, message):
    out = tmp_path / "out"
    base = ["bench", "-m", "l2", "--root", str(fixture_root), "-s", "val/cnn", "--no-progress", "--bootstrap", "5",
            "--out", str(out)]
    code, _, err = run_cli(capsys, *base, "--device", device)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not out.exists(), "nothing may be written before the device is known"
    # With the distances already cached in --out, the device is still checked first.
    assert run_cli(capsys, *base, "--device", "cpu")[0] == 0
    before = _files(out)
    code, _, err = run_cli(capsys, *base, "--device", device)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert _files(out) == before


@pytest.mark.parametrize("case", ["cannot be created", "not writable", "distances is a file",
                                  "results.csv is a folder", "two_afc.png is a folder"])
def test_bench_out_that_cannot_be_written_is_one_line_before_computing(fixture_root, tmp_path, capsys, case):
    out = tmp_path / "out"
    extra = []
    if case == "cannot be created":
        out = Path("/proc/percepmetric-out")
    elif case == "not writable":
        out = Path("/sys/kernel")  # a folder that even root cannot write files in
    elif case == "distances is a file":
        out.mkdir()
        (out / "distances").write_text("not a folder")
    else:
        name = case.split()[0]
        (out / name).mkdir(parents=True)
        extra = ["--plot"] if name.endswith(".png") else []
    code, _, err = run_cli(capsys, "bench", "-m", "l2", "--root", fixture_root, "-s", "val/cnn", "--no-progress",
                           "--bootstrap", "5", "--out", out, *extra)
    assert code == 2 and err.count("\n") == 1 and err.startswith("percepmetric: error: --out "), err
    assert "Traceback" not in err
    if out.is_relative_to(tmp_path):
        assert not list(out.rglob("*.npz")), "nothing may be computed before --out is known to be writable"


@pytest.mark.parametrize("case", ["cannot be created", "a file in the way"])
def test_make_fixture_directory_that_cannot_be_written_is_one_line(tmp_path, capsys, case):
    target = Path("/proc/percepmetric-fixture")
    if case == "a file in the way":
        target = tmp_path / "fx"
        target.mkdir()
        (target / "2afc").write_text("a file where the layout needs a folder")
    code, out, err = run_cli(capsys, "make-fixture", str(target), "--size", "2")
    assert code == 2 and err.count("\n") == 1 and err.startswith("percepmetric: error: DIRECTORY "), err
    assert not out


def test_all_and_split_together_are_refused(fixture_root, tmp_path, capsys):
    code, _, err = run_cli(capsys, "bench", "--all", "-s", "val/cnn", "-m", "l2", "--root", fixture_root,
                           "--no-progress")
    assert code == 2 and err.count("\n") == 1 and "--all" in err and "--split" in err, err


# ---------------------------------------------------------------- the default metrics, offline

@requires_weights("alex", "vgg")
def test_default_metrics_are_the_lpips_papers_table(fixture_root, capsys):
    from percepmetric.bench.commands import bench_metrics

    specs = [m.spec for m in bench_metrics((), None, None, None, ())]
    # The metrics of the LPIPS paper's results table (Zhang et al. 2018): L2 in Lab, SSIM, LPIPS alex lin.
    assert len(specs) == 3
    assert specs[0].startswith("l2(") and "color=lab" in specs[0] and "convention=lpips" in specs[0]
    assert specs[1].startswith("ssim(") and "convention=lpips" in specs[1]
    assert specs[2].startswith("lpips(") and "net=alex" in specs[2] and "variant=lin" in specs[2]
    # The user's options go to the default metrics that take them and win over the presets.
    specs = [m.spec for m in bench_metrics((), "vgg", None, None, ("color=rgb",))]
    assert "color=rgb" in specs[0] and "net=vgg" in specs[2]
    code, _, err = run_cli(capsys, "bench", "-o", "colour=lab", "--root", str(fixture_root), "--no-progress")
    assert code == 2 and "option 'colour' is not accepted by any chosen metric" in err, err


def test_readme_first_command_runs_offline_without_lpips_weights(tmp_path):
    """`percepmetric bench`, verbatim, with no dataset, no TORCH_HOME weights and no network."""
    env = _offline_env(tmp_path, _closed_port())
    started = time.monotonic()
    run = run_cli_subprocess("bench", env=env)
    assert run.returncode == 0, run.stderr
    skipped = [line for line in run.stderr.splitlines() if "LPIPS skipped" in line]
    assert len(skipped) == 1 and "percepmetric weights" in skipped[0] and "TORCH_HOME" in skipped[0], run.stderr
    assert "Traceback" not in run.stderr
    rows = [line.split()[0] for line in run.stdout.splitlines() if re.match(r"\S+ +val/cnn .*complete$", line)]
    assert rows == ["l2", "ssim"], run.stdout
    assert "lpips-alex" not in run.stdout and "lpips(" not in run.stdout
    assert time.monotonic() - started < 240
    messages = [line for line in re.split(r"[\r\n]", run.stderr) if "item/s" not in line]  # not the progress bars
    assert not _long_lines(run.stdout, tmp_path) and not _long_lines("\n".join(messages), tmp_path), run.stderr


def test_explicit_lpips_without_weights_is_one_line_exit_2(fixture_root, tmp_path):
    env = _offline_env(tmp_path, _closed_port())
    run = run_cli_subprocess("bench", "-m", "lpips", "--root", fixture_root, "-s", "val/cnn", "--no-progress", env=env)
    assert run.returncode == 2, run.stderr
    assert run.stderr.count("\n") == 1 and "weights" in run.stderr and "Traceback" not in run.stderr, run.stderr


def test_weight_download_gives_up_when_the_network_does_not_answer(tmp_path):
    """torch.hub opens URLs without a timeout: a network that swallows packets must not hang a run.
    The 'network' here is a local socket that accepts connections and never answers."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        env = _offline_env(tmp_path, silent.getsockname()[1])
        code = ("import percepmetric.nets.backbones as b\n"
                "b.DOWNLOAD_TIMEOUT_SECONDS = 1.0\n"
                "from percepmetric.errors import WeightsNotFoundError\n"
                "try:\n    b.load_pretrained_features('alex')\n"
                "except WeightsNotFoundError as e:\n    print('gave up:', e)\n")
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, env=env,
                             timeout=120)
    assert run.returncode == 0 and "gave up:" in run.stdout and "timed out" in run.stdout, run.stdout + run.stderr


def test_weights_command_says_how_to_get_missing_files(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    code, out, _ = run_cli(capsys, "weights")
    assert code == 0 and "MISSING" in out
    assert "TORCH_HOME" in out and str(tmp_path / "empty" / "hub" / "checkpoints") in out


# ---------------------------------------------------------------- the report



def test_report_explains_itself_and_fits_100_columns(fixture_root, tmp_path, capsys):
    from percepmetric.bench.report import READING_GUIDE, SYNTHETIC_GUIDE

    args = ["bench", "--root", str(fixture_root), "--no-progress", "--bootstrap", "20"]  # default metrics, all splits
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    assert not _long_lines(out, tmp_path) and not _long_lines(err, tmp_path), _long_lines(out + err, tmp_path)
    for line in READING_GUIDE + SYNTHETIC_GUIDE:
        assert line in out
    assert re.search(r"^  \(\d+ more with \+0\.0 \[\+0\.0, \+0\.0\].*--verbose", out, re.MULTILINE), out
    listed = out.split("more with")[0]
    assert not re.search(r"[+-]0\.0 +\[\+0\.0, \+0\.0\]", listed), "tests that say nothing are hidden"
    code, verbose, _ = run_cli(capsys, *args, "--verbose")
    assert code == 0 and re.search(r"\+0\.0 +\[\+0\.0, \+0\.0\]", verbose) and "more with" not in verbose
    assert not _long_lines(verbose, tmp_path)
    # --help says the same, one line each (click may rewrap: compare words).
    code, help_text, _ = run_cli(capsys, "bench", "--help")
    words = " ".join(help_text.split())
    assert code == 0 and all(" ".join(line.split()) in words for line in READING_GUIDE + SYNTHETIC_GUIDE)
    assert not [line for line in help_text.splitlines() if len(line) >= 100]


# ---------------------------------------------------------------- figures

def _result(fixture_root, tmp_path):
    from percepmetric.bench import run_benchmark
    from percepmetric.registry import create_metric

    metrics = [create_metric("l2", color="lab", convention="lpips"), create_metric("ssim", convention="lpips"),
               create_metric("psnr")]
    return run_benchmark(metrics, ["val/cnn", "val/color", "jnd/val/traditional", "jnd/val/cnn"], fixture_root,
                         n_boot=10, cache_dir=tmp_path / "cache")


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_figures_keep_legends_and_titles_clear_and_curves_distinguishable(fixture_root, tmp_path):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from percepmetric.bench import report
    from percepmetric.registry import short_labels

    result = _result(fixture_root, tmp_path)
    short = short_labels(result.metrics)
    assert list(short.values()) == ["l2", "ssim", "psnr"]
    two_afc = report._plot_two_afc(plt, result, ["val/cnn", "val/color"], short, "")
    two_afc.canvas.draw()
    renderer = two_afc.canvas.get_renderer()
    ax = two_afc.axes[0]
    assert not _overlap(ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer)), \
        "the 2AFC legend must not cover the bars"
    plt.close(two_afc)

    jnd = report._plot_jnd(plt, result, ["jnd/val/traditional", "jnd/val/cnn"], short, "\n(note)")
    jnd.canvas.draw()
    renderer = jnd.canvas.get_renderer()
    left, right = jnd.axes
    assert not _overlap(left.title.get_window_extent(renderer), right.title.get_window_extent(renderer))
    for ax, other in ((left, right), (right, left)):
        legend = ax.get_legend().get_window_extent(renderer)
        assert not _overlap(legend, other.get_window_extent(renderer)), "a legend runs into the other panel"
        assert not _overlap(legend, ax.get_window_extent(renderer)), "a legend covers the curves"
        looks = {(line.get_linestyle(), line.get_marker()) for line in ax.get_lines()}
        assert len(looks) == 3, "equal curves must stay distinguishable without colour"
        assert all(len(text.get_text()) < 30 for text in ax.get_legend().get_texts())
    plt.close(jnd)

    files = report.plot_results(result, tmp_path / "figures")
    assert [f.name for f in files] == ["two_afc.png", "jnd_pr.png", "disagreements.png"]
    assert all(f.read_bytes()[:4] == b"\x89PNG" for f in files)


# ---------------------------------------------------------------- files and docs

def _modes(root: Path) -> set[tuple[str, int]]:
    return {("dir" if p.is_dir() else "file", stat.S_IMODE(p.stat().st_mode)) for p in [root, *root.rglob("*")]}


def test_sentinel_folders_follow_the_umask(tmp_path, capsys):
    previous = os.umask(0o002)
    try:
        embedded = fixtures.embedded_root(tmp_path / "cache", size=2)
        code, out, err = run_cli(capsys, "make-fixture", str(tmp_path / "fx"), "--size", "2")
    finally:
        os.umask(previous)
    assert code == 0, err
    assert "not human judgments" in out and not _long_lines(out, tmp_path)
    for root in (embedded, tmp_path / "fx"):
        assert _modes(root) == {("dir", 0o775), ("file", 0o664)}, (root, _modes(root))


def test_unwritable_cache_still_gives_the_sentinels(tmp_path, capsys):
    root = fixtures.embedded_root(f"/proc/percepmetric-cache-{os.getpid()}", size=2)
    assert fixtures.is_synthetic(root)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write to the cache folder" in err, err


def test_docs_name_what_the_code_accepts_and_writes(fixture_root, tmp_path, capsys):
    from percepmetric.metrics.lpips import PRECISIONS

    text = DOCS.read_text()
    named = re.findall(r'precision="(\w+)"', text) + re.findall(r"precision=(\w+)`", text)
    assert named and all(value in PRECISIONS for value in named), named
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "bench", "-m", "l2", "--root", fixture_root, "-s", "val/cnn", "-s",
                           "jnd/traditional", "--no-progress", "--bootstrap", "5", "--out", out)
    assert code == 0, err
    folders = sorted(p.name for p in (out / "distances").iterdir())
    assert folders == ["jnd_val_traditional", "val_cnn"]
    assert all(f"distances/{name}/" in text for name in folders)
    assert "distances/<split>/" not in text


# ---------------------------------------------------------------- process settings

@pytest.fixture()
def mallopt_calls(monkeypatch) -> list[tuple[int, int]]:
    """Every glibc ``mallopt`` call made from here on (recorded, not made), whatever module makes
    it: the library is looked up through ``ctypes.CDLL`` at each call."""
    import ctypes

    from percepmetric import memory

    calls: list[tuple[int, int]] = []

    class RecordingCDLL:
        def __init__(self, *args, **kwargs) -> None:
            pass

        def mallopt(self, parameter: int, value: int) -> int:
            calls.append((parameter, value))
            return 1

    monkeypatch.setattr(ctypes, "CDLL", RecordingCDLL)
    monkeypatch.setattr(memory, "_applied", False)  # as in a fresh process
    monkeypatch.delenv(memory.OPT_OUT_VARIABLE, raising=False)
    return calls


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_run_benchmark_leaves_malloc_alone_and_the_bench_command_tunes_it(fixture_root, tmp_path, capsys,
                                                                          mallopt_calls):
    from percepmetric.bench import run_benchmark
    from percepmetric.registry import create_metric

    run_benchmark([create_metric("l2")], ["val/cnn"], fixture_root, n_boot=5, cache_dir=tmp_path / "cache")
    assert mallopt_calls == [], "run_benchmark changed malloc's settings for the whole process"
    code, _, err = run_cli(capsys, "bench", "-m", "l2", "--root", fixture_root, "-s", "val/cnn", "--no-progress",
                           "--bootstrap", "5")
    assert code == 0, err
    assert len(mallopt_calls) == 2, mallopt_calls  # the mmap and trim thresholds, set by the command


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_the_bench_command_leaves_malloc_alone_when_told(fixture_root, capsys, monkeypatch, mallopt_calls):
    monkeypatch.setenv("PERCEPMETRIC_KEEP_FREED_MEMORY", "Off")
    code, _, err = run_cli(capsys, "bench", "-m", "l2", "--root", fixture_root, "-s", "val/cnn", "--no-progress",
                           "--bootstrap", "5")
    assert code == 0, err
    assert mallopt_calls == []
