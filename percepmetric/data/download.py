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
"""

from __future__ import annotations

import os
import shutil
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, PercepmetricError
from .bapps import JND_SPLITS, TRAIN_SPLITS, VAL_SPLITS, split_dir, verify_split_folder

DEFAULT_URL_BASE = "https://perceptual-similarity.s3.us-west-2.amazonaws.com/dataset"
WORK_DIR = ".download"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Archive:
    """One official archive: its file name, the folder under ROOT it unpacks into, its splits."""

    name: str
    into: str
    splits: tuple[str, ...]
    val: bool  # part of ``--val-only``


ARCHIVES: tuple[Archive, ...] = (
    Archive("jnd.tar.gz", "", JND_SPLITS, True),
    Archive("twoafc_val.tar.gz", "2afc", VAL_SPLITS, True),
    Archive("twoafc_train.tar.gz", "2afc", TRAIN_SPLITS, False),
)


class DownloadError(PercepmetricError):
    """The dataset could not be fetched or its archive is damaged."""


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


def _safe_extract(archive_path: Path, into: Path) -> None:
    try:
        with tarfile.open(archive_path, "r:*") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(into, filter="data")  # refuses absolute paths, '..', device files
            else:  # pragma: no cover - Python without extraction filters
                for member in tar.getmembers():
                    name = Path(member.name)
                    if name.is_absolute() or ".." in name.parts or not (member.isfile() or member.isdir()):
                        raise DownloadError(f"{archive_path}: unsafe member {member.name!r}")
                tar.extractall(into)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DownloadError(f"{archive_path}: damaged archive ({exc.__class__.__name__}: {exc}); "
                            f"delete it and run again") from None


def _find_split(unpacked: Path, relative: str) -> Path | None:
    """The split folder inside the unpacked tree (at its top or one folder down)."""
    for candidate in [unpacked / relative, *(p / relative for p in sorted(unpacked.iterdir()) if p.is_dir())]:
        if candidate.is_dir():
            return candidate
    return None


def install_archive(archive: Archive, archive_path: Path, root: Path) -> dict[str, int]:
    """Unpack ``archive_path`` into a scratch folder, verify each of ``archive.splits``,
    then move them to their place under ``root``. Returns ``{split: number of items}``."""
    scratch = root / WORK_DIR / ("unpack-" + archive.name.split(".")[0])
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        _safe_extract(archive_path, scratch)
        found: dict[str, Path] = {}
        counts: dict[str, int] = {}
        for name in archive.splits:
            final = split_dir(root, name)
            relative = final.relative_to(root / archive.into) if archive.into else final.relative_to(root)
            folder = _find_split(scratch, str(relative))
            if folder is None:
                raise DownloadError(f"{archive_path}: split {name} ({relative}/) not found in the archive")
            try:
                counts[name] = verify_split_folder(folder, name, jnd=name.startswith("jnd/"))
            except InputError as exc:
                raise DownloadError(f"{archive_path}: unpacked data failed verification: {exc}") from None
            found[name] = folder
        for name, folder in found.items():
            final = split_dir(root, name)
            if final.exists():
                shutil.rmtree(final)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(folder, final)
        return counts
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def download_bapps(root: str | os.PathLike, val_only: bool = False, url_base: str | os.PathLike | None = None,
                   keep_archives: bool = False, progress: bool = True, log=print) -> dict[str, int]:
    """Fetch, unpack and verify the BAPPS archives into ``root``; return ``{split: items}``.

    ``val_only``: only the JND and 2AFC validation archives (what ``bench --all`` needs).
    Archives already installed (``ROOT/.download/<name>.done``) are skipped; interrupted
    downloads resume. ``url_base``: where the archives are (default :data:`DEFAULT_URL_BASE`).
    """
    root = Path(root).expanduser()
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
        local = work / archive.name
        if not local.exists():
            log(f"{archive.name}: fetching {archive_url(base, archive.name)}")
            fetch(archive_url(base, archive.name), local, progress=progress)
        log(f"{archive.name}: unpacking and verifying")
        installed = install_archive(archive, local, root)
        counts.update(installed)
        done.write_text("".join(f"{k} {v}\n" for k, v in installed.items()))
        if not keep_archives:
            local.unlink(missing_ok=True)
        log(f"{archive.name}: " + ", ".join(f"{k} ({v})" for k, v in installed.items()))
    return counts
