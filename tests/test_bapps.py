"""BAPPS loader (validation, uint8 cache), synthetic fixture, download + unpack + verify."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from percepmetric.data import bapps, fixtures
from percepmetric.data.download import ARCHIVES, DownloadError, download_bapps, fetch
from percepmetric.errors import InputError

SIZE = 12


def shared_fixture(tmp_path_factory, size: int = SIZE, seed: int = 0) -> Path:
    """One synthetic BAPPS per (size, seed) for the whole test session (test_bench.py uses it too)."""
    root = tmp_path_factory.getbasetemp() / f"bapps-fixture-n{size}-s{seed}"
    if not fixtures.is_synthetic(root):  # the marker is written last: its presence means complete
        fixtures.make_fixture(root, size=size, seed=seed)
    return root


@pytest.fixture(scope="session")
def fixture_root(tmp_path_factory) -> Path:
    return shared_fixture(tmp_path_factory)


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv(bapps.ENV_CACHE, str(path))
    return path


def _copy_split(fixture_root: Path, tmp_path: Path, name: str = "val/cnn") -> Path:
    """A private copy of the fixture with one split, to damage."""
    root = tmp_path / "copy"
    shutil.copytree(bapps.split_dir(fixture_root, name), bapps.split_dir(root, name))
    return root


# ---------------------------------------------------------------- names and roots

def test_expand_splits_groups_and_aliases():
    assert bapps.expand_splits(["val"]) == [f"val/{c}" for c in
                                            ("traditional", "cnn", "superres", "deblur", "color", "frameinterp")]
    assert bapps.expand_splits(["jnd"]) == ["jnd/val/traditional", "jnd/val/cnn"]
    assert bapps.expand_splits(["train/mix", "2afc/val/cnn", "jnd/cnn", "val/cnn"]) == [
        "train/mix", "val/cnn", "jnd/val/cnn"]
    assert bapps.expand_splits(["all"]) == list(bapps.VAL_SPLITS + bapps.JND_SPLITS)
    with pytest.raises(InputError, match="unknown split 'val/cnnn'"):
        bapps.expand_splits(["val/cnnn"])


def test_resolve_root_order(monkeypatch, tmp_path):
    monkeypatch.delenv(bapps.ENV_ROOT, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert bapps.resolve_root(None) == tmp_path / "data" / "percepmetric" / "bapps"
    monkeypatch.setenv(bapps.ENV_ROOT, str(tmp_path / "env"))
    assert bapps.resolve_root(None) == tmp_path / "env"
    assert bapps.resolve_root(tmp_path / "arg") == tmp_path / "arg"


# ---------------------------------------------------------------- loading and the cache

def test_load_shapes_and_values(fixture_root, cache):
    split = bapps.load_two_afc(fixture_root, "val/cnn")
    assert isinstance(split, bapps.TwoAFCSplit) and split.name == "val/cnn" and len(split) == SIZE
    for arr in (split.ref, split.p0, split.p1):
        assert arr.shape == (SIZE, 64, 64, 3) and arr.dtype == np.uint8
    assert split.judge.dtype == np.float32 and split.judge.shape == (SIZE,)
    assert split.files == [f"{i:06d}" for i in range(SIZE)]
    judge3 = float(np.load(fixture_root / "2afc/val/cnn/judge/000003.npy")[0])
    assert split.judge[3] == pytest.approx(judge3)
    from PIL import Image

    np.testing.assert_array_equal(split.p1[5], np.asarray(Image.open(fixture_root / "2afc/val/cnn/p1/000005.png")))
    jnd = bapps.load_jnd(fixture_root, "jnd/cnn")
    assert isinstance(jnd, bapps.JNDSplit) and jnd.name == "jnd/val/cnn" and jnd.p0.shape == (SIZE, 64, 64, 3)
    assert set(np.unique(jnd.same)) <= {0.0, 1.0}
    t = bapps.to_tensor(split.ref[:4])
    assert t.shape == (4, 3, 64, 64) and t.dtype == torch.float32
    assert torch.equal(t, torch.from_numpy(np.array(split.ref[:4])).permute(0, 3, 1, 2).float() / 255)


def test_second_load_uses_cache_without_decoding(fixture_root, cache, monkeypatch):
    calls = []
    real = bapps._decode_image
    monkeypatch.setattr(bapps, "_decode_image", lambda path: calls.append(path) or real(path))
    first = bapps.load_two_afc(fixture_root, "val/color")
    assert len(calls) == 3 * SIZE
    monkeypatch.setattr(bapps, "_decode_image", lambda path: pytest.fail("decoded again despite the cache"))
    second = bapps.load_two_afc(fixture_root, "val/color")
    assert isinstance(second.ref, np.memmap)
    for a, b in ((first.ref, second.ref), (first.p1, second.p1), (first.judge, second.judge)):
        np.testing.assert_array_equal(a, b)
    # cache_dir=False never touches the cache.
    monkeypatch.setattr(bapps, "_decode_image", real)
    assert bapps.load_two_afc(fixture_root, "val/color", cache_dir=False).fingerprint == second.fingerprint


def test_changed_file_invalidates_cache(fixture_root, tmp_path, cache):
    root = _copy_split(fixture_root, tmp_path)
    before = bapps.load_two_afc(root, "val/cnn")
    path = root / "2afc/val/cnn/p0/000002.png"
    from PIL import Image

    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(path)
    after = bapps.load_two_afc(root, "val/cnn")
    assert after.fingerprint != before.fingerprint and after.p0[2].max() == 0


def test_load_folder_of_own_judgments(fixture_root, tmp_path, cache):
    folder = tmp_path / "mine"
    shutil.copytree(fixture_root / "2afc/val/deblur", folder)
    split = bapps.load_two_afc_folder(folder)
    assert len(split) == SIZE and split.name == str(folder)


# ---------------------------------------------------------------- validation errors

def test_missing_split_folder(tmp_path, cache):
    with pytest.raises(InputError, match=r"split val/cnn: folder .* does not exist"):
        bapps.load_two_afc(tmp_path / "nothing", "val/cnn")


def test_missing_subfolder(fixture_root, tmp_path, cache):
    root = _copy_split(fixture_root, tmp_path)
    shutil.rmtree(root / "2afc/val/cnn/judge")
    with pytest.raises(InputError, match=r"split val/cnn: 1 missing subfolder\(s\).*first: judge/"):
        bapps.load_two_afc(root, "val/cnn")


def test_counts_differ(fixture_root, tmp_path, cache):
    root = _copy_split(fixture_root, tmp_path)
    (root / "2afc/val/cnn/p0/000003.png").unlink()
    (root / "2afc/val/cnn/p0/000007.png").unlink()
    with pytest.raises(InputError) as info:
        bapps.load_two_afc(root, "val/cnn")
    message = str(info.value)
    # 2 stems x (ref, p1, judge) left without a p0 counterpart.
    assert message.startswith("split val/cnn: 6 file(s) without a counterpart")
    assert "p0 10" in message and "first: judge/000003.npy, judge/000007.npy, p1/000003.png, ..." in message


def test_unreadable_image(fixture_root, tmp_path, cache):
    root = _copy_split(fixture_root, tmp_path)
    for stem in ("000004", "000009"):
        (root / f"2afc/val/cnn/ref/{stem}.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match=r"split val/cnn: 2 unreadable image\(s\); first: ref/000004.png \(\w+\), "
                                         r"ref/000009.png"):
        bapps.load_two_afc(root, "val/cnn")


def test_image_of_other_size(fixture_root, tmp_path, cache):
    root = _copy_split(fixture_root, tmp_path)
    from PIL import Image

    Image.fromarray(np.zeros((32, 64, 3), np.uint8)).save(root / "2afc/val/cnn/p1/000001.png")
    with pytest.raises(InputError, match=r"split val/cnn: 1 image\(s\) differing in size .*p1/000001.png \(64x32\)"):
        bapps.load_two_afc(root, "val/cnn")


def test_judge_outside_unit_interval(fixture_root, tmp_path, cache):
    root = _copy_split(fixture_root, tmp_path)
    np.save(root / "2afc/val/cnn/judge/000005.npy", np.array([1.5], np.float32))
    np.save(root / "2afc/val/cnn/judge/000006.npy", np.array([0.2, 0.3], np.float32))
    with pytest.raises(InputError, match=r"split val/cnn: 2 judge file\(s\) not holding one number in \[0, 1\]; "
                                         r"first: judge/000005.npy \(\[1.5\]\), judge/000006.npy"):
        bapps.load_two_afc(root, "val/cnn")


def test_wrong_loader_for_kind(fixture_root, cache):
    with pytest.raises(InputError, match="JND split"):
        bapps.load_two_afc(fixture_root, "jnd/val/cnn")
    with pytest.raises(InputError, match="2AFC split"):
        bapps.load_jnd(fixture_root, "val/cnn")


# ---------------------------------------------------------------- fixture

def test_fixture_layout_and_determinism(fixture_root, tmp_path):
    for name in bapps.expand_splits(["train", "all"]):
        assert bapps.split_dir(fixture_root, name).is_dir(), name
    assert fixtures.is_synthetic(fixture_root)
    assert "NOT HUMAN JUDGMENTS" in (fixture_root / fixtures.MARKER).read_text()
    again = fixtures.sentinel_triplets(SIZE, "traditional", seed=fixtures._seed(0, "val"))
    split = bapps.load_two_afc(fixture_root, "val/traditional", cache_dir=False)
    np.testing.assert_array_equal(again[1], split.p0)
    np.testing.assert_array_equal(again[3], split.judge)
    np.testing.assert_array_equal(fixtures.photo_patches(5, 32, seed=3), fixtures.photo_patches(5, 32, seed=3))
    assert fixtures.photo_patches(5, 32, seed=3).shape == (5, 32, 32, 3)


def test_distortions_weak_is_closer():
    ref = fixtures.photo_patches(8, 64, seed=1)
    for kind in sorted({k for kinds in fixtures.CATEGORY_KINDS.values() for k in kinds}):
        weak = fixtures.distort(ref, kind, 0.2, seed=5)
        strong = fixtures.distort(ref, kind, 0.9, seed=5)
        assert weak.dtype == np.uint8 and weak.shape == ref.shape
        err_weak = ((weak.astype(float) - ref) ** 2).mean(axis=(1, 2, 3))
        err_strong = ((strong.astype(float) - ref) ** 2).mean(axis=(1, 2, 3))
        assert np.mean(err_weak < err_strong) >= 0.75, kind


def test_sentinels_are_easy_for_l2(fixture_root, cache):
    from percepmetric.bench import jnd_map, two_afc_score

    for name in bapps.expand_splits(["train", "all"]):
        split = bapps.load_split(fixture_root, name)
        if isinstance(split, bapps.JNDSplit):
            d = ((split.p0.astype(float) - split.p1) ** 2).mean(axis=(1, 2, 3))
            assert jnd_map(d, split.same) > 0.9, name
        else:
            d0 = ((split.p0.astype(float) - split.ref) ** 2).mean(axis=(1, 2, 3))
            d1 = ((split.p1.astype(float) - split.ref) ** 2).mean(axis=(1, 2, 3))
            assert two_afc_score(d0, d1, split.judge) > 0.7, name


# ---------------------------------------------------------------- download

def _official_archives(fixture_root: Path, folder: Path) -> Path:
    """Archives shaped as the official ones, built from the fixture."""
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(folder / "jnd.tar.gz", "w:gz") as tar:
        tar.add(fixture_root / "jnd", arcname="jnd")
    with tarfile.open(folder / "twoafc_val.tar.gz", "w:gz") as tar:
        tar.add(fixture_root / "2afc" / "val", arcname="val")
    with tarfile.open(folder / "twoafc_train.tar.gz", "w:gz") as tar:
        tar.add(fixture_root / "2afc" / "train", arcname="train")
    return folder


def test_download_unpack_verify_and_skip(fixture_root, tmp_path, cache):
    archives = _official_archives(fixture_root, tmp_path / "mirror")
    root = tmp_path / "bapps"
    logs = []
    counts = download_bapps(root, val_only=True, url_base=archives.as_uri(), progress=False, log=logs.append)
    assert counts == {name: SIZE for name in bapps.VAL_SPLITS + bapps.JND_SPLITS}
    assert not (root / "2afc/train").exists()
    split = bapps.load_two_afc(root, "val/frameinterp")
    np.testing.assert_array_equal(split.judge, bapps.load_two_afc(fixture_root, "val/frameinterp").judge)
    assert not list((root / ".download").glob("*.tar.gz"))  # archives removed once installed
    logs.clear()
    assert download_bapps(root, val_only=True, url_base=archives, progress=False, log=logs.append) == {}
    assert all("already installed" in line for line in logs)
    assert download_bapps(root, url_base=archives, progress=False, log=logs.append) == {
        name: SIZE for name in bapps.TRAIN_SPLITS}


def test_fetch_resumes_a_partial_file(tmp_path):
    source = tmp_path / "archive.bin"
    data = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    source.write_bytes(data)
    target = tmp_path / "out" / "archive.bin"
    target.parent.mkdir()
    (target.parent / "archive.bin.part").write_bytes(data[:123_456])
    fetch(source.as_uri(), target, progress=False)
    assert target.read_bytes() == data and not (target.parent / "archive.bin.part").exists()


def test_damaged_or_incomplete_archive_is_refused(fixture_root, tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    good = _official_archives(fixture_root, tmp_path / "good")
    (mirror / "jnd.tar.gz").write_bytes((good / "jnd.tar.gz").read_bytes()[:5000])  # truncated
    with pytest.raises(DownloadError, match="damaged archive"):
        download_bapps(tmp_path / "root", val_only=True, url_base=mirror, progress=False, log=lambda s: None)
    assert not (tmp_path / "root" / "jnd").exists()
    # An archive whose split fails verification installs nothing.
    bad = tmp_path / "bad"
    shutil.copytree(fixture_root / "jnd", bad / "jnd")
    (bad / "jnd/val/cnn/p1/000000.png").write_bytes(b"garbage")
    with tarfile.open(mirror / "jnd.tar.gz", "w:gz") as tar:
        tar.add(bad / "jnd", arcname="jnd")
    with pytest.raises(DownloadError, match=r"failed verification: split jnd/val/cnn: 1 unreadable image"):
        download_bapps(tmp_path / "root2", val_only=True, url_base=mirror, progress=False, log=lambda s: None)
    assert not (tmp_path / "root2" / "jnd").exists()
    assert [a.name for a in ARCHIVES] == ["jnd.tar.gz", "twoafc_val.tar.gz", "twoafc_train.tar.gz"]


def test_download_cli_on_local_archive(fixture_root, tmp_path):
    archives = _official_archives(fixture_root, tmp_path / "mirror")
    root = tmp_path / "bapps"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "percepmetric.cli", "download-bapps", "--val-only", "--root", str(root),
                          "--url-base", str(archives), "--no-progress"], capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr
    assert f"BAPPS is in {root}" in run.stdout
    assert (root / "2afc/val/cnn/judge/000000.npy").is_file() and (root / "jnd/val/traditional/same").is_dir()


def test_damaged_cache_entry_is_rebuilt(fixture_root, cache):
    expected = np.array(bapps.load_two_afc(fixture_root, "val/superres").p0)  # a copy, not the memory map
    (entry,) = [p for p in (cache / "splits").iterdir() if p.name.startswith("val_superres-")]
    (entry / "p0.npy").unlink()  # a new file, not the one still mapped above
    (entry / "p0.npy").write_bytes(b"truncated")
    again = bapps.load_two_afc(fixture_root, "val/superres")
    np.testing.assert_array_equal(again.p0, expected)
