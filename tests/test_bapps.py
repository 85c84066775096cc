"""BAPPS loader (validation, uint8 cache), synthetic fixture, download + unpack + verify."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from percepmetric.data import bapps, fixtures
from percepmetric.data.download import ARCHIVES, DownloadError, download_bapps, fetch
from percepmetric.errors import InputError

from helpers import FIXTURE_SIZE, png_chunk, run_cli_subprocess

SIZE = FIXTURE_SIZE  # items per split of the fixture_root fixture (conftest.py)


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


# ---------------------------------------------------------------- fast decoding and judgments

def _with_chunks(png: bytes, *chunks: bytes) -> bytes:
    """``png`` with ``chunks`` inserted right after IHDR (8 + 25 bytes)."""
    return png[:33] + b"".join(chunks) + png[33:]


def _image_files(folder: Path) -> dict[str, Path]:
    """One file of each kind the loader may meet, each 24x20 (HxW)."""
    from PIL import Image

    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    images = {
        "rgb.png": Image.fromarray(rgb),
        "grey.png": Image.fromarray(rgb[..., 0]),
        "palette.png": Image.fromarray(rgb).convert("P"),
        "rgba.png": Image.fromarray(np.dstack([rgb, rgb[..., :1]])),
        "grey16.png": Image.fromarray(rgb[..., 1].astype(np.uint16) * 257),
        "la.png": Image.fromarray(rgb[..., 0]).convert("LA"),
        "bilevel.png": Image.fromarray(rgb[..., 2] > 127),
        "photo.jpg": Image.fromarray(rgb),
        "photo.bmp": Image.fromarray(rgb),
    }
    paths = {name: folder / name for name in images}
    for name, img in images.items():
        img.save(paths[name])
    Image.fromarray(rgb).save(folder / "transparent.png", transparency=(1, 2, 3))
    Image.fromarray(rgb).convert("P").save(folder / "palette-transparent.png", transparency=0)
    plain = (folder / "rgb.png").read_bytes()
    (folder / "chunks.png").write_bytes(_with_chunks(plain, png_chunk(b"gAMA", (45455).to_bytes(4, "big")),
                                                     png_chunk(b"sRGB", b"\0"), png_chunk(b"tEXt", b"k\0v")))
    (folder / "unknown-chunk.png").write_bytes(_with_chunks(plain, png_chunk(b"xyZw", b"data")))
    (folder / "RGB-UPPER.PNG").write_bytes(plain)
    for name in ("transparent.png", "palette-transparent.png", "chunks.png", "unknown-chunk.png", "RGB-UPPER.PNG"):
        paths[name] = folder / name
    return paths


def test_decode_image_equals_pil_convert_rgb(tmp_path, monkeypatch):
    from PIL import Image

    paths = _image_files(tmp_path / "images")
    for name, path in paths.items():
        with Image.open(path) as img:
            expected = np.asarray(img.convert("RGB"))
        got = bapps._decode_image(str(path))
        assert got.dtype == np.uint8 and got.shape == (24, 20, 3), name
        np.testing.assert_array_equal(got, expected, err_msg=name)
    # Only plain 8-bit RGB PNGs take the fast decoder; the others all go to PIL.
    fast = {name for name, path in paths.items() if bapps._plain_rgb_png(path.read_bytes())}
    assert fast == {"rgb.png", "chunks.png", "RGB-UPPER.PNG"}
    if bapps._png_decode is not None:  # which then never reach PIL
        monkeypatch.setattr(Image, "open", lambda *a, **kw: pytest.fail("decoded with PIL"))
        for name in fast:
            bapps._decode_image(str(paths[name]))


def test_decode_image_refuses_what_pil_refuses(tmp_path):
    from PIL import Image

    plain = _image_files(tmp_path / "images")["rgb.png"].read_bytes()
    idat = plain.index(b"IDAT") - 4
    broken = {
        "bad-text-checksum.png": _with_chunks(plain, png_chunk(b"tEXt", b"k\0v", crc=12345)),
        "short-phys.png": _with_chunks(plain, png_chunk(b"pHYs", b"\0\0\0\1")),
        "cut-pixels.png": plain[: idat + 40],
        "damaged-pixels.png": plain[: idat + 30] + bytes(b ^ 0xFF for b in plain[idat + 30 : idat + 60])
        + plain[idat + 60 :],
        "not-a-png.png": b"not a png",
        "empty.png": b"",
    }
    for name, data in broken.items():
        path = tmp_path / name
        path.write_bytes(data)
        try:
            with Image.open(path) as img:
                expected = np.asarray(img.convert("RGB"))
        except Exception as exc:  # noqa: BLE001
            with pytest.raises(type(exc)):
                bapps._decode_image(str(path))
            assert bapps._plain_rgb_png(data) is None or name in ("cut-pixels.png", "damaged-pixels.png"), name
        else:
            np.testing.assert_array_equal(bapps._decode_image(str(path)), expected, err_msg=name)
    # Garbage after IEND, or no IEND at all: PIL reads these, and so does the fast path.
    for name, data in {"trailing.png": plain + b"junk", "no-iend.png": plain[:-12]}.items():
        (tmp_path / name).write_bytes(data)
        assert bapps._plain_rgb_png(data) == (24, 20), name
        with Image.open(tmp_path / name) as img:
            np.testing.assert_array_equal(bapps._decode_image(str(tmp_path / name)), np.asarray(img.convert("RGB")))


def test_decode_all_first_image_sets_the_size(fixture_root, tmp_path, cache):
    root = _copy_split(fixture_root, tmp_path)
    from PIL import Image

    (root / "2afc/val/cnn/ref/000000.png").write_bytes(b"broken")
    Image.fromarray(np.zeros((32, 64, 3), np.uint8)).save(root / "2afc/val/cnn/p1/000004.png")
    with pytest.raises(InputError, match=r"split val/cnn: 1 unreadable image\(s\); first: ref/000000.png \(\w+\)$"):
        bapps.load_two_afc(root, "val/cnn")
    (root / "2afc/val/cnn/ref/000000.png").unlink()
    shutil.copy(root / "2afc/val/cnn/ref/000001.png", root / "2afc/val/cnn/ref/000000.png")
    with pytest.raises(InputError, match=r"1 image\(s\) differing in size from ref/000000.png \(64x64\); "
                                         r"first: p1/000004.png \(64x32\)"):
        bapps.load_two_afc(root, "val/cnn", cache_dir=False)


def _reference_label_problem(path: Path, label_dir: str = "judge") -> str | None:
    """What the loader has always reported for one judgment file (np.load on every file; an
    empty file, EOFError, used to escape as such)."""
    try:
        v = np.asarray(np.load(path, allow_pickle=False), dtype=np.float64).ravel()
    except (OSError, ValueError, EOFError) as exc:
        return f"{label_dir}/{path.name} (unreadable: {exc.__class__.__name__})"
    if v.size != 1 or not np.isfinite(v[0]) or not 0.0 <= v[0] <= 1.0:
        return f"{label_dir}/{path.name} ({v.tolist() if v.size <= 3 else f'{v.size} values'})"
    return None


def _entries(folder: Path) -> list[os.DirEntry]:
    return sorted(os.scandir(folder), key=lambda e: e.name)


def test_labels_fast_path_equals_np_load(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    kinds = {
        "f4-1": lambda x: np.array([x], np.float32), "f8-1": lambda x: np.array([x], np.float64),
        "f4-0d": lambda x: np.array(x, np.float32), "f8-0d": lambda x: np.array(x, np.float64),
        "f8-big-endian": lambda x: np.array([x], ">f8"), "f2-1x1": lambda x: np.array([[x]], np.float16),
        "u1": lambda x: np.array([round(x)], np.uint8), "bool": lambda x: np.array(x > 0.5),
        "f8-fortran": lambda x: np.asfortranarray(np.array([[x]], np.float64)),
    }
    folder = tmp_path / "judge"
    folder.mkdir()
    for kind, make in kinds.items():
        for k in range(4):
            np.save(folder / f"{kind}-{k}.npy", make(rng.random()))
    entries = _entries(folder)
    expected = np.array([np.asarray(np.load(e.path), np.float64).ravel()[0] for e in entries], np.float32)
    real_load, calls = np.load, []
    monkeypatch.setattr(np, "load", lambda *a, **kw: calls.append(a) or real_load(*a, **kw))
    got = bapps._read_labels(entries, "mine", "judge")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    assert len(calls) == len(kinds)  # np.load reads the first file of each header (and learns it from that load), only


def test_labels_errors_as_before(tmp_path):
    folder = tmp_path / "judge"
    folder.mkdir()
    for k in range(6):
        np.save(folder / f"{k:02d}-good.npy", np.array([0.25 * (k % 5)], np.float32))
    good = (folder / "00-good.npy").read_bytes()
    bad = {
        "10-above.npy": np.array([1.5], np.float32), "11-below.npy": np.array([-0.5], np.float32),
        "12-nan.npy": np.array([np.nan], np.float32), "13-inf-0d.npy": np.array(np.inf),
        "14-two.npy": np.array([0.2, 0.3], np.float32), "15-five.npy": np.zeros(5), "16-empty.npy": np.zeros(0),
    }
    for name, arr in bad.items():
        np.save(folder / name, arr)
    (folder / "20-short.npy").write_bytes(good[:-1])  # the known header, data cut
    (folder / "21-long.npy").write_bytes(good + b"\0\0\0\0")  # np.load ignores the extra bytes
    (folder / "22-garbage.npy").write_bytes(b"garbage")
    (folder / "23-header-only.npy").write_bytes(good[:20])
    (folder / "24-empty-file.npy").write_bytes(b"")
    header = b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }  \n"
    (folder / "25-pickle.npy").write_bytes(
        np.lib.format.magic(1, 0) + len(header).to_bytes(2, "little") + header + b"\x80")
    (folder / "26-later-header.npy").write_bytes(good[:-4] + np.float32(2.0).tobytes())
    (folder / "27-missing.npy").symlink_to(folder / "nowhere.npy")  # a dangling link: OSError
    entries = _entries(folder)
    problems = [p for p in (_reference_label_problem(Path(e.path)) for e in entries) if p is not None]
    assert len(problems) == len(bad) + 7  # all but 21-long.npy and the good ones
    expected = (f"split mine: {len(problems)} judge file(s) not holding one number in [0, 1]; first: "
                + ", ".join(problems[:3]) + ", ...")
    with pytest.raises(InputError) as info:
        bapps._read_labels(entries, "mine", "judge")
    assert str(info.value) == expected
    # The same with every problem named: each file alone.
    for e in entries:
        problem = _reference_label_problem(Path(e.path))
        if problem is None:
            assert 0.0 <= bapps._read_labels(entries[:1] + [e], "mine", "judge")[1] <= 1.0
        else:
            with pytest.raises(InputError) as info:
                bapps._read_labels(entries[:1] + [e], "mine", "judge")
            assert str(info.value).endswith(f"; first: {problem}")


def test_fingerprint_sees_every_change(fixture_root, tmp_path):
    root = _copy_split(fixture_root, tmp_path)
    folder = bapps.split_dir(root, "val/cnn")
    dirs = ("ref", "p0", "p1")

    def fingerprint():
        return bapps._fingerprint(folder, bapps._listing(folder, "val/cnn", dirs, "judge")[1])

    seen = {fingerprint()}
    assert fingerprint() in seen  # stable
    path = folder / "p0/000002.png"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1))  # mtime only
    seen.add(fingerprint())
    path.write_bytes(path.read_bytes() + b"x")  # size (and mtime)
    seen.add(fingerprint())
    for d in dirs + ("judge",):  # a stem renamed everywhere
        src = next((folder / d).glob("000003.*"))
        src.rename(src.with_name("000099" + src.suffix))
    seen.add(fingerprint())
    for d in dirs + ("judge",):  # a stem removed everywhere
        next((folder / d).glob("000004.*")).unlink()
    seen.add(fingerprint())
    assert len(seen) == 5


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
        # Every kind's parameters grow with strength (fixtures.distort), so its pixel error
        # does too on these patches (8 of 8 for each kind when written); 0.75 allows 2 of the 8
        # where it need not (JPEG's quantisation steps, a shift onto similar texture).
        assert np.mean(err_weak < err_strong) >= 0.75, kind


def test_sentinels_are_easy_for_l2(fixture_root, cache):
    from percepmetric.bench import jnd_map, two_afc_score

    # JND (fixtures.sentinel_pairs): the "same" pairs are identical, at distance 0, and every
    # other pair is distorted at full strength, so L2 ranks all "same" pairs first: mAP 1
    # (on every split when written); 0.9 is a margin below it.
    # 2AFC (fixtures.sentinel_triplets): 4 or 5 of 5 simulated people choose the weaker
    # distortion, so a metric that always does scores their mean agreement, at least 0.8
    # (0.87-0.95 here when written); 0.7 is that floor less what two of the SIZE = 12 triplets
    # misordered at 4 of 5 agreement cost (each (0.8 - 0.2) / 12 = 0.05).
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
    (bad / "jnd/val/cnn/p1/000000.png").write_bytes((bad / "jnd/val/cnn/p1/000000.png").read_bytes()[:60])
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
    run = run_cli_subprocess("download-bapps", "--val-only", "--root", root, "--url-base", archives, "--no-progress",
                             env=env)
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


def _cache_entry(cache: Path, split: str = "val_superres") -> Path:
    (entry,) = [p for p in (cache / "splits").iterdir() if p.name.startswith(split + "-")]
    return entry


def _count_decodes(monkeypatch) -> list:
    calls, real = [], bapps._decode_image
    monkeypatch.setattr(bapps, "_decode_image", lambda path: calls.append(path) or real(path))
    return calls


@pytest.mark.parametrize("damage", ["empty", "half", "header only"])
def test_truncated_cache_array_repairs_itself(fixture_root, cache, monkeypatch, damage):
    expected = np.array(bapps.load_two_afc(fixture_root, "val/superres").p0)  # a copy, not the memory map
    path = _cache_entry(cache) / "p0.npy"
    data = path.read_bytes()
    path.unlink()  # a new file, not the one still mapped above
    path.write_bytes({"empty": b"", "half": data[: len(data) // 2], "header only": data[:128]}[damage])
    decodes = _count_decodes(monkeypatch)
    np.testing.assert_array_equal(bapps.load_two_afc(fixture_root, "val/superres").p0, expected)
    assert decodes, "the damaged entry was used"
    decodes.clear()
    np.testing.assert_array_equal(bapps.load_two_afc(fixture_root, "val/superres").p0, expected)
    assert not decodes, "the repaired entry is used again"


def test_damaged_cache_bytes_are_caught_by_the_checksum(fixture_root, cache, monkeypatch):
    expected = np.array(bapps.load_two_afc(fixture_root, "val/superres").p1)
    path = _cache_entry(cache) / "p1.npy"
    data = bytearray(path.read_bytes())
    data[-1000] ^= 0xFF  # one pixel value, same size: only a checksum sees it
    path.unlink()
    path.write_bytes(bytes(data))
    decodes = _count_decodes(monkeypatch)
    np.testing.assert_array_equal(bapps.load_two_afc(fixture_root, "val/superres").p1, expected)
    assert decodes


def test_cache_entry_without_meta_json_repairs_itself(fixture_root, cache, monkeypatch):
    expected = np.array(bapps.load_two_afc(fixture_root, "val/superres").ref)
    entry = _cache_entry(cache)
    (entry / "meta.json").unlink()  # a build killed before its last file, say, then damaged bytes
    (entry / "ref.npy").unlink()
    (entry / "ref.npy").write_bytes(b"junk")
    np.testing.assert_array_equal(bapps.load_two_afc(fixture_root, "val/superres").ref, expected)
    assert (_cache_entry(cache) / "meta.json").is_file()
    decodes = _count_decodes(monkeypatch)
    bapps.load_two_afc(fixture_root, "val/superres")
    assert not decodes
    assert [p.name for p in (cache / "splits").iterdir()] == [entry.name], "no temporary folder is left"


def _rewrite_keeping_mtime(path: Path, data: bytes) -> None:
    """Change a file in place and set its modification time back, as ``touch -r`` does."""
    before = path.stat()
    while True:
        path.write_bytes(data)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        if path.stat().st_ctime_ns != before.st_ctime_ns:  # (a coarse clock may need a tick)
            return
        time.sleep(0.01)


def test_cache_sees_a_change_whose_mtime_was_set_back(fixture_root, tmp_path, cache):
    root = _copy_split(fixture_root, tmp_path)
    assert bapps.load_two_afc(root, "val/cnn").judge[5] != np.float32(0.25)
    path = root / "2afc/val/cnn/judge/000005.npy"
    buffer = io.BytesIO()
    np.save(buffer, np.array([0.25], dtype=np.load(path).dtype))
    assert len(buffer.getvalue()) == path.stat().st_size  # same size, same mtime: only the ctime differs
    _rewrite_keeping_mtime(path, buffer.getvalue())
    assert bapps.load_two_afc(root, "val/cnn").judge[5] == np.float32(0.25)


def test_cache_folders_and_files_follow_the_umask(fixture_root, tmp_path):
    previous = os.umask(0o002)  # a cache shared by a group
    try:
        bapps.load_two_afc(fixture_root, "val/cnn", cache_dir=tmp_path / "shared")
    finally:
        os.umask(previous)
    entry = _cache_entry(tmp_path / "shared", "val_cnn")
    for folder in (tmp_path / "shared", tmp_path / "shared" / "splits", entry):
        assert folder.stat().st_mode & 0o777 == 0o775, folder
    for file in entry.iterdir():
        assert file.stat().st_mode & 0o777 == 0o664, file


def test_unwritable_cache_decodes_in_memory_after_one_line(fixture_root, tmp_path, capsys):
    blocker = tmp_path / "a file"
    blocker.write_text("")
    for _ in range(2):
        split = bapps.load_two_afc(fixture_root, "val/cnn", cache_dir=blocker / "cache")
        assert len(split) == SIZE and not isinstance(split.ref, np.memmap)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write to the cache folder" in err and bapps.ENV_CACHE in err, err


# ---------------------------------------------------------------- one form of 2AFC triplets

def test_training_triplets_are_the_benchmark_split(fixture_root, cache):
    """Training joins splits and folders into a TwoAFCSplit, the form the benchmark loads and
    scores (there was a second class, train.data.Triplets): its sources, files and data
    identity say what it was joined from."""
    from percepmetric.bench import compute_distances
    from percepmetric.registry import create_metric
    from percepmetric.train import data as train_data

    assert not hasattr(train_data, "Triplets")
    cnn, color = bapps.load_two_afc(fixture_root, "val/cnn"), bapps.load_two_afc(fixture_root, "val/color")
    assert cnn.sources == [{"name": "val/cnn", "count": SIZE}]  # a loaded split is its own source
    joined = train_data.join_splits([("val/cnn", cnn), ("mine", color)])
    assert isinstance(joined, bapps.TwoAFCSplit) and len(joined) == 2 * SIZE
    assert joined.sources == [{"name": "val/cnn", "count": SIZE}, {"name": "mine", "count": SIZE}]
    assert joined.files == cnn.files + color.files and joined.judge.dtype == np.float32
    assert joined.fingerprint and joined.fingerprint not in (cnn.fingerprint, color.fingerprint)
    np.testing.assert_array_equal(joined.p1[SIZE:], color.p1)
    single = train_data.join_splits([("train", cnn)])
    assert single.ref is cnn.ref and single.fingerprint == cnn.fingerprint  # one part: no copy
    d0, _ = compute_distances(create_metric("l2"), joined, batch_size=5)
    np.testing.assert_array_equal(d0[:SIZE], compute_distances(create_metric("l2"), cnn, batch_size=5)[0])
    in_memory = bapps.TwoAFCSplit("x", cnn.ref, cnn.p0, cnn.p1, cnn.judge, cnn.files)
    assert train_data.join_splits([("x", in_memory), ("y", cnn)]).fingerprint == ""  # unknown: no identity
