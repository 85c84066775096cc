"""Fetch and unpack the official BAPPS archives (``percepmetric download-bapps``).

The archives are those of the PerceptualSimilarity repository's
``scripts/download_dataset.sh`` (Zhang et al., 2018):

==================  ========================  ===========================================
archive             unpacks into ROOT/...     splits
==================  ========================  ===========================================
jnd.tar.gz          ``jnd/val/...``           jnd/val/traditional, jnd/val/cnn
twoafc_val.tar.gz   ``2afc/val/...``          the six 2AFC validation sets
twoafc_train.tar.gz ``2afc/train/...``        train/traditional, train/cnn, train/mix
==================  ========================  ===========================================

Each archive is downloaded to ``ROOT/.download/<name>.part`` and resumed with an HTTP
``Range`` request when a previous attempt stopped; once complete it is unpacked into a
scratch folder, every split in it is verified (structure, judgments, every image decodes),
and only then are the split folders moved into place and a ``<name>.done`` marker written.
A finished archive is skipped on the next run. ``url_base`` may be an ``http(s)://`` or
``file://`` URL or a local folder holding the archives (tests, mirrors, offline copies).

**What an archive may hold.** The archives come from a web server (or a mirror), so each
member is checked from its tar header, as it is read and before anything is written; the
first one that fails refuses the whole archive with one line naming the archive, the member
and the reason, and nothing reaches ROOT:

- only folders and regular files: no symbolic or hard links (BAPPS has none, and a link that
  stays inside the scratch folder can point outside ROOT once its folder is moved), no
  devices, FIFOs or sparse files;
- only the BAPPS layout, as the archive holds it: ``jnd/val/{traditional,cnn}/{p0,p1}/NNNNNN.png``
  and ``.../same/NNNNNN.npy`` in ``jnd.tar.gz``; ``{val,train}/<set>/{ref,p0,p1}/NNNNNN.png`` and
  ``.../judge/NNNNNN.npy`` in the 2AFC archives (``NNNNNN``: digits), with this archive's sets;
- every image a PNG whose header (IHDR, the first 24 bytes) says 64x64, as every BAPPS patch
  is, and at most :data:`MAX_PNG_BYTES`; every judgment file at most :data:`MAX_JUDGMENT_BYTES`
  (one number takes about 130 bytes);
- per archive, at most ``Archive.max_members`` members and ``Archive.max_bytes`` of file
  contents, 2.5 to 5 times what the real archives hold (the upstream README gives 0.2 GB for
  JND with 9.6k pairs, 1.1 GB for 2AFC val with 36.4k triplets, 5.3 GB for 2AFC train with
  151.3k triplets): 1 GiB and 100,000 members, 4 GiB and 400,000, 16 GiB and 1,500,000. The
  decompressed stream as a whole, tar headers included, is capped too, and pax or GNU
  long-name headers (which tarfile reads whole into memory) at :data:`MAX_HEADER_BYTES`.

**Checksums.** The upstream download script publishes no checksums for the archives, so
there is none to verify against (:data:`PUBLISHED_SHA256` is empty; an entry there would be
checked before unpacking). Instead every install is recorded in ``ROOT/.percepmetric-install.json``
(:data:`MANIFEST`, written atomically): each archive's URL, size and SHA-256, and the items and
files installed per split, so two installs can be compared and a later change detected.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import lzma
import os
import re
import shutil
import struct
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

from ..errors import InputError, PercepmetricError
from ..io import atomic_write_text, prepare_output_dir
from .bapps import JND_SPLITS, TRAIN_SPLITS, VAL_SPLITS, split_dir, verify_split_folder

DEFAULT_URL_BASE = "https://perceptual-similarity.s3.us-west-2.amazonaws.com/dataset"
WORK_DIR = ".download"
MANIFEST = ".percepmetric-install.json"
CHUNK = 1 << 20

#: SHA-256 of each archive as published upstream. The upstream gives none; never guess one.
PUBLISHED_SHA256: dict[str, str] = {}

PATCH_SIZE = 64  # every BAPPS patch, 2AFC train and val and JND alike
MAX_PNG_BYTES = 1 << 20  # a 64x64 RGB PNG stored without compression is about 12.4 KB
MAX_JUDGMENT_BYTES = 4 << 10  # a .npy of one number is 128 bytes of header and 4 or 8 of data
MAX_HEADER_BYTES = 64 << 10  # BAPPS member names are short; a pax header needs a few hundred bytes
_HEADER_ALLOWANCE = 4 << 10  # decompressed bytes per member beyond its contents: headers, padding

GIB = 1 << 30


@dataclass(frozen=True)
class Archive:
    """One official archive: its file name, the folder under ROOT it unpacks into, its splits,
    and the most it may unpack to (see the module docstring)."""

    name: str
    into: str
    splits: tuple[str, ...]
    val: bool  # part of ``--val-only``
    max_bytes: int = 16 * GIB
    max_members: int = 1_500_000


ARCHIVES: tuple[Archive, ...] = (
    Archive("jnd.tar.gz", "", JND_SPLITS, True, max_bytes=1 * GIB, max_members=100_000),
    Archive("twoafc_val.tar.gz", "2afc", VAL_SPLITS, True, max_bytes=4 * GIB, max_members=400_000),
    Archive("twoafc_train.tar.gz", "2afc", TRAIN_SPLITS, False, max_bytes=16 * GIB, max_members=1_500_000),
)


class DownloadError(PercepmetricError):
    """The dataset could not be fetched or its archive is damaged."""


class UnsafeArchiveError(DownloadError, InputError):
    """An archive holds something BAPPS does not (a link, a stray file, an oversized image...)."""


def archive_url(url_base: str | os.PathLike, name: str) -> str:
    """``url_base/name``; a local folder becomes a ``file://`` URL."""
    base = str(url_base)
    if "://" not in base:
        return Path(base).expanduser().resolve().joinpath(name).as_uri()
    return base.rstrip("/") + "/" + name


def fetch(url: str, target: Path, progress: bool = True) -> Path:
    """Download ``url`` to ``target``, resuming from ``target.part`` when it exists.

    HTTP(S): sends ``Range: bytes=<size of .part>-``; a 206 answer is appended, a 200
    answer restarts the file. ``file://``: copies the missing tail. The ``.part`` file is
    renamed to ``target`` only once its size matches the announced length.
    """
    part = target.with_name(target.name + ".part")
    target.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    parsed = urllib.parse.urlparse(url)
    total: int | None  # the announced length, None when the server gives none
    if parsed.scheme == "file":
        source = Path(urllib.request.url2pathname(parsed.path))
        if not source.is_file():
            raise DownloadError(f"{source}: archive not found")
        total = source.stat().st_size
        if have > total:
            have = 0
        with open(source, "rb") as src, open(part, "ab" if have else "wb") as dst:
            src.seek(have)
            shutil.copyfileobj(src, dst, CHUNK)
    else:
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            response = urllib.request.urlopen(request, timeout=60)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:  # nothing left to fetch: the .part is complete
                part.replace(target)
                return target
            raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise DownloadError(f"{url}: cannot connect ({getattr(exc, 'reason', exc)})") from None
        with response:
            resumed = response.status == 206
            length = int(response.headers.get("Content-Length") or 0)
            total = (have if resumed else 0) + length if length else None
            bar = _bar(total, have if resumed else 0, target.name, progress)
            with open(part, "ab" if resumed else "wb") as dst:
                while chunk := response.read(CHUNK):
                    dst.write(chunk)
                    bar.update(len(chunk))
            bar.close()
    size = part.stat().st_size
    if total is not None and size != total:
        raise DownloadError(f"{url}: download stopped at {size} of {total} bytes; run again to resume")
    part.replace(target)
    return target


def _bar(total, initial, desc, enabled):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True, file=sys.stderr,
                disable=not enabled, leave=False)


# ---------------------------------------------------------------- what an archive may hold

class _Refused(Exception):
    """One member breaks the rules of the module docstring; ``why`` completes "member NAME ...".
    ``member`` None: the archive as a whole does, and ``why`` is the whole reason."""

    def __init__(self, member: str | None, why: str):
        super().__init__(member, why)
        self.member, self.why = member, why


_LINK_AND_SPECIAL_KINDS = {
    tarfile.SYMTYPE: "symbolic link", tarfile.LNKTYPE: "hard link", tarfile.CHRTYPE: "character device",
    tarfile.BLKTYPE: "block device", tarfile.FIFOTYPE: "FIFO", tarfile.CONTTYPE: "contiguous file",
    tarfile.GNUTYPE_SPARSE: "sparse file",
}
_EXTENDED_HEADERS = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                     tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
_DIGITS = re.compile(r"[0-9]{1,12}")
_PNG_START = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR"  # signature, then IHDR's length and type


class _CheckedTarInfo(tarfile.TarInfo):
    """tarfile reads a pax or GNU long-name header whole into memory, and follows a sparse file's
    maps block by block, before it hands out the member they belong to: refuse those first."""

    def _proc_member(self, tar):
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise _Refused(self.name, "is a sparse file (BAPPS has none)")
        if self.type in _EXTENDED_HEADERS and self.size > MAX_HEADER_BYTES:
            raise _Refused(self.name, f"is an extended tar header of {_size(self.size)}, more than the "
                                      f"{_size(MAX_HEADER_BYTES)} allowed")
        # A private method of TarInfo (the hook for reading a member's header), absent from typeshed.
        return super()._proc_member(tar)  # type: ignore[misc]


class _CappedStream:
    """A decompressed archive that refuses to be read past ``limit`` bytes, whatever its headers say."""

    def __init__(self, stream, limit: int):
        self.stream, self.limit, self.read_so_far = stream, limit, 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size if size >= 0 else self.limit + 1 - self.read_so_far)
        self.read_so_far += len(data)
        if self.read_so_far > self.limit:
            raise _Refused(None, f"its tar stream goes past {_size(self.limit)} unpacked, the cap for this archive "
                                 f"(file contents and tar headers)")
        return data


def _open_decompressed(path: Path):
    """The archive's tar stream, decompressed by its magic bytes (gzip, bzip2, xz, or plain tar)."""
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.open(path, "rb")
    if magic.startswith(b"BZh"):
        return bz2.open(path, "rb")
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.open(path, "rb")
    return open(path, "rb")


def _size(n: int) -> str:
    for unit, scale in (("GiB", GIB), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def _archive_folder(archive: Archive, split: str) -> str:
    """The folder of ``split`` as the archive names it: ``jnd/val/cnn``, or ``val/cnn`` in the
    2AFC archives, which unpack into ``ROOT/2afc``."""
    path = split_dir(Path(), split).as_posix()
    return path.removeprefix(archive.into + "/") if archive.into else path


@dataclass(frozen=True)
class _Layout:
    """Where the members of one archive may be: ``folders`` (every folder of the layout, the
    archive's top included as ``""``); ``file_folders``: folder -> (split, suffix of its files)."""

    folders: frozenset[str]
    file_folders: dict[str, tuple[str, str]]
    description: str


def _subfolders(split: str) -> tuple[tuple[str, ...], str]:
    """The image folders and the judgment folder of ``split``, as the loader reads them."""
    return (("p0", "p1"), "same") if split.startswith("jnd/") else (("ref", "p0", "p1"), "judge")


def _layout(archive: Archive) -> _Layout:
    """The BAPPS layout of ``archive``, from the loader's split folders (see bapps.py's docstring)."""
    folders, file_folders = {""}, {}
    for split in archive.splits:
        base = _archive_folder(archive, split)
        parts = base.split("/")
        folders.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        image_dirs, label_dir = _subfolders(split)
        file_folders.update({f"{base}/{d}": (split, ".png") for d in image_dirs})
        file_folders[f"{base}/{label_dir}"] = (split, ".npy")
    folders.update(file_folders)
    parent = _archive_folder(archive, archive.splits[0]).rsplit("/", 1)[0]  # jnd/val, val or train
    sets = ",".join(split.rsplit("/", 1)[1] for split in archive.splits)
    image_dirs, label_dir = _subfolders(archive.splits[0])
    description = f"expected {parent}/{{{sets}}}/{{{','.join(image_dirs)}}}/NNNNNN.png or .../{label_dir}/NNNNNN.npy"
    return _Layout(frozenset(folders), file_folders, description)


def _member_name(member: tarfile.TarInfo) -> str:
    name = member.name
    while name.startswith("./"):  # ``tar -C DIR .`` names members ./jnd/...
        name = name[2:]
    return "" if name == "." else name.rstrip("/")


def _png_problem(data: bytes) -> str | None:
    """Why ``data`` is not a 64x64 PNG, from its first 24 bytes alone (nothing is decoded)."""
    if data[:16] != _PNG_START or len(data) < 24:
        return "is not a PNG file (no PNG signature followed by its IHDR header)"
    width, height = struct.unpack_from(">II", data, 16)
    if (width, height) != (PATCH_SIZE, PATCH_SIZE):
        return f"is a {width}x{height} image; BAPPS patches are {PATCH_SIZE}x{PATCH_SIZE}"
    return None


def _write_new(path: Path, data: bytes, member: str) -> None:
    try:
        with open(path, "xb") as f:
            f.write(data)
    except FileExistsError:
        raise _Refused(member, "appears twice in the archive") from None
    except OSError as exc:
        raise DownloadError(f"cannot write {path}: {exc.strerror or exc}") from None


def _unpack(archive: Archive, archive_path: Path, into: Path) -> dict[str, int]:
    """Unpack ``archive_path`` into the folder ``into``, checking each member from its header
    before writing it (see the module docstring). Returns ``{split: files written}``."""
    layout = _layout(archive)
    files = dict.fromkeys(archive.splits, 0)
    members = unpacked = 0
    stream_cap = archive.max_bytes + archive.max_members * _HEADER_ALLOWANCE
    try:
        # The cast: typeshed asks for a whole file object (read, write, seek, tell, close), but in
        # stream mode ("r|") tarfile only calls read(), all that _CappedStream has.
        with _open_decompressed(archive_path) as raw, \
                tarfile.open(fileobj=cast(IO[bytes], _CappedStream(raw, stream_cap)), mode="r|",
                             tarinfo=_CheckedTarInfo) as tar:
            while (member := tar.next()) is not None:
                # tarfile keeps every header it reads; the training set has 600k. (``members`` is
                # TarFile's list of them, not in typeshed; getmembers() would read the whole archive.)
                tar.members.clear()  # type: ignore[attr-defined]
                name = _member_name(member)
                members += 1
                if members > archive.max_members:
                    raise _Refused(name, f"is one more than the {archive.max_members:,} members allowed")
                if member.type in _LINK_AND_SPECIAL_KINDS:
                    target = f" to {member.linkname!r}" if member.issym() or member.islnk() else ""
                    raise _Refused(name, f"is a {_LINK_AND_SPECIAL_KINDS[member.type]}{target} (BAPPS has only "
                                         f"folders and regular files)")
                if member.isdir():
                    if name not in layout.folders:
                        raise _Refused(name, f"is a folder outside the BAPPS layout ({layout.description})")
                    (into / name).mkdir(parents=True, exist_ok=True)
                    continue
                if not member.isfile():
                    raise _Refused(name, f"is of tar type {member.type!r}, not a regular file")
                folder, _, file_name = name.rpartition("/")
                split, suffix = layout.file_folders.get(folder, (None, ""))
                if split is None or not file_name.endswith(suffix) or not _DIGITS.fullmatch(file_name[: -len(suffix)]):
                    raise _Refused(name, f"is not part of the BAPPS layout ({layout.description})")
                most = MAX_PNG_BYTES if suffix == ".png" else MAX_JUDGMENT_BYTES
                if member.size > most:
                    kind = "image" if suffix == ".png" else "judgment file"
                    raise _Refused(name, f"is {_size(member.size)}, more than the {_size(most)} allowed for one {kind}")
                unpacked += member.size
                if unpacked > archive.max_bytes:
                    raise _Refused(name, f"takes the archive past {_size(archive.max_bytes)} unpacked, its cap")
                contents = tar.extractfile(member)
                assert contents is not None  # a regular file (checked above) always has contents
                data = contents.read()
                problem = _png_problem(data) if suffix == ".png" else None
                if problem:
                    raise _Refused(name, problem)
                (into / folder).mkdir(parents=True, exist_ok=True)
                _write_new(into / name, data, name)
                files[split] += 1
    except _Refused as refused:
        what = refused.why if refused.member is None else f"member {refused.member!r} {refused.why}"
        raise UnsafeArchiveError(f"{archive_path}: refused: {what}; nothing was installed") from None
    except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError, RecursionError) as exc:
        raise DownloadError(f"{archive_path}: damaged archive ({exc.__class__.__name__}: {exc}); "
                            f"delete it and run again") from None
    return files


# ---------------------------------------------------------------- install and record

@dataclass(frozen=True)
class Installed:
    """What :func:`install_archive` put in place: items and files per split."""

    items: dict[str, int]
    files: dict[str, int]


def install_archive(archive: Archive, archive_path: Path, root: Path) -> Installed:
    """Unpack ``archive_path`` into a scratch folder (refusing anything outside the BAPPS layout
    and its caps), verify each of ``archive.splits``, then move them to their place under ``root``."""
    scratch = root / WORK_DIR / ("unpack-" + archive.name.split(".")[0])
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        files = _unpack(archive, archive_path, scratch)
        items: dict[str, int] = {}
        for name in archive.splits:
            folder = scratch / _archive_folder(archive, name)
            if not folder.is_dir():
                raise DownloadError(f"{archive_path}: split {name} ({_archive_folder(archive, name)}/) "
                                    f"not found in the archive")
            try:
                items[name] = verify_split_folder(folder, name, jnd=name.startswith("jnd/"))
            except InputError as exc:
                raise DownloadError(f"{archive_path}: unpacked data failed verification: {exc}") from None
        for name in archive.splits:
            final = split_dir(root, name)
            if final.exists():
                shutil.rmtree(final)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(scratch / _archive_folder(archive, name), final)
        return Installed(items, files)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def fetch_verified(url: str, local: Path, published: str | None, *, progress: bool,
                   log: Callable[[str], object]) -> tuple[int, str]:
    """The archive ``local``, fetched from ``url`` first when it is absent (resumed from its
    ``.part``), with its size and SHA-256 (logged), checked against the ``published`` checksum
    when there is one: a mismatch is a :class:`DownloadError` and nothing is unpacked."""
    if not local.exists():
        log(f"{local.name}: fetching {url}")
        fetch(url, local, progress=progress)
    size, sha256 = local.stat().st_size, sha256_of(local)
    log(f"{local.name}: sha256 {sha256}")
    if published is not None and sha256 != published.lower():
        raise DownloadError(f"{local}: sha256 {sha256} differs from the published {published}; delete it and run again")
    return size, sha256


def read_manifest(root: Path) -> dict:
    """``ROOT/.percepmetric-install.json`` as a dict with an ``archives`` dict (empty when the file
    is absent or unreadable: an install then starts it afresh)."""
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        manifest = None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("archives"), dict):
        manifest = {"archives": {}}
    return manifest


def _record_install(root: Path, archive: Archive, url: str, size: int, sha256: str, installed: Installed) -> Path:
    """Add ``archive`` to ``ROOT/.percepmetric-install.json`` (atomically; other archives' entries stay)."""
    path = root / MANIFEST
    manifest = read_manifest(root)
    manifest["checksums"] = ("the upstream publishes no checksums for these archives; each sha256 here is "
                             "of the archive as downloaded and installed")
    manifest["archives"][archive.name] = {
        "url": url,
        "bytes": size,
        "sha256": sha256,
        "published_sha256_checked": archive.name in PUBLISHED_SHA256,
        "installed_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "splits": {name: {"items": installed.items[name], "files": installed.files[name]} for name in archive.splits},
    }
    atomic_write_text(path, json.dumps(manifest, indent=2) + "\n")
    return path


def download_bapps(root: str | os.PathLike, val_only: bool = False, url_base: str | os.PathLike | None = None,
                   keep_archives: bool = False, progress: bool = True, log=print) -> dict[str, int]:
    """Fetch, unpack and verify the BAPPS archives into ``root``; return ``{split: items}``.

    ``val_only``: only the JND and 2AFC validation archives (what ``bench --all`` needs).
    Archives already installed (``ROOT/.download/<name>.done``) are skipped; interrupted
    downloads resume. ``url_base``: where the archives are (default :data:`DEFAULT_URL_BASE`).
    Each install is recorded in ``ROOT/`` :data:`MANIFEST` (see the module docstring).
    """
    root = prepare_output_dir(Path(root).expanduser(), option="--root")  # one line if it cannot be written
    work = root / WORK_DIR
    work.mkdir(parents=True, exist_ok=True)
    base = url_base if url_base is not None else DEFAULT_URL_BASE
    counts: dict[str, int] = {}
    for archive in ARCHIVES:
        if val_only and not archive.val:
            continue
        done = work / (archive.name + ".done")
        if done.exists() and all(split_dir(root, s).is_dir() for s in archive.splits):
            log(f"{archive.name}: already installed")
            continue
        url = archive_url(base, archive.name)
        local = work / archive.name
        published = PUBLISHED_SHA256.get(archive.name)
        size, sha256 = fetch_verified(url, local, published, progress=progress, log=log)
        log(f"{archive.name}: {size:,} bytes, "
            + ("matches the published checksum" if published else "no published checksum to check it against")
            + "; unpacking and verifying")
        installed = install_archive(archive, local, root)
        counts.update(installed.items)
        manifest = _record_install(root, archive, url, size, sha256, installed)
        done.write_text("".join(f"{k} {v}\n" for k, v in installed.items.items()))
        if not keep_archives:
            local.unlink(missing_ok=True)
        log(f"{archive.name}: " + ", ".join(f"{k} ({v})" for k, v in installed.items.items()))
        log(f"{archive.name}: size, sha256 and files per split recorded in {manifest}")
    return counts
