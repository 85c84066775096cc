"""SSIM and MS-SSIM: the structural similarity index and its multi-scale form.

Z. Wang, A. C. Bovik, H. R. Sheikh and E. P. Simoncelli, "Image quality assessment: from
error visibility to structural similarity", IEEE Trans. Image Processing 13(4), 2004.
Z. Wang, E. P. Simoncelli and A. C. Bovik, "Multi-scale structural similarity for image
quality assessment", Asilomar Conference on Signals, Systems and Computers, 2003.

For local means ``mu``, variances ``s^2`` and covariance ``s_xy`` (weighted by a window)::

    ssim_map = (2 mu_x mu_y + C1) (2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1) (s_x^2 + s_y^2 + C2))
    cs_map   =                    (2 s_xy + C2) /                        (s_x^2 + s_y^2 + C2)
    C1 = (K1 L)^2, C2 = (K2 L)^2, K1 = 0.01, K2 = 0.03, L = the dynamic range

and SSIM is the mean of the map (over the 'valid' positions, then over channels).

Two conventions, each what a reference code computes (see docs/metrics.md):

``matlab`` (default)  the authors' ``ssim.m`` (2009, automatic downsampling) and ``msssim.m``:
                      luminance by MATLAB's ``rgb2gray`` (rounded to 8 bits for 8-bit input),
                      11x11 Gaussian window, sigma 1.5, 'valid' filtering, population
                      moments; SSIM first box-filters and subsamples by
                      ``f = max(1, round(min(H, W) / 256))``.
``lpips``             the LPIPS paper's SSIM baseline: scikit-image's ``structural_similarity``
                      with its defaults (7x7 uniform window, sample covariance, 'valid'
                      region) on every channel of RGB or Lab, mean over channels.

The super-resolution convention is the matlab convention's window and constants on the BT.601
luma (``color="y"``: float Y, never downsampled; MATLAB's integer Y with ``quantize=True``)
with ``shave`` border pixels removed: BasicSR's ``calculate_ssim(..., crop_border=shave,
test_y_channel=True)``.

Speed: the five moment maps ``x, y, x^2, y^2, xy`` of all channels are stacked and filtered
in one pass of a separable filter (two 1-D filterings, see :func:`filter_valid`).

Memory: on large images, when the unbanded formula's temporaries would exceed
:data:`~.budget.BAND_BUDGET_BYTES` (1 GiB), the SSIM map is computed over horizontal bands of
its rows (:class:`_Rows`, :func:`_banded_map_means`): each band reads the rows it needs plus
the window's halo (``k - 1`` rows), converted (luminance, Lab, ...) and, with ``downsample``,
box-filtered from the input rows of its own downsampling blocks, so every band sees exactly the
values the whole image would; the bands' sums add up in float64. MS-SSIM does the same at each
scale, each coarser scale made band by band from the finer one. The same numbers to float
rounding; not when autograd records the call (inputs requiring grad: every band's graph would
be kept for the backward pass, saving nothing) nor for ``color="rgb_planes"``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..options import Color, LumaColor, MatlabConvention, Reduction, SSIMConvention, parse_bool
from . import budget
from .base import Metric, check_choice, check_pair, promote_to_common_dtype
from .color import lab_over_100, lpips_code_8bit, rgb_to_grey_matlab, rgb_to_ycbcr_y, straight_through
from .matlab import (
    _symmetric_index,
    box_downsample,
    check_shave,
    downsample_factor,
    matlab_round,
    pad_symmetric,
    same_offsets,
    shave_border,
)

K1, K2 = 0.01, 0.03
CONVENTIONS = ("matlab", "lpips")
COLORS = ("grey", "rgb", "lab")
# ssim.m handed an RGB array: the planes side by side as one grey image (see matlab_rgb_planes).
RGB_PLANES = "rgb_planes"
# The super-resolution convention's BT.601 luma (matlab convention only, see rgb_to_ycbcr_y).
LUMA_Y = "y"
QUANTIZE = ("auto", True, False)
LPIPS_CODE = "lpips_code"  # quantize option of the lpips convention: see lpips_code_8bit
# MS-SSIM scale weights of Wang, Simoncelli & Bovik (2003), fine to coarse (msssim.m defaults).
MSSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
GAUSSIAN_SIZE, GAUSSIAN_SIGMA = 11, 1.5  # fspecial('gaussian', 11, 1.5) in ssim.m / msssim.m
UNIFORM_SIZE = 7  # scikit-image structural_similarity's default win_size
# Up to this side length filter_valid filters by matrix products, above it by convolutions
# (measured on a 2-core CPU: 2x faster at 64, slower from about 200 on).
_MATMUL_MAX_SIDE = 128


# ---------------------------------------------------------------- windows and filtering

class Window(NamedTuple):
    """A separable SSIM window: its 1-D factor ``weights`` ``(k,)`` (the 2-D window is their outer
    product) and whether it is a box (``uniform``: every weight ``1/k``).

    ``uniform`` is known from how the window was built (:func:`uniform_window` or not), never
    read from the weights: deciding the filtering path from tensor values would need them on
    the host, a device sync per call and a graph break under ``torch.compile``.
    """

    weights: torch.Tensor
    uniform: bool = False

    @property
    def size(self) -> int:
        """``k``: the window covers ``k x k`` pixels."""
        return self.weights.numel()


def gaussian_window(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """1-D normalised Gaussian ``(size,)``. Its outer product with itself is exactly MATLAB's
    ``fspecial('gaussian', size, sigma)`` (normalised to sum 1): ``exp(-(u^2 + v^2) / (2 sigma^2))``
    separates, and normalising each factor normalises the product.
    """
    u = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-(u * u) / (2.0 * sigma * sigma))
    return (g / g.sum()).to(dtype=dtype, device=device)


def uniform_window(size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """1-D box ``(size,)`` of ``1/size``: scikit-image's ``uniform_filter`` window, separated."""
    return torch.full((size,), 1.0 / size, dtype=dtype, device=device)


def _valid_filter_matrix(n: int, window: torch.Tensor) -> torch.Tensor:
    """``(n, n-k+1)`` banded matrix ``T`` with ``(v @ T)[j] = sum_i window[i] v[j + i]``:
    MATLAB's ``filter2(window, v, 'valid')`` (a correlation) along one axis.
    """
    k = window.numel()
    offset = torch.arange(n, device=window.device)[:, None] - torch.arange(n - k + 1, device=window.device)[None, :]
    inside = (offset >= 0) & (offset < k)
    return torch.where(inside, window[offset.clamp(0, k - 1)], window.new_zeros(()))


def window_sums(x: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    """Sums of every ``k`` consecutive entries along ``dim`` (size n -> n-k+1), by doubling:
    sums over 1, 2, 4, ... entries, each made from the previous by one addition, and the
    window as the sum of those that make up ``k`` (7 = 1 + 2 + 4: 4 additions, not 6).
    Exact for integer dtypes; measured 1.5-2.4x faster than summing strided views."""
    n = x.shape[dim]
    pieces, offset, length, power = [], 0, 1, x  # power: sums over `length` entries
    while length <= k:
        if k & length:
            pieces.append(power.narrow(dim, offset, n - k + 1))
            offset += length
        if 2 * length <= k:
            m = power.shape[dim] - length
            power = power.narrow(dim, 0, m) + power.narrow(dim, length, m)
        length *= 2
    out = pieces[0] + pieces[1] if len(pieces) > 1 else pieces[0]
    for piece in pieces[2:]:
        out.add_(piece)
    return out


def box_sum_valid(maps: torch.Tensor, k: int) -> torch.Tensor:
    """Sums over every k x k window: ``(..., H, W) -> (..., H-k+1, W-k+1)``, rows then columns
    (:func:`window_sums`). Integer maps stay in their dtype: exact."""
    return window_sums(window_sums(maps, k, -1), k, -2)


def filter_valid(maps: torch.Tensor, window: Window) -> torch.Tensor:
    """Separable 'valid' filtering: ``(..., H, W) -> (..., H-k+1, W-k+1)``.

    Equals ``filter2(w' * w, map, 'valid')`` for the 1-D weights ``w`` of size k of ``window``
    (the 2-D windows used here are outer products of 1-D ones). Rows, then columns. A uniform
    window is a sliding sum. Other windows on small images:
    one matrix product per axis with the banded matrix of :func:`_valid_filter_matrix` (n
    multiply-adds per output instead of k, but BLAS runs them faster than a convolution
    runs its k). Larger ones: two depthwise 1-D convolutions over all maps at once.
    """
    h, w = maps.shape[-2:]
    weights, k = window.weights, window.size
    if window.uniform:
        # Uniform window (scikit-image's 7x7): sliding sums, 2-4x faster than either path
        # below at every size measured (64 to 512 px).
        return box_sum_valid(maps, k) * (weights[0] * weights[0])
    if max(h, w) <= _MATMUL_MAX_SIDE:
        rows = maps @ _valid_filter_matrix(w, weights)
        return (rows.transpose(-1, -2) @ _valid_filter_matrix(h, weights)).transpose(-1, -2)
    flat = maps.reshape(1, -1, h, w)
    groups = flat.shape[1]
    out = F.conv2d(flat, weights.view(1, 1, 1, k).expand(groups, 1, 1, k), groups=groups)
    out = F.conv2d(out, weights.view(1, 1, k, 1).expand(groups, 1, k, 1), groups=groups)
    return out.reshape(maps.shape[:-2] + out.shape[-2:])


def ssim_maps(
    x: torch.Tensor,
    y: torch.Tensor,
    window: Window,
    dynamic_range: float = 1.0,
    sample_covariance: bool = False,
    with_ssim: bool = True,
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """SSIM and contrast-structure maps of ``(N,C,H,W)`` images, both ``(N,C,H-k+1,W-k+1)``.

    ``mu = filter(v)``, ``s_xy = filter(x y) - mu_x mu_y`` (times ``k^2 / (k^2 - 1)`` with
    ``sample_covariance``, as scikit-image does); constants ``C1 = (K1 L)^2``, ``C2 = (K2 L)^2``
    with ``L = dynamic_range``. The five maps are stacked and filtered in one call.
    ``with_ssim=False`` skips the luminance term and returns ``(None, cs_map)`` (MS-SSIM's
    finer scales use only ``cs``).
    """
    # The stacked moments (5, N, C, H, W) are freed as soon as they are filtered.
    mu_x, mu_y, xx, yy, xy = filter_valid(torch.stack((x, y, x * x, y * y, x * y)), window).unbind(0)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    c1, c2 = (K1 * dynamic_range) ** 2, (K2 * dynamic_range) ** 2
    var_sum = (xx - mu_xx) + (yy - mu_yy)
    cov = xy - mu_xy
    if sample_covariance:
        n = window.size ** 2
        var_sum, cov = var_sum * (n / (n - 1.0)), cov * (n / (n - 1.0))
    cs = (2.0 * cov + c2) / (var_sum + c2)
    if not with_ssim:
        return None, cs
    luminance = (2.0 * mu_xy + c1) / (mu_xx + mu_yy + c1)
    return luminance * cs, cs


# ---------------------------------------------------------------- MATLAB pre-processing

def on_8bit_grid(x: torch.Tensor) -> torch.Tensor:
    """``(N,C,H,W)`` in [0, 1] -> ``(N,)`` bool: every value is ``k/255`` for an integer k
    (the image came from an 8-bit file), within float32 rounding.
    """
    scaled = x.detach() * 255.0
    return (scaled - torch.round(scaled)).abs().flatten(1).amax(dim=1) <= 1e-3


def matlab_luminance(x: torch.Tensor, quantize: bool | str = "auto", grid: torch.Tensor | None = None) -> torch.Tensor:
    """``(N,3,H,W)`` RGB in [0, 1] -> ``(N,1,H,W)`` MATLAB ``rgb2gray`` (0.2989 R + 0.5870 G + 0.1140 B).

    MATLAB returns uint8 for uint8 input, i.e. the luma rounded to 1/255 steps, and the
    published SSIM numbers were computed on that. ``quantize``: ``True`` always rounds,
    ``False`` never, ``"auto"`` rounds the images (per image) whose RGB values lie on the
    1/255 grid. The rounding passes gradients straight through (as if it were the identity),
    so a rounded luminance still trains a network. ``grid``: for ``"auto"``, the ``(N,)``
    answer of :func:`on_8bit_grid` for the whole images when ``x`` is a band of their rows.
    """
    grey = rgb_to_grey_matlab(x)
    if quantize is False:
        return grey
    rounded = straight_through(grey, matlab_round(grey * 255.0) / 255.0)
    if quantize is True:
        return rounded
    return torch.where((on_8bit_grid(x) if grid is None else grid).view(-1, 1, 1, 1), rounded, grey)


def matlab_rgb_planes(x: torch.Tensor, downsample: bool) -> torch.Tensor:
    """``(N,C,H,W) -> (N,1,H/f,C*W/f)``: what ssim.m does when handed an ``H x W x 3`` array.

    ``[M N] = size(img)`` then gives ``N = 3W``, so ``f = max(1, round(min(H, 3W) / 256))``;
    ``imfilter`` smooths each plane on its own, and ``img(1:f:end, 1:f:end)`` indexes the
    array as the ``H x 3W`` matrix of its planes side by side (R | G | B); ``filter2`` then
    runs its 2-D window over that matrix, straddling the seams. The TID2013 reference value
    0.7842 (``expected.csv``) was computed that way; per-channel SSIM gives 0.7820 and the
    luminance 0.8799 on the same pair. Kept only to reproduce such numbers.
    """
    n, c, h, w = x.shape
    f = downsample_factor(h, c * w) if downsample else 1
    if f > 1:
        # The full 'same'-size filtered planes: the subsampling phase runs across plane borders.
        x = F.avg_pool2d(pad_symmetric(x, *same_offsets(f)), f, stride=1)
    side_by_side = x.transpose(1, 2).reshape(n, 1, h, c * w)
    return side_by_side[..., ::f, ::f]


# ---------------------------------------------------------------- colour and options

def _resolve_color(metric: str, convention: str, color: str | None) -> str:
    if color is None:
        return "grey" if convention == "matlab" else "rgb"
    if color == "gray":
        color = "grey"
    choices = COLORS + (LUMA_Y, RGB_PLANES) if metric == "ssim" and convention == "matlab" else COLORS
    if color not in choices:
        raise InputError(
            f"{metric}: option color must be one of {', '.join(choices)} with convention {convention!r}, got {color!r}"
        )
    return color


def _resolve_quantize(metric: str, convention: str, quantize, color: str | None = None) -> bool | str:
    """matlab: ``"auto"`` | True | False (rounding of the luminance); lpips: False (values as
    given, = scikit-image) | ``"lpips_code"`` (:func:`lpips_code_8bit`); ``"auto"`` -> ``"lpips_code"``.
    With ``color="y"`` (resolved), ``"auto"`` -> False: the float Y of the Python SR toolboxes
    whatever the input; MATLAB's integer Y only when asked (True)."""
    flag = parse_bool(quantize, ("true", "false"))
    quantize = quantize if flag is None else flag
    choices = QUANTIZE if convention == "matlab" else ("auto", False, LPIPS_CODE)
    if quantize not in choices or isinstance(quantize, (int, float)) and not isinstance(quantize, bool):
        raise InputError(
            f"{metric}: option quantize must be one of {', '.join(map(repr, choices))} with convention "
            f"{convention!r}, got {quantize!r}"
        )
    if color == LUMA_Y and quantize == "auto":
        return False
    # The lpips convention reproduces the paper's evaluation by default, uint8 truncation included.
    return LPIPS_CODE if convention == "lpips" and quantize == "auto" else quantize


def _check_data_range(metric: str, data_range) -> None:
    if isinstance(data_range, bool) or not isinstance(data_range, (int, float)) or not data_range > 0:
        raise InputError(f"{metric}: data_range must be a positive number, got {data_range!r}")


def _representation(x: torch.Tensor, color: str, quantize: bool | str,
                    grid: torch.Tensor | None = None) -> torch.Tensor:
    """``(N,C,H,W)`` in [0, 1] -> the channels SSIM compares, each with dynamic range 1.

    ``grey``: MATLAB luminance (grey input passes through); ``rgb``: unchanged (grey input
    stays one channel); ``lab``: CIE Lab / 100 (grey input repeated to RGB first), so that
    ``L = 1`` here is ``data_range = 100`` on raw Lab, as the LPIPS code used; ``y``: BT.601
    ``Y / 255`` (:func:`~.color.rgb_to_ycbcr_y`; grey input passes through), so that ``L = 1``
    here is BasicSR's 255 on Y in 0..255. ``grid``: see :func:`matlab_luminance`.
    """
    if color == "grey":
        return matlab_luminance(x, quantize, grid) if x.shape[1] == 3 else x
    if color == LUMA_Y:
        return rgb_to_ycbcr_y(x, quantize is True)
    if color == "lab":
        return lab_over_100(x)
    return x


def _window_for(convention: str, dtype: torch.dtype, device: torch.device) -> Window:
    """The convention's window: ssim.m's 11x11 Gaussian (sigma 1.5), or scikit-image's 7x7 box."""
    if convention == "matlab":
        return _gaussian(dtype, device)
    return Window(uniform_window(UNIFORM_SIZE, dtype, device), uniform=True)


def _gaussian(dtype: torch.dtype, device: torch.device) -> Window:
    """ssim.m's and msssim.m's window, ``fspecial('gaussian', 11, 1.5)``."""
    return Window(gaussian_window(GAUSSIAN_SIZE, GAUSSIAN_SIGMA, dtype, device))


def _too_small(metric: str, h: int, w: int, need: int, why: str) -> InputError:
    return InputError(f"{metric}: images of {h}x{w} are smaller than the {need}x{need} {why}")


# ---------------------------------------------------------------- SSIM

def _ssim(x, y, data_range, convention, color, downsample, quantize, shave=0) -> torch.Tensor:
    """SSIM on validated inputs with resolved options; see :func:`ssim`."""
    if color != RGB_PLANES and not budget.wants_grad(x, y):
        banded = _banded_ssim(x, y, data_range, convention, color, downsample, quantize, shave)
        if banded is not None:  # a large image, in row bands (see the module docstring)
            return banded
    x, y = shave_border(x / data_range, shave), shave_border(y / data_range, shave)
    if quantize == LPIPS_CODE:
        x, y = lpips_code_8bit(x), lpips_code_8bit(y)
        quantize = False
    if color == RGB_PLANES:
        x, y = matlab_rgb_planes(x, downsample), matlab_rgb_planes(y, downsample)
        downsample = False  # done, on the planes
    x, y = _representation(x, color, quantize), _representation(y, color, quantize)
    if convention == "matlab" and downsample:
        f = downsample_factor(*x.shape[-2:])
        x, y = box_downsample(x, f, "symmetric"), box_downsample(y, f, "symmetric")
    window = _window_for(convention, x.dtype, x.device)
    h, w = x.shape[-2:]
    if min(h, w) < window.size:
        raise _too_small("ssim", h, w, window.size, f"window of the {convention} convention")
    ssim_map, _ = ssim_maps(x, y, window, sample_covariance=convention == "lpips")
    assert ssim_map is not None  # with_ssim=True
    return ssim_map.mean(dim=(-1, -2)).mean(dim=1)


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 1.0,
    convention: str = "matlab",
    color: str | None = None,
    downsample: bool = True,
    quantize: bool | str = "auto",
    shave: int = 0,
    validate_args: bool = True,
) -> torch.Tensor:
    """Structural similarity ``(N,)`` in [-1, 1] (1 for ``x == y``) of ``(N,C,H,W)`` batches in
    ``[0, data_range]``, C = 1 or 3. Differentiable; device and dtype follow the input
    (two float dtypes: their common one).

    ``convention="matlab"`` (Wang et al.'s ``ssim.m``): ``color`` defaults to ``"grey"``
    (MATLAB ``rgb2gray`` luminance; 8-bit rounded per ``quantize``, see
    :func:`matlab_luminance`); 11x11 Gaussian window (sigma 1.5), population moments, 'valid'
    map; with ``downsample`` first the ``f x f`` box filter and subsampling of
    :func:`~.matlab.box_downsample` with the 'symmetric' border, ``f = max(1, round(min(H, W) / 256))``.

    ``convention="lpips"`` (the LPIPS paper's SSIM baseline = scikit-image's
    ``structural_similarity`` defaults): ``color`` ``"rgb"`` (default) or ``"lab"``; 7x7
    uniform window, sample covariance (``x 49/48``), 'valid' map, mean over channels.
    ``downsample`` does not apply; the default ``quantize="lpips_code"`` reproduces that
    code's float32 round trip through uint8, which truncates (:func:`lpips_code_8bit`), so
    BAPPS scores match the paper's evaluation; ``quantize=False`` compares the values as
    given, exactly as scikit-image does on them.

    ``color`` may also be ``"rgb"``/``"lab"`` under ``matlab`` (per-channel SSIM, then the mean)
    or ``"grey"`` under ``lpips``; ``"rgb_planes"`` (matlab only) reproduces ssim.m handed an
    RGB array (:func:`matlab_rgb_planes`). As a distance use ``(1 - ssim) / 2``
    (:meth:`SSIM.to_distance`).

    The super-resolution convention: ``color="y"`` (matlab only) compares the BT.601 luma
    (:func:`~.color.rgb_to_ycbcr_y`), float unless ``quantize=True`` (MATLAB's integer Y;
    ``"auto"`` means False here), and never downsamples (``downsample`` does not apply, as
    BasicSR and the other SR toolboxes never do). ``shave`` removes that many pixels on every
    side first, whatever the colour.

    ``validate_args=False`` skips the checks that read the input's values (finite, inside
    ``[0, data_range]``: a device sync per call); shapes and types are still checked.
    """
    check_choice("ssim", "convention", convention, CONVENTIONS)
    _check_data_range("ssim", data_range)
    color = _resolve_color("ssim", convention, color)
    quantize = _resolve_quantize("ssim", convention, quantize, color)
    shave = check_shave("ssim", shave)
    if convention == "lpips" or color == LUMA_Y:
        downsample = False
    check_pair(x, y, value_range=(0.0, float(data_range)), min_size=1 + 2 * shave, metric="ssim",
               check_values=validate_args)
    x, y = promote_to_common_dtype(x, y)
    return _ssim(x, y, float(data_range), convention, color, bool(downsample), quantize, shave)


# ---------------------------------------------------------------- MS-SSIM

def ms_ssim_scales(h: int, w: int, max_scales: int = 5) -> int:
    """Number of MS-SSIM scales for an ``h x w`` image: the largest ``M <= max_scales`` with
    ``min(h, w) / 2^(M-1) >= 11`` (msssim.m's own size condition, so the coarsest scale holds
    the 11x11 window); 0 when not even one scale fits. 64x64 BAPPS patches get 3 scales.
    """
    side = min(h, w)
    scales = 0
    while scales < max_scales and side / 2 ** scales >= GAUSSIAN_SIZE:
        scales += 1
    return scales


def ms_ssim_weights(scales: int) -> tuple[float, ...]:
    """Scale weights: Wang 2003's five as published; fewer scales take the first ``scales``
    weights renormalised to sum to 1 (they keep their relative importance)."""
    if scales == len(MSSSIM_WEIGHTS):
        return MSSSIM_WEIGHTS
    head = MSSSIM_WEIGHTS[:scales]
    return tuple(w / sum(head) for w in head)


def _check_scales(scales) -> None:
    if isinstance(scales, bool) or not isinstance(scales, int) or not 1 <= scales <= len(MSSSIM_WEIGHTS):
        raise InputError(f"ms_ssim: option scales must be an integer from 1 to {len(MSSSIM_WEIGHTS)}, got {scales!r}")


def _positive_power(v: torch.Tensor, exponent: float) -> torch.Tensor:
    """``v^exponent`` for ``v > 0`` and 0 elsewhere, with finite gradients (0 where ``v <= 0``).

    msssim.m takes ``mcs.^weight`` as it comes; a negative value gives a complex number there.
    Like pytorch-msssim and piq we count a scale with no positive similarity as 0.
    """
    positive = v > 0
    safe = torch.where(positive, v, torch.ones_like(v))
    return torch.where(positive, safe.pow(exponent), torch.zeros_like(v))


def _ms_ssim(x, y, data_range, color, quantize, scales) -> torch.Tensor:
    """MS-SSIM on validated inputs with resolved options; see :func:`ms_ssim`."""
    if not budget.wants_grad(x, y):
        banded = _banded_ms_ssim(x, y, data_range, color, quantize, scales)
        if banded is not None:  # a large image, in row bands (see the module docstring)
            return banded
    x, y = x / data_range, y / data_range
    x, y = _representation(x, color, quantize), _representation(y, color, quantize)
    h, w = x.shape[-2:]
    levels = ms_ssim_scales(h, w, scales)
    if levels == 0:
        raise _too_small("ms_ssim", h, w, GAUSSIAN_SIZE, "window of MS-SSIM's finest scale")
    weights = ms_ssim_weights(levels)
    window = _gaussian(x.dtype, x.device)
    value: torch.Tensor | None = None
    for level, weight in enumerate(weights):
        if level > 0:
            # msssim.m: imfilter(im, ones(2)/4, 'symmetric', 'same'), then im(1:2:end, 1:2:end).
            x, y = box_downsample(x, 2, "symmetric"), box_downsample(y, 2, "symmetric")
        # 'product' method: mcs^w at scales 1..M-1, ssim^w at the coarsest scale M.
        coarsest = level == levels - 1
        ssim_map, cs_map = ssim_maps(x, y, window, with_ssim=coarsest)
        term_map = cs_map if ssim_map is None else ssim_map  # ssim_map: at the coarsest scale only
        term = _positive_power(term_map.mean(dim=(-1, -2)), weight)  # (N, C)
        value = term if value is None else value * term
    assert value is not None  # levels >= 1
    return value.mean(dim=1)


def ms_ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 1.0,
    convention: str = "matlab",
    color: str = "grey",
    quantize: bool | str = "auto",
    scales: int = 5,
    validate_args: bool = True,
) -> torch.Tensor:
    """Multi-scale SSIM ``(N,)`` in [0, 1] (1 for ``x == y``) of ``(N,C,H,W)`` batches in
    ``[0, data_range]``, as Wang et al.'s ``msssim.m`` computes it ('product' method)::

        MS-SSIM = prod_{j<M} mcs_j^{w_j} * mssim_M^{w_M}

    with ``mcs_j``/``mssim_j`` the means of the cs/SSIM maps (11x11 Gaussian, sigma 1.5,
    'valid', population moments) at scale j; between scales a 2x2 mean filter
    ('symmetric' border) and every second pixel (:func:`~.matlab.box_downsample` with f = 2);
    weights ``w = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)``; no automatic downsampling.

    ``color``: ``"grey"`` (MATLAB luminance, rounding per ``quantize`` as in :func:`ssim`),
    ``"rgb"`` or ``"lab"`` (per-channel MS-SSIM, then the mean over channels).
    Small images use fewer scales (:func:`ms_ssim_scales`, :func:`ms_ssim_weights`): 64x64
    gets 3; below 11x11 is an error. A scale whose mean is <= 0 makes the product 0.
    ``validate_args=False`` skips the value checks, as for :func:`ssim`.
    """
    check_choice("ms_ssim", "convention", convention, ("matlab",))
    _check_data_range("ms_ssim", data_range)
    color = _resolve_color("ms_ssim", convention, color)
    quantize = _resolve_quantize("ms_ssim", convention, quantize)
    _check_scales(scales)
    check_pair(x, y, value_range=(0.0, float(data_range)), min_size=1, metric="ms_ssim",
               check_values=validate_args)
    x, y = promote_to_common_dtype(x, y)
    return _ms_ssim(x, y, float(data_range), color, quantize, scales)


# ---------------------------------------------------------------- large images: row bands

# Temporaries of the unbanded formula (measured roughly; they only decide when to band and how
# many rows a band takes): per input value, the conversions (scaling, 8-bit codes, luminance or
# Lab, the 8-bit grid test); per compared value, the five moment maps, their filtering and the
# terms of the SSIM map.
_PREPARE_TEMPORARIES = {"grey": 6, "rgb": 3, "y": 6, "lab": 30}
_MAP_TEMPORARIES = 32

Prepare = Callable[[torch.Tensor], torch.Tensor]


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


class _Rows:
    """Rows of the pair of images SSIM compares at one scale, made on demand: ``prepare_x`` /
    ``prepare_y`` (per-pixel conversions) of the rows of ``x`` / ``y`` needed, then box-filtered
    and subsampled by ``factor`` exactly as :func:`~.matlab.box_downsample` (``'symmetric'``)
    does on the whole image: output row ``i`` averages rows ``i f - before .. i f + after``,
    mirrored at the borders, and the columns are padded as the whole image's are.

    ``rows(start, stop)`` -> ``(x_rows, y_rows)``; ``height``, ``width``: the whole output's."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, prepare_x: Prepare, prepare_y: Prepare,
                 factor: int = 1) -> None:
        self.x, self.y, self.prepare_x, self.prepare_y, self.factor = x, y, prepare_x, prepare_y, factor
        h, w = x.shape[-2:]
        self.height, self.width = -(-h // factor), -(-w // factor)

    def __call__(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.factor
        if f == 1:
            return self.prepare_x(self.x[..., start:stop, :]), self.prepare_y(self.y[..., start:stop, :])
        before, after = same_offsets(f)
        h, w = self.x.shape[-2:]
        device = self.x.device
        rows = torch.arange(start * f - before, stop * f - before, device=device)
        rows = torch.where(rows < 0, -rows - 1, torch.where(rows >= h, 2 * h - 1 - rows, rows))
        # box_downsample pads the columns on this same condition (else they never reach the border)
        columns = _symmetric_index(w, before, after, device) if before or h % f or w % f else None
        out = []
        for t, prepare in ((self.x, self.prepare_x), (self.y, self.prepare_y)):
            band = prepare(t.index_select(-2, rows))
            if columns is not None:
                band = band.index_select(-1, columns)
            out.append(F.avg_pool2d(band, f, stride=f))
        return out[0], out[1]


def _prepare(data_range: float, color: str, quantize: bool | str, grid: torch.Tensor | None) -> Prepare:
    """The per-pixel conversions of :func:`_ssim` / :func:`_ms_ssim` before any downsampling:
    scaling to [0, 1], the LPIPS code's 8-bit round trip, the representation (``grid``: the
    whole images' 8-bit test, for ``quantize="auto"``)."""
    def prepare(t: torch.Tensor) -> torch.Tensor:
        t, q = t / data_range, quantize
        if q == LPIPS_CODE:
            t, q = lpips_code_8bit(t), False
        return _representation(t, color, q, grid)
    return prepare


def _banded_grid(x: torch.Tensor, data_range: float, rows: int) -> torch.Tensor:
    """:func:`on_8bit_grid` of ``x / data_range``, over bands of ``rows`` rows (a maximum: exact)."""
    worst: torch.Tensor | None = None
    for start, stop in budget.bands(x.shape[-2], rows):
        scaled = (x[..., start:stop, :].detach() / data_range) * 255.0
        part = (scaled - torch.round(scaled)).abs().flatten(1).amax(dim=1)
        worst = part if worst is None else torch.maximum(worst, part)
    assert worst is not None
    return worst <= 1e-3


def _channels_compared(color: str, channels: int) -> int:
    return 1 if color in ("grey", LUMA_Y) else 3 if color == "lab" else channels


def _bytes_per_row(x: torch.Tensor, color: str, factor: int, prepared_width: int, maps: bool = True) -> float:
    """Temporaries per row of the compared (downsampled) image: ``factor`` rows of input
    converted, and the SSIM map's terms on one row (``maps``)."""
    n, c, _, w = x.shape
    size = x.element_size()
    compared = _channels_compared(color, c)
    per_row = factor * n * c * w * size * _PREPARE_TEMPORARIES.get(color, 30)
    if maps:
        per_row += n * compared * prepared_width * size * _MAP_TEMPORARIES
    return per_row


def _grids(x: torch.Tensor, y: torch.Tensor, data_range: float, color: str, quantize: bool | str
           ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The 8-bit test of each whole input, when the luminance's ``"auto"`` rounding needs it."""
    if not (color == "grey" and quantize == "auto" and x.shape[1] == 3):
        return None, None
    rows = budget.band_rows(x.shape[-2], x.shape[0] * x.shape[1] * x.shape[-1] * x.element_size() * 4) or x.shape[-2]
    return _banded_grid(x, data_range, rows), _banded_grid(y, data_range, rows)


def _banded_map_means(rows: _Rows, window: Window, per_band: int, sample_covariance: bool = False,
                      with_ssim: bool = True) -> torch.Tensor:
    """``(N, C)`` means of the SSIM map (``with_ssim``) or of the contrast-structure map of the
    images ``rows`` makes, over bands of ``per_band`` map rows, each made from its rows plus the
    window's halo; the sums accumulate in float64 (:func:`~.budget.accumulator_dtype`)."""
    k = window.size
    height, width = rows.height - k + 1, rows.width - k + 1
    total: torch.Tensor | None = None
    dtype = window.weights.dtype
    for start, stop in budget.bands(height, per_band):
        xb, yb = rows(start, stop + k - 1)
        ssim_map, cs_map = ssim_maps(xb, yb, window, sample_covariance=sample_covariance, with_ssim=with_ssim)
        term = cs_map if ssim_map is None else ssim_map
        part = term.sum(dim=(-1, -2), dtype=budget.accumulator_dtype(term))
        total = part if total is None else total + part
        dtype = term.dtype
    assert total is not None
    return (total / (height * width)).to(dtype)


def _materialize(rows: _Rows, per_band: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole images ``rows`` makes, built ``per_band`` rows at a time (all at once: None)."""
    if per_band is None:
        return rows(0, rows.height)
    outputs: list[torch.Tensor] = []
    for start, stop in budget.bands(rows.height, per_band):
        bands = rows(start, stop)
        if not outputs:
            outputs = [b.new_empty((*b.shape[:-2], rows.height, rows.width)) for b in bands]
        for out, band in zip(outputs, bands):
            out[..., start:stop, :] = band
    return outputs[0], outputs[1]


def _banded_ssim(x, y, data_range, convention, color, downsample, quantize, shave) -> torch.Tensor | None:
    """:func:`_ssim` over row bands, or None when the whole image's temporaries fit the budget."""
    x, y = shave_border(x, shave), shave_border(y, shave)
    h, w = x.shape[-2:]
    factor = downsample_factor(h, w) if convention == "matlab" and downsample else 1
    k = GAUSSIAN_SIZE if convention == "matlab" else UNIFORM_SIZE
    prepared_h, prepared_w = -(-h // factor), -(-w // factor)
    if min(prepared_h, prepared_w) < k:
        return None  # too small for the window: the unbanded path says so
    per_band = budget.band_rows(prepared_h - k + 1, _bytes_per_row(x, color, factor, prepared_w), halo=k - 1)
    if per_band is None:
        return None
    grid_x, grid_y = _grids(x, y, data_range, color, quantize)
    rows = _Rows(x, y, _prepare(data_range, color, quantize, grid_x), _prepare(data_range, color, quantize, grid_y),
                 factor)
    window = _window_for(convention, x.dtype, x.device)
    means = _banded_map_means(rows, window, per_band, sample_covariance=convention == "lpips")
    return means.mean(dim=1)


def _banded_ms_ssim(x, y, data_range, color, quantize, scales) -> torch.Tensor | None:
    """:func:`_ms_ssim` over row bands at every scale, or None when the finest scale's
    temporaries fit the budget."""
    h, w = x.shape[-2:]
    levels = ms_ssim_scales(h, w, scales)
    if levels == 0:
        return None  # the unbanded path says why
    k = GAUSSIAN_SIZE
    if budget.band_rows(h - k + 1, _bytes_per_row(x, color, 1, w), halo=k - 1) is None:
        return None
    grid_x, grid_y = _grids(x, y, data_range, color, quantize)
    # The images of the current scale and the conversions still to apply to them (at the
    # finest scale: the inputs and their representation; then each coarser scale, materialised).
    current = (x, y, _prepare(data_range, color, quantize, grid_x), _prepare(data_range, color, quantize, grid_y))
    window = _gaussian(x.dtype, x.device)
    value: torch.Tensor | None = None
    for level, weight in enumerate(ms_ssim_weights(levels)):
        if level > 0:
            # msssim.m: imfilter(im, ones(2)/4, 'symmetric', 'same'), then im(1:2:end, 1:2:end).
            finer = _Rows(*current, factor=2)
            rows_2x = budget.band_rows(finer.height, _bytes_per_row(current[0], color if level == 1 else "rgb", 2,
                                                                    finer.width, maps=False))
            current = (*_materialize(finer, rows_2x), _identity, _identity)
        rows = _Rows(*current)
        per_band = budget.band_rows(rows.height - k + 1,
                                    _bytes_per_row(current[0], color if level == 0 else "rgb", 1, rows.width),
                                    halo=k - 1) or rows.height - k + 1
        means = _banded_map_means(rows, window, per_band, with_ssim=level == levels - 1)
        term = _positive_power(means, weight)  # (N, C); ssim at the coarsest scale, cs before
        value = term if value is None else value * term
    assert value is not None  # levels >= 1
    return value.mean(dim=1)


# ---------------------------------------------------------------- registry classes

class _StructuralSimilarity(Metric):
    lower_is_better = False
    channels = (1, 3)
    min_size = GAUSSIAN_SIZE

    def to_distance(self, value: torch.Tensor) -> torch.Tensor:
        """DSSIM = ``(1 - value) / 2``, the distance the LPIPS paper (Zhang et al. 2018) uses
        for SSIM; kept for MS-SSIM too. In [0, 1], 0 for identical images."""
        return (1.0 - value) / 2.0


class SSIM(_StructuralSimilarity):
    """Structural similarity (Wang et al. 2004); conventions matlab (default) and lpips (skimage)."""

    name = "ssim"
    symmetric = True
    colour_doc = "RGB or grey (matlab: rgb2gray; lpips: per channel)"
    distance_name = "dssim"

    def __init__(
        self,
        data_range: float = 1.0,
        convention: SSIMConvention = "matlab",
        color: Color | LumaColor | None = None,
        downsample: bool = True,
        quantize: bool | str = "auto",
        shave: int = 0,
        reduction: Reduction = "none",
        validate_args: bool = True,
    ) -> None:
        super().__init__(data_range, reduction, validate_args)
        check_choice(self.name, "convention", convention, CONVENTIONS)
        self.convention = convention
        self.color = _resolve_color(self.name, convention, color)
        # Resolved: downsampling and 8-bit rounding of the luminance exist only in ssim.m; the
        # SR convention (color="y") never downsamples, as the SR toolboxes it follows.
        self.downsample = bool(downsample) and convention == "matlab" and self.color != LUMA_Y
        self.quantize = _resolve_quantize(self.name, convention, quantize, self.color)
        self.shave = check_shave(self.name, shave)
        # The window must fit inside the shaved image; matlab downsampling only ever applies to
        # images of 384+ pixels.
        self.min_size = (GAUSSIAN_SIZE if convention == "matlab" else UNIFORM_SIZE) + 2 * self.shave
        self.options.update(convention=convention, color=self.color, downsample=self.downsample, quantize=self.quantize)
        if self.shave:  # only when set: the default spec keys existing caches
            self.options.update(shave=self.shave)

    def formula(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _ssim(x, y, self.data_range, self.convention, self.color, self.downsample, self.quantize, self.shave)


class MSSSIM(_StructuralSimilarity):
    """Multi-scale SSIM (Wang et al. 2003, msssim.m); fewer scales for small images."""

    name = "ms_ssim"
    symmetric = True
    colour_doc = "RGB or grey (RGB -> MATLAB rgb2gray)"
    distance_name = "ms_dssim"

    def __init__(
        self,
        data_range: float = 1.0,
        convention: MatlabConvention = "matlab",
        color: Color = "grey",
        quantize: bool | str = "auto",
        scales: int = 5,
        reduction: Reduction = "none",
        validate_args: bool = True,
    ) -> None:
        super().__init__(data_range, reduction, validate_args)
        check_choice(self.name, "convention", convention, ("matlab",))
        _check_scales(scales)
        self.color = _resolve_color(self.name, convention, color)
        self.quantize = _resolve_quantize(self.name, convention, quantize)
        self.scales = scales
        self.options.update(convention=convention, color=self.color, quantize=self.quantize, scales=scales)

    def formula(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _ms_ssim(x, y, self.data_range, self.color, self.quantize, self.scales)
