"""Per-pixel metrics: L2 (mean squared error), L1 (mean absolute error) and PSNR.

PSNR also follows the super-resolution convention on request (``color="y"``, ``shave=N``): on
the BT.601 luma Y, with a border removed, as BasicSR's ``calculate_psnr(..., crop_border=N,
test_y_channel=True)`` computes it (see docs/metrics.md, "The super-resolution convention").

Memory: each is a mean of per-pixel values, so on large images (when the unbanded formula's
temporaries would exceed :data:`~.budget.BAND_BUDGET_BYTES`, 1 GiB) the colour conversion and
the differences run over bands of rows, the bands' sums added in float64 (:func:`banded_mean`):
the same numbers to float rounding, with temporaries of one band. Not when autograd records the
call (inputs requiring grad): banding would save nothing there, each band's graph being kept
for the backward pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from ..errors import InputError
from ..options import Color, L2Convention, PSNRColor, Reduction
from . import budget
from .base import Metric, check_choice
from .color import (
    as_rgb,
    grey_matlab,
    lab_over_100,
    linear_to_lab,
    lpips_code_8bit,
    lpips_code_8bit_values,
    rgb_to_ycbcr_y,
    srgb8_to_linear,
)
from .matlab import check_shave, shave_border

COLORS = ("rgb", "grey", "lab")


def to_color_space(x: torch.Tensor, color: str) -> torch.Tensor:
    """``(N,C,H,W)`` in [0, 1] -> the representation a metric compares.

    ``rgb``: unchanged; ``grey``: MATLAB rgb2gray luma (grey input passes through);
    ``lab``: CIE Lab scaled by 1/100 (L in [0, 1]); grey input is repeated to RGB first.
    """
    if color == "rgb":
        return x
    if color == "grey":
        return grey_matlab(x)
    if color == "lab":
        return lab_over_100(x)
    raise InputError(f"color must be one of {', '.join(COLORS)}, got {color!r}")


def mean_squared_error(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(N,C,H,W) x2 -> (N,)``: mean over C, H, W of ``(x - y)^2``."""
    return (x - y).pow(2).flatten(1).mean(dim=1)


# Temporaries of the unbanded formulas, in values of the input per input value (measured
# roughly: they only decide when to band and how many rows a band takes).
_TEMPORARIES = {"rgb": 4, "grey": 6, "y": 6, "lab": 30}


def band_rows_for(x: torch.Tensor, color: str, *others: torch.Tensor) -> int | None:
    """Rows per band for a per-pixel mean over ``x`` (and ``others`` of its shape) in ``color``,
    or None: the image's temporaries fit :data:`~.budget.BAND_BUDGET_BYTES`, or autograd records
    the call (see the module docstring)."""
    if budget.wants_grad(x, *others):
        return None
    n, c, h, w = x.shape
    return budget.band_rows(h, n * c * w * x.element_size() * _TEMPORARIES.get(color, 30))


def banded_mean(values: Callable[..., torch.Tensor], tensors: Sequence[torch.Tensor], rows: int) -> torch.Tensor:
    """Mean over all but the first axis of ``values(*tensors)`` ``(N, ...)`` (``values`` per pixel:
    rows in, the same rows out), computed over bands of ``rows`` rows of the ``(N,C,H,W)``
    ``tensors``; the bands' sums accumulate in float64 (:func:`~.budget.accumulator_dtype`).
    The result has the dtype of ``values``' output."""
    height = tensors[0].shape[-2]
    total: torch.Tensor | None = None
    count, dtype = 0, tensors[0].dtype
    for start, stop in budget.bands(height, rows):
        band = values(*(t[..., start:stop, :] for t in tensors))
        part = band.flatten(1).sum(dim=1, dtype=budget.accumulator_dtype(band))
        total = part if total is None else total + part
        count, dtype = count + band[0].numel(), band.dtype
    assert total is not None
    return (total / count).to(dtype)


# The LPIPS code's L2 baselines differ from the plain MSE by a constant factor: in RGB it
# works on images scaled to [-1, 1] (differences doubled, squares x4); in Lab it takes
# 0.5 * mean(((Lab(x) - Lab(y)) / 100)^2).
_LPIPS_L2_FACTOR = {"rgb": 4.0, "lab": 0.5}


def l2_representation(x: torch.Tensor, data_range: float = 1.0, color: str = "rgb",
                      convention: str = "plain") -> torch.Tensor:
    """What :func:`l2_distance` compares: ``x / data_range`` in the chosen colour space; for the
    ``lpips`` convention in Lab, of the 8-bit image that code derives from its [-1, 1] tensors
    (see :func:`~percepmetric.metrics.color.lpips_code_8bit`)."""
    x = x / data_range
    if convention == "lpips" and color == "lab":
        if x.requires_grad:  # straight-through rounding keeps the loss trainable
            return to_color_space(lpips_code_8bit(x), "lab")
        # Inference on 8-bit codes: a table replaces the per-pixel power function.
        codes = lpips_code_8bit_values(as_rgb(x))
        return linear_to_lab(srgb8_to_linear(codes, x.dtype)) / 100.0
    return to_color_space(x, color)


def l2_distance(
    x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, color: str = "rgb", convention: str = "plain"
) -> torch.Tensor:
    """L2 distance ``(N,)`` of two batches in ``[0, data_range]``.

    ``convention="plain"``: ``mean((f(x) - f(y))^2)`` with ``f`` the colour representation of
    :func:`to_color_space` applied to ``x / data_range``.

    ``convention="lpips"``: the LPIPS code's L2 baseline (Zhang et al. 2018): in ``rgb`` the
    mean squared difference of the images scaled to [-1, 1] (4x the plain value); in ``lab``
    ``0.5 * mean(((Lab(x) - Lab(y)) / 100)^2)`` with Lab computed from the 8-bit image that
    code derives from its [-1, 1] tensors (see :func:`l2_representation`).
    """
    if convention == "lpips" and color not in _LPIPS_L2_FACTOR:
        raise InputError(f"l2: convention 'lpips' takes color 'rgb' or 'lab', got {color!r}")
    factor = _LPIPS_L2_FACTOR[color] if convention == "lpips" else 1.0

    def squared_errors(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ra, rb = (l2_representation(t, data_range, color, convention) for t in (a, b))
        return (ra - rb).pow(2)

    rows = band_rows_for(x, color, y)
    if rows is not None:  # a large image: in row bands (see the module docstring)
        return factor * banded_mean(squared_errors, (x, y), rows)
    return factor * squared_errors(x, y).flatten(1).mean(dim=1)


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio ``10 log10(data_range^2 / MSE)`` in dB, per image ``(N,)``.

    Same value as ``skimage.metrics.peak_signal_noise_ratio(y, x, data_range=data_range)``;
    ``+inf`` for identical images, with a zero (finite) gradient there.
    """
    rows = band_rows_for(x, "rgb", y)
    if rows is not None:  # a large image: in row bands (see the module docstring)
        return psnr_from_mse(banded_mean(lambda a, b: (a - b).pow(2), (x, y), rows), data_range)
    return psnr_from_mse(mean_squared_error(x, y), data_range)


def psnr_from_mse(mse: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """``10 log10(data_range^2 / mse)``, ``+inf`` where ``mse`` is 0 (with a zero gradient there)."""
    finite = 10.0 * (2.0 * math.log10(data_range) - torch.log10(mse.clamp(min=torch.finfo(mse.dtype).tiny)))
    return torch.where(mse > 0, finite, torch.full_like(finite, math.inf))


class L2(Metric):
    """Mean squared error in RGB, grey or Lab; conventions plain or lpips (the LPIPS code's L2)."""

    name = "l2"
    symmetric = True
    colour_doc = "RGB or grey (compared in RGB, grey or Lab: option color)"
    lower_is_better = True

    def __init__(self, data_range: float = 1.0, color: Color = "rgb", convention: L2Convention = "plain",
                 reduction: Reduction = "none", validate_args: bool = True) -> None:
        super().__init__(data_range, reduction, validate_args)
        check_choice(self.name, "color", color, COLORS)
        check_choice(self.name, "convention", convention, ("plain", "lpips"))
        if convention == "lpips" and color == "grey":
            raise InputError("l2: convention 'lpips' takes color 'rgb' or 'lab', got 'grey'")
        self.color, self.convention = color, convention
        self.options.update(color=color, convention=convention)

    def formula(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return l2_distance(x, y, self.data_range, self.color, self.convention)

    @property
    def convention_factor(self) -> float:
        """The constant factor of the convention over the mean squared error (see :func:`l2_distance`)."""
        return _LPIPS_L2_FACTOR[self.color] if self.convention == "lpips" else 1.0

    def compute_triplet(self, ref: torch.Tensor, p0: torch.Tensor,
                        p1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if band_rows_for(ref, self.color, p0, p1) is not None:  # large images: each pair in row bands
            return self.formula(ref, p0), self.formula(ref, p1)
        # The reference's colour conversion is shared by both pairs.
        r, a, b = (l2_representation(t, self.data_range, self.color, self.convention) for t in (ref, p0, p1))
        return self.convention_factor * mean_squared_error(r, a), self.convention_factor * mean_squared_error(r, b)


class L1(Metric):
    """Mean absolute error mean(|f(x) - f(y)|) in RGB, grey or Lab (f as for l2, plain convention)."""

    name = "l1"
    symmetric = True
    colour_doc = "RGB or grey (compared in RGB, grey or Lab: option color)"
    lower_is_better = True

    def __init__(self, data_range: float = 1.0, color: Color = "rgb", reduction: Reduction = "none",
                 validate_args: bool = True) -> None:
        super().__init__(data_range, reduction, validate_args)
        check_choice(self.name, "color", color, COLORS)
        self.color = color
        self.options.update(color=color)

    def formula(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        def absolute_errors(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            ra, rb = (to_color_space(t / self.data_range, self.color) for t in (a, b))
            # |.| has slope 0 at 0 in torch (sign(0) = 0): finite gradients at x == y.
            return (ra - rb).abs()

        rows = band_rows_for(x, self.color, y)
        if rows is not None:  # a large image: in row bands (see the module docstring)
            return banded_mean(absolute_errors, (x, y), rows)
        return absolute_errors(x, y).flatten(1).mean(dim=1)


class PSNR(Metric):
    """Peak signal-to-noise ratio in dB; distance = MSE / data_range^2.

    ``color="rgb"`` (default): over all channels as given. ``color="y"``: on the BT.601 luma
    ``Y`` of :func:`~.color.rgb_to_ycbcr_y` (float; MATLAB's integer Y with ``quantize=True``),
    peak 255 on Y's 0..255 scale, as the super-resolution literature reports it.
    ``shave``: pixels removed on every side first (0 by default).
    """

    name = "psnr"
    symmetric = True
    lower_is_better = False
    unit = "dB"
    distance_name = "mse"  # MSE of the images scaled to [0, 1]: not PSNR, so never labelled "psnr"

    def __init__(self, data_range: float = 1.0, color: PSNRColor = "rgb", shave: int = 0, quantize: bool = False,
                 reduction: Reduction = "none", validate_args: bool = True) -> None:
        super().__init__(data_range, reduction, validate_args)
        check_choice(self.name, "color", color, ("rgb", "y"))
        self.color, self.shave = color, check_shave(self.name, shave)
        if not isinstance(quantize, bool):
            raise InputError(f"{self.name}: option quantize must be True or False, got {quantize!r}")
        if quantize and color != "y":
            raise InputError(f"{self.name}: quantize=True rounds the luma of color='y'; with color {color!r} "
                             "there is nothing to round")
        self.quantize = quantize
        self.min_size = 1 + 2 * self.shave
        # Only non-default values enter the identity: the default spec keys existing caches.
        if color != "rgb":
            self.options.update(color=color, quantize=quantize)
        if self.shave:
            self.options.update(shave=self.shave)

    def formula(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.shave:
            x, y = shave_border(x, self.shave), shave_border(y, self.shave)
        if self.color == "y":
            rows = band_rows_for(x, "y", y)
            if rows is not None:  # a large image: in row bands (see the module docstring)
                return psnr_from_mse(banded_mean(self._luma_squared_errors, (x, y), rows), 1.0)
            return psnr_from_mse(self._luma_squared_errors(x, y).flatten(1).mean(dim=1), 1.0)
        return psnr(x, y, self.data_range)

    def _luma_squared_errors(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        rx, ry = (rgb_to_ycbcr_y(t / self.data_range, self.quantize) for t in (x, y))
        return (rx - ry).pow(2)

    def to_distance(self, value: torch.Tensor) -> torch.Tensor:
        # 10^(-PSNR/10) = MSE / data_range^2: monotone in PSNR and 0 for identical images.
        return torch.pow(10.0, -value / 10.0)
