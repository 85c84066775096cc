"""A small synthetic BAPPS, generated deterministically from scikit-image's bundled photos.

**These are synthetic sentinels, not human judgments.** Each 2AFC triplet applies one
distortion at two strengths to a 64x64 photo patch; the "judgment" says the weaker one
is closer (with 4 of 5 or 5 of 5 simulated people agreeing, so the human ceiling is
below 1). Each JND pair is either identical ("same") or clearly distorted ("different").
A sane metric scores well above 0.5 on them; they check the harness, training and
plumbing, not how human-like a metric is.

:func:`make_fixture` writes the full BAPPS layout (``2afc/train/{traditional,cnn,mix}``,
the six ``2afc/val/*`` sets, ``jnd/val/{traditional,cnn}``) and a ``SYNTHETIC_SENTINELS.txt``
marker at the root. The distortions are pure functions on uint8 ``(N,H,W,3)`` batches,
reusable elsewhere (e.g. DeePSiM demos take :func:`photo_patches`):

======================  =====================================================  ==========================
kind                    what                                                   used in
======================  =====================================================  ==========================
photometric             gain, offset and saturation change                     traditional
noise                   additive Gaussian noise                                traditional
blur                    Gaussian blur                                          traditional
spatial                 sub-pixel shift and small rotation (reflect border)    traditional
jpeg                    JPEG compression (PIL)                                 traditional
conv_artifact           residual of a fixed random 3x3 colour convolution      cnn
checkerboard            2x nearest-neighbour upsampling of a 2x downsampling   cnn
superres                bilinear 4x down / bicubic up, blended in              superres
deblur                  blur then unsharp mask (ringing), blended in           deblur
color                   hue rotation in YIQ plus saturation change             color
ghosting                blend with a shifted copy (frame interpolation)        frameinterp
======================  =====================================================  ==========================

The paper's traditional distortions are of these families (photometric, noise, blur,
spatial, compression); the others are stand-ins for the paper's CNN-based and
real-algorithm sets, named after them.
"""

from __future__ import annotations

import functools
import io
import math
import os
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..metrics.color import YIQ_MATRIX

PATCH = 64
DEFAULT_SIZE = 48
MARKER = "SYNTHETIC_SENTINELS.txt"
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina")

TRADITIONAL_KINDS = ("photometric", "noise", "blur", "spatial", "jpeg")
CNN_KINDS = ("conv_artifact", "checkerboard")
#: The distortion kinds each category of the fixture draws from.
CATEGORY_KINDS: dict[str, tuple[str, ...]] = {
    "traditional": TRADITIONAL_KINDS,
    "cnn": CNN_KINDS,
    "mix": TRADITIONAL_KINDS + CNN_KINDS,
    "superres": ("superres",),
    "deblur": ("deblur",),
    "color": ("color",),
    "frameinterp": ("ghosting",),
}


# ---------------------------------------------------------------- photos and patches

@functools.cache
def _photo(name: str) -> np.ndarray:
    from skimage import data

    image = getattr(data, name)()
    return np.ascontiguousarray(image[..., :3])


def photo_patches(n: int, size: int = PATCH, seed: int = 0) -> np.ndarray:
    """``n`` random ``size x size`` RGB crops of scikit-image's bundled colour photos.

    uint8 ``(n,size,size,3)``; deterministic in ``seed``. Photos larger than 3x the patch
    are first halved (2x2 mean) half of the time, so patches show both fine and coarse
    texture; half of the patches are mirrored left-right.
    """
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    # Photos smaller than the patch cannot give one (the MOS fixtures ask for 512x512).
    photos = [name for name in PHOTOS if min(_photo(name).shape[:2]) >= size]
    if not photos:
        raise ValueError(f"no bundled photo is {size} pixels on each side")
    which = rng.integers(0, len(photos), n)
    halve = rng.random(n) < 0.5
    flip = rng.random(n) < 0.5
    corner = rng.random((n, 2))
    for i in range(n):  # n crops: slicing, no per-pixel work
        photo = _photo(photos[which[i]])
        if halve[i] and min(photo.shape[:2]) >= 6 * size:
            photo = _halved(photos[which[i]])
        h, w = photo.shape[:2]
        top, left = int(corner[i, 0] * (h - size + 1)), int(corner[i, 1] * (w - size + 1))
        crop = photo[top : top + size, left : left + size]
        out[i] = crop[:, ::-1] if flip[i] else crop
    return out


@functools.cache
def _halved(name: str) -> np.ndarray:
    p = _photo(name).astype(np.float32)
    h, w = (p.shape[0] // 2) * 2, (p.shape[1] // 2) * 2
    p = p[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3))
    return np.round(p).astype(np.uint8)


# ---------------------------------------------------------------- distortions (pure functions)

def _to_float(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).double() / 255.0


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def _per_image(values, n: int) -> torch.Tensor:
    return torch.as_tensor(np.broadcast_to(np.asarray(values, dtype=np.float64), (n,)).copy())[:, None, None, None]


def _lerp(images: np.ndarray, distorted: torch.Tensor, amount) -> np.ndarray:
    x = _to_float(images)
    a = _per_image(amount, len(images))
    return _to_uint8(x + a * (distorted - x))


def photometric(images: np.ndarray, gain, offset, saturation) -> np.ndarray:
    """``out = clip(gain * (grey + saturation * (x - grey)) + offset)``, per image ``(N,)`` parameters.

    ``grey`` is the mean of the three channels; ``offset`` in [0, 1] units.
    """
    x = _to_float(images)
    n = len(images)
    grey = x.mean(dim=1, keepdim=True)
    y = _per_image(gain, n) * (grey + _per_image(saturation, n) * (x - grey)) + _per_image(offset, n)
    return _to_uint8(y)


def add_noise(images: np.ndarray, noise: np.ndarray, sigma) -> np.ndarray:
    """``clip(x + sigma * noise)``: ``noise`` is ``(N,H,W,3)`` standard normal, ``sigma`` ``(N,)`` in [0, 1] units."""
    x = _to_float(images)
    z = torch.from_numpy(np.ascontiguousarray(noise)).permute(0, 3, 1, 2).double()
    return _to_uint8(x + _per_image(sigma, len(images)) * z)


def _gaussian(x: torch.Tensor, sigma) -> torch.Tensor:
    """Separable Gaussian blur with a per-image ``sigma`` (``(N,)``), reflect border."""
    n, c, h, w = x.shape
    s = torch.as_tensor(np.broadcast_to(np.asarray(sigma, dtype=np.float64), (n,)).copy()).clamp(min=1e-3)
    radius = int(math.ceil(3 * float(s.max())))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t[None] / s[:, None]) ** 2)
    k = (k / k.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (N*C, K)
    y = F.pad(x.reshape(1, n * c, h, w), (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, k[:, None, None, :], groups=n * c)
    y = F.conv2d(y, k[:, None, :, None], groups=n * c)
    return y.reshape(n, c, h, w)


def gaussian_blur(images: np.ndarray, sigma) -> np.ndarray:
    """Gaussian blur of standard deviation ``sigma`` pixels (``(N,)`` or scalar; < 0.2 patch size)."""
    return _to_uint8(_gaussian(_to_float(images), sigma))


def _warp(x: torch.Tensor, dx, dy, angle) -> torch.Tensor:
    n, _, h, w = x.shape
    dx, dy, angle = (_per_image(v, n).flatten() for v in (dx, dy, angle))
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin, 2 * dx / w], 1), torch.stack([sin, cos, 2 * dy / h], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def spatial_warp(images: np.ndarray, dx, dy, angle) -> np.ndarray:
    """Shift by ``(dx, dy)`` pixels and rotate by ``angle`` radians about the centre (bilinear, reflected border)."""
    return _to_uint8(_warp(_to_float(images), dx, dy, angle))


def jpeg(images: np.ndarray, quality) -> np.ndarray:
    """JPEG-compress each image at ``quality`` (``(N,)`` ints in 1..95) with PIL and decode it again."""
    from PIL import Image

    q = np.broadcast_to(np.asarray(quality, dtype=np.int64), (len(images),))
    out = np.empty_like(images)
    for i, image in enumerate(images):  # the codec works one image at a time
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=int(q[i]))
        out[i] = np.asarray(Image.open(buffer).convert("RGB"))
    return out


def conv_artifact(images: np.ndarray, amount, seed: int = 1234) -> np.ndarray:
    """Add ``amount`` times the response of a fixed random 3x3 colour convolution (a CNN-like texture artifact)."""
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(3, 3, 3, 3, generator=g, dtype=torch.float64) / 3.0
    x = _to_float(images)
    residual = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), weight)
    return _to_uint8(x + _per_image(amount, len(images)) * residual)


def checkerboard(images: np.ndarray, amount) -> np.ndarray:
    """Blend in (by ``amount``) a 2x average-pool then nearest-neighbour 2x upsampling: blocky, checkerboard-like."""
    x = _to_float(images)
    return _lerp(images, F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest"), amount)


def superres(images: np.ndarray, amount, factor: int = 4) -> np.ndarray:
    """Blend in (by ``amount``) a bilinear ``factor``x downsampling followed by bicubic upsampling."""
    x = _to_float(images)
    small = F.interpolate(x, scale_factor=1 / factor, mode="bilinear", antialias=True, align_corners=False)
    return _lerp(images, F.interpolate(small, size=x.shape[-2:], mode="bicubic", align_corners=False), amount)


def deblur(images: np.ndarray, amount) -> np.ndarray:
    """Blend in (by ``amount``) a blur (sigma 1.5) followed by a strong unsharp mask: a deblurring
    result with ringing."""
    blurred = _gaussian(_to_float(images), 1.5)
    sharpened = blurred + 2.0 * (blurred - _gaussian(blurred, 1.0))
    return _lerp(images, sharpened, amount)


def color_shift(images: np.ndarray, hue, saturation) -> np.ndarray:
    """Rotate the chroma plane of YIQ by ``hue`` radians and scale it by ``saturation`` (``(N,)`` each)."""
    x = _to_float(images)
    n = len(images)
    to_yiq = torch.tensor(YIQ_MATRIX, dtype=x.dtype)
    yiq = torch.einsum("ij,njhw->nihw", to_yiq, x)
    h, s = _per_image(hue, n).flatten(), _per_image(saturation, n).flatten()
    i, q = yiq[:, 1], yiq[:, 2]
    cos, sin = torch.cos(h)[:, None, None], torch.sin(h)[:, None, None]
    s = s[:, None, None]
    yiq = torch.stack([yiq[:, 0], s * (cos * i - sin * q), s * (sin * i + cos * q)], dim=1)
    return _to_uint8(torch.einsum("ij,njhw->nihw", torch.linalg.inv(to_yiq), yiq))


def ghosting(images: np.ndarray, alpha, dx, dy) -> np.ndarray:
    """``(1 - alpha) x + alpha shift(x, dx, dy)``: the double image of a poor frame interpolation."""
    x = _to_float(images)
    return _lerp(images, _warp(x, dx, dy, 0.0), alpha)


def distort(images: np.ndarray, kind: str, strength, seed: int) -> np.ndarray:
    """Apply distortion ``kind`` at ``strength`` in [0, 1] (``(N,)`` or scalar).

    The random part (noise field, direction of a shift or colour change, ...) depends only
    on ``seed`` and the batch size, so two calls with the same seed and different strengths
    give the same distortion, weaker and stronger: the sentinel's expected answer.
    """
    n = len(images)
    s = np.broadcast_to(np.asarray(strength, dtype=np.float64), (n,))
    rng = np.random.default_rng(seed)
    sign = np.where(rng.random((n, 3)) < 0.5, -1.0, 1.0)
    if kind == "photometric":
        return photometric(images, 1 + 0.5 * s * sign[:, 0], 0.25 * s * sign[:, 1], 1 + 0.8 * s * sign[:, 2])
    if kind == "noise":
        return add_noise(images, rng.standard_normal(images.shape), 0.2 * s)
    if kind == "blur":
        return gaussian_blur(images, 0.2 + 2.5 * s)
    if kind == "spatial":
        return spatial_warp(images, 3.0 * s * sign[:, 0], 3.0 * s * sign[:, 1], 0.15 * s * sign[:, 2])
    if kind == "jpeg":
        return jpeg(images, np.round(60 - 55 * s).astype(np.int64))
    if kind == "conv_artifact":
        return conv_artifact(images, 0.6 * s)
    if kind == "checkerboard":
        return checkerboard(images, s)
    if kind == "superres":
        return superres(images, s)
    if kind == "deblur":
        return deblur(images, s)
    if kind == "color":
        return color_shift(images, 1.2 * s * sign[:, 0], 1 + 0.8 * s * sign[:, 1])
    if kind == "ghosting":
        return ghosting(images, 0.5 * s, 4.0 * sign[:, 0], 4.0 * sign[:, 1])
    known = sorted(set(sum(CATEGORY_KINDS.values(), ())))
    raise ValueError(f"unknown distortion kind {kind!r} (known: {', '.join(known)})")


# ---------------------------------------------------------------- triplets, pairs, the layout

def _seed(seed: int, name: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % (2**32)


def _by_kind(ref: np.ndarray, kinds: np.ndarray, names: tuple[str, ...], strength: np.ndarray, seed: int) -> np.ndarray:
    out = np.empty_like(ref)
    for k, kind in enumerate(names):  # one batched call per distortion kind
        idx = np.flatnonzero(kinds == k)
        if len(idx):
            out[idx] = distort(ref[idx], kind, strength[idx], seed + k)
    return out


def sentinel_triplets(n: int, category: str, size: int = PATCH, seed: int = 0):
    """``n`` 2AFC sentinel triplets of ``category`` (a key of :data:`CATEGORY_KINDS`).

    Returns ``(ref, p0, p1, judge)``: uint8 ``(n,size,size,3)`` x3 and float32 ``(n,)``.
    p0 and p1 are the same distortion at a weak and a strong strength, in random order;
    ``judge`` (fraction choosing p1) is 1.0 or 0.8 when p1 is the weaker, 0.0 or 0.2 when p0 is.
    """
    rng = np.random.default_rng(_seed(seed, "2afc/" + category))
    names = CATEGORY_KINDS[category]
    ref = photo_patches(n, size, seed=int(rng.integers(2**31)))
    kinds = rng.integers(0, len(names), n)
    weak = rng.uniform(0.1, 0.4, n)
    strong = np.minimum(weak + rng.uniform(0.35, 0.6, n), 1.0)
    base = int(rng.integers(2**31))
    weak_img = _by_kind(ref, kinds, names, weak, base)
    strong_img = _by_kind(ref, kinds, names, strong, base)
    p1_weaker = rng.random(n) < 0.5
    p0 = np.where(p1_weaker[:, None, None, None], strong_img, weak_img)
    p1 = np.where(p1_weaker[:, None, None, None], weak_img, strong_img)
    agreement = np.where(rng.random(n) < 0.5, 1.0, 0.8)
    judge = np.where(p1_weaker, agreement, 1.0 - agreement).astype(np.float32)
    return ref, p0, p1, judge


def sentinel_pairs(n: int, category: str, size: int = PATCH, seed: int = 0):
    """``n`` JND sentinel pairs: ``(p0, p1, same)``; half identical (same = 1), half clearly
    distorted at full strength by the category's distortions (same = 0), in random order."""
    rng = np.random.default_rng(_seed(seed, "jnd/" + category))
    names = CATEGORY_KINDS[category]
    p0 = photo_patches(n, size, seed=int(rng.integers(2**31)))
    kinds = rng.integers(0, len(names), n)
    distorted = _by_kind(p0, kinds, names, np.ones(n), int(rng.integers(2**31)))
    same = rng.permutation(np.arange(n) < n // 2)
    p1 = np.where(same[:, None, None, None], p0, distorted)
    return p0, p1, same.astype(np.float32)


def _write_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(image).save(path, format="PNG", compress_level=1)


def _write_split(folder: Path, images: dict[str, np.ndarray], label_dir: str, labels: np.ndarray) -> None:
    for sub in list(images) + [label_dir]:
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for i in range(len(labels)):  # one file per item: that is the layout
        stem = f"{i:06d}"
        for sub, arr in images.items():
            _write_png(folder / sub / f"{stem}.png", arr[i])
        np.save(folder / label_dir / f"{stem}.npy", labels[i : i + 1].astype(np.float32))


MARKER_TEXT = """\
SYNTHETIC SENTINELS, NOT HUMAN JUDGMENTS.
Made by `percepmetric make-fixture` (percepmetric.data.fixtures.make_fixture, size={size}, seed={seed})
from scikit-image's bundled photos, in the layout of the BAPPS dataset (Zhang et al., 2018).
2AFC: one distortion at two strengths; the "judgment" prefers the weaker (80-100% agreement).
JND: identical pairs (same = 1) and clearly distorted pairs (same = 0).
Scores on this set test the software, not how human-like a metric is.
"""


def make_fixture(root: str | Path, size: int = DEFAULT_SIZE, seed: int = 0) -> Path:
    """Write a synthetic BAPPS of ``size`` triplets/pairs per split under ``root``; return ``root``.

    Splits: ``2afc/train/{traditional,cnn,mix}``, ``2afc/val/{traditional,cnn,superres,deblur,
    color,frameinterp}``, ``jnd/val/{traditional,cnn}``, 64x64 patches, files ``NNNNNN.png`` /
    ``NNNNNN.npy`` as in BAPPS, plus the ``SYNTHETIC_SENTINELS.txt`` marker. Deterministic
    in ``(size, seed)``; existing files are overwritten.
    """
    from .bapps import JND_CATEGORIES, TWO_AFC_CATEGORIES

    if int(size) < 2:
        raise ValueError(f"size must be at least 2, got {size}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for part, categories in TWO_AFC_CATEGORIES.items():
        for category in categories:
            ref, p0, p1, judge = sentinel_triplets(size, category, seed=_seed(seed, part))
            _write_split(root / "2afc" / part / category, {"ref": ref, "p0": p0, "p1": p1}, "judge", judge)
    for category in JND_CATEGORIES:
        p0, p1, same = sentinel_pairs(size, category, seed=seed)
        _write_split(root / "jnd" / "val" / category, {"p0": p0, "p1": p1}, "same", same)
    (root / MARKER).write_text(MARKER_TEXT.format(size=size, seed=seed))
    return root


def is_synthetic(root: str | Path) -> bool:
    """True when ``root`` was written by :func:`make_fixture` (it holds the marker file)."""
    return (Path(root) / MARKER).is_file()


EMBEDDED_VERSION = 1  # bump when the generator's output changes


def embedded_root(cache_dir: str | Path | None = None, size: int = DEFAULT_SIZE, seed: int = 0) -> Path:
    """The built-in sentinel set that ``percepmetric bench`` uses when no dataset is found:
    :func:`make_fixture` written once under the cache folder (:func:`generated_once`), then reused."""
    return generated_once(f"sentinels-v{EMBEDDED_VERSION}-n{size}-s{seed}",
                          lambda folder: make_fixture(folder, size=size, seed=seed), is_synthetic, cache_dir)


def generated_once(name: str, write: Callable[[Path], object], done: Callable[[Path], bool],
                   cache_dir: str | os.PathLike | None = None) -> Path:
    """``<cache>/<name>``, made by ``write(folder)`` the first time (into a temporary folder
    renamed into place: atomic, and a process that loses the race uses the winner's), then
    reused while ``done(folder)`` says it is complete.

    The folder gets the permissions the umask gives any new folder, so that a cache shared by a
    group stays usable by the group. When the cache folder cannot be written, the set is made in
    a temporary folder for this process only, with one line on stderr (as the split cache does).
    """
    import atexit
    import shutil
    import tempfile

    from .bapps import default_cache_dir, warn_unwritable_cache

    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = base / name
    if done(target):
        return target
    try:
        base.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=base))
    except OSError as exc:
        warn_unwritable_cache(base, exc.strerror or type(exc).__name__)
        folder = Path(tempfile.mkdtemp(prefix=f"percepmetric-{name}-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        write(folder)
        return folder
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it 0700, private to its owner
        write(tmp)
        os.replace(tmp, target)
    except OSError:
        if not done(target):  # not a lost race with another process: a real failure
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return mask
