"""GMSD: the Gradient Magnitude Similarity Deviation of Xue, Zhang, Mou and Bovik (2014).

W. Xue, L. Zhang, X. Mou and A. C. Bovik, "Gradient Magnitude Similarity Deviation: A Highly
Efficient Perceptual Image Quality Index", IEEE Trans. Image Processing 23(2):684-695, 2014.

The numbers follow the authors' MATLAB code ``GMSD.m`` (``GMSD(Y1, Y2)``, ``Y1`` the reference,
both grey ``double`` images on 0..255), as their evaluation feeds it: an RGB image read from an
8-bit file is first turned grey by MATLAB's ``rgb2gray`` on the uint8 array, which rounds the
luma to an integer.

1. Grey: ``0.298936021293775 R + 0.587043074451121 G + 0.114020904255103 B`` on 0..255 (the first
   row of ``inv`` of the NTSC YIQ -> RGB matrix, MATLAB's ``rgb2gray``), rounded to an integer,
   halves away from zero (uint8 output). A grey image is used as it is.
2. ``aveY = conv2(Y, fspecial('average', 2), 'same')`` (a 2x2 mean, zero padding past the last
   row and column), then ``aveY(1:2:end, 1:2:end)`` (``Down_step = 2``).
3. Prewitt gradients ``dx = [1 0 -1; 1 0 -1; 1 0 -1] / 3``, ``dy = dx'`` (``conv2 'same'``, zero
   padding); ``m = sqrt(Ix^2 + Iy^2)`` per image.
4. ``GMS = (2 m1 m2 + T) / (m1^2 + m2^2 + T)``, ``T = 170``; ``GMSD = std2(GMS)`` (the sample
   standard deviation, normalised by ``n - 1``). 0 for identical images, larger is worse.

Everything is batched over the images: both images of every pair go through one average
pooling and one gradient computation.

MS-GMSD and MS-GMSDc (:class:`MSGMSD`, ``ms_gmsd``): B. Zhang, P. V. Sander and A. Bermak,
"Gradient magnitude similarity deviation on multiple scales for color image quality
assessment", ICIP 2017. The authors published no code: this follows the paper as piq's
``multi_scale_gmsd`` (0.8) implements it, and matches piq to float precision (see
:func:`ms_gmsd`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..options import MatlabConvention, Reduction
from .base import Metric, check_choice
from .color import rgb_to_yiq, straight_through
from .fsim import safe_sqrt
from .matlab import box_downsample, matlab_round

# ---------------------------------------------------------------- constants of GMSD.m

#: ``T = 170;`` (GMSD.m line 20): the stabilising constant of the similarity, for 0..255 images.
T_GMS = 170.0
#: ``Down_step = 2;`` (GMSD.m line 21), with ``aveKernel = fspecial('average', 2)`` (line 25).
DOWN_STEP = 2
#: ``dx = [1 0 -1; 1 0 -1; 1 0 -1]/3;`` (GMSD.m line 22): a Prewitt kernel; ``dy = dx'``.
PREWITT_X = ((1.0, 0.0, -1.0), (1.0, 0.0, -1.0), (1.0, 0.0, -1.0))
PREWITT_SCALE = 3.0
#: MATLAB's ``rgb2gray`` coefficients to full precision: the first row of
#: ``inv([1 0.956 0.621; 1 -0.272 -0.647; 1 -1.106 1.703])`` (rgb2gray.m). MATLAB documents them
#: rounded to four digits; those miss an integer luma now and then.
RGB2GRAY_EXACT = (0.298936021293775, 0.587043074451121, 0.114020904255103)

CONVENTIONS = ("matlab",)
QUANTIZE = ("auto", True, False)

#: Smallest H and W: the downsampled map needs two pixels at least for ``std2`` (``n - 1``).
MIN_SIZE = 3


def on_8bit_grid(x: torch.Tensor, data_range: float) -> torch.Tensor:
    """``(N,C,H,W)`` in [0, data_range] -> ``(N,)`` bool: every value is ``k * data_range / 255``
    for an integer k (the image came from an 8-bit file), within float32 rounding (1e-3 of a step).

    ``(v * 255 / data_range + 0.5) mod 1`` is 0.5 on the grid: three passes over the image
    (fused scale-and-shift, remainder, min/max) instead of five with round/subtract/abs.
    """
    shifted = torch.add(torch.tensor(0.5, dtype=x.dtype, device=x.device), x.detach(), alpha=255.0 / data_range)
    low, high = torch.aminmax(torch.remainder(shifted, 1.0).flatten(1), dim=1)
    return (low >= 0.5 - 1e-3) & (high <= 0.5 + 1e-3)


def matlab_rgb2gray_255(x: torch.Tensor, data_range: float, quantize: bool | str) -> torch.Tensor:
    """``(N,C,H,W)`` in [0, data_range] -> ``(N,1,H,W)`` grey on 0..255, what ``GMSD.m`` is given.

    RGB: MATLAB's ``rgb2gray`` (:data:`RGB2GRAY_EXACT`); ``quantize=True`` rounds it as MATLAB
    does for a uint8 image (halves away from zero), ``False`` keeps the float luma, ``"auto"``
    rounds the images (per image) whose values lie on the 8-bit grid. The rounding passes
    gradients straight through. Grey: scaled to 0..255, rounded likewise (an 8-bit grey image
    then holds its exact integer codes, whatever float32 made of ``code / 255``).
    """
    if x.shape[1] == 1:
        grey = x * (255.0 / data_range)
    else:
        w = torch.tensor(RGB2GRAY_EXACT, dtype=x.dtype, device=x.device).view(1, 3, 1, 1) * (255.0 / data_range)
        grey = (x * w).sum(dim=1, keepdim=True)
    if quantize is False:
        return grey
    rounded = straight_through(grey, matlab_round(grey.detach()).clamp(0.0, 255.0))
    if quantize is True:
        return rounded
    return torch.where(on_8bit_grid(x, data_range).view(-1, 1, 1, 1), rounded, grey)


def prewitt_magnitude(y: torch.Tensor) -> torch.Tensor:
    """``(..., H, W) -> (..., H, W)``: ``sqrt(Ix^2 + Iy^2)`` with GMSD.m's kernels ``dx`` and
    ``dy = dx'``, ``conv2 'same'`` (zero padding).

    ``dx`` is separable: a column difference ``p[:, j+1] - p[:, j-1]`` summed over three rows,
    over a 1-pixel zero border; written with slices, which on CPU runs 2-3x faster than
    ``conv2d`` on one-channel images. ``conv2`` flips the kernel: only the signs of ``Ix``,
    ``Iy`` differ, which the magnitude ignores.
    """
    p = F.pad(y, (1, 1, 1, 1))
    dcol = p[..., :, 2:] - p[..., :, :-2]  # (H+2, W)
    drow = p[..., 2:, :] - p[..., :-2, :]  # (H, W+2)
    ix = dcol[..., :-2, :] + dcol[..., 1:-1, :] + dcol[..., 2:, :]
    iy = drow[..., :, :-2] + drow[..., :, 1:-1] + drow[..., :, 2:]
    return safe_sqrt((ix * ix + iy * iy) * (1.0 / PREWITT_SCALE**2))


def gms_map(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, quantize: bool | str = "auto") -> torch.Tensor:
    """GMSD.m's ``quality_map``: ``(N,C,H,W)`` pairs -> ``(N,1,ceil(H/2),ceil(W/2))`` GMS."""
    n = x.shape[0]
    grey = torch.cat((matlab_rgb2gray_255(x, data_range, quantize), matlab_rgb2gray_255(y, data_range, quantize)))
    grey = box_downsample(grey, DOWN_STEP, "zeros")
    m = prewitt_magnitude(grey)
    m1, m2 = m[:n], m[n:]
    return (2.0 * m1 * m2 + T_GMS) / (m1 * m1 + m2 * m2 + T_GMS)


def gmsd(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, quantize: bool | str = "auto") -> torch.Tensor:
    """GMSD of each pair, ``(N,)``: ``std2`` of :func:`gms_map` (``x`` the reference).

    The standard deviation is taken as ``sqrt(var)`` with ``var`` normalised by ``n - 1``
    (``std2``); where ``var`` is 0 (identical images) the value is exactly 0 and the gradient
    finite (0).
    """
    q = gms_map(x, y, data_range, quantize).flatten(1)
    var = q.var(dim=1, correction=1)
    return torch.where(var > 0, safe_sqrt(var), torch.zeros_like(var))


def resolve_quantize(metric: str, quantize: object) -> bool | str:
    """The ``quantize`` option of the metrics fed :func:`matlab_rgb2gray_255` (GMSD, VIF, VIF-P,
    IW-SSIM, CW-SSIM, NLPD, DSS, MAD): ``"auto"``, True or False ("true"/"false" as typed on a
    command line), else :class:`InputError` naming ``metric``."""
    if isinstance(quantize, str) and quantize.strip().lower() in ("true", "false"):
        quantize = quantize.strip().lower() == "true"
    if not (quantize == "auto" or isinstance(quantize, bool)):
        raise InputError(f"{metric}: option quantize must be one of 'auto', True, False, got {quantize!r}")
    return quantize


# ---------------------------------------------------------------- MS-GMSD (Zhang, Sander, Bermak 2017)

#: Weights of the four scales (finest first), the paper's values as piq's ``multi_scale_gmsd`` has them.
MS_SCALE_WEIGHTS = (0.096, 0.596, 0.289, 0.019)
#: Masking parameter ``alpha`` of the paper's similarity (piq: ``alpha=0.5``).
MS_ALPHA = 0.5
#: MS-GMSDc's chroma term: weight ``beta1`` and the constants ``beta2``, ``beta3`` of its
#: luminance-dependent mixing (piq: ``beta1=0.01, beta2=0.32, beta3=15``).
MS_BETA1, MS_BETA2, MS_BETA3 = 0.01, 0.32, 15.0
#: Smallest H and W: ``2 ** scales + 1``, as piq requires (the coarsest scale keeps 3x3 pixels).
MS_MIN_SIZE = 2 ** len(MS_SCALE_WEIGHTS) + 1


def ms_gmsd(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, chromatic: bool = False) -> torch.Tensor:
    """MS-GMSD (``chromatic=False``) or MS-GMSDc of each pair, ``(N,)``; ``x`` the reference.

    On 0..255 values: RGB -> YIQ (FeatureSIM.m's matrix; grey is its own Y). Four scales, the
    first at full resolution, each next one after a 2x2 mean and downsampling by 2 (zero
    padding past an odd edge, as GMSD.m's ``conv2 'same'``). At each scale the Prewitt
    magnitudes ``m1``, ``m2`` of Y (GMSD.m's kernels), the masked similarity
    ``(2 m1 m2 - a m1 m2 + T) / (m1^2 + m2^2 - a m1 m2 + T)`` (``a = 0.5``, ``T = 170``) and its
    1/N variance ``d_j^2`` (the GMSD paper's deviation; GMSD.m's std2 divides by N - 1);
    ``MS = sqrt(sum_j w_j d_j^2)`` with
    ``w = (0.096, 0.596, 0.289, 0.019)``.

    MS-GMSDc: ``c = sqrt(mean((I1 - I2)^2) + mean((Q1 - Q2)^2))`` on the coarsest scale's I and
    Q, ``g = 2 / (1 + beta2 exp(-beta3 MS)) - 1`` and ``g MS + (1 - g) beta1 c``.
    """
    n = x.shape[0]
    if x.shape[1] == 3:  # each image to the 1 or 3 planes kept first: the RGB pair is never copied
        planes = 3 if chromatic else 1
        yiq = torch.cat((rgb_to_yiq(x, planes), rgb_to_yiq(y, planes)))
    else:
        yiq = torch.cat((x, y))
    yiq.mul_(255.0 / data_range)  # a fresh tensor: scaled in place
    luma = yiq[:, :1]
    total = torch.zeros(n, dtype=x.dtype, device=x.device)
    for scale, w in enumerate(MS_SCALE_WEIGHTS):
        if scale:
            yiq = box_downsample(yiq if chromatic else luma, DOWN_STEP, "zeros")
            luma = yiq[:, :1]
        m = prewitt_magnitude(luma)
        m1, m2 = m[:n], m[n:]
        prod = m1 * m2
        gms = ((2.0 - MS_ALPHA) * prod + T_GMS) / (m1 * m1 + m2 * m2 - MS_ALPHA * prod + T_GMS)
        total = total + w * gms.flatten(1).var(dim=1, correction=0)
    score = torch.where(total > 0, safe_sqrt(total), torch.zeros_like(total))
    if not chromatic:
        return score
    diff = (yiq[:n, 1:] - yiq[n:, 1:]).flatten(2).pow(2).mean(dim=2).sum(dim=1)
    chroma = torch.where(diff > 0, safe_sqrt(diff), torch.zeros_like(diff))
    gamma = 2.0 / (1.0 + MS_BETA2 * torch.exp(-MS_BETA3 * score)) - 1.0
    return gamma * score + (1.0 - gamma) * MS_BETA1 * chroma


class MatlabGreyMetric(Metric):
    """What the metrics fed MATLAB's ``rgb2gray`` of the 8-bit image share (GMSD, VIF, VIF-P,
    IW-SSIM, CW-SSIM, NLPD, DSS, MAD): the options ``data_range``, ``convention="matlab"`` (the
    authors' code, the only convention) and ``quantize`` (``"auto"``: round the grey of images on
    the 8-bit grid as ``rgb2gray`` of a uint8 image does; True: always; False: never; see
    :func:`matlab_rgb2gray_255`), and the metadata that follows from them."""

    colour_doc = "RGB or grey (RGB -> MATLAB rgb2gray)"

    def __init__(
        self,
        data_range: float = 1.0,
        convention: MatlabConvention = "matlab",
        quantize: bool | str = "auto",
        reduction: Reduction = "none",
        validate_args: bool = True,
    ) -> None:
        super().__init__(data_range, reduction, validate_args)
        check_choice(self.name, "convention", convention, CONVENTIONS)
        self.convention = convention
        self.quantize = resolve_quantize(self.name, quantize)
        self.options.update(convention=convention, quantize=self.quantize)


class GMSD(MatlabGreyMetric):
    """GMSD (Xue et al. 2014): deviation of the gradient magnitude similarity (0 for identical images).

    Reproduces the authors' ``GMSD.m`` (see the module's doc): grey input as it is, RGB through
    MATLAB's ``rgb2gray`` (rounded to uint8 as MATLAB does for 8-bit images), a 2x2 mean and
    downsampling by 2, Prewitt gradient magnitudes, ``T = 170`` on the 0..255 scale, and the
    ``std2`` of the similarity map. ``x`` is the reference (the map is symmetric, and so is GMSD).

    Options: ``data_range`` (1 or 255, ...), ``convention="matlab"`` (GMSD.m), ``quantize``
    (``"auto"``: round MATLAB's grey of RGB images whose values lie on the 8-bit grid, as
    ``rgb2gray`` of a uint8 image; ``True``: always; ``False``: never, the float convention).
    The value is already a distance.
    """

    name = "gmsd"
    colour_doc = "RGB or grey (RGB -> MATLAB rgb2gray)"
    lower_is_better = True
    differentiable = True
    symmetric = True
    min_size = MIN_SIZE
    channels = (1, 3)


    def formula(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return gmsd(x, y, self.data_range, self.quantize)


class MSGMSD(Metric):
    """MS-GMSD / MS-GMSDc (Zhang, Sander, Bermak 2017): GMSD on four scales (+ chroma); 0 at best.

    No code of the authors is public: this follows the paper as piq's ``multi_scale_gmsd``
    implements it (YIQ of the float RGB, no 8-bit rounding; see :func:`ms_gmsd`) and matches it.
    Options: ``data_range``; ``chromatic=True`` for MS-GMSDc (RGB only). Symmetric in its
    inputs. The value is already a distance.
    """

    name = "ms_gmsd"
    colour_doc = "RGB or grey (Y of YIQ; chromatic: I, Q too)"
    lower_is_better = True
    differentiable = True
    symmetric = True
    min_size = MS_MIN_SIZE
    channels = (1, 3)

    def __init__(
        self,
        data_range: float = 1.0,
        chromatic: bool = False,
        reduction: Reduction = "none",
        validate_args: bool = True,
    ) -> None:
        super().__init__(data_range, reduction, validate_args)
        if not isinstance(chromatic, bool):
            raise InputError(f"ms_gmsd: option chromatic must be True or False, got {chromatic!r}")
        self.chromatic = chromatic
        self.options.update(chromatic=chromatic)

    def check(self, x: torch.Tensor, y: torch.Tensor) -> None:
        super().check(x, y)
        if self.chromatic and x.shape[1] != 3:
            raise InputError(f"ms_gmsd: chromatic=True (MS-GMSDc) needs RGB images, got {x.shape[1]} channel(s); "
                             "use chromatic=False for grey")

    def formula(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return ms_gmsd(x, y, self.data_range, self.chromatic)
