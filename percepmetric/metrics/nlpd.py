"""NLPD: the Normalized Laplacian Pyramid Distance of Laparra, Ballé, Berardino and Simoncelli (2016).

V. Laparra, J. Ballé, A. Berardino and E. P. Simoncelli, "Perceptual image quality assessment
using a normalized Laplacian pyramid", Electronic Imaging 2016 (16), Human Vision and Electronic
Imaging, pp. 1-6.

The numbers follow the authors' MATLAB code ``NLP_dist.m`` (``NLP_dist(IM_1, IM_2)``, ``IM_1``
the reference, both grey ``double`` images in [0, 1]; the file's header says so), as the
evaluations feed it: ``double(rgb2gray(I)) / 255`` of an RGB image read from an 8-bit file,
MATLAB's ``rgb2gray`` rounding the luma to an integer (uint8).

1. Grey: MATLAB's ``rgb2gray`` on 0..255, rounded (see :func:`.gmsd.matlab_rgb2gray_255`), then
   divided by 255. A grey image is used as it is.
2. Laplacian pyramid of 6 levels (``laplacian_pyramid_s``, Tom Mertens' code with Burt and
   Adelson's filter ``f = [.05 .25 .4 .25 .05]``, ``filter = f' * f``). For each of the first 5
   levels: ``I = imfilter(J, filter, 'symmetric')(1:2:end, 1:2:end)`` (MATLAB's mirrored border,
   edge pixel included); the level is ``J - upsample(I)``, where ``upsample`` pads ``I`` by one
   replicated pixel, puts ``4 I`` on every other row and column of a zero image twice the size,
   filters it (``imfilter``, zero border: never reached after the crop) and crops back to
   ``J``'s size (``odd = 2 size(I) - size(J)`` takes the last row/column off odd sizes). The
   6th level is the last low-pass ``J``.
3. Divisive normalisation per level ``b``: ``DN = L ./ (sigma_b + conv2(abs(L), F2_b, 'same'))``
   (``conv2``: true convolution, zero border) with the sigmas and 5x5 filters of ``DN_filters``
   (learned on the McGill data set).
4. ``NLPD = mean_b sqrt(mean((DN_b(x) - DN_b(y))^2))``: the root mean square difference of each
   level, averaged over the 6 levels. 0 for identical images, larger is worse, unbounded.

Written from the formulas: the pyramid's filtering runs separably and polyphase (the
upsampling's zeros are never multiplied), the normalisation's convolution as four or five
shifted sums, both images of every pair through one pyramid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .fsim import safe_sqrt
from .gmsd import MatlabGreyMetric, matlab_rgb2gray_255

# ---------------------------------------------------------------- constants of NLP_dist.m

#: ``N_levels = 6;`` (NLP_dist.m lines 32 and 53; line numbers of the copy named in
#: tests/reference/nlpd/make_reference.py).
N_LEVELS = 6
#: ``f = [.05, .25, .4, .25, .05];  % original [Burt and Adelson, 1983]`` (NLP_dist.m line 140),
#: the 1-D taps of the pyramid's 5x5 filter ``f' * f``.
BURT_ADELSON = (0.05, 0.25, 0.4, 0.25, 0.05)
#: ``sigmas = [0.0248 0.0185 0.0179 0.0191 0.0220 0.2782];`` (NLP_dist.m line 71), finest level first.
SIGMAS = (0.0248, 0.0185, 0.0179, 0.0191, 0.0220, 0.2782)
#: The non-zero entries of ``DN_filts(b).F2`` (NLP_dist.m lines 78-109), 5x5 filters with centre (3, 3), as
#: ``(row, column, weight)``, 1-based as in MATLAB. Level 1 also has ``0.0072`` at (3, 5).
DN_FILTERS = (
    ((2, 3, 0.1011), (3, 2, 0.1493), (3, 4, 0.1460), (3, 5, 0.0072), (4, 3, 0.1015)),
    ((2, 3, 0.0757), (3, 2, 0.1986), (3, 4, 0.1846), (4, 3, 0.0837)),
    ((2, 3, 0.0477), (3, 2, 0.2138), (3, 4, 0.2243), (4, 3, 0.0467)),
    ((3, 2, 0.2503), (3, 4, 0.2616)),
    ((3, 2, 0.2598), (3, 4, 0.2552)),
    ((3, 2, 0.2215), (3, 4, 0.0717)),
)



def _symmetric_index(n: int, before: int, after: int, device: torch.device) -> torch.Tensor:
    """Indices of MATLAB's ``padarray(..., 'symmetric')`` along a side of ``n`` pixels, also when
    the border is wider than the side (the mirror image repeats with period ``2 n``, as
    padarray's ``mod`` indexing does: a 1-pixel side is repeated)."""
    i = torch.remainder(torch.arange(-before, n + after, device=device), 2 * n)
    return torch.where(i >= n, 2 * n - 1 - i, i)


def _blur_decimate(j: torch.Tensor, dim: int) -> torch.Tensor:
    """Along ``dim`` (-2 or -1): ``imfilter(J, f, 'symmetric')`` then ``(1:2:end)``.

    Output ``m`` (0-based) is ``sum_k f[k] J[2m + k - 2]``, the indices mirrored at the borders.
    """
    n = j.shape[dim]
    m = (n + 1) // 2
    p = j.index_select(dim, _symmetric_index(n, 2, 2, j.device))
    f0, f1, f2 = BURT_ADELSON[:3]

    def tap(k: int) -> torch.Tensor:  # p[k : k + 2m - 1 : 2] along dim
        return p[..., k : k + 2 * m - 1 : 2, :] if dim == -2 else p[..., k : k + 2 * m - 1 : 2]

    return f0 * (tap(0) + tap(4)) + f1 * (tap(1) + tap(3)) + f2 * tap(2)


def _upsample(i: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """Along ``dim`` (-2 or -1) of ``(B,1,h,w)``: ``laplacian_pyramid_s``'s ``upsample`` of ``I``
    to ``size`` samples.

    With ``P`` = ``I`` padded by one replicated sample, the zero-interleaved ``2 P`` filtered by
    ``f`` and cropped gives, for ``I``'s sample ``m``, the output pair
    ``2m: 2 (f0 I[m-1] + f2 I[m] + f0 I[m+1])`` and ``2m+1: 2 f1 (I[m] + I[m+1])``
    (indices clamped to ``I``: the replicated border); ``size`` (``2 n`` or ``2 n - 1``) drops
    the last odd sample. The factor 2 per dimension is the code's ``4 I``.
    """
    n = i.shape[dim]
    p = F.pad(i, (1, 1, 0, 0) if dim == -1 else (0, 0, 1, 1), mode="replicate")
    f0, f1, f2 = BURT_ADELSON[:3]
    prev, mid, nxt = p.narrow(dim, 0, n), p.narrow(dim, 1, n), p.narrow(dim, 2, n)
    even = (2.0 * f0) * (prev + nxt) + (2.0 * f2) * mid
    odd = (2.0 * f1) * (mid + nxt)
    shape = list(i.shape)
    shape[dim] = 2 * n
    out = torch.stack((even, odd), dim=-1 if dim == -1 else -2).reshape(shape)
    return out.narrow(dim, 0, size)


def laplacian_pyramid(img: torch.Tensor) -> list[torch.Tensor]:
    """``(B,1,H,W)`` -> the :data:`N_LEVELS` levels of ``laplacian_pyramid_s``, finest first
    (sizes ``H, ceil(H/2), ...``; the last is the low-pass residual)."""
    levels = []
    j = img
    for _ in range(N_LEVELS - 1):
        low = _blur_decimate(_blur_decimate(j, -2), -1)
        up = _upsample(_upsample(low, j.shape[-2], -2), j.shape[-1], -1)
        levels.append(j - up)
        j = low
    levels.append(j)
    return levels


def divisive_normalization(level: torch.Tensor, band: int) -> torch.Tensor:
    """``L ./ (sigma + conv2(abs(L), F2, 'same'))`` for pyramid level ``band`` (0-based).

    ``conv2`` is a true convolution: ``F2``'s entry at (row, column) weighs
    ``|L|(i + 3 - row, j + 3 - column)``, zero outside the image.
    """
    h, w = level.shape[-2:]
    a = F.pad(level.abs(), (2, 2, 2, 2))
    total = torch.full_like(level, SIGMAS[band])
    for row, col, weight in DN_FILTERS[band]:
        di, dj = 3 - row, 3 - col
        total = torch.add(total, a[..., 2 + di : 2 + di + h, 2 + dj : 2 + dj + w], alpha=weight)
    return level / total


def nlpd(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, quantize: bool | str = "auto") -> torch.Tensor:
    """NLPD of each pair, ``(N,)``; ``x`` the reference (the distance is symmetric).

    ``x``, ``y``: ``(N,C,H,W)`` in [0, data_range], C = 1 or 3 (RGB through MATLAB's ``rgb2gray``,
    rounded as for a uint8 image when ``quantize`` says so, see :class:`NLPD`).
    """
    n = x.shape[0]
    grey = torch.cat((matlab_rgb2gray_255(x, data_range, quantize), matlab_rgb2gray_255(y, data_range, quantize)))
    grey = grey * (1.0 / 255.0)
    total = torch.zeros(n, dtype=grey.dtype, device=grey.device)
    for band, level in enumerate(laplacian_pyramid(grey)):
        dn = divisive_normalization(level, band)
        mse = (dn[:n] - dn[n:]).pow(2).flatten(1).mean(dim=1)
        total = total + torch.where(mse > 0, safe_sqrt(mse), torch.zeros_like(mse))
    return total / N_LEVELS


class NLPD(MatlabGreyMetric):
    """NLPD (Laparra et al. 2016): normalized Laplacian pyramid distance (0 for identical images).

    Reproduces the authors' ``NLP_dist.m`` (see the module's doc): grey input as it is, RGB
    through MATLAB's ``rgb2gray`` (rounded to uint8 as MATLAB does for 8-bit images), on [0, 1];
    a 6-level Laplacian pyramid (Burt and Adelson's filter, mirrored borders), each level
    divided by ``sigma + conv2(|L|, F2)`` with the authors' learned constants, and the mean over
    levels of the root mean square difference. Unbounded. ``x`` is the reference (the distance
    is symmetric).

    Options: ``data_range`` (1 or 255, ...), ``convention="matlab"`` (NLP_dist.m), ``quantize``
    (``"auto"``: round MATLAB's grey of RGB images whose values lie on the 8-bit grid, as
    ``rgb2gray`` of a uint8 image; ``True``: always; ``False``: never). The value is already a
    distance.
    """

    name = "nlpd"
    lower_is_better = True
    differentiable = True
    symmetric = True
    min_size = 1
    channels = (1, 3)


    def formula(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nlpd(x, y, self.data_range, self.quantize)
