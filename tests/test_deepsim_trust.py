"""DeePSiM under faults and hostile files: checkpoints that would run code, runs that would be
overwritten or resumed on other data, sizes the networks cannot take, output folders that
cannot be written, the labels and figures a new user reads, and the flags shared with the
other commands. CLI behaviour runs in this process through ``percepmetric.cli.main``."""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import stat
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch
from conftest import ROOT
from PIL import Image

from percepmetric import create_metric
from percepmetric.deepsim import evaluate as E
from percepmetric.deepsim.networks import build_comparator
from percepmetric.deepsim.train import (
    CHECKPOINT_FORMAT,
    DeepSimConfig,
    check_size,
    load_deepsim_checkpoint,
    train_generator,
)
from percepmetric.errors import InputError

from helpers import run_cli


class Payload:
    """Unpickling this calls ``Path.touch(marker)``: the stand-in for a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def write_payload(path: Path, marker: Path) -> Path:
    """A .pt file with the DeePSiM format key whose model state is the payload."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": CHECKPOINT_FORMAT, "config": {}, "model_config": {}, "comparator": {},
                "model_state": Payload(marker)}, path)
    return path


call = run_cli


def one_line_error(code, err, *fragments):
    assert code == 2, err
    assert err.strip().count("\n") == 0 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Two folders of three 48x48 photo crops: the same scene, different images."""
    from skimage import data as photos

    root = tmp_path_factory.mktemp("deepsim_trust")
    astronaut, coffee = photos.astronaut(), photos.coffee()
    for name, photo in (("a", astronaut), ("b", coffee)):
        (root / name).mkdir()
        for i in range(3):
            Image.fromarray(photo[100 * i: 100 * i + 48, 200: 248]).save(root / name / f"t{i}.png")
    return root


def tiny(data, out, **kw):
    base = dict(task="autoencoder", size=32, data=str(data / "a"), out=str(out), iterations=1, batch_size=2,
                width=0.125, discriminator_width=0.125, loss="image", comparator_pretrained=False,
                checkpoint_every=1, seed=0, device="cpu")
    base.update(kw)
    return DeepSimConfig(**base)


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    """One finished tiny run (image loss, one iteration)."""
    return train_generator(tiny(data, tmp_path_factory.mktemp("run") / "r"), progress=False)


TRAIN = ["--task", "autoencoder", "--size", "32", "--batch-size", "2", "--width", "0.125", "--loss", "image",
         "--random-comparator", "--device", "cpu", "--no-progress"]


# ---------------------------------------------------------------- item 1: no code runs from a checkpoint

def test_payload_is_live_under_plain_pickle(tmp_path):
    # what the checks below guard against: torch.load(weights_only=False) runs the payload
    marker = tmp_path / "ran"
    torch.load(write_payload(tmp_path / "evil.pt", marker), weights_only=False)
    assert marker.exists()


def test_evaluate_refuses_a_payload(capsys, data, tmp_path):
    marker = tmp_path / "ran"
    evil = write_payload(tmp_path / "evil.pt", marker)
    code, _, err = call(capsys, "deepsim", "evaluate", evil, "--data", data / "a", "--out", tmp_path / "eval")
    one_line_error(code, err, str(evil), "refused", "pickled")
    assert not marker.exists()


def test_bench_model_refuses_a_payload(capsys, data, tmp_path):
    marker = tmp_path / "ran"
    evil = write_payload(tmp_path / "evil.pt", marker)
    code, _, err = call(capsys, "bench", "--model", f"deepsim:{evil}", "--data", data / "a", "-m", "l2")
    one_line_error(code, err, str(evil), "refused")
    assert not marker.exists()


def test_train_resume_refuses_a_payload(capsys, data, tmp_path):
    marker = tmp_path / "ran"
    out = tmp_path / "run"
    write_payload(out / "last.pt", marker)
    code, _, err = call(capsys, "deepsim", "train", *TRAIN, "--data", data / "a", "--out", out, "--iterations", "2",
                        "--resume")
    one_line_error(code, err, "last.pt", "refused")
    assert not marker.exists()


def test_checkpoint_missing_fields_is_one_line(capsys, data, run, tmp_path):
    ckpt = load_deepsim_checkpoint(run)
    partial = {k: v for k, v in ckpt.items() if k not in ("model_state", "opt_g")}
    torch.save(partial, tmp_path / "partial.pt")
    code, _, err = call(capsys, "deepsim", "evaluate", tmp_path / "partial.pt", "--data", data / "a",
                        "--out", tmp_path / "eval")
    one_line_error(code, err, "partial.pt", "missing", "'model_state'")
    out = tmp_path / "run"
    out.mkdir()
    torch.save({k: v for k, v in ckpt.items() if k != "opt_g"}, out / "last.pt")
    code, _, err = call(capsys, "deepsim", "train", *TRAIN, "--data", data / "a", "--out", out, "--iterations", "2",
                        "--resume")
    one_line_error(code, err, "last.pt", "missing", "'opt_g'")
    # a field that is there but does not fit: still one line, not a traceback
    torch.save({**ckpt, "model_state": {"nonsense": torch.zeros(1)}}, tmp_path / "bad_state.pt")
    code, _, err = call(capsys, "deepsim", "evaluate", tmp_path / "bad_state.pt", "--data", data / "a",
                        "--out", tmp_path / "eval")
    one_line_error(code, err, "bad_state.pt", "damaged")


def test_checkpoints_hold_plain_data_only(run):
    # every state, RNGs included, loads with weights_only=True
    ckpt = torch.load(run, weights_only=True)
    assert set(ckpt["rng"]) >= {"torch", "noise", "data"} and isinstance(ckpt["rng"]["torch"], torch.Tensor)
    assert ckpt["data_fingerprint"]["files"] == 3


# ---------------------------------------------------------------- item 2: sizes the networks cannot take

@pytest.mark.parametrize("size", [16, 24])
def test_demo_too_small_says_the_smallest_size(capsys, tmp_path, size):
    code, _, err = call(capsys, "deepsim", "demo", "--size", size, "--out", tmp_path / "demo", "--device", "cpu")
    one_line_error(code, err, f"--size {size}", "alex:conv5", "at least 31 px",
                   "smallest --size this run accepts is 32")
    assert not (tmp_path / "demo").exists()  # refused before anything was written


def test_train_autoencoder_too_small_says_the_smallest_size(capsys, data, tmp_path):
    code, _, err = call(capsys, "deepsim", "train", "--task", "autoencoder", "--size", "16", "--data", data / "a",
                        "--out", tmp_path / "o", "--device", "cpu")
    one_line_error(code, err, "--size 16", "smallest --size this run accepts is 32")
    assert not (tmp_path / "o").exists()


def test_size_limits_come_from_the_networks():
    full = DeepSimConfig(task="autoencoder", loss="full", comparator_pretrained=False)
    check_size(DeepSimConfig(**{**full.__dict__, "size": 32}))  # the limit: accepted
    with pytest.raises(InputError, match="multiple of 8.*smallest --size this run accepts is 32"):
        check_size(DeepSimConfig(**{**full.__dict__, "size": 31}))
    # the comparator's own limit, 31, holds for real tensors: one pixel less fails in torch
    comparator = build_comparator("alex:conv5", pretrained=False)
    comparator(torch.zeros(1, 3, 31, 31))
    with pytest.raises(RuntimeError):
        comparator(torch.zeros(1, 3, 30, 30))
    # the image loss alone has no comparator: the autoencoder's own limit, 8
    check_size(DeepSimConfig(task="autoencoder", loss="image", size=8))
    with pytest.raises(InputError, match="--size 4: the autoencoder needs at least 8 px"):
        check_size(DeepSimConfig(task="autoencoder", loss="image", size=4))
    # the conv5 inverter reads pool5: 63 px, one less refused
    invert = dict(task="invert", layer="conv5", loss="image", pretrained=False)
    check_size(DeepSimConfig(size=63, **invert))
    with pytest.raises(InputError, match="at least 63 px; the smallest --size this run accepts is 63"):
        check_size(DeepSimConfig(size=62, **invert))
    # a VGG comparator has its own limit (relu3_3: 4 px)
    check_size(DeepSimConfig(task="autoencoder", loss="features", comparator="vgg:relu3_3", comparator_pretrained=False,
                           size=8))


# ---------------------------------------------------------------- item 3: output paths

def test_out_that_cannot_be_created_is_one_line(capsys, data, run, tmp_path):
    code, _, err = call(capsys, "deepsim", "demo", "--out", "/proc/x", "--size", "32", "--device", "cpu")
    one_line_error(code, err, "--out /proc/x")
    code, _, err = call(capsys, "deepsim", "evaluate", run, "--data", data / "a", "--out", "/proc/x")
    one_line_error(code, err, "--out /proc/x")
    code, _, err = call(capsys, "deepsim", "train", *TRAIN, "--data", data / "a", "--out", "/proc/x",
                        "--iterations", "1")
    one_line_error(code, err, "--out /proc/x")


def test_out_that_is_a_file_is_one_line(capsys, data, run, tmp_path):
    existing = tmp_path / "file.txt"
    existing.write_text("mine")
    for args in (["deepsim", "demo", "--size", "32", "--device", "cpu"],
                 ["deepsim", "evaluate", run, "--data", data / "a"],
                 ["deepsim", "train", *TRAIN, "--data", data / "a", "--iterations", "1"]):
        code, _, err = call(capsys, *args, "--out", existing)
        one_line_error(code, err, f"--out {existing}", "not a folder")
    assert existing.read_text() == "mine"


# ---------------------------------------------------------------- item 4: an existing run is not overwritten

def test_train_without_resume_refuses_an_existing_run(capsys, data, tmp_path):
    out = tmp_path / "run"
    final = train_generator(tiny(data, out), progress=False)
    before = final.read_bytes()
    code, _, err = call(capsys, "deepsim", "train", *TRAIN, "--data", data / "a", "--out", out, "--iterations", "2")
    one_line_error(code, err, "already holds a run", "--resume", "--out")
    assert final.read_bytes() == before


def test_demo_refuses_an_earlier_demo(capsys, data, tmp_path):
    train_generator(tiny(data, tmp_path / "demo" / "deepsim"), progress=False)
    code, _, err = call(capsys, "deepsim", "demo", "--out", tmp_path / "demo", "--size", "32", "--device", "cpu")
    one_line_error(code, err, "already holds a demo", "--out")


# ---------------------------------------------------------------- item 5: resume on other data

def test_resume_refuses_other_data_and_accepts_a_copy(capsys, data, tmp_path):
    out = tmp_path / "run"
    train_generator(tiny(data, out), progress=False)
    code, _, err = call(capsys, "deepsim", "train", *TRAIN, "--data", data / "b", "--out", out, "--iterations", "2",
                        "--resume")
    one_line_error(code, err, "--resume", f"--data {data / 'b'}", "not the data this run was trained on")
    assert load_deepsim_checkpoint(out / "last.pt")["step"] == 1
    # the same images in another folder (a moved data set) are the same data
    copy = tmp_path / "moved"
    shutil.copytree(data / "a", copy)
    code, _, err = call(capsys, "deepsim", "train", *TRAIN, "--data", copy, "--out", out, "--iterations", "2",
                        "--resume")
    assert code == 0, err
    assert load_deepsim_checkpoint(out / "final.pt")["step"] == 2
    # one image changed, same name and size: refused too (its bytes are in the fingerprint)
    changed = tmp_path / "changed"
    shutil.copytree(data / "a", changed)
    pixels = bytearray((changed / "t1.png").read_bytes())
    pixels[-20] ^= 0xFF
    (changed / "t1.png").write_bytes(bytes(pixels))
    code, _, err = call(capsys, "deepsim", "train", *TRAIN, "--data", changed, "--out", out, "--iterations", "3",
                        "--resume")
    one_line_error(code, err, "not the data this run was trained on")


# ---------------------------------------------------------------- items 6 and 7: temporaries, permissions

def test_stale_temporaries_are_removed_at_the_start(capsys, data, tmp_path):
    out = tmp_path / "run"
    train_generator(tiny(data, out), progress=False)
    stale = [out / ".last.pt.k1ll3d.tmp", out / ".final.pt.abc.tmp", out / ".log.csv.x.tmp"]
    for path in stale:
        path.write_bytes(b"\0" * 1000)
    mine = out / "notes.tmp"
    mine.write_text("kept")
    code, _, err = call(capsys, "deepsim", "train", *TRAIN, "--data", data / "a", "--out", out, "--iterations", "2",
                        "--resume")
    assert code == 0, err
    assert not any(path.exists() for path in stale) and mine.read_text() == "kept"


def test_checkpoints_follow_the_umask(data, tmp_path):
    old = os.umask(0o002)
    try:
        final = train_generator(tiny(data, tmp_path / "run"), progress=False)
    finally:
        os.umask(old)
    for path in (final, final.parent / "last.pt", final.parent / "log.csv"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o664, path


# ---------------------------------------------------------------- item 8: labels say what the numbers are

def _captured_figures(monkeypatch):
    figures = []
    close = plt.close

    def keep(fig=None):
        figures.append(fig)
        close(fig)

    monkeypatch.setattr(plt, "close", keep)
    return figures


def test_bench_labels_psnr_distance_as_mse(data, run, tmp_path, monkeypatch):
    figures = _captured_figures(monkeypatch)
    metrics = [create_metric("l2"), create_metric("psnr"), create_metric("ssim")]
    table = E.bench_models([f"deepsim:{run}"], str(data / "a"), metrics, tmp_path, plot=True)
    labels = list(table["distance"])
    assert labels[:2] == ["l2", "psnr as mse"] and re.fullmatch(r"ssim(\(.*\))? as dssim", labels[2])
    text = E.format_table(table)
    assert "psnr as mse" in text and not re.search(r"^psnr\s+(?!as mse)", text, re.M)
    assert "psnr as mse" in (tmp_path / "deepsim_bench.csv").read_text()
    titles = [ax.get_title() for fig in figures for ax in fig.axes if ax.get_title()]
    assert titles == labels
    assert max(len(line) for line in text.splitlines()) < 100


# ---------------------------------------------------------------- item 9: figures have row and column labels

def test_grids_have_row_and_column_labels(data, run, tmp_path, monkeypatch):
    figures = _captured_figures(monkeypatch)
    E.evaluate_run(f"deepsim:{run}", data / "a", tmp_path / "eval", iterations=2, comparator="alex:conv2",
                   device="cpu")
    by_title = {fig.axes[0].get_title(): fig.axes[0] for fig in figures}
    reencode = next(ax for title, ax in by_title.items() if "Fig. 5" in title)
    assert [t.get_text() for t in reencode.get_yticklabels()] == ["original", "re-encoded 1x", "re-encoded 2x"]
    assert [t.get_text() for t in reencode.get_xticklabels()] == ["t0", "t1", "t2"]
    interpolation = next(ax for title, ax in by_title.items() if "Fig. 7" in title)
    assert [t.get_text() for t in interpolation.get_yticklabels()] == ["t0 → t1"]
    assert interpolation.get_xticklabels()[0].get_text() == "t=0"
    recon = next(ax for title, ax in by_title.items() if "reconstructions" in title)
    assert [t.get_text() for t in recon.get_yticklabels()] == ["original", "reconstruction"]
    # the labelled PNG is larger than the bare grid it frames
    assert Image.open(tmp_path / "eval" / "reencode.png").size[0] > 3 * 34 + 2


def test_bare_grid_is_unchanged(tmp_path):
    rows = [torch.rand(2, 3, 8, 8) for _ in range(2)]
    assert Image.open(E.save_grid(rows, tmp_path / "g.png", pad=2)).size == (2 * 10 + 2, 2 * 10 + 2)


# ---------------------------------------------------------------- item 10: the flags of the other commands

def test_help_shows_no_progress_and_option_and_hides_the_old_names(capsys):
    for command in ("train", "demo"):
        code, out, _ = call(capsys, "deepsim", command, "--help")
        assert code == 0 and "--no-progress" in out and "--quiet" not in out
    code, out, _ = call(capsys, "deepsim", "train", "--help")
    assert "-o, --option" in out and "--metric-option" not in out


@pytest.mark.parametrize("flags", [["--no-progress", "-o", "data_range=2.0"],
                                   ["--quiet", "--metric-option", "data_range=2.0"]])
def test_new_flags_and_their_old_aliases_work(capsys, data, tmp_path, flags):
    out = tmp_path / "run"
    args = ["--task", "autoencoder", "--size", "32", "--batch-size", "2", "--width", "0.125", "--loss", "metric",
            "--metric", "l2", "--device", "cpu", "--data", data / "a", "--out", out, "--iterations", "1"]
    code, _, err = call(capsys, "deepsim", "train", *args, *flags)
    assert code == 0, err
    assert "it/s" not in err  # no progress bar
    assert load_deepsim_checkpoint(out / "final.pt")["config"]["metric_options"] == {"data_range": 2.0}


def test_bad_option_names_the_flag(capsys, data, tmp_path):
    common = ["deepsim", "train", *TRAIN, "--data", data / "a", "--out", tmp_path / "o"]
    code, _, err = call(capsys, *common, "--metric", "l2", "-o", "oops")
    one_line_error(code, err, "--option 'oops': expected KEY=VALUE")
    code, _, err = call(capsys, *common, "-o", "data_range=2")  # an option of no metric is not dropped silently
    one_line_error(code, err, "-o/--option", "--metric")
    assert not (tmp_path / "o").exists()


def test_options_are_split_and_read_by_the_shared_parser(monkeypatch):
    # issue 12: one KEY=VALUE parser (percepmetric.cli_options), no private copy in deepsim
    import percepmetric.deepsim.commands as C
    from percepmetric.cli_options import split_option_items

    seen = []
    monkeypatch.setattr(C, "split_option_items", lambda items: seen.append(items) or split_option_items(items))
    items = ("data-range=255", "downsample=yes", "convention=lpips")
    assert C._options("ssim", items) == {"data_range": 255, "downsample": True, "convention": "lpips"}
    assert seen == [items]
    with pytest.raises(InputError, match=r"^--option 'oops': expected KEY=VALUE$"):
        C._options("ssim", ("oops",))


# ---------------------------------------------------------------- item 11: the documentation

def test_docs_name_only_flags_that_exist_and_no_machine_path():
    import click

    from percepmetric.cli import cli

    text = (ROOT / "docs" / "deepsim.md").read_text()
    assert "/work/" not in text
    known = set()
    for command in (cli.commands["deepsim"].commands.values(), [cli.commands["bench"]]):
        for cmd in command:
            for param in cmd.params:
                if isinstance(param, click.Option):
                    known.update(param.opts, param.secondary_opts)  # --fid/--no-fid: both are flags
    known.add("--no-deps")  # pip's, in the line that installs the FID network
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", text))
    assert named <= known, sorted(named - known)
    # docs/metrics.md: MS-SSIM takes 64x64 images (three scales), so it is no example of a skipped metric
    assert not re.search(r"MS-SSIM\s+on\s+64x64", text)
