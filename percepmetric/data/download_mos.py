"""Fetch, unpack and verify a mean-opinion-score database (``percepmetric download-mos KIND``).

Only databases with an official public address are fetched:

- kadid10k: ``http://datasets.vqa.mmsp-kn.de/archives/kadid10k.zip`` (ZIP), unpacking to
  ``kadid10k/dmos.csv`` and ``kadid10k/images/``;
- tid2013: ``http://www.ponomarenko.info/tid2013/tid2013.rar`` (RAR), holding ``mos_with_names.txt``,
  ``reference_images/`` and ``distorted_images/`` (and more, which is not installed).

LIVE (request form, password), CSIQ (no longer hosted by its authors) and PIPAL (a Google Drive
folder linked from the challenge page) have none: :data:`BY_HAND` says where to get each, and
``download-mos`` answers with that line.

**Where.** ``ROOT`` (``--root``) becomes the dataset folder itself, what ``--dataset KIND=ROOT``
takes: ``ROOT/dmos.csv`` and ``ROOT/images/`` for KADID-10k. Default: ``$PERCEPMETRIC_MOS/<kind>``,
else ``$XDG_DATA_HOME/percepmetric/<kind>`` (``~/.local/share/percepmetric/<kind>``).

**How**, as ``download-bapps`` (:mod:`.download`, whose :func:`~.download.fetch_verified`
this reuses): the archive is fetched to ``ROOT/.download/<name>.part``
and resumed with an HTTP ``Range`` request after an interruption (``--url`` may name an
``http(s)://`` or ``file://`` URL or a local file: mirrors, offline copies, tests; a local
archive is copied, never modified); its SHA-256 is printed and checked against
:data:`PUBLISHED_SHA256` (empty: neither upstream publishes one); it is unpacked into
``ROOT/.download/unpack-<kind>``, verified with :func:`percepmetric.data.mos.load_mos_dataset`
(every listed image exists, PIL reads its header, each distorted image has its reference's size),
and only then are the loader's files renamed into ``ROOT``; ``ROOT/.percepmetric-install.json``
records URL, size, SHA-256 and pairs, and ``ROOT/.download/<name>.done`` marks the install, so a
rerun skips it. A failure leaves nothing new in ``ROOT`` except ``.download/`` (the ``.part``
to resume from).

**What a ZIP may hold** (KADID-10k), checked from the central directory before anything is
written; the first member that fails refuses the archive in one line naming the archive, the
member and the reason:

- only regular files and folders: the Unix file-type bits of each member's external attributes
  (``external_attr >> 16``) must say regular file or folder, or be absent (no symbolic links,
  devices, FIFOs); no encryption; compression stored, deflate, bzip2 or LZMA;
- names relative, ``/``-separated, without ``.``, ``..`` or empty parts, each at most once;
- the KADID-10k layout only: ``kadid10k/``, ``kadid10k/images/``, ``kadid10k/dmos.csv`` and
  ``kadid10k/images/I\\d\\d(_\\d\\d_\\d\\d)?.png`` (:data:`EXTRA_MEMBERS` would name further files
  if the real archive turned out to hold a readme; none is known, so none is tolerated);
- caps (2.5-5x the real archive: 10,206 images of 512x384, about 3.07 GB): at most 50,000
  members, 1 MiB per image (a 512x384 RGB PNG stored without compression is 0.56 MiB), 4 MiB
  for ``dmos.csv`` (about 0.35 MB), 10 GiB in all; no member may expand more than
  :data:`MAX_COMPRESSION_RATIO` times (a PNG is already deflated and does not shrink again;
  the text file shrinks about 4 times), and the members together may not claim more compressed
  bytes than the archive holds (overlapping members, the non-recursive zip bomb);
- while extracting, each image's PNG header (IHDR) must announce 512x384, and bytes are
  counted as they are decompressed: a member yielding more than its header declared is refused.

**RAR** (TID2013): Python's standard library cannot read it, and no Python dependency is added
for it. When ``unrar``, ``7z`` or ``bsdtar`` is on ``PATH`` the tool unpacks it into the scratch
folder, with each file it writes capped at :data:`RAR_MAX_FILE_BYTES` (``RLIMIT_FSIZE``) and the
folder's total bytes and entries watched while it runs (stopped past the caps); afterwards every
entry is checked with ``lstat`` (folders and regular files only, sizes), the folder holding
``mos_with_names.txt`` is verified, and only the loader's three entries are installed. Without
such a tool, one line says which to install, or how to unpack by hand and use ``--dataset tid2013=DIR``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import struct
import subprocess
import time
import urllib.parse
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import click

from ..errors import InputError
from ..io import atomic_write_text, prepare_output_dir
from .download import CHUNK, MANIFEST, WORK_DIR, DownloadError, UnsafeArchiveError, fetch_verified, read_manifest
from .mos import MOSDataset, load_mos_dataset

ENV_ROOT = "PERCEPMETRIC_MOS"
GIB = 1 << 30
MIB = 1 << 20

#: SHA-256 of each archive as published by its authors. Neither publishes one; never guess one.
PUBLISHED_SHA256: dict[str, str] = {}

#: Files a KADID-10k archive may hold beyond its layout (e.g. a readme). None is known to exist.
EXTRA_MEMBERS: frozenset[str] = frozenset()

MAX_COMPRESSION_RATIO = 100  # uncompressed / compressed bytes of one ZIP member
RAR_MAX_FILE_BYTES = 256 * MIB  # per file written by a RAR tool (TID2013's BMPs are 0.56 MiB; its papers a few MB)
_WATCH_SECONDS = 0.5  # how often the scratch folder is measured while a RAR tool runs

_PNG_START = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR"  # signature, then IHDR's length and type
_ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2",
                zipfile.ZIP_LZMA: "lzma"}
_FILE_TYPES = {stat.S_IFLNK: "a symbolic link", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
               stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket"}


@dataclass(frozen=True)
class MOSSource:
    """One database with an official archive: where it is, how it unpacks, and its caps."""

    kind: str
    url: str
    archive: str  # the file name under ROOT/.download
    page: str  # the authors' page, for the docs and messages
    entries: tuple[str, ...]  # what the loader reads, moved into ROOT (the score file last)
    top: str = ""  # the folder the archive unpacks into ("" = none)
    image_size: tuple[int, int] = (512, 384)  # width, height of every image (checked from the PNG header)
    max_members: int = 50_000
    max_bytes: int = 10 * GIB
    max_image_bytes: int = MIB
    max_score_bytes: int = 4 * MIB
    layout: str = ""  # the layout in words, for refusals
    patterns: dict[str, re.Pattern[str]] = field(default_factory=dict)  # file kind -> names (below top)


KADID10K = MOSSource(
    kind="kadid10k", url="http://datasets.vqa.mmsp-kn.de/archives/kadid10k.zip", archive="kadid10k.zip",
    page="http://database.mmsp-kn.de/kadid-10k-database.html", entries=("images", "dmos.csv"), top="kadid10k",
    layout="expected kadid10k/dmos.csv or kadid10k/images/Inn.png or Inn_TT_LL.png",
    patterns={"score": re.compile(r"dmos\.csv"), "image": re.compile(r"images/I\d\d(_\d\d_\d\d)?\.png")},
)
TID2013 = MOSSource(
    kind="tid2013", url="http://www.ponomarenko.info/tid2013/tid2013.rar", archive="tid2013.rar",
    page="http://www.ponomarenko.info/tid2013.htm",
    entries=("reference_images", "distorted_images", "mos_with_names.txt"), max_bytes=8 * GIB,
)
SOURCES: dict[str, MOSSource] = {s.kind: s for s in (KADID10K, TID2013)}

#: Databases without an official public archive: where to get each by hand.
BY_HAND: dict[str, str] = {
    "live": "LIVE Release 2 is given out on request (a form, then a password): "
            "https://live.ece.utexas.edu/research/quality/subjective.htm",
    "csiq": "CSIQ is no longer hosted by its authors (formerly https://s2.smu.edu/~eclarson/csiq.html); "
            "use a copy you or your institution kept",
    "pipal": "PIPAL is shared through a Google Drive folder linked from its project page "
             "(https://www.jasongt.com/projectpages/pipal.html) and the NTIRE 2021 challenge page",
}
RAR_TOOLS = ("unrar", "7z", "bsdtar")
_ALIASES = {"kadid-10k": "kadid10k", "kadid": "kadid10k", "tid": "tid2013"}


@dataclass(frozen=True)
class MOSInstall:
    """What :func:`download_mos` did: where the set is, its pairs, the archive's SHA-256 (None when skipped)."""

    kind: str
    root: Path
    pairs: int
    sha256: str | None
    skipped: bool


def default_mos_root(kind: str) -> Path:
    """``$PERCEPMETRIC_MOS/<kind>``, else ``$XDG_DATA_HOME/percepmetric/<kind>`` (``~/.local/share/...``)."""
    env = os.environ.get(ENV_ROOT)
    if env:
        return Path(env).expanduser() / kind
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home).expanduser() / "percepmetric" / kind


def source_for(kind: str) -> MOSSource:
    """The :class:`MOSSource` of ``kind`` (any case, ``kadid-10k`` too); :class:`InputError` in one line
    for a database that has no official archive (where to get it) or an unknown name."""
    key = _ALIASES.get(str(kind).strip().lower(), str(kind).strip().lower())
    if key in SOURCES:
        return SOURCES[key]
    if key in BY_HAND:
        raise InputError(f"download-mos {kind}: no official public archive to download; {BY_HAND[key]}; "
                         f"unpack it and use --dataset {key}=DIR")
    raise InputError(f"download-mos {kind}: unknown database (downloadable: {', '.join(SOURCES)}; "
                     f"by hand: {', '.join(BY_HAND)})")


def rar_tool() -> str | None:
    """The first of :data:`RAR_TOOLS` on ``PATH`` (its path), or None."""
    for name in RAR_TOOLS:
        found = shutil.which(name)
        if found:
            return found
    return None


def _no_rar_tool_message(source: MOSSource) -> str:
    return (f"{source.kind}: {source.archive} is a RAR archive, which Python cannot read: install unrar, 7z (p7zip) "
            f"or bsdtar (libarchive-tools) and run again, or fetch {source.url}, unpack it by hand "
            f"(unrar x {source.archive} DIR/) and use --dataset {source.kind}=DIR")


def _archive_url(url: str | os.PathLike) -> str:
    text = str(url)
    if "://" in text:
        scheme = urllib.parse.urlparse(text).scheme
        if scheme not in ("http", "https", "file"):
            raise InputError(f"--url {text}: give an http(s):// or file:// URL or a local file")
        return text
    path = Path(text).expanduser()
    if not path.is_file():
        raise InputError(f"--url {text}: no such file")
    return path.resolve().as_uri()


def _size(n: int) -> str:
    for unit, scale in (("GiB", GIB), ("MiB", MIB), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


# ---------------------------------------------------------------- ZIP: checked before writing

class _Refused(Exception):
    """A member (None: the archive as a whole) breaks the rules; ``why`` completes "member NAME ..."."""

    def __init__(self, member: str | None, why: str):
        super().__init__(member, why)
        self.member, self.why = member, why


def _name_problem(name: str) -> str | None:
    if not name or "\\" in name or "\0" in name:
        return "has an empty name or a backslash or NUL in its name"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "has an absolute path"
    parts = name.rstrip("/").split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "has an empty, '.' or '..' part in its path"
    return None


def _member_kind(source: MOSSource, info: zipfile.ZipInfo) -> str:
    """``"folder"``, ``"score"`` or ``"image"``: what ``info`` is in the layout, or :class:`_Refused`."""
    name = info.filename
    problem = _name_problem(name)
    if problem:
        raise _Refused(name, problem)
    if info.flag_bits & 0x1:
        raise _Refused(name, "is encrypted")
    if info.compress_type not in _ZIP_METHODS:
        allowed = ", ".join(_ZIP_METHODS.values())
        raise _Refused(name, f"uses compression method {info.compress_type} (allowed: {allowed})")
    mode = info.external_attr >> 16
    file_type = stat.S_IFMT(mode)
    if file_type in _FILE_TYPES:
        raise _Refused(name, f"is {_FILE_TYPES[file_type]} (KADID-10k has only folders and regular files)")
    if file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise _Refused(name, f"has file type {oct(file_type)} in its attributes, neither file nor folder")
    if (file_type == stat.S_IFDIR) != info.is_dir() and file_type:
        raise _Refused(name, "is marked a folder by its attributes but not by its name, or the reverse")
    top = source.top + "/" if source.top else ""
    inner = name.rstrip("/")
    if info.is_dir():
        if inner not in {source.top, top + "images"}:
            raise _Refused(name, f"is a folder outside the {source.kind} layout ({source.layout})")
        return "folder"
    if inner in EXTRA_MEMBERS:
        return "score"  # capped like the score file
    rel = inner[len(top):] if inner.startswith(top) else None
    for kind, pattern in source.patterns.items():
        if rel is not None and pattern.fullmatch(rel):
            return kind
    raise _Refused(name, f"is not part of the {source.kind} layout ({source.layout})")


def check_zip(source: MOSSource, zf: zipfile.ZipFile, archive_size: int) -> list[tuple[zipfile.ZipInfo, str]]:
    """Check every member of ``zf`` from its central-directory entry (module docstring); return
    ``(info, kind)`` of the files to write, or raise :class:`_Refused` at the first that fails."""
    infos = zf.infolist()
    seen: set[str] = set()
    files: list[tuple[zipfile.ZipInfo, str]] = []
    total = compressed = 0
    for count, info in enumerate(infos, 1):
        name = info.filename
        if count > source.max_members:
            raise _Refused(name, f"is one more than the {source.max_members:,} members allowed")
        kind = _member_kind(source, info)
        if name.rstrip("/") in seen:
            raise _Refused(name, "appears twice in the archive")
        seen.add(name.rstrip("/"))
        if kind == "folder":
            continue
        most = source.max_image_bytes if kind == "image" else source.max_score_bytes
        if info.file_size > most:
            what = "image" if kind == "image" else "file"
            raise _Refused(name, f"is {_size(info.file_size)}, more than the {_size(most)} allowed for one {what}")
        if info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
            raise _Refused(name, f"expands {_size(info.compress_size)} to {_size(info.file_size)}, more than "
                                 f"{MAX_COMPRESSION_RATIO} times (a zip bomb?)")
        total += info.file_size
        if total > source.max_bytes:
            raise _Refused(name, f"takes the archive past {_size(source.max_bytes)} unpacked, its cap")
        compressed += info.compress_size
        files.append((info, kind))
    if compressed > archive_size:
        raise _Refused(None, f"its members claim {_size(compressed)} of compressed data, more than the archive's "
                             f"{_size(archive_size)} (overlapping members: a zip bomb?)")
    return files


def _png_problem(data: bytes, size: tuple[int, int]) -> str | None:
    """Why ``data`` does not start as a PNG of ``size`` = (width, height), from its first 24 bytes."""
    if len(data) < 24 or data[:16] != _PNG_START:
        return "is not a PNG file (no PNG signature followed by its IHDR header)"
    width, height = struct.unpack_from(">II", data, 16)
    if (width, height) != tuple(size):
        return f"is a {width}x{height} image; KADID-10k images are {size[0]}x{size[1]}"
    return None


def _extract_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, kind: str, source: MOSSource, into: Path) -> int:
    """Write one checked member under ``into``, counting its bytes as they come; returns them."""
    target = into / info.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with zf.open(info) as src:
        first = src.read(min(CHUNK, info.file_size + 1))
        if kind == "image":
            problem = _png_problem(first, source.image_size)
            if problem:
                raise _Refused(info.filename, problem)
        with open(target, "xb") as dst:
            block = first
            while block:
                written += len(block)
                if written > info.file_size:  # zipfile stops at the declared size; do not rely on it
                    raise _Refused(info.filename, f"yields more than the {_size(info.file_size)} its header declares")
                dst.write(block)
                block = src.read(CHUNK)
    return written


def unpack_zip(source: MOSSource, archive_path: Path, into: Path) -> int:
    """Check ``archive_path`` whole (:func:`check_zip`), then unpack it into ``into``; returns files
    written. :class:`UnsafeArchiveError` (one line: archive, member, reason) or :class:`DownloadError`."""
    try:
        with zipfile.ZipFile(archive_path) as zf:
            files = check_zip(source, zf, archive_path.stat().st_size)
            for info, kind in files:
                _extract_member(zf, info, kind, source, into)
    except _Refused as refused:
        what = refused.why if refused.member is None else f"member {refused.member!r} {refused.why}"
        raise UnsafeArchiveError(f"{archive_path}: refused: {what}; nothing was installed") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, zlib.error, OSError,
            ValueError) as exc:
        raise DownloadError(f"{archive_path}: damaged archive ({exc.__class__.__name__}: {exc}); "
                            f"delete it and run again") from None
    return len(files)


# ---------------------------------------------------------------- RAR: through a tool, watched

def _rar_command(tool: str, archive: Path, into: Path) -> list[str]:
    name = Path(tool).name
    if name.startswith("unrar"):
        return [tool, "x", "-o-", "-y", "-idq", str(archive), str(into) + os.sep]
    if name.startswith("7z"):
        return [tool, "x", "-y", "-bd", f"-o{into}", str(archive)]
    return [tool, "-x", "-f", str(archive), "-C", str(into), "--no-same-owner", "--no-same-permissions"]


def _limit_file_size() -> None:  # runs in the child, before the tool starts
    import resource

    resource.setrlimit(resource.RLIMIT_FSIZE, (RAR_MAX_FILE_BYTES, RAR_MAX_FILE_BYTES))


def _measure(folder: Path) -> tuple[int, int]:
    """Entries under ``folder`` and the bytes of its regular files (``lstat``: links are not followed)."""
    entries = size = 0
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            entries += 1
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                size += st.st_size
    return entries, size


def unpack_rar(source: MOSSource, archive_path: Path, into: Path, tool: str) -> int:
    """Unpack with ``tool`` into ``into`` under the caps, then check every entry; returns files."""
    command = _rar_command(tool, archive_path, into)
    preexec = _limit_file_size if os.name == "posix" else None
    over = ""
    with subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          preexec_fn=preexec) as proc:
        while proc.poll() is None:
            try:
                proc.wait(_WATCH_SECONDS)
            except subprocess.TimeoutExpired:
                pass
            entries, size = _measure(into)
            if entries > source.max_members or size > source.max_bytes:
                over = (f"{entries:,} entries, more than the {source.max_members:,} allowed"
                        if entries > source.max_members
                        else f"{_size(size)} unpacked, more than the {_size(source.max_bytes)} allowed")
                proc.kill()
                proc.wait()
                break
        stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if over:
        raise UnsafeArchiveError(f"{archive_path}: refused: {over} (stopped {Path(tool).name}); nothing was installed")
    if proc.returncode != 0:
        last = (stderr.strip().splitlines() or [""])[-1][:200]
        why = (f"a file went past the {_size(RAR_MAX_FILE_BYTES)} allowed per file" if proc.returncode == -25
               else f"{Path(tool).name} exit code {proc.returncode}" + (f": {last}" if last else ""))
        raise DownloadError(f"{archive_path}: could not be unpacked ({why}); nothing was installed")
    files = 0
    for dirpath, dirnames, filenames in os.walk(into):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = os.lstat(path)
            rel = path.relative_to(into).as_posix()
            kind = _FILE_TYPES.get(stat.S_IFMT(st.st_mode))
            if kind:
                raise UnsafeArchiveError(f"{archive_path}: refused: member {rel!r} is {kind} ({source.kind} has only "
                                         f"folders and regular files); nothing was installed")
            if stat.S_ISREG(st.st_mode):
                files += 1
    entries, size = _measure(into)
    if entries > source.max_members or size > source.max_bytes:
        raise UnsafeArchiveError(f"{archive_path}: refused: {entries:,} entries, {_size(size)} unpacked, past the "
                                 f"caps ({source.max_members:,}, {_size(source.max_bytes)}); nothing was installed")
    return files


# ---------------------------------------------------------------- install

def _find_dataset_folder(source: MOSSource, scratch: Path, archive_path: Path) -> Path:
    """The unpacked folder holding the score file: ``top`` for a ZIP; for a RAR the scratch folder
    itself or the one folder below it that holds the score file (names in any case)."""
    score = source.entries[-1].lower()
    below = sorted(p for p in scratch.iterdir() if p.is_dir())
    candidates = [scratch / source.top] if source.top else [scratch, *below]
    for folder in candidates:
        if folder.is_dir() and any(p.name.lower() == score for p in folder.iterdir()):
            return folder
    raise DownloadError(f"{archive_path}: {source.entries[-1]} not found in the archive"
                        + (f" (expected under {source.top}/)" if source.top else ""))


def _entry(folder: Path, name: str) -> Path | None:
    exact = folder / name
    if exact.exists():
        return exact
    return next((p for p in folder.iterdir() if p.name.lower() == name.lower()), None)


def _record(root: Path, source: MOSSource, url: str, size: int, sha256: str, dataset: MOSDataset, files: int) -> Path:
    path = root / MANIFEST
    manifest = read_manifest(root)
    manifest["checksums"] = ("the authors publish no checksum for this archive; the sha256 here is of the archive "
                             "as downloaded and installed")
    manifest["archives"][source.archive] = {
        "kind": source.kind,
        "url": url,
        "bytes": size,
        "sha256": sha256,
        "published_sha256_checked": source.archive in PUBLISHED_SHA256,
        "installed_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": files,
        "pairs": len(dataset),
        "references": len(dataset.references),
        "official_pairs": dataset.official_count,
    }
    atomic_write_text(path, json.dumps(manifest, indent=2) + "\n")
    return path


def _check_root_is_ours(source: MOSSource, root: Path, work: Path) -> None:
    """Refuse to replace a dataset this command did not install (a manual copy, an unrelated folder)."""
    ours = (work / (source.archive + ".done")).exists() or (work / (source.archive + ".installing")).exists()
    present = [name for name in source.entries if (root / name).exists()]
    if present and not ours:
        raise InputError(f"--root {root}: already holds {', '.join(present)}, not installed by download-mos; "
                         f"use it as it is (--dataset {source.kind}={root}) or give an empty --root")


def download_mos(kind: str, root: str | os.PathLike | None = None, url: str | os.PathLike | None = None,
                 keep_archive: bool = False, progress: bool = True,
                 log: Callable[[str], object] = print) -> MOSInstall:
    """Fetch, check, unpack and verify the database ``kind`` into ``root`` (the dataset folder).

    ``root``: default :func:`default_mos_root`. ``url``: the archive (default: the official one,
    :data:`SOURCES`), an ``http(s)://`` or ``file://`` URL or a local file. A finished install
    (``ROOT/.download/<archive>.done``) is skipped; an interrupted download resumes from its
    ``.part``. Raises :class:`InputError` (unknown or not downloadable kind, no RAR tool, bad
    ``--root`` or ``--url``), :class:`UnsafeArchiveError`, :class:`DownloadError`.
    """
    source = source_for(kind)
    tool = None
    if source.archive.endswith(".rar"):
        tool = rar_tool()
        if tool is None:
            raise InputError(_no_rar_tool_message(source))
    source_url = _archive_url(url) if url is not None else source.url
    target = Path(root).expanduser() if root is not None and str(root) else default_mos_root(source.kind)
    target = prepare_output_dir(target, option="--root")
    work = target / WORK_DIR
    work.mkdir(parents=True, exist_ok=True)
    done = work / (source.archive + ".done")
    if done.exists() and all((target / name).exists() for name in source.entries):
        log(f"{source.kind}: already installed in {target}")
        text = done.read_text().strip()
        pairs = int(text) if text.isdigit() else 0
        return MOSInstall(source.kind, target, pairs, None, True)
    _check_root_is_ours(source, target, work)

    local = work / source.archive
    _forget_other_source(local, source_url)
    published = PUBLISHED_SHA256.get(source.archive)
    try:
        size, sha256 = fetch_verified(source_url, local, published, progress=progress, log=log)
    except DownloadError as exc:
        raise _deleted(local, exc) from None
    log(f"{source.archive}: {size:,} bytes, "
        + ("matches the published checksum" if published else "no published checksum to check it against")
        + "; checking, unpacking and verifying")

    scratch = work / ("unpack-" + source.kind)
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    installing = work / (source.archive + ".installing")
    try:
        try:
            files = unpack_rar(source, local, scratch, tool) if tool else unpack_zip(source, local, scratch)
        except (UnsafeArchiveError, DownloadError) as exc:
            raise _deleted(local, exc) from None
        folder = _find_dataset_folder(source, scratch, local)
        try:
            dataset = load_mos_dataset(source.kind, folder)
        except InputError as exc:
            raise _deleted(local, DownloadError(f"{local}: unpacked data failed verification: {exc}")) from None
        moves = []
        for name in source.entries:
            found = _entry(folder, name)
            if found is None:
                raise _deleted(local, DownloadError(f"{local}: {name} not found in the archive"))
            moves.append((found, target / name))
        installing.write_text("moving into place\n")
        done.unlink(missing_ok=True)
        for src, dst in moves:  # the score file last: the loader finds nothing half-moved
            if dst.is_dir() and not dst.is_symlink():
                shutil.rmtree(dst)
            elif dst.exists() or dst.is_symlink():
                dst.unlink()
            os.replace(src, dst)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    installed = dataset  # verified in the scratch folder; the renames keep every file as it was
    manifest = _record(target, source, source_url, size, sha256, installed, files)
    done.write_text(f"{len(installed)}\n")
    installing.unlink(missing_ok=True)
    if not keep_archive:
        local.unlink(missing_ok=True)
        _origin_file(local).unlink(missing_ok=True)
    log(f"{source.kind}: {installed.describe()}")
    log(f"{source.archive}: url, size, sha256 and pairs recorded in {manifest}")
    return MOSInstall(source.kind, target, len(installed), sha256, False)


def _origin_file(local: Path) -> Path:
    return local.with_name(local.name + ".url")


def _forget_other_source(local: Path, url: str) -> None:
    """Drop a kept or partly fetched archive that came from another URL (or from an unknown one)
    than ``url``, so that a rerun with another ``--url`` fetches that one instead of checking the
    old file again; then note where the archive being fetched comes from."""
    origin = _origin_file(local)
    partial = local.with_name(local.name + ".part")
    came_from = origin.read_text().strip() if origin.is_file() else None
    if came_from != url:
        local.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
    origin.write_text(url + "\n")


def _deleted(local: Path, exc: Exception) -> Exception:
    """``exc`` (a refused or failed archive) after deleting the archive, saying so: the next run
    fetches it again rather than refusing the same file."""
    local.unlink(missing_ok=True)
    _origin_file(local).unlink(missing_ok=True)
    return type(exc)(f"{exc} (the archive was deleted from {local.parent}; the next run fetches it again)")


# ---------------------------------------------------------------- the command

def _by_hand_lines() -> str:
    """Each database without an archive and where to get it, wrapped under 100 columns."""
    import textwrap

    return "\n".join(textwrap.fill(f"{kind + ':':<7}{where}", width=96, initial_indent="  ",
                                    subsequent_indent="         ", break_on_hyphens=False, break_long_words=False)
                      for kind, where in BY_HAND.items())


_HELP = f"""Fetch, check, unpack and verify a mean-opinion-score database (resumable).

KIND: kadid10k (ZIP, about 3 GB) or tid2013 (RAR: needs unrar, 7z or bsdtar on PATH). ROOT
becomes the dataset folder: use it with `percepmetric bench --dataset KIND=ROOT`.

\b
Not downloadable (get them by hand, then --dataset KIND=DIR):
{_by_hand_lines()}
"""


@click.command("download-mos", help=_HELP)
@click.argument("kind")
@click.option("--root", default=None, type=click.Path(file_okay=False),
              help=f"The dataset folder. Default: ${ENV_ROOT}/KIND, else ~/.local/share/percepmetric/KIND.")
@click.option("--url", default=None,
              help="The archive: an http(s):// or file:// URL or a local file (default: the official address).")
@click.option("--keep-archive", is_flag=True, help="Keep the archive in ROOT/.download after unpacking.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def download_mos_command(kind, root, url, keep_archive, no_progress) -> None:
    result = download_mos(kind, root=root, url=url, keep_archive=keep_archive, progress=not no_progress,
                          log=lambda text: click.echo(text, err=True))
    state = "already installed" if result.skipped else f"{result.pairs} pairs installed"
    click.echo(f"{result.kind} is in {result.root} ({state})")
    click.echo(f"use it with: percepmetric bench --dataset {result.kind}={result.root}")


COMMANDS = [download_mos_command]
