"""Distance matrices: ``percepmetric.pairwise`` and the ``percepmetric matrix`` command.

Every entry must be what ``percepmetric.distance`` gives for the same pair (within 1e-6), the
matrix of a set against itself exactly symmetric with a zero diagonal, and the tiling must not
change the numbers. LPIPS is checked with the pretrained AlexNet trunk (skipped where it is
missing), on random 64x64 images.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import percepmetric
from percepmetric import InputError, pairwise

from helpers import pretrained_lpips, requires_weights, run_cli, run_cli_subprocess

SIZE = 64


def random_images(n: int, seed: int, size: int = SIZE) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def distances_of_all_pairs(x: torch.Tensor, y: torch.Tensor, metric: str, **options) -> torch.Tensor:
    """The reference: ``distance`` on every (i, j) pair, as two long batches."""
    i, j = torch.meshgrid(torch.arange(len(x)), torch.arange(len(y)), indexing="ij")
    return percepmetric.distance(x[i.flatten()], y[j.flatten()], metric=metric, **options).reshape(len(x), len(y))


@pytest.fixture(scope="module")
def alex() -> None:
    pretrained_lpips("alex")  # skips the LPIPS tests where the AlexNet trunk is missing


@pytest.mark.parametrize("metric", ["lpips", "l2", "ssim", "psnr"])
def test_matrix_equals_distance_on_every_pair(metric, request):
    if metric == "lpips":
        request.getfixturevalue("alex")
    x = random_images(7, seed=1)
    matrix = pairwise(x, metric=metric)
    assert matrix.shape == (7, 7) and matrix.dtype == torch.float32
    reference = distances_of_all_pairs(x, x, metric)
    off_diagonal = ~torch.eye(7, dtype=torch.bool)
    assert (matrix - reference)[off_diagonal].abs().max() <= 1e-6
    assert torch.equal(matrix, matrix.T)
    assert torch.equal(matrix.diagonal(), torch.zeros(7))


@pytest.mark.parametrize("metric", ["lpips", "l2", "ssim", "psnr"])
def test_second_set_gives_n_by_m(metric, request):
    if metric == "lpips":
        request.getfixturevalue("alex")
    x, y = random_images(5, seed=2), random_images(3, seed=3)
    matrix = pairwise(x, y, metric=metric)
    assert matrix.shape == (5, 3)
    assert (matrix - distances_of_all_pairs(x, y, metric)).abs().max() <= 1e-6


def test_identical_images_in_two_sets_are_exact_zeros(alex):
    x, y = random_images(4, seed=4), random_images(3, seed=5)
    y[1] = x[2]
    matrix = pairwise(x, y)
    assert matrix[2, 1] == 0.0
    assert (matrix[torch.arange(4) != 2] > 0).all()


def test_lpips_computes_each_images_features_once(alex, monkeypatch):
    """N trunk passes, not N^2: one pass per batch of images."""
    metric = percepmetric.functional.private_metric("lpips", {}, torch.device("cpu"))
    calls = []
    taps = metric.trunk.taps
    monkeypatch.setattr(metric.trunk, "taps", lambda z: calls.append(z.shape[0]) or taps(z))
    pairwise(random_images(10, seed=6), batch_size=4)
    assert calls == [4, 4, 2]


@pytest.mark.parametrize("metric", ["lpips", "l2", "ssim"])
def test_a_tiny_tile_changes_nothing(metric, request):
    if metric == "lpips":
        request.getfixturevalue("alex")
    x, y = random_images(7, seed=7), random_images(5, seed=8)
    for second in (None, y):
        whole = pairwise(x, second, metric=metric)
        tiled = pairwise(x, second, metric=metric, tile_size=2, memory_budget=1)
        if metric == "lpips":
            assert torch.equal(whole, tiled)
        else:  # the metric runs on batches of other lengths: float sums may round in another order
            assert (whole - tiled).abs().max() <= 1e-7


def test_memory_budget_sets_the_tile(alex, monkeypatch):
    """A tiny budget gives one-row tiles, whose number shows in the progress total."""
    seen = []
    pairwise(random_images(4, seed=9), memory_budget=1, progress=lambda done, total: seen.append(total))
    assert seen[-1] == 1 + 4 * 5 // 2  # one trunk batch, then the 10 tiles on or above the diagonal


def test_lists_of_files_and_arrays(tmp_path, alex):
    from PIL import Image

    images = (random_images(3, seed=10) * 255).round().to(torch.uint8)
    paths = []
    for k, image in enumerate(images):
        paths.append(tmp_path / f"{k}.png")
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(paths[-1])
    from_files = pairwise(paths, batch_size=2)
    from_arrays = pairwise([image.permute(1, 2, 0).numpy() for image in images])
    assert torch.equal(from_files, from_arrays)
    assert torch.equal(from_files, pairwise(images))


@requires_weights("alex")
def test_bad_input_is_one_line():
    with pytest.raises(InputError, match="no images"):
        pairwise([])
    with pytest.raises(InputError, match="differs from"):
        pairwise(random_images(2, seed=0), random_images(2, seed=0, size=32), metric="l2")
    with pytest.raises(InputError, match=r"x\[1\]: size 32x32 differs from x\[0\] \(64x64\)"):
        pairwise([random_images(1, seed=0), random_images(1, seed=0, size=32)], metric="l2")
    with pytest.raises(InputError, match="spatial"):
        pairwise(random_images(2, seed=0), spatial=True)
    with pytest.raises(InputError, match="tile_size"):
        pairwise(random_images(2, seed=0), metric="l2", tile_size=0)


# ---------------------------------------------------------------- percepmetric matrix


def write_folder(folder: Path, n: int, seed: int, size: int = SIZE) -> list[str]:
    from PIL import Image

    rng = np.random.default_rng(seed)
    names = []
    for k in range(n):
        name = f"sub/{k}.png" if k % 2 else f"{k}.png"
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / name)
        names.append(name)
    return sorted(names)


def test_matrix_command_writes_npy_with_names(tmp_path, capsys):
    names = write_folder(tmp_path / "a", 4, seed=0)
    out = tmp_path / "out" / "m.npy"
    code, stdout, err = run_cli(capsys, "matrix", tmp_path / "a", "-m", "l2", "--out", out, "--no-progress")
    assert code == 0, err
    matrix = np.load(out)
    sidecar = json.loads((tmp_path / "out" / "m.names.json").read_text())
    assert sidecar["rows"] == sidecar["columns"] == names
    files = [tmp_path / "a" / name for name in names]
    expected = pairwise(files, metric="l2").numpy()
    np.testing.assert_array_equal(matrix, expected)
    assert stdout.splitlines()[0].startswith("l2: 4 x 4 (against itself)")
    assert "closest pairs:" in stdout
    summary, written = stdout.splitlines()[:-2], stdout.splitlines()[-2:]
    assert all(len(line) < 100 for line in summary)
    assert written == [f"matrix: {out}", f"names: {out.with_suffix('.names.json')}"]
    assert not list((tmp_path / "out").glob(".*")), "no temporary file left beside the outputs"


def test_matrix_command_writes_labelled_csv_for_two_folders(tmp_path, capsys):
    rows = write_folder(tmp_path / "a", 3, seed=1)
    cols = write_folder(tmp_path / "b", 2, seed=2)
    out = tmp_path / "m.csv"
    code, stdout, err = run_cli(capsys, "matrix", tmp_path / "a", tmp_path / "b", "-m", "ssim", "--out", out,
                                "--no-progress")
    assert code == 0, err
    table = list(csv.reader(out.open()))
    assert table[0] == ["", *cols]
    assert [row[0] for row in table[1:]] == rows
    values = torch.tensor([[float(v) for v in row[1:]] for row in table[1:]])
    expected = pairwise([tmp_path / "a" / r for r in rows], [tmp_path / "b" / c for c in cols], metric="ssim")
    assert (values - expected).abs().max() <= 1e-8
    assert "3 x 2" in stdout


def test_matrix_command_summary_without_out(tmp_path, capsys, alex):
    write_folder(tmp_path / "a", 3, seed=3)
    code, stdout, err = run_cli(capsys, "matrix", tmp_path / "a", "--no-progress")
    assert code == 0, err
    lines = stdout.splitlines()
    assert lines[0].startswith("lpips") and "3 x 3" in lines[0]
    assert lines[1].startswith("off-diagonal: min ")
    assert len(lines) == 3 + 3  # header, statistics, "closest pairs:", then the 3 pairs


@pytest.mark.parametrize("case, message", [
    ("empty", "no image files"),
    ("missing", "no such folder"),
    ("sizes", "size 32x32 differs from"),
    ("out", "give a file ending in .npy"),
    ("out_folder", "is a folder"),
    ("two_metrics", "one metric per run"),
])
def test_matrix_command_bad_input_is_one_line(tmp_path, capsys, case, message):
    folder = tmp_path / "a"
    folder.mkdir()
    args = ["matrix", folder, "-m", "l2", "--no-progress"]
    if case != "empty":
        write_folder(folder, 2, seed=4)
    if case == "missing":
        args[1] = tmp_path / "nowhere"
    if case == "sizes":
        write_folder(tmp_path / "b", 1, seed=5, size=32)
        args.insert(2, tmp_path / "b")
    if case == "out":
        args += ["--out", tmp_path / "m.txt"]
    if case == "out_folder":
        (tmp_path / "m.npy").mkdir()
        args += ["--out", tmp_path / "m.npy"]
    if case == "two_metrics":
        args += ["-m", "psnr"]
    code, stdout, err = run_cli(capsys, *args)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("percepmetric: error: ") and message in err, err


def test_summary_keeps_long_names_under_100_columns():
    from percepmetric.matrix_command import summary_lines

    names = [f"{'deeply/nested/folder/' * 6}image_{k:04d}.png" for k in range(4)]
    matrix = torch.tensor([[0.0, 0.3, 0.1, 0.4], [0.3, 0.0, 0.2, 0.5], [0.1, 0.2, 0.0, 0.6], [0.4, 0.5, 0.6, 0.0]])
    lines = summary_lines(matrix, names, names, same=True, label="l2")
    assert all(len(line) < 100 for line in lines)
    assert lines[1] == "off-diagonal: min 0.1  mean 0.35  max 0.6"
    closest = lines[3]  # the ends of the two paths stay: they tell images apart
    assert closest.startswith("  0.1  ") and "image_0000.png" in closest and closest.endswith("image_0002.png")


def test_matrix_command_as_users_run_it(tmp_path):
    write_folder(tmp_path / "a", 3, seed=6)
    proc = run_cli_subprocess("matrix", tmp_path / "a", "-m", "psnr", "--out", tmp_path / "m.csv", check_rc=0,
                              module="percepmetric")
    assert proc.stdout.startswith("psnr as mse: 3 x 3 (against itself)")
    assert (tmp_path / "m.csv").read_text().splitlines()[0] == ",0.png,2.png,sub/1.png"
