"""The percepmetric command through a subprocess: output, JSON, and one-line errors with exit 2."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image


def run(*args, check_rc=None):
    proc = subprocess.run([sys.executable, "-m", "percepmetric.cli", *map(str, args)], capture_output=True, text=True, timeout=300)
    if check_rc is not None:
        assert proc.returncode == check_rc, proc.stderr + proc.stdout
    return proc


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("img")
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    near = np.clip(ref.astype(int) + rng.integers(-5, 6, ref.shape), 0, 255).astype(np.uint8)
    far = np.clip(ref.astype(int) + rng.integers(-60, 61, ref.shape), 0, 255).astype(np.uint8)
    paths = {}
    for name, array in (("ref", ref), ("near", near), ("far", far)):
        paths[name] = folder / f"{name}.png"
        Image.fromarray(array).save(paths[name])
    paths["small"] = folder / "small.png"
    Image.fromarray(ref[:16]).save(paths["small"])
    paths["text"] = folder / "notes.png"
    paths["text"].write_text("hello")
    return paths


def test_metrics_lists_direction_and_range():
    out = run("metrics", check_rc=0).stdout
    assert "psnr" in out and "higher is better" in out and "lower is better" in out and "[0, data_range]" in out
    rows = json.loads(run("metrics", "--json", check_rc=0).stdout)
    assert {r["name"] for r in rows} >= {"l2", "psnr"}


def test_distance_json(images):
    out = json.loads(run("distance", images["ref"], images["near"], "-m", "l2", "-m", "psnr", "--json", check_rc=0).stdout)
    values = {r["metric"].split("(")[0]: r for r in out["results"]}
    assert values["l2"]["value"] > 0 and values["psnr"]["value"] > 30


def test_score_says_which_is_closer(images):
    proc = run("score", images["ref"], images["far"], images["near"], "-m", "l2", "-m", "psnr", check_rc=0)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(("l2", "psnr"))]
    assert len(lines) == 2 and all(line.rstrip().endswith("B") for line in lines)
    out = json.loads(run("score", images["ref"], images["near"], images["far"], "-m", "psnr", "--json", check_rc=0).stdout)
    assert out["results"][0]["closer"] == "A"


def test_score_demo_runs_without_files():
    proc = run("score", "--demo", "-m", "psnr", "-m", "l2", check_rc=0)
    assert "astronaut" in proc.stdout


@pytest.mark.parametrize(
    "args,needle",
    [
        (("distance", "{ref}", "missing.png", "-m", "l2"), "missing.png: no such file"),
        (("distance", "{ref}", "{text}", "-m", "l2"), "notes.png: not a readable image"),
        (("distance", "{ref}", "{small}", "-m", "l2"), "small.png: size"),
        (("distance", "{ref}", "{near}", "-m", "nosuch"), "unknown metric 'nosuch'"),
        (("distance", "{ref}", "{near}", "-m", "l2", "-o", "sigma=3"), "option 'sigma'"),
        (("distance", "{ref}", "{near}", "-m", "l2", "-o", "color=hsv"), "color must be one of"),
        (("distance", "{ref}", "{near}", "-m", "l2", "--bogus"), "--bogus"),
        (("score", "{ref}", "{near}", "-m", "l2"), "exactly three images"),
        (("distance", "{ref}", "{near}", "-m", "l2", "-o", "spatial=True"), "option 'spatial' returns a distance map"),
    ],
)
def test_bad_input_is_one_line_exit_2(images, args, needle):
    args = [a.format(**{k: str(v) for k, v in images.items()}) for a in args]
    proc = run(*args)
    assert proc.returncode == 2
    assert needle in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert proc.stdout == ""
