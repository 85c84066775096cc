"""Options per metric: ``-m NAME:KEY=VALUE[,KEY=VALUE...]`` in distance, score and bench.

The spec's own options win over ``-o`` for that metric, ``-o`` still reaches every metric that
takes it, bench's default set is written in the same syntax (its options are presets that
``-o`` overrides), and every table and file names each metric by a label of its own.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from percepmetric.cli_options import metric_requests, parse_metric_spec
from percepmetric.errors import InputError

from helpers import pretrained_lpips, run_cli


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("spec-images")
    rng = np.random.default_rng(3)
    ref = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    paths = {"ref": folder / "ref.png"}
    Image.fromarray(ref).save(paths["ref"])
    for name, spread in (("near", 6), ("far", 50)):
        noisy = np.clip(ref.astype(int) + rng.integers(-spread, spread + 1, ref.shape), 0, 255).astype(np.uint8)
        paths[name] = folder / f"{name}.png"
        Image.fromarray(noisy).save(paths[name])
    return paths


def _one_line_error(code: int, err: str) -> str:
    assert code == 2 and err.count("\n") == 1 and err.startswith("percepmetric: error: "), err
    return err


# ---------------------------------------------------------------- the syntax


def test_spec_syntax_splits_name_and_options():
    spec = parse_metric_spec("MS-SSIM:convention=matlab,scales=3,data-range=255")
    assert spec.name == "ms_ssim" and spec.text == "MS-SSIM:convention=matlab,scales=3,data-range=255"
    assert spec.options == {"convention": "matlab", "scales": "3", "data_range": "255"}  # as typed
    assert parse_metric_spec("lpips").options == {}
    assert parse_metric_spec("l2:color=lab,color=rgb").options == {"color": "rgb"}  # the last wins, as in -o


def test_commas_inside_brackets_or_quotes_belong_to_the_value():
    spec = parse_metric_spec("lpips:input_range=(-1,1),net=vgg,weights='a,b.pt'")
    assert spec.options == {"input_range": "(-1,1)", "net": "vgg", "weights": "'a,b.pt'"}
    [(_, options)] = metric_requests(["lpips:input_range=(-1,1),net=vgg,weights='a,b.pt'"])
    assert options == {"input_range": (-1, 1), "net": "vgg", "weights": "a,b.pt"}  # the one parser, options.py


@pytest.mark.parametrize("text,needle", [
    (":net=vgg", "-m :net=vgg: expected NAME or NAME:KEY=VALUE"),
    ("lpips:net", "'net' is not KEY=VALUE"),
    ("lpips:input_range=-1,1", "'1' is not KEY=VALUE (a value with commas goes in brackets, e.g. input_range=(-1,1))"),
    ("ssim:", "an empty item"),
    ("ssim:convention=lpips,,color=rgb", "an empty item"),
    ("lpips:=vgg", "'=vgg' is not KEY=VALUE"),
])
def test_malformed_specs_are_one_line(text, needle):
    with pytest.raises(InputError, match=None) as caught:
        parse_metric_spec(text)
    assert needle in str(caught.value) and "\n" not in str(caught.value)


# ---------------------------------------------------------------- which option wins


def test_spec_options_win_over_o_and_flags_while_o_reaches_every_metric():
    requests = metric_requests(["l2:color=lab", "l2", "lpips:net=vgg"], "alex", None, None,
                               ["color=rgb", "convention=lpips"])
    options = [opts for _, opts in requests]
    assert options[0] == {"color": "lab", "convention": "lpips"}
    assert options[1] == {"color": "rgb", "convention": "lpips"}
    assert options[2] == {"net": "vgg"}  # the spec over --net; LPIPS takes neither color nor convention


def test_default_specs_are_presets_that_o_overrides():
    [(_, options)] = metric_requests((), extra=["color=rgb"], default=("l2:color=lab,convention=lpips",))
    assert options == {"color": "rgb", "convention": "lpips"}


def test_unknown_key_in_a_spec_names_the_metric_and_the_key(images, capsys):
    code, out, err = run_cli(capsys, "distance", images["ref"], images["near"], "-m", "psnr", "-m", "ssim:sigma=3")
    err = _one_line_error(code, err)
    assert "-m ssim:sigma=3: metric ssim has no option 'sigma'" in err and not out
    # -o still refuses a key that no chosen metric takes, even one a spec gives another metric
    code, _, err = run_cli(capsys, "distance", images["ref"], images["near"], "-m", "l2:color=lab", "-o", "net=vgg")
    assert "option 'net' is not accepted by any chosen metric (l2)" in _one_line_error(code, err)


def test_a_map_is_refused_in_a_spec_as_in_o(images, capsys):
    code, _, err = run_cli(capsys, "distance", images["ref"], images["near"], "-m", "lpips:spatial=true")
    assert "-m lpips:spatial=true: 'spatial' gives a distance map" in _one_line_error(code, err)


# ---------------------------------------------------------------- labels: one per metric, in every table and file


def test_distance_compares_variants_under_distinct_labels(images, capsys):
    pretrained_lpips("vgg")  # skips, naming the file, where the VGG trunk is absent
    args = ["-m", "lpips:net=alex", "-m", "lpips:net=vgg", "-m", "ssim:convention=lpips", "-m", "ssim",
            "-o", "downsample=false"]
    code, out, err = run_cli(capsys, "distance", images["ref"], images["far"], *args, "--json")
    assert code == 0, err
    results = json.loads(out)["results"]
    labels = [r["metric"] for r in results]
    assert len(set(labels)) == 4, labels
    assert "net=alex" in labels[0] and "net=vgg" in labels[1] and results[0]["value"] != results[1]["value"]
    assert "convention=lpips" in labels[2] and "downsample=False" in labels[3]  # -o reached both SSIMs
    code, out, _ = run_cli(capsys, "distance", images["ref"], images["far"], *args)
    assert code == 0 and [line.split()[0] for line in out.splitlines()] == labels


def test_score_table_and_json_keep_labels_distinct(images, capsys):
    args = ["-m", "l2:color=lab", "-m", "l2", "-m", "ssim", "-m", "ssim:quantize=false", "-o", "convention=lpips"]
    code, out, err = run_cli(capsys, "score", images["ref"], images["near"], images["far"], *args, "--json")
    assert code == 0, err
    labels = [r["metric"] for r in json.loads(out)["results"]]
    assert len(set(labels)) == 4 and "quantize=False" in labels[3], labels
    code, out, _ = run_cli(capsys, "score", images["ref"], images["near"], images["far"], *args)
    rows = [line.split()[0] for line in out.splitlines()[4:]]
    assert code == 0 and rows == labels, out


@pytest.mark.parametrize("command", ["distance", "score"])
@pytest.mark.parametrize("specs,needle", [
    (("ssim", "ssim"), "-m ssim and -m ssim are the same metric (ssim(color=grey)): give it once"),
    (("SSIM", "ssim:convention=matlab"), "-m SSIM and -m ssim:convention=matlab are the same metric"),
])
def test_the_same_metric_twice_is_refused(images, capsys, command, specs, needle):
    paths = [images["ref"], images["near"]] + ([images["far"]] if command == "score" else [])
    code, out, err = run_cli(capsys, command, *paths, *[arg for spec in specs for arg in ("-m", spec)])
    assert needle in _one_line_error(code, err) and not out


def test_two_metrics_under_one_label_are_refused(images, capsys, monkeypatch):
    # No registry metric has such a pair today; a label that hides an option must not merge two columns.
    import percepmetric.registry

    monkeypatch.setattr(percepmetric.registry, "metric_label", lambda metric: metric.name)
    code, _, err = run_cli(capsys, "distance", images["ref"], images["near"], "-m", "l2", "-m", "l2:color=lab")
    assert "-m l2 and -m l2:color=lab would share the label 'l2'" in _one_line_error(code, err)


# ---------------------------------------------------------------- bench


def test_bench_default_set_is_written_as_specs():
    from percepmetric.bench.commands import DEFAULT_BENCH_METRICS

    specs = [parse_metric_spec(text) for text in DEFAULT_BENCH_METRICS]
    assert [s.name for s in specs] == ["l2", "ssim", "lpips"]
    assert specs[0].options == {"color": "lab", "convention": "lpips"} and specs[1].options == {"convention": "lpips"}


def test_bench_variants_get_distinct_labels_short_names_and_files(tmp_path, monkeypatch, capsys):
    """bench -m lpips:net=alex -m lpips:net=vgg -m l2 on the embedded sentinels."""
    pretrained_lpips("vgg")
    monkeypatch.setenv("PERCEPMETRIC_CACHE", str(tmp_path / "cache"))
    for name in ("PERCEPMETRIC_BAPPS", "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no BAPPS in the default folder: the sentinels
    out_dir = tmp_path / "out"
    code, out, err = run_cli(capsys, "bench", "-m", "lpips:net=alex", "-m", "lpips:net=vgg", "-m", "l2",
                             "--split", "val/cnn", "--bootstrap", "5", "--out", out_dir, "--no-progress")
    assert code == 0, err
    assert "synthetic sentinels" in err
    with open(out_dir / "results.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["metric"] != "human (ceiling)"]
    labels = [r["metric"] for r in rows]
    assert len(labels) == 3 and len(set(labels)) == 3 and len({r["spec"] for r in rows}) == 3, labels
    assert all(r["status"] == "complete" for r in rows)
    files = sorted(p.name for p in (out_dir / "distances").rglob("*.npz"))
    assert len(files) == 3 and len(set(files)) == 3, files
    table = [line.split()[0] for line in out.splitlines() if " val/cnn " in line and "complete" in line]
    assert table == ["lpips-alex", "lpips-vgg", "l2"], out


def test_bench_refuses_the_same_metric_twice(capsys):
    code, _, err = run_cli(capsys, "bench", "-m", "l2", "-m", "l2:color=rgb", "--split", "val/cnn")
    assert "-m l2 and -m l2:color=rgb are the same metric" in _one_line_error(code, err)


def test_labels_show_auto_options_a_user_sets_but_not_what_auto_resolves_to():
    from percepmetric.registry import create_metric, metric_label

    assert metric_label(create_metric("ssim")) == "ssim(color=grey)"
    lpips_convention = "ssim(color=rgb,convention=lpips,downsample=False)"  # not quantize=lpips_code
    assert metric_label(create_metric("ssim", convention="lpips")) == lpips_convention
    assert metric_label(create_metric("ssim", quantize=True)) == "ssim(color=grey,quantize=True)"
    # the float Y of the SR toolboxes against MATLAB's integer Y: two columns, not one refused pair
    float_y, integer_y = create_metric("ssim", color="y"), create_metric("ssim", color="y", quantize=True)
    assert metric_label(float_y) != metric_label(integer_y)
