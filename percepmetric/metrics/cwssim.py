"""CW-SSIM: the complex wavelet structural similarity of Sampat, Wang, Gupta, Bovik and Markey (2009).

M. P. Sampat, Z. Wang, S. Gupta, A. C. Bovik and M. K. Markey, "Complex Wavelet Structural
Similarity: A New Image Similarity Index", IEEE Trans. Image Processing 18(11):2385-2401, 2009.

The numbers follow the authors' MATLAB code ``cwssim_index.m`` (Sampat, Wang, Bovik, version 1.0,
MATLAB Central File Exchange 43017; with matlabPyrTools' ``buildSCFpyr``) called as
``cwssim_index(img1, img2, 4, 8, 0, 0)`` (4 levels, 8 orientations, ``guardb = 0``, ``K = 0``:
the values pyiqa calibrates its ``cw_ssim`` against), ``img1`` the reference, a grey ``double``
image on 0..255; an RGB image read from an 8-bit file is first turned grey by MATLAB's
``rgb2gray`` of the uint8 array (rounded, :func:`.gmsd.matlab_rgb2gray_255`).

1. The complex steerable pyramid of both images, ``buildSCFpyr(img, 4, 7)`` (frequency domain,
   :func:`.pyramids.scf_bands`); only the 8 oriented bands of level 4 are used
   (``bandind = i + (level-1)*or + 1``).
2. Per band: ``c = b1 conj(b2)``, ``v = |b1|^2 + |b2|^2``, both averaged over 7x7 windows
   (``filter2(ones(7)/49, ., 'valid')``), ``cssim = (2 |c| + K) / (v + K)``.
3. ``band_cssim = sum(cssim .* w)`` with ``w = fspecial('gaussian', s - 6, s(1)/4)``, ``s`` the
   level-4 band size (weights summing to 1); CW-SSIM is the mean over the 8 orientations.

The image is transformed once (one ``fft2`` per image, float64); the level-4 bands are the
spectrum's central crop times 8 cached masks, one batched ``ifft2``. Where both bands vanish on
a whole window (``v = 0``; flat images) ``cssim`` is 1 (MATLAB: 0/0 = NaN with ``K = 0``).
The value is returned in the input's dtype. CW-SSIM is symmetric in its inputs (``|c|`` and
``v`` are), to rounding.
"""

from __future__ import annotations

import torch

from .base import SimilarityIndex, cached_table
from .fsim import safe_sqrt
from .gmsd import MatlabGreyMetric, matlab_rgb2gray_255
from .pyramids import scf_bands

#: ``cwssim_index(img1, img2, level, or, guardb, K)`` as called: ``4, 8, 0, 0``.
LEVEL, ORIENTATIONS, GUARDB, K_CONST = 4, 8, 0, 0.0
#: ``winsize = 7; window = ones(7)/49`` (cwssim_index.m).
WIN_SIZE = 7
#: buildSCFpyr refuses ``ht > floor(log2(min(size(im)))) - 2``: 4 levels need 64 pixels.
MIN_SIZE = 2 ** (LEVEL + 2)


@cached_table(16)
def _pool_weights64(h: int, w: int, device: torch.device) -> torch.Tensor:
    """``fspecial('gaussian', [h w] - 6, h / 4)`` (float64): ``exp(-(x^2 + y^2) / (2 sigma^2))``
    on the centred grid, values below ``eps * max`` zeroed, normalised to sum 1."""
    sigma = h / 4.0
    m, n = h - WIN_SIZE + 1, w - WIN_SIZE + 1
    y = torch.arange(m, dtype=torch.float64, device=device) - (m - 1) / 2
    x = torch.arange(n, dtype=torch.float64, device=device) - (n - 1) / 2
    g = torch.exp(-(y[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma * sigma))
    g = torch.where(g < torch.finfo(torch.float64).eps * g.max(), torch.zeros_like(g), g)
    return g / g.sum()


def _box7_valid(v: torch.Tensor) -> torch.Tensor:
    """``filter2(ones(7)/49, v, 'valid')`` of real ``(..., H, W)`` maps (sliding sums)."""
    k = WIN_SIZE
    h, w = v.shape[-2:]
    c = torch.cumsum(torch.nn.functional.pad(v, (1, 0, 1, 0)), dim=-1).cumsum(dim=-2)
    s = c[..., k:, k:] - c[..., :-k, k:] - c[..., k:, :-k] + c[..., :-k, :-k]
    return s * (1.0 / (k * k))


def cw_ssim_255(ref: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """CW-SSIM of ``(B, H, W)`` grey images on 0..255 -> ``(B,)`` float64."""
    b = ref.shape[0]
    bands = scf_bands(torch.cat((ref, dist)), LEVEL, ORIENTATIONS)
    b1, b2 = bands[:b], bands[b:]
    corr = b1 * b2.conj()
    varr = b1.real ** 2 + b1.imag ** 2 + b2.real ** 2 + b2.imag ** 2
    stats = _box7_valid(torch.stack((corr.real, corr.imag, varr)))
    cre, cim, v = stats[0], stats[1], stats[2]
    num = 2.0 * safe_sqrt(cre * cre + cim * cim) + K_CONST
    den = v + K_CONST
    positive = den > 0
    cssim = torch.where(positive, num / torch.where(positive, den, torch.ones_like(den)), torch.ones_like(den))
    h, w = bands.shape[-2:]
    weights = _pool_weights64(h, w, ref.device)
    return (cssim * weights).sum(dim=(-2, -1)).mean(dim=1)


def cw_ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, quantize: bool | str = "auto") -> torch.Tensor:
    """CW-SSIM of each pair ``(N,C,H,W)``, ``x`` the reference -> ``(N,)`` in the input's dtype."""
    grey_x = matlab_rgb2gray_255(x, data_range, quantize)[:, 0]
    grey_y = matlab_rgb2gray_255(y, data_range, quantize)[:, 0]
    return cw_ssim_255(grey_x, grey_y).to(x.dtype)


class CWSSIM(MatlabGreyMetric, SimilarityIndex):
    """CW-SSIM (Sampat et al. 2009): SSIM of complex steerable pyramid bands, tolerant of small shifts; 1 at best.

    Reproduces the authors' ``cwssim_index.m`` with ``level = 4, or = 8, guardb = 0, K = 0`` (see
    the module's doc): grey input as it is, RGB through MATLAB's ``rgb2gray`` (rounded as for a
    uint8 image), 0..255 scale, the 8 level-4 bands of ``buildSCFpyr``, 7x7 windows, Gaussian
    pooling. Needs H, W >= 64 (buildSCFpyr's 4 levels).

    Options: ``data_range``, ``convention="matlab"`` (cwssim_index.m), ``quantize`` (``"auto"``:
    round MATLAB's grey of images on the 8-bit grid, ``True``, ``False``). ``to_distance`` is ``1 - value``.
    """

    name = "cw_ssim"
    differentiable = True
    symmetric = True
    min_size = MIN_SIZE
    channels = (1, 3)
    distance_name = "1-cw_ssim"


    def formula(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return cw_ssim(x, y, self.data_range, self.quantize)


