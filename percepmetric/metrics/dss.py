"""DSS: the DCT Subband Similarity index of Balanov, Schwartz, Moshe and Peleg (ICIP 2015).

A. Balanov, A. Schwartz, Y. Moshe and N. Peleg, "Image quality assessment based on DCT subband
similarity", IEEE International Conference on Image Processing (ICIP) 2015, pp. 2105-2109.

The numbers follow the authors' MATLAB code ``dss_index.m`` (Version 1.00, (c) 2015 Yair Moshe,
SIPL, Technion; MATLAB File Exchange 53708), ``dss_index(img1, img2)`` scoring ``img1`` with
``img2`` as the reference, both 2-D grey images on 0..255 (the code takes ``double`` of them; its
example passes uint8 images): an RGB image read from an 8-bit file is first turned grey by
MATLAB's ``rgb2gray`` on the uint8 array, which rounds the luma to an integer.

1. Grey: MATLAB's ``rgb2gray`` on 0..255, rounded (:func:`.gmsd.matlab_rgb2gray_255`); a grey
   image is used as it is.
2. Both images cropped to whole 8x8 blocks (``8 * floor(size / 8)``, the last rows and columns
   dropped) and transformed per block by the 8x8 DCT: ``D * block * D'``, ``D = dctmtx(8)``.
   Coefficient ``(m, n)`` of every block forms subband ``(m, n)``, an image of
   ``H/8 x W/8`` pixels.
3. Subband weights: ``w(m, n) = exp(-((m - 0.5)^2 + (n - 0.5)^2) / (2 sigma^2))``, ``m, n = 1..8``,
   ``sigma = 1.55``; subbands with ``w < 1e-2`` are skipped (weight 0): 17 subbands remain
   (``m + n`` small), and the weights are normalised to sum 1 over them.
4. Per subband: local statistics with ``fspecial('gaussian', 3, 1.5)`` (``imfilter``: zero
   border), ``sigma_i^2 = E[s_i^2] - E[s_i]^2`` (negative values set to 0), ``sigma_12`` likewise;
   ``left = (2 sqrt(sigma_1^2 sigma_2^2) + C) / (sigma_1^2 + sigma_2^2 + C)`` with ``C = 300``
   (AC) or ``1000`` (DC); pooled as the mean of its ``k = round(0.05 numel)`` smallest values
   (MATLAB's ``round``: halves away from zero). The DC subband is multiplied by the same pooling
   of ``right = (sigma_12 + C) / (sqrt(sigma_1^2 sigma_2^2) + C)``.
5. ``DSS = sum w(m, n) similarity(m, n)``. 1 for identical images, higher is better.

Batched and written from the formulas: the 17 kept DCT coefficients of every block of both
images by one matrix product, the 3x3 Gaussian as its separable 1-D factors, the pooling by
``topk``. The formula is symmetric in the two images.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from .base import SimilarityIndex
from .fsim import safe_sqrt
from .gmsd import MatlabGreyMetric, matlab_rgb2gray_255
from .matlab import matlab_round

# ---------------------------------------------------------------- constants of dss_index.m

#: ``D = dctmtx(8);`` (dss_index.m line 131; line numbers of the copy named in
#: tests/reference/dss/make_reference.py): the block size of the DCT.
BLOCK = 8
#: ``sigma = 1.55;`` (line 73; weights ``w = real(exp(-((distance.^2)/(2*sigma^2))))``, line 101).
SIGMA_WEIGHT = 1.55
#: ``smallWeightThresh = 1e-2;`` (line 105): subbands weighted below it are skipped.
SMALL_WEIGHT = 1e-2
#: ``C = [1000 300];`` (line 81): the constant of the DC and of the AC subbands.
C_DC, C_AC = 1000.0, 300.0
#: ``window = fspecial('gaussian', 3, 1.5);`` (line 158).
WINDOW_SIGMA = 1.5
#: ``percentile = 0.05;`` (line 171; ``round(percentile * numel(...))``, line 172): the share of
#: worst scores averaged.
PERCENTILE = 0.05


#: Smallest H and W: ``round(0.05 * blocks)`` must be at least 1 (else the code averages an empty
#: list, NaN), i.e. 10 whole blocks; 32x32 (16 blocks) is the smallest square size that has them.
MIN_SIZE = 32


@functools.cache
def kept_subbands() -> tuple[tuple[int, int, float], ...]:
    """``(m, n, weight)`` of the subbands dss_index.m keeps (0-based ``m, n``; weights normalised
    to sum 1), DC first."""
    kept = []
    for m in range(1, BLOCK + 1):
        for n in range(1, BLOCK + 1):
            w = math.exp(-((m - 0.5) ** 2 + (n - 0.5) ** 2) / (2 * SIGMA_WEIGHT**2))
            if w >= SMALL_WEIGHT:
                kept.append((m - 1, n - 1, w))
    total = sum(w for _, _, w in kept)
    return tuple((m, n, w / total) for m, n, w in kept)


def dct_matrix(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """MATLAB's ``dctmtx(8)``: row ``k`` is ``sqrt(2/8) cos(pi (2j + 1) k / 16)``, row 0 ``1 / sqrt(8)``
    (the orthonormal DCT-II)."""
    k = torch.arange(BLOCK, dtype=torch.float64).view(-1, 1)
    j = torch.arange(BLOCK, dtype=torch.float64).view(1, -1)
    d = math.sqrt(2.0 / BLOCK) * torch.cos(math.pi * (2 * j + 1) * k / (2 * BLOCK))
    d[0] = 1.0 / math.sqrt(BLOCK)
    return d.to(dtype=dtype, device=device)


def _subband_basis(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``(64, S)``: column ``s`` maps a flattened 8x8 block to its coefficient ``(m_s, n_s)`` of
    ``D * block * D'`` (``sum_pq D[m, p] block[p, q] D[n, q]``)."""
    d = dct_matrix(torch.float64, torch.device("cpu"))
    cols = [torch.outer(d[m], d[n]).flatten() for m, n, _ in kept_subbands()]
    return torch.stack(cols, dim=1).to(dtype=dtype, device=device)


def dct_subbands(grey: torch.Tensor) -> torch.Tensor:
    """``(B,1,H,W)`` -> ``(B,S,H//8,W//8)``: the kept subbands (:func:`kept_subbands` order) of the
    8x8 block DCT of the image cropped to whole blocks."""
    b, _, h, w = grey.shape
    bh, bw = h // BLOCK, w // BLOCK
    blocks = grey[:, 0, : bh * BLOCK, : bw * BLOCK].reshape(b, bh, BLOCK, bw, BLOCK).transpose(2, 3)
    coeffs = blocks.reshape(b, bh, bw, BLOCK * BLOCK) @ _subband_basis(grey.dtype, grey.device)
    return coeffs.permute(0, 3, 1, 2)


def _gaussian_3x3(t: torch.Tensor) -> torch.Tensor:
    """``imfilter(t, fspecial('gaussian', 3, 1.5))`` on the last two dims (zero border, 'same'):
    the window is the outer product of ``[e, 1, e] / (1 + 2e)``, ``e = exp(-1 / (2 * 1.5^2))``."""
    e = math.exp(-1.0 / (2.0 * WINDOW_SIGMA**2))
    side, centre = e / (1.0 + 2.0 * e), 1.0 / (1.0 + 2.0 * e)
    p = F.pad(t, (0, 0, 1, 1))
    t = torch.add(p[..., :-2, :] + p[..., 2:, :], p[..., 1:-1, :], alpha=centre / side) * side
    p = F.pad(t, (1, 1))
    return torch.add(p[..., :-2] + p[..., 2:], p[..., 1:-1], alpha=centre / side) * side


def local_moments(s1: torch.Tensor, s2: torch.Tensor, with_covariance: bool):
    """``(var1, var2, cov or None)`` of subband maps ``(..., h, w)`` as subband_similarity computes
    them: ``sigma_i^2 = imfilter(s_i.^2, window) - imfilter(s_i, window).^2`` (not yet clamped) and
    ``sigma_12 = imfilter(s_1.*s_2, window) - mu_1.*mu_2`` (zero border: the window's weights
    outside the image count as zeros)."""
    products = (s1, s2, s1 * s1, s2 * s2) + ((s1 * s2,) if with_covariance else ())
    stats = _gaussian_3x3(torch.stack(products))
    m1, m2 = stats[0], stats[1]
    cov = stats[4] - m1 * m2 if with_covariance else None
    return stats[2] - m1 * m1, stats[3] - m2 * m2, cov


def _worst_mean(values: torch.Tensor, k: int) -> torch.Tensor:
    """``(..., H, W)`` -> ``(...)``: the mean of the ``k`` smallest values of each map
    (``mean(sort(v(:))(1:k))``)."""
    return torch.topk(values.flatten(-2), k, dim=-1, largest=False, sorted=False).values.mean(dim=-1)


def dss(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, quantize: bool | str = "auto") -> torch.Tensor:
    """DSS of each pair, ``(N,)``; ``x`` the reference (``dss_index(y, x)``; the index is symmetric).

    ``x``, ``y``: ``(N,C,H,W)`` in [0, data_range], C = 1 or 3, H and W at least :data:`MIN_SIZE`.
    """
    n = x.shape[0]
    grey = torch.cat((matlab_rgb2gray_255(x, data_range, quantize), matlab_rgb2gray_255(y, data_range, quantize)))
    # float64 from here on (the maps are 17/64 of the image): where a subband is flat in one image
    # its local variance is 0 in MATLAB's doubles, and float32's rounding noise there (~0.5 on the
    # DC subband) would be multiplied by the other image's variance in sqrt(var1 var2): up to 1.5e-4
    # off on goldhill/JPEG.
    bands = dct_subbands(grey.to(torch.float64))  # (2n, S, h, w)
    s1, s2 = bands[:n], bands[n:]
    var1, var2, _ = local_moments(s1[:, 1:], s2[:, 1:], with_covariance=False)  # AC subbands
    dc1, dc2, cov_dc = local_moments(s1[:, :1], s2[:, :1], with_covariance=True)
    var1, var2 = torch.cat((dc1, var1), dim=1).clamp(min=0.0), torch.cat((dc2, var2), dim=1).clamp(min=0.0)
    root = safe_sqrt(var1 * var2)
    c = torch.full((bands.shape[1], 1, 1), C_AC, dtype=bands.dtype, device=bands.device)
    c[0] = C_DC
    left = (2.0 * root + c) / (var1 + var2 + c)
    k = matlab_round(PERCENTILE * bands.shape[-2] * bands.shape[-1])
    similarity = _worst_mean(left, k)  # (n, S)
    right = (cov_dc[:, 0] + C_DC) / (root[:, 0] + C_DC)
    similarity = torch.cat((similarity[:, :1] * _worst_mean(right, k).unsqueeze(1), similarity[:, 1:]), dim=1)
    weights = torch.tensor([w for _, _, w in kept_subbands()], dtype=similarity.dtype, device=similarity.device)
    return (similarity @ weights).to(x.dtype)


class DSS(MatlabGreyMetric, SimilarityIndex):
    """DSS (Balanov et al. 2015): DCT subband similarity (1 for identical images).

    Reproduces the authors' ``dss_index.m`` (see the module's doc): grey input as it is, RGB
    through MATLAB's ``rgb2gray`` (rounded to uint8 as MATLAB does for 8-bit images), on 0..255;
    the 8x8 block DCT of the image cropped to whole blocks, 17 subbands weighted by a Gaussian of
    their frequency, each scored by the mean of its worst 5% local variance similarities (the DC
    subband also by its covariance term). Symmetric in its inputs. Needs 32x32 pixels or more.

    Options: ``data_range`` (1 or 255, ...), ``convention="matlab"`` (dss_index.m), ``quantize``
    (``"auto"``: round MATLAB's grey of RGB images whose values lie on the 8-bit grid, as
    ``rgb2gray`` of a uint8 image; ``True``: always; ``False``: never). ``to_distance(s) = 1 - s``.
    """

    name = "dss"
    differentiable = True
    symmetric = True
    distance_name = "1-dss"
    min_size = MIN_SIZE
    channels = (1, 3)


    def formula(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return dss(x, y, self.data_range, self.quantize)

