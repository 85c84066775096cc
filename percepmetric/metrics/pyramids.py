"""matlabPyrTools' pyramids in torch, batched over ``(..., H, W)``: the Laplacian pyramid of
``buildLpyr`` (IW-SSIM) and the complex steerable pyramid of ``buildSCFpyr`` (CW-SSIM).

matlabPyrTools: E. P. Simoncelli's toolbox, github.com/LabForComputationalVision/matlabPyrTools.

Laplacian pyramid (``buildLpyr(im, ht)`` with its defaults ``filt1 = filt2 = 'binom5'`` and
``edges = 'reflect1'``):

* ``binom5`` is ``sqrt(2) * [1 4 6 4 1] / 16`` (``namedFilter.m``: ``sqrt(2) *
  binomialFilter(5)``): each 2-D reduce multiplies the mean level by 2.
* ``corrDn(im, f, 'reflect1', step 2, start 1)`` along an axis is a correlation with ``f`` over
  the image mirrored about its edge samples (``d c b | a b c d | c b a``: torch's ``'reflect'``
  padding), keeping samples 1, 3, 5, ... (``ceil(n / 2)`` of ``n``).
* ``upConv(lo, f, 'reflect1', step 2, start 1, n)`` along an axis puts ``lo`` at samples 1, 3,
  5, ... of ``n`` zeros and correlates that with ``f`` over the same mirrored extension.

Both were checked against the toolbox's compiled MEX files under Octave on impulses for
``n = 9 .. 13`` (odd and even lengths): equal to the printed precision (4e-10). Each level
reduces columns then rows (``corrDn(im, f')`` then ``corrDn(lo, f)``) and expands rows then
columns; the band is ``im - expand(reduce(im))`` and the last level the low-pass residual.
"""

from __future__ import annotations

import math

import torch

from .base import cached_table

#: ``binom5``: ``sqrt(2) * binomialFilter(5)`` (matlabPyrTools ``namedFilter.m``).
BINOM5 = tuple(math.sqrt(2.0) * c / 16.0 for c in (1.0, 4.0, 6.0, 4.0, 1.0))


def _taps(x: torch.Tensor, dim: int, start: int, length: int, step: int) -> torch.Tensor:
    """``x`` along ``dim`` (-1 or -2): samples ``start, start + step, ...`` (``length`` of them)."""
    end = start + step * (length - 1) + 1
    return x[..., start:end:step] if dim == -1 else x[..., start:end:step, :]


def _correlate5(p: torch.Tensor, n_out: int, dim: int, step: int) -> torch.Tensor:
    """Correlation of the (already mirrored by 2) ``p`` with the symmetric :data:`BINOM5` along
    ``dim``, at outputs ``0, step, 2 step, ...`` (``n_out`` of them): weighted sums of strided
    slices (5 multiply-adds per output; float64 convolutions have no fast path on CPU)."""
    f0, f1, f2 = BINOM5[0], BINOM5[1], BINOM5[2]
    out = _taps(p, dim, 2, n_out, step) * f2
    out = out + (_taps(p, dim, 1, n_out, step) + _taps(p, dim, 3, n_out, step)) * f1
    return out + (_taps(p, dim, 0, n_out, step) + _taps(p, dim, 4, n_out, step)) * f0


def _mirror2(x: torch.Tensor, dim: int) -> torch.Tensor:
    """'reflect1' extension by 2 samples each side along ``dim`` (``c b | a b c ... | ... z y x``)."""
    if dim == -1:
        return torch.cat((x[..., 1:3].flip(-1), x, x[..., -3:-1].flip(-1)), dim=-1)
    return torch.cat((x[..., 1:3, :].flip(-2), x, x[..., -3:-1, :].flip(-2)), dim=-2)


def _reduce_axis(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``corrDn(x, binom5, 'reflect1', step 2, start 1)`` along ``dim``: n -> ceil(n/2)."""
    n = x.shape[dim]
    return _correlate5(_mirror2(x, dim), (n + 1) // 2, dim, 2)


def _expand_axis(lo: torch.Tensor, n: int, dim: int) -> torch.Tensor:
    """``upConv(lo, binom5, 'reflect1', step 2, start 1, n)`` along ``dim``: ceil(n/2) -> n."""
    shape = list(lo.shape)
    shape[dim] = n
    up = lo.new_zeros(shape)
    if dim == -1:
        up[..., ::2] = lo
    else:
        up[..., ::2, :] = lo
    return _correlate5(_mirror2(up, dim), n, dim, 1)


@cached_table(64)
def _reduce_matrix64(n: int, device: torch.device) -> torch.Tensor:
    """``(ceil(n/2), n)``: :func:`_reduce_axis` as a matrix (applied to the identity)."""
    return _reduce_axis(torch.eye(n, dtype=torch.float64, device=device), -2)


@cached_table(64)
def _expand_matrix64(n: int, device: torch.device) -> torch.Tensor:
    """``(n, ceil(n/2))``: :func:`_expand_axis` as a matrix (applied to the identity)."""
    return _expand_axis(torch.eye((n + 1) // 2, dtype=torch.float64, device=device), n, -2)


def reduce2(x: torch.Tensor) -> torch.Tensor:
    """``(..., H, W) -> (..., ceil(H/2), ceil(W/2))``: ``corrDn`` along the columns and the rows,
    as two matrix products (each axis' operator is a small dense matrix, built once per size:
    BLAS runs it faster than strided slices run the 5 taps)."""
    h, w = x.shape[-2:]
    rows = _reduce_matrix64(h, x.device).to(x.dtype)
    cols = _reduce_matrix64(w, x.device).to(x.dtype)
    return rows @ (x @ cols.T)


def expand2(lo: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``(..., ceil(h/2), ceil(w/2)) -> (..., h, w)``: ``upConv`` along the rows and the columns."""
    rows = _expand_matrix64(h, lo.device).to(lo.dtype)
    cols = _expand_matrix64(w, lo.device).to(lo.dtype)
    return (rows @ lo) @ cols.T


def laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """``buildLpyr(x, levels)`` of ``(B, H, W)`` images: ``levels - 1`` band-pass images, finest
    first, then the low-pass residual (sizes ``ceil`` halves). Needs every level but the last
    to have H and W >= 3 (the mirror by 2)."""
    bands = []
    for _ in range(levels - 1):
        lo = reduce2(x)
        bands.append(x - expand2(lo, x.shape[-2], x.shape[-1]))
        x = lo
    bands.append(x)
    return bands


# ---------------------------------------------------------------- complex steerable pyramid (buildSCFpyr)
#
# buildSCFpyr(im, ht, order) works on the centred DFT (fftshift(fft2(im))). With
# ctr = ceil((dims + 0.5) / 2) (1-based), xramp = (j - ctr2) / (W / 2), yramp likewise:
# angle = atan2(yramp, xramp), log_rad = log2(sqrt(xramp^2 + yramp^2)) with the centre's radius
# replaced by its left neighbour's. Radial masks are lookups with linear interpolation
# (pointOp, MEX pointOp.c: index = trunc((v - origin) / step) clipped to [0, n - 2], the end
# segments extended) in the raised-cosine table of rcosFn(1, -1/2, [0 1]) (259 samples,
# Yrcos = sqrt(cos^2), YIrcos = sqrt(1 - Yrcos^2)). lo0 = imdft * lo0mask(YIrcos); each level
# shifts the table's origin by -1 octave; a level's oriented bands are
# ifft2(ifftshift((-i)^(N-1) lodft anglemask_b himask)), anglemask_b the lookup of
# 2 sqrt(c) cos(x)^(N-1) (one lobe, |x| < pi/2 mod 2 pi) on the angle shifted by pi b / N
# (table of 3075 samples, lutsize 1024, c = 2^(2(N-1)) ((N-1)!)^2 / (N (2(N-1))!)); the next
# level keeps the central ceil((dims - 0.5) / 2) frequencies times lomask(YIrcos).
# Every step is a mask or a central crop of the one spectrum, so a level's bands are the
# spectrum's central crop times one precomputed mask per orientation (built once per size, in
# float64, and cached).

RCOS_SIZE = 256  # rcosFn.m: sz = 256
ANGLE_LUT = 1024  # buildSCFpyrLevs.m: lutsize = 1024


def point_op(v: torch.Tensor, lut: torch.Tensor, origin: float, step: float) -> torch.Tensor:
    """matlabPyrTools' ``pointOp(v, lut, origin, step)`` (MEX pointOp.c): linear interpolation."""
    pos = (v - origin) / step
    idx = torch.trunc(pos).clamp(0, lut.numel() - 2)
    i = idx.long()
    return lut[i] + (lut[i + 1] - lut[i]) * (pos - idx)


def _rcos_table(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``[X, Y] = rcosFn(1, -1/2, [0 1])``: X (259,), Y = cos(.)^2 with flat ends."""
    x = math.pi * torch.arange(-RCOS_SIZE - 1, 2, dtype=torch.float64, device=device) / (2 * RCOS_SIZE)
    y = torch.cos(x) ** 2
    y[0] = y[1]
    y[RCOS_SIZE + 2] = y[RCOS_SIZE + 1]
    x = -0.5 + (2.0 / math.pi) * (x + math.pi / 4)
    return x, y


def _polar_grid(h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """buildSCFpyr's ``log_rad`` and ``angle`` of an ``h x w`` centred spectrum."""
    f64 = torch.float64
    ch, cw = math.ceil((h + 0.5) / 2), math.ceil((w + 0.5) / 2)
    xr = (torch.arange(1, w + 1, dtype=f64, device=device) - cw) / (w / 2)
    yr = (torch.arange(1, h + 1, dtype=f64, device=device) - ch) / (h / 2)
    yy, xx = torch.meshgrid(yr, xr, indexing="ij")
    angle = torch.atan2(yy, xx)
    rad = torch.sqrt(xx * xx + yy * yy)
    rad[ch - 1, cw - 1] = rad[ch - 1, cw - 2]
    return torch.log2(rad), angle


def _central_crop(h: int, w: int) -> tuple[int, int, int, int]:
    """buildSCFpyrLevs' next-level crop of an ``h x w`` spectrum: ``(row0, col0, h', w')`` (0-based)."""
    out = []
    for d in (h, w):
        ctr = math.ceil((d + 0.5) / 2)
        lod = math.ceil((d - 0.5) / 2)
        loctr = math.ceil((lod + 0.5) / 2)
        out.append((ctr - loctr, lod))
    return out[0][0], out[1][0], out[0][1], out[1][1]


@cached_table(16)
def scf_level_masks(h: int, w: int, level: int, orientations: int,
                    device: torch.device) -> tuple[tuple[int, int, int, int], torch.Tensor]:
    """The oriented bands of level ``level`` (1 = finest) of ``buildSCFpyr(im, ht >= level,
    orientations - 1)`` of an ``h x w`` image as ``((row0, col0, h', w'), masks)``: the bands
    are ``ifft2(ifftshift(S[row0:row0+h', col0:col0+w'] * masks[b]))`` with
    ``S = fftshift(fft2(im))``; ``masks`` ``(orientations, h', w')`` complex128."""
    xr, yr = _rcos_table(device)
    yrcos = torch.sqrt(yr)
    yircos = torch.sqrt(1.0 - yrcos * yrcos)
    log_rad, angle = _polar_grid(h, w, device)
    step = float(xr[1] - xr[0])
    origin = float(xr[0])
    lomask = point_op(log_rad, yircos, origin, step)  # lo0mask
    r0 = c0 = 0
    for _ in range(level - 1):
        origin -= 1.0  # Xrcos = Xrcos - log2(2)
        rr, cc, hh, ww = _central_crop(*log_rad.shape)
        log_rad = log_rad[rr : rr + hh, cc : cc + ww]
        angle = angle[rr : rr + hh, cc : cc + ww]
        lomask = lomask[rr : rr + hh, cc : cc + ww] * point_op(log_rad, yircos, origin, step)
        r0, c0 = r0 + rr, c0 + cc
    origin -= 1.0
    himask = point_op(log_rad, yrcos, origin, step)
    order = orientations - 1
    const = (2.0 ** (2 * order)) * (math.factorial(order) ** 2) / (orientations * math.factorial(2 * order))
    xcosn = math.pi * torch.arange(-(2 * ANGLE_LUT + 1), ANGLE_LUT + 2, dtype=torch.float64, device=device) / ANGLE_LUT
    alfa = torch.remainder(math.pi + xcosn, 2 * math.pi) - math.pi
    ycosn = 2.0 * math.sqrt(const) * torch.cos(xcosn) ** order * (alfa.abs() < math.pi / 2)
    cstep = float(xcosn[1] - xcosn[0])
    radial = lomask * himask
    masks = torch.stack([radial * point_op(angle, ycosn, float(xcosn[0]) + math.pi * b / orientations, cstep)
                         for b in range(orientations)])
    phase = (-1j) ** order  # (-i)^(nbands-1)
    return (r0, c0, log_rad.shape[0], log_rad.shape[1]), masks.to(torch.complex128) * phase


def scf_bands(x: torch.Tensor, level: int, orientations: int) -> torch.Tensor:
    """``(B, H, W)`` real images -> ``(B, orientations, h', w')`` complex128: the oriented bands of
    ``buildSCFpyr`` at level ``level`` (see :func:`scf_level_masks`), computed in float64."""
    h, w = x.shape[-2:]
    (r0, c0, hh, ww), masks = scf_level_masks(h, w, level, orientations, x.device)
    spec = torch.fft.fftshift(torch.fft.fft2(x.to(torch.float64)), dim=(-2, -1))
    spec = spec[..., r0 : r0 + hh, c0 : c0 + ww]
    return torch.fft.ifft2(torch.fft.ifftshift(spec.unsqueeze(1) * masks, dim=(-2, -1)))
