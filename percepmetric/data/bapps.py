"""The BAPPS dataset of Zhang et al. (2018): validated, decoded in parallel, cached as uint8.

Layout on disk (the official archives unpack to exactly this)::

    ROOT/2afc/{train,val}/<category>/{ref,p0,p1}/NNNNNN.png   the patches (64x64 RGB)
    ROOT/2afc/{train,val}/<category>/judge/NNNNNN.npy         fraction of people who chose p1
    ROOT/jnd/val/{traditional,cnn}/{p0,p1}/NNNNNN.png
    ROOT/jnd/val/{traditional,cnn}/same/NNNNNN.npy            fraction of people who said "same"

Split names, as the CLI takes them: ``val/cnn``, ``train/mix``, ``jnd/val/traditional``;
groups ``val`` (the six 2AFC validation sets), ``train``, ``jnd`` (both JND sets) and
``all`` (``val`` + ``jnd``). ``2afc/val/cnn`` and ``jnd/cnn`` are accepted aliases.

The dataset root is the ``root`` argument, else ``$PERCEPMETRIC_BAPPS``, else
:data:`DEFAULT_ROOT` (``$XDG_DATA_HOME/percepmetric/bapps``, i.e.
``~/.local/share/percepmetric/bapps``).

Every split is validated before anything is computed: missing folders, files present in
one of ref/p0/p1/judge but not all (matched by file stem, which also makes the counts
agree), unreadable images, images of differing sizes, and judgments that are not one
finite number in [0, 1] each raise :class:`InputError` naming the split, the first
offending files and how many there are.

Decoded splits are cached as plain ``.npy`` arrays under :func:`default_cache_dir`
(``$PERCEPMETRIC_CACHE``, else ``$XDG_CACHE_HOME/percepmetric``, else
``~/.cache/percepmetric``), keyed by the folder and the name, size, modification time, inode
and change time of each of its files (``touch -r`` can restore a modification time, never a
change time); a second load memory-maps them instead of decoding again. Each entry's
``meta.json`` holds the CRC-32 of every array, checked on every load (measured: 0.03 s for the
174 MB of a val/cnn-size split in the page cache, a warm load of 0.09 s becoming 0.12 s): an
entry that is incomplete, truncated or damaged is rebuilt, never used. Cache folders and files
follow the umask (a group-shared cache works with umask 002). When the cache folder cannot be
written, the split is decoded in memory instead, after one line on stderr saying so.
Images are read as PIL's ``convert("RGB")`` does, as the reference loader does (plain 8-bit
RGB PNGs, as BAPPS's are, through ``imagecodecs``, which gives the same arrays twice as fast and
in parallel threads); they are not resized (BAPPS patches are all 64x64, where the reference's
``Resize(64)`` does nothing).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import shutil
import struct
import sys
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..devices import usable_cpus
from ..errors import InputError
from ..io import ENV_CACHE, default_cache_dir

try:  # releases the GIL while decoding; PIL decodes whatever it does not take (see _decode_image)
    from imagecodecs import spng_decode
except ImportError:  # pragma: no cover - PIL alone gives the same arrays, only slower
    _png_decode: Callable[[bytes], np.ndarray] | None = None
else:
    _png_decode = spng_decode

ENV_ROOT = "PERCEPMETRIC_BAPPS"

TWO_AFC_CATEGORIES: dict[str, tuple[str, ...]] = {
    "train": ("traditional", "cnn", "mix"),
    "val": ("traditional", "cnn", "superres", "deblur", "color", "frameinterp"),
}
JND_CATEGORIES: tuple[str, ...] = ("traditional", "cnn")

#: Leaf split names, in the order of the LPIPS paper's tables.
TWO_AFC_SPLITS: tuple[str, ...] = tuple(f"{part}/{cat}" for part in ("train", "val")
                                        for cat in TWO_AFC_CATEGORIES[part])
VAL_SPLITS: tuple[str, ...] = tuple(f"val/{cat}" for cat in TWO_AFC_CATEGORIES["val"])
TRAIN_SPLITS: tuple[str, ...] = tuple(f"train/{cat}" for cat in TWO_AFC_CATEGORIES["train"])
JND_SPLITS: tuple[str, ...] = tuple(f"jnd/val/{cat}" for cat in JND_CATEGORIES)
GROUPS: dict[str, tuple[str, ...]] = {
    "val": VAL_SPLITS,
    "train": TRAIN_SPLITS,
    "jnd": JND_SPLITS,
    "all": VAL_SPLITS + JND_SPLITS,
}

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
JUDGMENT_SUFFIX = ".npy"
CACHE_VERSION = 2  # bump when the cache format changes (2: inode and ctime in the key, checksums)
_SHOW = 3  # how many offending files an error message names


def _data_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


DEFAULT_ROOT = _data_home() / "percepmetric" / "bapps"


def default_root() -> Path:
    """The documented default dataset folder: ``$XDG_DATA_HOME/percepmetric/bapps``
    (``~/.local/share/percepmetric/bapps``); evaluated now, so tests can move ``$HOME``."""
    return _data_home() / "percepmetric" / "bapps"


def resolve_root(root: str | os.PathLike | None) -> Path:
    """The dataset root: ``root`` if given, else ``$PERCEPMETRIC_BAPPS``, else :func:`default_root`.

    Only resolves the path; whether the splits are there is checked when they are loaded.
    """
    if root is not None and str(root) != "":
        return Path(root).expanduser()
    env = os.environ.get(ENV_ROOT)
    if env:
        return Path(env).expanduser()
    return default_root()


def root_source(root: str | os.PathLike | None) -> str:
    """Where :func:`resolve_root` took the root from: ``"argument"``, ``"environment"`` or ``"default"``."""
    if root is not None and str(root) != "":
        return "argument"
    return "environment" if os.environ.get(ENV_ROOT) else "default"


# ---------------------------------------------------------------- split names

def canonical_split(name: str) -> str:
    """One leaf split name in its canonical form (``val/cnn``, ``jnd/val/cnn``); InputError if unknown."""
    text = str(name).strip().strip("/")
    text = text.removeprefix("2afc/")
    if text.startswith("jnd/") and not text.startswith("jnd/val/"):
        text = "jnd/val/" + text[len("jnd/"):]
    if text in TWO_AFC_SPLITS or text in JND_SPLITS:
        return text
    known = ", ".join(list(GROUPS) + list(TWO_AFC_SPLITS) + list(JND_SPLITS))
    raise InputError(f"unknown split {name!r} (known: {known})")


def expand_splits(names: list[str] | tuple[str, ...]) -> list[str]:
    """Turn split names and groups into canonical leaf names, in order, without repeats.

    ``["val", "jnd/cnn"]`` -> ``["val/traditional", ..., "val/frameinterp", "jnd/val/cnn"]``.
    """
    out: list[str] = []
    for name in names:
        key = str(name).strip().strip("/").removeprefix("2afc/")
        for leaf in GROUPS.get(key) or (canonical_split(name),):
            if leaf not in out:
                out.append(leaf)
    return out


def is_jnd(name: str) -> bool:
    """True for a JND split name (``jnd/val/...``)."""
    return canonical_split(name).startswith("jnd/")


def split_dir(root: str | os.PathLike, name: str) -> Path:
    """Folder of split ``name`` under the dataset root: ``ROOT/2afc/val/cnn``, ``ROOT/jnd/val/cnn``."""
    leaf = canonical_split(name)
    return Path(root) / leaf if leaf.startswith("jnd/") else Path(root) / "2afc" / leaf


# ---------------------------------------------------------------- the splits

@dataclass
class TwoAFCSplit:
    """2AFC triplets (reference, two distortions) and the human judgment: one split, or several
    joined. The one form of 2AFC data: the benchmark scores metrics on it, training learns from
    it (:func:`percepmetric.train.data.join_splits` joins splits and folders into one).

    ``ref, p0, p1``: uint8 ``(N,H,W,3)`` (possibly memory-mapped from the cache; treat as read-only).
    ``judge``: float32 ``(N,)`` in [0, 1], the fraction of people who found ``p1`` closer to ``ref``.
    ``files``: the ``N`` file stems (``"000042"``), in order.
    ``fingerprint``: identity of the data on disk (keys the distance cache); ``""`` for in-memory splits.
    ``sources``: ``[{"name": split or folder, "count": n}, ...]``, the parts in order (a training
    run records them); by default the split itself.
    """

    name: str
    ref: np.ndarray
    p0: np.ndarray
    p1: np.ndarray
    judge: np.ndarray
    files: list[str]
    fingerprint: str = field(default="", repr=False)
    sources: list[dict[str, str | int]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if not self.sources:
            self.sources = [{"name": self.name, "count": len(self)}]

    def __len__(self) -> int:
        return len(self.judge)


@dataclass
class JNDSplit:
    """A JND split: ``N`` pairs and how many people judged them the same.

    ``p0, p1``: uint8 ``(N,H,W,3)``; ``same``: float32 ``(N,)`` in [0, 1], the fraction of
    people who said the two patches were identical; ``files``: the ``N`` file stems.
    """

    name: str
    p0: np.ndarray
    p1: np.ndarray
    same: np.ndarray
    files: list[str]
    fingerprint: str = field(default="", repr=False)

    def __len__(self) -> int:
        return len(self.same)


def uint8_batch(images: np.ndarray, device: torch.device | str | None = None) -> torch.Tensor:
    """Rows of a (possibly memory-mapped, read-only) uint8 ``(N,H,W,3)`` array as a uint8
    tensor on ``device``: 8-bit data moves, a quarter of the bytes of floats."""
    t = torch.from_numpy(np.require(images, dtype=np.uint8, requirements=["C", "W"]))  # copies read-only slices
    return t if device is None else t.to(device, non_blocking=True)


def to_tensor(batch_uint8: np.ndarray, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 ``(N,H,W,3)`` -> float32 ``(N,3,H,W)`` in [0, 1] (``x / 255``, as ToTensor does).

    The uint8 data moves to ``device`` before the conversion (:func:`uint8_batch`).
    """
    return uint8_batch(batch_uint8, device).permute(0, 3, 1, 2).float().div_(255.0)


def load_two_afc(root: str | os.PathLike | None, name: str, *, cache_dir: str | os.PathLike | bool | None = None,
                 workers: int | None = None) -> TwoAFCSplit:
    """Load the 2AFC split ``name`` (e.g. ``"val/cnn"``) from the dataset ``root``.

    ``root=None`` resolves as :func:`resolve_root`. ``cache_dir``: where decoded splits are
    kept (``None``: :func:`default_cache_dir`; ``False``: no cache). Validates first (see
    the module docstring); raises :class:`InputError` naming the split and the files.
    """
    leaf = canonical_split(name)
    if leaf.startswith("jnd/"):
        raise InputError(f"split {leaf!r} is a JND split; use load_jnd")
    return _load(split_dir(resolve_root(root), leaf), leaf, ("ref", "p0", "p1"), "judge", cache_dir, workers)


def load_jnd(root: str | os.PathLike | None, name: str, *, cache_dir: str | os.PathLike | bool | None = None,
             workers: int | None = None) -> JNDSplit:
    """Load the JND split ``name`` (e.g. ``"jnd/val/cnn"``); as :func:`load_two_afc`."""
    leaf = canonical_split(name)
    if not leaf.startswith("jnd/"):
        raise InputError(f"split {leaf!r} is a 2AFC split; use load_two_afc")
    return _load(split_dir(resolve_root(root), leaf), leaf, ("p0", "p1"), "same", cache_dir, workers)


def load_split(root: str | os.PathLike | None, name: str, **kwargs) -> TwoAFCSplit | JNDSplit:
    """:func:`load_two_afc` or :func:`load_jnd`, by the split's name."""
    return load_jnd(root, name, **kwargs) if is_jnd(name) else load_two_afc(root, name, **kwargs)


def load_two_afc_folder(path: str | os.PathLike, *, name: str | None = None,
                        cache_dir: str | os.PathLike | bool | None = None, workers: int | None = None) -> TwoAFCSplit:
    """Load any folder with ``ref/ p0/ p1/ judge/`` subfolders (your own 2AFC judgments).

    ``judge/<stem>.npy`` holds one number in [0, 1]: the fraction of people who chose ``p1``.
    All images must have one size. ``name`` (default: the folder's path) appears in errors.
    """
    path = Path(path).expanduser()
    return _load(path, name or str(path), ("ref", "p0", "p1"), "judge", cache_dir, workers)


# ---------------------------------------------------------------- validation, decoding, cache

# The PNG chunks that may come before the pixels of a file the fast decoder takes, and the
# lengths (least, most) allowed: those PIL reads without effect on the pixels of an RGB image
# and without a way to fail (it refuses a gAMA, cHRM, sRGB or pHYs chunk that is too short).
_HARMLESS_CHUNKS: dict[bytes, tuple[int, int]] = {
    b"gAMA": (4, 4), b"cHRM": (32, 32), b"sRGB": (1, 1), b"pHYs": (9, 9), b"sBIT": (3, 3), b"bKGD": (6, 6),
    b"tIME": (7, 7), b"tEXt": (1, 65535),
}


def _plain_rgb_png(data: bytes) -> tuple[int, int] | None:
    """``(height, width)`` if ``data`` is a PNG that PIL opens as mode "RGB" (8-bit truecolor,
    not interlaced) with only harmless chunks before its pixels, with the checksums PIL checks
    right, and nothing but ``IEND`` or the end of the file after the pixels; else None.

    PIL's ``convert("RGB")`` changes nothing in such a file, and the only way left for PIL to
    fail on it is in the pixel data, where libspng fails too (and PIL then decides).
    """
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    size = None
    pos, end, in_pixels = 8, len(data), False
    while pos != end:
        if pos + 12 > end:
            return None
        length, kind = struct.unpack_from(">I4s", data, pos)
        after = pos + 12 + length
        if after > end:
            return None
        if kind == b"IDAT":
            if size is None or pos > 1 << 20:  # (PIL refuses more than 64 MB of text chunks)
                return None
            in_pixels = True
        elif in_pixels:  # PIL stops at IEND; other chunks after the pixels could still fail it
            return size if kind == b"IEND" else None
        else:
            if size is None:  # the first chunk
                if kind != b"IHDR" or length != 13:
                    return None
                width, height, *form = struct.unpack_from(">IIBBBBB", data, 16)
                if form != [8, 2, 0, 0, 0] or not width or not height:  # depth, colour, method, filter, interlace
                    return None
                size = (height, width)
            else:
                least, most = _HARMLESS_CHUNKS.get(kind, (1, 0))
                if not least <= length <= most:
                    return None
            checksum = struct.unpack_from(">I", data, after - 4)[0]
            if zlib.crc32(memoryview(data)[pos + 4 : after - 4]) != checksum:
                return None
        pos = after
    return size if in_pixels else None


def _decode_image(path: str) -> np.ndarray:
    """One image file -> uint8 ``(H,W,3)``, as the reference loader reads it (PIL, convert("RGB")).

    A plain 8-bit RGB PNG (see :func:`_plain_rgb_png`) goes through ``imagecodecs`` (libspng:
    about twice as fast as PIL, and it releases the GIL, so threads scale). Everything else, and
    any file libspng fails on, goes through PIL: the result is always PIL's.
    """
    from PIL import Image

    if _png_decode is not None and path[-4:].lower() == ".png":
        data = _read_bytes(path)
        size = _plain_rgb_png(data) if data else None
        limit = Image.MAX_IMAGE_PIXELS  # larger images go to PIL, which warns or refuses
        if data and size is not None and (limit is None or size[0] * size[1] <= limit):
            try:
                img = _png_decode(data)
            except Exception:  # noqa: BLE001 - PIL decides about a file libspng refuses
                img = None
            if img is not None and img.dtype == np.uint8 and img.shape == size + (3,):
                return img
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def _fail(split: str, what: str, items: list[str]) -> InputError:
    shown = ", ".join(items[:_SHOW]) + (", ..." if len(items) > _SHOW else "")
    return InputError(f"split {split}: {len(items)} {what}; first: {shown}")


def _stem(name: str) -> str:
    """``Path(name).stem`` (a third of the cost of listing a folder when made with Path)."""
    dot = name.rfind(".")
    return name[:dot] if 0 < dot < len(name) - 1 else name


def _list_folder(folder: Path, suffixes: str | tuple[str, ...]) -> dict[str, os.DirEntry]:
    """stem -> directory entry, for the files of ``folder`` with one of ``suffixes``."""
    with os.scandir(folder) as it:
        return {_stem(e.name): e for e in it if e.is_file() and e.name.lower().endswith(suffixes)}


def _listing(folder: Path, split: str, image_dirs: tuple[str, ...], label_dir: str):
    """Validate the folder structure; return (stems, {subfolder: [entries]}) matched by stem."""
    if not folder.is_dir():
        raise InputError(f"split {split}: folder {folder} does not exist (is the dataset root right? "
                         f"set --root or ${ENV_ROOT}, or run `percepmetric download-bapps`)")
    subdirs = image_dirs + (label_dir,)
    missing = [d + "/" for d in subdirs if not (folder / d).is_dir()]
    if missing:
        raise _fail(split, f"missing subfolder(s) in {folder}", missing)
    listings = {d: _list_folder(folder / d, JUDGMENT_SUFFIX if d == label_dir else IMAGE_SUFFIXES) for d in subdirs}
    counts = {d: len(v) for d, v in listings.items()}
    everywhere = set.intersection(*(set(v) for v in listings.values()))
    strays = sorted(f"{d}/{listings[d][s].name}" for d in subdirs for s in listings[d] if s not in everywhere)
    if strays:
        count_text = ", ".join(f"{d} {n}" for d, n in counts.items())
        raise _fail(split, f"file(s) without a counterpart in every one of {'/'.join(subdirs)} "
                           f"(counts: {count_text}) in {folder}", strays)
    if not everywhere:
        raise InputError(f"split {split}: no files in {folder}/{{{','.join(subdirs)}}}")
    stems = sorted(everywhere)
    return stems, {d: [listings[d][s] for s in stems] for d in subdirs}


def _stat_all(folder: Path, items: list[os.DirEntry]) -> list[os.stat_result]:
    """``[e.stat() for e in items]``, the entries of ``folder``; by name from the open folder
    where the OS allows it, which saves the kernel a fifth of the work of full paths."""
    if os.stat not in os.supports_dir_fd:
        return [e.stat() for e in items]
    fd = os.open(folder, os.O_RDONLY)
    try:
        return [os.stat(e.name, dir_fd=fd) for e in items]
    finally:
        os.close(fd)


def _fingerprint(folder: Path, entries: dict[str, list[os.DirEntry]]) -> str:
    """The cache key: name, size, modification time, inode and change time of every file.

    Any write changes the change time, which no user call can set back (``touch -r`` and
    ``os.utime`` restore only the modification time); a file replaced by another gets a new inode.
    """
    h = hashlib.sha1(f"v{CACHE_VERSION}|{folder.resolve()}".encode())
    for d, items in entries.items():
        stats = _stat_all(folder / d, items)
        h.update("".join(f"|{d}/{e.name}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}:{st.st_ctime_ns}"
                         for e, st in zip(items, stats)).encode())
    return h.hexdigest()[:20]


def _read_bytes(path: str) -> bytes | None:
    """The whole regular file ``path``, or None if that fails (the caller then reports it).

    os.read takes half the time of ``open().read()`` for a small file; a regular file reads short
    only at its end, so a small file takes one read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except OSError:
        return None
    try:
        parts = [os.read(fd, 1 << 16)]
        while len(parts[-1]) == 1 << 16:
            parts.append(os.read(fd, 1 << 16))
        return b"".join(parts) if len(parts) > 1 else parts[0]
    except OSError:
        return None
    finally:
        os.close(fd)


def _npy_header_end(data: bytes) -> int:
    """Where the array data of a ``.npy`` file starts (0 if ``data`` is not one np.load reads)."""
    if data[:6] != b"\x93NUMPY" or len(data) < 12:
        return 0
    if data[6] == 1:
        return 10 + int.from_bytes(data[8:10], "little")
    return 12 + int.from_bytes(data[8:12], "little") if data[6] in (2, 3) else 0


def _read_labels(entries: list[os.DirEntry], split: str, label_dir: str) -> np.ndarray:
    """The one number in [0, 1] that each ``.npy`` file of ``entries`` holds, as float32.

    np.load parses every header with Python (~60 us a file), but judgment files all share one
    header. So each new header is learned from np.load's result, and a file with a learned header
    of one number (and the length that implies) is read with np.frombuffer: the same bytes read as
    the same dtype. Any other file goes through np.load, as do the files that fail.
    """
    values = np.empty(len(entries), dtype=np.float32)
    bad: list[str] = []
    known: dict[bytes, np.dtype | None] = {}  # header bytes -> dtype of its single number, or None
    for i, e in enumerate(entries):  # one small .npy per item: file I/O, not arithmetic
        data = _read_bytes(e.path)
        start = _npy_header_end(data) if data else 0
        dtype = known.get(data[:start]) if data and start else None
        if data and dtype is not None and len(data) == start + dtype.itemsize:
            v = np.frombuffer(data, dtype, 1, start).astype(np.float64)
        else:
            try:  # the bytes already read, or the path if reading failed (np.load says why)
                array = np.load(io.BytesIO(data) if data is not None else e.path, allow_pickle=False)
                v = np.asarray(array, dtype=np.float64).ravel()
            except (OSError, ValueError, EOFError) as exc:  # EOFError: an empty file
                bad.append(f"{label_dir}/{e.name} (unreadable: {exc.__class__.__name__})")
                continue
            if data and start and data[:start] not in known:  # learn the header: exactly one plain number?
                plain = array.size == 1 and array.dtype.kind in "biuf" and len(data) == start + array.dtype.itemsize
                known[data[:start]] = array.dtype if plain else None
        if v.size != 1 or not np.isfinite(v[0]) or not 0.0 <= v[0] <= 1.0:
            bad.append(f"{label_dir}/{e.name} ({v.tolist() if v.size <= 3 else f'{v.size} values'})")
            continue
        values[i] = v[0]
    if bad:
        raise _fail(split, f"{label_dir} file(s) not holding one number in [0, 1]", bad)
    return values


def _decode_all(split: str, dirs: dict[str, list[os.DirEntry]], workers: int | None,
                allocate=None) -> dict[str, np.ndarray]:
    """Decode every image of every image folder in parallel into ``(N,H,W,3)`` uint8 arrays.

    ``allocate(key, shape)`` makes each output array (default ``np.empty``; the cache passes a
    memory-mapped ``.npy`` file, so a training set is never held in RAM whole). The first image
    that decodes sets the size all must have; threads then decode the others into the outputs.
    ``workers``: threads (default: one per CPU the process may use,
    :func:`~percepmetric.devices.usable_cpus`, at most 16; decoding a PNG holds the GIL about a
    tenth of the time, so up to about ten CPUs add speed).
    """
    allocate = allocate or (lambda key, shape: np.empty(shape, dtype=np.uint8))
    jobs = [(d, i, e) for d, items in dirs.items() for i, e in enumerate(items)]
    bad: list[str] = []  # the worker threads append (atomic) to these two
    odd: list[str] = []

    def decode(d: str, e: os.DirEntry) -> np.ndarray | None:
        try:
            return _decode_image(e.path)  # looked up at each call: tests replace it
        except Exception as exc:  # noqa: BLE001 - any decoder failure is "unreadable"
            bad.append(f"{d}/{e.name} ({exc.__class__.__name__})")
            return None

    start, first = 0, None
    while first is None and start < len(jobs):
        d, i, e = jobs[start]
        first, start = decode(d, e), start + 1
    if first is None:
        raise _fail(split, "unreadable image(s)", sorted(bad))
    size, first_name = first.shape[:2], f"{d}/{e.name}"
    arrays = {key: allocate(key, (len(items),) + first.shape) for key, items in dirs.items()}
    plain = {key: arr.view(np.ndarray) for key, arr in arrays.items()}  # memmap item writes are slow
    plain[d][i] = first

    def decode_chunk(chunk: list[tuple[str, int, os.DirEntry]]) -> None:
        for d, i, e in chunk:
            img = decode(d, e)
            if img is None:
                continue
            if img.shape[:2] != size:
                odd.append(f"{d}/{e.name} ({img.shape[1]}x{img.shape[0]})")
                continue
            plain[d][i] = img

    # 64 files per task: one task per file spent more time in the pool than in decoding.
    rest = jobs[start:]
    chunks = [rest[k : k + 64] for k in range(0, len(rest), 64)]
    with ThreadPoolExecutor(max_workers=workers or min(16, usable_cpus())) as pool:
        for _ in pool.map(decode_chunk, chunks):
            pass
    if bad:
        raise _fail(split, "unreadable image(s)", sorted(bad))
    if odd:
        raise _fail(split, f"image(s) differing in size from {first_name} ({size[1]}x{size[0]})", sorted(odd))
    return arrays


def _checksum(array: np.ndarray) -> str:
    """CRC-32 of an array's bytes, as 8 hex digits: it catches damaged or truncated cache files at
    about 5 GB/s (val/cnn's 174 MB: 0.03 s), and zlib lets other threads run meanwhile."""
    return f"{zlib.crc32(np.ascontiguousarray(array).data.cast('B')):08x}"


def _checksums(arrays: dict[str, np.ndarray]) -> dict[str, str]:
    """:func:`_checksum` of each array, the arrays in parallel threads."""
    with ThreadPoolExecutor(max_workers=min(len(arrays), usable_cpus())) as pool:
        return dict(zip(arrays, pool.map(_checksum, arrays.values())))


def _open_entry(target: Path, image_dirs: tuple[str, ...], label_dir: str) -> dict[str, np.ndarray] | None:
    """The arrays of the cache entry ``target`` (images memory-mapped), or None unless it is
    complete and intact: ``meta.json`` present and of this version, every array readable, of
    the recorded shape and with the recorded checksum."""
    try:
        meta = json.loads((target / "meta.json").read_text())
        recorded = meta["arrays"]
        arrays = {k: np.load(target / f"{k}.npy", mmap_mode="r") for k in image_dirs}
        arrays[label_dir] = np.load(target / f"{label_dir}.npy")
    except (OSError, ValueError, EOFError, KeyError, TypeError):  # EOFError: an empty file
        return None
    if meta.get("version") != CACHE_VERSION or not isinstance(recorded, dict) or set(recorded) != set(arrays):
        return None
    if not all(isinstance(r, dict) and r.get("shape") == list(arrays[k].shape) for k, r in recorded.items()):
        return None
    sums = _checksums(arrays)
    if any(sums[k] != recorded[k].get("crc32") for k in arrays):
        return None
    return arrays


def _new_folder_beside(target: Path, tag: str) -> Path:
    """A new, empty, hidden folder next to ``target``, with the umask's permissions
    (``tempfile.mkdtemp`` would make it 0700, and a group-shared cache unusable)."""
    for _ in range(100):
        path = target.parent / f".{target.name}.{tag}.{os.getpid()}.{secrets.token_hex(4)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary folder next to {target}")


def _discard(path: Path) -> None:
    """Remove a damaged cache entry: first renamed aside (readers that still map its files keep
    them; no reader sees a half-deleted entry under the real name), then deleted."""
    if path.is_dir() and not path.is_symlink():
        aside = path.parent / f".{path.name}.damaged.{os.getpid()}.{secrets.token_hex(4)}"
        try:
            os.replace(path, aside)
        except FileNotFoundError:  # another process removed it first
            return
        shutil.rmtree(aside, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _install(tmp: Path, target: Path, image_dirs: tuple[str, ...], label_dir: str) -> None:
    """Rename the finished entry ``tmp`` to ``target``. If ``target`` is in the way: keep it when
    it is a complete, intact entry (another process finished the same split first), else
    discard it and try again."""
    for attempt in range(3):
        try:
            os.replace(tmp, target)
            return
        except OSError:
            if attempt == 2:
                raise
            if _open_entry(target, image_dirs, label_dir) is not None:
                return
            _discard(target)


def _build_cache(target: Path, split: str, entries: dict[str, list[os.DirEntry]], image_dirs: tuple[str, ...],
                 label_dir: str, labels: np.ndarray, workers: int | None, meta: dict) -> None:
    """Decode straight into ``.npy`` files of a temporary folder, record their checksums, then
    rename it to ``target`` (atomic: a cache entry exists only complete)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_folder_beside(target, "building")
    try:
        def allocate(key, shape):
            return np.lib.format.open_memmap(tmp / f"{key}.npy", mode="w+", dtype=np.uint8, shape=shape)

        arrays = _decode_all(split, {d: entries[d] for d in image_dirs}, workers, allocate)
        for arr in arrays.values():
            if isinstance(arr, np.memmap):  # all of them: allocate gives memory maps
                arr.flush()
        np.save(tmp / f"{label_dir}.npy", labels)
        arrays[label_dir] = labels
        sums = _checksums(arrays)
        recorded = {k: {"shape": list(a.shape), "crc32": sums[k]} for k, a in arrays.items()}
        del arrays
        (tmp / "meta.json").write_text(json.dumps({**meta, "version": CACHE_VERSION, "arrays": recorded}))
        _install(tmp, target, image_dirs, label_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_unwritable_caches: set[str] = set()  # cache folders already reported on stderr


def warn_unwritable_cache(cache: str | os.PathLike, reason: str) -> None:
    """One line on stderr, once per cache folder and process: nothing decoded (or, from the
    benchmark, computed) is kept there, and the work goes on without it."""
    if str(cache) not in _unwritable_caches:
        _unwritable_caches.add(str(cache))
        sys.stderr.write(f"percepmetric: cannot write to the cache folder {cache} ({reason}); going on without it, "
                         f"nothing is kept there (set ${ENV_CACHE} to a writable folder)\n")


def _load(folder: Path, split: str, image_dirs: tuple[str, ...], label_dir: str,
          cache_dir: str | os.PathLike | bool | None, workers: int | None):
    stems, entries = _listing(folder, split, image_dirs, label_dir)
    fingerprint = _fingerprint(folder, entries)
    cache: Path | None
    if cache_dir is False:
        cache = None
    elif cache_dir is None or cache_dir is True:
        cache = default_cache_dir()
    else:
        cache = Path(cache_dir)
    target = cache / "splits" / f"{split.replace('/', '_').strip('_')[-60:]}-{fingerprint}" if cache else None
    arrays = _open_entry(target, image_dirs, label_dir) if target is not None else None
    if arrays is None:
        labels = _read_labels(entries[label_dir], split, label_dir)  # cheap checks first
        if cache is not None and target is not None:
            meta = {"split": split, "folder": str(folder), "n": len(stems)}
            try:
                _build_cache(target, split, entries, image_dirs, label_dir, labels, workers, meta)
            except OSError as exc:  # the cache folder cannot be written (read-only, full, not a folder)
                warn_unwritable_cache(cache, exc.strerror or exc.__class__.__name__)
            else:  # memory-mapped: a whole split need not sit in RAM
                arrays = {k: np.load(target / f"{k}.npy", mmap_mode="r") for k in image_dirs}
        if arrays is None:
            arrays = _decode_all(split, {d: entries[d] for d in image_dirs}, workers)
        arrays[label_dir] = labels
    if label_dir == "same":
        return JNDSplit(split, arrays["p0"], arrays["p1"], arrays["same"], stems, fingerprint)
    return TwoAFCSplit(split, arrays["ref"], arrays["p0"], arrays["p1"], arrays["judge"], stems, fingerprint)


def verify_split_folder(folder: str | os.PathLike, name: str, *, jnd: bool, workers: int | None = None) -> int:
    """Check a split folder completely without keeping its images: the structure, every
    judgment, and that every image decodes to one common size. Returns the number of items.

    Used after unpacking a download; raises :class:`InputError` like the loaders.
    """
    image_dirs, label_dir = (("p0", "p1"), "same") if jnd else (("ref", "p0", "p1"), "judge")
    stems, entries = _listing(Path(folder), name, image_dirs, label_dir)
    _read_labels(entries[label_dir], name, label_dir)
    chunk = 2048  # decode in slices: a training set would not fit in memory at once
    for start in range(0, len(stems), chunk):
        _decode_all(name, {d: entries[d][start : start + chunk] for d in image_dirs}, workers)
    return len(stems)
