"""MAD: the Most Apparent Distortion of Larson and Chandler (2010).

E. C. Larson and D. M. Chandler, "Most apparent distortion: full-reference image quality
assessment and the role of strategy", Journal of Electronic Imaging 19(1):011006, 2010.

The numbers follow the authors' MATLAB code ``MAD_index.m`` (the September 2011 release, "Mad is
now faster!", with the June 2010 fix of the constant 200 on the detection index) and its MEX
files ``ical_std.c`` / ``ical_stat.c``, called as ``MAD_index(ref, dst)`` on grey uint8 images
(``ref`` the reference). An RGB image read from an 8-bit file is turned grey by MATLAB's
``rgb2gray`` of the uint8 array (rounded to an integer), as the code itself does.

Line numbers below are those of ``MAD_index.m`` (651 lines) and of the two C files.

**Detection-based index (``hi_index``, for near-threshold distortions).**

1. Luminance: ``L = k v^(2.2/3)``, ``k = 0.02874`` (line 112), through a table indexed by
   ``uint8(v) + 1`` (lines 142-146): uint8 arithmetic saturates, so code 255 reads the entry
   of 254 (emulated: 8-bit images use ``min(v, 254)``). Off-grid (float) images use ``v``.
2. Contrast sensitivity: ``real(ifft2(ifftshift(fftshift(fft2(L)) .* csf)))`` (lines 155-157)
   with ``make_csf(M, N, 32)'`` (lines 362-379): on the grid ``a_m = m - (M-1)/2``,
   ``b_n = n - (N-1)/2`` (rows, columns), ``f = |a + i b| 64 / N``, divided by
   ``s = 0.15 cos(4 angle(a + i b)) + 0.85`` (``w = 0.7``), ``csf = 2.6 (0.0192 + 0.114 f)
   exp(-(0.114 f)^1.1)``, 0.9809 where ``f < 7.8909``. Taking the real part is the same as
   filtering with the filter's even part, which is what is done here (one real FFT).
3. Local statistics (``ical_std.c``) on 16x16 blocks whose corners step by 4, each block's value
   written to its top-left 4x4 pixels, zero where no block starts: ``std_2`` the standard
   deviation (normalised by 255) of the filtered ``dst - ref``, ``m1_1`` the mean of the
   filtered ``ref``, ``std_1`` the smallest of the 8x8 standard deviations (normalised by 63) of
   the filtered ``ref`` at the block's corner and the next corners right, below and diagonally
   (those that exist).
4. ``Ci_ref = log(std_1 / m1_1)``, ``Ci_dst = log(std_2 / m1_1)``, ``Ci_dst = -inf`` where
   ``m1_1 < G = 0.5`` (lines 166-168); with ``C_slope = 1``, ``Ci_thrsh = Cd_thrsh = -5``
   (lines 114-116) the mask of lines 170-176 is ``max(Ci_dst - max(Ci_ref, -5), 0)``.
5. ``lmse``: the 16x16 mean of ``(ref - dst)^2`` on the grey values (``imfilter`` 'symmetric',
   'same', 'conv': rows ``i-7 .. i+8``; lines 181-183). ``mp = msk .* lmse``; edges of 16 (and
   17 past the last row/column) are dropped, ``mp(17:end-17, 17:end-17)`` (line 188), and
   ``HI = 200 * rms(mp)`` (line 190).

**Appearance-based index (``lo_index``, for clearly visible distortions).**

6. Log-Gabor decomposition of the grey values (``gaborconvolve``, lines 495-617; Kovesi's code
   altered by Larson): 5 scales (wavelengths 3, 9, 27, 81, 243; ``sigmaOnf = 0.55``) times 4
   orientations (``k pi / 4``, angular sigma ``pi / 4 / 1.5``), on the frequency grid
   ``x = (-N/2 : N/2-1) / (N/2)``, ``y = (-M/2 : M/2-1) / (M/2)``, the radius at
   ``(round(M/2+1), round(N/2+1))`` set to 1 and the filter there to 0, ``fftshift``-ed;
   ``EO = ifft2(fft2(img) .* filter)``.
7. ``ical_stat.c`` on ``|EO|``: per 16x16 block (corners stepping by 4, value on the top-left
   4x4, zero elsewhere) the standard deviation (normalised by 255), the skewness and kurtosis
   (population moments, normalised by 256; 0 where the variance is 0).
8. ``mp = sum_{scale, orientation} w_scale (|d std| + 2 |d skew| + |d kurt|)`` with
   ``w = [0.5 0.75 1 5 6] / 13.25`` (lines 217-251); ``LO = rms(mp(17:end-17, 17:end-17))``.

**Blend** (lines 81-89): ``b1 = exp(-2.55 / 3.35)``, ``b2 = 1 / (log(10) 3.35)``,
``sig = 1 / (1 + b1 HI^b2)``, ``MAD = LO^(1 - sig) HI^sig``. 0 for identical images (``HI = 0``
gives ``sig = 1``), larger is worse, unbounded.

The smallest image is 34x34: ``mp(17:end-17, ...)`` is empty below that and the code returns
NaN.

Everything is batched over the images: the reference and distorted images of every pair go
through one FFT, the block statistics are computed with reshapes over 4x4 cells and combined
per 16x16 block (Chan et al.'s pairwise update of central moments, stable in float32), and the
20 log-Gabor filters run one scale (four orientations) at a time.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import cached_table
from .color import straight_through
from .fsim import safe_sqrt
from .gmsd import RGB2GRAY_EXACT, MatlabGreyMetric, on_8bit_grid
from .matlab import matlab_round

# ---------------------------------------------------------------- constants of MAD_index.m

#: ``k = 0.02874;`` (hi_index, line 112): luminance of grey level v is ``k v^(2.2/3)``.
LUM_K = 0.02874
LUM_GAMMA = 2.2 / 3.0
#: ``G = 0.5;`` (line 113): luminance below which the distortion contrast is ignored.
LUM_THRESHOLD = 0.5
#: ``Ci_thrsh = -5; Cd_thrsh = -5;`` with ``C_slope = 1`` and ``ms_scale = 1`` (lines 114-117).
CONTRAST_THRESHOLD = -5.0
#: ``.* 200`` (line 190, the June 2010 fix): scale of the detection index.
HI_SCALE = 200.0
#: ``make_csf(M, N, 32)`` (line 155): ``nfreq``; ``w = 0.7`` (line 370); CSF constants (lines 375-376).
CSF_NFREQ = 32.0
CSF_W = 0.7
CSF_FLAT_BELOW, CSF_FLAT_VALUE = 7.8909, 0.9809
#: ``BSIZE = 16;`` (lines 164, 228): block size of the local statistics; blocks step by 4
#: (``ical_std.c`` / ``ical_stat.c``: ``i += 4``), the 8x8 sub-blocks of ``std_1`` likewise.
BSIZE, STEP = 16, 4
#: gaborconvolve (lines 521-535): 5 scales, 4 orientations, wavelengths ``3 * 3^s``,
#: ``sigmaOnf = 0.55``, ``dThetaOnSigma = 1.5``.
N_SCALES, N_ORIENT = 5, 4
MIN_WAVELENGTH, WAVELENGTH_MULT = 3.0, 3.0
SIGMA_ON_F = 0.55
D_THETA_ON_SIGMA = 1.5
#: ``s = [0.5 0.75 1 5 6]; s = s./sum(s(:));`` (lines 217-219): weight of each scale (finest first).
SCALE_WEIGHTS = (0.5, 0.75, 1.0, 5.0, 6.0)
#: ``thresh1 = 2.55; thresh2 = 3.35;`` (lines 81-82): the sigmoid blend of HI and LO.
THRESH1, THRESH2 = 2.55, 3.35

#: Smallest H and W: ``mp(17:end-17, 17:end-17)`` (lines 188, 259) keeps ``H - 33`` rows.
MIN_SIZE = 2 * BSIZE + 2



# ---------------------------------------------------------------- filters (float64, cached per size)

@cached_table(4)
def _csf_even(rows: int, cols: int) -> torch.Tensor:
    """The CSF of lines 155-157 as a multiplier of ``rfft2``: ``(rows, cols // 2 + 1)`` float64.

    ``ifftshift(fftshift(F) .* csf)`` is ``F .* ifftshift(csf)``; the real part of the inverse
    transform of a real image's spectrum times a real filter ``H`` equals the inverse of the
    spectrum times ``(H(k) + H(-k)) / 2``, a Hermitian filter, which ``irfft2`` applies.
    """
    a = torch.arange(rows, dtype=torch.float64) - (rows - 1) / 2.0  # meshgrid x (make_csf's x = rows), transposed
    b = torch.arange(cols, dtype=torch.float64) - (cols - 1) / 2.0
    re, im = a[:, None].expand(rows, cols), b[None, :].expand(rows, cols)
    scale = 2.0 * CSF_NFREQ / cols  # plane = (xplane + 1i*yplane) / y * 2 * nfreq, y = cols
    radfreq = torch.hypot(re, im) * scale
    s = (1.0 - CSF_W) / 2.0 * torch.cos(4.0 * torch.atan2(im, re)) + (1.0 + CSF_W) / 2.0
    radfreq = radfreq / s
    csf = 2.6 * (0.0192 + 0.114 * radfreq) * torch.exp(-((0.114 * radfreq) ** 1.1))
    csf = torch.where(radfreq < CSF_FLAT_BELOW, torch.full_like(csf, CSF_FLAT_VALUE), csf)
    h = torch.fft.ifftshift(csf)
    mirrored = torch.roll(torch.flip(h, dims=(0, 1)), shifts=(1, 1), dims=(0, 1))  # H(-k)
    return ((h + mirrored) / 2.0)[:, : cols // 2 + 1].contiguous()


@cached_table(4)
def _log_gabor_bank(rows: int, cols: int) -> torch.Tensor:
    """gaborconvolve's filters (lines 541-610), ``fftshift``-ed: ``(N_SCALES, N_ORIENT, rows, cols)`` float64."""
    x = ((torch.arange(cols, dtype=torch.float64) - cols / 2.0) / (cols / 2.0))[None, :].expand(rows, cols)
    y = ((torch.arange(rows, dtype=torch.float64) - rows / 2.0) / (rows / 2.0))[:, None].expand(rows, cols)
    radius = torch.sqrt(x * x + y * y)
    cr, cc = matlab_round(rows / 2 + 1) - 1, matlab_round(cols / 2 + 1) - 1  # round(rows/2+1), 1-based
    radius = radius.clone()
    radius[cr, cc] = 1.0
    log_radius = torch.log(radius)
    theta = torch.atan2(-y, x)
    sintheta, costheta = torch.sin(theta), torch.cos(theta)
    theta_sigma = math.pi / N_ORIENT / D_THETA_ON_SIGMA
    tmp = -(2.0 * math.log(SIGMA_ON_F) ** 2)
    bank = torch.empty(N_SCALES, N_ORIENT, rows, cols, dtype=torch.float64)
    for s in range(N_SCALES):
        wavelength = MIN_WAVELENGTH * WAVELENGTH_MULT**s
        rfo = (1.0 / wavelength) / 0.5
        log_gabor = torch.exp((log_radius - math.log(rfo)) ** 2 / tmp)
        log_gabor[cr, cc] = 0.0
        for o in range(N_ORIENT):
            angl = o * math.pi / N_ORIENT
            ds = sintheta * math.cos(angl) - costheta * math.sin(angl)
            dc = costheta * math.cos(angl) + sintheta * math.sin(angl)
            dtheta = torch.abs(torch.atan2(ds, dc))
            spread = torch.exp(-(dtheta**2) / (2.0 * theta_sigma**2))
            bank[s, o] = torch.fft.fftshift(log_gabor * spread)
    return bank


# ---------------------------------------------------------------- block statistics (ical_std.c, ical_stat.c)

def _cell_sums(x: torch.Tensor, n_cells_h: int, n_cells_w: int, order: int) -> list[torch.Tensor]:
    """``(B, H, W)`` -> per 4x4 cell of the top-left ``4 ch x 4 cw`` pixels ``[mean, S2, (S3, S4)]``,
    each ``(B, ch, cw)``: the cell mean and the sums of the powers of the deviations from it."""
    b = x.shape[0]
    c = x[:, : STEP * n_cells_h, : STEP * n_cells_w].reshape(b, n_cells_h, STEP, n_cells_w, STEP)
    c = c.transpose(2, 3).reshape(b, n_cells_h, n_cells_w, STEP * STEP)  # one cell per row of 16
    mean = c.mean(dim=3)
    d = c - mean[..., None]
    d2 = d * d
    out = [mean, d2.sum(dim=3)]
    if order >= 3:
        out += [(d2 * d).sum(dim=3), (d2 * d2).sum(dim=3)]
    return out


def _merge(parts: list[torch.Tensor], dim: int, k: int, n: float, length: int) -> list[torch.Tensor]:
    """Chan et al.'s exact merge of ``k`` consecutive groups along ``dim`` (sliding by 1), each of
    ``n`` values with ``[mean, S2, (S3, S4)]``: ``length`` merged groups of ``k n`` values."""
    def part(t: torch.Tensor, j: int) -> torch.Tensor:
        return t.narrow(dim, j, length)

    total = part(parts[0], 0)
    for j in range(1, k):
        total = total + part(parts[0], j)
    mean = total / k
    merged = [mean] + [torch.zeros_like(mean) for _ in parts[1:]]
    for j in range(k):
        delta = part(parts[0], j) - mean
        n_delta2 = n * delta * delta
        s2 = part(parts[1], j)
        merged[1] = merged[1] + (s2 + n_delta2)
        if len(parts) > 2:
            s3 = part(parts[2], j)
            merged[2] = merged[2] + (s3 + delta * (3.0 * s2 + n_delta2))
            merged[3] = merged[3] + (part(parts[3], j) + delta * (4.0 * s3 + delta * (6.0 * s2 + n_delta2)))
    return merged


def _block_moments(
    x: torch.Tensor, cells: int, rows: int, cols: int, order: int
) -> tuple[torch.Tensor, ...]:
    """Central moments of the ``(4 cells)^2`` blocks at corners ``(4p, 4q)``, ``p < rows``, ``q < cols``.

    ``x``: ``(B, H, W)``. Returns the block means and the sums of the 2nd .. ``order``-th powers of
    the deviations from them, each ``(B, rows, cols)``. Per 4x4 cell: mean and central sums; then
    the cells are merged ``cells`` at a time along the rows, and those ``cells`` at a time along
    the columns, with the deviation ``d`` of each group's mean from the merged mean
    (``M2 = sum(S2 + n d^2)``, ``M3 = sum(S3 + 3 d S2 + n d^3)``,
    ``M4 = sum(S4 + 4 d S3 + 6 d^2 S2 + n d^4)``, Chan et al.): exact, and as accurate as a
    two-pass computation (the C code's) in float32 as well.
    """
    parts = _cell_sums(x, rows - 1 + cells, cols - 1 + cells, order)
    n = float(STEP * STEP)
    parts = _merge(parts, 2, cells, n, cols)
    parts = _merge(parts, 1, cells, n * cells, rows)
    return tuple(parts)


def _block_grid(height: int, width: int) -> tuple[int, int]:
    """Number of block corners per column and row: ``for(i=0; i<rowLen-15; i += 4)``."""
    return (height - BSIZE) // STEP + 1, (width - BSIZE) // STEP + 1


def _smallest_neighbour(std_sub: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``std_1`` of ical_std.c (lines 121-143): at each corner ``(4p, 4q)`` the smallest of the 8x8
    standard deviations at this corner and at the corners 4 below, 4 right and diagonally.

    The C code reads its neighbours at pixel offsets of 5 (``iB += 5``), inside the neighbouring
    corner's 4x4 tile, and only while that offset is below ``rowLen - 15`` (``colLen - 15``): a
    neighbour on the last corner is skipped when ``H - 16`` (``W - 16``) is a multiple of 4.
    """
    b, p, q = std_sub.shape
    rows_ok = (height - BSIZE - 1) // STEP + 1  # neighbour index p' is read iff 4 p' + 1 < H - 15
    cols_ok = (width - BSIZE - 1) // STEP + 1
    padded = F.pad(std_sub, (0, 1, 0, 1), value=math.inf)
    inf = torch.tensor(math.inf, dtype=std_sub.dtype, device=std_sub.device)
    row_next = (torch.arange(p, device=std_sub.device) + 1 < rows_ok).view(1, p, 1)
    col_next = (torch.arange(q, device=std_sub.device) + 1 < cols_ok).view(1, 1, q)
    down = torch.where(row_next, padded[:, 1:, :q], inf)
    right = torch.where(col_next, padded[:, :p, 1:], inf)
    diagonal = torch.where(row_next & col_next, padded[:, 1:, 1:], inf)
    return torch.minimum(torch.minimum(std_sub, down), torch.minimum(right, diagonal))


def _expand_crop(blocks: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(B, P, Q)`` block values -> ``(B, H - 33, W - 33)``: each on its block's top-left 4x4, zero
    where no block starts, then ``(17:end-17, 17:end-17)`` (1-based, MAD_index.m line 188)."""
    b, p, q = blocks.shape
    full = blocks.new_zeros(b, height, width)
    full[:, : STEP * p, : STEP * q] = blocks.repeat_interleave(STEP, 1).repeat_interleave(STEP, 2)
    return full[:, BSIZE : height - BSIZE - 1, BSIZE : width - BSIZE - 1]


def _rms(region: torch.Tensor) -> torch.Tensor:
    """``norm(mp2(:), 2) / sqrt(length(mp2(:)))`` per image, with a finite gradient at 0."""
    mean_sq = (region * region).flatten(1).mean(dim=1)
    return torch.where(mean_sq > 0, safe_sqrt(mean_sq), torch.zeros_like(mean_sq))


def _safe_log(t: torch.Tensor) -> torch.Tensor:
    """``log(t)`` for ``t >= 0``; ``log`` of the smallest normal number for 0 (below every threshold
    it is compared with here), with a zero gradient there."""
    return torch.log(t.clamp(min=torch.finfo(t.dtype).tiny))


# ---------------------------------------------------------------- the two indices

def hi_index(ref: torch.Tensor, dst: torch.Tensor, ref_lum: torch.Tensor, dst_lum: torch.Tensor) -> torch.Tensor:
    """Detection-based index ``HI`` (hi_index, lines 103-198), ``(B,)``.

    ``ref``, ``dst``: ``(B, H, W)`` grey values 0..255; ``ref_lum``, ``dst_lum`` their
    luminances (step 1 of the module's doc).
    """
    b, height, width = ref.shape
    csf = _csf_even(height, width).to(device=ref.device, dtype=ref.dtype)
    # the filtered dst - ref as the filter of the difference: exactly 0 for identical images
    spectra = torch.fft.rfft2(torch.stack((ref_lum, dst_lum - ref_lum), dim=1)) * csf
    filtered = torch.fft.irfft2(spectra, s=(height, width))
    ref_f, diff_f = filtered[:, 0], filtered[:, 1]
    rows, cols = _block_grid(height, width)
    _, m2_dst = _block_moments(diff_f, BSIZE // STEP, rows, cols, order=2)
    mean_ref, _ = _block_moments(ref_f, BSIZE // STEP, rows, cols, order=2)
    _, m2_sub = _block_moments(ref_f, BSIZE // (2 * STEP), rows, cols, order=2)
    std_dst = safe_sqrt(m2_dst / (BSIZE * BSIZE - 1))
    std_sub = safe_sqrt(m2_sub / ((BSIZE // 2) ** 2 - 1))
    std_ref = _smallest_neighbour(std_sub, height, width)
    valid = mean_ref >= LUM_THRESHOLD  # Ci_dst(m1_1 < G) = -inf: no mask there
    m1 = torch.where(valid, mean_ref, torch.ones_like(mean_ref))
    ci_ref = _safe_log(std_ref / m1)
    ci_dst = _safe_log(std_dst / m1)
    msk = torch.where(valid, torch.relu(ci_dst - ci_ref.clamp(min=CONTRAST_THRESHOLD)), torch.zeros_like(ci_dst))
    # lmse on mp(17:end-17, ...): rows i-7 .. i+8 of every kept row i lie inside the image
    sq = (ref - dst) ** 2
    inner = sq[:, BSIZE - 7 : height - BSIZE + 7, BSIZE - 7 : width - BSIZE + 7]
    lmse = F.avg_pool2d(inner[:, None], BSIZE, stride=1)[:, 0]
    return HI_SCALE * _rms(_expand_crop(msk, height, width) * lmse)


def lo_index(ref: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Appearance-based index ``LO`` (lo_index, lines 202-263), ``(B,)``; grey values 0..255, ``(B, H, W)``."""
    b, height, width = ref.shape
    bank = _log_gabor_bank(height, width).to(device=ref.device, dtype=ref.dtype)
    spectra = torch.fft.fft2(torch.cat((ref, dst)))[:, None]  # (2B, 1, H, W)
    rows, cols = _block_grid(height, width)
    weights = [w / sum(SCALE_WEIGHTS) for w in SCALE_WEIGHTS]
    mp = ref.new_zeros(b, rows, cols)
    n = float(BSIZE * BSIZE)
    for s in range(N_SCALES):  # four orientations at a time: bounded memory
        mag = torch.fft.ifft2(spectra * bank[s]).abs().flatten(0, 1)  # (2B * 4, H, W)
        # Each map scaled by a power of 2 (exact) to a peak in [0.5, 1): the coarse scales of a
        # smooth image have magnitudes of 1e-15 whose 4th powers underflow in float32.
        peak = mag.detach().flatten(1).amax(dim=1)
        exponent = torch.frexp(torch.where(peak > 0, peak, torch.ones_like(peak))).exponent
        scale = torch.ldexp(torch.ones_like(peak), -exponent).view(-1, 1, 1)
        _, m2, m3, m4 = _block_moments(mag * scale, BSIZE // STEP, rows, cols, order=4)
        var = m2 / n
        # ical_stat.c: skewness and kurtosis 0 where the variance is 0; here also where it is
        # too small for var^2 to be a normal number (blocks flat to rounding noise)
        ok = var > math.sqrt(torch.finfo(var.dtype).tiny)
        var_s = torch.where(ok, var, torch.ones_like(var))
        std = safe_sqrt(m2 / (n - 1.0)) / scale
        skw = torch.where(ok, (m3 / n) / (var_s * safe_sqrt(var_s)), torch.zeros_like(var))
        krt = torch.where(ok, (m4 / n) / (var_s * var_s), torch.zeros_like(var))
        stats = torch.stack((std, skw, krt), dim=1).unflatten(0, (2, b, N_ORIENT))  # (2, B, 4, 3, P, Q)
        diff = (stats[0] - stats[1]).abs()
        mp = mp + weights[s] * (diff[:, :, 0] + 2.0 * diff[:, :, 1] + diff[:, :, 2]).sum(dim=1)
    return _rms(_expand_crop(mp, height, width))


def blend(hi: torch.Tensor, lo: torch.Tensor) -> torch.Tensor:
    """``LO^(1-sig) HI^sig``, ``sig = 1 / (1 + b1 HI^b2)`` (lines 84-89); 0 where HI or LO is 0
    (as MATLAB's ``0^0 * 0`` and ``0^(1-sig)``), with finite gradients there."""
    b1 = math.exp(-THRESH1 / THRESH2)
    b2 = 1.0 / (math.log(10.0) * THRESH2)
    ok = (hi > 0) & (lo > 0)
    hi_s = torch.where(ok, hi, torch.ones_like(hi))
    lo_s = torch.where(ok, lo, torch.ones_like(lo))
    sig = 1.0 / (1.0 + b1 * hi_s**b2)
    value = torch.exp((1.0 - sig) * torch.log(lo_s) + sig * torch.log(hi_s))
    return torch.where(ok, value, torch.zeros_like(value))


# ---------------------------------------------------------------- input conversion

def grey_255(x: torch.Tensor, data_range: float, quantize: bool | str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N,C,H,W)`` -> ``(N,H,W)`` grey on 0..255 (MATLAB's ``rgb2gray`` for RGB) and ``(N,)`` bool:
    which images were rounded to integers, MAD_index.m's uint8 path (``quantize``: ``"auto"``
    those on the 8-bit grid, True all, False none). Rounding passes gradients straight through."""
    if x.shape[1] == 1:
        grey = x[:, 0] * (255.0 / data_range)
    else:
        w = torch.tensor(RGB2GRAY_EXACT, dtype=x.dtype, device=x.device).view(1, 3, 1, 1) * (255.0 / data_range)
        grey = (x * w).sum(dim=1)
    if quantize is False:
        return grey, torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    if quantize is True:
        rounded = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    else:
        rounded = on_8bit_grid(x, data_range)
    q = straight_through(grey, matlab_round(grey.detach()).clamp(0.0, 255.0))
    return torch.where(rounded.view(-1, 1, 1), q, grey), rounded


def luminance(grey: torch.Tensor, integer: torch.Tensor) -> torch.Tensor:
    """``k v^(2.2/3)`` (lines 142-150); ``v = min(v, 254)`` for the uint8 path (``LUT(ref_img + 1)``
    saturates at ``uint8(255) + 1 = 255``). A zero gradient at ``v = 0``."""
    v = torch.where(integer.view(-1, 1, 1), grey.clamp(max=254.0), grey)
    positive = v > 0
    return torch.where(positive, LUM_K * torch.where(positive, v, torch.ones_like(v)) ** LUM_GAMMA,
                       torch.zeros_like(v))


def mad_indices(
    x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, quantize: bool | str = "auto"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(MAD, HI, LO)`` of each pair, each ``(N,)``; ``x`` the reference, ``(N,C,H,W)`` in [0, data_range].

    Computed in the inputs' dtype, at least float32 (the FFTs take no float16), returned in it.
    """
    n = x.shape[0]
    out_dtype = torch.promote_types(x.dtype, y.dtype)
    work = torch.promote_types(out_dtype, torch.float32)
    grey, integer = grey_255(torch.cat((x, y)).to(work), data_range, quantize)
    lum = luminance(grey, integer)
    ref, dst = grey[:n], grey[n:]
    hi = hi_index(ref, dst, lum[:n], lum[n:])
    lo = lo_index(ref, dst)
    return blend(hi, lo).to(out_dtype), hi.to(out_dtype), lo.to(out_dtype)


def mad(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, quantize: bool | str = "auto") -> torch.Tensor:
    """MAD of each pair, ``(N,)`` (see the module's doc); ``x`` the reference."""
    return mad_indices(x, y, data_range, quantize)[0]


class MAD(MatlabGreyMetric):
    """MAD (Larson & Chandler 2010): Most Apparent Distortion (0 for identical images, unbounded).

    Reproduces the authors' ``MAD_index.m`` (2011) with ``ical_std.c`` / ``ical_stat.c`` (see the
    module's doc): grey input as it is, RGB through MATLAB's ``rgb2gray`` (rounded as for uint8
    images), a detection index (CSF-filtered luminance, local contrast masking, local MSE) and an
    appearance index (log-Gabor sub-band statistics) blended by a sigmoid of the first. ``x`` is
    the reference (MAD is asymmetric). Images must be at least 34x34.

    Options: ``data_range`` (1 or 255, ...), ``convention="matlab"`` (MAD_index.m), ``quantize``
    (``"auto"``: images on the 8-bit grid take the code's uint8 path, rounded grey and the
    luminance table; ``True``: always; ``False``: never, its float path). The value is
    already a distance.
    """

    name = "mad"
    lower_is_better = True
    differentiable = True
    symmetric = False
    min_size = MIN_SIZE
    channels = (1, 3)


    def formula(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return mad(x, y, self.data_range, self.quantize)
