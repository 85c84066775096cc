"""VIF and VIF-P: the Visual Information Fidelity of Sheikh and Bovik (2006), as the authors' MATLAB code.

H. R. Sheikh and A. C. Bovik, "Image information and visual quality", IEEE Trans. Image
Processing 15(2):430-444, 2006.

Both follow the LIVE releases (H. R. Sheikh, 2005), on grey ``double`` images on 0..255 as an
evaluation gives them: an RGB image read from an 8-bit file is first made grey by MATLAB's
``rgb2gray`` of the uint8 array (rounded to an integer), see :func:`.gmsd.matlab_rgb2gray_255`.
``x`` is the reference, ``y`` the distorted image: neither index is symmetric. 1 for identical
images, lower for distortions, above 1 for a contrast enhancement of the reference.

**VIF** (``vifvec.m`` with ``vifsub_est_M.m``, ``refparams_vecgsm.m``, ``ind2wtree.m``):

1. Both images through a 4-level steerable pyramid, ``buildSpyr(im, 4, 'sp5Filters', 'reflect1')``
   (:mod:`.steerable`). Of its 26 subbands (``ind2wtree`` numbers them coarsest first: 1 the
   low-pass residual, 2..25 the oriented bands, 26 the high-pass) ``subbands = [4 7 10 13 16 19
   22 25]`` are used: orientations 0 and pi/2 (bands 4 and 1 of sp5's six) of each level.
2. Per subband (``vifsub_est_M.m``), cropped to a multiple of ``M = 3``: the distortion channel
   ``y = g x + v`` estimated on the ``winsize x winsize`` window (``lev = ceil((sub - 1) / 6)``,
   ``winsize = 2^lev + 1``: 3 on the coarsest level up to 17 on the finest) centred on every
   3x3 block (``corrDn`` with ``'reflect1'`` edges, step 3, start 2): ``g = cov_xy / (var_x +
   tol)``, ``vv = (var_y - g cov_xy) / winsize^2`` (``var``, ``cov``: sums over the window, not
   means), ``tol = 1e-15``, with the code's clean-ups (negative variances to 0; where
   ``var_x < tol`` ``g = 0, vv = var_y``; where ``var_y < tol`` ``g = vv = 0``; where ``g < 0``
   ``vv = var_y, g = 0``; ``vv <= tol`` to ``tol``).
3. Reference GSM (``refparams_vecgsm.m``): ``C_U``, the covariance (normalised by the count) of
   all overlapping 3x3 neighbourhoods as 9-vectors; per non-overlapping 3x3 block ``u``,
   ``s^2 = u' inv(C_U) u / 9``; ``lambda``, the 9 eigenvalues of ``C_U``.
4. With ``sigma_nsq = 0.4``, after dropping ``ceil(((winsize - 1) / 2) / 3)`` blocks on each
   border: ``num = sum log2(1 + g^2 s^2 lambda_j / (vv + sigma_nsq))``,
   ``den = sum log2(1 + s^2 lambda_j / sigma_nsq)`` over blocks, eigenvalues and subbands;
   ``VIF = num / den``.

Images need at least 72x72 pixels: ``buildSpyr`` refuses 4 levels below that (``maxPyrHt``:
the 9-tap low-pass must fit the third halving).

**VIF-P** (``vifp_mscale.m``): four scales; at scale ``s`` (1..4) ``N = 2^(5 - s) + 1`` and
the window ``fspecial('gaussian', N, N / 5)``; from scale 2 on both images are first filtered
``'valid'`` with that window and every second row and column kept (``[1:2:end]``); then the
local means, variances and covariance (``filter2 'valid'``), the same distortion-channel
clean-ups with ``1e-10`` and ``sigma_nsq = 2``, ``num += sum log10(1 + g^2 var_x / (vv +
sigma_nsq))``, ``den += sum log10(1 + var_x / sigma_nsq)``; ``VIF-P = num / den``. At least
41x41 pixels (the 3x3 window of the fourth scale needs one output).

Where the authors' code divides 0 by 0 (a flat reference: no information to lose) both return
``(num + 1e-10) / (den + 1e-10)``, 1 for a flat reference; elsewhere ``den`` is at least tens of
bits and the 1e-10 changes nothing visible (as piq's ``vif_p`` does, with 1e-8). For the same
reason VIF solves with ``C_U + 1e-20 I`` (``inv(C_U)`` is singular for a flat reference; every
real subband's covariance is many orders of magnitude above 1e-20).

Everything runs in float64 (the variances are differences of sums of squares of 0..255 values,
and the code's thresholds are at 1e-15 and 1e-10: a float32 pyramid moved VIF by 1e-5 on the
reference pair with flat regions, float32 statistics VIF-P by 5e-5) and is returned in the
input's dtype. The whole batch goes through every filtering; the 3x3 covariances, solves and
eigenvalues are batched ``torch.linalg`` calls. PyTorch has no fast float64 convolution on the
CPU, so there the pyramid's correlations (:func:`.steerable.corr_reflect1`) and VIF-P's
``filter2 'valid'`` (:func:`_filter_valid`) go through the FFT, to 1e-16 of the image norm
(within 1e-12 of the authors' values on the reference pairs).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import SimilarityIndex
from .gmsd import MatlabGreyMetric, matlab_rgb2gray_255
from .steerable import steerable_pyramid

# ---------------------------------------------------------------- constants of vifvec.m

#: ``M=3;`` (vifvec.m line 68): the GSM vectors are 3x3 neighbourhoods.
VIF_M = 3
#: ``subbands=[4 7 10 13 16 19 22 25];`` (vifvec.m line 69), ``ind2wtree`` numbering.
VIF_SUBBANDS = (4, 7, 10, 13, 16, 19, 22, 25)
#: ``sigma_nsq=0.4;`` (vifvec.m line 70): the variance of the visual noise.
VIF_SIGMA_NSQ = 0.4
#: ``buildSpyr(imorg, 4, 'sp5Filters', 'reflect1')`` (vifvec.m lines 76, 78).
VIF_LEVELS = 4
#: ``tol = 1e-15;`` (vifsub_est_M.m line 6).
VIF_TOL = 1e-15
#: Six orientations per level in sp5Filters.
_SP5_BANDS = 6
#: 4 levels of sp5 need ``maxPyrHt >= 4``: 9 * 2^3 pixels on each side.
VIF_MIN_SIZE = 72

# ---------------------------------------------------------------- constants of vifp_mscale.m

#: ``sigma_nsq=2;`` (vifp_mscale.m line 52).
VIFP_SIGMA_NSQ = 2.0
#: ``for scale=1:4`` (vifp_mscale.m), windows ``N=2^(4-scale+1)+1`` and ``fspecial('gaussian',N,N/5)`` (lines 58-59).
VIFP_SCALES = 4
#: The clean-up threshold ``1e-10`` of vifp_mscale.m (lines 80-92).
VIFP_TOL = 1e-10
#: The 3x3 window of scale 4 needs one output: 41 -> 33 -> 17 (after 'valid' 9 and [1:2:end]) -> 13 -> 7 -> 5 -> 3.
VIFP_MIN_SIZE = 41

#: Added to the numerator and denominator (see the module's doc): 1 for a flat reference.
RATIO_EPS = 1e-10
#: Added to the diagonal of ``C_U`` before solving (see the module's doc).
COV_RIDGE = 1e-20

_LN2 = math.log(2.0)
_LN10 = math.log(10.0)


def _subband_plan(levels: int = VIF_LEVELS) -> dict[int, tuple[list[int], int]]:
    """``vifvec.m``'s subbands as ``{pyramid level (0 finest): (sp5 band indices, winsize)}``.

    ``ind2wtree`` numbers the ``6 levels + 2`` subbands backwards from ``buildSpyr``'s order
    (high-pass, level 0 bands 0..5, ..., low-pass): subband ``sub`` is ``buildSpyr``'s entry
    ``numsubs - sub`` (0-based); its window is ``2^ceil((sub - 1) / 6) + 1``
    (``vifsub_est_M.m``).
    """
    numsubs = levels * _SP5_BANDS + 2
    plan: dict[int, tuple[list[int], int]] = {}
    for sub in VIF_SUBBANDS:
        entry = numsubs - sub  # 0 = high-pass, 1.. = bands
        level, band = divmod(entry - 1, _SP5_BANDS)
        winsize = 2 ** math.ceil((sub - 1) / _SP5_BANDS) + 1
        bands, size = plan.setdefault(level, ([], winsize))
        if size != winsize:  # pragma: no cover - a property of the constants above
            raise AssertionError("vifvec subbands of one level with different windows")
        bands.append(band)
    return dict(sorted(plan.items()))


_PLAN = _subband_plan()
_BANDS_USED = tuple(sorted({b for bands, _ in _PLAN.values() for b in bands}))


def _as_grey_255(x: torch.Tensor, data_range: float, quantize: bool | str) -> torch.Tensor:
    """(N, C, H, W) -> (N, 1, H, W) float64 grey on 0..255 (MATLAB rgb2gray, rounded as uint8)."""
    return matlab_rgb2gray_255(x, data_range, quantize).to(torch.float64)


def _clean_channel(
    var_x: torch.Tensor, var_y: torch.Tensor, cov: torch.Tensor, g: torch.Tensor, tol: float, scale: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The distortion channel's ``g`` and ``vv`` after the clean-ups both codes apply, in their order
    (``vifsub_est_M.m`` and ``vifp_mscale.m`` alike; ``var_x``, ``var_y`` already clipped at 0)::

        vv = (var_y - g cov) / scale
        g(var_x < tol) = 0;  vv(var_x < tol) = var_y      (vifvec: var_y, unscaled)
        g(var_y < tol) = 0;  vv(var_y < tol) = 0
        vv(g < 0) = var_y;   g(g < 0) = 0
        vv(vv <= tol) = tol

    written as one selection each: a ``var_y < tol`` site ends with ``vv = tol`` whatever came
    before (its ``g`` is then 0, not negative); a ``var_x < tol`` or ``g < 0`` site with
    ``var_y``. ``scale`` is vifvec's window area (``vv`` is a per-coefficient variance there),
    1 in vifp_mscale.m.
    """
    flat_y = var_y < tol
    reset = (var_x < tol) | (g < 0)
    vv = (var_y - g * cov) / scale if scale != 1.0 else var_y - g * cov
    vv = torch.where(flat_y, 0.0, torch.where(reset, var_y, vv))
    g = torch.where(reset | flat_y, 0.0, g)
    return g, torch.clamp_min(vv, tol)


def _distortion_channel(ref: torch.Tensor, dist: torch.Tensor, winsize: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``vifsub_est_M.m`` on subbands ``(N, K, h3, w3)`` (h3, w3 multiples of 3): ``g``, ``vv``
    of every 3x3 block, ``(N, K, h3 / 3, w3 / 3)``.

    ``corrDn(., ones(winsize), 'reflect1', [3 3], [2 2], size - 1)``: reflection padding, then
    the window sums centred on rows and columns 2, 5, 8, ... (1-based), an average pool of
    stride 3 started one pixel in.
    """
    n, k, h, w = ref.shape
    pad = winsize // 2
    stack = torch.cat((ref, dist, ref * ref, dist * dist, ref * dist), dim=1)  # (N, 5K, h, w)
    padded = F.pad(stack, (pad, pad, pad, pad), mode="reflect")[..., 1:, 1:]
    # the window mean, separably: a column pass then a row pass, each of stride 3
    means = F.avg_pool2d(F.avg_pool2d(padded, (winsize, 1), stride=(VIF_M, 1)), (1, winsize), stride=(1, VIF_M))
    mx, my, exx, eyy, exy = means.split(k, dim=1)
    area = float(winsize * winsize)  # sum(win(:))
    cov_xy = area * (exy - mx * my)
    ss_x = torch.clamp_min(area * (exx - mx * mx), 0.0)  # ss_x(ss_x<0)=0
    ss_y = torch.clamp_min(area * (eyy - my * my), 0.0)
    g = cov_xy / (ss_x + VIF_TOL)
    return _clean_channel(ss_x, ss_y, cov_xy, g, VIF_TOL, scale=area)


def _reference_gsm(ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``refparams_vecgsm.m`` on subbands ``(N, K, h3, w3)``: the S field ``(N, K, h3 / 3, w3 / 3)``
    and the eigenvalues of ``C_U`` ``(N, K, 9)``."""
    n, k, h, w = ref.shape
    m = VIF_M
    flat = ref.reshape(n * k, h, w)
    # (B, 9, (h - 2) (w - 2)): all overlapping 3x3 neighbourhoods, component r * 3 + c the pixel
    # at row offset r, column offset c (nine shifted views stacked: F.unfold is slow on the CPU)
    every = torch.stack([flat[:, r : h - m + 1 + r, c : w - m + 1 + c] for r in range(m) for c in range(m)], dim=1)
    every = every.flatten(2)
    count = every.shape[-1]
    mean = every.mean(dim=-1, keepdim=True)
    # (B, 9, 9), normalised by the count: E[u u'] - m m' (no centred copy of the 9 views; a
    # subband's mean is far below its spread, so nothing cancels)
    cov = every @ every.transpose(1, 2) / count - mean @ mean.transpose(1, 2)
    # (B, 9, h w / 9): the non-overlapping blocks, components in the same order, blocks row-major
    blocks = flat.reshape(n * k, h // m, m, w // m, m).permute(0, 2, 4, 1, 3).reshape(n * k, m * m, -1)
    eye = torch.eye(VIF_M * VIF_M, dtype=cov.dtype, device=cov.device)
    solved = torch.linalg.solve(cov + COV_RIDGE * eye, blocks)
    ss = (solved * blocks).sum(dim=1) / (VIF_M * VIF_M)
    lam = torch.linalg.eigvalsh(cov)
    return ss.reshape(n, k, h // VIF_M, w // VIF_M), lam.reshape(n, k, VIF_M * VIF_M)


def vif(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, quantize: bool | str = "auto") -> torch.Tensor:
    """VIF of each pair ``(N,)`` (``vifvec.m``; ``x`` the reference), in ``x``'s dtype; H, W >= 72."""
    n = x.shape[0]
    grey = torch.cat((_as_grey_255(x, data_range, quantize), _as_grey_255(y, data_range, quantize)))
    # float64 throughout, the pyramid included: in float32 its rounding (1e-5 of the grey
    # levels) lifts flat regions above the code's zero-variance threshold (1e-15) and moved VIF
    # by 1e-5 on the reference pair with flat regions.
    _, levels, _ = steerable_pyramid(grey, VIF_LEVELS, bands=_BANDS_USED, residuals=False)
    num = torch.zeros(n, dtype=grey.dtype, device=grey.device)
    den = torch.zeros_like(num)
    for level, (bands, winsize) in _PLAN.items():
        sub = levels[level][:, [_BANDS_USED.index(b) for b in bands]]
        h3, w3 = (sub.shape[-2] // VIF_M) * VIF_M, (sub.shape[-1] // VIF_M) * VIF_M
        sub = sub[..., :h3, :w3]
        ref, dist = sub[:n], sub[n:]
        g, vv = _distortion_channel(ref, dist, winsize)
        ss, lam = _reference_gsm(ref)
        edge = math.ceil(((winsize - 1) // 2) / VIF_M)  # offset=ceil(offset/M)
        inner = (..., slice(edge, -edge), slice(edge, -edge))
        g, vv, ss = g[inner].flatten(2), vv[inner].flatten(2), ss[inner].flatten(2)  # (N, K, P)
        lam = lam.unsqueeze(2)  # (N, K, 1, 9)
        gain = (g * g * ss / (vv + VIF_SIGMA_NSQ)).unsqueeze(-1)
        num = num + torch.log1p(gain * lam).sum(dim=(1, 2, 3)) / _LN2
        den = den + torch.log1p((ss / VIF_SIGMA_NSQ).unsqueeze(-1) * lam).sum(dim=(1, 2, 3)) / _LN2
    return ((num + RATIO_EPS) / (den + RATIO_EPS)).to(x.dtype)


def fspecial_gaussian(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """MATLAB's ``fspecial('gaussian', size, sigma)`` as its separable 1-D factor ``(size,)``.

    ``fspecial`` zeroes values below ``eps * max`` before normalising; for VIF-P's windows
    (``sigma = size / 5``) the smallest value is ``exp(-(size - 1)^2 / (4 sigma^2) ... )`` far
    above that, so the 2-D window is exactly the outer product of this normalised 1-D one.
    """
    r = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2.0
    k = torch.exp(-(r * r) / (2.0 * sigma * sigma))
    return k / k.sum()


def _filter_valid(spectrum: torch.Tensor, k1: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``filter2(k1' * k1, x, 'valid')`` of every map ``x`` (B, C, height, width) whose
    ``rfft2`` is ``spectrum``, in the maps' dtype.

    Through the FFT: the circular convolution of ``x`` with the window (centred on pixel
    (0, 0), wrapped around) equals the linear one wherever the window does not wrap, which is
    exactly the ``'valid'`` part ``[r : -r]`` (``r = size // 2``; the window is symmetric:
    correlation = convolution, and its spectrum is real). In float64 this is many times faster
    than ``conv2d`` (which has no fast float64 path on the CPU), and a map's spectrum serves both
    its statistics and the next scale's low-pass; the rounding (about 1e-12 of the local second
    moments) is far below what VIF-P resolves.
    """
    size = k1.shape[0]
    r = size // 2
    # the product with a real spectrum is a real scaling of the spectrum's two parts
    window = torch.roll(F.pad(torch.outer(k1, k1), (0, width - size, 0, height - size)), (-r, -r), dims=(0, 1))
    scale = torch.fft.rfft2(window).real.unsqueeze(-1)
    filtered = torch.view_as_complex(torch.view_as_real(spectrum) * scale)
    return torch.fft.irfft2(filtered, s=(height, width))[..., r : height - r, r : width - r]


def vifp(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, quantize: bool | str = "auto") -> torch.Tensor:
    """VIF-P of each pair ``(N,)`` (``vifp_mscale.m``; ``x`` the reference), in ``x``'s dtype; H, W >= 41."""
    ref = _as_grey_255(x, data_range, quantize)
    dist = _as_grey_255(y, data_range, quantize)
    num = torch.zeros(x.shape[0], dtype=ref.dtype, device=ref.device)
    den = torch.zeros_like(num)
    # N=2^(4-scale+1)+1; win=fspecial('gaussian',N,N/5) for scale=1:4
    windows = [fspecial_gaussian(n, n / 5.0, ref.dtype, ref.device)
               for n in (2 ** (VIFP_SCALES - s + 1) + 1 for s in range(1, VIFP_SCALES + 1))]
    spectrum = torch.empty(0)
    for scale, k1 in enumerate(windows):
        if scale:  # filter2(win, ., 'valid') with this scale's window, then [1:2:end]
            both = _filter_valid(spectrum[:, :2], k1, *ref.shape[-2:])[..., ::2, ::2]
            ref, dist = both[:, :1], both[:, 1:]
        h, w = ref.shape[-2:]
        spectrum = torch.fft.rfft2(torch.cat((ref, dist, ref * ref, dist * dist, ref * dist), dim=1))
        mu1, mu2, e11, e22, e12 = _filter_valid(spectrum, k1, h, w).unbind(dim=1)
        sigma1_sq = torch.clamp_min(torch.addcmul(e11, mu1, mu1, value=-1.0), 0.0)  # sigma1_sq(sigma1_sq<0)=0
        sigma2_sq = torch.clamp_min(torch.addcmul(e22, mu2, mu2, value=-1.0), 0.0)
        sigma12 = torch.addcmul(e12, mu1, mu2, value=-1.0)
        g, sv_sq = _clean_channel(sigma1_sq, sigma2_sq, sigma12, sigma12 / (sigma1_sq + VIFP_TOL), VIFP_TOL)
        sigma1_sq = torch.where(sigma1_sq < VIFP_TOL, 0.0, sigma1_sq)
        num = num + torch.log1p(g * g * sigma1_sq / (sv_sq + VIFP_SIGMA_NSQ)).sum(dim=(-2, -1)) / _LN10
        den = den + torch.log1p(sigma1_sq / VIFP_SIGMA_NSQ).sum(dim=(-2, -1)) / _LN10
    return ((num + RATIO_EPS) / (den + RATIO_EPS)).to(x.dtype)


class _VisualInformationFidelity(MatlabGreyMetric, SimilarityIndex):
    """What VIF and VIF-P share: options and metadata."""

    differentiable = True
    symmetric = False  # x is the reference
    channels = (1, 3)


class VIF(_VisualInformationFidelity):
    """VIF (Sheikh & Bovik 2006) in the steerable-pyramid domain, as the authors' ``vifvec.m`` (1 for x == y).

    ``x`` is the reference (asymmetric). Grey as it is, RGB through MATLAB's ``rgb2gray`` (rounded
    to uint8 for 8-bit images, option ``quantize``: ``"auto"``, True, False). Above 1 for a
    contrast enhancement. Needs H, W >= 72 (the 4-level sp5 pyramid). Options: ``data_range``,
    ``convention="matlab"``, ``quantize``. ``to_distance(v) = 1 - v``.
    """

    name = "vif"
    distance_name = "1-vif"
    min_size = VIF_MIN_SIZE

    def formula(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return vif(x, y, self.data_range, self.quantize)


class VIFP(_VisualInformationFidelity):
    """VIF-P (Sheikh & Bovik), the multiscale pixel-domain VIF of the authors' ``vifp_mscale.m`` (1 for x == y).

    ``x`` is the reference (asymmetric). Grey as it is, RGB through MATLAB's ``rgb2gray`` (rounded
    to uint8 for 8-bit images, option ``quantize``). Above 1 for a contrast enhancement. Needs
    H, W >= 41. Options: ``data_range``, ``convention="matlab"``, ``quantize``.
    ``to_distance(v) = 1 - v``.
    """

    name = "vifp"
    distance_name = "1-vifp"
    min_size = VIFP_MIN_SIZE

    def formula(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return vifp(x, y, self.data_range, self.quantize)
