"""Synthetic MOS sets in the layouts of the real databases, and the embedded MOS set.

**Synthetic, not human judgments.** The images are crops of scikit-image's bundled photos
(:func:`percepmetric.data.fixtures.photo_patches`) with real distortions applied by
:func:`percepmetric.data.fixtures.distort` (Gaussian noise, Gaussian blur, JPEG, a
photometric change); each "score" is a function of the distortion's strength alone:

    quality q = 1 - w_t * s + e,   s = 0.15 + 0.75 (level - 1) / 4  (levels 1..5),
    w_t = 1.0, 0.9, 0.8, 0.7 for the four types,   e uniform in [-0.02, 0.02] (seeded)

so within one reference and type the score is strictly monotone in the level (a level step
moves q by at least 0.13, the noise by at most 0.04), and the types differ in slope. Each
database's scale is an affine map of q (DMOS ones decrease with it): TID2013 ``9 q``,
KADID-10k ``1 + 4 q``, LIVE ``100 (1 - q)``, CSIQ ``1 - q``, PIPAL ``1000 + 800 q``, CSV ``1 + 4 q``.
Every set holds the :data:`percepmetric.data.mos.SYNTHETIC_MARKER` file, so its loader marks it
``synthetic``. Output is deterministic in the arguments.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .fixtures import distort, photo_patches
from .mos import CSIQ_TYPES, DATASET_KINDS, LIVE_FOLDERS, SYNTHETIC_MARKER, MOSDataset, load_mos_dataset

#: The four distortions of the fixtures (kinds of :func:`percepmetric.data.fixtures.distort`) and their slopes.
FIXTURE_TYPES = ("noise", "blur", "jpeg", "photometric")
_SLOPES = (1.0, 0.9, 0.8, 0.7)
MAX_LEVEL = 5

#: Each database's code for the four types (TID2013 and KADID-10k type numbers, CSIQ dst_idx,
#: LIVE folder, PIPAL group); the photometric change stands in for contrast / brightness.
_CODES: dict[str, tuple] = {
    "tid2013": (1, 8, 10, 17),  # additive gaussian noise, gaussian blur, jpeg compression, contrast change
    "kadid10k": (11, 1, 10, 16),  # white noise, gaussian blur, jpeg, brighten
    "csiq": (1, 5, 2, 6),  # awgn, blur, jpeg, contrast
    "live": ("wn", "gblur", "jpeg", "fastfading"),  # the photometric change fills the fast-fading folder
    "pipal": (0, 1, 2, 3),
    "csv": FIXTURE_TYPES,
}

MARKER_TEXT = """\
SYNTHETIC MOS SET, NOT HUMAN JUDGMENTS.
Made by percepmetric.data.mos_fixtures ({what}) from scikit-image's bundled photos,
in the layout of {layout}. Scores are a function of the distortion strength, not opinions:
they test the software, not how human-like a metric is.
"""

EMBEDDED_VERSION = 3  # bump when the embedded set's output changes (2: named synthetic-mos; 3: 176 px and up)
EMBEDDED_CSV = "synthetic-mos.csv"  # its stem names the dataset in every table: synthetic
#: The embedded set: (width, height) of each of its 8 references, and its strengths (levels).
#: 176x176 and up, so that every registered metric runs on it (IW-SSIM needs 176, VIF 72).
EMBEDDED_SIZES = ((176, 176), (192, 176), (176, 192), (208, 176), (176, 208), (192, 192), (208, 192), (208, 208))
EMBEDDED_LEVELS = (1, 3, 5)


def _strength(level: int) -> float:
    return 0.15 + 0.75 * (level - 1) / (MAX_LEVEL - 1)


def _quality(type_index: np.ndarray, level: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``q = 1 - w_t s + e`` (module docstring) for arrays of type indices and levels."""
    s = 0.15 + 0.75 * (level - 1) / (MAX_LEVEL - 1)
    return 1.0 - np.asarray(_SLOPES)[type_index] * s + rng.uniform(-0.02, 0.02, len(level))


def _references(sizes: list[tuple[int, int]], seed: int) -> list[np.ndarray]:
    """One photo crop of each ``(width, height)``, uint8 ``(h, w, 3)``."""
    side = max(max(w, h) for w, h in sizes)
    patches = photo_patches(len(sizes), side, seed=seed)
    return [np.ascontiguousarray(p[:h, :w]) for p, (w, h) in zip(patches, sizes)]


def _distorted(refs: list[np.ndarray], type_index: int, level: int, seed: int) -> list[np.ndarray]:
    """Each reference under one fixture type at one level (seeded; one batched call per shape)."""
    out: list[np.ndarray] = [np.empty(0, np.uint8)] * len(refs)
    shapes = sorted({r.shape for r in refs})
    for shape in shapes:
        idx = [i for i, r in enumerate(refs) if r.shape == shape]
        batch = distort(np.stack([refs[i] for i in idx]), FIXTURE_TYPES[type_index], _strength(level),
                        seed + 101 * type_index)
        for k, i in enumerate(idx):
            out[i] = batch[k]
    return out


def _save(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)  # format from the suffix: .bmp / .png


def _plan(references: int, distortions: int) -> list[tuple[int, int]]:
    """The (type index, level) of each of a reference's distortions: the four types at level 1, then at 2, ..."""
    if not 1 <= distortions <= len(FIXTURE_TYPES) * MAX_LEVEL:
        raise ValueError(f"distortions must be in 1..{len(FIXTURE_TYPES) * MAX_LEVEL}, got {distortions}")
    if references < 1:
        raise ValueError(f"references must be at least 1, got {references}")
    return [(j % len(FIXTURE_TYPES), j // len(FIXTURE_TYPES) + 1) for j in range(distortions)]


def make_mos_fixture(kind: str, directory: str | os.PathLike, *, references: int = 3, distortions: int = 4,
                     size: tuple[int, int] = (48, 40), seed: int = 0) -> Path:
    """Write a small synthetic set in the official layout of ``kind`` under ``directory``.

    ``references`` reference images of ``size`` = (width, height), each with ``distortions``
    distorted versions (the four types of :data:`FIXTURE_TYPES` at level 1, then at level 2, ...;
    at most 20). Returns what :func:`percepmetric.data.mos.load_mos_dataset` takes: the folder,
    or for ``csv`` the CSV file (``directory/scores.csv``). Deterministic in the arguments.
    """
    if kind not in DATASET_KINDS:
        raise ValueError(f"unknown kind {kind!r} (known: {', '.join(DATASET_KINDS)})")
    plan = _plan(references, distortions)
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    refs = _references([tuple(size)] * references, seed)  # type: ignore[list-item]
    quality = _quality(np.array([t for t, _ in plan] * references), np.array([lv for _, lv in plan] * references),
                       rng).reshape(references, len(plan))
    images = {(t, lv): _distorted(refs, t, lv, seed) for t, lv in plan}
    result = _WRITERS[kind](root, refs, plan, images, quality)
    (root / SYNTHETIC_MARKER).write_text(MARKER_TEXT.format(
        what=f"make_mos_fixture({kind!r}, references={references}, distortions={distortions}, size={tuple(size)}, "
             f"seed={seed})", layout=kind))
    return result


def _write_tid2013(root, refs, plan, images, quality) -> Path:
    lines = []
    for r, ref in enumerate(refs):
        _save(root / "reference_images" / f"I{r + 1:02d}.BMP", ref)  # the archive's mix of cases
        for j, (t, lv) in enumerate(plan):
            name = f"i{r + 1:02d}_{_CODES['tid2013'][t]:02d}_{lv}.bmp"
            _save(root / "distorted_images" / name, images[t, lv][r])
            lines.append(f"{9 * quality[r, j]:.5f} {name}")
    (root / "mos_with_names.txt").write_bytes(("\r\n".join(lines) + "\r\n").encode())  # Windows line ends
    return root


def _write_kadid10k(root, refs, plan, images, quality) -> Path:
    lines = ["dist_img,ref_img,dmos,var"]
    for r, ref in enumerate(refs):
        ref_name = f"I{r + 1:02d}.png"
        _save(root / "images" / ref_name, ref)
        for j, (t, lv) in enumerate(plan):
            name = f"I{r + 1:02d}_{_CODES['kadid10k'][t]:02d}_{lv:02d}.png"
            _save(root / "images" / name, images[t, lv][r])
            lines.append(f"{name},{ref_name},{1 + 4 * quality[r, j]:.2f},{0.5 + 0.1 * lv:.3f}")
    (root / "dmos.csv").write_text("\n".join(lines) + "\n")
    return root


def _write_live(root, refs, plan, images, quality) -> Path:
    """Each folder numbers its images img1..imgK; the first folder used also gets an undistorted
    original (orgs = 1, DMOS 0) that the loader must drop; info.txt lines are written in reverse."""
    from scipy.io import savemat

    names = [f"photo{r + 1}.bmp" for r in range(len(refs))]
    for name, ref in zip(names, refs):
        _save(root / "refimgs" / name, ref)
    dmos: list[float] = []
    orgs: list[int] = []
    refnames: list[str] = []
    first_used = next(f for f, _, _ in LIVE_FOLDERS if f in {_CODES["live"][t] for t, _ in plan})
    for folder, _, _ in LIVE_FOLDERS:
        entries = []  # (ref name, dmos, org, image)
        if folder == first_used:
            entries.append((names[0], 0.0, 1, refs[0]))
        for j, (t, lv) in enumerate(plan):
            if _CODES["live"][t] == folder:
                entries += [(names[r], 100 * (1 - quality[r, j]), 0, images[t, lv][r]) for r in range(len(refs))]
        (root / folder).mkdir(parents=True, exist_ok=True)
        lines = []
        for n, (ref_name, value, org, image) in enumerate(entries, 1):
            _save(root / folder / f"img{n}.bmp", image)
            lines.append(f"{ref_name} img{n}.bmp {value:.4f}")
            dmos.append(value)
            orgs.append(org)
            refnames.append(ref_name)
        (root / folder / "info.txt").write_text("\n".join(reversed(lines)) + ("\n" if lines else ""))
    savemat(root / "dmos.mat", {"dmos": np.array(dmos)[None], "orgs": np.array(orgs, dtype=np.float64)[None]})
    savemat(root / "refnames_all.mat", {"refnames_all": np.array(refnames, dtype=object)[None]})
    return root


def _write_csiq(root, refs, plan, images, quality) -> Path:
    type_text = {1: "noise", 2: "jpeg", 3: "jpeg 2000", 4: "1/f noise", 5: "blur", 6: "contrast"}
    lines = ["image,dst_idx,dst_type,dst_lev,dmos_std,dmos"]
    for r, ref in enumerate(refs):
        image = str(1600 + r)  # numeric names, as CSIQ's 1600.png
        _save(root / "src_imgs" / f"{image}.png", ref)
        for j, (t, lv) in enumerate(plan):
            code = _CODES["csiq"][t]
            folder, tag, _ = CSIQ_TYPES[code]
            _save(root / "dst_imgs" / folder / f"{image}.{tag}.{lv}.png", images[t, lv][r])
            lines.append(f"{image},{code},{type_text[code]},{lv},0.05,{1 - quality[r, j]:.5f}")
    (root / "csiq_dmos.csv").write_text("\n".join(lines) + "\n")
    return root


def _write_pipal(root, refs, plan, images, quality) -> Path:
    for r, ref in enumerate(refs):
        stem = f"A{r + 1:04d}"
        _save(root / "Train_Ref" / f"{stem}.bmp", ref)
        lines = []
        for j, (t, lv) in enumerate(plan):
            name = f"{stem}_{_CODES['pipal'][t]:02d}_{lv - 1:02d}.bmp"
            _save(root / "Train_Dist" / name, images[t, lv][r])
            lines.append(f"{name},{1000 + 800 * quality[r, j]:.4f}")
        (root / "Train_Label").mkdir(parents=True, exist_ok=True)
        (root / "Train_Label" / f"{stem}.txt").write_text("\n".join(lines) + "\n")
    return root


def _write_csv(root, refs, plan, images, quality, name: str = "scores.csv") -> Path:
    lines = ["reference,distorted,score,type,level"]
    for r, ref in enumerate(refs):
        ref_rel = f"reference/r{r + 1:02d}.png"
        _save(root / ref_rel, ref)
        for j, (t, lv) in enumerate(plan):
            rel = f"distorted/r{r + 1:02d}_{FIXTURE_TYPES[t]}_{lv}.png"
            _save(root / rel, images[t, lv][r])
            lines.append(f"{ref_rel},{rel},{1 + 4 * quality[r, j]:.4f},{FIXTURE_TYPES[t]},{lv}")
    (root / name).write_text("\n".join(lines) + "\n")
    return root / name


_WRITERS = {"tid2013": _write_tid2013, "kadid10k": _write_kadid10k, "live": _write_live, "csiq": _write_csiq,
            "pipal": _write_pipal, "csv": _write_csv}


# ---------------------------------------------------------------- the embedded set

def write_embedded_mos(directory: str | os.PathLike, seed: int = 0) -> Path:
    """Write the embedded MOS set into ``directory``; return the folder.

    8 references (176x176 to 208x208, :data:`EMBEDDED_SIZES`) x 12 distortions (the four
    :data:`FIXTURE_TYPES` at levels 1, 3, 5): 96 pairs, listed in :data:`EMBEDDED_CSV` with
    MOS ``1 + 4 q`` (module docstring), plus the synthetic marker.
    """
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    plan = [(t, lv) for lv in EMBEDDED_LEVELS for t in range(len(FIXTURE_TYPES))]
    refs = _references(list(EMBEDDED_SIZES), seed)
    rng = np.random.default_rng(seed)
    quality = _quality(np.array([t for t, _ in plan] * len(refs)), np.array([lv for _, lv in plan] * len(refs)),
                       rng).reshape(len(refs), len(plan))
    images = {(t, lv): _distorted(refs, t, lv, seed) for t, lv in plan}
    _write_csv(root, refs, plan, images, quality, name=EMBEDDED_CSV)
    (root / SYNTHETIC_MARKER).write_text(MARKER_TEXT.format(
        what=f"the embedded MOS set, version {EMBEDDED_VERSION}, seed={seed}", layout="percepmetric's generic CSV"))
    return root


def embedded_mos_root(cache_dir: str | os.PathLike | None = None, seed: int = 0) -> Path:
    """The folder of the embedded MOS set: written once under the cache folder
    (``mos-embedded-v<V>-s<seed>``, see :func:`percepmetric.data.fixtures.generated_once`), then reused."""
    from .fixtures import generated_once

    return generated_once(f"mos-embedded-v{EMBEDDED_VERSION}-s{seed}", lambda folder: write_embedded_mos(folder, seed),
                          lambda folder: (folder / SYNTHETIC_MARKER).is_file() and (folder / EMBEDDED_CSV).is_file(),
                          cache_dir)


def embedded_mos_dataset(cache_dir: str | os.PathLike | None = None) -> MOSDataset:
    """The small synthetic MOS set that ``percepmetric bench`` runs when given no dataset:
    :func:`embedded_mos_root` (written once under the cache folder) loaded through the generic
    CSV loader; ``synthetic`` is True."""
    return load_mos_dataset("csv", embedded_mos_root(cache_dir) / EMBEDDED_CSV)
