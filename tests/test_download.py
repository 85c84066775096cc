"""``download-bapps`` against hostile archives: links, strays, oversized images and archives,
checksums and the install manifest. Every archive is built here, small, and served from a
local folder through ``--url-base``."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from percepmetric.data import bapps, download

from helpers import png_chunk, run_cli

ITEMS = 2  # per split


def _png(seed: int, size: tuple[int, int] = (64, 64), image_format: str = "PNG") -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=image_format)
    return out.getvalue()


def _npy(value: float) -> bytes:
    out = io.BytesIO()
    np.save(out, np.array([value], dtype=np.float32))
    return out.getvalue()


def _official_members(archive: download.Archive) -> dict[str, bytes]:
    """Folder -> None and file -> bytes, as the official archive names them (``jnd/val/cnn/p0/000000.png``,
    ``val/cnn/judge/000001.npy``)."""
    members: dict[str, bytes | None] = {}
    seed = 0
    for split in archive.splits:
        base = bapps.split_dir(Path(), split).as_posix().removeprefix("2afc/")
        jnd = split.startswith("jnd/")
        image_dirs, label_dir = (("p0", "p1"), "same") if jnd else (("ref", "p0", "p1"), "judge")
        parts = base.split("/")
        members.update({"/".join(parts[: i + 1]): None for i in range(len(parts))})
        for sub in image_dirs + (label_dir,):
            members[f"{base}/{sub}"] = None
            for i in range(ITEMS):
                seed += 1
                members[f"{base}/{sub}/{i:06d}" + (".npy" if sub == label_dir else ".png")] = (
                    _npy(0.25 * (i + 1)) if sub == label_dir else _png(seed))
    return members


def _write_archive(path: Path, members: dict[str, bytes | None], extra: list[tuple[tarfile.TarInfo, bytes]] = (),
                   prefix: str = "") -> Path:
    """A .tar.gz of ``members`` (None: a folder), then the hand-made ``extra`` members."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(prefix + name)
            info.mtime, info.mode = 1_500_000_000, 0o755 if data is None else 0o644
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data else None)
    return path


def _mirror(tmp_path: Path, jnd_members: dict | None = None, extra=(), prefix: str = "") -> Path:
    """A folder holding the three archives; ``jnd.tar.gz`` from ``jnd_members`` and ``extra``."""
    mirror = tmp_path / "mirror"
    jnd, val, train = download.ARCHIVES
    _write_archive(mirror / jnd.name, _official_members(jnd) if jnd_members is None else jnd_members, extra, prefix)
    _write_archive(mirror / val.name, _official_members(val), prefix=prefix)
    _write_archive(mirror / train.name, _official_members(train), prefix=prefix)
    return mirror


def _run(capsys, *args: str) -> tuple[int, str, str]:
    return run_cli(capsys, "download-bapps", "--no-progress", *args)


def _member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", linkname: str = "") -> tuple:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname, info.mode = kind, len(data), linkname, 0o644
    return info, data


def _assert_refused(capsys, tmp_path: Path, mirror: Path, member: str | None, why: str) -> None:
    """Exit 2, one line naming the archive, the member and the reason; nothing under ROOT."""
    root = tmp_path / "root"
    code, _, err = _run(capsys, "--val-only", "--root", str(root), "--url-base", str(mirror))
    lines = [line for line in err.splitlines() if line.startswith("percepmetric: error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    named = "jnd.tar.gz: refused: " + ("" if member is None else f"member '{member}' ")
    assert named in lines[0] and why in lines[0], lines[0]
    assert sorted(p.name for p in root.iterdir()) == [".download"]  # no jnd/, 2afc/ or manifest
    assert not [p for p in (root / ".download").iterdir() if p.name.startswith("unpack-")]


# ---------------------------------------------------------------- a real-looking archive installs

@pytest.mark.parametrize("prefix", ["", "./"])
def test_official_layout_installs_and_is_recorded(tmp_path, capsys, prefix):
    mirror = _mirror(tmp_path, prefix=prefix)
    root = tmp_path / "root"
    code, out, err = _run(capsys, "--val-only", "--root", str(root), "--url-base", str(mirror))
    assert code == 0, err
    split_count = len(bapps.JND_SPLITS + bapps.VAL_SPLITS)
    assert f"({split_count * ITEMS} items installed)" in out
    assert "jnd.tar.gz: sha256 " in err and "no published checksum to check it against" in err
    assert f"recorded in {root / download.MANIFEST}" in err
    manifest = json.loads((root / download.MANIFEST).read_text())
    assert sorted(manifest["archives"]) == ["jnd.tar.gz", "twoafc_val.tar.gz"]
    entry = manifest["archives"]["jnd.tar.gz"]
    archive = (mirror / "jnd.tar.gz").read_bytes()
    assert entry["bytes"] == len(archive) and entry["sha256"] == hashlib.sha256(archive).hexdigest()
    # Files per item: p0, p1 and same for JND; ref, p0, p1 and judge for 2AFC.
    assert entry["splits"] == {name: {"items": ITEMS, "files": 3 * ITEMS} for name in bapps.JND_SPLITS}
    assert manifest["archives"]["twoafc_val.tar.gz"]["splits"]["val/cnn"] == {"items": ITEMS, "files": 4 * ITEMS}
    assert not entry["published_sha256_checked"] and "publishes no checksums" in manifest["checksums"]
    split = bapps.load_jnd(root, "jnd/val/cnn", cache_dir=False)
    assert split.p0.shape == (ITEMS, 64, 64, 3) and split.same.tolist() == [0.25, 0.5]  # _npy(0.25 * (i + 1))
    # The training archive, installed later, joins the record; the others stay.
    code, out, err = _run(capsys, "--root", str(root), "--url-base", str(mirror))
    assert code == 0, err
    manifest = json.loads((root / download.MANIFEST).read_text())
    assert sorted(manifest["archives"]) == ["jnd.tar.gz", "twoafc_train.tar.gz", "twoafc_val.tar.gz"]


def test_no_checksum_is_invented():
    assert download.PUBLISHED_SHA256 == {}  # the upstream download script publishes none


def test_published_checksum_is_checked_before_unpacking(tmp_path, capsys, monkeypatch):
    mirror = _mirror(tmp_path)
    monkeypatch.setattr(download, "PUBLISHED_SHA256", {"jnd.tar.gz": "0" * 64})
    root = tmp_path / "root"
    code, _, err = _run(capsys, "--val-only", "--root", str(root), "--url-base", str(mirror))
    assert code == 2 and "jnd.tar.gz: sha256 " in err and f"differs from the published {'0' * 64}" in err
    assert not (root / "jnd").exists() and not (root / download.MANIFEST).exists()
    right = hashlib.sha256((mirror / "jnd.tar.gz").read_bytes()).hexdigest()
    monkeypatch.setattr(download, "PUBLISHED_SHA256", {"jnd.tar.gz": right})
    code, _, err = _run(capsys, "--val-only", "--root", str(root), "--url-base", str(mirror))
    assert code == 0 and "matches the published checksum" in err, err
    assert json.loads((root / download.MANIFEST).read_text())["archives"]["jnd.tar.gz"]["published_sha256_checked"]


# ---------------------------------------------------------------- links and special files

def test_symlink_that_stays_inside_the_scratch_folder_is_refused(tmp_path, capsys):
    # tarfile's "data" filter lets this through: the link resolves inside the folder it unpacks into.
    members = _official_members(download.ARCHIVES[0])
    del members["jnd/val/cnn/p1/000001.png"]
    mirror = _mirror(tmp_path, members, [_member("jnd/val/cnn/p1/000001.png", tarfile.SYMTYPE,
                                                 linkname="../p0/000001.png")])
    _assert_refused(capsys, tmp_path, mirror, "jnd/val/cnn/p1/000001.png",
                    "is a symbolic link to '../p0/000001.png' (BAPPS has only folders and regular files)")


def test_hardlink_is_refused(tmp_path, capsys):
    members = _official_members(download.ARCHIVES[0])
    del members["jnd/val/cnn/p1/000001.png"]
    mirror = _mirror(tmp_path, members, [_member("jnd/val/cnn/p1/000001.png", tarfile.LNKTYPE,
                                                 linkname="jnd/val/cnn/p0/000001.png")])
    _assert_refused(capsys, tmp_path, mirror, "jnd/val/cnn/p1/000001.png", "is a hard link to")


@pytest.mark.parametrize("kind, why", [(tarfile.FIFOTYPE, "is a FIFO"), (tarfile.CHRTYPE, "is a character device"),
                                       (tarfile.GNUTYPE_SPARSE, "is a sparse file")])
def test_special_file_is_refused(tmp_path, capsys, kind, why):
    mirror = _mirror(tmp_path, extra=[_member("jnd/val/cnn/p0/000009.png", kind)])
    _assert_refused(capsys, tmp_path, mirror, "jnd/val/cnn/p0/000009.png", why)


# ---------------------------------------------------------------- the layout

@pytest.mark.parametrize("name", [
    "jnd/val/cnn/p0/bomb.bin",          # the loader ignores it, so it installed
    "jnd/val/cnn/extra/000000.png",     # a folder the loader never reads
    "jnd/val/cnn/same/000000.png",      # an image among the judgments
    "jnd/val/cnn/p0/000000.PNG.npy",
    "jnd/val/cnn/p0/.000000.png",
    "jnd/README.txt",
    "val/cnn/ref/000000.png",           # a 2AFC set, in the JND archive
    "../jnd/val/cnn/p0/000005.png",
])
def test_file_outside_the_layout_is_refused(tmp_path, capsys, name):
    mirror = _mirror(tmp_path, extra=[_member(name, data=_png(99))])
    _assert_refused(capsys, tmp_path, mirror, name, "is not part of the BAPPS layout (expected "
                    "jnd/val/{traditional,cnn}/{p0,p1}/NNNNNN.png or .../same/NNNNNN.npy)")


def test_folder_outside_the_layout_is_refused(tmp_path, capsys):
    mirror = _mirror(tmp_path, extra=[_member("jnd/val/cnn/p0/nested", tarfile.DIRTYPE)])
    _assert_refused(capsys, tmp_path, mirror, "jnd/val/cnn/p0/nested", "is a folder outside the BAPPS layout")


def test_member_twice_is_refused(tmp_path, capsys):
    mirror = _mirror(tmp_path, extra=[_member("jnd/val/cnn/p0/000000.png", data=_png(5))])
    _assert_refused(capsys, tmp_path, mirror, "jnd/val/cnn/p0/000000.png", "appears twice in the archive")


# ---------------------------------------------------------------- image and file sizes

def _huge_png_header(width: int, height: int) -> bytes:
    """A PNG whose header announces ``width x height``; its pixels would take gigabytes."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 100_000))


# The limits in the messages: download.MAX_PNG_BYTES (1 MiB) and MAX_JUDGMENT_BYTES (4 KiB).
@pytest.mark.parametrize("data, why", [
    (_huge_png_header(30000, 30000), "is a 30000x30000 image; BAPPS patches are 64x64"),
    (_png(7, (32, 32)), "is a 32x32 image; BAPPS patches are 64x64"),
    (_png(7, image_format="BMP"), "is not a PNG file"),  # PIL would open it whatever its name
    # 2 MiB of padding after a 64x64 noise PNG of about 12 KiB: 2.01 MiB to three digits.
    (_png(7) + b"\0" * (2 << 20), "is 2.01 MiB, more than the 1 MiB allowed for one image"),
])
def test_image_is_checked_from_its_header(tmp_path, capsys, data, why):
    members = _official_members(download.ARCHIVES[0])
    members["jnd/val/traditional/p1/000000.png"] = data
    _assert_refused(capsys, tmp_path, _mirror(tmp_path, members), "jnd/val/traditional/p1/000000.png", why)


def test_oversized_judgment_file_is_refused(tmp_path, capsys):
    members = _official_members(download.ARCHIVES[0])
    members["jnd/val/cnn/same/000001.npy"] = _npy(0.5) + b" " * 5000
    _assert_refused(capsys, tmp_path, _mirror(tmp_path, members), "jnd/val/cnn/same/000001.npy",
                    "more than the 4 KiB allowed for one judgment file")


def _raw_archive(path: Path, header: tarfile.TarInfo, data: bytes = b"") -> Path:
    """A .tar.gz of one header block and ``data``: the header may claim more than follows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(header.tobuf(format=tarfile.GNU_FORMAT) + data))
    return path


def test_size_claimed_by_a_header_is_refused_before_reading(tmp_path, capsys):
    mirror = _mirror(tmp_path)
    info = tarfile.TarInfo("jnd/val/cnn/p0/000000.png")
    info.size = 3 << 30  # the data is not even there: the header alone is refused
    _raw_archive(mirror / "jnd.tar.gz", info)
    _assert_refused(capsys, tmp_path, mirror, "jnd/val/cnn/p0/000000.png", "is 3 GiB, more than the 1 MiB allowed")


def test_huge_extended_header_is_refused_before_tarfile_reads_it(tmp_path, capsys):
    mirror = _mirror(tmp_path)
    info = tarfile.TarInfo("././@PaxHeader")
    info.type, info.size = tarfile.XHDTYPE, 1 << 30
    _raw_archive(mirror / "jnd.tar.gz", info)
    _assert_refused(capsys, tmp_path, mirror, "././@PaxHeader", "is an extended tar header of 1 GiB")


# ---------------------------------------------------------------- caps on a whole archive

def _with_caps(monkeypatch, **caps) -> None:
    jnd, *rest = download.ARCHIVES
    monkeypatch.setattr(download, "ARCHIVES", (dataclasses.replace(jnd, **caps), *rest))


def _written(monkeypatch) -> list[str]:
    names: list[str] = []
    write = download._write_new
    monkeypatch.setattr(download, "_write_new", lambda path, data, member: (names.append(member),
                                                                            write(path, data, member)))
    return names


def test_member_count_cap(tmp_path, capsys, monkeypatch):
    members = _official_members(download.ARCHIVES[0])
    _with_caps(monkeypatch, max_members=len(members) - 1)
    written = _written(monkeypatch)
    last = list(members)[-1]
    _assert_refused(capsys, tmp_path, _mirror(tmp_path, members), last,
                    f"is one more than the {len(members) - 1} members allowed")
    assert last not in written and len(written) == sum(v is not None for v in members.values()) - 1


def test_unpacked_bytes_cap_is_checked_before_writing(tmp_path, capsys, monkeypatch):
    members = _official_members(download.ARCHIVES[0])
    files = [name for name, data in members.items() if data is not None]
    _with_caps(monkeypatch, max_bytes=sum(len(members[name]) for name in files[:3]))
    written = _written(monkeypatch)
    _assert_refused(capsys, tmp_path, _mirror(tmp_path, members), files[3], "takes the archive past")
    assert written == files[:3]


def test_decompressed_stream_cap(tmp_path, capsys, monkeypatch):
    # Tar headers are not file contents: a long run of them is capped by the stream's length.
    _with_caps(monkeypatch, max_bytes=1000, max_members=2)
    mirror = _mirror(tmp_path)
    info = tarfile.TarInfo("././@LongLink")
    info.type, info.size = tarfile.GNUTYPE_LONGNAME, 60_000  # below MAX_HEADER_BYTES
    _raw_archive(mirror / "jnd.tar.gz", info, b"j" * 60_000)
    # The cap: max_bytes + 4 KiB of headers per member allowed (download._HEADER_ALLOWANCE),
    # 1000 + 2 * 4096 = 9192 bytes = 8.98 KiB.
    _assert_refused(capsys, tmp_path, mirror, None, "refused: its tar stream goes past 8.98 KiB unpacked, the cap")


def test_root_that_cannot_be_created_is_one_line(tmp_path, capsys):
    code, _, err = _run(capsys, "--root", "/proc/percepmetric-bapps", "--url-base", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and "--root /proc/percepmetric-bapps: cannot write there" in err, err
