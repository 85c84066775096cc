"""One policy per question, in the core, used everywhere: how a metric is labelled
(percepmetric.registry), which words mean yes and no (percepmetric.options.parse_bool), how many
CPUs a thread pool may use (percepmetric.devices.usable_cpus)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from percepmetric.registry import (
    create_metric,
    distance_label,
    metric_label,
    short_distance_labels,
    short_labels,
    unique_labels,
)

from helpers import synthetic_bapps_root


@pytest.fixture(scope="module")
def bapps_root(tmp_path_factory):
    return synthetic_bapps_root(tmp_path_factory, size=4)


def test_unique_labels_keep_labels_show_specs_of_a_clash_and_number_repeats(monkeypatch):
    from percepmetric import registry

    psnr, ssim, ssim_lpips = create_metric("psnr"), create_metric("ssim"), create_metric("ssim", convention="lpips")
    assert unique_labels([psnr, ssim_lpips]) == ["psnr", metric_label(ssim_lpips)]
    assert unique_labels([psnr, psnr, ssim]) == ["psnr", "psnr#2", metric_label(ssim)]
    # Two metrics of different options under one label (a label leaves out what options imply):
    monkeypatch.setattr(registry, "metric_label", lambda metric: metric.name)
    assert unique_labels([ssim, ssim_lpips, psnr]) == [ssim.spec, ssim_lpips.spec, "psnr"]


def test_distance_labels_say_what_the_number_is_under_any_name():
    assert distance_label("psnr") == "psnr as mse"
    assert distance_label(create_metric("ssim", convention="lpips")).endswith(" as dssim")
    assert distance_label(create_metric("l2")) == "l2"
    assert distance_label(create_metric("psnr"), "psnr#2") == "psnr#2 as mse"
    labels = ["ssim(convention=lpips)", "psnr#2", "l2"]
    assert short_labels(labels) == {"ssim(convention=lpips)": "ssim", "psnr#2": "psnr#2", "l2": "l2"}
    assert short_distance_labels(labels) == {"ssim(convention=lpips)": "ssim as dssim", "psnr#2": "psnr#2 as mse",
                                             "l2": "l2"}


def test_a_metric_given_twice_is_named_alike_by_the_bench_and_the_folder_comparison(bapps_root, tmp_path):
    from percepmetric.bench import run_benchmark
    from percepmetric.compare import compare_folders

    metrics = [create_metric("psnr"), create_metric("psnr"), create_metric("ssim", convention="lpips")]
    expected = ["psnr", "psnr#2", metric_label(metrics[2])]
    result = run_benchmark(metrics, ["val/cnn"], bapps_root, n_boot=5, cache_dir=tmp_path / "cache")
    assert result.metrics == expected
    assert {row["metric"] for row in result.rows} == set(expected)

    rng = np.random.default_rng(0)
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / folder / "x.png")
    table = compare_folders(tmp_path / "a", tmp_path / "b", metrics, device="cpu")
    assert [c for c in table.columns if c in expected] == expected


# ---------------------------------------------------------------- yes and no


@pytest.mark.parametrize("word, expected", [("true", True), (" Yes ", True), ("ON", True), ("1", True),
                                            ("False", False), ("no", False), ("off", False), ("0", False),
                                            ("", None), ("maybe", None), ("2", None), (True, None)])
def test_one_reader_of_boolean_words(word, expected):
    from percepmetric.options import parse_bool

    assert parse_bool(word) is expected


def test_option_values_take_the_boolean_words_of_their_context():
    from percepmetric.options import parse_option_value

    assert parse_option_value("On", False, command_line=True) is True
    assert parse_option_value("off", True, command_line=True) is False
    assert parse_option_value("TRUE", False) is True
    assert parse_option_value("yes", False) == "yes"  # in Python a likely mistake: the metric refuses it


def test_the_dmos_column_reads_the_same_words_as_options(tmp_path):
    from percepmetric.data.mos import load_mos_dataset
    from percepmetric.errors import InputError

    rng = np.random.default_rng(0)
    for name in ("r.png", "d0.png", "d1.png"):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / name)

    def load(flags: tuple[str, str]):
        csv = tmp_path / "set.csv"
        csv.write_text("reference,distorted,score,dmos\n" + "".join(
            f"r.png,d{i}.png,{i + 1},{flag}\n" for i, flag in enumerate(flags)))
        return load_mos_dataset("csv", csv)

    assert not load(("On", " yes")).higher_is_better
    assert load(("off", "MOS")).higher_is_better
    with pytest.raises(InputError, match="true/1/yes/on or false/0/no/off"):
        load(("maybe", "on"))


# ---------------------------------------------------------------- CPUs


def test_thread_pools_are_sized_by_the_cpus_this_process_may_use(monkeypatch):
    import os

    from percepmetric import devices

    if hasattr(os, "process_cpu_count"):
        monkeypatch.setattr(os, "process_cpu_count", lambda: 3)
    else:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)  # the machine's, not the process's
    assert devices.usable_cpus() == 3
    assert devices.decoding_threads(None) == 3  # what compare.py and set_features.py size their pools by
