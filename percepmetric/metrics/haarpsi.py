"""HaarPSI: the Haar wavelet-based Perceptual Similarity Index of Reisenhofer, Bosse, Kutyniok
and Wiegand (2018).

R. Reisenhofer, S. Bosse, G. Kutyniok and T. Wiegand, "A Haar wavelet-based perceptual
similarity index for image quality assessment", Signal Processing: Image Communication 61:33-43,
2018.

The numbers follow the authors' MATLAB code ``HaarPSI.m`` ("Written by Rafael Reisenhofer,
built on 08/05/2017"), which works on 0..255 values:

1. RGB -> YIQ (``Y = 0.299 R + 0.587 G + 0.114 B``, ``I``, ``Q`` with the rows of
   :data:`~percepmetric.metrics.color.YIQ_MATRIX`, the same as HaarPSI.m's); a grey image is its
   own ``Y`` and has no chroma term.
2. With ``subsample=True`` (HaarPSI.m's ``preprocessWithSubsampling = 1``, the default): each
   plane is filtered with the 2x2 mean (``conv2(.., ones(2,2)/4, 'same')``, zero padding) and
   every second pixel is kept, starting with the first.
3. Haar coefficients of ``Y`` at scales ``k = 1, 2, 3``: ``conv2(Y, h_k, 'same')`` and
   ``conv2(Y, h_k', 'same')`` with ``h_k = 2^-k`` times a ``2^k x 2^k`` block whose upper half is
   ``-1`` and lower half ``+1``. Chroma: ``|conv2(I, ones(2,2)/4, 'same')|``, the same for Q.
4. For each orientation ``o`` (the two filter directions), with ``a = |coefficient of x|``,
   ``b = |coefficient of y|``: the weight ``W_o = max(a_3, b_3)`` (coarsest scale) and the local
   similarity ``S_o = mean over k = 1, 2 of (2 a_k b_k + C) / (a_k^2 + b_k^2 + C)``. RGB adds a
   third map: ``S_3 = (S(I) + S(Q)) / 2`` (same similarity of the chroma magnitudes) with
   ``W_3 = (W_1 + W_2) / 2``.
5. ``HaarPSI = (logit(sum(l(S) W) / sum(W)) / alpha)^2`` over all maps and pixels, where
   ``l(s) = 1 / (1 + exp(-alpha s))`` and ``logit(p) = log(p / (1 - p))``.

Constants (HaarPSI.m, "constants" block): ``C = 30``, ``alpha = 4.2``, ``nScales = 3``.

One deviation: for two all-black images (every Haar weight 0) HaarPSI.m divides 0 by 0 and
returns NaN; here the weights are then uniform, which gives 1 for that identical pair.

Everything is batched: both batches go through one grouped convolution with the six Haar
filters (laid in one 8x8 frame: MATLAB's ``'same'`` centring of an even ``2^k`` filter puts all
three at the same centre, ``2^(k-1) - 1`` rows before and ``2^(k-1)`` after the output pixel).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..options import MatlabConvention, Reduction
from .base import SimilarityIndex, check_choice
from .color import rgb_to_yiq
from .matlab import box_downsample

# ---------------------------------------------------------------- constants of HaarPSI.m

C_STABILITY = 30.0  # HaarPSI.m: "C = 30;"
ALPHA = 4.2  # HaarPSI.m: "alpha = 4.2;" (slope of the logistic)
N_SCALES = 3  # HaarPSI.m: "nScales = 3;"
FRAME = 2**N_SCALES  # 8x8: the coarsest Haar filter's support
CONVENTIONS = ("matlab",)

# The coarsest filter covers 8x8 pixels of the (subsampled) image: below 16 pixels (8 after
# subsampling) it would see zero padding only. HaarPSI.m itself accepts any size.
MIN_SIZE = 16


@functools.lru_cache(maxsize=16)
def haar_bank(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``(6, 1, 8, 8)``: HaarPSI.m's Haar filters as cross-correlation kernels (``conv2`` flipped),
    scales 1..3 of the first orientation (``haarFilter``) then of the second (``haarFilter'``),
    each in the 8x8 frame at the offset that ``conv2(.., 'same')`` gives it (see the module doc).
    To be applied with 3 zero rows/columns before and 4 after."""
    with torch.inference_mode(False), torch.no_grad():
        bank = torch.zeros(2 * N_SCALES, 1, FRAME, FRAME, dtype=torch.float64)
        for k in range(1, N_SCALES + 1):
            size = 2**k
            block = torch.full((size, size), 2.0**-k, dtype=torch.float64)
            block[: size // 2] *= -1.0  # haarFilter(1:end/2, :) = -haarFilter(1:end/2, :)
            flipped = block.flip(0, 1)  # conv2 convolves: the correlation kernel is flipped
            start = FRAME // 2 - size // 2  # 3, 2, 0: the 'same' centre of a 2^k filter
            bank[k - 1, 0, start:start + size, start:start + size] = flipped
            bank[k - 1 + N_SCALES, 0, start:start + size, start:start + size] = flipped.T
        return bank.to(device=device, dtype=dtype)


def _similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (2.0 * a * b + C_STABILITY) / (a * a + b * b + C_STABILITY)


def _haar_magnitudes(luma: torch.Tensor) -> torch.Tensor:
    """``(M,1,h,w) -> (M,6,h,w)``: ``|conv2(Y, filter, 'same')|`` of the six Haar filters.

    The images go through as the channels of one image (a grouped convolution): the same
    numbers as a batch of one-channel images, several times faster on CPU."""
    m, _, h, w = luma.shape
    bank = haar_bank(luma.device, luma.dtype).repeat(m, 1, 1, 1)  # (6M,1,8,8)
    before, after = FRAME // 2 - 1, FRAME // 2
    padded = F.pad(luma.reshape(1, m, h, w), (before, after, before, after))
    return F.conv2d(padded, bank, groups=m).view(m, 2 * N_SCALES, h, w).abs()


def haarpsi(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, subsample: bool = True) -> torch.Tensor:
    """HaarPSI of two batches as HaarPSI.m computes it; ``x`` the reference.

    ``x``, ``y``: ``(N,C,H,W)`` in ``[0, data_range]``, C = 3 (RGB: YIQ with the chroma term) or
    1 (grey). Returns ``(N,)`` in the inputs' common dtype (at least float32), in (0, 1], 1 for
    identical images. Formula and conventions: see the module docstring.
    """
    out_dtype = torch.promote_types(x.dtype, y.dtype)
    work = torch.promote_types(out_dtype, torch.float32)
    n, c = x.shape[:2]
    pair = torch.cat((x, y)).to(work) * (255.0 / data_range)  # HaarPSI.m works on 0..255
    planes = rgb_to_yiq(pair) if c == 3 else pair  # (2N, 3 or 1, H, W)
    if subsample:
        planes = box_downsample(planes, 2, "zeros")  # HaarPSISubsample: conv2 'same', 1:2:end
    coeffs = _haar_magnitudes(planes[:, :1])  # (2N, 6, h, w)
    a, b = coeffs[:n], coeffs[n:]
    # Per orientation: the mean similarity of scales 1 and 2, weighted by the larger scale-3 magnitude.
    a, b = a.unflatten(1, (2, N_SCALES)), b.unflatten(1, (2, N_SCALES))  # (N, orientation, scale, h, w)
    local = _similarity(a[:, :, :2], b[:, :, :2]).mean(dim=2)  # (N, 2, h, w)
    weights = torch.maximum(a[:, :, 2], b[:, :, 2])  # (N, 2, h, w)
    if c == 3:
        # |conv2(I or Q, ones(2,2)/4, 'same')|: the mean of the pixel and its right/lower neighbours.
        chroma = F.avg_pool2d(F.pad(planes[:, 1:], (0, 1, 0, 1)), 2, stride=1).abs()
        colour = _similarity(chroma[:n], chroma[n:]).mean(dim=1, keepdim=True)  # (S_I + S_Q) / 2
        local = torch.cat((local, colour), dim=1)
        weights = torch.cat((weights, weights.mean(dim=1, keepdim=True)), dim=1)
    # Sums in float64 (MATLAB's doubles): the logit below amplifies their rounding ~70x.
    pooled_num = (torch.sigmoid(ALPHA * local) * weights).flatten(1).sum(dim=1, dtype=torch.float64)
    pooled_den = weights.flatten(1).sum(dim=1, dtype=torch.float64)
    uniform = torch.sigmoid(ALPHA * local).flatten(1).mean(dim=1, dtype=torch.float64)
    pooled = torch.where(pooled_den > 0, pooled_num / pooled_den.clamp(min=torch.finfo(torch.float64).tiny), uniform)
    score = (torch.logit(pooled) / ALPHA) ** 2
    return score.to(out_dtype)


class HaarPSI(SimilarityIndex):
    """HaarPSI, the Haar wavelet-based perceptual similarity index, as the authors' MATLAB code (1 at best).

    Takes RGB (YIQ, with the chroma term) or grey. Options: ``data_range`` (1 or 255, ...),
    ``subsample`` (HaarPSI.m's ``preprocessWithSubsampling``: the 2x2 mean and every second
    pixel first; default True), ``convention="matlab"`` (HaarPSI.m). ``to_distance(s) = 1 - s``.
    """

    name = "haarpsi"
    colour_doc = "RGB (YIQ, with chroma) or grey"
    distance_name = "1-haarpsi"
    differentiable = True
    symmetric = True  # every term is symmetric in (x, y), to the last bit
    min_size = MIN_SIZE
    channels = (1, 3)

    def __init__(
        self,
        data_range: float = 1.0,
        subsample: bool = True,
        convention: MatlabConvention = "matlab",
        reduction: Reduction = "none",
        validate_args: bool = True,
    ) -> None:
        super().__init__(data_range, reduction, validate_args)
        if not isinstance(subsample, bool):
            raise InputError(f"haarpsi: option subsample must be True or False, got {subsample!r}")
        check_choice(self.name, "convention", convention, CONVENTIONS)
        self.subsample, self.convention = subsample, convention
        self.options.update(subsample=subsample, convention=convention)

    def formula(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return haarpsi(x, y, self.data_range, self.subsample)

