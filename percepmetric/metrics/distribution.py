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

Inputs: a folder (its images, recursively, sorted: :func:`percepmetric.io.list_image_files`),
a list of image files, or an (N, 3, H, W) tensor: uint8 codes, or floats in [0, 1] (times 255,
not rounded). Grey images are repeated to three channels, alpha is dropped. Images of
different sizes may be mixed in a folder.

**FID** (Heusel et al. 2017): ``|mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2))``
with unbiased covariances; the last trace is :func:`trace_sqrt_product`, from the eigenvalues
of the symmetric ``S_a^(1/2) S_b S_a^(1/2)`` in float64 (no ``scipy.linalg.sqrtm``).
**KID** (Binkowski et al. 2018) as clean-fid: the unbiased MMD^2 with the kernel
``(x.y / d + 1)^3`` averaged over 100 random subsets of ``min(n_a, n_b, 1000)`` images of
each set (``.std``: the subsets' standard deviation, 0 when every subset holds all images).
**Precision/recall** (Kynkäänniemi et al. 2019) as torch-fidelity's ``prc``: a sample is inside
a set's manifold when it lies within the distance from some member of the set to that member's
k-th nearest neighbour (k = 3); precision: the share of ``a`` (generated) inside ``b``'s
(real) manifold, recall: the share of ``b`` inside ``a``'s.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError

__all__ = [
    "MODES",
    "FIDResult",
    "KIDResult",
    "PrecisionRecall",
    "FeatureStats",
    "inception_features",
    "feature_stats",
    "frechet_distance",
    "trace_sqrt_product",
    "kernel_distance",
    "precision_recall_features",
    "fid",
    "kid",
    "precision_recall",
    "resize_tf1_bilinear",
]

MODES = ("clean", "legacy_tensorflow", "legacy_pytorch")
SIZE = 299

ImageSet = str | os.PathLike | Sequence[str | os.PathLike] | torch.Tensor


# ---------------------------------------------------------------- the three input pipelines


def resize_tf1_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """TF1's ``tf.image.resize_bilinear(x, size)`` (``align_corners=False``,
    ``half_pixel_centers=False``) of an (N, C, H, W) float tensor: output pixel ``i`` samples
    the input at ``i * (H / out_h)``, interpolating with the next pixel (the last one repeated).
    As TF's kernel: the scale and the source positions in float32, interpolation along x first,
    then along y."""
    _, _, h, w = x.shape
    out_h, out_w = size

    def axis(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        scale = torch.tensor(n_in / n_out, dtype=torch.float32)
        src = torch.arange(n_out, dtype=torch.float32) * scale
        lo = src.floor()
        i0 = lo.long().clamp(max=n_in - 1)
        i1 = (i0 + 1).clamp(max=n_in - 1)
        return i0.to(x.device), i1.to(x.device), (src - lo).to(device=x.device, dtype=x.dtype)

    y0, y1, fy = axis(h, out_h)
    x0, x1, fx = axis(w, out_w)
    top, bottom = x[:, :, y0, :], x[:, :, y1, :]
    top = top[..., x0] + (top[..., x1] - top[..., x0]) * fx
    bottom = bottom[..., x0] + (bottom[..., x1] - bottom[..., x0]) * fx
    return top + (bottom - top) * fy[:, None]


def _resize_clean(image: np.ndarray) -> np.ndarray:
    """clean-fid's ``mode="clean"`` resize of one (3, H, W) float32 0..255 image: each channel a
    PIL ``"F"`` image, bicubic to 299x299, clipped to [0, 255]."""
    from PIL import Image

    channels = []
    for channel in image:
        resized = Image.fromarray(np.ascontiguousarray(channel, dtype=np.float32)).resize((SIZE, SIZE),
                                                                                          Image.Resampling.BICUBIC)
        channels.append(np.asarray(resized, dtype=np.float32).clip(0, 255))
    return np.stack(channels)


def _prepare(batch: list[torch.Tensor], mode: str, device: torch.device) -> torch.Tensor:
    """A batch of (3, H, W) float32 0..255 CPU images -> (N, 3, 299, 299) network input (float32)."""
    if mode == "clean":
        x = torch.from_numpy(np.stack([_resize_clean(img.numpy()) for img in batch])).to(device)
        return (x - 128) / 128
    out = []
    for img in batch:
        x = img[None].to(device)
        if mode == "legacy_tensorflow":
            x = resize_tf1_bilinear(x, (SIZE, SIZE))
        else:
            x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False).clamp(0, 255)
        out.append(x)
    x = torch.cat(out)
    if mode == "legacy_tensorflow":
        return (x - 128) / 128
    return x / 255 * 2 - 1


# ---------------------------------------------------------------- image sets


def _as_rgb255(array: np.ndarray) -> torch.Tensor:
    """(H, W, C) uint8/uint16 -> (3, H, W) float32 0..255 (grey repeated)."""
    scale = 255.0 / 65535.0 if array.dtype == np.uint16 else 1.0
    t = torch.from_numpy(np.array(array, dtype=np.float32)).permute(2, 0, 1)
    if scale != 1.0:
        t = t * scale
    return t.expand(3, -1, -1) if t.shape[0] == 1 else t


def _image_source(images: ImageSet, name: str) -> tuple[int, Iterator[torch.Tensor]]:
    """How many images ``images`` holds, and an iterator of them as (3, H, W) float32 0..255."""
    from ..io import list_image_files, read_image_array

    if isinstance(images, torch.Tensor):
        t = images
        if t.ndim != 4 or t.shape[1] not in (1, 3):
            raise InputError(f"{name}: expected an (N, 3, H, W) image tensor, got shape {tuple(t.shape)}")
        if t.dtype == torch.uint8:
            t = t.to(torch.float32)
        elif t.is_floating_point():
            t = t.to(torch.float32) * 255
        else:
            raise InputError(f"{name}: unsupported tensor dtype {t.dtype} (uint8 or float in [0, 1])")
        t = t.detach().cpu()
        return len(t), (img.expand(3, -1, -1) for img in t)
    if isinstance(images, (str, os.PathLike)):
        folder = Path(images)
        if not folder.is_dir():
            raise InputError(f"{name}: {images} is not a folder (give a folder, a list of files or a tensor)")
        files = [folder / f for f in list_image_files(folder)]
    else:
        files = [Path(f) for f in images]
    if not files:
        raise InputError(f"{name}: no images")
    return len(files), (_as_rgb255(read_image_array(f)) for f in files)


def inception_features(images: ImageSet, mode: str = "clean", device: torch.device | str | None = None,
                       dtype: torch.dtype = torch.float32, batch_size: int = 32, network: Any = None,
                       name: str = "images") -> torch.Tensor:
    """The (N, 2048) Inception pool features (float64, CPU) of ``images`` in ``mode``.

    ``device``/``dtype``: where and in which precision the network runs (default: CPU,
    float32, the precision every reference library uses). ``network``: an already loaded
    :func:`~percepmetric.nets.inception.load_fid_inception` (loaded here otherwise)."""
    if mode not in MODES:
        raise InputError(f"unknown FID mode {mode!r}; one of {', '.join(MODES)}")
    if batch_size < 1:
        raise InputError("batch_size must be at least 1")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if network is None:
        from ..nets.inception import load_fid_inception

        network = load_fid_inception(device=dev, dtype=dtype)
    count, source = _image_source(images, name)
    out = []
    batch: list[torch.Tensor] = []

    def run() -> None:
        with torch.inference_mode():
            x = _prepare(batch, mode, dev)
            out.append(network(x.to(dtype)).to(device="cpu", dtype=torch.float64))
        batch.clear()

    for img in source:
        batch.append(img)
        if len(batch) == batch_size:
            run()
    if batch:
        run()
    features = torch.cat(out)
    assert len(features) == count
    return features


# ---------------------------------------------------------------- statistics and distances


@dataclass(frozen=True)
class FeatureStats:
    """Mean (d,), unbiased covariance (d, d) and count of a set of features, float64.
    ``factor``: when there are fewer features than dimensions, the (n, d) centred features over
    ``sqrt(n - 1)`` (``cov = factor.T @ factor``), which makes the Fréchet distance cheap
    (:func:`trace_sqrt_product`); None otherwise (and for statistics read back from a file)."""

    mean: np.ndarray
    cov: np.ndarray
    count: int
    factor: np.ndarray | None = None


def feature_stats(features: torch.Tensor | np.ndarray) -> FeatureStats:
    f = np.asarray(features.numpy() if isinstance(features, torch.Tensor) else features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise InputError(f"FID needs at least two images per set, got features of shape {f.shape}")
    mean = f.mean(axis=0)
    factor = (f - mean) / np.sqrt(len(f) - 1)
    return FeatureStats(mean, factor.T @ factor, len(f), factor if len(f) < f.shape[1] else None)


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric positive semi-definite matrix (negative
    eigenvalues from rounding taken as 0)."""
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def trace_sqrt_product(s1: np.ndarray, s2: np.ndarray, factor1: np.ndarray | None = None) -> float:
    """``tr((S1 S2)^(1/2))`` of two covariance matrices, in float64, without a general matrix
    square root: ``S1 S2`` is similar to the symmetric positive semi-definite
    ``M = S1^(1/2) S2 S1^(1/2)`` (``S1 S2 = S1^(1/2) M S1^(-1/2)`` when S1 is invertible, and by
    continuity otherwise), so the trace is the sum of the square roots of M's eigenvalues (two
    symmetric eigendecompositions; rounding's tiny negative eigenvalues count as 0).

    ``factor1``: an (n, d) ``F`` with ``S1 = F.T F`` (:attr:`FeatureStats.factor`); then the
    nonzero eigenvalues of M are those of the n x n ``F S2 F.T`` (``AB`` and ``BA`` share
    them), one small eigendecomposition instead of two d x d ones. Without it, a Cholesky
    factor ``S1 = L L.T`` takes the place of ``S1^(1/2)`` (``L.T S2 L`` has the same
    eigenvalues); a singular S1 falls back to its eigendecomposition."""
    a = np.asarray(s1, dtype=np.float64)
    b = np.asarray(s2, dtype=np.float64)
    if factor1 is not None:
        f = np.asarray(factor1, dtype=np.float64)
        m = f @ b @ f.T
    else:
        try:  # S1 = L L.T: M' = L.T S2 L is similar to S1 S2 as well, and a Cholesky is cheap
            lower = np.linalg.cholesky((a + a.T) / 2)
            m = lower.T @ b @ lower
        except np.linalg.LinAlgError:  # S1 singular (fewer images than dimensions): its PSD root
            root = _psd_sqrt(a)
            m = root @ b @ root
    w = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(w, 0, None)).sum())


def frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
    """The Fréchet distance between the Gaussians of two :class:`FeatureStats`."""
    if a.mean.shape != b.mean.shape:
        raise InputError(f"feature statistics of different dimensions: {a.mean.shape} and {b.mean.shape}")
    diff = a.mean - b.mean
    if a.factor is None and b.factor is not None:
        a, b = b, a  # tr((S_a S_b)^(1/2)) is symmetric in the two sets
    trace = trace_sqrt_product(a.cov, b.cov, a.factor)
    return float(diff @ diff + np.trace(a.cov) + np.trace(b.cov) - 2 * trace)


@dataclass(frozen=True)
class FIDResult:
    """``float()`` of it is the FID; with the mode and the two sets' sizes."""

    value: float
    mode: str
    count_a: int
    count_b: int

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
    for _ in range(subsets):
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


def _features(images: ImageSet | torch.Tensor, mode: str, name: str, **kwargs: Any) -> torch.Tensor:
    return inception_features(images, mode=mode, name=name, **kwargs)


def fid(a: ImageSet, b: ImageSet, mode: str = "clean", device: torch.device | str | None = None,
        batch_size: int = 32) -> FIDResult:
    """FID between the image sets ``a`` and ``b`` in ``mode`` (see the module docstring)."""
    from ..nets.inception import load_fid_inception

    net = load_fid_inception(device=device)
    fa = _features(a, mode, "a", device=device, batch_size=batch_size, network=net)
    fb = _features(b, mode, "b", device=device, batch_size=batch_size, network=net)
    return FIDResult(frechet_distance(feature_stats(fa), feature_stats(fb)), mode, len(fa), len(fb))


def kid(a: ImageSet, b: ImageSet, mode: str = "clean", subsets: int = 100, subset_size: int = 1000,
        seed: int | None = 0, device: torch.device | str | None = None, batch_size: int = 32) -> KIDResult:
    """KID between the image sets ``a`` and ``b`` in ``mode`` (clean-fid's defaults)."""
    from ..nets.inception import load_fid_inception

    net = load_fid_inception(device=device)
    fa = _features(a, mode, "a", device=device, batch_size=batch_size, network=net)
    fb = _features(b, mode, "b", device=device, batch_size=batch_size, network=net)
    mean, std, m = kernel_distance(fa, fb, subsets=subsets, subset_size=subset_size, seed=seed)
    return KIDResult(mean, std, subsets, m, mode)


def precision_recall(a: ImageSet, b: ImageSet, mode: str = "clean", k: int = 3,
                     device: torch.device | str | None = None, batch_size: int = 32) -> PrecisionRecall:
    """Precision and recall of generated images ``a`` against real images ``b`` on the 2048 pool
    features (torch-fidelity's ``inception-v3-compat`` + ``feature_layer_prc="2048"`` when
    ``mode="legacy_tensorflow"``)."""
    from ..nets.inception import load_fid_inception

    net = load_fid_inception(device=device)
    fa = _features(a, mode, "a", device=device, batch_size=batch_size, network=net)
    fb = _features(b, mode, "b", device=device, batch_size=batch_size, network=net)
    p, r = precision_recall_features(fa, fb, k)
    return PrecisionRecall(p, r, k, mode)
