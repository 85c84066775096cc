"""Compiled CPU kernels for the benchmark's 8-bit path (numba; optional).

Torch runs a formula as a chain of whole-array steps: for SSIM's window sums that is a dozen
passes over maps that do not fit in the CPU cache, and memory traffic, not arithmetic, sets
the pace. A loop compiled with numba makes one pass per image with its running sums in
registers and cache: 3x faster than the torch version on the benchmark (64x64 triplets).

:data:`AVAILABLE` tells whether numba is installed; without it :mod:`.eight_bit` uses its torch
paths, which give the same numbers (tests/test_eight_bit.py compares them). Kernels are
compiled on first use and cached next to this file (a few seconds, once per install);
they release the GIL, so the benchmark runs batches in several threads
(``percepmetric.bench.runner``).
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable

import numpy as np

# Imported on first use (importing numba takes about half a second: not on every CLI start).
AVAILABLE = importlib.util.find_spec("numba") is not None


def _box_ssim(ref, p0, p1, table, k, c1, c2, out):  # pragma: no cover - runs compiled
    """SSIM of ``ref`` against ``p0`` and ``p1`` (``eight_bit.box_ssim_8bit`` gives the formula).

    uint8 ``(N,H,W,C)`` images; ``table`` int64 ``(256,)`` code -> value; ``out`` float64
    ``(2,N)``. Per image and channel, the eight maps r, r^2, a, a^2, r a, b, b^2, r b (a = p0,
    b = p1) are summed along x by running sums (into ``rows``), then down y, which gives each
    window's sums and its two SSIM terms at once. The sums are exact integers (int64); only
    the final ratios are floating point (float64). Eight named scalars rather than an array
    of sums: the compiler keeps them in registers.
    """
    n, h, w, ch = ref.shape
    oh, ow, m = h - k + 1, w - k + 1, k * k
    rows = np.empty((8, h, ow), np.int64)
    for i in range(n):
        total0 = 0.0
        total1 = 0.0
        for c in range(ch):
            for y in range(h):
                sr = srr = sa = saa = sra = sb = sbb = srb = 0
                for x in range(w):
                    r, a, b = table[ref[i, y, x, c]], table[p0[i, y, x, c]], table[p1[i, y, x, c]]
                    sr += r
                    srr += r * r
                    sa += a
                    saa += a * a
                    sra += r * a
                    sb += b
                    sbb += b * b
                    srb += r * b
                    if x >= k:  # the pixel leaving the window
                        r, a, b = table[ref[i, y, x - k, c]], table[p0[i, y, x - k, c]], table[p1[i, y, x - k, c]]
                        sr -= r
                        srr -= r * r
                        sa -= a
                        saa -= a * a
                        sra -= r * a
                        sb -= b
                        sbb -= b * b
                        srb -= r * b
                    if x >= k - 1:
                        j = x - k + 1
                        rows[0, y, j] = sr
                        rows[1, y, j] = srr
                        rows[2, y, j] = sa
                        rows[3, y, j] = saa
                        rows[4, y, j] = sra
                        rows[5, y, j] = sb
                        rows[6, y, j] = sbb
                        rows[7, y, j] = srb
            for x in range(ow):
                sr = srr = sa = saa = sra = sb = sbb = srb = 0
                for y in range(h):
                    sr += rows[0, y, x]
                    srr += rows[1, y, x]
                    sa += rows[2, y, x]
                    saa += rows[3, y, x]
                    sra += rows[4, y, x]
                    sb += rows[5, y, x]
                    sbb += rows[6, y, x]
                    srb += rows[7, y, x]
                    if y >= k:
                        sr -= rows[0, y - k, x]
                        srr -= rows[1, y - k, x]
                        sa -= rows[2, y - k, x]
                        saa -= rows[3, y - k, x]
                        sra -= rows[4, y - k, x]
                        sb -= rows[5, y - k, x]
                        sbb -= rows[6, y - k, x]
                        srb -= rows[7, y - k, x]
                    if y >= k - 1:
                        spread_r = m * srr - sr * sr
                        cross = sr * sa
                        total0 += ((2.0 * cross + c1) / (sr * sr + sa * sa + c1)
                                   * (2.0 * (m * sra - cross) + c2) / (spread_r + m * saa - sa * sa + c2))
                        cross = sr * sb
                        total1 += ((2.0 * cross + c1) / (sr * sr + sb * sb + c1)
                                   * (2.0 * (m * srb - cross) + c2) / (spread_r + m * sbb - sb * sb + c2))
        out[0, i] = total0 / (oh * ow * ch)
        out[1, i] = total1 / (oh * ow * ch)


_compiled: dict[str, Callable[..., None]] = {}  # name -> numba-compiled kernel
_compiling = threading.Lock()  # the benchmark's worker threads may all ask at once


def box_ssim(ref: np.ndarray, p0: np.ndarray, p1: np.ndarray, table: np.ndarray, k: int, c1: float,
             c2: float) -> np.ndarray:
    """Run the compiled :func:`_box_ssim`; float64 ``(2, N)``. Needs :data:`AVAILABLE`."""
    with _compiling:
        if "box_ssim" not in _compiled:
            import numba

            _compiled["box_ssim"] = numba.njit(nogil=True, cache=True)(_box_ssim)
    out = np.empty((2, ref.shape[0]), np.float64)
    _compiled["box_ssim"](ref, p0, p1, table, k, float(c1), float(c2), out)
    return out
