"""The steerable pyramid of Simoncelli and Freeman with matlabPyrTools' spatial filters, batched in torch.

E. P. Simoncelli and W. T. Freeman, "The steerable pyramid: a flexible architecture for multi-scale
derivative computation", Proc. ICIP 1995; the filters of A. Karasaridis and E. P. Simoncelli,
"A filter design technique for steerable pyramid image transforms", Proc. ICASSP 1996.

What matlabPyrTools' ``buildSpyr(im, ht, 'sp5Filters', 'reflect1')`` computes (``buildSpyr.m``,
``buildSpyrLevs.m``, ``corrDn`` MEX; the numbers of ``sp5Filters.m``, the toolbox's six-orientation
filter set, as printed there with eight decimals):

1. ``hi0 = corrDn(im, hi0filt)`` (9x9) and ``lo0 = corrDn(im, lo0filt)`` (5x5), full size;
2. per level: each band ``corrDn(lo, bfilts(:, b))`` (7x7; ``bfilts`` holds each filter as a
   column, ``reshape``d column-major), full size of the level; then
   ``lo = corrDn(lo, lofilt, edges, [2 2], [1 1])`` (9x9): rows and columns 1, 3, 5, ... kept
   (``ceil(n / 2)``);
3. after ``ht`` levels the low-pass residual ``lo``.

``corrDn`` is a correlation (no kernel flip) and ``'reflect1'`` reflects about the edge pixels
without repeating them (``edges.c``), which is ``torch.nn.functional.pad(..., mode="reflect")``;
here every filtering is that padding plus one ``conv2d`` over the whole batch (all the bands of a
level in one call), the downsampling a stride of 2 (float64 on the CPU: the same correlation
through the FFT, see :func:`corr_reflect1`). ``maxPyrHt(size, 9)`` limits the height: each
of H and W must stay at least 9 (``lofilt``'s size) after ``ht - 1`` halvings, so ``ht`` levels
need ``9 * 2 ** (ht - 1)`` pixels (72 for the four levels of VIF).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

# ---------------------------------------------------------------- sp5Filters.m (matlabPyrTools)
# The tables as printed in sp5Filters.m (row by row; lofilt is ``2 * [...]`` there). The band
# filters are printed as six rows of 49 numbers, ``bfilts = [...]'``: the k-th group of seven
# numbers of a row is the k-th COLUMN of that 7x7 filter (``reshape(bfilts(:, b), 7, 7)``).

_SP5_HI0 = """
-0.00033429 -0.00113093 -0.00171484 -0.00133542 -0.00080639 -0.00133542 -0.00171484 -0.00113093 -0.00033429
-0.00113093 -0.00350017 -0.00243812 0.00631653 0.01261227 0.00631653 -0.00243812 -0.00350017 -0.00113093
-0.00171484 -0.00243812 -0.00290081 -0.00673482 -0.00981051 -0.00673482 -0.00290081 -0.00243812 -0.00171484
-0.00133542 0.00631653 -0.00673482 -0.07027679 -0.11435863 -0.07027679 -0.00673482 0.00631653 -0.00133542
-0.00080639 0.01261227 -0.00981051 -0.11435863 0.81380200 -0.11435863 -0.00981051 0.01261227 -0.00080639
-0.00133542 0.00631653 -0.00673482 -0.07027679 -0.11435863 -0.07027679 -0.00673482 0.00631653 -0.00133542
-0.00171484 -0.00243812 -0.00290081 -0.00673482 -0.00981051 -0.00673482 -0.00290081 -0.00243812 -0.00171484
-0.00113093 -0.00350017 -0.00243812 0.00631653 0.01261227 0.00631653 -0.00243812 -0.00350017 -0.00113093
-0.00033429 -0.00113093 -0.00171484 -0.00133542 -0.00080639 -0.00133542 -0.00171484 -0.00113093 -0.00033429
"""
_SP5_LO0 = """
0.00341614 -0.01551246 -0.03848215 -0.01551246 0.00341614
-0.01551246 0.05586982 0.15925570 0.05586982 -0.01551246
-0.03848215 0.15925570 0.40304148 0.15925570 -0.03848215
-0.01551246 0.05586982 0.15925570 0.05586982 -0.01551246
0.00341614 -0.01551246 -0.03848215 -0.01551246 0.00341614
"""
_SP5_LO_HALF = """
0.00085404 -0.00244917 -0.00387812 -0.00944432 -0.00962054 -0.00944432 -0.00387812 -0.00244917 0.00085404
-0.00244917 -0.00523281 -0.00661117 0.00410600 0.01002988 0.00410600 -0.00661117 -0.00523281 -0.00244917
-0.00387812 -0.00661117 0.01396746 0.03277038 0.03981393 0.03277038 0.01396746 -0.00661117 -0.00387812
-0.00944432 0.00410600 0.03277038 0.06426333 0.08169618 0.06426333 0.03277038 0.00410600 -0.00944432
-0.00962054 0.01002988 0.03981393 0.08169618 0.10096540 0.08169618 0.03981393 0.01002988 -0.00962054
-0.00944432 0.00410600 0.03277038 0.06426333 0.08169618 0.06426333 0.03277038 0.00410600 -0.00944432
-0.00387812 -0.00661117 0.01396746 0.03277038 0.03981393 0.03277038 0.01396746 -0.00661117 -0.00387812
-0.00244917 -0.00523281 -0.00661117 0.00410600 0.01002988 0.00410600 -0.00661117 -0.00523281 -0.00244917
0.00085404 -0.00244917 -0.00387812 -0.00944432 -0.00962054 -0.00944432 -0.00387812 -0.00244917 0.00085404
"""
_SP5_BANDS = """
0.00277643 0.00496194 0.01026699 0.01455399 0.01026699 0.00496194 0.00277643
-0.00986904 -0.00893064 0.01189859 0.02755155 0.01189859 -0.00893064 -0.00986904
-0.01021852 -0.03075356 -0.08226445 -0.11732297 -0.08226445 -0.03075356 -0.01021852
0.00000000 0.00000000 0.00000000 0.00000000 0.00000000 0.00000000 0.00000000
0.01021852 0.03075356 0.08226445 0.11732297 0.08226445 0.03075356 0.01021852
0.00986904 0.00893064 -0.01189859 -0.02755155 -0.01189859 0.00893064 0.00986904
-0.00277643 -0.00496194 -0.01026699 -0.01455399 -0.01026699 -0.00496194 -0.00277643

-0.00343249 -0.00640815 -0.00073141 0.01124321 0.00182078 0.00285723 0.01166982
-0.00358461 -0.01977507 -0.04084211 -0.00228219 0.03930573 0.01161195 0.00128000
0.01047717 0.01486305 -0.04819057 -0.12227230 -0.05394139 0.00853965 -0.00459034
0.00790407 0.04435647 0.09454202 -0.00000000 -0.09454202 -0.04435647 -0.00790407
0.00459034 -0.00853965 0.05394139 0.12227230 0.04819057 -0.01486305 -0.01047717
-0.00128000 -0.01161195 -0.03930573 0.00228219 0.04084211 0.01977507 0.00358461
-0.01166982 -0.00285723 -0.00182078 -0.01124321 0.00073141 0.00640815 0.00343249

0.00343249 0.00358461 -0.01047717 -0.00790407 -0.00459034 0.00128000 0.01166982
0.00640815 0.01977507 -0.01486305 -0.04435647 0.00853965 0.01161195 0.00285723
0.00073141 0.04084211 0.04819057 -0.09454202 -0.05394139 0.03930573 0.00182078
-0.01124321 0.00228219 0.12227230 -0.00000000 -0.12227230 -0.00228219 0.01124321
-0.00182078 -0.03930573 0.05394139 0.09454202 -0.04819057 -0.04084211 -0.00073141
-0.00285723 -0.01161195 -0.00853965 0.04435647 0.01486305 -0.01977507 -0.00640815
-0.01166982 -0.00128000 0.00459034 0.00790407 0.01047717 -0.00358461 -0.00343249

-0.00277643 0.00986904 0.01021852 -0.00000000 -0.01021852 -0.00986904 0.00277643
-0.00496194 0.00893064 0.03075356 -0.00000000 -0.03075356 -0.00893064 0.00496194
-0.01026699 -0.01189859 0.08226445 -0.00000000 -0.08226445 0.01189859 0.01026699
-0.01455399 -0.02755155 0.11732297 -0.00000000 -0.11732297 0.02755155 0.01455399
-0.01026699 -0.01189859 0.08226445 -0.00000000 -0.08226445 0.01189859 0.01026699
-0.00496194 0.00893064 0.03075356 -0.00000000 -0.03075356 -0.00893064 0.00496194
-0.00277643 0.00986904 0.01021852 -0.00000000 -0.01021852 -0.00986904 0.00277643

-0.01166982 -0.00128000 0.00459034 0.00790407 0.01047717 -0.00358461 -0.00343249
-0.00285723 -0.01161195 -0.00853965 0.04435647 0.01486305 -0.01977507 -0.00640815
-0.00182078 -0.03930573 0.05394139 0.09454202 -0.04819057 -0.04084211 -0.00073141
-0.01124321 0.00228219 0.12227230 -0.00000000 -0.12227230 -0.00228219 0.01124321
0.00073141 0.04084211 0.04819057 -0.09454202 -0.05394139 0.03930573 0.00182078
0.00640815 0.01977507 -0.01486305 -0.04435647 0.00853965 0.01161195 0.00285723
0.00343249 0.00358461 -0.01047717 -0.00790407 -0.00459034 0.00128000 0.01166982

-0.01166982 -0.00285723 -0.00182078 -0.01124321 0.00073141 0.00640815 0.00343249
-0.00128000 -0.01161195 -0.03930573 0.00228219 0.04084211 0.01977507 0.00358461
0.00459034 -0.00853965 0.05394139 0.12227230 0.04819057 -0.01486305 -0.01047717
0.00790407 0.04435647 0.09454202 -0.00000000 -0.09454202 -0.04435647 -0.00790407
0.01047717 0.01486305 -0.04819057 -0.12227230 -0.05394139 0.00853965 -0.00459034
-0.00358461 -0.01977507 -0.04084211 -0.00228219 0.03930573 0.01161195 0.00128000
-0.00343249 -0.00640815 -0.00073141 0.01124321 0.00182078 0.00285723 0.01166982
"""


#: ``harmonics = [1 3 5]`` and six orientations, band ``b`` (0-based) at ``b * pi / 6``.
SP5_ORIENTATIONS = 6
#: ``size(lofilt, 1)``: what ``maxPyrHt`` compares the image size with.
SP5_LOFILT_SIZE = 9


def _table(text: str) -> list[list[float]]:
    return [[float(v) for v in line.split()] for line in text.strip().splitlines()]


@functools.cache
def _sp5_tables() -> dict[str, tuple]:
    bands = [_table(block) for block in _SP5_BANDS.strip().split("\n\n")]
    return {
        "hi0": tuple(map(tuple, _table(_SP5_HI0))),
        "lo0": tuple(map(tuple, _table(_SP5_LO0))),
        "lo": tuple(tuple(2.0 * v for v in row) for row in _table(_SP5_LO_HALF)),
        # printed columns -> the filter's rows: transpose each 7x7 block
        "bands": tuple(tuple(tuple(col[r] for col in cols) for r in range(7)) for cols in bands),
    }


def sp5_filters(
    dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> dict[str, torch.Tensor]:
    """``sp5Filters``' filters as tensors in MATLAB orientation (row, column): ``hi0`` (9, 9),
    ``lo0`` (5, 5), ``lo`` (9, 9, the factor 2 applied), ``bands`` (6, 7, 7)."""
    return {k: torch.tensor(v, dtype=dtype, device=device) for k, v in _sp5_tables().items()}


def max_pyramid_height(height: int, width: int, filter_size: int = SP5_LOFILT_SIZE) -> int:
    """matlabPyrTools' ``maxPyrHt([height width], filter_size)`` for a 2-D image."""
    levels = 0
    while height >= filter_size and width >= filter_size:
        levels += 1
        height, width = height // 2, width // 2
    return levels


def corr_reflect1(x: torch.Tensor, weight: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """``corrDn(x, filt, 'reflect1', [stride stride], [1 1])`` for every filter at once.

    ``x`` (B, 1, H, W), ``weight`` (K, 1, kh, kw) with odd sizes: (B, K, ceil(H / stride),
    ceil(W / stride)). Reflection without repeating the edge pixel needs H, W > kh // 2, kw // 2.

    The correlation of the padded image is ``conv2d``, except for float64 on the CPU, where
    PyTorch has no fast convolution (its im2col fallback is 10-20x slower than float32): there
    the same correlation is computed through the FFT of the padded image (the circular
    convolution with the flipped filter, whose ``'valid'`` part does not wrap), to about 1e-16
    of the image's norm.
    """
    ph, pw = weight.shape[-2] // 2, weight.shape[-1] // 2
    padded = F.pad(x, (pw, pw, ph, ph), mode="reflect")
    if not (x.dtype == torch.float64 and x.device.type == "cpu"):
        return F.conv2d(padded, weight, stride=stride)
    hp, wp = padded.shape[-2:]
    kh, kw = weight.shape[-2:]
    kernel = F.pad(weight.flip((-2, -1)), (0, wp - kw, 0, hp - kh)).squeeze(1)  # (K, Hp, Wp)
    full = torch.fft.irfft2(torch.fft.rfft2(padded) * torch.fft.rfft2(kernel), s=(hp, wp))
    return full[..., kh - 1 :: stride, kw - 1 :: stride]


def steerable_pyramid(
    x: torch.Tensor, levels: int, bands: tuple[int, ...] | None = None, residuals: bool = True
) -> tuple[torch.Tensor | None, list[torch.Tensor], torch.Tensor | None]:
    """``buildSpyr(x, levels, 'sp5Filters', 'reflect1')`` of a batch ``x`` (B, 1, H, W).

    Returns ``(hi0, level_bands, lowpass)``: ``level_bands[l]`` (B, len(bands), H_l, W_l) holds
    the oriented bands of level ``l`` (0 the finest, ``H_0 = H``, ``H_{l+1} = ceil(H_l / 2)``),
    ``bands`` selects orientations (0-based, all six by default; computing fewer costs less).
    ``residuals=False`` skips ``hi0`` and the last low-pass (returned as None), which VIF does
    not use. Computes in ``x``'s dtype (the filters are cast to it).
    """
    h, w = x.shape[-2:]
    if not 1 <= levels <= max_pyramid_height(h, w):
        raise ValueError(f"steerable_pyramid: {h}x{w} takes at most {max_pyramid_height(h, w)} levels, not {levels}")
    f = sp5_filters(x.dtype, x.device)
    chosen = f["bands"] if bands is None else f["bands"][list(bands)]
    band_weight = chosen.unsqueeze(1)
    lo_weight = f["lo"].view(1, 1, 9, 9)
    hi0 = None
    if residuals:
        # lo0 (5x5) embedded in a 9x9 zero frame: reflect-padding by 4 then equals padding by 2
        lo0_9 = F.pad(f["lo0"], (2, 2, 2, 2))
        both = corr_reflect1(x, torch.stack((f["hi0"], lo0_9)).unsqueeze(1))
        hi0, lo = both[:, :1], both[:, 1:]
    else:
        lo = corr_reflect1(x, f["lo0"].view(1, 1, 5, 5))
    out = []
    for level in range(levels):
        out.append(corr_reflect1(lo, band_weight))
        if level < levels - 1 or residuals:
            lo = corr_reflect1(lo, lo_weight, stride=2)
    return hi0, out, (lo if residuals else None)
