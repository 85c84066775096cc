"""Mean-opinion-score (MOS) image-quality databases: (reference, distorted, score) sets.

One loader per database, each reading the files as the official archive unpacks them, plus a
generic CSV form; all give a :class:`MOSDataset`. The layouts, score files and quirks of each
database, and their sources, are in ``docs/mos.md`` ("Datasets"); in short:

=========  ==========================================================  ========  =====  =============
kind       score file, images                                          score     pairs  higher better
=========  ==========================================================  ========  =====  =============
tid2013    ``mos_with_names.txt``; ``reference_images/I01.BMP``,        MOS 0-9   3000   yes
           ``distorted_images/i01_01_1.bmp``
kadid10k   ``dmos.csv`` (dist_img,ref_img,dmos,var); ``images/``        DCR 1-5  10125   yes
live       ``dmos.mat`` (or ``dmos_realigned.mat``) + each folder's     DMOS       779   no
           ``info.txt``; ``refimgs/``, ``jp2k/ jpeg/ wn/ gblur/
           fastfading/imgN.bmp``
csiq       ``csiq_dmos.csv`` (a CSV export of ``csiq.DMOS.xlsx``'s      DMOS 0-1   866   no
           all_by_image sheet; the xlsx itself when openpyxl is
           importable); ``src_imgs/``, ``dst_imgs/<type>/``
pipal      ``Train_Label/*.txt``; ``Train_Ref/``, ``Train_Dist/``       Elo      23200   yes
csv        any CSV with ``reference,distorted,score[,group,type,         MOS or    -     MOS: yes
           level,dmos]``; paths relative to the CSV's folder            DMOS
=========  ==========================================================  ========  =====  =============

File and folder names are matched without regard to case (the archives mix ``I01.BMP`` and
``i01_01_1.bmp``); an exact match wins when both exist.

**Validation, before anything is computed** (one :class:`InputError` line naming the dataset,
what is wrong, how many and the first file): the score file exists and every line of it parses,
every score is a finite number, no distorted image is listed twice, every listed file exists,
is an image whose header PIL reads (``Image.open`` and its size, in threads; the pixels are
*not* decoded here, so a file damaged after its header fails later, when it is decoded), and
every distorted image has its reference's size. Completeness is not required: a score file
that lists fewer pairs than the official release (lines deleted) gives a dataset whose
:attr:`MOSDataset.is_subset` is true and whose :meth:`MOSDataset.describe` says so. A file the
score file lists must exist, though: a missing image is an error, never silently dropped.

**Fingerprint** (the cache key of the runner's stored and resumed values): SHA-1 over the
kind, the bytes of every score file (and their names relative to the root), and the relative
name, size in bytes and BLAKE2b digest (16 bytes) of the bytes of every listed image. The
digest is taken where the header is checked, from the same read of the file (in threads), so
an image is read twice per run (here, and when the runner decodes it), never decoded twice.
The content is the key, not the modification time: an image rewritten with other pixels of
the same size and given back its old ``st_mtime_ns`` (``touch -r``, ``os.utime``, a restore)
changes the fingerprint, and a file only touched or copied keeps it. What reading the bytes
costs is measured in ``docs/mos.md`` ("Fingerprint"). The fingerprint starts with
:data:`FINGERPRINT_VERSION`, so values stored under another definition of it are computed
again, never reused.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..devices import usable_cpus
from ..errors import InputError
from ..io import file_digest
from ..options import FALSE_WORDS, TRUE_WORDS, parse_bool

DATASET_KINDS = ("tid2013", "kadid10k", "live", "csiq", "pipal", "csv")

#: Pairs in the complete official release of each database.
OFFICIAL_COUNTS: dict[str, int] = {"tid2013": 3000, "kadid10k": 10125, "live": 779, "csiq": 866, "pipal": 23200}

#: Spellings of the kinds accepted besides the canonical ones.
_ALIASES = {"kadid-10k": "kadid10k", "kadid": "kadid10k", "tid": "tid2013"}

#: Marker file of a synthetic set (written by :mod:`.mos_fixtures`): the loaders set ``synthetic``.
SYNTHETIC_MARKER = "SYNTHETIC_MOS.txt"

FINGERPRINT_VERSION = 2  # bump when what the fingerprint covers changes (the module docstring says what it covers)

#: The 24 distortion types of TID2013, in the order of their two-digit codes 01..24, as the
#: database's readme lists them (Ponomarenko et al. 2015, Table 1).
TID2013_DISTORTIONS: tuple[str, ...] = (
    "additive gaussian noise",
    "additive noise in color components",
    "spatially correlated noise",
    "masked noise",
    "high frequency noise",
    "impulse noise",
    "quantization noise",
    "gaussian blur",
    "image denoising",
    "jpeg compression",
    "jpeg2000 compression",
    "jpeg transmission errors",
    "jpeg2000 transmission errors",
    "non eccentricity pattern noise",
    "local block-wise distortions of different intensity",
    "mean shift (intensity shift)",
    "contrast change",
    "change of color saturation",
    "multiplicative gaussian noise",
    "comfort noise",
    "lossy compression of noisy images",
    "image color quantization with dither",
    "chromatic aberrations",
    "sparse sampling and reconstruction",
)

#: The 25 distortion types of KADID-10k, codes 01..25 (Lin, Hosu and Saupe 2019, Table 2).
KADID10K_DISTORTIONS: tuple[str, ...] = (
    "gaussian blur", "lens blur", "motion blur", "color diffusion", "color shift", "color quantization",
    "color saturation 1", "color saturation 2", "jpeg2000", "jpeg", "white noise", "white noise in color component",
    "impulse noise", "multiplicative noise", "denoise", "brighten", "darken", "mean shift", "jitter",
    "non-eccentricity patch", "pixelate", "quantization", "color block", "high sharpen", "contrast change",
)

#: LIVE Release 2: (folder, images in it, distortion name), in the order of ``dmos.mat``.
LIVE_FOLDERS: tuple[tuple[str, int, str], ...] = (
    ("jp2k", 227, "jpeg2000"),
    ("jpeg", 233, "jpeg"),
    ("wn", 174, "white noise"),
    ("gblur", 174, "gaussian blur"),
    ("fastfading", 174, "fast fading"),
)
LIVE_TOTAL = sum(n for _, n, _ in LIVE_FOLDERS)  # 982 = 779 distorted + 203 originals (orgs == 1)

#: CSIQ: dst_idx -> (folder under dst_imgs/, tag in the file name, distortion name) (Larson and Chandler 2010).
CSIQ_TYPES: dict[int, tuple[str, str, str]] = {
    1: ("awgn", "AWGN", "additive white gaussian noise"),
    2: ("jpeg", "JPEG", "jpeg"),
    3: ("jpeg2000", "jpeg2000", "jpeg2000"),
    4: ("fnoise", "fnoise", "additive pink gaussian noise"),
    5: ("blur", "BLUR", "gaussian blur"),
    6: ("contrast", "contrast", "global contrast decrement"),
}
#: dst_type spellings (lower case, spaces and punctuation removed) -> dst_idx, for exports without dst_idx.
_CSIQ_TYPE_NAMES = {"noise": 1, "awgn": 1, "whitenoise": 1, "jpeg": 2, "jpeg2000": 3, "jp2k": 3, "fnoise": 4,
                    "1fnoise": 4, "pinknoise": 4, "blur": 5, "gblur": 5, "contrast": 6}
CSIQ_SCORE_FILES = ("csiq_dmos.csv", "csiq.DMOS.csv", "csiq.csv")
CSIQ_XLSX = "csiq.DMOS.xlsx"

_SCORE_NAMES = {"pipal": "Elo"}  # what describe() calls the score, where not MOS / DMOS
_SHOW = 1  # offending files named in an error (the first)


@dataclass(frozen=True, eq=False)
class MOSDataset:
    """``N`` (reference, distorted) image pairs with a human quality score each.

    ``references``: the unique reference images (absolute paths, sorted); ``reference_index[i]``
    is the position in it of pair ``i``'s reference. ``distorted``: the ``N`` distorted images.
    ``scores``: float64, as in the score file; ``higher_is_better`` says their direction (:attr:`mos`
    turns them so that higher is better). ``distortion`` / ``level``: type name and level per pair
    (``""`` / 0 when the layout has none). ``official_count``: pairs of the complete release
    (None for csv). ``fingerprint``: identity of the content (see the module docstring).
    ``synthetic``: a generated set (fixture, embedded), never human judgments.
    ``group_index``: the generic CSV's ``group`` column as indices (None without it); pairs of one
    group are resampled together. :attr:`groups` is the grouping to resample by: ``group_index``
    when present, else ``reference_index``.
    """

    name: str
    kind: str
    root: Path
    references: tuple[Path, ...]
    reference_index: np.ndarray
    distorted: tuple[Path, ...]
    scores: np.ndarray
    higher_is_better: bool
    distortion: tuple[str, ...]
    level: np.ndarray
    official_count: int | None
    fingerprint: str
    synthetic: bool = False
    group_index: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.distorted)

    @property
    def mos(self) -> np.ndarray:
        """The scores oriented so that higher = better quality (``-scores`` for DMOS-like scores)."""
        return self.scores if self.higher_is_better else -self.scores

    @property
    def groups(self) -> np.ndarray:
        """``(N,)`` int64 group of each pair for resampling: the CSV's group column, else the reference."""
        return self.group_index if self.group_index is not None else self.reference_index

    @property
    def reference_paths(self) -> tuple[Path, ...]:
        """The ``N`` reference paths, one per pair (``references[reference_index[i]]``)."""
        return tuple(self.references[i] for i in self.reference_index)

    @property
    def is_subset(self) -> bool:
        """True when the set holds fewer pairs than the complete official release."""
        return self.official_count is not None and len(self) < self.official_count

    def describe(self) -> str:
        """One line, e.g. ``tid2013: 3000 pairs, 25 references, 24 distortion types (MOS, higher = better)``."""
        types = len({d for d in self.distortion if d})
        parts = [f"{len(self)} pair{'s' if len(self) != 1 else ''}",
                 f"{len(self.references)} reference{'s' if len(self.references) != 1 else ''}"]
        if types:
            parts.append(f"{types} distortion type{'s' if types != 1 else ''}")
        if self.group_index is not None:
            parts.append(f"{len(np.unique(self.group_index))} groups")
        label = _SCORE_NAMES.get(self.kind, "MOS" if self.higher_is_better else "DMOS")
        text = f"{self.name}: {', '.join(parts)} ({label}, {'higher' if self.higher_is_better else 'lower'} = better)"
        if self.is_subset:
            text += f", a subset: {len(self)} of {self.official_count} pairs"
        return text + (" (synthetic)" if self.synthetic else "")


# ---------------------------------------------------------------- the command-line form

def _canonical_kind(kind: str) -> str | None:
    key = str(kind).strip().lower()
    key = _ALIASES.get(key, key)
    return key if key in DATASET_KINDS else None


_EXPECTED = "tid2013=DIR, kadid10k=DIR, live=DIR, csiq=DIR, pipal=DIR or csv:FILE"


def parse_dataset_option(text: str) -> tuple[str, Path]:
    """``"tid2013=DIR"`` -> ``("tid2013", Path("DIR"))``; also ``csv:FILE`` and ``csv=FILE``.

    The kind is read in any case (``KADID-10k=DIR`` too); ``KIND:PATH`` is accepted for every
    kind. :class:`InputError` naming the option for an unknown kind, a missing separator or an
    empty path.
    """
    raw = str(text)
    cut = [i for i in (raw.find("="), raw.find(":")) if i >= 0]
    if not cut:
        raise InputError(f"--dataset {raw}: give KIND=PATH, one of {_EXPECTED}")
    i = min(cut)
    word, path = raw[:i].strip(), raw[i + 1:].strip()
    kind = _canonical_kind(word)
    if kind is None:
        raise InputError(f"--dataset {raw}: unknown dataset {word!r} (expected {_EXPECTED})")
    if not path:
        what = "FILE" if kind == "csv" else "DIR"
        raise InputError(f"--dataset {raw}: empty path (give {kind}{':' if kind == 'csv' else '='}{what})")
    return kind, Path(path).expanduser()


# ---------------------------------------------------------------- loading

def load_mos_dataset(kind: str, path: str | os.PathLike, *, dmos: bool | None = None,
                     workers: int | None = None) -> MOSDataset:
    """Load and validate the MOS database ``kind`` (one of :data:`DATASET_KINDS`) at ``path``.

    ``path``: the folder the official archive unpacked into; for ``csv``, the CSV file.
    ``dmos``: for ``csv``, True when the scores are DMOS-like (lower = better), False for MOS,
    None to let the file's ``dmos`` column decide (MOS without one); for the other kinds the
    direction is the database's, and a contradicting ``dmos`` is an error. ``workers``: threads
    for the header checks (default: one per CPU, at most 16). Raises :class:`InputError`.
    """
    canonical = _canonical_kind(kind)
    if canonical is None:
        raise InputError(f"unknown dataset kind {kind!r} (expected one of {', '.join(DATASET_KINDS)})")
    path = Path(path).expanduser()
    if canonical == "csv":
        return _load_csv(path, dmos, workers)
    if not path.is_dir():
        what = "is a file, not a folder" if path.exists() else "folder does not exist"
        raise InputError(f"{canonical} {path}: {what} (give the folder the {canonical} archive unpacked into)")
    loader = {"tid2013": _read_tid2013, "kadid10k": _read_kadid10k, "live": _read_live, "csiq": _read_csiq,
              "pipal": _read_pipal}[canonical]
    finder = _Finder(path)
    listing = loader(path, finder, f"{canonical} {path}")
    if dmos is not None and bool(dmos) == listing.higher_is_better:
        direction = "higher" if listing.higher_is_better else "lower"
        raise InputError(f"{canonical} {path}: its scores are {direction} = better; dmos={dmos} contradicts that "
                         "(the dmos option is for csv datasets)")
    return _finish(canonical, canonical, path, finder, listing, OFFICIAL_COUNTS[canonical], workers)


@dataclass
class _Listing:
    """What a loader read from the score file(s), before the files are checked."""

    refs: list[str]  # per pair, the reference as a path relative to the root (as the layout names it)
    dists: list[str]  # per pair, the distorted image, relative to the root
    scores: list[float]
    distortion: list[str]
    level: list[int]
    score_files: list[Path]  # every file whose bytes the fingerprint covers
    listed_in: str  # how errors name the score file(s)
    higher_is_better: bool
    groups: list[str] | None = None


class _Finder:
    """Files under ``root`` by relative path, each part matched exactly or else without regard to case."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._dirs: dict[Path, dict[str, str] | None] = {}

    def _entries(self, folder: Path) -> dict[str, str] | None:
        if folder not in self._dirs:
            try:
                with os.scandir(folder) as it:
                    names = [e.name for e in it]
            except OSError:
                self._dirs[folder] = None
            else:
                table = {n.lower(): n for n in sorted(names, reverse=True)}  # deterministic if two differ by case
                table.update({n: n for n in names})  # exact names first
                self._dirs[folder] = table
        return self._dirs[folder]

    def find(self, rel: str) -> Path | None:
        """The existing path that ``rel`` names (``/`` or ``\\`` separated), or None."""
        given = Path(rel)
        if given.is_absolute():
            current, parts = Path(given.anchor), list(given.parts[1:])
        else:
            current, parts = self.root, [p for p in re.split(r"[\\/]+", rel) if p not in ("", ".")]
        for part in parts:
            if part == "..":
                current = current.parent
                continue
            table = self._entries(current)
            if table is None:
                return None
            name = table.get(part) or table.get(part.lower())
            if name is None:
                return None
            current = current / name
        return current

    def find_file(self, rel: str) -> Path | None:
        found = self.find(rel)
        return found if found is not None and found.is_file() else None


def _fail(name: str, what: str, items: Sequence[str]) -> InputError:
    """``"<name>: <n> <what> (first: <item>)"``; ``what`` may use ``{n}`` for the count."""
    text = what.format(n=len(items)) if "{n}" in what else f"{len(items)} {what}"
    return InputError(f"{name}: {text} (first: {items[0]})")


def _number(text: str) -> float | None:
    """``float(text)`` when that is a finite number, else None."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _read_text(path: Path, name: str) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{name}: cannot read {path.name} ({exc.strerror or type(exc).__name__})") from None
    return data.decode("utf-8-sig", errors="replace")  # BOM dropped; these files are ASCII


def _require(finder: _Finder, rel: str, name: str, hint: str) -> Path:
    found = finder.find_file(rel)
    if found is None:
        raise InputError(f"{name}: score file {rel} is missing ({hint})")
    return found


def _line_text(line: str) -> str:
    line = line.strip()
    return repr(line if len(line) <= 60 else line[:57] + "...")


def _read_tid2013(root: Path, finder: _Finder, name: str) -> _Listing:
    """``mos_with_names.txt``: ``<MOS> <iRR_TT_L.bmp>`` per line; references ``reference_images/IRR.BMP``."""
    score_file = _require(finder, "mos_with_names.txt", name,
                          "expected the TID2013 archive unpacked here: mos_with_names.txt, reference_images/, "
                          "distorted_images/")
    pattern = re.compile(r"^i(\d\d)_(\d\d)_(\d)\.bmp$", re.IGNORECASE)
    out = _Listing([], [], [], [], [], [score_file], "mos_with_names.txt", True)
    bad_lines, bad_scores = [], []
    for number, line in enumerate(_read_text(score_file, name).splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        match = pattern.match(fields[-1]) if len(fields) == 2 else None
        if match is None or not 1 <= int(match[2]) <= len(TID2013_DISTORTIONS):
            bad_lines.append(f"line {number}: {_line_text(line)}")
            continue
        score = _number(fields[0])
        if score is None:
            bad_scores.append(f"line {number}: {_line_text(line)}")
            continue
        ref, kind, level = int(match[1]), int(match[2]), int(match[3])
        out.refs.append(f"reference_images/I{ref:02d}.BMP")
        out.dists.append(f"distorted_images/{fields[1]}")
        out.scores.append(score)
        out.distortion.append(TID2013_DISTORTIONS[kind - 1])
        out.level.append(level)
    if bad_lines:
        raise _fail(name, "lines of mos_with_names.txt are not '<MOS> iRR_TT_L.bmp' (TT in 01..24)", bad_lines)
    if bad_scores:
        raise _fail(name, "scores in mos_with_names.txt are not finite numbers", bad_scores)
    return out


def _csv_rows(path: Path, name: str, required: tuple[str, ...], shown: str) -> tuple[dict[str, int], list[list[str]]]:
    """Header (lower-cased column name -> position) and the data rows (line numbers from 2) of a CSV."""
    rows = list(csv.reader(io.StringIO(_read_text(path, name))))
    if not rows:
        raise InputError(f"{name}: {shown} is empty (expected a header: {','.join(required)})")
    header = {h.strip().lower(): i for i, h in enumerate(rows[0])}
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(f"{name}: {shown} has no column {', '.join(missing)} "
                         f"(header: {','.join(rows[0])}; expected {','.join(required)})")
    return header, rows[1:]


def _cell(row: list[str], header: dict[str, int], column: str) -> str:
    i = header.get(column)
    return row[i].strip() if i is not None and i < len(row) else ""


def _read_kadid10k(root: Path, finder: _Finder, name: str) -> _Listing:
    """``dmos.csv`` (``dist_img,ref_img,dmos,var``); images in ``images/``."""
    score_file = _require(finder, "dmos.csv", name,
                          "expected the KADID-10k archive unpacked here: dmos.csv, images/")
    header, rows = _csv_rows(score_file, name, ("dist_img", "ref_img", "dmos"), "dmos.csv")
    pattern = re.compile(r"^i\d+_(\d\d)_(\d\d)\.png$", re.IGNORECASE)
    out = _Listing([], [], [], [], [], [score_file], "dmos.csv", True)
    bad_scores, bad_names = [], []
    for number, row in enumerate(rows, 2):
        if not any(c.strip() for c in row):
            continue
        dist, ref = _cell(row, header, "dist_img"), _cell(row, header, "ref_img")
        score = _number(_cell(row, header, "dmos"))
        if not dist or not ref:
            bad_names.append(f"line {number}: {_line_text(','.join(row))}")
            continue
        if score is None:
            bad_scores.append(f"line {number}: {_line_text(','.join(row))}")
            continue
        match = pattern.match(Path(dist).name)
        kind = int(match[1]) if match else 0
        out.refs.append(f"images/{ref}")
        out.dists.append(f"images/{dist}")
        out.scores.append(score)
        out.distortion.append(KADID10K_DISTORTIONS[kind - 1] if 1 <= kind <= len(KADID10K_DISTORTIONS) else "")
        out.level.append(int(match[2]) if match else 0)
    if bad_names:
        raise _fail(name, "lines of dmos.csv lack dist_img or ref_img", bad_names)
    if bad_scores:
        raise _fail(name, "scores in dmos.csv are not finite numbers", bad_scores)
    return out


def _load_mat(path: Path, name: str) -> dict:
    from scipy.io import loadmat

    try:
        return loadmat(path)
    except Exception as exc:  # noqa: BLE001 - scipy raises several types for a damaged file
        raise InputError(f"{name}: {path.name} is not a readable MATLAB file ({exc.__class__.__name__})") from None


def _read_live(root: Path, finder: _Finder, name: str) -> _Listing:
    """LIVE Release 2: ``dmos.mat`` (``dmos``, ``orgs``; or ``dmos_realigned.mat``: ``dmos_new``, ``orgs``),
    in the order jp2k, jpeg, wn, gblur, fastfading, ``imgN.bmp`` within each; references from ``info.txt``."""
    found = [(name_, var, p) for name_, var in (("dmos.mat", "dmos"), ("dmos_realigned.mat", "dmos_new"))
             if (p := finder.find_file(name_)) is not None]
    if not found:
        raise InputError(f"{name}: score file dmos.mat (or dmos_realigned.mat) is missing (expected LIVE "
                         "Release 2 unpacked here: dmos.mat, refimgs/, jp2k/, jpeg/, wn/, gblur/, fastfading/)")
    mat_name, variable, mat_path = found[0]
    mat = _load_mat(mat_path, name)
    missing = [v for v in (variable, "orgs") if v not in mat]
    if missing:
        raise InputError(f"{name}: {mat_name} has no variable {' or '.join(missing)} (has: "
                         f"{', '.join(k for k in mat if not k.startswith('__'))})")
    try:
        values = np.asarray(mat[variable], dtype=np.float64).ravel()
        orgs = np.asarray(mat["orgs"], dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise InputError(f"{name}: {mat_name}: {variable} and orgs must be numeric arrays") from None
    if len(values) != len(orgs):
        raise InputError(f"{name}: {mat_name}: {variable} has {len(values)} values but orgs {len(orgs)}")
    out = _Listing([], [], [], [], [], [mat_path], mat_name, False)
    info: dict[str, tuple[str, list[tuple[int, str, int]]]] = {}  # folder -> (info name, [(N, ref, line)])
    bad_lines = []
    for folder, _, _ in LIVE_FOLDERS:
        directory = finder.find(folder)
        if directory is None or not directory.is_dir():
            continue  # a folder left out: its pairs are not listed (a subset)
        info_rel = f"{directory.name}/info.txt"
        info_path = finder.find_file(info_rel)
        if info_path is None:
            raise InputError(f"{name}: {info_rel} is missing (it names the reference of each image in {folder}/)")
        out.score_files.append(info_path)
        entries = []
        for number, line in enumerate(_read_text(info_path, name).splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            match = re.match(r"^img(\d+)\.bmp$", fields[1], re.IGNORECASE) if len(fields) >= 2 else None
            if match is None or int(match[1]) < 1:
                bad_lines.append(f"{info_rel} line {number}: {_line_text(line)}")
                continue
            entries.append((int(match[1]), fields[0], number))
        info[folder] = (info_rel, entries)
    if bad_lines:
        raise _fail(name, "lines of info.txt are not '<reference> imgN.bmp [parameter]'", bad_lines)
    if not info:
        raise InputError(f"{name}: none of the folders {', '.join(f for f, _, _ in LIVE_FOLDERS)} is here")
    # The complete mat file holds the official blocks; a smaller one (a fixture, a trimmed copy) holds, per
    # folder, as many values as the largest imgN its info.txt names.
    official = len(values) == LIVE_TOTAL
    sizes = [n if official else max((e[0] for e in info.get(folder, ("", []))[1]), default=0)
             for folder, n, _ in LIVE_FOLDERS]
    if sum(sizes) != len(values):
        raise InputError(f"{name}: {mat_name} holds {len(values)} scores, but the info.txt files number "
                         f"{sum(sizes)} images (largest imgN per folder: "
                         f"{', '.join(f'{f} {s}' for (f, _, _), s in zip(LIVE_FOLDERS, sizes))})")
    offsets = np.cumsum([0] + sizes)
    beyond, bad_scores = [], []
    for k, (folder, _, distortion) in enumerate(LIVE_FOLDERS):
        if folder not in info:
            continue
        info_rel, entries = info[folder]
        directory_name = info_rel.split("/")[0]
        for n, ref, number in sorted(entries):
            if n > sizes[k]:
                beyond.append(f"{info_rel} line {number}: img{n}.bmp (the folder has {sizes[k]})")
                continue
            index = int(offsets[k]) + n - 1
            if orgs[index] == 1:  # an undistorted original: not a pair
                continue
            if not math.isfinite(values[index]):
                bad_scores.append(f"{directory_name}/img{n}.bmp ({values[index]})")
                continue
            out.refs.append(f"refimgs/{ref}")
            out.dists.append(f"{directory_name}/img{n}.bmp")
            out.scores.append(float(values[index]))
            out.distortion.append(distortion)
            out.level.append(0)
    if beyond:
        raise _fail(name, "images in info.txt are numbered beyond their folder's block in dmos.mat", beyond)
    if bad_scores:
        raise _fail(name, f"scores in {mat_name} are not finite numbers", bad_scores)
    return out


def _plain_number_text(text: str) -> str:
    """``"1600.0"`` (a spreadsheet's number) -> ``"1600"``; other text unchanged."""
    return text[:-2] if re.fullmatch(r"\d+\.0", text) else text


def _csiq_rows(root: Path, finder: _Finder, name: str) -> tuple[Path, str, dict[str, int], list[list[str]]]:
    """The score table: a CSV export if there is one, else the xlsx through openpyxl."""
    for candidate in CSIQ_SCORE_FILES:
        path = finder.find_file(candidate)
        if path is not None:
            header, rows = _csv_rows(path, name, ("image", "dst_lev", "dmos"), path.name)
            return path, path.name, header, rows
    xlsx = finder.find_file(CSIQ_XLSX)
    hint = (f"export the all_by_image sheet of {CSIQ_XLSX} as CSV to csiq_dmos.csv (columns image, dst_idx, "
            "dst_type, dst_lev, dmos_std, dmos)")
    if xlsx is None:
        raise InputError(f"{name}: score file csiq_dmos.csv is missing (expected CSIQ unpacked here: src_imgs/, "
                         f"dst_imgs/, and the scores: {hint})")
    try:
        import openpyxl
    except ImportError:
        raise InputError(f"{name}: reading {CSIQ_XLSX} needs openpyxl, which is not installed: "
                         f"pip install openpyxl, or {hint}") from None
    try:
        book = openpyxl.load_workbook(xlsx, read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - openpyxl raises several types for a damaged file
        raise InputError(f"{name}: {CSIQ_XLSX} is not a readable workbook ({exc.__class__.__name__})") from None
    sheets = {s.lower(): s for s in book.sheetnames}
    if "all_by_image" not in sheets:
        raise InputError(f"{name}: {CSIQ_XLSX} has no sheet all_by_image (sheets: {', '.join(book.sheetnames)})")
    sheet = book[sheets["all_by_image"]]
    table = [["" if v is None else str(v) for v in row] for row in sheet.iter_rows(values_only=True)]
    for i, row in enumerate(table):  # the header row is the first that names the columns
        header = {h.strip().lower(): j for j, h in enumerate(row)}
        if {"image", "dst_lev", "dmos"} <= set(header):
            return xlsx, f"{CSIQ_XLSX} (all_by_image)", header, table[i + 1:]
    raise InputError(f"{name}: {CSIQ_XLSX} sheet all_by_image has no header row with image, dst_lev, dmos")


def _read_csiq(root: Path, finder: _Finder, name: str) -> _Listing:
    """CSIQ: ``src_imgs/<image>.png``, ``dst_imgs/<type>/<image>.<TAG>.<lev>.png``; DMOS from the score table."""
    score_file, shown, header, rows = _csiq_rows(root, finder, name)
    if "dst_idx" not in header and "dst_type" not in header:
        raise InputError(f"{name}: {shown} has neither a dst_idx nor a dst_type column")
    out = _Listing([], [], [], [], [], [score_file], shown, False)
    bad_rows, bad_scores = [], []
    for number, row in enumerate(rows, 2):
        if not any(c.strip() for c in row):
            continue
        image = _plain_number_text(_cell(row, header, "image"))
        index_text = _plain_number_text(_cell(row, header, "dst_idx"))
        type_key = re.sub(r"[^a-z0-9]", "", _cell(row, header, "dst_type").lower())
        kind = int(index_text) if index_text.isdigit() else _CSIQ_TYPE_NAMES.get(type_key, 0)
        level_text = _plain_number_text(_cell(row, header, "dst_lev"))
        if not image or kind not in CSIQ_TYPES or not level_text.isdigit():
            bad_rows.append(f"line {number}: {_line_text(','.join(row))}")
            continue
        score = _number(_cell(row, header, "dmos"))
        if score is None:
            bad_scores.append(f"line {number}: {_line_text(','.join(row))}")
            continue
        folder, tag, distortion = CSIQ_TYPES[kind]
        out.refs.append(f"src_imgs/{image}.png")
        out.dists.append(f"dst_imgs/{folder}/{image}.{tag}.{int(level_text)}.png")
        out.scores.append(score)
        out.distortion.append(distortion)
        out.level.append(int(level_text))
    if bad_rows:
        raise _fail(name, f"rows of {shown} lack an image, a known dst_idx/dst_type or a dst_lev", bad_rows)
    if bad_scores:
        raise _fail(name, f"scores in {shown} are not finite numbers", bad_scores)
    return out


def _pipal_distorted(root: Path, finder: _Finder) -> dict[str, str]:
    """Lower-case file name -> path relative to the root of every distorted image: in ``Train_Dist/``,
    in its subfolders, or in ``Distortion_*/`` folders (some copies split the images into those)."""
    folders = []
    dist = finder.find("Train_Dist")
    for base in ([dist] if dist is not None and dist.is_dir() else []) + [root]:
        with os.scandir(base) as it:
            subfolders = sorted(e.name for e in it if e.is_dir() and (base != root or e.name.lower().startswith(
                "distortion")))
        folders += ([base] if base != root else []) + [base / s for s in subfolders]
    found: dict[str, str] = {}
    for folder in folders:
        with os.scandir(folder) as it:
            for e in sorted(it, key=lambda e: e.name):
                if e.is_file():
                    found.setdefault(e.name.lower(), Path(e.path).relative_to(root).as_posix())
    return found


def _read_pipal(root: Path, finder: _Finder, name: str) -> _Listing:
    """PIPAL training part: ``Train_Label/A0001.txt`` lines ``A0001_00_00.bmp,1439.4``; ``Train_Ref/``,
    ``Train_Dist/`` (or ``Distortion_1/``..: see :func:`_pipal_distorted`)."""
    labels = finder.find("Train_Label")
    if labels is None or not labels.is_dir():
        raise InputError(f"{name}: score folder Train_Label/ is missing (expected PIPAL's training part unpacked "
                         "here: Train_Ref/, Train_Dist/, Train_Label/)")
    files = sorted(p for p in labels.iterdir() if p.is_file() and p.suffix.lower() == ".txt")
    if not files:
        raise InputError(f"{name}: no score files (*.txt) in {labels.name}/")
    located = _pipal_distorted(root, finder)
    pattern = re.compile(r"^(a\d+)_(\d+)_(\d+)\.bmp$", re.IGNORECASE)
    out = _Listing([], [], [], [], [], list(files), f"{labels.name}/*.txt", True)
    bad_lines, bad_scores = [], []
    for path in files:
        for number, line in enumerate(_read_text(path, name).splitlines(), 1):
            if not line.strip():
                continue
            fields = [f.strip() for f in line.split(",")]
            match = pattern.match(fields[0]) if len(fields) == 2 else None
            if match is None:
                bad_lines.append(f"{labels.name}/{path.name} line {number}: {_line_text(line)}")
                continue
            score = _number(fields[1])
            if score is None:
                bad_scores.append(f"{labels.name}/{path.name} line {number}: {_line_text(line)}")
                continue
            out.refs.append(f"Train_Ref/{match[1]}.bmp")
            out.dists.append(located.get(fields[0].lower(), f"Train_Dist/{fields[0]}"))
            out.scores.append(score)
            # The first number is the distortion group (00..06), the second a distortion within it, not a
            # strength: the level stays 0 (unknown).
            out.distortion.append(f"group {match[2]}")
            out.level.append(0)
    if bad_lines:
        raise _fail(name, "lines of the Train_Label files are not 'AXXXX_GG_NN.bmp,<score>'", bad_lines)
    if bad_scores:
        raise _fail(name, "scores in the Train_Label files are not finite numbers", bad_scores)
    return out


#: Words of the ``dmos`` column besides the boolean ones (:func:`percepmetric.options.parse_bool`):
#: the direction by name, and an empty cell for a MOS.
_DIRECTION_WORDS = {"dmos": True, "mos": False, "": False}


def _dmos_flag(cell: str) -> bool | None:
    """A cell of the ``dmos`` column -> True (DMOS), False (MOS), or None when it is neither."""
    word = cell.strip().lower()
    return _DIRECTION_WORDS[word] if word in _DIRECTION_WORDS else parse_bool(word)


def _load_csv(path: Path, dmos: bool | None, workers: int | None) -> MOSDataset:
    """The generic CSV: ``reference,distorted,score`` plus optional ``group``, ``type``, ``level``, ``dmos``."""
    name = f"csv {path}"
    if path.is_dir():
        raise InputError(f"{name}: is a folder; give the CSV file (csv:FILE)")
    if not path.is_file():
        raise InputError(f"{name}: no such file")
    header, rows = _csv_rows(path, name, ("reference", "distorted", "score"), path.name)
    out = _Listing([], [], [], [], [], [path], path.name, True, [] if "group" in header else None)
    flags: list[tuple[bool, str]] = []
    bad_rows, bad_scores, bad_flags = [], [], []
    for number, row in enumerate(rows, 2):
        if not any(c.strip() for c in row):
            continue
        ref, dist = _cell(row, header, "reference"), _cell(row, header, "distorted")
        if not ref or not dist:
            bad_rows.append(f"line {number}: {_line_text(','.join(row))}")
            continue
        score = _number(_cell(row, header, "score"))
        level = _cell(row, header, "level") or "0"
        if score is None or not re.fullmatch(r"-?\d+", level):
            bad_scores.append(f"line {number}: {_line_text(','.join(row))}")
            continue
        if "dmos" in header:
            cell = _cell(row, header, "dmos")
            flag = _dmos_flag(cell)
            if flag is None:
                bad_flags.append(f"line {number}: {cell.lower()!r}")
                continue
            flags.append((flag, f"line {number}"))
        out.refs.append(ref)
        out.dists.append(dist)
        out.scores.append(score)
        out.distortion.append(_cell(row, header, "type"))
        out.level.append(int(level))
        if out.groups is not None:
            out.groups.append(_cell(row, header, "group") or ref)
    if bad_rows:
        raise _fail(name, "rows lack a reference or distorted path", bad_rows)
    if bad_scores:
        raise _fail(name, "rows have a score that is not a finite number (or a level that is not an integer)",
                    bad_scores)
    if bad_flags:
        raise _fail(name, f"dmos values are not {'/'.join(TRUE_WORDS)} or {'/'.join(FALSE_WORDS)}", bad_flags)
    column = None
    if flags:
        kinds = {f for f, _ in flags}
        if len(kinds) > 1:
            first_other = next(where for f, where in flags if f != flags[0][0])
            raise InputError(f"{name}: the dmos column mixes true and false; one file has one direction "
                             f"(first change: {first_other})")
        column = kinds.pop()
    if dmos is not None and column is not None and bool(dmos) != column:
        raise InputError(f"{name}: dmos={bool(dmos)} was given but the file's dmos column says {column}; "
                         "remove one of them")
    out.higher_is_better = not (bool(dmos) if dmos is not None else bool(column))
    return _finish("csv", path.stem, path.parent, _Finder(path.parent), out, None, workers)


# ---------------------------------------------------------------- checks common to every kind

def _probe(path: Path) -> tuple[int, int, int, str] | str:
    """``(width, height, bytes, digest)``: the size from the file's header (no pixel decoding),
    its length, and the BLAKE2b digest of its bytes (hex, 16 bytes), from one read of the file;
    or the name of the error that opening it raised."""
    from PIL import Image

    try:
        with open(path, "rb") as handle:
            digest, size = file_digest(handle)
            handle.seek(0)
            with Image.open(handle) as img:
                width, height = img.size
    except Exception as exc:  # noqa: BLE001 - anything PIL cannot open is "not a readable image"
        return exc.__class__.__name__
    return width, height, size, digest


def _probe_all(paths: list[Path], workers: int | None) -> list[tuple[int, int, int, str] | str]:
    """:func:`_probe` of every path, in threads (reading is mostly file-system waiting, and
    hashlib lets other threads run while it hashes)."""
    if len(paths) < 64:
        return [_probe(p) for p in paths]
    chunks = [paths[k : k + 256] for k in range(0, len(paths), 256)]
    with ThreadPoolExecutor(max_workers=workers or min(16, usable_cpus())) as pool:
        return [r for chunk in pool.map(lambda c: [_probe(p) for p in c], chunks) for r in chunk]


def _finish(kind: str, name: str, root: Path, finder: _Finder, listing: _Listing, official_count: int | None,
            workers: int | None) -> MOSDataset:
    """Check the files ``listing`` names (module docstring), fingerprint them, build the dataset."""
    label = f"{kind} {listing.score_files[0] if kind == 'csv' else root}"
    if not listing.dists:
        raise InputError(f"{label}: {listing.listed_in} lists no pairs")
    seen: set[str] = set()
    twice = []
    for rel in listing.dists:
        key = rel.lower()
        if key in seen:
            twice.append(rel)
        seen.add(key)
    if twice:
        raise _fail(label, f"distorted images are listed more than once in {listing.listed_in}", twice)
    dist_paths = [finder.find_file(rel) for rel in listing.dists]
    missing = [rel for rel, p in zip(listing.dists, dist_paths) if p is None]
    if missing:
        raise _fail(label, f"distorted images listed in {listing.listed_in} are missing", missing)
    ref_found: dict[str, Path | None] = {rel: finder.find_file(rel) for rel in dict.fromkeys(listing.refs)}
    missing = [rel for rel, p in ref_found.items() if p is None]
    if missing:
        raise _fail(label, f"reference images named in {listing.listed_in} are missing", missing)
    ref_rel = {p: rel for rel, p in ref_found.items() if p is not None}
    references = sorted(ref_rel)  # unique files (two spellings of one file are one reference)
    position = {p: i for i, p in enumerate(references)}
    index_of = {rel: position[p] for rel, p in ref_found.items() if p is not None}
    reference_index = np.array([index_of[rel] for rel in listing.refs], dtype=np.int64)
    distorted = [p for p in dist_paths if p is not None]

    probed = _probe_all(references + distorted, workers)
    names = [ref_rel[p] for p in references] + listing.dists
    unreadable = [f"{rel} ({r})" for rel, r in zip(names, probed) if isinstance(r, str)]
    if unreadable:
        raise _fail(label, "listed files are not readable images", unreadable)
    sizes = [(r[0], r[1]) if not isinstance(r, str) else (0, 0) for r in probed]
    n_refs = len(references)
    odd = [f"{rel} is {sizes[n_refs + i][0]}x{sizes[n_refs + i][1]}, {ref_rel[references[j]]} is "
           f"{sizes[j][0]}x{sizes[j][1]}"
           for i, (rel, j) in enumerate(zip(listing.dists, reference_index))
           if sizes[n_refs + i] != sizes[j]]
    if odd:
        raise _fail(label, "distorted images differ in size from their reference", odd)

    h = hashlib.sha1(f"mos-v{FINGERPRINT_VERSION}|{kind}".encode())
    for path in listing.score_files:
        data = path.read_bytes()
        h.update(f"|{path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name}:{len(data)}:"
                 .encode())
        h.update(data)
    h.update("".join(f"|{rel}:{r[2]}:{r[3]}" for rel, r in zip(names, probed) if not isinstance(r, str)).encode())

    group_index = None
    if listing.groups is not None:
        labels = sorted(set(listing.groups))
        lookup = {g: i for i, g in enumerate(labels)}
        group_index = np.array([lookup[g] for g in listing.groups], dtype=np.int64)
    return MOSDataset(
        name=name, kind=kind, root=root.absolute(),
        references=tuple(p.absolute() for p in references),
        reference_index=reference_index,
        distorted=tuple(p.absolute() for p in distorted),
        scores=np.array(listing.scores, dtype=np.float64),
        higher_is_better=listing.higher_is_better,
        distortion=tuple(listing.distortion),
        level=np.array(listing.level, dtype=np.int64),
        official_count=official_count,
        fingerprint=h.hexdigest()[:20],
        synthetic=(root / SYNTHETIC_MARKER).is_file(),
        group_index=group_index,
    )

