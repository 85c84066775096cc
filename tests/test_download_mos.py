"""``download-mos`` offline: a KADID-10k-layout ZIP built here from the synthetic fixture, installed
from a local path or a file:// URL; hostile archives refused in one line with nothing in ROOT;
databases without an official archive, and TID2013 without a RAR tool, explained in one line."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import stat
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from percepmetric import cli
from percepmetric.data import download_mos as dm
from percepmetric.data.mos import load_mos_dataset
from percepmetric.data.mos_fixtures import make_mos_fixture

from helpers import run_cli

SIZE = (48, 40)  # the fixture's images (width, height)
PAIRS = 3 * 4  # references x distortions of make_mos_fixture's defaults


@pytest.fixture(scope="module")
def kadid_files(tmp_path_factory) -> dict[str, bytes]:
    """Archive name -> bytes of a KADID-10k-layout set (the fixture, without its synthetic marker)."""
    folder = make_mos_fixture("kadid10k", tmp_path_factory.mktemp("kadid"), size=SIZE)
    members = {"kadid10k/dmos.csv": (folder / "dmos.csv").read_bytes()}
    members.update({f"kadid10k/images/{p.name}": p.read_bytes() for p in sorted((folder / "images").iterdir())})
    return members


@pytest.fixture(autouse=True)
def fixture_size(monkeypatch):
    """The checks expect 512x384 images; the fixture's are smaller."""
    monkeypatch.setitem(dm.SOURCES, "kadid10k", dataclasses.replace(dm.KADID10K, image_size=SIZE))
    monkeypatch.delenv(dm.ENV_ROOT, raising=False)
    cli.cli.add_command(dm.download_mos_command)
    yield
    cli.cli.commands.pop("download-mos", None)


def _zip(path: Path, files: dict[str, bytes], extra: list[tuple[zipfile.ZipInfo, bytes]] = (),
         folders: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        if folders:
            zf.writestr("kadid10k/", b"")
            zf.writestr("kadid10k/images/", b"")
        for name, data in files.items():
            zf.writestr(name, data)
        for info, data in extra:
            zf.writestr(info, data)
    return path


def _run(capsys, *args: object) -> tuple[int, str, str]:
    return run_cli(capsys, "download-mos", "--no-progress", *args)


def _assert_refused(capsys, tmp_path: Path, archive: Path, member: str | None, why: str) -> None:
    """Exit 2, one line naming the archive, the member and the reason; nothing under ROOT but .download."""
    root = tmp_path / "root"
    code, _, err = _run(capsys, "kadid10k", "--root", root, "--url", archive)
    lines = [line for line in err.splitlines() if line.startswith("percepmetric: error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    named = "kadid10k.zip: refused: " + ("" if member is None else f"member {member!r} ")
    assert named in lines[0] and why in lines[0], lines[0]
    assert sorted(p.name for p in root.iterdir()) == [".download"]
    # The refused archive is deleted (the next run fetches it again), with no scratch and no marker.
    assert sorted(p.name for p in (root / ".download").iterdir()) == []
    assert "the archive was deleted from" in lines[0]


# ---------------------------------------------------------------- a good archive installs

@pytest.mark.parametrize("as_uri", [False, True])
def test_installs_verifies_and_records(tmp_path, capsys, kadid_files, as_uri):
    archive = _zip(tmp_path / "mirror" / "kadid10k.zip", kadid_files)
    root = tmp_path / "root"
    code, out, err = _run(capsys, "kadid10k", "--root", root, "--url", archive.as_uri() if as_uri else archive)
    assert code == 0, err
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert f"kadid10k.zip: sha256 {digest}" in err and "no published checksum" in err
    assert f"kadid10k is in {root} ({PAIRS} pairs installed)" in out and f"--dataset kadid10k={root}" in out
    dataset = load_mos_dataset("kadid10k", root)
    assert len(dataset) == PAIRS and len(dataset.references) == 3 and dataset.higher_is_better
    assert sorted(p.name for p in root.iterdir()) == [".download", dm.MANIFEST, "dmos.csv", "images"]
    assert sorted(p.name for p in (root / ".download").iterdir()) == ["kadid10k.zip.done"]  # archive deleted
    entry = json.loads((root / dm.MANIFEST).read_text())["archives"]["kadid10k.zip"]
    assert entry["url"] == archive.as_uri() and entry["bytes"] == archive.stat().st_size
    assert entry["sha256"] == digest and entry["pairs"] == PAIRS and not entry["published_sha256_checked"]
    assert archive.is_file()  # the source is never touched

    # A rerun skips the finished install without fetching (the mirror may be gone).
    archive.unlink()
    code, out, err = _run(capsys, "kadid10k", "--root", root, "--url", tmp_path / "mirror")
    assert code == 2  # --url must name a file
    code, out, err = _run(capsys, "kadid10k", "--root", root)
    assert code == 0 and "already installed" in err and "already installed" in out, err


def test_partial_download_resumes_and_keep_archive(tmp_path, capsys, kadid_files):
    archive = _zip(tmp_path / "mirror" / "kadid10k.zip", kadid_files)
    data = archive.read_bytes()
    root = tmp_path / "root"
    (root / ".download").mkdir(parents=True)
    (root / ".download" / "kadid10k.zip.part").write_bytes(data[: len(data) // 2])
    code, _, err = _run(capsys, "kadid10k", "--root", root, "--url", archive.as_uri(), "--keep-archive")
    assert code == 0, err
    assert (root / ".download" / "kadid10k.zip").read_bytes() == data
    assert len(load_mos_dataset("kadid10k", root)) == PAIRS


def test_default_root_and_python_api(tmp_path, monkeypatch, kadid_files):
    monkeypatch.setenv(dm.ENV_ROOT, str(tmp_path / "mos"))
    assert dm.default_mos_root("kadid10k") == tmp_path / "mos" / "kadid10k"
    monkeypatch.delenv(dm.ENV_ROOT)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert dm.default_mos_root("tid2013") == tmp_path / "xdg" / "percepmetric" / "tid2013"
    archive = _zip(tmp_path / "kadid10k.zip", kadid_files, folders=False)  # folder entries are optional
    logged: list[str] = []
    result = dm.download_mos("KADID-10k", url=archive, progress=False, log=logged.append)
    assert result == dm.MOSInstall("kadid10k", tmp_path / "xdg" / "percepmetric" / "kadid10k", PAIRS,
                                   hashlib.sha256(archive.read_bytes()).hexdigest(), False)


def test_command_object_through_clirunner(tmp_path, kadid_files):
    archive = _zip(tmp_path / "kadid10k.zip", kadid_files)
    result = CliRunner().invoke(dm.download_mos_command, ["kadid10k", "--root", str(tmp_path / "r"), "--url",
                                                          str(archive), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert dm.COMMANDS == [dm.download_mos_command] and dm.download_mos_command.name == "download-mos"


def test_root_with_a_foreign_dataset_is_left_alone(tmp_path, capsys, kadid_files):
    archive = _zip(tmp_path / "kadid10k.zip", kadid_files)
    root = tmp_path / "root"
    (root / "images").mkdir(parents=True)
    code, _, err = _run(capsys, "kadid10k", "--root", root, "--url", archive)
    assert code == 2 and err.count("\n") == 1 and "already holds images, not installed by download-mos" in err


def test_published_checksum_is_checked(tmp_path, capsys, monkeypatch, kadid_files):
    archive = _zip(tmp_path / "kadid10k.zip", kadid_files)
    monkeypatch.setattr(dm, "PUBLISHED_SHA256", {"kadid10k.zip": "0" * 64})
    code, _, err = _run(capsys, "kadid10k", "--root", tmp_path / "root", "--url", archive)
    assert code == 2 and f"differs from the published {'0' * 64}" in err
    assert not (tmp_path / "root" / "images").exists()


def test_no_checksum_is_invented():
    assert dm.PUBLISHED_SHA256 == {} and dm.EXTRA_MEMBERS == frozenset()


# ---------------------------------------------------------------- refused archives

def _info(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0))
    info.create_system, info.external_attr = 3, mode << 16
    return info


def test_symlink_member_is_refused(tmp_path, capsys, kadid_files):
    files = dict(kadid_files)
    del files["kadid10k/images/I01_01_01.png"]
    link = _info("kadid10k/images/I01_01_01.png", stat.S_IFLNK | 0o777)
    archive = _zip(tmp_path / "m" / "kadid10k.zip", files, [(link, b"../../../etc/passwd")])
    _assert_refused(capsys, tmp_path, archive, "kadid10k/images/I01_01_01.png", "is a symbolic link")


def test_fifo_member_is_refused(tmp_path, capsys, kadid_files):
    archive = _zip(tmp_path / "m" / "kadid10k.zip", kadid_files,
                   [(_info("kadid10k/images/I09.png", stat.S_IFIFO | 0o644), b"")])
    _assert_refused(capsys, tmp_path, archive, "kadid10k/images/I09.png", "is a FIFO")


@pytest.mark.parametrize("name, why", [
    ("../evil", "has an empty, '.' or '..' part"),
    ("kadid10k/../../evil.png", "has an empty, '.' or '..' part"),
    ("/etc/evil", "has an absolute path"),
    ("kadid10k\\images\\I09.png", "backslash"),
    ("kadid10k/images/evil.sh", "is not part of the kadid10k layout"),
    ("kadid10k/readme.txt", "is not part of the kadid10k layout"),
    ("kadid10k/images/I01_01_01.PNG", "is not part of the kadid10k layout"),
    ("other/dmos.csv", "is not part of the kadid10k layout"),
    ("kadid10k/images/sub/", "is a folder outside the kadid10k layout"),
])
def test_member_outside_the_layout_is_refused(tmp_path, capsys, kadid_files, name, why):
    folder = name.endswith("/")
    info = _info(name, (stat.S_IFDIR | 0o755) if folder else (stat.S_IFREG | 0o644))
    archive = _zip(tmp_path / "m" / "kadid10k.zip", kadid_files, [(info, b"" if folder else b"x")])
    _assert_refused(capsys, tmp_path, archive, name, why)


def test_member_twice_is_refused(tmp_path, capsys, kadid_files):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate name it is asked to write
        archive = _zip(tmp_path / "m" / "kadid10k.zip", kadid_files,
                       [(_info("kadid10k/dmos.csv", stat.S_IFREG | 0o644), b"dist_img,ref_img,dmos\n")])
    _assert_refused(capsys, tmp_path, archive, "kadid10k/dmos.csv", "appears twice in the archive")


def test_oversized_member_is_refused(tmp_path, capsys, kadid_files):
    files = dict(kadid_files)
    files["kadid10k/images/I02.png"] += bytes(range(256)) * 8192  # 2 MiB that deflate cannot shrink much
    archive = _zip(tmp_path / "m" / "kadid10k.zip", files)
    _assert_refused(capsys, tmp_path, archive, "kadid10k/images/I02.png", "more than the 1 MiB allowed for one image")


def test_bomb_like_ratio_is_refused(tmp_path, capsys, kadid_files):
    files = dict(kadid_files)
    files["kadid10k/images/I02_01_01.png"] = b"\0" * (900 << 10)  # under the 1 MiB cap, deflates ~1000:1
    archive = _zip(tmp_path / "m" / "kadid10k.zip", files)
    _assert_refused(capsys, tmp_path, archive, "kadid10k/images/I02_01_01.png", "more than 100 times (a zip bomb?)")


def test_caps_on_members_and_total(tmp_path, capsys, monkeypatch, kadid_files):
    archive = _zip(tmp_path / "m" / "kadid10k.zip", kadid_files)
    monkeypatch.setitem(dm.SOURCES, "kadid10k", dataclasses.replace(dm.SOURCES["kadid10k"], max_members=5))
    _assert_refused(capsys, tmp_path, archive, list(kadid_files)[3], "is one more than the 5 members allowed")
    total = sum(len(kadid_files[n]) for n in list(kadid_files)[:4])
    monkeypatch.setitem(dm.SOURCES, "kadid10k", dataclasses.replace(dm.KADID10K, image_size=SIZE, max_bytes=total))
    _assert_refused(capsys, tmp_path / "2", archive, list(kadid_files)[4], "takes the archive past")


def test_image_header_is_checked_before_writing(tmp_path, capsys, kadid_files):
    files = dict(kadid_files)
    files["kadid10k/images/I03.png"] = b"GIF89a" + bytes(100)
    archive = _zip(tmp_path / "m" / "kadid10k.zip", files)
    _assert_refused(capsys, tmp_path, archive, "kadid10k/images/I03.png", "is not a PNG file")


def test_wrong_image_size_is_refused(tmp_path, capsys, monkeypatch, kadid_files):
    monkeypatch.setitem(dm.SOURCES, "kadid10k", dm.KADID10K)  # the real 512x384
    archive = _zip(tmp_path / "m" / "kadid10k.zip", kadid_files)
    _assert_refused(capsys, tmp_path, archive, "kadid10k/images/I01.png",
                    "is a 48x40 image; KADID-10k images are 512x384")


def test_verification_failure_installs_nothing(tmp_path, capsys, kadid_files):
    files = dict(kadid_files)
    del files["kadid10k/images/I02_11_01.png"]  # listed in dmos.csv
    archive = _zip(tmp_path / "m" / "kadid10k.zip", files)
    root = tmp_path / "root"
    code, _, err = _run(capsys, "kadid10k", "--root", root, "--url", archive)
    assert code == 2 and "unpacked data failed verification" in err and "I02_11_01.png" in err, err
    assert sorted(p.name for p in root.iterdir()) == [".download"]


def test_a_refused_archive_is_not_reused_by_the_next_run(tmp_path, capsys, kadid_files):
    """After a refusal, a rerun with another --url fetches that archive (issue 20, item 8); a kept
    archive from one URL is not taken for another's either."""
    files = dict(kadid_files)
    del files["kadid10k/images/I01_01_01.png"]
    link = _info("kadid10k/images/I01_01_01.png", stat.S_IFLNK | 0o777)
    bad = _zip(tmp_path / "bad" / "kadid10k.zip", files, [(link, b"../../../etc/passwd")])
    good = _zip(tmp_path / "good" / "kadid10k.zip", kadid_files)
    root = tmp_path / "root"
    code, _, err = _run(capsys, "kadid10k", "--root", root, "--url", bad)
    assert code == 2 and "refused" in err
    code, out, err = _run(capsys, "kadid10k", "--root", root, "--url", good, "--keep-archive")
    assert code == 0, err
    assert len(load_mos_dataset("kadid10k", root)) == PAIRS
    # A kept archive is reused for the same URL only.
    (root / ".download" / "kadid10k.zip.done").unlink()
    code, _, err = _run(capsys, "kadid10k", "--root", root, "--url", bad)
    assert code == 2 and "refused" in err, err


def test_not_a_zip_is_one_line(tmp_path, capsys):
    archive = tmp_path / "kadid10k.zip"
    archive.write_bytes(b"not a zip at all" * 10)
    code, _, err = _run(capsys, "kadid10k", "--root", tmp_path / "root", "--url", archive)
    errors = [line for line in err.splitlines() if line.startswith("percepmetric: error:")]
    assert code == 2 and len(errors) == 1 and "damaged archive (BadZipFile" in errors[0], err


# ---------------------------------------------------------------- not downloadable, no RAR tool

@pytest.mark.parametrize("kind, says", [
    ("live", "given out on request"), ("csiq", "no longer hosted by its authors"), ("PIPAL", "Google Drive"),
    ("koniq", "unknown database (downloadable: kadid10k, tid2013; by hand: live, csiq, pipal)"),
])
def test_databases_without_an_archive_are_explained(tmp_path, capsys, kind, says):
    code, out, err = _run(capsys, kind, "--root", tmp_path / "root")
    assert code == 2 and err.count("\n") == 1 and says in err and out == "", err
    assert not (tmp_path / "root").exists()


def test_help_says_where_to_get_the_others(capsys):
    code, out, _ = run_cli(capsys, "download-mos", "--help")
    assert code == 0 and "live.ece.utexas.edu" in out and "csiq" in out and "Google Drive" in out


def test_tid2013_without_a_rar_tool(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(dm.shutil, "which", lambda name: None)
    code, _, err = _run(capsys, "tid2013", "--root", tmp_path / "root")
    assert code == 2 and err.count("\n") == 1, err
    assert "RAR archive" in err and "install unrar, 7z (p7zip) or bsdtar" in err and "--dataset tid2013=DIR" in err
    assert not (tmp_path / "root").exists()  # nothing fetched


def _fake_bsdtar(folder: Path) -> Path:
    """A stand-in for bsdtar that unpacks a tar (links too, as a RAR tool would)."""
    folder.mkdir(parents=True, exist_ok=True)
    tool = folder / "bsdtar"
    tool.write_text(f"#!{sys.executable}\n"
                    "import sys, tarfile\n"
                    "args = sys.argv[1:]\n"
                    "tarfile.open(args[args.index('-f') + 1]).extractall(args[args.index('-C') + 1])\n")
    tool.chmod(0o755)
    return tool


def _tid_tar(tmp_path: Path, link: bool = False) -> Path:
    folder = make_mos_fixture("tid2013", tmp_path / "tid")
    archive = tmp_path / "mirror" / "tid2013.rar"
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w") as tar:
        for name in ("mos_with_names.txt", "reference_images", "distorted_images"):
            tar.add(folder / name, arcname=name)
        tar.add(folder / "mos_with_names.txt", arcname="readme")  # other files of the archive: not installed
        if link:
            info = tarfile.TarInfo("distorted_images/evil.bmp")
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
    return archive


def test_tid2013_through_a_rar_tool(tmp_path, capsys, monkeypatch):
    tool = _fake_bsdtar(tmp_path / "bin")
    monkeypatch.setattr(dm.shutil, "which", lambda name: str(tool) if name == "bsdtar" else None)
    root = tmp_path / "root"
    code, out, err = _run(capsys, "tid2013", "--root", root, "--url", _tid_tar(tmp_path))
    assert code == 0, err
    assert sorted(p.name for p in root.iterdir()) == [".download", dm.MANIFEST, "distorted_images",
                                                      "mos_with_names.txt", "reference_images"]
    assert len(load_mos_dataset("tid2013", root)) == PAIRS


def test_tid2013_link_is_refused(tmp_path, capsys, monkeypatch):
    tool = _fake_bsdtar(tmp_path / "bin")
    monkeypatch.setattr(dm.shutil, "which", lambda name: str(tool) if name == "bsdtar" else None)
    root = tmp_path / "root"
    code, _, err = _run(capsys, "tid2013", "--root", root, "--url", _tid_tar(tmp_path, link=True))
    errors = [line for line in err.splitlines() if line.startswith("percepmetric: error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert "refused: member 'distorted_images/evil.bmp' is a symbolic link" in err
    assert sorted(p.name for p in root.iterdir()) == [".download"]
