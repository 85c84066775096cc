"""Metrics on 8-bit images as decoded (uint8, channels last): the benchmark's input.

The benchmark keeps image files as their uint8 codes until a metric runs. These functions give
any metric's values for such batches, with the numbers ``forward`` gives on the same images as
floats (``from_8bit``), to float rounding:

:func:`values_8bit`          ``(N,)`` for a pair of batches (JND)
:func:`triplet_values_8bit`  ``(value(ref, p0), value(ref, p1))`` (2AFC)

Most metrics are simply handed :func:`from_8bit` of the codes. Two formulas run faster on the
codes themselves, and get an integer path here, beside the metrics rather than inside them:

* L2 in RGB or Lab: each code goes through a 256-entry table (:func:`code_table`) instead of
  per-pixel conversions (in Lab, instead of a power function per pixel); the reference's
  conversion is shared by both pairs of a triplet.
* SSIM's lpips convention on RGB or grey: exact integer window sums (:func:`box_ssim_8bit`), by
  the compiled loop of :mod:`.kernels` when numba is installed, else in torch.

Those paths are taken for the registry's own classes only: a subclass may change the formula,
so it is handed floats like any other metric.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch

from . import kernels
from .base import Metric, check_8bit_pair
from .color import (
    linear_to_lab,
    look_up,
    lpips_code_8bit_values,
    srgb8_to_linear,
    srgb_to_linear,
)
from .pixel import L2
from .ssim import K1, K2, LPIPS_CODE, SSIM, UNIFORM_SIZE, box_sum_valid


def from_8bit(metric: Metric, codes: torch.Tensor) -> torch.Tensor:
    """uint8 ``(N,H,W,C)`` -> float32 ``(N,C,H,W)`` in the metric's ``value_range`` (``code / 255``
    mapped linearly), with channels-last strides (no copy to change the layout)."""
    from ..io import to_value_range

    return to_value_range(codes.permute(0, 3, 1, 2).float().div_(255.0), metric.value_range)


def values_8bit(metric: Metric, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The metric's values ``(N,)`` for uint8 batches ``(N,H,W,C)`` (channels last, as image
    files decode), where 0..255 spans the metric's ``value_range``: the numbers of
    ``metric(from_8bit(metric, x), from_8bit(metric, y))``, to float rounding. No gradient."""
    check_8bit_pair(x, y, channels=metric.channels, min_size=metric.min_size, metric=metric.name)
    with torch.inference_mode():
        integer_path = _integer_path(metric)
        if integer_path is not None:
            return integer_path(metric, x, (y,))[0]
        return metric.formula(from_8bit(metric, x), from_8bit(metric, y))


def triplet_values_8bit(
    metric: Metric, ref: torch.Tensor, p0: torch.Tensor, p1: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``metric.triplet_values`` for uint8 batches ``(N,H,W,C)``, as :func:`values_8bit`."""
    check_8bit_pair(ref, p0, channels=metric.channels, min_size=metric.min_size, metric=metric.name)
    check_8bit_pair(ref, p1, channels=metric.channels, min_size=metric.min_size, metric=metric.name)
    with torch.inference_mode():
        integer_path = _integer_path(metric)
        if integer_path is not None:
            values = integer_path(metric, ref, (p0, p1))
            return values[0], values[1]
        return metric.compute_triplet(*(from_8bit(metric, t) for t in (ref, p0, p1)))


# An integer path: (metric, ref, others) -> (len(others), N), the metric's value of ref against each.
IntegerPath = Callable[[Metric, torch.Tensor, tuple[torch.Tensor, ...]], torch.Tensor]


def _integer_path(metric: Metric) -> IntegerPath | None:
    """The integer path of this metric with its options, or None (it is handed floats)."""
    if type(metric) is L2 and metric.color != "grey":
        return _l2_8bit
    if type(metric) is SSIM and metric.convention == "lpips" and metric.color == "rgb":
        return _ssim_8bit
    return None


# ---------------------------------------------------------------- code tables

CODE_TABLES = ("value", "linear", "lpips_linear", "code", "lpips_code")


@functools.cache
def code_table(kind: str, device: torch.device) -> torch.Tensor:
    """A ``(256,)`` table indexed by 8-bit code, made once per device, computed by the float
    path's own functions (so a look-up gives exactly the number that path computes per pixel):

    ``value``          ``code / 255`` (float32)
    ``linear``         :func:`~.color.srgb_to_linear` of it (float32)
    ``lpips_linear``   the same after :func:`~.color.lpips_code_8bit`'s truncation (float32)
    ``code``           the code itself (int32)
    ``lpips_code``     the code after that truncation (int32)
    """
    with torch.inference_mode(False):  # usable in and out of inference mode
        x = torch.arange(256, dtype=torch.float32, device=device) / 255.0
        tables = {
            "value": lambda: x,
            "linear": lambda: srgb_to_linear(x),
            "lpips_linear": lambda: srgb8_to_linear(lpips_code_8bit_values(x), torch.float32),
            "code": lambda: torch.arange(256, dtype=torch.int32, device=device),
            "lpips_code": lambda: lpips_code_8bit_values(x).to(torch.int32),
        }
        return tables[kind]()


# ---------------------------------------------------------------- L2

def l2_code_table(color: str, convention: str, device: torch.device) -> torch.Tensor:
    """What ``pixel.l2_representation`` makes of each 8-bit code before any colour mixing (a
    :func:`code_table`): ``code / 255`` in ``rgb``, its linear-light value in ``lab`` (after
    the lpips convention's truncation)."""
    if color == "rgb":
        return code_table("value", device)
    return code_table("lpips_linear" if convention == "lpips" else "linear", device)


def l2_representation_8bit(codes: torch.Tensor, table: torch.Tensor, color: str) -> torch.Tensor:
    """uint8 ``(N,H,W,C)`` -> float32 channel planes ``(C', N, H, W)``: ``pixel.l2_representation``
    of ``codes / 255``, by one table look-up per value (then the Lab mixing, in ``lab``)."""
    if color == "lab" and codes.shape[-1] == 1:
        codes = codes.expand(-1, -1, -1, 3)
    values = look_up(table, codes.permute(3, 0, 1, 2))
    return linear_to_lab(values, dim=0) / 100.0 if color == "lab" else values


def _l2_8bit(metric: Metric, ref: torch.Tensor, others: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """``factor * mean((rep(ref) - rep(other))^2)`` for each of ``others``: all images of the
    batch go through the table in one call, the reference's conversion shared."""
    assert isinstance(metric, L2)
    n = ref.shape[0]
    table = l2_code_table(metric.color, metric.convention, ref.device)
    rep = l2_representation_8bit(torch.cat((ref,) + others), table, metric.color)
    rep = rep.reshape(rep.shape[0], -1, n, rep[0, 0].numel())  # (channel, image group, n, pixels)
    diff = rep[:, 1:] - rep[:, :1]
    return metric.convention_factor * diff.square_().mean(dim=(0, 3))


# ---------------------------------------------------------------- SSIM, lpips convention

def _window_constants(k: int) -> tuple[int, float, float]:
    """``m = k^2`` and the constants of the integer form: ``m^2 C1``, ``m (m-1) C2`` (codes: L = 255)."""
    m = k * k
    return m, (K1 * 255.0) ** 2 * m * m, (K2 * 255.0) ** 2 * m * (m - 1)


def box_ssim_8bit(ref: torch.Tensor, others: tuple[torch.Tensor, ...], table: torch.Tensor,
                  k: int = UNIFORM_SIZE) -> torch.Tensor:
    """SSIM of the lpips convention (k x k uniform window, sample covariance, 'valid' map,
    mean over channels) of ``ref`` against each of ``others``: float32 ``(len(others), N)``.

    Inputs are uint8 ``(N,H,W,C)``; ``table`` (int32 ``(256,)``) maps each code to the
    integer value compared (the lpips convention's truncation, or the code itself). With the
    window sums ``S`` over ``m = k^2`` pixels, ``ssim.ssim_maps`` is the product of
    ``(2 Sx Sy + m^2 C1) / (Sx^2 + Sy^2 + m^2 C1)`` and
    ``(2 (m Sxy - Sx Sy) + m (m-1) C2) / (m Sxx - Sx^2 + m Syy - Sy^2 + m (m-1) C2)``,
    ``C = (K 255)^2``. Every sum, product and difference there is an integer below 2^31
    (``m Sxx <= 49^2 255^2``), computed exactly in int32; only the two ratios are rounded
    (float32, relative error ~1e-7). The variance differences, which cancel badly in
    floating point, are therefore exact, and the whole path is 7x cheaper than float64.
    """
    g = 1 + len(others)
    m, c1, c2 = _window_constants(k)
    codes = torch.stack((ref,) + others).permute(0, 1, 4, 2, 3)  # (g, n, C, H, W) view
    # The maps to sum, written into one buffer: values, their squares, ref x each other.
    maps = torch.empty((3 * g - 1,) + codes.shape[1:], dtype=table.dtype, device=codes.device)
    v = look_up(table, codes, out=maps[:g])
    torch.mul(v, v, out=maps[g:2 * g])
    torch.mul(v[:1], v[1:], out=maps[2 * g:])
    sums = box_sum_valid(maps, k)
    s, ss, s_ref = sums[:g], sums[g:2 * g], sums[2 * g:]
    squares = s * s
    cross = s[:1] * s[1:]
    spread = ss.mul_(m).sub_(squares)  # m^2 x (population variance), in place: exact int32
    covariance = s_ref.mul_(m).sub_(cross)  # m^2 x covariance
    # int32 (op) float scalar gives float32 in one pass: the exact integers are rounded once here.
    ratio = (cross * 2.0).add_(c1).div_((squares[:1] + squares[1:]) + c1)
    ratio.mul_((covariance * 2.0).add_(c2)).div_((spread[:1] + spread[1:]) + c2)
    return ratio.mean(dim=(-1, -2)).mean(dim=-1)


def _ssim_8bit(metric: Metric, ref: torch.Tensor, others: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """:func:`box_ssim_8bit` with the metric's code table; by the compiled loop of :mod:`.kernels`
    on CPU when numba is installed (it takes exactly two others: a pair repeats its second image,
    and the unused half is dropped)."""
    assert isinstance(metric, SSIM)
    table = code_table("lpips_code" if metric.quantize == LPIPS_CODE else "code", ref.device)
    if not (kernels.AVAILABLE and ref.device.type == "cpu"):
        return box_ssim_8bit(ref, others, table)
    p0, p1 = others if len(others) == 2 else (others[0], others[0])
    _, c1, c2 = _window_constants(UNIFORM_SIZE)
    values = kernels.box_ssim(ref.numpy(), p0.numpy(), p1.numpy(), table.numpy().astype(np.int64),
                              UNIFORM_SIZE, c1, c2)
    return torch.from_numpy(values[:len(others)]).float()
