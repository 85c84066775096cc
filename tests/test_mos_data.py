"""The MOS database loaders (percepmetric.data.mos) on fixtures in each official layout
(percepmetric.data.mos_fixtures): what they read, what they refuse (one line naming the dataset and
the first file), the command-line form, the embedded set and the fingerprint."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from percepmetric.data.mos import (
    DATASET_KINDS,
    LIVE_FOLDERS,
    OFFICIAL_COUNTS,
    TID2013_DISTORTIONS,
    MOSDataset,
    load_mos_dataset,
    parse_dataset_option,
)
from percepmetric.data.mos_fixtures import embedded_mos_dataset, make_mos_fixture
from percepmetric.errors import InputError

REFS, DISTORTIONS = 3, 8  # 8 = the four types at levels 1 and 2
DIRECTION = {"tid2013": True, "kadid10k": True, "live": False, "csiq": False, "pipal": True, "csv": True}
TYPE_NAMES = {
    "tid2013": {"additive gaussian noise", "gaussian blur", "jpeg compression", "contrast change"},
    "kadid10k": {"white noise", "gaussian blur", "jpeg", "brighten"},
    "live": {"white noise", "gaussian blur", "jpeg", "fast fading"},
    "csiq": {"additive white gaussian noise", "gaussian blur", "jpeg", "global contrast decrement"},
    "pipal": {"group 00", "group 01", "group 02", "group 03"},
    "csv": {"noise", "blur", "jpeg", "photometric"},
}
HAS_LEVELS = {"tid2013", "kadid10k", "csiq", "csv"}


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """One fixture of each kind (3 references x 8 distortions), written once for the module."""
    base = tmp_path_factory.mktemp("mos")
    return {kind: make_mos_fixture(kind, base / kind, references=REFS, distortions=DISTORTIONS)
            for kind in DATASET_KINDS}


def copy_of(made: dict[str, Path], kind: str, tmp_path: Path) -> Path:
    """A private copy of a kind's fixture (what load_mos_dataset takes: folder, or CSV file for csv)."""
    src = made[kind]
    folder = src.parent if kind == "csv" else src
    shutil.copytree(folder, tmp_path / kind)
    return tmp_path / kind / src.name if kind == "csv" else tmp_path / kind


def error_of(kind: str, path: Path, **kwargs) -> str:
    with pytest.raises(InputError) as info:
        load_mos_dataset(kind, path, **kwargs)
    text = str(info.value)
    assert "\n" not in text, text
    return text


# ---------------------------------------------------------------- each loader on its fixture

@pytest.mark.parametrize("kind", DATASET_KINDS)
def test_loader_reads_its_fixture(made, kind):
    ds = load_mos_dataset(kind, made[kind])
    n = REFS * DISTORTIONS
    assert isinstance(ds, MOSDataset) and ds.kind == kind and len(ds) == n
    assert ds.name == ("scores" if kind == "csv" else kind)
    assert len(ds.references) == REFS and list(ds.references) == sorted(ds.references)
    assert all(p.is_absolute() and p.is_file() for p in ds.references + ds.distorted)
    assert len(set(ds.distorted)) == n and not set(ds.distorted) & set(ds.references)
    assert ds.reference_index.dtype == np.int64 and sorted(set(ds.reference_index.tolist())) == list(range(REFS))
    assert np.bincount(ds.reference_index).tolist() == [DISTORTIONS] * REFS
    assert ds.scores.dtype == np.float64 and ds.scores.shape == (n,) and np.isfinite(ds.scores).all()
    assert ds.higher_is_better is DIRECTION[kind]
    np.testing.assert_array_equal(ds.mos, ds.scores if DIRECTION[kind] else -ds.scores)
    assert set(ds.distortion) == TYPE_NAMES[kind] and len(ds.distortion) == n
    assert ds.level.dtype == np.int64 and ds.level.shape == (n,)
    assert set(ds.level.tolist()) == ({1, 2} if kind in HAS_LEVELS else {0})
    assert ds.synthetic and ds.group_index is None
    np.testing.assert_array_equal(ds.groups, ds.reference_index)
    assert ds.reference_paths[0] == ds.references[ds.reference_index[0]]
    if kind == "csv":
        assert ds.official_count is None and not ds.is_subset and ds.root == made[kind].parent.absolute()
        assert ds.describe() == "scores: 24 pairs, 3 references, 4 distortion types (MOS, higher = better) (synthetic)"
    else:
        official = OFFICIAL_COUNTS[kind]
        assert ds.official_count == official and ds.is_subset
        assert ds.describe().endswith(f", a subset: {n} of {official} pairs (synthetic)")
        assert ds.describe().startswith(f"{kind}: {n} pairs, 3 references, 4 distortion types (")


@pytest.mark.parametrize("kind", sorted(HAS_LEVELS))
def test_scores_fall_with_level(made, kind):
    """The fixture's scores are monotone in strength: within each reference and type, level 2 is worse."""
    ds = load_mos_dataset(kind, made[kind])
    for r in range(REFS):
        for name in set(ds.distortion):
            pick = (ds.reference_index == r) & (np.array(ds.distortion) == name)
            by_level = ds.mos[pick][np.argsort(ds.level[pick])]
            assert len(by_level) == 2 and by_level[0] > by_level[1]


def test_tid2013_scores_paths_and_types_as_in_the_score_file(made):
    ds = load_mos_dataset("tid2013", made["tid2013"])
    lines = (made["tid2013"] / "mos_with_names.txt").read_text().split()
    listed = {name: float(score) for score, name in zip(lines[::2], lines[1::2])}
    assert {p.name: s for p, s in zip(ds.distorted, ds.scores)} == listed
    i = [p.name for p in ds.distorted].index("i02_08_2.bmp")
    assert ds.distortion[i] == TID2013_DISTORTIONS[7] == "gaussian blur" and ds.level[i] == 2
    assert ds.references[ds.reference_index[i]].name == "I02.BMP"
    assert len(TID2013_DISTORTIONS) == 24


def test_live_drops_originals_and_follows_the_mat_order(made):
    from scipy.io import loadmat

    ds = load_mos_dataset("live", made["live"])
    mat = loadmat(made["live"] / "dmos.mat")
    values, orgs = mat["dmos"].ravel(), mat["orgs"].ravel()
    assert orgs.sum() == 1 and len(values) == len(ds) + 1  # one original, dropped
    assert sorted(ds.scores.tolist()) == sorted(values[orgs == 0].tolist())
    # the jpeg folder comes second in the mat file (after jp2k, empty here): its imgN is value N - 1
    jpeg = [(int(p.stem[3:]), s) for p, s in zip(ds.distorted, ds.scores) if p.parent.name == "jpeg"]
    assert jpeg and all(values[n - 1] == s for n, s in jpeg)


def test_live_official_length_mat_with_some_images_is_a_subset(made, tmp_path):
    """A complete dmos.mat (982 values, the official blocks) and info.txt files naming some images."""
    from scipy.io import loadmat, savemat

    root = copy_of(made, "live", tmp_path)
    small = loadmat(root / "dmos.mat")
    values, orgs = small["dmos"].ravel(), small["orgs"].ravel()
    full, full_orgs = np.full(982, 50.0), np.zeros(982)
    start_small, start_full = 0, 0
    for folder, size, _ in LIVE_FOLDERS:
        count = len((root / folder / "info.txt").read_text().split())  // 3  # lines "<ref> imgN.bmp <value>"
        full[start_full:start_full + count] = values[start_small:start_small + count]
        full_orgs[start_full:start_full + count] = orgs[start_small:start_small + count]
        start_small, start_full = start_small + count, start_full + size
    savemat(root / "dmos.mat", {"dmos": full[None], "orgs": full_orgs[None]})
    ds = load_mos_dataset("live", root)
    assert len(ds) == REFS * DISTORTIONS and ds.is_subset and ds.official_count == 779
    assert sorted(ds.scores.tolist()) == sorted(values[orgs == 0].tolist())


def test_subset_by_deleted_lines_and_case_tolerance(made, tmp_path):
    root = copy_of(made, "tid2013", tmp_path)
    lines = (root / "mos_with_names.txt").read_text().splitlines()
    (root / "mos_with_names.txt").write_text("\n".join(lines[:-5]) + "\n")
    (root / "distorted_images").rename(root / "Distorted_Images")
    (root / "Distorted_Images" / "i01_01_1.bmp").rename(root / "Distorted_Images" / "I01_01_1.BMP")
    ds = load_mos_dataset("tid2013", root)
    assert len(ds) == REFS * DISTORTIONS - 5 and ds.is_subset
    assert "a subset: 19 of 3000 pairs" in ds.describe()
    assert any(p.name == "I01_01_1.BMP" and p.parent.name == "Distorted_Images" for p in ds.distorted)


def test_pipal_images_in_distortion_subfolders(made, tmp_path):
    root = copy_of(made, "pipal", tmp_path)
    (root / "Train_Dist").rename(root / "Distortion_1")
    ds = load_mos_dataset("pipal", root)
    assert len(ds) == REFS * DISTORTIONS and all(p.parent.name == "Distortion_1" for p in ds.distorted)


# ---------------------------------------------------------------- the generic CSV

def write_csv(folder: Path, text: str, name: str = "set.csv") -> Path:
    (folder / name).write_text(text)
    return folder / name


def test_csv_groups_direction_and_precedence(made, tmp_path):
    root = copy_of(made, "csv", tmp_path).parent
    rows = (root / "scores.csv").read_text().splitlines()[1:]
    body = "\n".join(f"{r},{'a' if r.startswith('reference/r01') else 'b'}" for r in rows)
    ds = load_mos_dataset("csv", write_csv(root, "reference,distorted,score,type,level,group\n" + body))
    assert ds.name == "set" and ds.group_index is not None
    assert ds.group_index.tolist() == [0] * DISTORTIONS + [1] * 2 * DISTORTIONS
    np.testing.assert_array_equal(ds.groups, ds.group_index)
    assert ds.reference_index.tolist() == np.repeat(np.arange(REFS), DISTORTIONS).tolist()  # still the images
    assert "2 groups" in ds.describe()

    plain = write_csv(root, "reference,distorted,score\n" + "\n".join(",".join(r.split(",")[:3]) for r in rows))
    mos = load_mos_dataset("csv", plain)
    dmos = load_mos_dataset("csv", plain, dmos=True)
    assert mos.higher_is_better and not dmos.higher_is_better and "(DMOS, lower = better)" in dmos.describe()
    np.testing.assert_array_equal(dmos.mos, -mos.scores)
    assert mos.distortion == ("",) * len(mos) and not mos.level.any()

    flagged = write_csv(root, "reference,distorted,score,dmos\n" + "\n".join(
        ",".join(r.split(",")[:3]) + ",TRUE" for r in rows))
    assert not load_mos_dataset("csv", flagged).higher_is_better
    assert not load_mos_dataset("csv", flagged, dmos=True).higher_is_better
    text = error_of("csv", flagged, dmos=False)
    assert text.startswith(f"csv {flagged}: dmos=False was given but the file's dmos column says True")
    mixed = write_csv(root, "reference,distorted,score,dmos\n" + "\n".join(
        ",".join(r.split(",")[:3]) + f",{i % 2}" for i, r in enumerate(rows)))
    assert "mixes true and false" in error_of("csv", mixed)


def test_csv_absolute_paths_and_wrong_targets(made, tmp_path):
    ds = load_mos_dataset("csv", made["csv"])
    other = tmp_path / "elsewhere"
    other.mkdir()
    absolute = write_csv(other, "reference,distorted,score\n" + "\n".join(
        f"{r},{d},{s}" for r, d, s in zip(ds.reference_paths, ds.distorted, ds.scores)))
    again = load_mos_dataset("csv", absolute)
    assert again.distorted == ds.distorted and not again.synthetic and again.root == other.absolute()
    assert error_of("csv", other) == f"csv {other}: is a folder; give the CSV file (csv:FILE)"
    assert error_of("csv", other / "none.csv") == f"csv {other / 'none.csv'}: no such file"
    missing_column = write_csv(other, "ref,distorted,score\na.png,b.png,1\n")
    assert "has no column reference" in error_of("csv", missing_column)


# ---------------------------------------------------------------- validation errors: one line each

def test_missing_distorted_image(made, tmp_path):
    root = copy_of(made, "tid2013", tmp_path)
    for name in ("i01_01_1.bmp", "i03_17_2.bmp"):
        (root / "distorted_images" / name).unlink()
    assert error_of("tid2013", root) == (f"tid2013 {root}: 2 distorted images listed in mos_with_names.txt are "
                                         "missing (first: distorted_images/i01_01_1.bmp)")


def test_missing_reference_image(made, tmp_path):
    root = copy_of(made, "kadid10k", tmp_path)
    (root / "images" / "I02.png").unlink()
    assert error_of("kadid10k", root) == (f"kadid10k {root}: 1 reference images named in dmos.csv are missing "
                                          "(first: images/I02.png)")


def test_size_mismatch(made, tmp_path):
    from PIL import Image

    root = copy_of(made, "kadid10k", tmp_path)
    Image.new("RGB", (30, 20)).save(root / "images" / "I01_01_02.png")
    assert error_of("kadid10k", root) == (f"kadid10k {root}: 1 distorted images differ in size from their reference "
                                          "(first: images/I01_01_02.png is 30x20, images/I01.png is 48x40)")


def test_score_not_a_number(made, tmp_path):
    root = copy_of(made, "csiq", tmp_path)
    lines = (root / "csiq_dmos.csv").read_text().splitlines()
    lines[3] = ",".join(lines[3].split(",")[:-1] + ["n/a"])
    (root / "csiq_dmos.csv").write_text("\n".join(lines) + "\n")
    text = error_of("csiq", root)
    assert text.startswith(f"csiq {root}: 1 scores in csiq_dmos.csv are not finite numbers (first: line 4: '1600,")

    tid = copy_of(made, "tid2013", tmp_path)
    lines = (tid / "mos_with_names.txt").read_text().splitlines()
    lines[0] = "nan " + lines[0].split()[1]
    (tid / "mos_with_names.txt").write_text("\n".join(lines))
    assert error_of("tid2013", tid) == (f"tid2013 {tid}: 1 scores in mos_with_names.txt are not finite numbers "
                                        "(first: line 1: 'nan i01_01_1.bmp')")


def test_unreadable_image(made, tmp_path):
    root = copy_of(made, "pipal", tmp_path)
    (root / "Train_Dist" / "A0002_01_00.bmp").write_bytes(b"not an image")
    assert error_of("pipal", root) == (f"pipal {root}: 1 listed files are not readable images "
                                       "(first: Train_Dist/A0002_01_00.bmp (UnidentifiedImageError))")


@pytest.mark.parametrize("kind, remove, expected", [
    ("tid2013", "mos_with_names.txt", "score file mos_with_names.txt is missing"),
    ("kadid10k", "dmos.csv", "score file dmos.csv is missing"),
    ("live", "dmos.mat", "score file dmos.mat (or dmos_realigned.mat) is missing"),
    ("csiq", "csiq_dmos.csv", "score file csiq_dmos.csv is missing"),
    ("pipal", "Train_Label", "score folder Train_Label/ is missing"),
])
def test_missing_score_file(made, tmp_path, kind, remove, expected):
    root = copy_of(made, kind, tmp_path)
    target = root / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    assert error_of(kind, root).startswith(f"{kind} {root}: {expected} (")


def test_csiq_xlsx_without_openpyxl(made, tmp_path, monkeypatch):
    root = copy_of(made, "csiq", tmp_path)
    (root / "csiq_dmos.csv").unlink()
    (root / "csiq.DMOS.xlsx").write_bytes(b"PK")
    monkeypatch.setitem(sys.modules, "openpyxl", None)  # import fails as if it were not installed
    text = error_of("csiq", root)
    assert "reading csiq.DMOS.xlsx needs openpyxl" in text and "export the all_by_image sheet" in text


def test_live_realigned_and_inconsistent_mat(made, tmp_path):
    from scipy.io import loadmat, savemat

    root = copy_of(made, "live", tmp_path)
    mat = loadmat(root / "dmos.mat")
    (root / "dmos.mat").unlink()
    savemat(root / "dmos_realigned.mat", {"dmos_new": mat["dmos"], "orgs": mat["orgs"]})
    assert len(load_mos_dataset("live", root)) == REFS * DISTORTIONS
    savemat(root / "dmos_realigned.mat", {"dmos_new": mat["dmos"][:, :-1], "orgs": mat["orgs"][:, :-1]})
    text = error_of("live", root)
    assert re.match(rf"live {re.escape(str(root))}: dmos_realigned.mat holds 24 scores, but the info.txt files "
                    r"number 25 images \(", text), text


def test_listed_twice_and_bad_lines(made, tmp_path):
    root = copy_of(made, "tid2013", tmp_path)
    text = (root / "mos_with_names.txt").read_text()
    (root / "mos_with_names.txt").write_text(text + "4.0 I01_01_1.BMP\n")
    assert error_of("tid2013", root) == (f"tid2013 {root}: 1 distorted images are listed more than once in "
                                         "mos_with_names.txt (first: distorted_images/I01_01_1.BMP)")
    (root / "mos_with_names.txt").write_text(text + "4.0 i01_99_1.bmp\n")
    assert error_of("tid2013", root).startswith(f"tid2013 {root}: 1 lines of mos_with_names.txt are not ")


def test_kind_and_folder_errors(made, tmp_path):
    assert error_of("tid2013", tmp_path / "none").startswith(f"tid2013 {tmp_path / 'none'}: folder does not exist")
    assert error_of("koniq", tmp_path) == ("unknown dataset kind 'koniq' (expected one of tid2013, kadid10k, "
                                           "live, csiq, pipal, csv)")
    assert "dmos=True contradicts that" in error_of("tid2013", made["tid2013"], dmos=True)
    assert load_mos_dataset("KADID-10k", made["kadid10k"]).kind == "kadid10k"


# ---------------------------------------------------------------- the command-line form

@pytest.mark.parametrize("text, expected", [
    ("tid2013=/data/tid", ("tid2013", Path("/data/tid"))),
    ("KADID10K=/d/k", ("kadid10k", Path("/d/k"))),
    ("kadid-10k=k", ("kadid10k", Path("k"))),
    ("live=LIVE", ("live", Path("LIVE"))),
    ("csiq=C", ("csiq", Path("C"))),
    ("pipal=p", ("pipal", Path("p"))),
    ("csv:my/set.csv", ("csv", Path("my/set.csv"))),
    ("csv=my/set.csv", ("csv", Path("my/set.csv"))),
    ("csv:a=b.csv", ("csv", Path("a=b.csv"))),
])
def test_parse_dataset_option(text, expected):
    assert parse_dataset_option(text) == expected


@pytest.mark.parametrize("text, message", [
    ("foo=x", "--dataset foo=x: unknown dataset 'foo' (expected tid2013=DIR, kadid10k=DIR, live=DIR, csiq=DIR, "
              "pipal=DIR or csv:FILE)"),
    ("tid2013=", "--dataset tid2013=: empty path (give tid2013=DIR)"),
    ("csv:", "--dataset csv:: empty path (give csv:FILE)"),
    ("tid2013", "--dataset tid2013: give KIND=PATH, one of tid2013=DIR, kadid10k=DIR, live=DIR, csiq=DIR, pipal=DIR "
                "or csv:FILE"),
])
def test_parse_dataset_option_errors(text, message):
    with pytest.raises(InputError) as info:
        parse_dataset_option(text)
    assert str(info.value) == message


# ---------------------------------------------------------------- the embedded set, the fingerprint

def file_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_embedded_set_is_synthetic_small_and_deterministic(tmp_path, monkeypatch):
    monkeypatch.setenv("PERCEPMETRIC_CACHE", str(tmp_path / "a"))
    ds = embedded_mos_dataset()
    assert ds.synthetic and ds.kind == "csv" and ds.higher_is_better and len(ds) == 96
    assert len(ds.references) == 8 and len(set(ds.distortion)) == 4 and set(ds.level.tolist()) == {1, 3, 5}
    assert ds.describe() == ("synthetic-mos: 96 pairs, 8 references, 4 distortion types (MOS, higher = better) "
                             "(synthetic)")
    assert ds.root.is_relative_to(tmp_path / "a")
    again = embedded_mos_dataset()  # found, not written again: the same files, the same fingerprint
    assert again.fingerprint == ds.fingerprint and again.root == ds.root
    other = embedded_mos_dataset(tmp_path / "b")  # written anew elsewhere: the same bytes
    assert file_bytes(other.root) == file_bytes(ds.root)
    np.testing.assert_array_equal(other.scores, ds.scores)
    from PIL import Image

    sizes = {Image.open(p).size for p in ds.references}
    assert min(min(s) for s in sizes) == 176 and max(max(s) for s in sizes) == 208


def test_fixture_writer_is_deterministic(tmp_path):
    a = make_mos_fixture("kadid10k", tmp_path / "a", references=2, distortions=3, seed=5)
    b = make_mos_fixture("kadid10k", tmp_path / "b", references=2, distortions=3, seed=5)
    assert file_bytes(a) == file_bytes(b)


def test_fingerprint_follows_scores_and_images(made, tmp_path):
    path = copy_of(made, "csv", tmp_path)
    first = load_mos_dataset("csv", path).fingerprint
    assert load_mos_dataset("csv", path).fingerprint == first
    lines = path.read_text().splitlines()
    fields = lines[1].split(",")
    lines[1] = ",".join(fields[:2] + ["9.9"] + fields[3:])
    path.write_text("\n".join(lines) + "\n")
    changed_score = load_mos_dataset("csv", path).fingerprint
    assert changed_score != first
    image = path.parent / "distorted" / "r01_noise_1.png"
    stat = image.stat()
    from PIL import Image

    Image.new("RGB", (48, 40), (9, 9, 9)).save(image)
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a later write, on any clock resolution
    assert load_mos_dataset("csv", path).fingerprint not in (first, changed_score)
