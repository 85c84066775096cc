"""SR-SIM: the spectral-residual-based similarity of Zhang and Li (2012).

L. Zhang and H. Li, "SR-SIM: A fast and high performance IQA index based on spectral
residual", Proc. IEEE ICIP 2012, pp. 1473-1476.

The numbers follow the authors' MATLAB code ``SR_SIM.m`` (Version 1.0, Lin Zhang 2011), which
works on 0..255 values (the copy the reference values came from: see
``tests/reference/srsim/make_reference.py``):

1. Luma: RGB -> ``Y = 0.299 R + 0.587 G + 0.114 B`` (SR_SIM.m's own conversion of an
   ``H x W x 3`` input, unrounded); a grey image is its own ``Y``.
2. Downsample by ``F = max(1, round(min(H, W) / 256))``: an FxF box filter (``conv2 'same'``,
   zero padding), every F-th pixel from the first (as FSIM).
3. Visual saliency of each ``Y`` by the spectral residual (Hou & Zhang 2007), the code's
   ``spectralResidueSaliency``: ``S = imresize(Y, 0.25)`` (MATLAB bicubic, antialiased), its
   2-D FFT ``A e^{i P}``, the residual ``R = log A - mean3x3(log A)`` (``imfilter`` with
   'replicate' border), ``V = |ifft2(e^{R + iP})|^2``, smoothed by a 10x10 Gaussian of sigma
   3.8 (``imfilter``, zero border), scaled to [0, 1] (``mat2gray``) and resized back to the
   size of ``Y`` (``imresize(.., [rows cols])``, bicubic).
4. Gradient magnitude ``G`` of ``Y`` with the Scharr kernels ``[3 0 -3; 10 0 -10; 3 0 -3] / 16``.
5. ``S_V = (2 V1 V2 + C1) / (V1^2 + V2^2 + C1)``, ``S_G`` likewise with ``C2``,
   ``V_m = max(V1, V2)`` and ``SR-SIM = sum(S_V * S_G^alpha * V_m) / sum(V_m)``.

``e^{R + iP} = A e^{iP} e^{-mean3x3(log A)} = FFT * e^{-mean3x3(log A)}``: computed in that
form, with no phase angle (same value to rounding; finite gradients).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from ..options import MatlabConvention, Precision, Reduction
from .base import SimilarityIndex, check_choice
from .color import rgb_to_yiq
from .fsim import safe_sqrt, scharr_gradient_magnitude, similarity
from .matlab import box_downsample, downsample_factor
from .resize import imresize

# ---------------------------------------------------------------- constants of SR_SIM.m

C1_SALIENCY = 0.40  # SR_SIM.m: "C1 = 0.40; %fixed"
C2_GRADIENT = 225.0  # SR_SIM.m: "C2 = 225;"
ALPHA = 0.50  # SR_SIM.m: "alpha = 0.50;%fixed" (exponent of the gradient similarity)
# spectralResidueSaliency of SR_SIM.m: "scale = 0.25; aveKernelSize = 3; gauSigma = 3.8; gauSize = 10;"
SALIENCY_SCALE = 0.25
RESIDUAL_BOX = 3
GAUSS_SIGMA = 3.8
GAUSS_SIZE = 10

CONVENTIONS = ("matlab",)
PRECISIONS = ("input", "float64")

#: Smallest side: the saliency is computed at a quarter of the (downsampled) size, which must
#: hold at least 2x2 pixels for ``mat2gray`` to see more than one value.
MIN_SIZE = 8


@functools.lru_cache(maxsize=8)
def _gaussian(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``fspecial('gaussian', [10 10], 3.8)``: ``exp(-(x^2 + y^2) / (2 sigma^2))`` on the
    centred grid ``-4.5 .. 4.5``, normalised to sum 1 (built in float64, then cast)."""
    with torch.inference_mode(False), torch.no_grad():
        t = torch.arange(GAUSS_SIZE, dtype=torch.float64) - (GAUSS_SIZE - 1) / 2.0
        g = torch.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2.0 * GAUSS_SIGMA**2))
        return (g / g.sum()).to(device=device, dtype=dtype)[None, None]


def spectral_residual_saliency(y: torch.Tensor) -> torch.Tensor:
    """``(B,1,H,W) -> (B,1,H,W)``: SR_SIM.m's ``spectralResidueSaliency`` of luma on 0..255,
    values in [0, 1] up to the bicubic overshoot of the final resize (see the module doc)."""
    h, w = y.shape[-2:]
    small = imresize(y, scale=SALIENCY_SCALE)
    spectrum = torch.fft.fft2(small)
    log_amplitude = torch.log(safe_sqrt(spectrum.real.pow(2) + spectrum.imag.pow(2)))
    # imfilter(logA, fspecial('average', 3), 'replicate')
    local_mean = F.avg_pool2d(F.pad(log_amplitude, (1, 1, 1, 1), mode="replicate"), RESIDUAL_BOX, stride=1)
    back = torch.fft.ifft2(spectrum * torch.exp(-local_mean))
    saliency = back.real.pow(2) + back.imag.pow(2)
    # imfilter(.., fspecial('gaussian', [10 10], 3.8)): correlation, zero border, 'same' with the
    # centre of an even kernel at tap 5 (4 rows before, 5 after).
    before, after = (GAUSS_SIZE - 1) // 2, GAUSS_SIZE // 2
    saliency = F.conv2d(F.pad(saliency, (before, after, before, after)), _gaussian(y.device, y.dtype))
    # mat2gray: (V - min) / (max - min) per image
    low = saliency.amin(dim=(-2, -1), keepdim=True)
    high = saliency.amax(dim=(-2, -1), keepdim=True)
    saliency = (saliency - low) / (high - low).clamp(min=torch.finfo(y.dtype).tiny)
    return imresize(saliency, size=(h, w))


def srsim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, precision: str = "input") -> torch.Tensor:
    """SR-SIM of two batches ``(N,C,H,W)`` in ``[0, data_range]`` (C = 1 or 3), as SR_SIM.m.

    Returns ``(N,)`` in the inputs' common dtype: 1 for identical images, higher = more alike.
    ``precision="input"`` computes in the input dtype (at least float32), ``"float64"`` in
    float64 (MATLAB's doubles).
    """
    out_dtype = torch.promote_types(x.dtype, y.dtype)
    work = torch.float64 if precision == "float64" else torch.promote_types(out_dtype, torch.float32)
    n, c, h, w = x.shape
    pair = torch.cat((x, y)).to(work) * (255.0 / data_range)  # (2N, C, H, W) on SR_SIM.m's 0..255
    if c == 3:
        pair = rgb_to_yiq(pair, channels=1)  # SR_SIM.m: Y = 0.299 R + 0.587 G + 0.114 B
    luma = box_downsample(pair, downsample_factor(h, w), "zeros")

    saliency = spectral_residual_saliency(luma)[:, 0]
    grad = scharr_gradient_magnitude(luma)[:, 0]
    v1, v2 = saliency[:n], saliency[n:]
    s_grad = similarity(grad[:n], grad[n:], C2_GRADIENT)
    sim = similarity(v1, v2, C1_SALIENCY) * s_grad.pow(ALPHA)
    weight = torch.maximum(v1, v2)
    # eps only matters when neither image has any saliency (flat images: mat2gray gives 0 and
    # MATLAB 0/0 = NaN); the score is then 1. Elsewhere it moves the score by < 1e-12.
    eps = torch.finfo(work).eps
    score = ((sim * weight).sum(dim=(-2, -1)) + eps) / (weight.sum(dim=(-2, -1)) + eps)
    return score.to(out_dtype)


class SaliencyWeightedSimilarity(SimilarityIndex):
    """A similarity index pooled with a saliency map, 1 for identical images (SR-SIM, VSI): the
    options they share. Subclasses give ``index(x, y,
    data_range, precision)``, the function of their module."""

    differentiable = True
    channels = (1, 3)

    def __init__(
        self,
        data_range: float = 1.0,
        convention: MatlabConvention = "matlab",
        precision: Precision = "input",
        reduction: Reduction = "none",
        validate_args: bool = True,
    ) -> None:
        super().__init__(data_range, reduction, validate_args)
        precision = "input" if precision == "auto" else precision
        check_choice(self.name, "convention", convention, CONVENTIONS)
        check_choice(self.name, "precision", precision, PRECISIONS)
        self.convention, self.precision = convention, precision
        self.options.update(convention=convention, precision=precision)

    @staticmethod
    def index(x: torch.Tensor, y: torch.Tensor, data_range: float, precision: str) -> torch.Tensor:
        raise NotImplementedError

    def formula(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.index(x, y, self.data_range, self.precision)


class SRSIM(SaliencyWeightedSimilarity):
    """Spectral-residual similarity SR-SIM, as the authors' MATLAB code (1 at best).

    Options: ``data_range`` (1 or 255, ...), ``convention="matlab"`` (SR_SIM.m: its own luma
    ``0.299 R + 0.587 G + 0.114 B``, its downsampling and MATLAB's ``imresize``),
    ``precision`` (``"input"``: compute in the input dtype, the default; ``"float64"``).
    ``to_distance(s) = 1 - s``.
    """

    name = "srsim"
    symmetric = True
    colour_doc = "RGB or grey (RGB -> Y of YIQ)"
    distance_name = "1-srsim"
    min_size = MIN_SIZE
    index = staticmethod(srsim)
