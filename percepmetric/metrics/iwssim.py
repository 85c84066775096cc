"""IW-SSIM: the information content weighted SSIM of Wang and Li (2011).

Z. Wang and Q. Li, "Information Content Weighting for Perceptual Image Quality Assessment",
IEEE Trans. Image Processing 20(5):1185-1198, 2011.

The numbers follow the authors' MATLAB code (``iwssim.m``, ``scale_quality_maps.m``,
``info_content_weight_map.m``, ``imenlarge2.m``, release ``iwssim_iwpsnr.zip``; with
matlabPyrTools' ``buildLpyr``), ``iwssim(oimg, img)`` with its defaults, ``oimg`` the reference,
fed as their evaluation feeds it: a grey ``double`` image on 0..255, an RGB image read from an
8-bit file first turned grey by MATLAB's ``rgb2gray`` of the uint8 array (rounded to integers,
:func:`.gmsd.matlab_rgb2gray_255`).

1. Laplacian pyramids of both images, ``Nsc = 5`` levels (``buildLpyr``, binom5 filters,
   reflect1 edges: :func:`.pyramids.laplacian_pyramid`).
2. Every level ``s``: ``filter2(win, ., 'valid')`` with ``win`` the 11x11 Gaussian of sigma
   1.5 normalised to sum 1 (iwssim.m, ``win_size = 11; gwin_std = 1.5``), ``C1 = (K1 L)^2``,
   ``C2 = (K2 L)^2`` with ``K = [0.01 0.03]``, ``L = 255``; variances clipped at 0;
   ``cs = (2 s12 + C2) / (s1^2 + s2^2 + C2)``; on the coarsest level ``cs * l`` with
   ``l = (2 mu1 mu2 + C1) / (mu1^2 + mu2^2 + C1)`` (scale_quality_maps.m).
3. Levels 1..4: the information content weight (info_content_weight_map.m) of a Gaussian scale
   mixture model of the reference band: a 3x3 mean (``filter2 'same'``, zero padding) gives
   ``g = cov / (var_x + 1e-15)`` and ``vv = var_y - g cov`` (``g = 0, vv = var_y`` where
   ``var_x < 1e-15``; ``g = vv = 0`` where ``var_y < 1e-15``); each interior coefficient's
   neighbourhood, its 3x3 block plus (levels 1..3) its parent from the next level enlarged by
   ``imenlarge2`` (MATLAB bilinear ``imresize`` to ``4M-3``, linear extrapolation of one more
   sample each side, every second sample), makes ``Y`` (``nexp x N``); ``C_u = Y'Y / nexp``,
   eigen-decomposed with negative eigenvalues zeroed and the rest rescaled to keep the trace;
   ``s = diag(Y C_u^-1 Y') / N``; ``w = sum_j log2(1 + ((vv + (1 + g^2) sn) s L_j + sn vv) / sn^2)``
   with ``sn = 0.4``, values below 1e-15 set to 0.
4. ``wmcs_s = sum(cs w) / sum(w)`` over the weight map cropped by 4 to the ``valid`` size
   (plain mean on level 5); ``IW-SSIM = prod_s wmcs_s ^ beta_s`` with
   ``beta = [0.0448 0.2856 0.3001 0.2363 0.1333]`` (normalised to sum 1).

Where the authors' code has no real answer, this returns one (documented, never at parity
pairs): a level's ``wmcs`` below 0 counts as 0 (MATLAB raises a negative number to a fractional
power and returns a complex number); weights summing to 0 (a band with no content, e.g. a flat
image) fall back to the plain mean (MATLAB: 0/0 = NaN); ``C_u^-1`` is the pseudo-inverse over
its positive eigenvalues (MATLAB's ``inv`` of a singular matrix gives Inf/NaN).

The GSM estimation is batched: one ``(B, 10, 10)`` covariance per image and level, one
``torch.linalg.eigh``. The information weights (covariance, eigenvalues, a product of ten
factors up to ~1e10), the low-pass level's SSIM and the pooling are computed in float64; the
pyramid and the band-pass SSIM maps in the input's dtype (see :func:`iw_ssim_255`); the value
is returned in the input's dtype. The eigen-decomposition is taken on
the detached covariance (its gradient through repeated eigenvalues is undefined): gradients
flow through the neighbourhoods, the gain and the SSIM maps, not through ``C_u`` itself.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import SimilarityIndex, cached_table
from .gmsd import MatlabGreyMetric, matlab_rgb2gray_255
from .pyramids import laplacian_pyramid
from .resize import resize_matrix
from .ssim import Window, filter_valid, gaussian_window

# ---------------------------------------------------------------- constants of iwssim.m

#: ``Nsc = 5`` (iwssim.m, ``if (~exist('Nsc')) Nsc = 5;``).
LEVELS = 5
#: ``K = [0.01 0.03]``, ``L = 255`` (iwssim.m defaults).
K1, K2, L_RANGE = 0.01, 0.03, 255.0
#: ``weight = [0.0448 0.2856 0.3001 0.2363 0.1333]`` (iwssim.m; normalised by its sum there).
SCALE_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
#: ``win_size = 11; gwin_std = 1.5`` (iwssim.m; ``fspecial('gaussian', 11, 1.5)`` / its sum).
WIN_SIZE, WIN_SIGMA = 11, 1.5
#: ``blk_size = 3`` (spatial neighbourhood), ``parent = 1``, ``sigma_nsq = 0.4`` (iwssim.m).
BLOCK, SIGMA_NSQ = 3, 0.4
#: ``tol = 1e-15`` (info_content_weight_map.m).
TOL = 1e-15
#: ``bound = ceil((win_size-1)/2)``, ``bound1 = bound - floor((blk_size-1)/2)`` (iwssim.m).
BOUND = math.ceil((WIN_SIZE - 1) / 2)
BOUND1 = BOUND - (BLOCK - 1) // 2
#: iwssim.m refuses ``min(size(oimg)) < win_size * 2^(Nsc-1)`` = 176.
MIN_SIZE = WIN_SIZE * 2 ** (LEVELS - 1)


@cached_table(32)
def _enlarge_matrix64(m: int, device: torch.device) -> torch.Tensor:
    """``(2m, m)``: imenlarge2.m along one axis. ``imresize(im, 4m-3, 'bilinear')`` (MATLAB's,
    :mod:`.resize`), a linear extrapolation of one sample before and after
    (``t(1) = 2 t(2) - t(3)``), then samples 1, 3, 5, ... of the ``4m - 1``."""
    r = resize_matrix(m, 4 * m - 3, (4 * m - 3) / m, "bilinear", dtype=torch.float64, device=device)
    t = torch.cat((2 * r[:1] - r[1:2], r, 2 * r[-1:] - r[-2:-1]))
    return t[::2].contiguous()


def _mean3_same(v: torch.Tensor) -> torch.Tensor:
    """``filter2(ones(3)/9, v, 'same')`` (zero padding) of ``(B, H, W)`` maps: box sums of
    slices (float64 pooling and convolutions have no fast path on CPU)."""
    p = F.pad(v, (1, 1, 1, 1))
    rows = p[..., :-2] + p[..., 1:-1] + p[..., 2:]
    return (rows[..., :-2, :] + rows[..., 1:-1, :] + rows[..., 2:, :]) * (1.0 / 9.0)


def _gauss_valid(v: torch.Tensor, w: tuple[float, ...]) -> torch.Tensor:
    """``filter2(g' * g, v, 'valid')`` of ``(B, H, W)`` maps for the symmetric 1-D ``g = w``
    (odd length k): ``(B, H-k+1, W-k+1)``, columns then rows: in float64 as weighted sums of
    slices (float64 convolutions have no fast path on CPU), else :func:`.ssim.filter_valid`."""
    if v.dtype != torch.float64:  # float32: convolutions / BLAS have fast paths there
        return filter_valid(v, Window(torch.tensor(w, dtype=v.dtype, device=v.device)))
    k = len(w)
    c = k // 2
    for dim in (-1, -2):
        n = v.shape[dim] - k + 1
        out = v.narrow(dim, c, n) * w[c]
        for i in range(c):
            out = out.add(torch.add(v.narrow(dim, i, n), v.narrow(dim, k - 1 - i, n)), alpha=w[i])
        v = out
    return v


def info_weights(yo: torch.Tensor, yd: torch.Tensor, parent: torch.Tensor | None) -> torch.Tensor:
    """info_content_weight_map.m for one level: ``(B, H, W)`` bands of the reference and the
    distorted image, the reference's next level (or None) -> ``(B, H-2, W-2)`` weights."""
    b, h, w = yo.shape
    mx, my = _mean3_same(yo), _mean3_same(yd)
    cov = _mean3_same(yo * yd) - mx * my
    ssx = (_mean3_same(yo * yo) - mx * mx).clamp(min=0.0)
    ssy = (_mean3_same(yd * yd) - my * my).clamp(min=0.0)
    g = cov / (ssx + TOL)
    vv = ssy - g * cov
    flat_x = ssx < TOL
    g = torch.where(flat_x, torch.zeros_like(g), g)
    vv = torch.where(flat_x, ssy, vv)
    flat_y = ssy < TOL
    g = torch.where(flat_y, torch.zeros_like(g), g)
    vv = torch.where(flat_y, torch.zeros_like(vv), vv)
    g, vv = g[:, 1:-1, 1:-1], vv[:, 1:-1, 1:-1]

    # Neighbourhoods of the interior coefficients: the 3x3 block (column-major order in the
    # authors' code; the quadratic form below does not depend on the order) and the parent.
    hi, wi = h - 2, w - 2
    cols = [yo[:, dy : dy + hi, dx : dx + wi] for dy in range(3) for dx in range(3)]
    if parent is not None:
        eh = _enlarge_matrix64(parent.shape[-2], parent.device).to(parent.dtype)[:h]
        ew = _enlarge_matrix64(parent.shape[-1], parent.device).to(parent.dtype)[:w]
        cols.append((eh @ parent @ ew.T)[:, 1:-1, 1:-1])
    n_dim = len(cols)
    y = torch.stack(cols, dim=1).reshape(b, n_dim, hi * wi)  # Y', (B, N, nexp)
    cu = (y @ y.transpose(1, 2)) / (hi * wi)
    lam, q = torch.linalg.eigh(cu.detach())
    positive = lam * (lam > 0)
    kept = positive.sum(dim=1, keepdim=True)
    lam = positive * lam.sum(dim=1, keepdim=True) / (kept + (kept == 0).to(kept.dtype))
    inv_lam = torch.where(lam > 0, 1.0 / torch.where(lam > 0, lam, torch.ones_like(lam)), torch.zeros_like(lam))
    proj = q.transpose(1, 2) @ y  # (B, N, nexp): Q' Y'
    ss = ((proj * proj) * inv_lam.unsqueeze(-1)).sum(dim=1).reshape(b, hi, wi) / n_dim
    a = (vv + (1.0 + g * g) * SIGMA_NSQ) * ss
    # sum_j log2(1 + (a L_j + sn vv) / sn^2) as log2 of the product (one logarithm, not N;
    # each factor is below ~1e10 on 0..255 images, the product far from float64's range)
    a = a * (1.0 / (SIGMA_NSQ * SIGMA_NSQ))
    c = 1.0 + vv * (1.0 / SIGMA_NSQ)
    prod = torch.addcmul(c, a, lam[:, 0].view(b, 1, 1))
    for j in range(1, n_dim):
        prod = prod * torch.addcmul(c, a, lam[:, j].view(b, 1, 1))
    infow = torch.log2(prod)
    return torch.where(infow < TOL, torch.zeros_like(infow), infow)


def iw_ssim_255(ref: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """IW-SSIM of ``(B, H, W)`` grey images on 0..255, ``ref`` the reference -> ``(B,)`` float64.

    The pyramid and the SSIM maps of the band-pass levels are computed in the input's dtype
    (float32 is enough there: the bands have local means near 0, so ``E[x^2] - E[x]^2`` loses
    little; measured within 2e-7 of float64 on the reference pairs); the low-pass level's SSIM
    (means up to 16 x 255), the information weights and the pooling in float64.
    """
    b = ref.shape[0]
    f64 = torch.float64
    pyr = laplacian_pyramid(torch.cat((ref, dist)), LEVELS)
    win = tuple(gaussian_window(WIN_SIZE, WIN_SIGMA, f64, torch.device("cpu")).tolist())
    c1, c2 = (K1 * L_RANGE) ** 2, (K2 * L_RANGE) ** 2
    total_weight = sum(SCALE_WEIGHTS)
    log_score = ref.new_zeros(b, dtype=f64)
    for s, band in enumerate(pyr):
        coarsest = s == LEVELS - 1
        if coarsest:
            band = band.to(f64)
        yo, yd = band[:b], band[b:]
        mu1, mu2 = _gauss_valid(yo, win), _gauss_valid(yd, win)
        s12 = _gauss_valid(yo * yd, win) - mu1 * mu2
        s1 = (_gauss_valid(yo * yo, win) - mu1 * mu1).clamp(min=0.0)
        s2 = (_gauss_valid(yd * yd, win) - mu2 * mu2).clamp(min=0.0)
        cs = ((2.0 * s12 + c2) / (s1 + s2 + c2)).to(f64)
        if coarsest:
            cs = cs * (2.0 * mu1 * mu2 + c1) / (mu1 * mu1 + mu2 * mu2 + c1)
            wmcs = cs.flatten(1).mean(dim=1)
        else:
            parent = pyr[s + 1][:b].to(f64) if s < LEVELS - 2 else None
            iw = info_weights(yo.to(f64), yd.to(f64), parent)[:, BOUND1:-BOUND1, BOUND1:-BOUND1]
            total = iw.flatten(1).sum(dim=1)
            has = total > 0
            weighted = (cs * iw).flatten(1).sum(dim=1) / torch.where(has, total, torch.ones_like(total))
            wmcs = torch.where(has, weighted, cs.flatten(1).mean(dim=1))
        # a negative wmcs (MATLAB: complex result) counts as 0; log of a tiny floor keeps gradients finite
        log_score = log_score + (SCALE_WEIGHTS[s] / total_weight) * torch.log(wmcs.clamp(min=1e-300))
    score = torch.exp(log_score)
    return torch.where(log_score < -690.0, torch.zeros_like(score), score)


def iw_ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, quantize: bool | str = "auto") -> torch.Tensor:
    """IW-SSIM of each pair ``(N,C,H,W)``, ``x`` the reference -> ``(N,)`` in the input's dtype."""
    work = torch.promote_types(x.dtype, torch.float32)  # float16 / bfloat16 inputs compute in float32
    grey_x = matlab_rgb2gray_255(x.to(work), data_range, quantize)[:, 0]
    grey_y = matlab_rgb2gray_255(y.to(work), data_range, quantize)[:, 0]
    return iw_ssim_255(grey_x, grey_y).to(x.dtype)


class IWSSIM(MatlabGreyMetric, SimilarityIndex):
    """IW-SSIM (Wang & Li 2011): SSIM on a Laplacian pyramid pooled with information content weights; 1 at best.

    Reproduces the authors' ``iwssim.m`` with its defaults (see the module's doc): grey input as
    it is, RGB through MATLAB's ``rgb2gray`` (rounded as for a uint8 image), 0..255 scale,
    5-level Laplacian pyramid, 11x11 Gaussian window, GSM information weights with parent.
    ``x`` is the reference: the weights come from its pyramid, so the metric is asymmetric.
    Needs H, W >= 176 (iwssim.m's ``11 * 2^4``).

    Options: ``data_range``, ``convention="matlab"`` (iwssim.m), ``quantize`` (``"auto"``: round
    MATLAB's grey of images on the 8-bit grid, ``True``, ``False``). ``to_distance`` is ``1 - value``.
    """

    name = "iw_ssim"
    differentiable = True
    symmetric = False
    min_size = MIN_SIZE
    channels = (1, 3)
    distance_name = "1-iw_ssim"


    def formula(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return iw_ssim(x, y, self.data_range, self.quantize)

