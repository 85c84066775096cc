"""FLIP: NVIDIA's difference evaluator for alternating images (LDR-FLIP and HDR-FLIP).

P. Andersson, J. Nilsson, T. Akenine-Moller, M. Oskarsson, K. Astrom and M. D. Fairchild,
"FLIP: A Difference Evaluator for Alternating Images", Proc. ACM Comput. Graph. Interact. Tech.
(High Performance Graphics) 3(2), 2020 (LDR-FLIP).
P. Andersson, J. Nilsson, P. Shirley and T. Akenine-Moller, "Visualizing Errors in Rendered High
Dynamic Range Images", Eurographics Short Papers, 2021 (HDR-FLIP).

FLIP models what a viewer notices when flipping back and forth between a reference ``x`` and a
test image ``y`` seen at ``pixels_per_degree`` pixels per degree of visual angle. It gives a
per-pixel error in [0, 1] (0: no visible difference); its mean is the metric's value.

LDR-FLIP (sRGB input in [0, 1]):

1. sRGB -> linear RGB -> XYZ (D65) -> the opponent space YCxCz
   (``Y = 116 Y/Yn - 16``, ``Cx = 500 (X/Xn - Y/Yn)``, ``Cz = 200 (Y/Yn - Z/Zn)``).
2. Colour pipeline: each channel is filtered with a contrast sensitivity function, a sum of
   Gaussians ``a1 sqrt(pi/b1) exp(-pi^2 r^2 / b1) + a2 sqrt(pi/b2) exp(-pi^2 r^2 / b2)`` over
   ``r`` in degrees, normalised to sum 1 on a ``(2R+1)^2`` grid,
   ``R = ceil(3 sqrt(max b / (2 pi^2)) ppd)``; constants ``a1 = (1, 1, 34.1)``,
   ``b1 = (0.0047, 0.0053, 0.04)``, ``a2 = (0, 0, 13.5)``, ``b2 = (1e-5, 1e-5, 0.025)`` for
   (Y, Cx, Cz). Filtered images go back to linear RGB, are clamped to [0, 1], then to CIELAB
   with the Hunt adjustment ``a, b <- 0.01 L a, 0.01 L b``. The HyAB distance
   ``|dL| + sqrt(da^2 + db^2)`` is raised to ``qc = 0.7`` and mapped to [0, 1]: values below
   ``pc cmax`` (``pc = 0.4``) linearly to [0, ``pt = 0.95``], the rest linearly to
   [``pt``, 1], where ``cmax`` is the ``qc``-th power of the HyAB distance between
   Hunt-adjusted pure green and pure blue. This is ``dE_c``.
3. Feature pipeline on the normalised luminance ``(Y + 16) / 116``: edge and point detectors,
   the first and second derivatives of a Gaussian of standard deviation ``0.5 w ppd`` degrees
   (``w = 0.082``, radius ``ceil(3 sd)``), positive and negative weights normalised to sum to
   1 and -1, along x and y. ``dE_f = (max(|‖e_x‖ - ‖e_y‖|, |‖p_x‖ - ‖p_y‖|) / sqrt 2)^qf``,
   ``qf = 0.5``.
4. ``FLIP = dE_c ^ (1 - dE_f)`` per pixel; the value is its mean over the image.

HDR-FLIP (linear RGB, non-negative, unbounded): the images are exposed (``2^c x``) at
``num_exposures`` evenly spaced exposures ``c`` from ``start_exposure`` to ``stop_exposure``,
tone mapped (ACES by default: ``(k0 x^2 + k1 x) / (k3 x^2 + k4 x + k5)``, the Narkowicz fit with
the 0.6 pre-exposure folded in), clamped to [0, 1], and LDR-FLIP is run on each pair (as
linear RGB); the per-pixel maximum over exposures is the HDR-FLIP map. Unless given, the
exposures come from the reference ``x``: with ``x_max`` the input where the tone curve reaches
``t = 0.85``, ``start = log2(x_max / max Y)``, ``stop = log2(x_max / median Y)`` (``Y`` the
luminance ``0.2126 R + 0.7152 G + 0.0722 B``; the median is the element at index ``n // 2``
of the sorted luminances), ``num = max(2, ceil(stop - start))``.

The constants and the way they are used (separated filters, replicate padding at the border,
the upper median, the exposure count) are those of NVIDIA's reference implementation,
``flip-evaluator`` 1.7 (``src/cpp/FLIP.h`` of https://github.com/NVlabs/flip, BSD-3-Clause),
which this module reproduces to float rounding (see ``tests/test_flip.py``); the code is
written anew from the formulas above. Differences from ``flip-evaluator``:

* a reference whose median luminance is 0 gives flip-evaluator an infinite stop exposure (it
  never finishes); here the smallest non-zero luminance takes the median's place, and an
  all-black reference is evaluated at the single exposure 0 (twice, ``num = 2``);
* the tone mapped ACES and Hable curves are evaluated on exposed values capped at 1e4, where
  both already exceed 1 and are clamped to 1: the same numbers, and no inf / inf.

Everything is batched over the images (both images of every pair go through one separable,
depthwise convolution per direction) and differentiable, with finite gradients at ``x == y``
(square roots and powers are guarded at 0).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..options import Reduction
from .base import Metric, cached_table, check_choice

# ---------------------------------------------------------------- constants (FLIP.h, flip-evaluator 1.7)

#: ``FLIPConstants``: colour exponent ``qc``, cmax multiplier ``pc``, its target ``pt``, the
#: feature detectors' peak-to-trough width ``w`` (degrees) and the feature exponent ``qf``
#: (LDR-FLIP paper, Sections 4 and 5).
QC, PC, PT, FEATURE_W, QF = 0.7, 0.4, 0.95, 0.082, 0.5
#: ``GaussianConstants``: the contrast sensitivity functions of Y, Cx, Cz as sums of two
#: Gaussians ``a sqrt(pi / b) exp(-pi^2 r^2 / b)`` (LDR-FLIP paper, Eq. 2 and Table 1).
CSF_A1 = (1.0, 1.0, 34.1)
CSF_B1 = (0.0047, 0.0053, 0.04)
CSF_A2 = (0.0, 0.0, 13.5)
CSF_B2 = (1.0e-5, 1.0e-5, 0.025)
#: Default viewing condition: a 0.7 m wide 3840-pixel monitor seen from 0.7 m
#: (``FLIP::calculatePPD(0.7, 3840, 0.7)``): 67.02 pixels per degree.
DEFAULT_PPD = 0.7 * (3840.0 / 0.7) * (math.pi / 180.0)
#: D65 reference white (``DEFAULT_ILLUMINANT``) and its inverse as FLIP.h writes it.
ILLUMINANT = (0.950428545, 1.000000000, 1.088900371)
INV_ILLUMINANT = (1.052156925, 1.000000000, 0.918357670)
#: Linear sRGB -> XYZ (D65), as FLIP.h's ``LinearRGBToXYZ`` (image-engineering.de technote 958).
RGB_TO_XYZ = (
    (10135552.0 / 24577794.0, 8788810.0 / 24577794.0, 4435075.0 / 24577794.0),
    (2613072.0 / 12288897.0, 8788810.0 / 12288897.0, 887015.0 / 12288897.0),
    (1425312.0 / 73733382.0, 8788810.0 / 73733382.0, 70074185.0 / 73733382.0),
)
#: XYZ -> linear sRGB, FLIP.h's ``XYZToLinearRGB`` (the rounded inverse of :data:`RGB_TO_XYZ`).
XYZ_TO_RGB = (
    (3.241003275, -1.537398934, -0.498615861),
    (-0.969224334, 1.875930071, 0.041554224),
    (0.055639423, -0.204011202, 1.057148933),
)
#: Tone mappers ``(k0 x^2 + k1 x + k2) / (k3 x^2 + k4 x + k5)`` (FLIP.h ``ToneMappingCoefficients``):
#: ACES (Narkowicz's fit, 0.6 pre-exposure folded in) and Hable (Uncharted 2, white point 11.2).
#: Reinhard is ``c / (1 + Y)``, its exposure rule uses the coefficients listed here.
TONE_COEFFS = {
    "aces": (0.6 * 0.6 * 2.51, 0.6 * 0.03, 0.0, 0.6 * 0.6 * 2.43, 0.6 * 0.59, 0.14),
    "hable": (0.231683, 0.013791, 0.0, 0.18, 0.3, 0.018),
    "reinhard": (0.0, 1.0, 0.0, 0.0, 1.0, 1.0),
}
#: The tone curve's value that fixes the exposure range (``t = 0.85`` in ``computeExposures``).
EXPOSURE_T = 0.85
#: Luminance weights of linear sRGB (``linearRGBToLuminance``).
LUMINANCE = (0.2126, 0.7152, 0.0722)
#: Exposed values are capped here before the ACES or Hable curve (both are clamped to 1 from
#: x = 12.1 and 5.6 on), so that huge inputs give 1, not inf / inf.
TONE_CAP = 1.0e4

MODES = ("ldr", "hdr")
TONE_MAPPERS = tuple(TONE_COEFFS)
Mode = Literal["ldr", "hdr"]
ToneMapper = Literal["aces", "hable", "reinhard"]

_LAB_DELTA = 6.0 / 29.0


# ---------------------------------------------------------------- filters

def spatial_radius(ppd: float) -> int:
    """Radius of the contrast sensitivity filters: ``ceil(3 sqrt(max b / (2 pi^2)) ppd)``."""
    b_max = max(CSF_B1 + CSF_B2)
    return int(math.ceil(3.0 * math.sqrt(b_max / (2.0 * math.pi**2)) * ppd))


def feature_radius(ppd: float) -> int:
    """Radius of the edge and point detectors: ``ceil(3 sd)``, ``sd = 0.5 w ppd`` pixels."""
    return int(math.ceil(3.0 * 0.5 * FEATURE_W * ppd))


@cached_table()
def filter_bank(ppd: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``(7, 2R+1)``: the 1-D factors of FLIP's filters, centred in one common width
    (``R`` the larger of the two radii; the narrower filters padded with zeros).

    Rows: the Y and Cx contrast sensitivity Gaussians (each sums to 1), the two separated
    Gaussians of the Cz filter (scaled by ``sqrt(a sqrt(pi / b))`` and normalised together so
    that ``g1 g1' + g2 g2'`` sums to 1: the 2-D sum of Gaussians, see ``separatedConvolutions.pdf``
    in the FLIP repository), then the feature Gaussian (sum 1), its first derivative ``-x g`` and
    its second ``(x^2 / sd^2 - 1) g`` (positive weights summing to 1, negative ones to -1).
    Built in float64.
    """
    rs, rf = spatial_radius(ppd), feature_radius(ppd)
    r = max(rs, rf)
    bank = torch.zeros(7, 2 * r + 1, dtype=torch.float64)
    xs = torch.arange(-rs, rs + 1, dtype=torch.float64) / ppd  # degrees
    x2 = xs * xs
    pi = math.pi
    for row, (a, b) in enumerate(((CSF_A1[0], CSF_B1[0]), (CSF_A1[1], CSF_B1[1]))):
        g = a * math.sqrt(pi / b) * torch.exp(-pi**2 * x2 / b)
        bank[row, r - rs:r + rs + 1] = g / g.sum()
    cz1 = math.sqrt(CSF_A1[2] * math.sqrt(pi / CSF_B1[2])) * torch.exp(-pi**2 * x2 / CSF_B1[2])
    cz2 = math.sqrt(CSF_A2[2] * math.sqrt(pi / CSF_B2[2])) * torch.exp(-pi**2 * x2 / CSF_B2[2])
    norm = math.sqrt(float(cz1.sum()) ** 2 + float(cz2.sum()) ** 2)
    bank[2, r - rs:r + rs + 1] = cz1 / norm
    bank[3, r - rs:r + rs + 1] = cz2 / norm
    sd = 0.5 * FEATURE_W * ppd
    xf = torch.arange(-rf, rf + 1, dtype=torch.float64)
    g = torch.exp(-xf * xf / (2.0 * sd * sd))
    bank[4, r - rf:r + rf + 1] = g / g.sum()
    for row, d in ((5, -xf * g), (6, (xf * xf / (sd * sd) - 1.0) * g)):
        pos, neg = d.clamp(min=0).sum(), -d.clamp(max=0).sum()
        bank[row, r - rf:r + rf + 1] = torch.where(d > 0, d / pos, d / neg)
    return bank.to(device=device, dtype=dtype)


@cached_table()
def colour_tables(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """FLIP's colour conversions as ``(matrix, bias)`` pairs for :func:`_mix`, composed in float64.

    ``to_planes`` ``(8, 3)``: linear RGB -> the eight planes the filters take, ``Y, Cx, Cz, Cz``
    (YCxCz: ``Y = 116 Y/Yn - 16``, ``Cx = 500 (X/Xn - Y/Yn)``, ``Cz = 200 (Y/Yn - Z/Zn)``) and
    four times the normalised luminance ``(Y + 16) / 116 = Y/Yn``; ``to_rgb`` ``(3, 3)``: YCxCz ->
    linear RGB; ``to_lab_xyz`` ``(3, 3)``: linear RGB -> ``(X/Xn, Y/Yn, Z/Zn)``, what CIELAB's
    ``f`` takes.
    """
    rgb2xyz = torch.tensor(RGB_TO_XYZ, dtype=torch.float64)
    xyz2rgb = torch.tensor(XYZ_TO_RGB, dtype=torch.float64)
    inv_white = torch.diag(torch.tensor(INV_ILLUMINANT, dtype=torch.float64))
    white = torch.diag(torch.tensor(ILLUMINANT, dtype=torch.float64))
    to_lab_xyz = inv_white @ rgb2xyz
    # XYZ/white (u, v, w) -> (Y, Cx, Cz) = (116 v - 16, 500 (u - v), 200 (v - w))
    opp = torch.tensor(((0.0, 116.0, 0.0), (500.0, -500.0, 0.0), (0.0, 200.0, -200.0)), dtype=torch.float64)
    to_ycxcz = opp @ to_lab_xyz
    to_planes = torch.cat((to_ycxcz, to_ycxcz[2:], to_lab_xyz[1:2].expand(4, 3)))
    planes_bias = torch.tensor((-16.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0), dtype=torch.float64)
    # (Y, Cx, Cz) -> XYZ/white: v = (Y + 16) / 116, u = v + Cx / 500, w = v - Cz / 200
    back = torch.tensor(((1 / 116, 1 / 500, 0.0), (1 / 116, 0.0, 0.0), (1 / 116, 0.0, -1 / 200)), dtype=torch.float64)
    back_bias = torch.tensor((16 / 116, 16 / 116, 16 / 116), dtype=torch.float64)
    to_rgb = xyz2rgb @ white @ back
    rgb_bias = xyz2rgb @ white @ back_bias
    out = (to_planes, planes_bias, to_rgb, rgb_bias, to_lab_xyz, torch.zeros(3, dtype=torch.float64))
    return tuple(t.to(device=device, dtype=dtype) for t in out)


def _mix(t: torch.Tensor, matrix: torch.Tensor, bias: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``(M,C,H,W)`` -> ``(M,O,H,W)``: ``matrix @ pixel + bias`` per pixel (``matrix`` ``(O,C)``);
    one batched matrix product, an order of magnitude faster on CPU than a 1x1 convolution.
    ``out``: a contiguous ``(M,O,H,W)`` tensor to write into."""
    m, c, h, w = t.shape
    o = matrix.shape[0]
    args = (bias.view(1, o, 1).expand(m, o, 1), matrix.expand(m, o, c), t.reshape(m, c, h * w))
    if out is None:
        return torch.baddbmm(*args).view(m, o, h, w)
    torch.baddbmm(*args, out=out.view(m, o, h * w))
    return out


def max_colour_distance() -> float:
    """``cmax``: the ``qc``-th power of the HyAB distance between Hunt-adjusted pure green and
    pure blue (``computeMaxDistance``), in float64."""
    def hunt_lab(rgb: tuple[float, float, float]) -> tuple[float, float, float]:
        xyz = [sum(m * c for m, c in zip(row, rgb)) * w for row, w in zip(RGB_TO_XYZ, INV_ILLUMINANT)]
        f = [v ** (1 / 3) if v > _LAB_DELTA**3 else v / (3 * _LAB_DELTA**2) + 4 / 29 for v in xyz]
        lum = 116 * f[1] - 16
        return lum, 0.01 * lum * 500 * (f[0] - f[1]), 0.01 * lum * 200 * (f[1] - f[2])

    g, b = hunt_lab((0.0, 1.0, 0.0)), hunt_lab((0.0, 0.0, 1.0))
    return (abs(g[0] - b[0]) + math.hypot(g[1] - b[1], g[2] - b[2])) ** QC


CMAX = max_colour_distance()


# ---------------------------------------------------------------- guarded elementwise functions

def _safe_sqrt(t: torch.Tensor) -> torch.Tensor:
    """``sqrt(t)``, ``t >= 0``, exactly 0 at 0, with a finite gradient there (0)."""
    return torch.where(t > 0, torch.sqrt(t.clamp(min=torch.finfo(t.dtype).tiny)), 0.0)


def _safe_pow(base: torch.Tensor, exponent: torch.Tensor | float) -> torch.Tensor:
    """``base ** exponent`` for ``base >= 0`` and ``exponent`` in [0, 1], exact at ``base = 0``
    (``0 ** 0 = 1``, else 0), with finite gradients there."""
    positive = base > 0
    safe = torch.where(positive, base, torch.ones_like(base))
    powered = torch.exp(exponent * torch.log(safe))
    if isinstance(exponent, float):
        at_zero: torch.Tensor | float = 1.0 if exponent == 0 else 0.0
    else:
        at_zero = (exponent == 0).to(base.dtype)
    return torch.where(positive, powered, at_zero)


def srgb_to_linear(t: torch.Tensor) -> torch.Tensor:
    """The sRGB transfer function's inverse (``sRGBToLinearRGB``), for [0, 1]."""
    limit = 0.04045
    curve = ((t.clamp(min=limit) + 0.055) / 1.055) ** 2.4
    return torch.where(t <= limit, t / 12.92, curve)


def _lab_f(t: torch.Tensor) -> torch.Tensor:
    cube = _LAB_DELTA**3
    return torch.where(t > cube, t.clamp(min=cube) ** (1.0 / 3.0), t * (1.0 / (3.0 * _LAB_DELTA**2)) + 4.0 / 29.0)


def tone_map(t: torch.Tensor, tone_mapper: str) -> torch.Tensor:
    """``(M,3,H,W)`` exposed linear RGB -> tone mapped, clamped to [0, 1] (``toneMap``, ``clamp``)."""
    if tone_mapper == "reinhard":
        w = torch.tensor(LUMINANCE, dtype=t.dtype, device=t.device).view(1, 3, 1, 1)
        lum = (t * w).sum(dim=1, keepdim=True)
        return (t / (1.0 + lum)).clamp(0.0, 1.0)
    k0, k1, k2, k3, k4, k5 = TONE_COEFFS[tone_mapper]
    t = t.clamp(max=TONE_CAP)
    return ((t * (k0 * t + k1) + k2) / (t * (k3 * t + k4) + k5)).clamp(0.0, 1.0)


# ---------------------------------------------------------------- LDR-FLIP on linear RGB

def _depthwise(t: torch.Tensor, kernels: torch.Tensor, dim: int) -> torch.Tensor:
    """Filter channel ``c`` of ``t`` ``(M,C,H,W)`` with ``kernels[c]`` ``(C, K)`` along ``dim``
    (3: x, 2: y), without padding (the output is ``K - 1`` shorter along ``dim``). All the
    images go through as the channels of one image: a grouped convolution, faster on CPU than
    a batch."""
    m, c, h, w = t.shape
    shape = (m * c, 1, 1, -1) if dim == 3 else (m * c, 1, -1, 1)
    out = F.conv2d(t.reshape(1, m * c, h, w), kernels.repeat(m, 1).view(shape), groups=m * c)
    return out.view(m, c, out.shape[2], out.shape[3])


def _perceived(filtered: torch.Tensor, to_rgb: torch.Tensor, rgb_bias: torch.Tensor, to_lab_xyz: torch.Tensor,
               no_bias: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """One image batch's filtered planes ``(M,8,H,W)`` -> ``(L, A, B, edge, point)``, each
    ``(M,1,H,W)``: the Hunt-adjusted CIELAB of the CSF-filtered colours (back to linear RGB and
    clamped to [0, 1] first) and the edge and point strengths ``‖(g'_x, g'_y)‖``, ``‖(g''_x, g''_y)‖``."""
    opponent = torch.cat((filtered[:, :2], filtered[:, 2:3] + filtered[:, 3:4]), dim=1)
    rgb = _mix(opponent, to_rgb, rgb_bias).clamp(0.0, 1.0)
    f = _lab_f(_mix(rgb, to_lab_xyz, no_bias))
    lum = 116.0 * f[:, 1:2] - 16.0
    a = (0.01 * 500.0) * lum * (f[:, 0:1] - f[:, 1:2])  # Hunt: 0.01 L a*
    b = (0.01 * 200.0) * lum * (f[:, 1:2] - f[:, 2:3])
    dx, ddx, dy, ddy = filtered[:, 4:5], filtered[:, 5:6], filtered[:, 6:7], filtered[:, 7:8]
    return lum, a, b, _safe_sqrt(dx * dx + dy * dy), _safe_sqrt(ddx * ddx + ddy * ddy)


def ldr_flip_map(x_lin: torch.Tensor, y_lin: torch.Tensor, ppd: float) -> torch.Tensor:
    """LDR-FLIP error map ``(N,1,H,W)`` of two linear RGB batches ``(N,3,H,W)`` in [0, 1]
    (``x_lin`` the reference); see the module docstring for the formula."""
    n = x_lin.shape[0]
    dtype, device = x_lin.dtype, x_lin.device
    to_planes, planes_bias, to_rgb, rgb_bias, to_lab_xyz, no_bias = colour_tables(device, dtype)
    bank = filter_bank(float(ppd), device, dtype)
    radius = (bank.shape[1] - 1) // 2

    # FLIP.h clamps the pixel index at the border in each filtering pass: the same as padding
    # the input once by replicating its border pixels (the colour conversions act per pixel).
    # Y, Cx, Cz, Cz and four times the luma (Y + 16) / 116, reference then test: (2N, 8, H+2R, W+2R).
    pads = [F.pad(lin, (radius, radius, radius, radius), mode="replicate") for lin in (x_lin, y_lin)]
    if torch.is_grad_enabled() and (x_lin.requires_grad or y_lin.requires_grad):
        planes = torch.cat([_mix(p, to_planes, planes_bias) for p in pads])  # out= has no autograd
    else:  # written in place: no copy by cat
        planes = torch.empty(2 * n, 8, *pads[0].shape[2:], dtype=dtype, device=device)
        _mix(pads[0], to_planes, planes_bias, out=planes[:n])
        _mix(pads[1], to_planes, planes_bias, out=planes[n:])
    # Along x: the CSFs of Y and Cx, Cz's two separated Gaussians; g', g'', g, g on the luma.
    along_x = _depthwise(planes, bank[[0, 1, 2, 3, 5, 6, 4, 4]], 3)
    # Along y: the CSFs again; g on the x-derivatives, g' and g'' on the x-Gaussian.
    filtered = _depthwise(along_x, bank[[0, 1, 2, 3, 4, 4, 5, 6]], 2)
    # The per-pixel functions run on each half alone: the same arithmetic for both (a batch
    # of 2N would put a vectorised loop's scalar tail in one half only), so d(x, x) = 0 exactly.
    ref, test = (_perceived(part, to_rgb, rgb_bias, to_lab_xyz, no_bias) for part in (filtered[:n], filtered[n:]))

    # Colour pipeline: HyAB of the Hunt-adjusted CIELAB, to the power qc, redistributed to [0, 1].
    d_a, d_b = ref[1] - test[1], ref[2] - test[2]
    hyab = (ref[0] - test[0]).abs() + _safe_sqrt(d_a * d_a + d_b * d_b)
    colour = _safe_pow(hyab, QC)
    pccmax = PC * CMAX
    colour = torch.where(colour < pccmax, colour * (PT / pccmax),
                         PT + (colour - pccmax) * ((1.0 - PT) / (CMAX - pccmax)))
    # Feature pipeline: the larger of the edge and point differences, to the power qf.
    feature = torch.maximum((ref[3] - test[3]).abs(), (ref[4] - test[4]).abs())
    feature = _safe_sqrt(feature * (1.0 / math.sqrt(2.0)))  # qf = 0.5
    return _safe_pow(colour, 1.0 - feature)


# ---------------------------------------------------------------- HDR-FLIP

def _exposure_root(tone_mapper: str) -> float:
    """``x_max``: the input where the tone curve reaches ``t = 0.85`` (the larger root of
    ``(k0 - t k3) x^2 + (k1 - t k4) x + (k2 - t k5) = 0``; ``solveSecondDegree``)."""
    k0, k1, k2, k3, k4, k5 = TONE_COEFFS[tone_mapper]
    a, b, c = k0 - EXPOSURE_T * k3, k1 - EXPOSURE_T * k4, k2 - EXPOSURE_T * k5
    if a == 0.0:
        return -c / b
    d1 = -0.5 * b / a
    return d1 + math.sqrt(d1 * d1 - c / a)


def auto_exposures(reference: torch.Tensor, tone_mapper: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(start, stop)``, each ``(N,)``, from the reference's luminance (``computeExposures``):
    ``log2(x_max / max Y)`` and ``log2(x_max / median Y)``, the median the element at index
    ``n // 2`` of the sorted luminances. A zero median is replaced by the smallest non-zero
    luminance, and an all-black reference gets ``start = stop = 0`` (flip-evaluator has no
    finite answer there)."""
    w = torch.tensor(LUMINANCE, dtype=reference.dtype, device=reference.device).view(1, 3, 1, 1)
    lum = (reference * w).sum(dim=1).flatten(1)  # (N, HW)
    y_max = lum.amax(dim=1)
    y_med = lum.kthvalue(lum.shape[1] // 2 + 1, dim=1).values
    y_min = torch.where(lum > 0, lum, torch.full_like(lum, math.inf)).amin(dim=1)
    y_med = torch.where(y_med > 0, y_med, y_min)
    x_max = _exposure_root(tone_mapper)
    black = y_max <= 0
    ones = torch.ones_like(y_max)
    start = torch.where(black, torch.zeros_like(y_max), torch.log2(x_max / torch.where(black, ones, y_max)))
    stop = torch.where(black, torch.zeros_like(y_max), torch.log2(x_max / torch.where(black, ones, y_med)))
    return start, stop


def flip_map(x: torch.Tensor, y: torch.Tensor, mode: str = "ldr", pixels_per_degree: float = DEFAULT_PPD,
             data_range: float = 1.0, start_exposure: float | None = None, stop_exposure: float | None = None,
             num_exposures: int | None = None, tone_mapper: str = "aces") -> torch.Tensor:
    """FLIP error map ``(N,1,H,W)`` in [0, 1] of validated batches ``(N,C,H,W)``, C = 3 or 1
    (grey is repeated to RGB), ``x`` the reference. LDR: sRGB in [0, data_range]; HDR: linear
    RGB, non-negative. Computed in the inputs' dtype (at least float32) and returned in it."""
    out_dtype = torch.promote_types(x.dtype, y.dtype)
    work = torch.promote_types(out_dtype, torch.float32)
    x, y = x.to(work), y.to(work)
    if x.shape[1] == 1:
        x, y = x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1)
    if mode == "ldr":
        if data_range != 1.0:
            x, y = x * (1.0 / data_range), y * (1.0 / data_range)
        return ldr_flip_map(srgb_to_linear(x.clamp(0.0, 1.0)), srgb_to_linear(y.clamp(0.0, 1.0)),
                            pixels_per_degree).to(out_dtype)

    n = x.shape[0]
    if start_exposure is None or stop_exposure is None:
        auto_start, auto_stop = auto_exposures(x, tone_mapper)
    start = auto_start if start_exposure is None else torch.full((n,), float(start_exposure), dtype=work,
                                                                  device=x.device)
    stop = auto_stop if stop_exposure is None else torch.full((n,), float(stop_exposure), dtype=work, device=x.device)
    if bool((start > stop).any()):
        raise InputError(f"flip: start_exposure must not exceed stop_exposure, got {start.min().item():.4g} > "
                         f"{stop.max().item():.4g} (set both, or neither)")
    if num_exposures is None:
        counts = torch.ceil(stop - start).clamp(min=2.0).detach()
    else:
        counts = torch.full((n,), float(num_exposures), dtype=work, device=x.device)
    step = (stop - start) / (counts - 1.0)
    total = torch.zeros(n, 1, x.shape[2], x.shape[3], dtype=work, device=x.device)
    for i in range(int(counts.max().item())):
        scale = torch.exp2(start + i * step).view(n, 1, 1, 1)
        error = ldr_flip_map(tone_map(x * scale, tone_mapper), tone_map(y * scale, tone_mapper), pixels_per_degree)
        active = (counts > i).view(n, 1, 1, 1)
        total = torch.where(active, torch.maximum(total, error), total)
    return total.to(out_dtype)


# ---------------------------------------------------------------- the metric

class FLIP(Metric):
    """FLIP (Andersson et al. 2020, 2021): NVIDIA's perceptual error of a test image ``y`` against
    a reference ``x`` seen alternately; the mean of the per-pixel FLIP error, in [0, 1], 0 for
    identical images, lower is better. Reproduces ``flip-evaluator`` 1.7 (module docstring).

    Options: ``mode`` (``"ldr"``: sRGB images in [0, ``data_range``]; ``"hdr"``: linear RGB,
    non-negative and unbounded, ``data_range`` must stay 1), ``pixels_per_degree`` (default
    67.02: a 0.7 m wide 3840-pixel monitor at 0.7 m), for HDR ``start_exposure``,
    ``stop_exposure``, ``num_exposures`` (None: computed from the reference as flip-evaluator
    does) and ``tone_mapper`` (``"aces"``, flip-evaluator's default; ``"hable"``,
    ``"reinhard"``). Grey images are repeated to RGB. :meth:`distance_map` gives the
    ``(N,1,H,W)`` FLIP error map. The value already is a distance.

    LDR-FLIP is symmetric in its inputs (every term is); HDR-FLIP is not: its exposures come
    from the reference ``x``. The class attribute ``symmetric`` describes the default (LDR);
    an instance in HDR mode has ``symmetric = False``.
    """

    name = "flip"
    colour_doc = "RGB (grey repeated to RGB)"
    input_range_doc = "ldr: sRGB in [0, data_range], data_range=1; hdr: linear RGB >= 0, unbounded"
    lower_is_better = True
    differentiable = True
    symmetric = True  # mode="ldr", the default; an HDR instance sets False
    min_size = 1
    channels = (1, 3)

    def __init__(
        self,
        mode: Mode = "ldr",
        pixels_per_degree: float = DEFAULT_PPD,
        start_exposure: float | None = None,
        stop_exposure: float | None = None,
        num_exposures: int | None = None,
        tone_mapper: ToneMapper = "aces",
        data_range: float = 1.0,
        reduction: Reduction = "none",
        validate_args: bool = True,
    ) -> None:
        super().__init__(data_range, reduction, validate_args)
        mode = mode.lower() if isinstance(mode, str) else mode  # type: ignore[assignment]
        check_choice(self.name, "mode", mode, MODES)
        tone_mapper = tone_mapper.lower() if isinstance(tone_mapper, str) else tone_mapper  # type: ignore[assignment]
        check_choice(self.name, "tone_mapper", tone_mapper, TONE_MAPPERS)
        if isinstance(pixels_per_degree, bool) or not isinstance(pixels_per_degree, (int, float)) \
                or not (0 < pixels_per_degree < math.inf):
            raise InputError(f"flip: pixels_per_degree must be a positive number, got {pixels_per_degree!r}")
        for option, value in (("start_exposure", start_exposure), ("stop_exposure", stop_exposure)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                raise InputError(f"flip: {option} must be a finite number or None, got {value!r}")
        if start_exposure is not None and stop_exposure is not None and start_exposure > stop_exposure:
            raise InputError(f"flip: start_exposure ({start_exposure}) must not exceed stop_exposure ({stop_exposure})")
        if num_exposures is not None and (isinstance(num_exposures, bool) or not isinstance(num_exposures, int)
                                          or num_exposures < 2):
            raise InputError(f"flip: num_exposures must be an integer >= 2 or None, got {num_exposures!r}")
        if mode == "hdr" and self.data_range != 1.0:
            raise InputError("flip: mode='hdr' takes linear values as they are: data_range does not apply (leave it 1)")
        self.mode = mode
        self.pixels_per_degree = float(pixels_per_degree)
        self.start_exposure = None if start_exposure is None else float(start_exposure)
        self.stop_exposure = None if stop_exposure is None else float(stop_exposure)
        self.num_exposures = num_exposures
        self.tone_mapper = tone_mapper
        # Per instance (the base declares a class attribute): HDR's exposures come from x.
        vars(self)["symmetric"] = mode == "ldr"
        self.options.update(mode=mode, pixels_per_degree=self.pixels_per_degree)
        if mode == "hdr":
            self.options.update(start_exposure=self.start_exposure, stop_exposure=self.stop_exposure,
                                num_exposures=num_exposures, tone_mapper=tone_mapper)

    @property
    def value_range(self) -> tuple[float, float]:
        """LDR: ``(0, data_range)``. HDR takes linear values as float tensors only: image files
        and integer codes hold display-encoded (sRGB) values, which HDR-FLIP would read as linear
        light (a plausible, wrong number), so every door that reads them (the command line,
        folders, ``matrix``, ``bench``) asks for this range and stops here in one line."""
        if self.mode == "hdr":
            raise InputError("flip: mode='hdr' takes linear HDR values as float tensors (the Python API); image files "
                             "and 8-bit codes hold display-encoded sRGB: compare those with mode='ldr'")
        return super().value_range

    def check(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if self.mode == "ldr":
            super().check(x, y)
            return
        from .base import check_pair

        check_pair(x, y, channels=self.channels, min_size=self.min_size, metric=self.name, check_values=False)
        if not self.validate_args:
            return
        for label, t in (("x", x), ("y", y)):
            t_min, t_max = torch.aminmax(t.detach())
            if not (torch.isfinite(t_min) and torch.isfinite(t_max)):
                raise InputError(f"flip: {label} contains NaN or infinite values")
            if t_min < 0:
                raise InputError(f"flip: mode='hdr' needs non-negative linear values, {label} has {t_min.item():.4g}")

    def _map(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return flip_map(x, y, self.mode, self.pixels_per_degree, self.data_range, self.start_exposure,
                        self.stop_exposure, self.num_exposures, self.tone_mapper)

    def formula(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._map(x, y).mean(dim=(1, 2, 3))

    def distance_map(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The per-pixel FLIP error ``(N,1,H,W)`` in [0, 1] (its mean is the value), validated
        like :meth:`forward`."""
        return self.validated_call(self._map, x, y)
