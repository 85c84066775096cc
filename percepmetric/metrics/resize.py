"""MATLAB's ``imresize`` for float images: the resizing of the classic metrics' reference codes
(SR-SIM's and VSI's saliency, IW-SSIM, ...), written once here.

MATLAB (``imresize``, documented algorithm) resizes each axis on its own with a kernel
``k``: Keys' cubic (``a = -0.5``, ``"bicubic"``, the default) or the triangle
(``"bilinear"``). For an axis of ``n_in`` samples resized by ``scale`` to ``n_out``:

* output sample ``i`` (1-based) sits at ``u = i / scale + (1 - 1 / scale) / 2`` in input
  coordinates;
* when shrinking (``scale < 1``) with antialiasing (MATLAB's default) the kernel is stretched,
  ``h(t) = scale * k(scale * t)``, ``width / scale`` wide; otherwise ``h = k``;
* the taps are ``floor(u - width / 2) + (0 .. ceil(width) + 1)``, their weights ``h(u - tap)``
  **divided by their sum** (Octave's image package skips this step, which is why the Octave
  reference runs of these metrics shadow its ``imresize``);
* taps outside ``1 .. n_in`` are mirrored with the edge sample repeated (``a b c | c b a``).

``imresize(A, s)`` gives ``ceil(s * size)`` samples per axis with the scale ``s`` itself (not
``n_out / n_in``); ``imresize(A, [r c])`` uses ``scale = n_out / n_in`` per axis.

Each axis is one dense ``(n_out, n_in)`` matrix, built once per size in float64 (cached) and
applied by a matrix product: batched over any leading dimensions, on any device, and
differentiable. MATLAB resizes the axis of smaller scale first; the two products commute, so
that order changes nothing but float rounding.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import torch

from ..errors import InputError

Kernel = Literal["bicubic", "bilinear"]
KERNELS = ("bicubic", "bilinear")
_WIDTH = {"bicubic": 4.0, "bilinear": 2.0}


def _kernel(t: torch.Tensor, kernel: str) -> torch.Tensor:
    a = t.abs()
    if kernel == "bilinear":
        return (1.0 - a).clamp(min=0.0)
    a2, a3 = a * a, a * a * a
    inner = 1.5 * a3 - 2.5 * a2 + 1.0
    outer = -0.5 * a3 + 2.5 * a2 - 4.0 * a + 2.0
    return torch.where(a <= 1.0, inner, torch.where(a <= 2.0, outer, torch.zeros_like(a)))


@functools.lru_cache(maxsize=64)
def _matrix64(n_in: int, n_out: int, scale: float, kernel: str, antialias: bool, device: torch.device) -> torch.Tensor:
    with torch.inference_mode(False), torch.no_grad():
        f64 = torch.float64
        width = _WIDTH[kernel]
        shrink = antialias and scale < 1.0
        support = width / scale if shrink else width
        u = torch.arange(1, n_out + 1, dtype=f64, device=device) / scale + 0.5 * (1.0 - 1.0 / scale)
        left = torch.floor(u - support / 2.0)
        taps = left[:, None] + torch.arange(math.ceil(support) + 2, dtype=f64, device=device)  # 1-based
        distance = u[:, None] - taps
        weights = scale * _kernel(scale * distance, kernel) if shrink else _kernel(distance, kernel)
        weights = weights / weights.sum(dim=1, keepdim=True)
        # Mirror into 1..n_in with period 2 n_in (MATLAB's aux = [1:n, n:-1:1]).
        period = 2 * n_in
        k = torch.remainder(taps.long() - 1, period)
        index = torch.where(k < n_in, k, period - 1 - k)  # 0-based
        matrix = torch.zeros(n_out, n_in, dtype=f64, device=device)
        matrix.scatter_add_(1, index, weights)
        return matrix


def resize_matrix(n_in: int, n_out: int, scale: float, kernel: Kernel = "bicubic", antialias: bool = True, *,
                  dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> torch.Tensor:
    """The ``(n_out, n_in)`` matrix of MATLAB's ``imresize`` along one axis (see the module doc)."""
    if kernel not in KERNELS:
        raise InputError(f"imresize: kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
    if n_in < 1 or n_out < 1 or not scale > 0:
        raise InputError(f"imresize: cannot resize {n_in} samples to {n_out} (scale {scale})")
    return _matrix64(int(n_in), int(n_out), float(scale), kernel, bool(antialias), torch.device(device)).to(dtype)


def output_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """``imresize(A, scale)``'s output size: ``ceil(scale * size)`` per axis."""
    return math.ceil(scale * height), math.ceil(scale * width)


def imresize(x: torch.Tensor, scale: float | None = None, size: tuple[int, int] | None = None,
             kernel: Kernel = "bicubic", antialias: bool = True) -> torch.Tensor:
    """MATLAB's ``imresize(x, scale)`` or ``imresize(x, [rows cols])`` on the last two axes of a
    float tensor ``(..., H, W)``: give exactly one of ``scale`` or ``size``. Values are not
    rounded or clipped (MATLAB's behaviour for ``double`` input)."""
    if (scale is None) == (size is None):
        raise InputError("imresize: give exactly one of scale and size")
    h, w = x.shape[-2:]
    if scale is not None:
        out_h, out_w = output_size(h, w, scale)
        scale_h = scale_w = float(scale)
    else:
        assert size is not None
        out_h, out_w = int(size[0]), int(size[1])
        scale_h, scale_w = out_h / h, out_w / w
    rows = resize_matrix(h, out_h, scale_h, kernel, antialias, dtype=x.dtype, device=x.device)
    cols = resize_matrix(w, out_w, scale_w, kernel, antialias, dtype=x.dtype, device=x.device)
    # Both orders give the same numbers up to rounding; take the one with fewer multiplications.
    if out_h * h * w + out_h * w * out_w <= h * w * out_w + out_h * h * out_w:
        return (rows @ x) @ cols.T
    return rows @ (x @ cols.T)
