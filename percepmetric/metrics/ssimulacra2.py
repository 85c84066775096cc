"""SSIMULACRA 2: Jon Sneyers' Structural SIMilarity Unveiling Local And Compression Related Artifacts.

J. Sneyers (Cloudinary), SSIMULACRA 2, July 2022, updated April 2023; reference implementation
``tools/ssimulacra2.cc`` of libjxl (BSD-3-Clause), https://github.com/cloudinary/ssimulacra2.
Weights tuned on CID22, TID2013, KADID-10k and KonFiG-IQA subjective scores.

A score of how well ``y`` (distorted) preserves ``x`` (reference): 100 for identical images,
about 90 visually lossless, 70 high quality, 50 medium, 30 low, 10 very low, and below 0 for
very strong distortions (no lower bound: unrelated noise images score a few hundred below 0).

1. sRGB -> linear RGB (IEC 61966-2-1 curve: ``v / 12.92`` up to 0.04045, else
   ``((v + 0.055) / 1.055) ** 2.4``), on ``v = x / data_range``.
2. Linear RGB -> XYB (JPEG XL's opsin space): ``m = M rgb + b`` with the opsin absorbance matrix
   ``M`` and bias ``b`` (:data:`OPSIN_MATRIX`, :data:`OPSIN_BIAS`), ``m <- cbrt(max(m, 0)) -
   cbrt(b)``; ``X = (m0 - m1) / 2``, ``Y = (m0 + m1) / 2``, ``B = m2``. Then ssimulacra2's
   ``MakePositiveXYB``: ``B <- B - Y + 0.55``, ``X <- 14 X + 0.42``, ``Y <- Y + 0.01``.
3. Six scales (1:1 to 1:32): each next one is the previous *linear RGB* image averaged over 2x2
   blocks (a last odd row/column averaged with itself), converted to XYB again.
4. At each scale, per XYB plane, a Gaussian blur ``G`` (sigma 1.5) of ``x``, ``y``, ``x^2``,
   ``y^2``, ``x y`` gives ``mu1, mu2, s11, s22, s12`` and three error maps:

   * SSIM error without the luminance denominator (ssimulacra2's "correction"):
     ``d = max(0, 1 - (1 - (mu1 - mu2)^2) (2 (s12 - mu1 mu2) + C2) / (s11 - mu1^2 + s22 - mu2^2 + C2))``,
     ``C2 = 0.0009``;
   * with ``r = (1 + |y - mu2|) / (1 + |x - mu1|) - 1``: ringing/blockiness ``max(r, 0)`` and
     blur/detail loss ``max(-r, 0)``.

   Each map gives two norms, its mean and ``mean(map^4)^(1/4)``: 3 planes x 6 scales x 3 maps x
   2 norms = 108 numbers.
5. ``s`` = their sum weighted by the 108 tuned weights :data:`WEIGHTS` (in the order plane,
   scale, norm, map); ``s <- 0.9562382616834844 s``;
   ``s <- 2.326765642916932 s - 0.020884521182843837 s^2 + 6.248496625763138e-05 s^3``;
   score ``= 100 - 10 s^0.6276336467831387`` for ``s > 0``, else 100.

Scales whose image would be smaller than 8 pixels are dropped, and the weights are then taken in
order from the start of the list (so a smaller image uses the first ``18 k`` weights for ``k``
scales, as both the reference code and the Python port do).

Two conventions (option ``blur``):

``"exact"`` (default)
    The PyPI package ``ssimulacra2`` 0.3.0 (a Python port, BSD-3-Clause), which this matches to
    float rounding: the blur is an exact Gaussian (scipy ``gaussian_filter``, ``truncate=3.33``:
    11 taps, normalised), with zero padding past the left and right edges and half-sample
    symmetric reflection past the top and bottom (the port pads its transposed planes with
    zeros along what is the image's width); a scale is kept while its own size is at least 8x8.
``"recursive"``
    libjxl's ``tools/ssimulacra2.cc``: its blur is the Charalampidis (2016) 3-pole recursive
    Gaussian of ``tools/gauss_blur.cc`` (``CreateRecursiveGaussian(1.5)``, radius
    ``N = round(3.2795 sigma + 0.2546) = 5``) with zeros outside the image in both directions.
    Its poles lie on the unit circle, and the input pairs ``x[n - N - 1] + x[n + N - 1]`` cancel
    each cosine's tail, so in exact arithmetic the recursion *is* a 9-tap FIR filter
    ``h(m) = sum_k n2_k sin((m + N) w_k) / sin(w_k)``, ``|m| <= N - 1``; it is applied as that
    convolution (same numbers up to float rounding, and vectorised). A scale is kept when the
    previous scale was at least 8x8 (libjxl checks the size before downsampling, so its last
    scale can be 4..7 pixels). Not checked against the libjxl binary here: the formulas follow
    its source; expect differences of float rounding plus libjxl's own colour management
    (sRGB decoding through its CMS, an approximate cube root).

Numerics: everything runs in the inputs' dtype (float16 in float32). The SSIM error is computed
as ``(mu1 - mu2)^2 + num_m (G((x - y)^2) - (mu1 - mu2)^2) / denom_s``, the same quantity with the
cancellation of ``G(x y) - mu1 mu2`` taken out, so float32 stays within ~3e-5 relative of the
float64 reference and identical images give exactly 100 (``x`` and ``y`` also go through the
colour conversion separately, in tensors of one layout, so equal inputs give bitwise equal XYB).
On the CPU the batch is scored a few images at a time and the blur a few planes at a time, to
stay in the cache.

Differentiable except at the kinks of ``max(., 0)``, ``|.|`` and the final ``s > 0`` branch
(gradients there are those of the branch taken); the 4-th roots and ``s^0.6276...`` are guarded
where their argument is 0 (identical images), where the gradient is 0.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..options import Reduction
from ..threads import map_side_by_side
from .base import Metric, cached_table, check_choice

# ---------------------------------------------------------------- constants

#: Opsin absorbance matrix of JPEG XL's XYB (libjxl ``lib/jxl/cms/opsin_params.h``:
#: ``kM00 = 0.30``, ``kM02 = 0.078``, ``kM10 = 0.23``, ``kM12 = 0.078``,
#: ``kM20 = 0.24342268924547819``, ``kM21 = 0.20476744424496821``, each row summing to 1).
OPSIN_MATRIX = (
    (0.30, 1.0 - 0.078 - 0.30, 0.078),
    (0.23, 1.0 - 0.078 - 0.23, 0.078),
    (0.24342268924547819, 0.20476744424496821, 1.0 - 0.24342268924547819 - 0.20476744424496821),
)
#: Opsin absorbance bias (``kB0 = kB1 = kB2``, same file).
OPSIN_BIAS = 0.0037930732552754493
#: ``kC2`` of ``tools/ssimulacra2.cc``.
C2 = 0.0009
#: ``kNumScales``: 1:1 down to 1:32.
NUM_SCALES = 6
#: A scale needs at least this many pixels in both directions (``xsize() < 8 || ysize() < 8``).
MIN_SCALE_SIZE = 8
#: Sigma of the blur (``CreateRecursiveGaussian(1.5)``).
SIGMA = 1.5
#: scipy's radius for ``truncate=3.33`` (the port's ``gaussian_filter``): ``int(3.33 * 1.5 + 0.5)``.
EXACT_RADIUS = int(3.33 * SIGMA + 0.5)
#: ``MakePositiveXYB``: ``B <- B - Y + 0.55``, ``X <- 14 X + 0.42``, ``Y <- Y + 0.01``.
POSITIVE_B_OFFSET, POSITIVE_X_SCALE, POSITIVE_X_OFFSET, POSITIVE_Y_OFFSET = 0.55, 14.0, 0.42, 0.01
#: The final mapping of ``Msssim::Score`` (``tools/ssimulacra2.cc``).
SCORE_SCALE = 0.9562382616834844
SCORE_POLY = (2.326765642916932, -0.020884521182843837, 6.248496625763138e-05)
SCORE_EXPONENT = 0.6276336467831387

#: The 108 weights of ``Msssim::Score`` (``tools/ssimulacra2.cc``, ``weight[]``; the same list in
#: the ``ssimulacra2`` 0.3.0 port), in the order plane (X, Y, B), scale (1:1 first), norm (mean,
#: 4-norm), map (SSIM error, ringing, detail loss).
WEIGHTS = (
    0.0, 0.0007376606707406586, 0.0, 0.0, 0.0007793481682867309, 0.0,
    0.0, 0.0004371155730107379, 0.0, 1.1041726426657346, 0.00066284834129271, 0.00015231632783718752,
    0.0, 0.0016406437456599754, 0.0, 1.8422455520539298, 11.441172603757666, 0.0,
    0.0007989109436015163, 0.000176816438078653, 0.0, 1.8787594979546387, 10.94906990605142, 0.0,
    0.0007289346991508072, 0.9677937080626833, 0.0, 0.00014003424285435884, 0.9981766977854967, 0.00031949755934435053,
    0.0004550992113792063, 0.0, 0.0, 0.0013648766163243398, 0.0, 0.0,
    0.0, 0.0, 0.0, 7.466890328078848, 0.0, 17.445833984131262,
    0.0006235601634041466, 0.0, 0.0, 6.683678146179332, 0.00037724407979611296, 1.027889937768264,
    225.20515300849274, 0.0, 0.0, 19.213238186143016, 0.0011401524586618361, 0.001237755635509985,
    176.39317598450694, 0.0, 0.0, 24.43300999870476, 0.28520802612117757, 0.0004485436923833408,
    0.0, 0.0, 0.0, 34.77906344483772, 44.835625328877896, 0.0,
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
    0.0, 0.0008680556573291698, 0.0, 0.0, 0.0, 0.0,
    0.0, 0.0005313191874358747, 0.0, 0.00016533814161379112, 0.0, 0.0,
    0.0, 0.0, 0.0, 0.0004179171803251336, 0.0017290828234722833, 0.0,
    0.0020827005846636437, 0.0, 0.0, 8.826982764996862, 23.19243343998926, 0.0,
    95.1080498811086, 0.9863978034400682, 0.9834382792465353,
    0.0012286405048278493, 171.2667255897307, 0.9807858872435379,
    0.0, 0.0, 0.0, 0.0005130064588990679, 0.0, 0.00010854057858411537,
)
assert len(WEIGHTS) == 3 * NUM_SCALES * 2 * 3

BLURS = ("exact", "recursive")
#: Smallest H and W: the first scale needs 8x8 (smaller images have no scale at all: the port
#: then returns 100 whatever the images, libjxl an error).
MIN_SIZE = MIN_SCALE_SIZE


# ---------------------------------------------------------------- blur kernels


def exact_gaussian_taps() -> tuple[float, ...]:
    """scipy's ``gaussian_filter`` kernel for sigma 1.5, ``truncate=3.33``: 11 taps
    ``exp(-m^2 / (2 sigma^2))``, ``|m| <= 5``, normalised to sum 1."""
    raw = [math.exp(-0.5 * (m / SIGMA) ** 2) for m in range(-EXACT_RADIUS, EXACT_RADIUS + 1)]
    total = sum(raw)
    return tuple(v / total for v in raw)


def recursive_gaussian_taps() -> tuple[float, ...]:
    """The FIR filter libjxl's recursive Gaussian (``CreateRecursiveGaussian(1.5)``, Charalampidis
    2016, 3 poles) computes, ``2 N - 1 = 9`` taps.

    Design, from the paper's equations as ``tools/gauss_blur.cc`` cites them: ``N = round(3.2795
    sigma + 0.2546)`` (57); ``w_k = k pi / (2 N)``, k = 1, 3, 5 (Table I); ``p_k = +-1 / tan(w_k
    / 2)`` (37) and ``r_k = +-p_k^2 / sin(w_k)`` (44) with signs +, -, +; ``rho_k =
    exp(-sigma^2 w_k^2 / 2) / N`` (50); ``beta`` solves ``[p; r; zeta] beta = [1, N^2 - sigma^2,
    zeta . rho]`` (53, 55, 56) with ``zeta = (D_35 / D_13, D_51 / D_13, 1)``, ``D_ij = p_i r_j - r_i
    p_j`` (52); ``n2_k = -beta_k cos(w_k (N + 1))`` (33). The recursion ``y_k[n] = n2_k (x[n - N -
    1] + x[n + N - 1]) + 2 cos(w_k) y_k[n - 1] - y_k[n - 2]``, output ``sum_k y_k[n]``, has the
    impulse response ``h(m) = sum_k n2_k sin((m + N) w_k) / sin(w_k)`` for ``|m| <= N - 1`` and 0
    beyond (``cos(N w_k) = 0`` cancels the tails).
    """
    radius = float(round(3.2795 * SIGMA + 0.2546))
    omega = [k * math.pi / (2.0 * radius) for k in (1, 3, 5)]
    signs = (1.0, -1.0, 1.0)
    p = [s / math.tan(0.5 * w) for s, w in zip(signs, omega)]
    r = [s * pk * pk / math.sin(w) for s, pk, w in zip(signs, p, omega)]
    rho = [math.exp(-0.5 * SIGMA * SIGMA * w * w) / radius for w in omega]
    d13 = p[0] * r[1] - r[0] * p[1]
    d35 = p[1] * r[2] - r[1] * p[2]
    d51 = p[2] * r[0] - r[2] * p[0]
    zeta = (d35 / d13, d51 / d13, 1.0)
    a = torch.tensor([p, r, list(zeta)], dtype=torch.float64)
    gamma = torch.tensor([1.0, radius * radius - SIGMA * SIGMA, sum(z * q for z, q in zip(zeta, rho))],
                         dtype=torch.float64)
    beta = torch.linalg.solve(a, gamma).tolist()
    n2 = [-b * math.cos(w * (radius + 1.0)) for b, w in zip(beta, omega)]
    n = int(radius)
    # h is even (sin((m + N) w_k) = sin(k pi / 2) cos(m w_k) for odd k): one half, mirrored.
    half = [sum(c * math.sin((m + n) * w) / math.sin(w) for c, w in zip(n2, omega)) for m in range(n)]
    return tuple(half[:0:-1] + half)


def _taps(blur: str) -> tuple[float, ...]:
    return EXACT_TAPS if blur == "exact" else RECURSIVE_TAPS


def _filter(p: torch.Tensor, taps: tuple[float, ...], size: int, dim: int) -> torch.Tensor:
    """Correlate dimension ``dim`` of the padded ``p`` with ``taps``: ``out[i] = sum_j taps[j]
    p[i + j]``, ``size`` outputs. Multiply-adds of shifted slices into one buffer (in place, which
    autograd allows here): on CPU several times faster than a depthwise ``conv2d``."""
    out = p.narrow(dim, 0, size) * taps[0]
    for j in range(1, len(taps)):
        out.add_(p.narrow(dim, j, size), alpha=taps[j])
    return out


#: Bytes of planes blurred at a time: the ~24 passes of a blur then run in the CPU's cache
#: (about 2x faster than streaming whole batches through memory on each pass).
BLUR_CHUNK_BYTES = 1 << 20


def gaussian_blur(t: torch.Tensor, blur: str) -> torch.Tensor:
    """``(..., H, W)`` blurred with sigma 1.5 as the ``blur`` convention says (see the module doc):
    ``"exact"``: 11 taps, zeros past the left/right edges, half-sample symmetric rows past the
    top/bottom; ``"recursive"``: libjxl's 9-tap equivalent, zeros on every side. On the CPU, a
    few planes at a time (:data:`BLUR_CHUNK_BYTES`)."""
    h, w = t.shape[-2:]
    per_chunk = max(1, BLUR_CHUNK_BYTES // (h * w * t.element_size()))
    planes = t.reshape(-1, h, w)
    if t.device.type != "cpu" or per_chunk >= planes.shape[0]:
        return _blur_planes(t, blur)
    return torch.cat([_blur_planes(chunk, blur) for chunk in planes.split(per_chunk)]).view(t.shape)


def _blur_planes(t: torch.Tensor, blur: str) -> torch.Tensor:
    taps = _taps(blur)
    r = (len(taps) - 1) // 2
    h, w = t.shape[-2:]
    out = _filter(F.pad(t, (r, r)), taps, w, -1)
    if blur == "exact":
        padded = torch.cat((out[..., :r, :].flip(-2), out, out[..., h - r:, :].flip(-2)), dim=-2)
    else:
        padded = F.pad(out, (0, 0, r, r))
    return _filter(padded, taps, h, -2)


#: The two kernels, computed once.
EXACT_TAPS = exact_gaussian_taps()
RECURSIVE_TAPS = recursive_gaussian_taps()


# ---------------------------------------------------------------- colour


def srgb_to_linear(v: torch.Tensor) -> torch.Tensor:
    """The sRGB decoding curve on [0, 1] values (the port's ``srgb_to_linear``)."""
    high = ((v.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4
    return torch.where(v <= 0.04045, v / 12.92, high)


@cached_table()
def _opsin(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.tensor(OPSIN_MATRIX, dtype=torch.float64).to(device=device, dtype=dtype)


def linear_to_positive_xyb(rgb: torch.Tensor) -> torch.Tensor:
    """``(M,3,H,W)`` linear RGB -> ssimulacra2's positive XYB (opsin absorbance, cube root,
    ``MakePositiveXYB``)."""
    mixed = torch.einsum("ij,mjhw->mihw", _opsin(rgb.device, rgb.dtype), rgb) + OPSIN_BIAS
    # cbrt(max(m, 0)); a floor at the smallest normal keeps the gradient finite (0) at 0.
    tiny = torch.finfo(rgb.dtype).tiny
    mixed = mixed.clamp(min=tiny).pow(1.0 / 3.0) - OPSIN_BIAS ** (1.0 / 3.0)
    m0, m1, m2 = mixed.unbind(1)
    x = 0.5 * (m0 - m1)
    y = 0.5 * (m0 + m1)
    return torch.stack((POSITIVE_X_SCALE * x + POSITIVE_X_OFFSET, y + POSITIVE_Y_OFFSET,
                        m2 - y + POSITIVE_B_OFFSET), dim=1)


def downsample_2x2(rgb: torch.Tensor) -> torch.Tensor:
    """Mean over 2x2 blocks, ``ceil(H/2) x ceil(W/2)``; a last odd row/column is repeated
    (libjxl's ``Downsample`` clamps the coordinates: the mean of the pixels that exist)."""
    h, w = rgb.shape[-2:]
    if h % 2 or w % 2:
        rgb = F.pad(rgb, (0, w % 2, 0, h % 2), mode="replicate")
    return F.avg_pool2d(rgb, 2)


# ---------------------------------------------------------------- the score


def scale_count(h: int, w: int, blur: str) -> int:
    """How many of the 6 scales an ``h x w`` image gets (see the module doc)."""
    sizes = [(h, w)]
    for _ in range(NUM_SCALES - 1):
        sizes.append(((sizes[-1][0] + 1) // 2, (sizes[-1][1] + 1) // 2))
    count = 0
    for k in range(NUM_SCALES):
        # "exact" (the port) checks the scale's own size, "recursive" (libjxl) the previous one.
        ch, cw = sizes[k] if blur == "exact" or k == 0 else sizes[k - 1]
        if ch < MIN_SCALE_SIZE or cw < MIN_SCALE_SIZE:
            break
        count += 1
    return count


def _norms(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N,C,H,W)`` non-negative maps -> their means and 4-norms ``mean(m^4)^(1/4)``, ``(N,C)``
    each; the 4-th root is 0 with a 0 gradient where the mean is 0."""
    mean = maps.mean(dim=(-2, -1))
    sq = maps * maps
    quartic = (sq * sq).mean(dim=(-2, -1))
    positive = quartic > 0
    root = torch.where(positive, quartic.clamp(min=torch.finfo(quartic.dtype).tiny).pow(0.25),
                       torch.zeros_like(quartic))
    return mean, root


def _scale_features(img1: torch.Tensor, img2: torch.Tensor, blur: str) -> torch.Tensor:
    """One scale: ``(N,3,h,w)`` positive-XYB pairs -> ``(N, 3, 6)``, per plane the norms in the
    weights' order (SSIM mean, ringing mean, detail-loss mean, then the three 4-norms)."""
    err = img1 - img2
    stacked = torch.cat((img1 * img1, img2 * img2, err * err, img1, err), dim=1)  # (N,15,h,w)
    s11, s22, s_ee, mu1, mu_e = gaussian_blur(stacked, blur).chunk(5, dim=1)
    mu2 = mu1 - mu_e
    # 1 - num_m num_s / denom_s with num_m = 1 - (mu1 - mu2)^2, num_s = 2 (s12 - mu1 mu2) + C2,
    # denom_s = s11 - mu1^2 + s22 - mu2^2 + C2, rewritten without cancellation: as the blur is
    # linear, denom_s - num_s = G((x - y)^2) - (mu1 - mu2)^2 =: v, so the error is
    # (mu1 - mu2)^2 + num_m v / denom_s: exactly 0 for x == y, and float32 keeps its digits.
    sq_e = mu_e * mu_e
    var_e = s_ee - sq_e
    denom_s = (s11 - mu1 * mu1) + (s22 - mu2 * mu2) + C2
    ssim_err = torch.relu(sq_e + (1.0 - sq_e) * var_e / denom_s)
    ratio = (1.0 + (img2 - mu2).abs()) / (1.0 + (img1 - mu1).abs()) - 1.0
    artifact, detail_lost = torch.relu(ratio), torch.relu(-ratio)
    (m_ssim, q_ssim), (m_art, q_art), (m_det, q_det) = _norms(ssim_err), _norms(artifact), _norms(detail_lost)
    return torch.stack((m_ssim, m_art, m_det, q_ssim, q_art, q_det), dim=-1)


@cached_table()
def _weights(scales: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The first ``18 * scales`` weights as ``(3, scales, 6)`` (plane, scale, norm x map)."""
    w = torch.tensor(WEIGHTS[:18 * scales], dtype=torch.float64).view(3, scales, 6)
    return w.to(device=device, dtype=dtype)


#: On the CPU, images are scored a few at a time, each group's RGB at most this many bytes: the
#: ~100 elementwise passes per scale then mostly stay in the cache (2x faster on large images).
BATCH_CHUNK_BYTES = 4 << 20


def ssimulacra2(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, blur: str = "exact") -> torch.Tensor:
    """SSIMULACRA 2 of each pair, ``(N,)``; ``x`` the reference, ``y`` the distorted image.

    ``x``, ``y``: ``(N,3,H,W)`` sRGB in ``[0, data_range]``, H and W at least 8. Computed in the
    inputs' dtype (at least float32); the result has that dtype. See the module doc.
    """
    out_dtype = torch.promote_types(x.dtype, y.dtype)
    work = torch.promote_types(out_dtype, torch.float32)
    h, w = x.shape[-2:]
    per_chunk = max(1, BATCH_CHUNK_BYTES // (3 * h * w * work.itemsize))
    recording = torch.is_grad_enabled() and (x.requires_grad or y.requires_grad)
    workers = 1 if recording or x.device.type != "cpu" else torch.get_num_threads()
    if workers > 1:  # at least one chunk per thread
        per_chunk = min(per_chunk, -(-x.shape[0] // workers))
    if x.device.type == "cpu" and x.shape[0] > per_chunk:
        # Chunks side by side, each with single-threaded ops (the caller's thread settings left
        # alone): as one multi-threaded stream of small ops, a loaded 2-core machine ran 3.7x
        # (8 x 512x384) to 14x (16 x 128x128) slower with two threads than with one
        # (percepmetric.threads). A graph keeps the plain loop.
        pairs = list(zip(x.split(per_chunk), y.split(per_chunk)))
        return torch.cat(list(map_side_by_side(lambda pair: ssimulacra2(*pair, data_range, blur), pairs, workers)))
    scales = scale_count(h, w, blur)
    # x and y go through the colour conversions separately, in tensors of one shape: the same
    # kernels on the same layout, so that identical images give bitwise identical XYB (a
    # difference of float rounding alone would cost a float32 score ~0.002 points, s^0.63 being
    # steep at 0).
    linear1 = srgb_to_linear(x.to(work) * (1.0 / data_range))
    linear2 = srgb_to_linear(y.to(work) * (1.0 / data_range))
    features = []
    for k in range(scales):
        if k:
            linear1, linear2 = downsample_2x2(linear1), downsample_2x2(linear2)
        features.append(_scale_features(linear_to_positive_xyb(linear1), linear_to_positive_xyb(linear2), blur))
    table = torch.stack(features, dim=2)  # (N, 3 planes, scales, 6)
    s = (table * _weights(scales, table.device, table.dtype)).flatten(1).sum(dim=1) * SCORE_SCALE
    a1, a2, a3 = SCORE_POLY
    s = ((a3 * s + a2) * s + a1) * s
    positive = s > 0
    powered = s.clamp(min=torch.finfo(s.dtype).tiny).pow(SCORE_EXPONENT)
    score = torch.where(positive, 100.0 - 10.0 * powered, torch.full_like(s, 100.0))
    return score.to(out_dtype)


class SSIMULACRA2(Metric):
    """SSIMULACRA 2 (Sneyers 2022/2023): multi-scale XYB SSIM + ringing + blur errors; 100 at best.

    ``x`` is the reference, ``y`` the distorted image (asymmetric). RGB only (sRGB in
    ``[0, data_range]``), at least 8x8. Higher is better: 100 for identical images, about 90
    visually lossless, 50 medium quality, 10 very low; negative for very strong distortions.
    Options: ``data_range`` (1 or 255, ...); ``blur``: ``"exact"`` (default; the ``ssimulacra2``
    0.3.0 PyPI port's exact Gaussian and borders, which this matches to float rounding) or
    ``"recursive"`` (libjxl ``tools/ssimulacra2.cc``: its recursive Gaussian as the equivalent
    9-tap filter, zero borders, libjxl's scale count). ``to_distance(s) = (100 - s) / 100``: 0
    for identical images, 1 at score 0, above 1 for negative scores.
    """

    name = "ssimulacra2"
    colour_doc = "RGB only (sRGB -> linear -> XYB)"
    input_range_doc = "sRGB in [0, data_range], data_range=1"
    lower_is_better = False
    distance_name = "(100-ssimulacra2)/100"
    differentiable = True
    symmetric = False
    min_size = MIN_SIZE
    channels = (3,)
    #: The range of the value: at most 100 (identical images), unbounded below in theory
    #: (below 0 for very strong distortions).
    value_range_doc = "(-inf, 100], 100 for identical images"

    def __init__(
        self,
        data_range: float = 1.0,
        blur: str = "exact",
        reduction: Reduction = "none",
        validate_args: bool = True,
    ) -> None:
        super().__init__(data_range, reduction, validate_args)
        check_choice(self.name, "blur", blur, BLURS)
        self.blur = blur
        self.options.update(blur=blur)

    def formula(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return ssimulacra2(x, y, self.data_range, self.blur)

    def to_distance(self, value: torch.Tensor) -> torch.Tensor:
        """``(100 - score) / 100``: 0 for identical images, 1 at score 0 (very low quality)."""
        return (100.0 - value) * 0.01


__all__ = ["SSIMULACRA2", "ssimulacra2"]
