"""Butteraugli (libjxl 0.7.0): a psychovisual distance between a reference and a distorted image.

J. Alakuijala, R. Obryk, Z. Szabadka et al., Google; the JPEG XL reference implementation's
``lib/jxl/butteraugli/butteraugli.cc`` at tag ``v0.7.0``, as Debian 12's ``butteraugli_main``
(``libjxl-devtools`` 0.7.0) runs it. This is a torch re-implementation written from reading
that file (no code copied); every constant below names the function it comes from.

Outline, for an sRGB pair in [0, data_range] (grey is used as three equal planes):

1. Linear sRGB (IEC 61966-2-1), times ``intensity_target`` (nits, 80 by default).
2. ``OpsinDynamicsImage``: an opsin mix of a 5-tap Gaussian blur (sigma 1.2, mirrored border)
   sets a per-pixel sensitivity ``Gamma(m) / m`` with ``Gamma(m) = 19.245 ln(m + 9.971) - 23.160``,
   which scales the opsin mix of the pixel itself; ``X = m0 - m1``, ``Y = m0 + m1``, ``B = m2``.
3. ``SeparateFrequencies``: Gaussian blurs (sigmas 7.156, 3.225, 1.564; zero padding with the
   weights renormalised at the border) split XYB into LF, MF, HF and UHF bands, with the
   dead zones, amplifications and soft clamps of the source (see the constants).
4. ``DiffmapPsychoImage``: AC differences per band, each a Malta filter response (16 line
   patterns, squared sums) of an asymmetric, contrast-normalised difference, plus asymmetric L2
   terms on HF and L2 on MF; DC (LF) L2 differences; a visual mask from the reference's HF+UHF
   energy (blur 2.7, fuzzy erosion) which also adds ``10 (blur0 - blur1)^2`` to the Y AC term;
   ``map = sqrt(MaskDcY(mask) * sum DC + MaskY(mask) * sum AC)``.
5. The same on the 2x2-averaged pair (when that is at least 8x8), mixed in:
   ``map = 0.85 map + 0.5 upsample(map_half)`` (``AddSupersampled2x``).

The value is ``max(map)`` (``ButteraugliScoreFromDiffmap``); the p-norm of the tool's second line
is ``mean_{k in 1,2,4} (mean(map^(p k)))^(1/(p k))`` (``ComputeDistanceP``, p = 3). The tool
sets ``hf_asymmetry = 0.8`` and ``xmul = 1`` (``tools/butteraugli_main.cc``); so does this class.
Images smaller than 8x8 get an all-zero map in libjxl (``ButteraugliComparator``): refused here.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..options import Reduction
from .base import Metric, cached_table, check_choice
from .fsim import safe_sqrt

# ---------------------------------------------------------------- constants (butteraugli.cc, v0.7.0)

#: ``ButteraugliComparator``: images below 8x8 are not compared (all-zero map); the half-size
#: level is skipped when it falls below 8x8.
MIN_SIZE = 8
#: ``tools/butteraugli_main.cc``: ``ba_params.hf_asymmetry = 0.8f; ba_params.xmul = 1.0f``.
HF_ASYMMETRY = 0.8
XMUL = 1.0
#: ``OpsinDynamicsImage``: ``kSigma = 1.2`` (a 5-tap kernel: ``Blur`` then uses ``Separable5``,
#: mirrored border).
SIGMA_OPSIN = 1.2
#: ``OpsinAbsorbance``: ``mixi0..mixi11`` (rows of the 3x3 mix, then the biases 3, 7, 11).
OPSIN_MIX = (
    (0.29956550340058319, 0.63373087833825936, 0.077705617820981968),
    (0.22158691104574774, 0.69391388044116142, 0.0987313588422),
    (0.02, 0.02, 0.20480129041026129),
)
OPSIN_BIAS = (1.7557483643287353, 1.7557483643287353, 12.226454707163354)
#: ``Gamma``: ``kRetMul = 19.245013259874995f * 0.693147180559945f`` (on log2), ``kRetAdd``,
#: and the bias added before the log.
GAMMA_MUL = 19.245013259874995 * 0.693147180559945
GAMMA_ADD = -23.16046239805755
GAMMA_BIAS = 9.9710635769299145
#: ``FastLog2f`` (``lib/jxl/fast_math-inl.h``): numerator and denominator coefficients (float),
#: and the range-reduction split, the float ``0x3f2aaaab`` (2/3).
FAST_LOG2_P = tuple(float(np.float32(v))
                    for v in (-1.8503833400518310e-06, 1.4287160470083755e00, 7.4245873327820566e-01))
FAST_LOG2_Q = tuple(float(np.float32(v))
                    for v in (9.9032814277590719e-01, 1.0096718572241148e00, 1.7409343003366853e-01))
FAST_LOG2_SPLIT = float(np.float32(2.0 / 3.0))
#: ``OpsinDynamicsImage``: ``min = 1e-4f`` (floor of the mix and the sensitivity).
OPSIN_MIN = 1e-4
#: ``SeparateFrequencies``: the band sigmas.
SIGMA_LF, SIGMA_HF, SIGMA_UHF = 7.15593339443, 3.22489901262, 1.56416327805
#: ``SeparateFrequencies``: dead zones / amplified zones around 0, soft clamps and Y gains.
REMOVE_MF_RANGE, ADD_MF_RANGE = 0.29, 0.1
REMOVE_HF_RANGE, ADD_HF_RANGE, REMOVE_UHF_RANGE = 1.5, 0.132, 0.04
MAXCLAMP_HF, MAXCLAMP_UHF = 28.4691806922, 5.19175294647
MUL_Y_HF, MUL_Y_UHF = 2.155, 2.69313763794
#: ``SeparateFrequencies``: ``suppress = 46.0`` and ``SuppressXByY``'s ``s = 0.653020556257``.
SUPPRESS_YW, SUPPRESS_S = 46.0, 0.653020556257
#: ``MaximumClamp``: ``kMul = 0.724216145665``.
MAXCLAMP_MUL = 0.724216145665
#: ``XybLowFreqToVals``: ``xmuli, ymuli, bmuli, y_to_b_muli``.
LF_XMUL, LF_YMUL, LF_BMUL, LF_Y_TO_B = 32.2217497012, 13.7697791434, 47.504615728, -0.362267051518
#: ``MaltaDiffMapT``: ``kWeight0 = 0.5``, ``kWeight1 = 0.33``; ``MaltaDiffMap(LF)``: ``len = 3.75``,
#: ``mulli`` 0.39905817637 (HF patterns) and 0.611612573796 (LF patterns).
MALTA_W0, MALTA_W1, MALTA_LEN = 0.5, 0.33, 3.75
MALTA_MULLI_HF, MALTA_MULLI_LF = 0.39905817637, 0.611612573796
#: ``DiffmapPsychoImage``: (weight, norm1) of the six Malta terms.
W_UHF_MALTA, NORM1_UHF = 1.10039032555, 71.7800275169
W_UHF_MALTA_X, NORM1_UHF_X = 173.5, 5.0
W_HF_MALTA, NORM1_HF = 18.7237414387, 4498534.45232
W_HF_MALTA_X, NORM1_HF_X = 6923.99476109, 8051.15833247
W_MF_MALTA, NORM1_MF = 37.0819870399, 130262059.556
W_MF_MALTA_X, NORM1_MF_X = 8246.75321353, 1009002.70582
#: ``DiffmapPsychoImage``: ``wmul[9]`` (HF X, Y, B; MF X, Y, B; LF X, Y, B).
WMUL = (400.0, 1.50815703118, 0.0, 2150.0, 10.6195433239, 16.2176043152, 29.2353797994, 0.844626970982, 0.703646627719)
#: ``L2DiffAsymmetric``: the extra factor 0.8 on both weights, ``too_small = 0.4 |v0|``.
L2ASYM_MUL, L2ASYM_SMALL = 0.8, 0.4
#: ``MaskPsychoImage``: ``muls = {2.5f, 0.4f, 0.4f}``.
MASK_MULS = (2.5, 0.4, 0.4)
#: ``Mask``: ``kMul``, ``kBias``, ``kRadius`` and ``kMaskToErrorMul``.
MASK_MUL, MASK_BIAS, MASK_RADIUS, MASK_TO_ERROR_MUL = 6.19424080439, 12.61050594197, 2.7, 10.0
#: ``FuzzyErosion``: ``kStep = 3`` and the weights of the three smallest values.
EROSION_STEP, EROSION_WEIGHTS = 3, (0.45, 0.3, 0.25)
#: ``MaskY`` and ``MaskDcY``: (offset, scaler, mul).
MASK_Y = (0.829591754942, 0.451936922203, 2.5485944793)
MASK_DC_Y = (0.20025578522, 3.87449418804, 0.505054525019)
#: ``kGlobalScale = 1 / (17.8f * kIntensityTargetNormalizationHack)`` (0.79079917404f), in float.
GLOBAL_SCALE = float(np.float32(1.0) / (np.float32(17.8) * np.float32(0.79079917404)))
#: ``AddSupersampled2x``: ``kHeuristicMixingValue = 0.3``, with the weight ``w = 0.5`` of ``Diffmap``.
SUPERSAMPLE_MIX, SUPERSAMPLE_W = 0.3, 0.5
#: Outputs per block of the blurs' banded matrix products (:func:`_blur_axis`).
BLUR_BLOCK = 64
#: ``ComputeKernel``: ``m = 2.25`` (kernel half-width ``max(1, int(m sigma))``).
KERNEL_M = 2.25

# Malta filters (``MaltaUnit``): 16 lines through the centre of a 9x9 window, as (dy, dx) taps.
# The LF set (``MaltaTagLF``) samples every other pixel; the HF set (``MaltaTag``) every pixel
# (its last four lines repeat lines 5-8, as in the source).
_LF_LINES = (
    ((0, -4), (0, -2), (0, 0), (0, 2), (0, 4)),
    ((-4, 0), (-2, 0), (0, 0), (2, 0), (4, 0)),
    ((-3, -3), (-2, -2), (0, 0), (2, 2), (3, 3)),
    ((-3, 3), (-2, 2), (0, 0), (2, -2), (3, -3)),
    ((-4, 1), (-2, 1), (0, 0), (2, -1), (4, -1)),
    ((-4, -1), (-2, -1), (0, 0), (2, 1), (4, 1)),
    ((-1, -4), (-1, -2), (0, 0), (1, 2), (1, 4)),
    ((1, -4), (1, -2), (0, 0), (-1, 2), (-1, 4)),
    ((-3, -2), (-2, -1), (0, 0), (2, 1), (3, 2)),
    ((-3, 2), (-2, 1), (0, 0), (2, -1), (3, -2)),
    ((-2, -3), (-1, -2), (0, 0), (1, 2), (2, 3)),
    ((-2, 3), (-1, 2), (0, 0), (1, -2), (2, -3)),
    ((2, -4), (1, -2), (0, 0), (-1, 2), (-2, 4)),
    ((-2, -4), (-1, -2), (0, 0), (1, 2), (2, 4)),
    ((-4, -2), (-2, -1), (0, 0), (2, 1), (4, 2)),
    ((-4, 2), (-2, 1), (0, 0), (2, -1), (4, -2)),
)
_HF_5 = ((-4, 1), (-3, 1), (-2, 1), (-1, 0), (0, 0), (1, 0), (2, -1), (3, -1), (4, -1))
_HF_6 = ((-4, -1), (-3, -1), (-2, -1), (-1, 0), (0, 0), (1, 0), (2, 1), (3, 1), (4, 1))
_HF_7 = ((-1, -4), (-1, -3), (-1, -2), (0, -1), (0, 0), (0, 1), (1, 2), (1, 3), (1, 4))
_HF_8 = ((1, -4), (1, -3), (1, -2), (0, -1), (0, 0), (0, 1), (-1, 2), (-1, 3), (-1, 4))
_HF_LINES = (
    tuple((0, dx) for dx in range(-4, 5)),
    tuple((dy, 0) for dy in range(-4, 5)),
    tuple((d, d) for d in range(-3, 4)),
    tuple((d, -d) for d in range(-3, 4)),
    _HF_5, _HF_6, _HF_7, _HF_8,
    ((-3, -2), (-2, -1), (-1, -1), (0, 0), (1, 1), (2, 1), (3, 2)),
    ((-3, 2), (-2, 1), (-1, 1), (0, 0), (1, -1), (2, -1), (3, -2)),
    ((-2, -3), (-1, -2), (-1, -1), (0, 0), (1, 1), (1, 2), (2, 3)),
    ((-2, 3), (-1, 2), (-1, 1), (0, 0), (1, -1), (1, -2), (2, -3)),
    _HF_8, _HF_7, _HF_6, _HF_5,
)

NORMS = ("max", "pnorm")


# ---------------------------------------------------------------- blurs

def _kernel(sigma: float) -> np.ndarray:
    """``ComputeKernel``: ``exp(-i^2 / (2 sigma^2))`` for ``|i| <= max(1, int(2.25 sigma))``, in
    float32 as libjxl holds it (sigma is a float there)."""
    s = float(np.float32(sigma))
    half = max(1, int(np.float32(KERNEL_M) * np.float32(abs(s))))
    scaler = -1.0 / (2.0 * s * s)
    return np.exp(scaler * np.arange(-half, half + 1, dtype=np.float64) ** 2).astype(np.float32)


def _mirror(i: int, n: int) -> int:
    """libjxl's ``Mirror`` (``image_ops.h``): reflection that repeats the edge pixel."""
    while i < 0 or i >= n:
        i = -i - 1 if i < 0 else 2 * n - 1 - i
    return i


@cached_table()
def _band_matrix(sigma: float, block: int) -> torch.Tensor:
    """``(block + 2 half, block)`` float64 matrix: column ``i`` holds the kernel taps that output
    ``i`` of a block takes from its window (the block and ``half`` pixels either side)."""
    k = _kernel(sigma).astype(np.float64)
    if len(k) == 5:
        k = k / k.sum()
    m = np.zeros((block + len(k) - 1, block))
    for i in range(block):
        m[i:i + len(k), i] = k
    return torch.from_numpy(m)


def _blur_axis(t: torch.Tensor, sigma: float) -> torch.Tensor:
    """libjxl's 1-D blur along the last axis of ``t``. A 5-tap kernel (``Separable5``): the
    kernel normalised to sum 1, over a mirrored border. Otherwise (``ConvolutionWithTranspose``):
    zero padding, each output divided by the sum of its taps inside the image
    (``ConvolveBorderColumn``; the full sum in the interior).

    Computed in blocks of :data:`BLUR_BLOCK` outputs, each one product of its window with a
    banded matrix: one matrix product for all blocks, which on a CPU runs faster than a
    one-channel ``conv2d`` or a sliding window."""
    n = t.shape[-1]
    k = _kernel(sigma)
    half = len(k) // 2
    block = min(BLUR_BLOCK, n)
    blocks = -(-n // block)
    extra = blocks * block - n
    if len(k) == 5:
        index = torch.tensor([_mirror(i, n) for i in range(-half, n + half)], device=t.device)
        padded = F.pad(t.index_select(-1, index), (0, extra))
    else:
        padded = F.pad(t, (half, half + extra))
    windows = padded.unfold(-1, block + 2 * half, block)  # (..., blocks, block + 2 half)
    band = _band_matrix(sigma, block).to(dtype=t.dtype, device=t.device)
    out = (windows.reshape(-1, windows.shape[-1]) @ band).view(*t.shape[:-1], blocks * block)[..., :n]
    if len(k) == 5:
        return out
    inside = np.convolve(np.ones(n), k.astype(np.float64), mode="full")[half:half + n]
    return out / torch.tensor(inside, dtype=t.dtype, device=t.device)


def blur(t: torch.Tensor, sigma: float) -> torch.Tensor:
    """libjxl's ``Blur`` of every plane of ``(..., H, W)``: the separable Gaussian of
    ``ComputeKernel(sigma)`` along both axes (see :func:`_blur_axis` for the borders: mirrored
    for the 5-tap kernel of sigma 1.2, renormalised zero padding otherwise)."""
    return _blur_axis(_blur_axis(t, sigma).transpose(-1, -2), sigma).transpose(-1, -2)


# ---------------------------------------------------------------- colour: linear sRGB -> XYB

def srgb_to_linear_exact(v: torch.Tensor) -> torch.Tensor:
    """IEC 61966-2-1 sRGB decoding (what libjxl's colour management does to an untagged PNG)."""
    high = ((v.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4
    return torch.where(v > 0.04045, high, v / 12.92)


def fast_log2(x: torch.Tensor) -> torch.Tensor:
    """libjxl's ``FastLog2f`` (``fast_math-inl.h``) for ``x > 0``: ``x = m 2^e`` with ``m`` in
    [2/3, 4/3), then ``e`` plus a (2,2) rational approximation of ``log2(m)`` in ``m - 1``.
    Its error (about 1e-6) moves Butteraugli by about 1e-4 on flat images: mirrored for parity.
    The exponent is found on the detached value; the gradient flows through ``m`` (where rounding
    puts ``m`` a hair outside the range, the approximation still holds to 1e-6)."""
    exponent = torch.floor(torch.log2(x.detach() / FAST_LOG2_SPLIT))
    t = x * torch.exp2(-exponent) - 1.0
    p0, p1, p2 = FAST_LOG2_P
    q0, q1, q2 = FAST_LOG2_Q
    return (p0 + t * (p1 + t * p2)) / (q0 + t * (q1 + t * q2)) + exponent


def _opsin_mix(rgb: torch.Tensor) -> torch.Tensor:
    """``OpsinAbsorbance`` without the clamp: ``(B,3,H,W) -> (B,3,H,W)``, mix + bias."""
    m = torch.tensor(OPSIN_MIX, dtype=rgb.dtype, device=rgb.device)
    b = torch.tensor(OPSIN_BIAS, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    return torch.einsum("ij,bjhw->bihw", m, rgb) + b


def opsin_dynamics(linear: torch.Tensor, intensity_target: float) -> torch.Tensor:
    """``OpsinDynamicsImage``: linear RGB ``(B,3,H,W)`` in [0, 1] -> XYB ``(B,3,H,W)``."""
    bias = torch.tensor(OPSIN_BIAS, dtype=linear.dtype, device=linear.device).view(1, 3, 1, 1)
    scaled = linear * intensity_target
    pre = torch.maximum(_opsin_mix(blur(scaled, SIGMA_OPSIN)), bias).clamp(min=OPSIN_MIN)
    gamma = GAMMA_MUL * fast_log2(pre + GAMMA_BIAS) + GAMMA_ADD  # Gamma()
    sensitivity = (gamma / pre).clamp(min=OPSIN_MIN)
    cur = torch.maximum(_opsin_mix(scaled) * sensitivity, bias)
    return torch.cat((cur[:, :1] - cur[:, 1:2], cur[:, :1] + cur[:, 1:2], cur[:, 2:]), dim=1)


# ---------------------------------------------------------------- frequency bands

def remove_range(x: torch.Tensor, w: float) -> torch.Tensor:
    """``RemoveRangeAroundZero``: a dead zone ``[-w, w]``, shifted towards 0 outside it."""
    return torch.where(x > w, x - w, torch.where(x < -w, x + w, torch.zeros_like(x)))


def amplify_range(x: torch.Tensor, w: float) -> torch.Tensor:
    """``AmplifyRangeAroundZero``: doubled inside ``[-w, w]``, shifted away from 0 outside it."""
    return torch.where(x > w, x + w, torch.where(x < -w, x - w, x + x))


def maximum_clamp(v: torch.Tensor, maxval: float) -> torch.Tensor:
    """``MaximumClamp``: beyond ``+-maxval`` the excess is scaled by 0.724216145665."""
    return torch.where(v >= maxval, (v - maxval) * MAXCLAMP_MUL + maxval,
                       torch.where(v < -maxval, (v + maxval) * MAXCLAMP_MUL - maxval, v))


def separate_frequencies(xyb: torch.Tensor) -> dict[str, torch.Tensor]:
    """``SeparateFrequencies``: XYB ``(B,3,H,W)`` -> bands ``lf`` (3, in "vals" space),
    ``mf`` (3), ``hf`` (X, Y) and ``uhf`` (X, Y)."""
    lf = blur(xyb, SIGMA_LF)
    mf_raw = xyb - lf
    mf_blur = blur(mf_raw, SIGMA_HF)
    hf = mf_raw[:, :2] - mf_blur[:, :2]
    mf = torch.cat((remove_range(mf_blur[:, :1], REMOVE_MF_RANGE),
                    amplify_range(mf_blur[:, 1:2], ADD_MF_RANGE), mf_blur[:, 2:]), dim=1)
    hf_y = hf[:, 1:2]
    scaler = SUPPRESS_S + (1.0 - SUPPRESS_S) * (SUPPRESS_YW / (hf_y * hf_y + SUPPRESS_YW))  # SuppressXByY
    hf = torch.cat((hf[:, :1] * scaler, hf_y), dim=1)
    hf_blur = blur(hf, SIGMA_UHF)
    uhf_x = remove_range(hf[:, :1] - hf_blur[:, :1], REMOVE_UHF_RANGE)
    hf_x = remove_range(hf_blur[:, :1], REMOVE_HF_RANGE)
    hf_y = maximum_clamp(hf_blur[:, 1:2], MAXCLAMP_HF)
    uhf_y = maximum_clamp(hf[:, 1:2] - hf_y, MAXCLAMP_UHF) * MUL_Y_UHF
    hf_y = amplify_range(hf_y * MUL_Y_HF, ADD_HF_RANGE)
    vals = torch.cat((lf[:, :1] * LF_XMUL, lf[:, 1:2] * LF_YMUL,
                      (lf[:, 2:] + LF_Y_TO_B * lf[:, 1:2]) * LF_BMUL), dim=1)  # XybLowFreqToVals
    return {"lf": vals, "mf": mf, "hf": torch.cat((hf_x, hf_y), dim=1), "uhf": torch.cat((uhf_x, uhf_y), dim=1)}


# ---------------------------------------------------------------- differences

def malta_input(r0: torch.Tensor, r1: torch.Tensor, w_0gt1: float, w_0lt1: float, norm1: float,
                mulli: float) -> torch.Tensor:
    """``MaltaDiffMapT``'s per-pixel ``diffs``: the contrast-normalised difference plus the
    asymmetric penalty for ``r1`` falling below 0.55 ``|r0|`` or above 1.05 ``|r0|``."""
    w_pre0gt1 = mulli * math.sqrt(MALTA_W0 * w_0gt1) / (MALTA_LEN * 2 + 1)
    w_pre0lt1 = mulli * math.sqrt(float(np.float32(MALTA_W1)) * w_0lt1) / (MALTA_LEN * 2 + 1)
    absval = 0.5 * (r0.abs() + r1.abs())
    denom = norm1 + absval
    diffs = (w_pre0gt1 * norm1) / denom * (r0 - r1)
    scaler2 = (w_pre0lt1 * norm1) / denom
    fabs0 = r0.abs()
    too_small, too_big = 0.55 * fabs0, 1.05 * fabs0
    zero = torch.zeros_like(r0)
    neg = torch.where(r1 > -too_small, -(r1 + too_small), torch.where(r1 < -too_big, -r1 - too_big, zero))
    pos = torch.where(r1 < too_small, too_small - r1, torch.where(r1 > too_big, -(r1 - too_big), zero))
    return diffs + scaler2 * torch.where(r0 < 0, neg, pos)


def malta_unit(diffs: torch.Tensor, lf: bool) -> torch.Tensor:
    """``MaltaUnit`` at every pixel of ``(..., H, W)`` (zero outside the image, as
    ``PaddedMaltaUnit``): the sum over the 16 line patterns of the squared sum of ``diffs`` along
    the line. Written as shifted slices of a zero-padded copy (5-9 additions per line), which on
    a CPU runs about 10x faster than a 16-channel 9x9 convolution; a line listed twice in the
    source counts twice."""
    h, w = diffs.shape[-2:]
    padded = F.pad(diffs, (4, 4, 4, 4))
    lines = _LF_LINES if lf else _HF_LINES
    total = torch.zeros_like(diffs)
    for line in dict.fromkeys(lines):
        line_sum = diffs
        for dy, dx in line:
            if dy or dx:
                line_sum = line_sum + padded[..., 4 + dy:4 + dy + h, 4 + dx:4 + dx + w]
        total = total + lines.count(line) * line_sum * line_sum
    return total


def l2_asymmetric(i0: torch.Tensor, i1: torch.Tensor, w_0gt1: float, w_0lt1: float) -> torch.Tensor:
    """``L2DiffAsymmetric``'s addition: ``0.8 w_0gt1 (i0 - i1)^2 + 0.8 w_0lt1 v^2``, ``v`` how far
    ``i1`` falls outside ``[0.4 |i0|, |i0|]`` (mirrored for negative ``i0``)."""
    diff = i0 - i1
    fabs0 = i0.abs()
    too_small, too_big = L2ASYM_SMALL * fabs0, fabs0
    zero = torch.zeros_like(i0)
    neg = torch.where(i1 > -too_small, i1 + too_small, torch.where(i1 < -too_big, -i1 - too_big, zero))
    pos = torch.where(i1 < too_small, too_small - i1, torch.where(i1 > too_big, i1 - too_big, zero))
    v = torch.where(i0 < 0, neg, pos)
    w_gt = float(np.float32(w_0gt1)) * L2ASYM_MUL
    w_lt = float(np.float32(w_0lt1)) * L2ASYM_MUL
    return w_gt * diff * diff + w_lt * v * v


def fuzzy_erosion(t: torch.Tensor) -> torch.Tensor:
    """``FuzzyErosion`` of ``(B,1,H,W)``: ``0.45 m0 + 0.3 m1 + 0.25 m2``, the three smallest of
    ``{v, 2v, 2v}`` and the (up to 8) pixels at offsets of 3 in each direction."""
    h, w = t.shape[-2:]
    s = EROSION_STEP
    padded = F.pad(t, (s, s, s, s), value=math.inf)
    m0, m1, m2 = t, 2.0 * t, 2.0 * t
    for dy in (-s, 0, s):
        for dx in (-s, 0, s):
            if dy or dx:  # StoreMin3: keep the three smallest, sorted
                v = padded[..., s + dy:s + dy + h, s + dx:s + dx + w]
                m0, v = torch.minimum(m0, v), torch.maximum(m0, v)
                m1, v = torch.minimum(m1, v), torch.maximum(m1, v)
                m2 = torch.minimum(m2, v)
    a, b, c = EROSION_WEIGHTS
    return a * m0 + b * m1 + c * m2


def _mask_y(delta: torch.Tensor, params: tuple[float, float, float]) -> torch.Tensor:
    """``MaskY`` / ``MaskDcY``: ``(kGlobalScale (1 + mul / (scaler delta + offset)))^2``."""
    offset, scaler, mul = params
    v = GLOBAL_SCALE * (1.0 + mul / (scaler * delta + offset))
    return v * v


def level_diffmap(p0: dict[str, torch.Tensor], p1: dict[str, torch.Tensor],
                  hf_asymmetry: float = HF_ASYMMETRY, xmul: float = XMUL) -> torch.Tensor:
    """``DiffmapPsychoImage``: the bands of the reference ``p0`` and the distorted ``p1`` ->
    the ``(N,1,H,W)`` map of one resolution."""
    a, sa = hf_asymmetry, math.sqrt(hf_asymmetry)
    mh, ml = MALTA_MULLI_HF, MALTA_MULLI_LF
    # the six Malta terms: (band, channel, LF patterns?, w_0gt1, w_0lt1, norm1, mulli)
    terms = (
        ("uhf", 1, False, W_UHF_MALTA * a, W_UHF_MALTA / a, NORM1_UHF, mh),
        ("uhf", 0, False, W_UHF_MALTA_X * a, W_UHF_MALTA_X / a, NORM1_UHF_X, mh),
        ("hf", 1, True, W_HF_MALTA * sa, W_HF_MALTA / sa, NORM1_HF, ml),
        ("hf", 0, True, W_HF_MALTA_X * sa, W_HF_MALTA_X / sa, NORM1_HF_X, ml),
        ("mf", 1, True, W_MF_MALTA, W_MF_MALTA, NORM1_MF, ml),
        ("mf", 0, True, W_MF_MALTA_X, W_MF_MALTA_X, NORM1_MF_X, ml),
    )
    ac: list[torch.Tensor] = [torch.zeros(()), torch.zeros(()), torch.zeros(())]
    for lf_patterns in (False, True):
        chosen = [t for t in terms if t[2] == lf_patterns]
        diffs = torch.cat([malta_input(p0[band][:, c:c + 1], p1[band][:, c:c + 1], w_gt, w_lt, norm1, mulli)
                           for band, c, _, w_gt, w_lt, norm1, mulli in chosen], dim=1)
        units = malta_unit(diffs, lf_patterns)
        for j, (_, c, *_rest) in enumerate(chosen):
            ac[c] = ac[c] + units[:, j:j + 1]
    for c in range(2):
        ac[c] = ac[c] + l2_asymmetric(p0["hf"][:, c:c + 1], p1["hf"][:, c:c + 1], WMUL[c] * a, WMUL[c] / a)
    mf_diff = p0["mf"] - p1["mf"]
    lf_diff = p0["lf"] - p1["lf"]
    dc = []
    for c in range(3):
        ac[c] = ac[c] + float(np.float32(WMUL[3 + c])) * mf_diff[:, c:c + 1] ** 2
        dc.append(float(np.float32(WMUL[6 + c])) * lf_diff[:, c:c + 1] ** 2)
    # MaskPsychoImage / Mask: both images' HF+UHF energy, the reference's sets the mask
    mx0, my0, my1 = MASK_MULS
    energy = []
    for p in (p0, p1):
        xdiff = (p["uhf"][:, :1] + p["hf"][:, :1]) * mx0
        ydiff = p["uhf"][:, 1:2] * my0 + p["hf"][:, 1:2] * my1
        energy.append(safe_sqrt(xdiff * xdiff + ydiff * ydiff))
    bias = MASK_MUL * MASK_BIAS
    pre = safe_sqrt(MASK_MUL * torch.cat(energy, dim=0).abs() + bias) - math.sqrt(bias)  # DiffPrecompute
    blurred = blur(pre, MASK_RADIUS)
    n = p0["lf"].shape[0]
    b0, b1 = blurred[:n], blurred[n:]
    mask = fuzzy_erosion(b0)
    ac[1] = ac[1] + MASK_TO_ERROR_MUL * (b0 - b1) ** 2
    total = (_mask_y(mask, MASK_DC_Y) * (xmul * dc[0] + dc[1] + dc[2])
             + _mask_y(mask, MASK_Y) * (xmul * ac[0] + ac[1] + ac[2]))
    return torch.where(total > 0, safe_sqrt(total), torch.zeros_like(total))  # exactly 0 for x == y


def subsample_2x(t: torch.Tensor) -> torch.Tensor:
    """``SubSample2x``: means of 2x2 blocks; an odd last row or column averages what it has."""
    return F.avg_pool2d(t, 2, stride=2, ceil_mode=True)


def _bands(linear: torch.Tensor, intensity_target: float) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    n = linear.shape[0] // 2
    bands = separate_frequencies(opsin_dynamics(linear, intensity_target))
    return {k: v[:n] for k, v in bands.items()}, {k: v[n:] for k, v in bands.items()}


def butteraugli_map(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0,
                    intensity_target: float = 80.0) -> torch.Tensor:
    """The ``(N,1,H,W)`` Butteraugli map of sRGB pairs in [0, data_range] (``x`` the reference),
    as libjxl 0.7.0's ``ButteraugliComparator::Diffmap`` with the tool's parameters. H, W >= 8."""
    pair = torch.cat((x, y)) / data_range
    if pair.shape[1] == 1:
        pair = pair.expand(-1, 3, -1, -1)
    linear = srgb_to_linear_exact(pair)
    result = level_diffmap(*_bands(linear, intensity_target))
    h, w = result.shape[-2:]
    if (h + 1) // 2 >= MIN_SIZE and (w + 1) // 2 >= MIN_SIZE:
        sub = level_diffmap(*_bands(subsample_2x(linear), intensity_target))
        up = sub.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)[..., :h, :w]
        result = result * (1.0 - SUPERSAMPLE_MIX * SUPERSAMPLE_W) + SUPERSAMPLE_W * up
    return result


def pnorm_of_map(dmap: torch.Tensor, p: float = 3.0) -> torch.Tensor:
    """``ComputeDistanceP`` of ``(N,1,H,W)`` maps: ``mean_{k=1,2,4} (mean(d^(p k)))^(1/(p k))``
    (in float64 at least, as libjxl sums in double)."""
    d = dmap.flatten(1).to(torch.promote_types(dmap.dtype, torch.float64))
    total = torch.zeros(d.shape[0], dtype=d.dtype, device=d.device)
    powered = d ** p if p != 3.0 else d * d * d
    for k in (1, 2, 4):
        m = powered.mean(dim=1)
        total = total + torch.where(m > 0, m.clamp(min=torch.finfo(m.dtype).tiny) ** (1.0 / (p * k)), m)
        powered = powered * powered
    return total / 3.0


class Butteraugli(Metric):
    """Butteraugli (libjxl 0.7.0, ``butteraugli_main``): psychovisual distance, 0 for identical images.

    Reproduces the C++ tool's numbers (see the module's doc): ``norm="max"`` gives its first
    line (the maximum of the distance map), ``norm="pnorm"`` its ``3-norm`` line (``p``).
    ``x`` is the reference, ``y`` the distorted image: the distance is not symmetric.

    Options: ``data_range`` (1 or 255, ...), ``intensity_target`` (display peak in nits, the
    tool's ``--intensity_target``, 80), ``norm`` (``"max"`` or ``"pnorm"``), ``p`` (the tool's
    ``--pnorm``, 3). :meth:`distance_map` gives the per-pixel map, :meth:`max_and_pnorm` both
    numbers at once. Inputs are sRGB (grey is three equal planes), at least 8x8 pixels.
    """

    name = "butteraugli"
    colour_doc = "RGB or grey (sRGB -> linear -> XYB opsin space)"
    lower_is_better = True
    differentiable = True
    symmetric = False
    min_size = MIN_SIZE
    channels = (1, 3)

    def __init__(
        self,
        data_range: float = 1.0,
        intensity_target: float = 80.0,
        norm: Literal["max", "pnorm"] = "max",
        p: float = 3.0,
        reduction: Reduction = "none",
        validate_args: bool = True,
    ) -> None:
        super().__init__(data_range, reduction, validate_args)
        if isinstance(intensity_target, bool) or not isinstance(intensity_target, (int, float)) \
                or not math.isfinite(intensity_target) or not intensity_target > 0:
            raise InputError(
                f"butteraugli: intensity_target must be a positive number of nits, got {intensity_target!r}")
        check_choice(self.name, "norm", norm, NORMS)
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p) or not p > 0:
            raise InputError(f"butteraugli: p must be a positive number, got {p!r}")
        self.intensity_target = float(intensity_target)
        self.norm = norm
        self.p = float(p)
        self.options.update(intensity_target=self.intensity_target, norm=norm, p=self.p)

    def check(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if isinstance(x, torch.Tensor) and x.ndim == 4 and min(x.shape[-2:]) < MIN_SIZE:
            raise InputError(f"butteraugli: images of {x.shape[-2]}x{x.shape[-1]} are smaller than 8x8; "
                             "libjxl 0.7.0 does not compare them (its map is all zeros)")
        super().check(x, y)

    def _map(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        dtype = torch.promote_types(x.dtype, torch.float32)
        dmap = butteraugli_map(x.to(dtype), y.to(dtype), self.data_range, self.intensity_target)
        return dmap.to(x.dtype)

    def formula(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        dmap = self._map(x, y)
        if self.norm == "max":
            return dmap.flatten(1).amax(dim=1)
        return pnorm_of_map(dmap, self.p).to(x.dtype)

    def distance_map(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The ``(N,1,H,W)`` per-pixel Butteraugli map (its maximum is the distance)."""
        return self.validated_call(self._map, x, y)

    def max_and_pnorm(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both of the tool's numbers, ``(N,)`` each: the max-norm distance and the ``p``-norm."""
        dmap = self.distance_map(x, y)
        return dmap.flatten(1).amax(dim=1), pnorm_of_map(dmap, self.p).to(dmap.dtype)
