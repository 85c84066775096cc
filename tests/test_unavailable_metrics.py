"""One metric whose weights are absent never hides the others (issue 19).

A fresh machine without pretrained weights (no TORCH_HOME holding them, no network) and without
the ST-LPIPS extra: ``distance``, ``score`` and ``distance DIR DIR`` print every metric that can
run, name the one that cannot with its reason, and exit 0; only when no chosen metric can run is
it one line and exit 2. ``matrix`` (one metric per run) says how to choose one that needs no
weights. ``-h`` names each command's default metrics.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from helpers import run_cli_subprocess


@pytest.fixture(scope="module")
def no_weights(tmp_path_factory):
    """An environment where no pretrained file can be found: an empty TORCH_HOME and an empty
    ST-LPIPS weights folder (downloads fail here: no network; a proxy that refuses makes sure)."""
    empty = tmp_path_factory.mktemp("no-weights")
    env = {**os.environ, "TORCH_HOME": str(empty), "PERCEPMETRIC_STLPIPS_WEIGHTS": str(empty),
           "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "OMP_NUM_THREADS": "1"}
    return env


@pytest.fixture(scope="module")
def pngs(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("pngs")
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-30, 31, a.shape), 0, 255).astype(np.uint8)
    for folder in ("A", "B"):
        (root / folder).mkdir()
    Image.fromarray(a).save(root / "A" / "x.png")
    Image.fromarray(b).save(root / "B" / "x.png")
    return root


def test_distance_with_the_default_set_reports_every_metric_but_lpips(no_weights, pngs):
    run = run_cli_subprocess("distance", pngs / "A" / "x.png", pngs / "B" / "x.png", env=no_weights, check_rc=0)
    lines = run.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["psnr", "ssim(color=grey)", "ms_ssim", "fsim", "lpips"], run.stdout
    assert "dB" in lines[0]
    assert lines[-1].split(None, 1)[1].startswith("n/a: its weights could not be loaded here")
    assert "lpips: pretrained alexnet weights" in run.stderr and "TORCH_HOME" in run.stderr
    assert "Traceback" not in run.stderr


def test_distance_json_names_the_unavailable_metric_and_its_reason(no_weights, pngs):
    run = run_cli_subprocess("distance", pngs / "A" / "x.png", pngs / "B" / "x.png", "-m", "psnr", "-m", "stlpips",
                             "--json", env=no_weights, check_rc=0)
    rows = {r["metric"]: r for r in json.loads(run.stdout)["results"]}
    assert rows["psnr"]["applicable"] and rows["psnr"]["value"] > 0
    assert not rows["stlpips"]["applicable"]
    assert "stlpips-pytorch" in rows["stlpips"]["reason"]


def test_score_keeps_the_metrics_that_run(no_weights, pngs):
    a, b = pngs / "A" / "x.png", pngs / "B" / "x.png"
    run = run_cli_subprocess("score", a, b, a, "-m", "ssim", "-m", "dists", env=no_weights, check_rc=0)
    assert any(line.startswith("ssim") and "B" in line for line in run.stdout.splitlines()), run.stdout
    assert any(line.split()[:3] == ["dists", "n/a:", "its"] for line in run.stdout.splitlines()), run.stdout
    assert "dists: pretrained vgg16 weights" in run.stderr


def test_folders_report_the_others_and_name_the_missing_one(no_weights, pngs):
    run = run_cli_subprocess("distance", pngs / "A", pngs / "B", "-m", "psnr", "-m", "lpips", "--no-progress",
                             env=no_weights, check_rc=0)
    assert "psnr" in run.stdout and "lpips" not in run.stdout
    assert "percepmetric: lpips: pretrained alexnet weights" in run.stderr


def test_no_metric_that_can_run_is_one_line_and_exit_2(no_weights, pngs):
    run = run_cli_subprocess("distance", pngs / "A" / "x.png", pngs / "B" / "x.png", "-m", "lpips", "-m", "dists",
                             env=no_weights, check_rc=2)
    assert run.stdout == ""
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("percepmetric: error: no chosen metric can run")
    run = run_cli_subprocess("matrix", pngs / "A", env=no_weights, check_rc=2)
    assert run.stderr.count("\n") == 1 and "choose a metric that needs no weights with -m" in run.stderr


def test_a_weight_file_the_user_named_must_be_there(no_weights, pngs, tmp_path):
    run = run_cli_subprocess("distance", pngs / "A" / "x.png", pngs / "B" / "x.png", "-m", "psnr", "-m", "lpips",
                             "--weights", tmp_path / "absent.pt", env=no_weights, check_rc=2)
    assert "absent.pt" in run.stderr and run.stderr.count("\n") == 1


@pytest.mark.parametrize(("command", "default"), [("distance", "-m psnr -m ssim -m ms_ssim -m fsim -m lpips"),
                                                  ("score", "-m psnr -m ssim -m ms_ssim -m fsim -m lpips"),
                                                  ("matrix", "-m lpips")])
def test_help_names_the_default_metrics(command, default):
    run = run_cli_subprocess(command, "-h", check_rc=0)
    assert f"Default: {default}" in " ".join(run.stdout.split())


def test_bench_scores_the_others_and_names_the_skipped_one(no_weights, fixture_root, tmp_path):
    run = run_cli_subprocess("bench", "-m", "l2", "-m", "dists", "--root", fixture_root, "-s", "val/cnn",
                             "--no-progress", env=no_weights, check_rc=0)
    assert "percepmetric: dists skipped: pretrained vgg16 weights" in run.stderr
    assert any(line.split()[:2] == ["l2", "val/cnn"] for line in run.stdout.splitlines()), run.stdout
