"""MATLAB's conventions, where the reference codes of SSIM (``ssim.m``, ``msssim.m``) and FSIM
(``FeatureSIM.m``) depend on them: rounding, their downsampling factor, the centring of an
even-sized filter and the 'symmetric' border.

Each metric module uses these instead of writing its own, so that a convention is emulated
one way everywhere.
"""

from __future__ import annotations

import math
from typing import Literal, overload

import torch
import torch.nn.functional as F

from ..errors import InputError

Border = Literal["zeros", "symmetric"]


@overload
def matlab_round(value: float) -> int: ...


@overload
def matlab_round(value: torch.Tensor) -> torch.Tensor: ...


def matlab_round(value: float | torch.Tensor) -> int | torch.Tensor:
    """MATLAB's ``round``: halves away from zero (Python's ``round`` and ``torch.round`` go to
    even: 0.5 -> 0, 2.5 -> 2). A tensor gives a float tensor of the same dtype."""
    if isinstance(value, torch.Tensor):
        return torch.copysign(torch.floor(value.abs() + 0.5), value)
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


def downsample_factor(height: int, width: int) -> int:
    """``f = max(1, round(min(M, N) / 256))``, the automatic downsampling of ``ssim.m`` and
    ``FeatureSIM.m`` (MATLAB rounds halves up: 384 -> 2, 640 -> 3)."""
    return max(1, matlab_round(min(height, width) / 256.0))


def same_offsets(taps: int) -> tuple[int, int]:
    """Rows taken before and after the output pixel by a ``taps``-long filter in MATLAB's
    ``'same'`` mode (``conv2``, ``filter2``, ``imfilter``): the kernel's centre is tap
    ``floor((taps + 1) / 2)``, so an even kernel reaches one row further after than before."""
    return (taps - 1) // 2, taps // 2


def _symmetric_index(n: int, before: int, after: int, device: torch.device) -> torch.Tensor:
    i = torch.arange(-before, n + after, device=device)
    return torch.where(i < 0, -i - 1, torch.where(i >= n, 2 * n - 1 - i, i))


def pad_symmetric(x: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """``(..., H, W) -> (..., before + H + after, before + W + after)`` with MATLAB's
    ``'symmetric'`` border (``imfilter``, ``padarray``): mirrored including the edge pixel,
    ``a b c | c b a`` (torch's ``reflect`` leaves the edge out)."""
    h, w = x.shape[-2:]
    x = x.index_select(-2, _symmetric_index(h, before, after, x.device))
    return x.index_select(-1, _symmetric_index(w, before, after, x.device))


def box_downsample(x: torch.Tensor, factor: int, border: Border) -> torch.Tensor:
    """An ``f x f`` mean filter in MATLAB's ``'same'`` mode, then ``img(1:f:end, 1:f:end)``:
    ``(..., H, W) -> (..., ceil(H/f), ceil(W/f))``.

    ``border="zeros"``: ``conv2(img, ones(f)/f^2, 'same')`` (FeatureSIM.m);
    ``"symmetric"``: ``imfilter(img, ones(f)/f^2, 'symmetric', 'same')`` (ssim.m with
    :func:`downsample_factor`, msssim.m with f = 2 between scales).

    Output pixel ``i`` (0-based) averages rows ``i - before .. i + after`` (:func:`same_offsets`);
    padding accordingly and pooling ``f x f`` blocks with stride f gives exactly the kept pixels.
    """
    if factor == 1:
        return x
    before, after = same_offsets(factor)
    h, w = x.shape[-2:]
    # With nothing taken before (f = 2) and sides divisible by f, the pooling blocks never reach
    # the border: the padding (a copy of the whole batch) would change no value.
    if before or h % factor or w % factor:
        x = F.pad(x, (before, after, before, after)) if border == "zeros" else pad_symmetric(x, before, after)
    return F.avg_pool2d(x, factor, stride=factor)


def check_shave(metric: str, shave: object) -> int:
    """``shave`` as a non-negative integer (the border width), else :class:`InputError`."""
    if isinstance(shave, bool) or not isinstance(shave, int) or shave < 0:
        raise InputError(f"{metric}: option shave must be a non-negative integer (pixels), got {shave!r}")
    return shave


def shave_border(x: torch.Tensor, shave: int) -> torch.Tensor:
    """``(..., H, W) -> (..., H - 2 shave, W - 2 shave)``: ``shave`` pixels removed on every side.

    The super-resolution convention (the ``shave`` of the MATLAB evaluation scripts,
    ``crop_border`` in BasicSR): an upscaler's outermost pixels see only a padded input, so
    PSNR and SSIM are taken on the inside, usually with ``shave`` = the scale factor.
    """
    if shave == 0:
        return x
    return x[..., shave:-shave, shave:-shave]
