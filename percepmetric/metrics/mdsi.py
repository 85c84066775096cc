"""MDSI: the Mean Deviation Similarity Index of Nafchi, Shahkolaei, Hedjam and Cheriet (2016).

H. Ziaei Nafchi, A. Shahkolaei, R. Hedjam and M. Cheriet, "Mean Deviation Similarity Index: Efficient
and Reliable Full-Reference Image Quality Evaluator", IEEE Access 4:5579-5590, 2016.

The numbers follow the authors' MATLAB code ``MDSI.m``, which works on RGB 0..255 values (a grey
image goes in as three equal channels):

1. Each of R, G, B is filtered with the ``f x f`` mean (``conv2(.., fspecial('average', f), 'same')``,
   zero padding) and every f-th pixel is kept, ``f = max(1, round(min(H, W) / 256))``.
2. Luma ``L = 0.2989 R + 0.5870 G + 0.1140 B`` of each image and their fusion ``F = (L1 + L2) / 2``;
   chroma ``H = 0.30 R + 0.04 G - 0.35 B``, ``M = 0.34 R - 0.60 G + 0.17 B``.
3. Gradient magnitudes ``g`` of L1, L2 and F with ``dx = [1 0 -1; 1 0 -1; 1 0 -1] / 3`` and
   ``dy = dx'`` (``conv2 'same'``, zero padding).
4. ``GS(a, b, c) = (2 g_a g_b + c) / (g_a^2 + g_b^2 + c)``,
   ``GS_HVS = GS(1, 2, C1) + GS(2, F, C2) - GS(1, F, C2)``;
   ``CS = (2 (H1 H2 + M1 M2) + C3) / (H1^2 + H2^2 + M1^2 + M2^2 + C3)``.
5. ``combination="sum"`` (the default): ``GCS = 0.6 GS_HVS + 0.4 CS``; ``"mult"``:
   ``GCS = GS_HVS^0.2 CS^0.1``.
6. ``MDSI = mad((GCS^0.5)^0.5)^0.25`` over the pixels, ``mad(v) = mean(|v - mean(v)|)``.

Constants (MDSI.m): ``C1 = 140``, ``C2 = 55``, ``C3 = 550``, ``alpha = 0.6`` (sum), ``gamma = 0.2``,
``beta = 0.1`` (mult).

GCS can be negative (CS is negative where the chroma of the two images point apart; GS_HVS can
be), and MATLAB's power of a negative number is complex: ``(g^0.5)^0.5`` of ``g < 0`` is
``|g|^0.25 exp(i pi / 4)``, and ``mad`` takes the modulus of the complex deviations. This module
does the same with explicit real and imaginary parts (modulus ``|GCS|^0.25``, phase a quarter of
GCS's phase, which is 0 or pi for "sum", ``0.2 pi [GS_HVS < 0] + 0.1 pi [CS < 0]`` for "mult").

MDSI is 0 for identical images and grows with the distortion (lower is better). The quarter
powers and moduli have an infinite slope at 0 (e.g. at ``x == y``); they are guarded so that
gradients stay finite; values change only where a power's argument is subnormal.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from ..errors import InputError
from ..options import MatlabConvention, Reduction
from .base import Metric, check_choice
from .color import as_rgb
from .fsim import similarity
from .gmsd import prewitt_magnitude  # MDSI.m's dx, dy are GMSD.m's Prewitt kernels / 3
from .matlab import box_downsample, downsample_factor

# ---------------------------------------------------------------- constants of MDSI.m

C1 = 140.0  # MDSI.m: "C1 = 140;" gradient similarity of the two images
C2 = 55.0  # MDSI.m: "C2 = 55;" gradient similarity with the fused image
C3 = 550.0  # MDSI.m: "C3 = 550;" chromaticity similarity
ALPHA_SUM = 0.6  # MDSI.m: "alpha = 0.6;" (combMethod 'sum')
GAMMA_MULT = 0.2  # MDSI.m: "gamma = 0.2;" (combMethod 'mult')
BETA_MULT = 0.1  # MDSI.m: "beta = 0.1;" (combMethod 'mult')
# Rows L, H, M of MDSI.m (its luma is rgb2gray's, on unrounded doubles).
LHM_MATRIX = (
    (0.2989, 0.5870, 0.1140),
    (0.30, 0.04, -0.35),
    (0.34, -0.60, 0.17),
)

CONVENTIONS = ("matlab",)
COMBINATIONS = ("sum", "mult")
CombMethod = Literal["sum", "mult"]


def _safe_root(t: torch.Tensor, power: float) -> torch.Tensor:
    """``t ** power`` for ``t >= 0``, ``0 < power < 1``, with a finite gradient at 0: exactly 0 at
    0, and the power of the dtype's smallest normal number for subnormal ``t`` (the only values
    changed); the branch not taken sees a clamped input, so its gradient stays finite."""
    tiny = torch.finfo(t.dtype).tiny
    return torch.where(t > 0, t.clamp(min=tiny).pow(power), torch.zeros((), dtype=t.dtype, device=t.device))


def mdsi(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, combination: str = "sum") -> torch.Tensor:
    """MDSI of two batches as MDSI.m computes it; ``x`` the reference, lower is better.

    ``x``, ``y``: ``(N,C,H,W)`` in ``[0, data_range]``, C = 3 (RGB) or 1 (grey, as three equal
    channels). Returns ``(N,)`` in the inputs' common dtype (at least float32); 0 for identical
    images. Formula and conventions: see the module docstring.
    """
    out_dtype = torch.promote_types(x.dtype, y.dtype)
    work = torch.promote_types(out_dtype, torch.float32)
    n = x.shape[0]
    pair = torch.cat((as_rgb(x), as_rgb(y))).to(work) * (255.0 / data_range)  # MDSI.m: double(imread(..))
    pair = box_downsample(pair, downsample_factor(*pair.shape[-2:]), "zeros")
    matrix = torch.tensor(LHM_MATRIX, dtype=work, device=pair.device)
    lhm = torch.einsum("kc,nchw->nkhw", matrix, pair)  # (2N, 3, h, w): L, H, M
    l1, l2 = lhm[:n, :1], lhm[n:, :1]
    g1, g2, gf = prewitt_magnitude(torch.cat((l1, l2, 0.5 * (l1 + l2)))).split(n)
    gs_hvs = similarity(g1, g2, C1) + similarity(g2, gf, C2) - similarity(g1, gf, C2)
    h1, m1, h2, m2 = lhm[:n, 1:2], lhm[:n, 2:], lhm[n:, 1:2], lhm[n:, 2:]
    cs = (2.0 * (h1 * h2 + m1 * m2) + C3) / (h1 * h1 + h2 * h2 + m1 * m1 + m2 * m2 + C3)
    # GCS as modulus and phase (MATLAB's powers of negative numbers are complex, principal branch).
    if combination == "sum":
        gcs = ALPHA_SUM * gs_hvs + (1.0 - ALPHA_SUM) * cs
        modulus_root = _safe_root(gcs.abs(), 0.25)
        phase = torch.where(gcs < 0, math.pi, 0.0)
    else:
        modulus_root = _safe_root(gs_hvs.abs(), GAMMA_MULT / 4) * _safe_root(cs.abs(), BETA_MULT / 4)
        phase = GAMMA_MULT * math.pi * (gs_hvs < 0) + BETA_MULT * math.pi * (cs < 0)
    # (GCS^0.5)^0.5: the quarter root, phase / 4 (the phase is in [0, pi], so no branch is crossed).
    real = (modulus_root * torch.cos(phase / 4)).flatten(1)
    imag = (modulus_root * torch.sin(phase / 4)).flatten(1)
    deviation = _safe_root((real - real.mean(dim=1, keepdim=True)).pow(2)
                           + (imag - imag.mean(dim=1, keepdim=True)).pow(2), 0.5)
    score = _safe_root(deviation.mean(dim=1), 0.25)  # mad(...)^0.25
    return score.to(out_dtype)


class MDSI(Metric):
    """MDSI, the mean deviation similarity index, as the authors' MATLAB code (0 for identical images).

    Takes RGB (a grey image as three equal channels). Options: ``data_range`` (1 or 255, ...),
    ``combination`` (MDSI.m's ``combMethod``: ``"sum"``, the default, or ``"mult"``),
    ``convention="matlab"`` (MDSI.m: its downsampling by ``max(1, round(min(H, W) / 256))``).
    The value is its own distance.
    """

    name = "mdsi"
    colour_doc = "RGB (grey -> three equal channels)"
    lower_is_better = True
    differentiable = True
    symmetric = False  # GS_HVS = GS(x, y) + GS(y, F) - GS(x, F): x is the reference
    min_size = 1  # MDSI.m runs on any size
    channels = (1, 3)

    def __init__(
        self,
        data_range: float = 1.0,
        combination: CombMethod = "sum",
        convention: MatlabConvention = "matlab",
        reduction: Reduction = "none",
        validate_args: bool = True,
    ) -> None:
        super().__init__(data_range, reduction, validate_args)
        if not isinstance(combination, str):
            raise InputError(f"mdsi: option combination must be one of sum, mult, got {combination!r}")
        check_choice(self.name, "combination", combination, COMBINATIONS)
        check_choice(self.name, "convention", convention, CONVENTIONS)
        self.combination, self.convention = combination, convention
        self.options.update(combination=combination, convention=convention)

    def formula(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return mdsi(x, y, self.data_range, self.combination)
