"""The percepmetric command through a subprocess: output, JSON, and one-line errors with exit 2."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import requires_weights, run_cli, run_cli_subprocess


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
    paths["tiny"] = folder / "tiny.png"
    Image.fromarray(ref[:8, :8]).save(paths["tiny"])
    paths["small"] = folder / "small.png"
    Image.fromarray(ref[:16]).save(paths["small"])
    paths["text"] = folder / "notes.png"
    paths["text"].write_text("hello")
    return paths


def test_metrics_lists_direction_and_range():
    out = run_cli_subprocess("metrics", check_rc=0).stdout
    assert "psnr" in out and "higher is better" in out and "lower is better" in out and "[0, data_range]" in out
    assert max(len(line) for line in out.splitlines()) < 100
    rows = json.loads(run_cli_subprocess("metrics", "--json", check_rc=0).stdout)
    assert {r["name"] for r in rows} >= {"l2", "psnr"}


def test_distance_json(images):
    out = json.loads(run_cli_subprocess("distance", images["ref"], images["near"], "-m", "l2", "-m", "psnr", "--json",
                                        check_rc=0).stdout)
    values = {r["metric"].split("(")[0]: r for r in out["results"]}
    # "near" adds uniform integer noise in [-5, 5] (clipped): MSE <= (11**2 - 1) / 12 = 10, so
    # PSNR >= 10 * log10(255**2 / 10) = 38.1 dB (hand calculation); 30 leaves room.
    assert values["l2"]["value"] > 0 and values["psnr"]["value"] > 30


def test_score_says_which_is_closer(images):
    proc = run_cli_subprocess("score", images["ref"], images["far"], images["near"], "-m", "l2", "-m", "psnr",
                              check_rc=0)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(("l2", "psnr"))]
    assert len(lines) == 2 and all(line.rstrip().endswith("B") for line in lines)
    out = json.loads(run_cli_subprocess("score", images["ref"], images["near"], images["far"], "-m", "psnr", "--json",
                                        check_rc=0).stdout)
    assert out["results"][0]["closer"] == "A"


def test_score_demo_runs_without_files():
    proc = run_cli_subprocess("score", "--demo", "-m", "psnr", "-m", "l2", check_rc=0)
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
        (("distance", "{ref}", "{near}", "-m", "l2", "-o", "spatial=True"), "--map MAP.png"),
    ],
)
def test_bad_input_is_one_line_exit_2(images, args, needle):
    args = [a.format(**{k: str(v) for k, v in images.items()}) for a in args]
    proc = run_cli_subprocess(*args)
    assert proc.returncode == 2
    assert needle in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert proc.stdout == ""


# ---------------------------------------------------------------- in-process: percepmetric.cli.main


def strict_json(text: str):
    """json.loads that refuses Infinity and NaN, as jq and JavaScript do."""
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_no_arguments_prints_the_help_and_exits_0(capsys):
    code, out, err = run_cli(capsys)
    assert code == 0 and err == ""
    assert "Usage: percepmetric" in out and "distance" in out and "error" not in out


def test_json_of_identical_images_is_strict_json_with_null_for_infinity(images, capsys):
    code, out, _ = run_cli(capsys, "distance", images["ref"], images["ref"], "-m", "psnr", "-m", "l2", "--json")
    document = strict_json(out)
    psnr = document["results"][0]
    assert code == 0 and document["identical"] is True
    assert psnr["value"] is None and psnr["distance"] == 0.0 and psnr["applicable"] is True
    code, out, _ = run_cli(capsys, "score", images["ref"], images["ref"], images["near"], "-m", "psnr", "--json")
    document = strict_json(out)
    assert document["identical"] == {"ref_a": True, "ref_b": False}
    assert document["results"][0]["ref_a"] is None and document["results"][0]["closer"] == "A"
    code, out, _ = run_cli(capsys, "distance", images["ref"], images["ref"], "-m", "psnr")
    assert "inf dB (identical images)" in out


def test_a_metric_that_cannot_run_is_marked_and_the_others_are_shown(images, capsys):
    code, out, _ = run_cli(capsys, "distance", images["tiny"], images["tiny"], "-m", "psnr", "-m", "ssim", "-m", "fsim")
    assert code == 0
    lines = dict(line.split(None, 1) for line in out.splitlines())
    assert lines["ssim(color=grey)"].startswith("n/a: images of 8x8 are smaller than the 11x11")
    assert lines["fsim"] == "1" and lines["psnr"].startswith("inf")  # identical images: FSIM's maximum, 1
    code, out, _ = run_cli(capsys, "score", images["tiny"], images["tiny"], images["tiny"],
                           "-m", "ssim", "-m", "l2", "--json")
    rows = {r["metric"].split("(")[0]: r for r in strict_json(out)["results"]}
    assert code == 0 and rows["l2"]["applicable"] and rows["l2"]["closer"] == "tie"
    assert not rows["ssim"]["applicable"] and "8x8" in rows["ssim"]["reason"] and rows["ssim"]["ref_a"] is None


def test_psnr_is_shown_in_db_and_its_distance_form_is_labelled_mse(images, capsys):
    code, out, _ = run_cli(capsys, "distance", images["ref"], images["near"], "-m", "psnr")
    assert code == 0 and out.split()[0] == "psnr" and out.strip().endswith("dB")
    code, out, _ = run_cli(capsys, "distance", images["ref"], images["near"], "-m", "psnr", "-m", "ssim", "--json")
    psnr, ssim = strict_json(out)["results"]
    # >= 38.1 dB, see test_distance_json
    assert psnr["value"] > 30 and psnr["unit"] == "dB" and psnr["distance_label"] == "psnr as mse"
    assert abs(psnr["distance"] - 10 ** (-psnr["value"] / 10)) < 1e-9
    assert ssim["distance_label"].endswith(" as dssim")


def test_score_demo_saves_its_images(tmp_path, capsys):
    from percepmetric.data.examples import example_triplet
    from percepmetric.io import load_image

    code, out, _ = run_cli(capsys, "score", "--demo", "-m", "psnr", "--save", tmp_path / "demo", "--device", "cpu")
    assert code == 0 and f"saved as {tmp_path / 'demo' / 'ref.png'}" in out
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == ["a.png", "b.png", "ref.png"]
    for name, image in zip(("ref", "a", "b"), example_triplet()):
        assert torch.equal(load_image(tmp_path / "demo" / f"{name}.png"), image)


@requires_weights("alex")
def test_distance_map_of_lpips_is_a_figure(images, tmp_path, capsys):
    target = tmp_path / "maps" / "where.png"
    code, out, err = run_cli(capsys, "distance", images["ref"], images["far"], "-m", "lpips", "--map", target, "--json")
    assert code == 0, err
    document = strict_json(out)
    assert document["map"] == str(target) and document["results"][0]["value"] > 0
    with Image.open(target) as figure:
        assert figure.format == "PNG" and figure.size[0] > 3 * 32
    assert [p.name for p in target.parent.iterdir()] == ["where.png"]  # no temporary left


def test_option_values_parse_as_users_type_them(images, capsys):
    from percepmetric.cli_options import parse_option_value

    assert parse_option_value("true") is True and parse_option_value("False") is False
    assert parse_option_value("1", default=False) is True and parse_option_value("no", default=True) is False
    assert parse_option_value("1") == 1 and parse_option_value("255") == 255 and parse_option_value("lab") == "lab"
    code, out, _ = run_cli(capsys, "distance", images["ref"], images["near"], "-m", "ssim",
                        "-o", "downsample=false", "-o", "quantize=TRUE", "--json")
    spec = strict_json(out)["results"][0]["spec"]
    assert code == 0 and "downsample=False" in spec and "quantize=True" in spec


@pytest.mark.parametrize(
    "args,needle",
    [
        (("distance", "{ref}", "{near}", "-m", "lpips", "-o", "spatial=true"), "--map MAP.png"),
        (("distance", "{ref}", "{near}", "-m", "ssim", "--map", "out.png"),
         "has no per-pixel distance map (metrics with one: butteraugli, cvvdp, flip, lpips, stlpips)"),
        (("distance", "{ref}", "{near}", "--map", "out.jpg"), "ending in .png"),
        (("distance", "{ref}", "{near}", "-m", "l2", "--device", "foo"), "--device 'foo'"),
        (("score", "{ref}", "{near}", "{far}", "-m", "l2", "--save", "somewhere"), "use it with --demo"),
        (("score", "--demo", "-m", "l2", "--save", "/proc/x"), "--save /proc/x: cannot write there"),
        (("distance", "{tiny}", "{tiny}", "-m", "ssim"), "no chosen metric can run on these images (ssim"),
    ],
)
def test_new_options_refuse_bad_input_in_one_line(images, capsys, args, needle):
    code, out, err = run_cli(capsys, *[a.format(**{k: str(v) for k, v in images.items()}) for a in args])
    assert code == 2 and out == ""
    assert needle in err and len(err.strip().splitlines()) == 1 and err.startswith("percepmetric: error: ")
