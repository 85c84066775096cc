"""A resumed folder run reuses saved values only for files that still hold the same bytes.

The resume keys of ``distance DIR_A DIR_B --out FILE`` hash what the files hold (a content
digest), not their size and modification time, which a rewrite can keep: an uncompressed PNG
of other pixels has the same byte size, and ``os.utime`` puts the modification time back.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from percepmetric import InputError, create_metric, load_image
from percepmetric import compare as compare_module
from percepmetric.compare import compare_folders, plan_chunks, resume_folder

from helpers import run_cli

NAMES = ["0001.png", "0002.png", "0003.png", "0004.png"]


def write_stored_png(path: Path, array: np.ndarray) -> Path:
    """An uncompressed PNG: its byte size depends on the image's size only, not on its pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, compress_level=0)
    return path


def pixels(seed: int, shape=(24, 32, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def make_folders(root: Path) -> tuple[Path, Path]:
    for k, name in enumerate(NAMES):
        write_stored_png(root / "A" / name, pixels(k))
        write_stored_png(root / "B" / name, pixels(100 + k))
    return root / "A", root / "B"


def rewrite_keeping_size_and_mtime(path: Path, array: np.ndarray) -> None:
    """Other pixels in ``path``, with the file's byte size and modification time as they were."""
    before = os.stat(path)
    write_stored_png(path, array)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def interrupt_psnr_at_call(monkeypatch, n: int) -> None:
    """PSNR's formula raises KeyboardInterrupt (as Ctrl-C) at its ``n``-th call."""
    psnr_class = type(create_metric("psnr"))
    original = psnr_class.formula
    calls = {"n": 0}

    def interrupted(self, x, y):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return original(self, x, y)

    monkeypatch.setattr(psnr_class, "formula", interrupted)


def fresh(metric: str, a: Path, b: Path) -> float:
    return create_metric(metric)(load_image(a), load_image(b)).item()


def test_a_resumed_run_does_not_reuse_the_value_of_a_file_rewritten_with_its_size_and_mtime(
        tmp_path, monkeypatch, capsys):
    dir_a, dir_b = make_folders(tmp_path)
    out = tmp_path / "r.csv"
    interrupt_psnr_at_call(monkeypatch, 3)  # chunks of one pair: the first two are saved
    code, _, err = run_cli(capsys, "distance", dir_a, dir_b, "-m", "psnr", "-m", "ssim", "--out", out,
                           "--batch-size", 1, "--no-progress")
    assert code == 130 and "2 finished chunk(s) kept" in err
    monkeypatch.undo()
    stale = {m: fresh(m, dir_a / NAMES[0], dir_b / NAMES[0]) for m in ("psnr", "ssim")}
    rewrite_keeping_size_and_mtime(dir_b / NAMES[0], pixels(999))
    expected = {m: fresh(m, dir_a / NAMES[0], dir_b / NAMES[0]) for m in ("psnr", "ssim")}
    assert abs(expected["psnr"] - stale["psnr"]) > 0.01  # the rewrite changed the values

    code, _, err = run_cli(capsys, "distance", dir_a, dir_b, "-m", "psnr", "-m", "ssim", "--out", out,
                           "--batch-size", 1, "--no-progress")
    assert code == 0, err
    table = pd.read_csv(out)
    ssim_column = next(c for c in table.columns if c.startswith("ssim"))  # its label may show options
    assert table["a"][0] == NAMES[0]
    assert table["psnr"][0] == pytest.approx(expected["psnr"], abs=1e-5)
    assert table[ssim_column][0] == pytest.approx(expected["ssim"], abs=1e-6)
    # the pair that was not rewritten keeps its saved value, which is still right
    assert table["psnr"][1] == pytest.approx(fresh("psnr", dir_a / NAMES[1], dir_b / NAMES[1]), abs=1e-5)
    assert not resume_folder(out).exists()


def test_chunk_keys_follow_the_bytes_not_the_size_and_the_modification_time(tmp_path):
    dir_a, dir_b = make_folders(tmp_path)

    def keys() -> list[str]:
        return [c.key for c in plan_chunks(compare_module.match_folders(dir_a, dir_b).pairs, 1, None, ["psnr()"])]

    before = keys()
    assert keys() == before  # stable while nothing changes
    rewrite_keeping_size_and_mtime(dir_b / NAMES[2], pixels(7))
    after = keys()
    assert [k != j for k, j in zip(before, after)] == [False, False, True, False]


def test_a_file_rewritten_after_listing_is_refused_and_its_values_are_not_saved(tmp_path, monkeypatch):
    """Values are saved under keys made when the folders were listed: a file whose bytes change
    before it is decoded would file its new values under its old content. The run stops, naming
    it, and saves nothing for it; the next run lists it anew."""
    dir_a, dir_b = make_folders(tmp_path)
    original = compare_module.match_folders

    def listed_then_rewritten(*args, **kwargs):
        found = original(*args, **kwargs)
        rewrite_keeping_size_and_mtime(dir_b / NAMES[3], pixels(5))
        return found

    monkeypatch.setattr(compare_module, "match_folders", listed_then_rewritten)
    out = tmp_path / "r.csv"
    with pytest.raises(InputError, match=r"0004\.png: .*changed"):
        compare_folders(dir_a, dir_b, ["psnr"], out=out, batch_size=1, workers=1)
    assert not out.exists()
    monkeypatch.setattr(compare_module, "match_folders", original)
    table = compare_folders(dir_a, dir_b, ["psnr"], out=out, batch_size=1)
    assert table["psnr"][3] == pytest.approx(fresh("psnr", dir_a / NAMES[3], dir_b / NAMES[3]), abs=1e-5)


def test_the_bapps_split_cache_key_sees_a_rewrite_that_keeps_size_and_mtime(tmp_path):
    """The BAPPS split cache keys on size, mtime, inode and change time: the change time moves
    with any write and no user call sets it back, so the same rewrite changes that key too."""
    from percepmetric.data import bapps

    folder = tmp_path / "split"
    for sub in ("ref", "p0", "p1"):
        write_stored_png(folder / sub / "000000.png", pixels(len(sub)))
    (folder / "judge").mkdir()
    np.save(folder / "judge" / "000000.npy", np.array([0.5], dtype=np.float32))
    dirs = ("ref", "p0", "p1")

    def key() -> str:
        return bapps._fingerprint(folder, bapps._listing(folder, "val/x", dirs, "judge")[1])

    before = key()
    rewrite_keeping_size_and_mtime(folder / "p0" / "000000.png", pixels(50))
    assert key() != before
