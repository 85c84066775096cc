"""What `percepmetric matrix` prints, read as a new user reads it: the folders it compared,
named as given, in lines under 100 columns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from helpers import run_cli


def _folder(path: Path, n: int, seed: int) -> Path:
    """``n`` random 16x16 RGB PNGs in ``path`` (created)."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path / f"{k}.png")
    return path


def test_summary_names_the_two_folders_compared(tmp_path, monkeypatch, capsys):
    # as in the user trial: `percepmetric matrix out/ gt/`
    _folder(tmp_path / "out", 2, seed=1), _folder(tmp_path / "gt", 3, seed=2)
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "matrix", "out/", "gt/", "-m", "l2", "--no-progress")
    assert code == 0, err
    assert out.splitlines()[0] == "l2: 2 x 3 (rows: out/, columns: gt/)", out
    assert "DIR" not in out


def test_summary_of_long_folder_names_keeps_both_ends_under_100_columns(tmp_path, capsys):
    deep = tmp_path / ("some/rather/long/output/folder/name/" * 2)
    rows, cols = _folder(deep / "restored_images", 2, seed=3), _folder(deep / "ground_truth", 2, seed=4)
    code, out, err = run_cli(capsys, "matrix", rows, cols, "-m", "l2", "--no-progress")
    assert code == 0, err
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 99, out
    # each folder's end, which tells them apart, is still there
    assert "restored_images, columns: " in lines[0] and lines[0].endswith("ground_truth)"), lines[0]
    assert "DIR" not in out

