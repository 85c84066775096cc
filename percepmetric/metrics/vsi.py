"""VSI: the Visual Saliency-induced Index of Zhang, Shen and Li (2014).

L. Zhang, Y. Shen and H. Li, "VSI: A Visual Saliency-Induced Index for Perceptual Image
Quality Assessment", IEEE Trans. Image Processing 23(10):4270-4281, 2014.

The numbers follow the authors' MATLAB code ``VSI.m`` (with its subfunctions ``SDSP``,
``RGB2Lab`` and ``logGabor``), which takes two RGB images on 0..255 (the copy the reference
values came from: see ``tests/reference/vsi/make_reference.py``). A grey image is taken as three
equal channels.

1. Saliency ``VS`` of each image by SDSP (Zhang, Gu and Li, ICIP 2013): each channel resized to
   256x256 (MATLAB ``imresize(.., 'bilinear')``, antialiased where it shrinks), converted to
   CIE Lab by the code's ``RGB2Lab`` (sRGB, D50 white ``0.9642, 1, 0.8251``), then
   ``SF = sqrt(sum_c real(ifft2(fft2(Lab_c) * LG))^2)`` with a log-Gabor ``LG`` (centre
   frequency 0.021, sigma 1.34, zero outside radius 0.5), times a centre prior
   ``SD = exp(-|p - (128, 128)|^2 / 145^2)`` and a warm-colour prior
   ``SC = 1 - exp(-(a_n^2 + b_n^2) / 0.001^2)`` (``a_n``, ``b_n``: a and b scaled to [0, 1]
   per image); resized back (bilinear) and scaled to [0, 1] (``mat2gray``).
2. Opponent colours ``L = 0.06 R + 0.63 G + 0.27 B``, ``M = 0.30 R + 0.04 G - 0.35 B``,
   ``N = 0.34 R - 0.60 G + 0.17 B``.
3. L, M, N and both saliency maps downsampled by ``F = max(1, round(min(H, W) / 256))``
   (FxF box filter, ``conv2 'same'`` with zero padding, every F-th pixel, as FSIM).
4. Scharr gradient magnitude ``G`` of L; similarities ``S(a, b, c) = (2ab + c) / (a^2 + b^2 + c)``
   and ``VS_m = max(VS1, VS2)``::

       VSI = sum(S_G^alpha * S_VS * real((S_M * S_N)^lambda) * VS_m) / sum(VS_m)
"""

from __future__ import annotations

import functools
import math

import torch

from .color import as_rgb
from .fsim import safe_sqrt, scharr_gradient_magnitude, similarity
from .matlab import box_downsample, downsample_factor
from .resize import imresize
from .srsim import SaliencyWeightedSimilarity

# ---------------------------------------------------------------- constants of VSI.m

CONST_VS = 1.27  # VSI.m: "constForVS = 1.27;%fixed"
CONST_GM = 386.0  # "constForGM = 386;%fixed"
CONST_CHROM = 130.0  # "constForChrom = 130;%fixed"
ALPHA = 0.40  # "alpha = 0.40;%fixed" (exponent of the gradient similarity)
LAMBDA = 0.020  # "lambda = 0.020;%fixed" (exponent of the chromatic similarity)
SIGMA_F = 1.34  # "sigmaF = 1.34;%fixed donot change" (log-Gabor bandwidth)
OMEGA_0 = 0.0210  # "omega0 = 0.0210;%fixed" (log-Gabor centre frequency)
SIGMA_D = 145.0  # "sigmaD = 145;%fixed" (centre prior)
SIGMA_C = 0.001  # "sigmaC = 0.001;%fixed" (warm-colour prior)
SDSP_SIZE = 256  # SDSP: "imresize(image(:,:,c), [256, 256],'bilinear')"
# VSI.m: "L = 0.06 R + 0.63 G + 0.27 B; M = 0.30 R + 0.04 G - 0.35 B; N = 0.34 R - 0.60 G + 0.17 B"
OPPONENT = ((0.06, 0.63, 0.27), (0.30, 0.04, -0.35), (0.34, -0.60, 0.17))
# RGB2Lab of VSI.m: sRGB -> XYZ rows, the D50 reference white, CIE epsilon and kappa.
RGB_TO_XYZ = ((0.4124564, 0.3575761, 0.1804375), (0.2126729, 0.7151522, 0.0721750),
              (0.0193339, 0.1191920, 0.9503041))
WHITE_D50 = (0.9642, 1.0, 0.8251)
LAB_EPSILON = 0.008856
LAB_KAPPA = 903.3


#: Smallest side: VSI's gradient and similarity maps need a 3x3 neighbourhood.
MIN_SIZE = 3


def _cube_root_difference(p: torch.Tensor, q: torch.Tensor, fp: torch.Tensor, fq: torch.Tensor,
                          diff: torch.Tensor) -> torch.Tensor:
    """``f(p) - f(q)`` of RGB2Lab's ``f`` (cube root above ``epsilon``, ``(kappa t + 16) / 116``
    below), given ``f(p)``, ``f(q)`` and ``diff = p - q`` computed directly from linear RGB.

    With both above epsilon, ``p^(1/3) - q^(1/3) = (p - q) / (fp^2 + fp fq + fq^2)``; both below,
    ``kappa (p - q) / 116``. Neither subtracts two nearly equal rounded numbers, so near-grey
    colours, where ``a`` and ``b`` nearly cancel, keep their relative precision in float32
    (the plain difference moved VSI by 5e-5 on grey images); mixed cases subtract directly.
    """
    above_p, above_q = p > LAB_EPSILON, q > LAB_EPSILON
    cube = diff / (fp * fp + fp * fq + fq * fq)
    linear = diff * (LAB_KAPPA / 116.0)
    return torch.where(above_p & above_q, cube, torch.where(~above_p & ~above_q, linear, fp - fq))


def rgb_to_lab_vsi(rgb: torch.Tensor) -> torch.Tensor:
    """``(B,3,H,W)`` RGB on 0..255 -> ``(B,3,H,W)`` Lab as VSI.m's ``RGB2Lab`` computes it
    (a and b through :func:`_cube_root_difference`: the same values, without cancellation)."""
    c = rgb / 255.0
    linear = torch.where(c <= 0.04045, c / 12.92, ((c.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4)
    rows = torch.tensor(RGB_TO_XYZ, dtype=torch.float64) / torch.tensor(WHITE_D50, dtype=torch.float64)[:, None]
    # rows of xr, yr, zr, then of xr - yr and yr - zr (differences taken on the float64 constants)
    matrix = torch.cat((rows, (rows[0] - rows[1])[None], (rows[1] - rows[2])[None])).to(rgb.dtype).to(rgb.device)
    t = torch.einsum("kc,nchw->nkhw", matrix, linear)
    xyz = t[:, :3]
    f = torch.where(xyz > LAB_EPSILON, xyz.clamp(min=LAB_EPSILON) ** (1.0 / 3.0), (LAB_KAPPA * xyz + 16.0) / 116.0)
    xr, yr, zr = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    fx, fy, fz = f[:, 0], f[:, 1], f[:, 2]
    a = 500.0 * _cube_root_difference(xr, yr, fx, fy, t[:, 3])
    b = 200.0 * _cube_root_difference(yr, zr, fy, fz, t[:, 4])
    return torch.stack((116.0 * fy - 16.0, a, b), dim=1)


@functools.lru_cache(maxsize=8)
def _sdsp_filters(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """SDSP's log-Gabor ``LG`` (frequency domain, zero frequency at ``[0, 0]``) and centre prior
    ``SD``, both 256x256; built in float64 and cast, cached."""
    with torch.inference_mode(False), torch.no_grad():
        n = SDSP_SIZE
        f64 = torch.float64
        # logGabor: ((1:n) - (fix(n/2) + 1)) / (n - mod(n, 2)), zeroed outside radius 0.5, ifftshift
        t = (torch.arange(1, n + 1, dtype=f64) - (n // 2 + 1)) / (n - n % 2)
        u2, u1 = torch.meshgrid(t, t, indexing="ij")
        outside = u1 * u1 + u2 * u2 > 0.25
        radius = torch.fft.ifftshift(torch.sqrt(u1 * u1 + u2 * u2).masked_fill(outside, 0.0))
        radius[0, 0] = 1.0
        lg = torch.where(radius > 0, torch.exp(-torch.log(radius.clamp(min=1e-300) / OMEGA_0) ** 2
                                               / (2.0 * SIGMA_F**2)), torch.zeros_like(radius))
        lg[0, 0] = 0.0
        i = torch.arange(1, n + 1, dtype=f64)
        centre = n / 2.0
        sd = torch.exp(-((i[:, None] - centre) ** 2 + (i[None, :] - centre) ** 2) / SIGMA_D**2)
        return lg.to(device=device, dtype=dtype), sd.to(device=device, dtype=dtype)


def _unit_range(t: torch.Tensor) -> torch.Tensor:
    """``mat2gray`` per image (and channel): ``(t - min) / (max - min)``; 0 where flat (MATLAB: NaN)."""
    low = t.amin(dim=(-2, -1), keepdim=True)
    high = t.amax(dim=(-2, -1), keepdim=True)
    return (t - low) / (high - low).clamp(min=torch.finfo(t.dtype).tiny)


#: Images whose SDSP saliency is computed at once: each is worked on at 256x256 whatever its size
#: (about 30 float maps of 256 KiB in float32 at the peak), so a batch of many small images would
#: otherwise hold hundreds of MB; 16 at a time costs no speed.
SDSP_CHUNK = 16


def sdsp_saliency(rgb: torch.Tensor) -> torch.Tensor:
    """``(B,3,H,W)`` RGB on 0..255 -> ``(B,1,H,W)`` SDSP saliency in [0, 1], as VSI.m's ``SDSP``
    (:data:`SDSP_CHUNK` images at a time)."""
    if rgb.shape[0] > SDSP_CHUNK:
        return torch.cat([_sdsp_saliency(part) for part in rgb.split(SDSP_CHUNK)])
    return _sdsp_saliency(rgb)


def _sdsp_saliency(rgb: torch.Tensor) -> torch.Tensor:
    h, w = rgb.shape[-2:]
    small = imresize(rgb, size=(SDSP_SIZE, SDSP_SIZE), kernel="bilinear")
    lab = rgb_to_lab_vsi(small)
    ab = _unit_range(lab[:, 1:])
    sc = 1.0 - torch.exp(-ab.pow(2).sum(dim=1, keepdim=True) / SIGMA_C**2)
    lg, sd = _sdsp_filters(rgb.device, rgb.dtype)
    # real(ifft2(fft2(Lab) .* LG)) through the real FFT: LG is real and even (LG(k) = LG(-k))
    half = SDSP_SIZE // 2 + 1
    band = torch.fft.irfft2(torch.fft.rfft2(lab) * lg[:, :half], s=(SDSP_SIZE, SDSP_SIZE))
    sf = safe_sqrt(band.pow(2).sum(dim=1, keepdim=True))
    vs = imresize(sf * sd * sc, size=(h, w), kernel="bilinear")
    return _unit_range(vs)


def _real_power(v: torch.Tensor, exponent: float) -> torch.Tensor:
    """MATLAB's ``real(v .^ exponent)``: ``|v|^e``, times ``cos(e pi)`` where ``v < 0``. In float64
    with a clamp at its smallest normal number, so the slope at 0 stays finite."""
    v64 = v.to(torch.float64)
    magnitude = v64.abs().clamp(min=torch.finfo(torch.float64).tiny) ** exponent
    sign = torch.where(v64 < 0, torch.full_like(v64, math.cos(exponent * math.pi)), torch.ones_like(v64))
    return (magnitude * sign).to(v.dtype)


def vsi(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, precision: str = "input") -> torch.Tensor:
    """VSI of two batches ``(N,C,H,W)`` in ``[0, data_range]`` (C = 3, or 1: grey as three equal
    channels), as VSI.m. Returns ``(N,)`` in the inputs' common dtype; 1 for identical images."""
    out_dtype = torch.promote_types(x.dtype, y.dtype)
    work = torch.float64 if precision == "float64" else torch.promote_types(out_dtype, torch.float32)
    n, _, h, w = x.shape
    pair = as_rgb(torch.cat((x, y)).to(work) * (255.0 / data_range))  # (2N, 3, H, W) on 0..255
    saliency = sdsp_saliency(pair)
    factor = downsample_factor(h, w)
    # VSI.m converts to L, M, N and then box-filters and subsamples each; both steps are linear
    # per pixel and per channel, so subsampling RGB first gives the same planes (to rounding)
    # on F^2 times fewer pixels.
    small = box_downsample(pair, factor, "zeros")
    opponent = torch.einsum("kc,nchw->nkhw", torch.tensor(OPPONENT, dtype=work, device=pair.device), small)
    vs = box_downsample(saliency, factor, "zeros")[:, 0]
    grad = scharr_gradient_magnitude(opponent[:, :1])[:, 0]
    a, b = opponent[:n], opponent[n:]
    s_vs = similarity(vs[:n], vs[n:], CONST_VS)
    s_g = similarity(grad[:n], grad[n:], CONST_GM)
    s_m = similarity(a[:, 1], b[:, 1], CONST_CHROM)
    s_n = similarity(a[:, 2], b[:, 2], CONST_CHROM)
    weight = torch.maximum(vs[:n], vs[n:])
    sim = s_g.pow(ALPHA) * s_vs * _real_power(s_m * s_n, LAMBDA) * weight
    # eps matters only where neither image has any saliency (flat images; MATLAB: NaN): score 1.
    eps = torch.finfo(work).eps
    score = (sim.sum(dim=(-2, -1)) + eps) / (weight.sum(dim=(-2, -1)) + eps)
    return score.to(out_dtype)


class VSI(SaliencyWeightedSimilarity):
    """Visual saliency-induced index VSI, as the authors' MATLAB code (1 at best).

    Takes RGB (grey as three equal channels). Options: ``data_range``, ``convention="matlab"``
    (VSI.m: its SDSP saliency, opponent colours, downsampling and MATLAB's ``imresize``),
    ``precision`` (``"input"``, the default, or ``"float64"``). ``to_distance(s) = 1 - s``.
    """

    name = "vsi"
    symmetric = True
    colour_doc = "RGB (grey -> three equal channels)"
    distance_name = "1-vsi"
    min_size = MIN_SIZE
    index = staticmethod(vsi)
