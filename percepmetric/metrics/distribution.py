"""Distances between *sets* of images, as generators are judged: FID, KID and precision/recall on
the 2048 pool features of the FID Inception v3 (:mod:`percepmetric.nets.inception`).

The other modules of :mod:`percepmetric.metrics` compare an image with its reference; these
compare two distributions, hence the module's name.

**Modes** (the input pipeline in front of the same network; each equals its library's):

======================  ======================================================  ==================
mode                    resize of the 0..255 image to 299x299                   scaling
======================  ======================================================  ==================
``clean``               clean-fid ``mode="clean"``: PIL bicubic (antialiased)   ``(x - 128) / 128``
                        of each channel as a float32 ``"F"`` image, clipped
                        to [0, 255] (``make_resizer("PIL", False, "bicubic")``)
``legacy_tensorflow``   TF1 ``resize_bilinear`` (``align_corners=False``,       ``(x - 128) / 128``
                        no half-pixel centres: source = dest * in / out, the
                        last row and column repeated), as NVIDIA's network
                        does inside (clean-fid's ``legacy_tensorflow``, the
                        original TTUR code, torch-fidelity, torchmetrics)
``legacy_pytorch``      pytorch-fid: ``F.interpolate(bilinear,                  ``x / 255 * 2 - 1``
                        align_corners=False)``, no antialiasing, clipped        (pytorch-fid's)
======================  ======================================================  ==================

Inputs (:data:`~percepmetric.set_features.ImageSet`): a folder (its images, recursively,
sorted: :func:`percepmetric.io.list_image_files`), a list of image files, or an (N, 3, H, W)
tensor: uint8 codes, or floats in [0, 1] (times 255, not rounded). Grey images are repeated to
three channels, alpha is dropped. Images of different sizes may be mixed in a folder. Features
are extracted by :mod:`percepmetric.set_features` (decoding ahead in threads, an optional
on-disk cache, torchrun). In place of a set, FID also takes its saved statistics
(:func:`save_statistics`: mean, covariance, count, mode and the network's hash), e.g. of a
training set computed once.

**FID** (Heusel et al. 2017): ``|mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2))``
with unbiased covariances; the last trace is :func:`trace_sqrt_product`, from the eigenvalues
of the symmetric ``S_a^(1/2) S_b S_a^(1/2)`` in float64 (no ``scipy.linalg.sqrtm``).
**KID** (Binkowski et al. 2018) as clean-fid: the unbiased MMD^2 with the kernel
``(x.y / d + 1)^3`` averaged over 100 random subsets of ``min(n_a, n_b, 1000)`` images of
each set (``.std``: the subsets' standard deviation, 0 when every subset holds all images).
**The interval** of FID (opt-in: ``interval=True``): :mod:`percepmetric.metrics.fid_interval`.
**Precision/recall** (Kynkäänniemi et al. 2019) as torch-fidelity's ``prc``: a sample is inside
a set's manifold when it lies within the distance from some member of the set to that member's
k-th nearest neighbour (k = 3); precision: the share of ``a`` (generated) inside ``b``'s
(real) manifold, recall: the share of ``b`` inside ``a``'s.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import InputError
from ..nets.inception import FEATURE_DIM, MODES, network_input, resize_tf1_bilinear
from ..set_features import ExtractionSettings, ImageSet, check_image_set, is_image_set, set_features
from .frechet import FeatureStats, feature_stats, frechet_distance, trace_sqrt_product

if TYPE_CHECKING:
    from .fid_interval import FIDInterval

__all__ = [
    "MODES",
    "FIDResult",
    "KIDResult",
    "PrecisionRecall",
    "FeatureStats",
    "SetComparison",
    "compare_sets",
    "inception_features",
    "feature_stats",
    "set_statistics",
    "save_statistics",
    "load_statistics",
    "frechet_distance",
    "trace_sqrt_product",
    "kernel_distance",
    "precision_recall_features",
    "fid",
    "kid",
    "precision_recall",
    "network_input",
    "resize_tf1_bilinear",
]

#: What :func:`save_statistics` writes in its ``format`` field (a reader refuses any other).
STATS_FORMAT = "percepmetric-fid-statistics-1"
#: A set given to FID: images, or their saved statistics (a file, or :class:`FeatureStats`).
SetOrStats = Any


def fid_network_sha256() -> str:
    """The SHA-256 of the one network file FID is computed with (checked when it is loaded)."""
    from ..weights import PUBLISHED_SHA256

    return PUBLISHED_SHA256["fid/default_1.pt"]


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise InputError(f"unknown FID mode {mode!r}; one of {', '.join(MODES)}")


def inception_features(images: ImageSet, mode: str = "clean", device: torch.device | str | None = "auto",
                       dtype: torch.dtype = torch.float32, batch_size: int = 32, network: Any = None,
                       name: str = "images", workers: int | None = None, cache: str | os.PathLike | None = None,
                       progress: bool = False, max_pixels: int | None = None) -> torch.Tensor:
    """The (N, 2048) Inception pool features (float64, CPU) of ``images`` in ``mode``.

    ``device``/``dtype``: where and in which precision the network runs (default: CUDA when
    available, else the CPU; float32, the precision every reference library uses). ``network``:
    an already loaded :func:`~percepmetric.nets.inception.load_fid_inception` (loaded here
    otherwise). ``workers``, ``cache``, ``progress``, ``max_pixels``: see
    :class:`~percepmetric.set_features.ExtractionSettings`."""
    settings = _settings(mode, device, dtype, batch_size, workers, cache, progress, max_pixels)
    if network is None:
        from ..nets.inception import load_fid_inception

        network = load_fid_inception(device=settings.device, dtype=dtype)
    return set_features(images, settings, network, fid_network_sha256(), name)


def set_statistics(images: ImageSet, mode: str = "clean", **options: Any) -> FeatureStats:
    """The :class:`FeatureStats` of one image set in ``mode`` (for :func:`save_statistics`);
    ``options`` as :func:`inception_features`'s."""
    return feature_stats(inception_features(images, mode, **options), mode, fid_network_sha256())


def _settings(mode: str, device: torch.device | str | None, dtype: torch.dtype, batch_size: int,
              workers: int | None, cache: str | os.PathLike | None, progress: bool,
              max_pixels: int | None) -> ExtractionSettings:
    from .. import distributed
    from ..devices import resolve_device

    _check_mode(mode)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size {batch_size!r}: must be a whole number of at least 1")
    return ExtractionSettings(mode=mode, device=distributed.rank_device(resolve_device(device, option="device")),
                              dtype=dtype, batch_size=batch_size, workers=workers,
                              cache=Path(cache).expanduser() if cache is not None else None, progress=progress,
                              max_pixels=max_pixels)


# ---------------------------------------------------------------- statistics and distances


def save_statistics(stats: FeatureStats, path: str | os.PathLike) -> Path:
    """Write ``stats`` to ``path`` (``.npz``: numpy arrays, no pickle), atomically: ``mean``
    (2048,), ``cov`` (2048, 2048) float64, ``count``, ``mode``, ``network`` (the network file's
    SHA-256) and ``format`` (:data:`STATS_FORMAT`). :func:`load_statistics` reads it back."""
    from ..io import atomic_path

    if stats.mode is None or stats.network is None:
        raise InputError("statistics without the mode and network they were made with cannot be saved")
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, mean=stats.mean, cov=stats.cov, count=np.int64(stats.count), mode=np.str_(stats.mode),
                 network=np.str_(stats.network), format=np.str_(STATS_FORMAT))
    return Path(path)


def load_statistics(path: str | os.PathLike, name: str = "statistics") -> FeatureStats:
    """Statistics written by :func:`save_statistics`, checked: the format, the shapes, finite
    values, at least two images, and the network's SHA-256 (FID is comparable only with the same
    network). Read with ``allow_pickle=False``. :class:`InputError` naming ``name`` and the file
    otherwise; files of other tools (clean-fid's or pytorch-fid's ``mu``/``sigma``) are refused:
    they do not say which mode and network made them."""
    from ..io import printable_path

    shown = f"{name}: {printable_path(path)}"
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{shown} is not a statistics file ({type(exc).__name__}: {exc})") from None
    if "format" not in arrays:
        if {"mu", "sigma"} <= set(arrays):
            raise InputError(f"{shown} holds mu/sigma without the mode and network that made them (another "
                             f"tool's file?); make statistics with: percepmetric fid DIR --save-stats FILE.npz")
        raise InputError(f"{shown} is not a statistics file percepmetric wrote (no 'format' field)")
    if str(arrays["format"]) != STATS_FORMAT:
        raise InputError(f"{shown}: format {str(arrays['format'])!r}, expected {STATS_FORMAT!r}")
    try:
        mean = np.asarray(arrays["mean"], dtype=np.float64)
        cov = np.asarray(arrays["cov"], dtype=np.float64)
        count, mode, network = int(arrays["count"]), str(arrays["mode"]), str(arrays["network"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{shown}: incomplete statistics ({type(exc).__name__}: {exc})") from None
    if mean.shape != (FEATURE_DIM,) or cov.shape != (FEATURE_DIM, FEATURE_DIM):
        raise InputError(f"{shown}: mean {mean.shape} and covariance {cov.shape}, expected ({FEATURE_DIM},) and "
                         f"({FEATURE_DIM}, {FEATURE_DIM})")
    if not (np.isfinite(mean).all() and np.isfinite(cov).all()) or count < 2 or mode not in MODES:
        raise InputError(f"{shown}: damaged statistics (non-finite values, fewer than 2 images or an unknown mode)")
    if network != fid_network_sha256():
        raise InputError(f"{shown} was made with another network (sha256 {network[:16]}..., not "
                         f"{fid_network_sha256()[:16]}...): its FID would not be comparable")
    return FeatureStats(mean, cov, count, None, mode, network)


@dataclass(frozen=True)
class FIDResult:
    """``float()`` of it is the FID; with the mode, the two sets' sizes, the network file's
    SHA-256 and, when asked for, its :class:`~percepmetric.metrics.fid_interval.FIDInterval`
    (None when not asked, or not possible: ``interval_note`` says why)."""

    value: float
    mode: str
    count_a: int
    count_b: int
    network: str = ""
    interval: FIDInterval | None = None
    interval_note: str = ""

    def __float__(self) -> float:
        return self.value


@dataclass(frozen=True)
class KIDResult:
    """``.mean`` (``float()`` of it) and ``.std`` of the subsets' MMD^2 (``std`` is 0 by
    construction when each subset holds every image of both sets); ``subsets``, ``subset_size``."""

    mean: float
    std: float
    subsets: int
    subset_size: int
    mode: str

    @property
    def std_note(self) -> str:
        """Why ``std`` is 0 when it is (each subset held every image), else empty."""
        return "0 by construction: every subset holds all images of both sets" if self.std == 0 else ""

    def __float__(self) -> float:
        return self.mean


def kernel_distance(fa: torch.Tensor | np.ndarray, fb: torch.Tensor | np.ndarray, subsets: int = 100,
                    subset_size: int = 1000, degree: int = 3, gamma: float | None = None, coef: float = 1.0,
                    seed: int | None = 0) -> tuple[float, float, int]:
    """KID of two feature sets: (mean, std over subsets, subset size). Each subset draws
    ``m = min(n_a, n_b, subset_size)`` features of each set without replacement (``seed``: a
    :func:`numpy.random.default_rng` of its own, no global state) and takes the unbiased MMD^2
    with the kernel ``(gamma x.y + coef)^degree``, ``gamma`` = 1 / d by default."""
    a = np.asarray(fa, dtype=np.float64)
    b = np.asarray(fb, dtype=np.float64)
    d = a.shape[1]
    m = min(len(a), len(b), subset_size)
    if m < 2:
        raise InputError("KID needs at least two images per set")
    g = 1.0 / d if gamma is None else gamma
    rng = np.random.default_rng(seed)
    values = []
    # When a subset is a whole set on both sides, every subset gives the same MMD^2 (rounding
    # apart, which would show as a tiny deviation): one subset, and std exactly 0.
    for _ in range(1 if m == len(a) == len(b) else subsets):
        x = b[rng.choice(len(b), m, replace=False)]
        y = a[rng.choice(len(a), m, replace=False)]
        kxx = (x @ x.T * g + coef) ** degree
        kyy = (y @ y.T * g + coef) ** degree
        kxy = (x @ y.T * g + coef) ** degree
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        values.append(within - 2 * kxy.sum() / (m * m))
    v = np.asarray(values)
    return float(v.mean()), float(v.std()), m


@dataclass(frozen=True)
class PrecisionRecall:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of ``a`` (generated) against
    ``b`` (real); ``f_score`` as torch-fidelity's."""

    precision: float
    recall: float
    k: int
    mode: str

    @property
    def f_score(self) -> float:
        return 2 * self.precision * self.recall / max(1e-5, self.precision + self.recall)


def precision_recall_features(fa: torch.Tensor | np.ndarray, fb: torch.Tensor | np.ndarray,
                              k: int = 3) -> tuple[float, float]:
    """(precision, recall) of generated features ``fa`` against real ``fb``: a point is inside a
    set's manifold when its distance to some member is at most that member's distance to its
    k-th nearest neighbour in its own set (itself excluded). Distances in float64."""
    a = torch.as_tensor(np.asarray(fa, dtype=np.float64))
    b = torch.as_tensor(np.asarray(fb, dtype=np.float64))
    if min(len(a), len(b)) <= k:
        raise InputError(f"precision/recall with k = {k} needs more than {k} images per set")
    radius_a = torch.cdist(a, a).kthvalue(k + 1, dim=1).values
    radius_b = torch.cdist(b, b).kthvalue(k + 1, dim=1).values
    ab = torch.cdist(a, b)  # (n_a, n_b)
    precision = (ab <= radius_b[None, :]).any(dim=1).double().mean().item()
    recall = (ab.T <= radius_a[None, :]).any(dim=1).double().mean().item()
    return precision, recall


# ---------------------------------------------------------------- the public functions


@dataclass(frozen=True)
class SetComparison:
    """What :func:`compare_sets` measured: FID always, KID and precision/recall when asked for,
    and the two sets' statistics (for :func:`save_statistics`)."""

    fid: FIDResult
    kid: KIDResult | None
    precision_recall: PrecisionRecall | None
    stats_a: FeatureStats
    stats_b: FeatureStats


def _stats_input(obj: Any, name: str) -> FeatureStats | None:
    """Saved statistics given for a set (a :class:`FeatureStats` or a file), else None."""
    if isinstance(obj, FeatureStats):
        return obj
    if isinstance(obj, (str, os.PathLike)) and Path(obj).is_file():
        return load_statistics(obj, name)
    return None


def compare_sets(a: SetOrStats, b: SetOrStats, mode: str = "clean", *, kid: bool = False,
                 precision_recall: bool = False, interval: bool = False, confidence: float = 0.95,
                 resamples: int = 200, k: int = 3, subsets: int = 100, subset_size: int = 1000, seed: int | None = 0,
                 device: torch.device | str | None = "auto", dtype: torch.dtype = torch.float32, batch_size: int = 32,
                 workers: int | None = None, cache: str | os.PathLike | None = None, progress: bool = False,
                 max_pixels: int | None = None) -> SetComparison:
    """FID (with its interval when ``interval``), and with ``kid`` and ``precision_recall``
    those too, of ``a`` (generated) against ``b`` (real), the features extracted once.

    ``a`` and ``b``: image sets (a folder, a list of files, a tensor) or saved statistics (a
    file of :func:`save_statistics`, or :class:`FeatureStats`), whose mode must be ``mode``.
    KID, precision/recall and the interval need images on both sides. ``cache``: a folder where
    features are kept, keyed on the files' content (see :mod:`percepmetric.set_features`). Under
    torchrun each rank extracts its share and every rank returns the whole result."""
    from .. import distributed

    _check_mode(mode)
    stats = {name: _stats_input(obj, name) for name, obj in (("a", a), ("b", b))}
    for name, obj in (("a", a), ("b", b)):
        given = stats[name]
        if given is None and not is_image_set(obj):
            raise InputError(f"{name}: expected a folder, a list of image files, an image tensor or saved statistics, "
                             f"got {type(obj).__name__}")
        if given is not None:
            if given.mode != mode:
                raise InputError(f"{name}: statistics made in mode {given.mode}, this run is {mode} "
                                 f"(use mode {given.mode} to compare with them)")
            wanted = [what for what, on in (("KID", kid), ("precision/recall", precision_recall)) if on]
            if wanted:
                raise InputError(f"{name}: saved statistics hold a mean and a covariance only; {' and '.join(wanted)} "
                                 f"need the images of both sets")
    for name, obj in (("a", a), ("b", b)):
        if stats[name] is None:
            check_image_set(obj, name)  # before the network loads: bad input is one line at once
    network_sha256 = fid_network_sha256()
    features: dict[str, torch.Tensor] = {}
    if stats["a"] is None or stats["b"] is None:
        from ..nets.inception import load_fid_inception

        settings = _settings(mode, device, dtype, batch_size, workers, cache, progress, max_pixels)
        network = load_fid_inception(device=settings.device, dtype=dtype)
        with distributed.process_group(settings.device):
            for name, obj in (("a", a), ("b", b)):
                if stats[name] is None:
                    features[name] = set_features(obj, settings, network, network_sha256, name)
                    stats[name] = feature_stats(features[name], mode, network_sha256)
    stats_a, stats_b = stats["a"], stats["b"]
    assert stats_a is not None and stats_b is not None
    value = frechet_distance(stats_a, stats_b)
    fid_interval, note = None, ""
    if interval:
        if len(features) < 2:
            note = "n/a: saved statistics hold no per-image features to resample"
        else:
            from .fid_interval import fid_interval as make_interval

            fid_interval = make_interval(features["a"], features["b"], estimate=value, confidence=confidence,
                                         resamples=resamples, seed=seed)
            if fid_interval is None:
                note = "n/a: too few images to resample"
    fid_result = FIDResult(value, mode, stats_a.count, stats_b.count, network_sha256, fid_interval, note)
    kid_result = None
    if kid:
        mean, std, m = kernel_distance(features["a"], features["b"], subsets=subsets, subset_size=subset_size,
                                       seed=seed)
        kid_result = KIDResult(mean, std, subsets, m, mode)
    pr_result = None
    if precision_recall:
        p, r = precision_recall_features(features["a"], features["b"], k)
        pr_result = PrecisionRecall(p, r, k, mode)
    return SetComparison(fid_result, kid_result, pr_result, stats_a, stats_b)


def fid(a: SetOrStats, b: SetOrStats, mode: str = "clean", *, interval: bool = False, confidence: float = 0.95,
        resamples: int = 200, **options: Any) -> FIDResult:
    """FID between ``a`` and ``b`` in ``mode`` (``float()`` of the result); each an image set or
    saved statistics. ``interval``: also its bias-aware interval (costs resampling: see
    :mod:`percepmetric.metrics.fid_interval`). ``options``: those of :func:`compare_sets`
    (``device``, ``batch_size``, ``workers``, ``cache``, ``progress``, ...)."""
    return compare_sets(a, b, mode, interval=interval, confidence=confidence, resamples=resamples, **options).fid


def kid(a: ImageSet, b: ImageSet, mode: str = "clean", *, subsets: int = 100, subset_size: int = 1000,
        seed: int | None = 0, **options: Any) -> KIDResult:
    """KID between the image sets ``a`` and ``b`` in ``mode`` (clean-fid's defaults);
    ``options`` as :func:`compare_sets`'s."""
    result = compare_sets(a, b, mode, kid=True, subsets=subsets, subset_size=subset_size, seed=seed, **options)
    assert result.kid is not None
    return result.kid


def precision_recall(a: ImageSet, b: ImageSet, mode: str = "clean", *, k: int = 3, **options: Any) -> PrecisionRecall:
    """Precision and recall of generated images ``a`` against real images ``b`` on the 2048 pool
    features (torch-fidelity's ``inception-v3-compat`` + ``feature_layer_prc="2048"`` when
    ``mode="legacy_tensorflow"``); ``options`` as :func:`compare_sets`'s."""
    result = compare_sets(a, b, mode, precision_recall=True, k=k, **options)
    assert result.precision_recall is not None
    return result.precision_recall
