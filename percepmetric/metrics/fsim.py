"""FSIM and FSIMc: the Feature SIMilarity index of Zhang, Zhang, Mou and Zhang (2011).

L. Zhang, L. Zhang, X. Mou and D. Zhang, "FSIM: A Feature Similarity Index for Image
Quality Assessment", IEEE Trans. Image Processing 20(8):2378-2386, 2011.

The numbers follow the authors' MATLAB code ``FeatureSIM.m`` (with its embedded copy of
Peter Kovesi's ``phasecong2`` and ``lowpassfilter``), which works on 0..255 values:

1. RGB -> YIQ (luma ``Y`` and chroma ``I``, ``Q``); a grey image is its own ``Y``.
2. Downsample each of Y, I, Q by ``F = max(1, round(min(H, W) / 256))``: an FxF box filter
   (``conv2(.., 'same')``, zero padding) then every F-th pixel starting with the first.
3. Phase congruency ``PC`` of each luma (Kovesi's method, 4 scales x 4 orientations of
   log-Gabor filters applied through the FFT) and gradient magnitude ``G`` (Scharr kernel).
4. ``S_PC = (2 PC1 PC2 + T1) / (PC1^2 + PC2^2 + T1)``, ``S_G`` likewise with ``T2``,
   ``PC_m = max(PC1, PC2)`` and::

       FSIM  = sum(S_PC * S_G * PC_m) / sum(PC_m)
       FSIMc = sum(S_PC * S_G * real((S_I * S_Q)^lambda) * PC_m) / sum(PC_m)

   with ``S_I``, ``S_Q`` the same similarity of the downsampled I and Q (constants T3, T4).

Everything is batched: one FFT of the whole batch, one inverse FFT of all 16 filter
responses of all images at once; the filter bank is built once per image size, device and
dtype and cached. The few places where the MATLAB formula has an infinite slope (square
roots and ``|v|^lambda`` at 0) are guarded so that gradients stay finite, e.g. at ``x == y``,
without changing values (see :func:`safe_sqrt`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..options import MatlabConvention, Precision, Reduction
from ..threads import map_side_by_side
from .base import SimilarityIndex, check_choice
from .budget import memory_guard
from .color import rgb_to_yiq
from .matlab import box_downsample, downsample_factor

# ---------------------------------------------------------------- constants of FeatureSIM.m

# Stabilising constants of the similarity terms, for 0..255 images.
T1_PC = 0.85
T2_GRADIENT = 160.0
T3_I = 200.0
T4_Q = 200.0
LAMBDA_CHROMA = 0.03
# Scharr horizontal derivative kernel of FeatureSIM.m; the vertical one is its transpose.
SCHARR_X = ((3.0, 0.0, -3.0), (10.0, 0.0, -10.0), (3.0, 0.0, -3.0))
SCHARR_SCALE = 16.0

# Parameters of phasecong2 as FeatureSIM.m embeds it (Kovesi 1999).
N_SCALES = 4
N_ORIENTATIONS = 4
MIN_WAVELENGTH = 6.0  # pixels, wavelength of the finest log-Gabor filter
SCALE_FACTOR = 2.0  # "mult": ratio between successive wavelengths
SIGMA_ON_F = 0.55  # radial bandwidth: sigma / centre frequency
D_THETA_ON_SIGMA = 1.2  # orientation spacing / angular sigma
NOISE_K = 2.0  # noise threshold = mean + k * sigma of the noise energy
PC_EPSILON = 1e-4  # keeps the mean phase vector finite
NOISE_PC2_RESCALE = 1.7  # phasecong2's empirical correction of the threshold for its PC_2 measure
LOWPASS_CUTOFF = 0.45  # Butterworth low-pass that keeps the filters off the FFT corners
LOWPASS_ORDER = 15  # its order n (exponent 2n)

CONVENTIONS = ("matlab",)
PRECISIONS = ("input", "float64")

# Below this many pixels (after downsampling) an image does not hold one wavelength of the
# finest filter; Kovesi's frequency grid also divides by (size - 1).
MIN_SIZE = int(MIN_WAVELENGTH)


# ---------------------------------------------------------------- helpers


def safe_sqrt(t: torch.Tensor) -> torch.Tensor:
    """``sqrt(t)`` for ``t >= 0`` with a finite gradient at 0.

    The clamp at the dtype's smallest normal number changes a value only where ``t`` is
    below it (by at most its square root, 1e-154 in float64, 1e-19 in float32).
    """
    return torch.sqrt(t.clamp(min=torch.finfo(t.dtype).tiny))


def scharr_gradient_magnitude(y: torch.Tensor) -> torch.Tensor:
    """``(N,1,H,W) -> (N,1,H,W)``: ``sqrt(Ix^2 + Iy^2)`` with FeatureSIM.m's Scharr kernels
    ``[3 0 -3; 10 0 -10; 3 0 -3] / 16`` and its transpose, ``conv2 'same'`` (zero padding).

    ``conv2`` flips the kernel and ``conv2d`` does not; only the sign of ``Ix``/``Iy`` differs,
    which the magnitude ignores.

    The images go through as the channels of one image, a grouped convolution: the same
    numbers as a batch of one-channel images, 8x faster on CPU (oneDNN runs a 1-channel batch
    on a slow path).
    """
    n, _, h, w = y.shape
    kx = torch.tensor(SCHARR_X, dtype=y.dtype, device=y.device) / SCHARR_SCALE
    kernels = torch.stack((kx, kx.T))[:, None].repeat(n, 1, 1, 1)  # (2N,1,3,3): Ix, Iy of each image
    grad = F.conv2d(y.reshape(1, n, h, w), kernels, padding=1, groups=n).view(n, 2, h, w)
    return safe_sqrt(grad.pow(2).sum(dim=1, keepdim=True))


def similarity(a: torch.Tensor, b: torch.Tensor, constant: float) -> torch.Tensor:
    """FSIM's similarity of two maps: ``(2ab + c) / (a^2 + b^2 + c)``, 1 where ``a == b``."""
    return (2.0 * a * b + constant) / (a * a + b * b + constant)


# ---------------------------------------------------------------- phase congruency


def _kovesi_frequency_grid(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Kovesi's normalised frequency coordinate along an axis of ``n`` samples, already
    ``ifftshift``-ed (zero frequency first): ``k / n`` for even ``n`` and ``k / (n - 1)`` for odd
    ``n``, ``k`` the signed FFT index. (The odd case reaches +-0.5 exactly, as in his code.)"""
    k = torch.fft.fftfreq(n, d=1.0 / n, dtype=dtype, device=device)  # signed integer indices
    return k / (n if n % 2 == 0 else n - 1)


@functools.lru_cache(maxsize=16)
def log_gabor_bank(height: int, width: int, device: torch.device,
                   dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The 16 log-Gabor filters of ``phasecong2`` for an ``height x width`` image, and the
    noise-threshold factor of each orientation. Cached per size, device and dtype.

    Returns ``(bank, noise_factor)``: ``bank`` of shape ``(O, S, H, W)`` (orientation, scale;
    frequency domain, zero frequency at ``[0, 0]``), real; ``noise_factor`` of shape ``(O,)``
    such that the noise threshold of orientation ``o`` is ``sqrt(median(|EO_o1|^2) * noise_factor[o])``
    (see :func:`phase_congruency`).

    Filter ``(o, s)`` is ``radial_s(r) * lowpass(r) * angular_o(theta)`` with
    ``radial_s = exp(-log(r / f_s)^2 / (2 log(sigmaOnf)^2))``, ``f_s = 1 / (6 * 2^s)``,
    ``lowpass = 1 / (1 + (r / 0.45)^30)``, ``angular_o = exp(-dtheta^2 / (2 thetaSigma^2))``,
    ``dtheta`` the angular distance to ``o * pi / 4`` and ``thetaSigma = pi / 4 / 1.2``.
    Built in float64 and then cast, so the float32 bank is the float64 one rounded.
    """
    # Built outside inference mode: the cache outlives the call, and tensors made under
    # inference_mode could not take part in a later autograd graph.
    with torch.inference_mode(False), torch.no_grad():
        f64 = torch.float64
        fx = _kovesi_frequency_grid(width, f64, device)[None, :]
        fy = _kovesi_frequency_grid(height, f64, device)[:, None]
        radius = torch.sqrt(fx * fx + fy * fy)  # (H, W)
        theta = torch.atan2(-fy, fx)  # -y: angles grow anticlockwise, as in Kovesi's code
        lowpass = 1.0 / (1.0 + (radius / LOWPASS_CUTOFF) ** (2 * LOWPASS_ORDER))
        radius = radius.clone()
        radius[0, 0] = 1.0  # avoid log(0); the DC value of every filter is set to 0 below

        wavelengths = MIN_WAVELENGTH * SCALE_FACTOR ** torch.arange(N_SCALES, dtype=f64, device=device)
        centre = (1.0 / wavelengths).view(-1, 1, 1)
        radial = torch.exp(-torch.log(radius / centre) ** 2 / (2.0 * math.log(SIGMA_ON_F) ** 2)) * lowpass
        radial[:, 0, 0] = 0.0  # (S, H, W)

        angles = torch.arange(N_ORIENTATIONS, dtype=f64, device=device).view(-1, 1, 1) * (math.pi / N_ORIENTATIONS)
        sin_t, cos_t = torch.sin(theta), torch.cos(theta)
        d_sin = sin_t * torch.cos(angles) - cos_t * torch.sin(angles)
        d_cos = cos_t * torch.cos(angles) + sin_t * torch.sin(angles)
        d_theta = torch.abs(torch.atan2(d_sin, d_cos))  # wrap-around-free angular distance
        theta_sigma = math.pi / N_ORIENTATIONS / D_THETA_ON_SIGMA
        angular = torch.exp(-d_theta**2 / (2.0 * theta_sigma**2))  # (O, H, W)

        bank = angular[:, None] * radial[None]  # (O, S, H, W)

        # Noise model of phasecong2: with the mean squared response of the finest scale
        # E[|EO_o1|^2] = median / ln 2 (Rayleigh) and the filter's energy EM_n, noise power is
        # their ratio; the noise energy^2 is noise power * (2 sum An^2 + 4 sum_{i<j} Ai Aj)
        # over the spatial filters, its Rayleigh parameter tau = sqrt(energy^2 / 2).
        spatial = torch.fft.ifft2(bank).real * math.sqrt(height * width)  # (O, S, H, W)
        em_n = bank[:, 0].pow(2).sum(dim=(-2, -1))
        sum_an2 = spatial.pow(2).sum(dim=(1, 2, 3))
        total = spatial.sum(dim=1)
        sum_ai_aj = 0.5 * (total.pow(2).sum(dim=(-2, -1)) - sum_an2)  # sum over pairs si < sj
        noise_factor = (2.0 * sum_an2 + 4.0 * sum_ai_aj) / em_n / math.log(2.0) / 2.0  # tau^2 per unit median
        return bank.to(dtype), noise_factor.to(dtype)


# Threshold T = (E[noise energy] + k * sigma(noise energy)) / 1.7 for a Rayleigh(tau) energy.
_THRESHOLD_PER_TAU = (math.sqrt(math.pi / 2.0) + NOISE_K * math.sqrt(2.0 - math.pi / 2.0)) / NOISE_PC2_RESCALE


def _median_last_dim(t: torch.Tensor) -> torch.Tensor:
    """MATLAB's ``median`` over the last dimension: the mean of the two middle values when
    the count is even (``torch.median`` would return the lower one)."""
    n = t.shape[-1]
    # One selection instead of two: the n//2 + 1 smallest values hold both middle ones as
    # their largest (odd n: the largest alone is the median).
    smallest = torch.topk(t, n // 2 + 1, dim=-1, largest=False, sorted=False).values
    middle = torch.topk(smallest, 1 if n % 2 else 2, dim=-1).values
    return middle.mean(dim=-1)


# Bytes of the (images x 16 filters x H x W) complex stack processed at once. Chunks that stay
# in the CPU caches measured 3-7x faster than one stack of 256 patches (and bound memory);
# a 256x256 image is already a chunk of its own.
_CHUNK_BYTES = 4 << 20


def phase_congruency(y: torch.Tensor) -> torch.Tensor:
    """Kovesi's phase congruency as ``phasecong2`` of FeatureSIM.m computes it.

    ``y``: ``(B,H,W)`` luma on a 0..255 scale. Returns ``(B,H,W)``, values in [0, 1].

    For each orientation ``o`` and scale ``s`` the complex response ``EO = ifft2(fft2(y) * G_os)``
    (real part: even filter, imaginary: odd filter), ``A = |EO|``. With the mean phase vector
    ``(mE, mO) = (sum_s E, sum_s O) / (|sum_s EO| + 1e-4)``::

        energy_o = sum_s (E mE + O mO - |E mO - O mE|)
        PC = sum_o max(energy_o - T_o, 0) / sum_o sum_s A

    ``T_o`` is the noise threshold from the median of ``|EO_o,finest|^2`` (see
    :func:`log_gabor_bank`). All filters of all images go through one batched inverse FFT
    (in cache-sized chunks of the batch, see :func:`_map_chunks`).
    """
    _, h, w = y.shape
    bank, noise_factor = log_gabor_bank(h, w, y.device, y.dtype)
    per_image = bank.numel() * 2 * bank.element_size()  # complex response bytes per image
    chunk = max(1, _CHUNK_BYTES // per_image)
    return torch.cat(_map_chunks(lambda part: _phase_congruency_chunk(part, bank, noise_factor), y.split(chunk)))


def _map_chunks(compute: Callable[[torch.Tensor], torch.Tensor], parts: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """``[compute(part) for part in parts]``; on the CPU with several torch threads and no graph
    to record, the chunks run side by side, each with single-threaded ops
    (:func:`percepmetric.threads.map_side_by_side`: the caller's thread settings are left alone).

    A chunk is some 40 small steps (a few MB each); with torch's own multi-threaded ops each step
    is a fork-join, which on a busy machine waits whenever another thread has been descheduled.
    Same numbers either way. Gradients, other devices and a single thread keep the plain loop.
    """
    threads = torch.get_num_threads()
    if threads <= 1 or len(parts) <= 1 or parts[0].device.type != "cpu" or parts[0].requires_grad:
        return [compute(part) for part in parts]
    return list(map_side_by_side(compute, parts, threads))


def _phase_congruency_chunk(y: torch.Tensor, bank: torch.Tensor, noise_factor: torch.Tensor) -> torch.Tensor:
    spectrum = torch.fft.fft2(y)  # (B, H, W)
    eo = torch.fft.ifft2(spectrum[:, None, None] * bank)  # (B, O, S, H, W), E + iO
    even, odd = eo.real, eo.imag
    power = even * even + odd * odd
    # (sqrt of the power rather than complex abs(): same value, several times faster on CPU)
    total_amplitude = safe_sqrt(power).sum(dim=(1, 2))  # (B, H, W)

    summed = eo.sum(dim=2, keepdim=True)  # (B, O, 1, H, W)
    norm = safe_sqrt(summed.real.pow(2) + summed.imag.pow(2)) + PC_EPSILON
    mean_phase = summed / norm  # mE + i mO
    # sum_s (E mE + O mO) = |sum_s EO|^2 / norm needs no per-scale tensor; the deviation term
    # E mO - O mE is minus the imaginary part of conj(mean) * EO.
    along = (summed.real.pow(2) + summed.imag.pow(2)).squeeze(2) / norm.squeeze(2)
    across = (mean_phase.conj() * eo).imag.abs().sum(dim=2)
    energy = along - across  # (B, O, H, W)

    median_power = _median_last_dim(power[:, :, 0].flatten(2))  # (B, O), finest scale
    threshold = _THRESHOLD_PER_TAU * safe_sqrt(median_power * noise_factor)
    energy = torch.relu(energy - threshold[..., None, None])

    # A is 0 only where every response vanishes (a constant image); energy is 0 there too.
    return energy.sum(dim=1) / total_amplitude.clamp(min=torch.finfo(y.dtype).tiny)


# ---------------------------------------------------------------- FSIM


def _chroma_weight(s_i: torch.Tensor, s_q: torch.Tensor) -> torch.Tensor:
    """MATLAB's ``real((S_I .* S_Q) .^ lambda)``: ``|v|^lambda``, times ``cos(lambda pi)`` where
    ``v < 0`` (the real part of a negative number's power).

    Computed in float64 whatever the working dtype: ``|v|^0.03`` is so flat that only a clamp
    at float64's smallest normal number (1e-308, giving 6e-10 at ``v = 0``) keeps the slope
    finite without moving values.
    """
    v = (s_i * s_q).to(torch.float64)
    magnitude = v.abs().clamp(min=torch.finfo(torch.float64).tiny) ** LAMBDA_CHROMA
    sign = torch.where(v < 0, torch.full_like(v, math.cos(LAMBDA_CHROMA * math.pi)), torch.ones_like(v))
    return (magnitude * sign).to(s_i.dtype)


def fsim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 1.0,
    chromatic: bool = False,
    precision: str = "input",
) -> torch.Tensor:
    """FSIM (or FSIMc with ``chromatic=True``) of two batches, as FeatureSIM.m computes it.

    ``x``, ``y``: ``(N,C,H,W)`` in ``[0, data_range]``, C = 3 (RGB) or 1 (grey; FSIMc needs RGB).
    Returns ``(N,)`` in the inputs' common dtype; 1 for identical images, higher = more alike.
    ``precision="input"`` computes in the input dtype (at least float32); ``"float64"`` in
    float64 whatever the input, as MATLAB's doubles. Float32 and float64 computations agree
    to 1e-6 (measured), far inside the 1e-4 of the published values, at 2-3x the speed.
    Formula and conventions: see the module docstring.
    """
    if chromatic and x.shape[1] != 3:
        raise InputError(f"fsim: chromatic=True (FSIMc) needs RGB images, got {x.shape[1]} channel(s)")
    out_dtype = torch.promote_types(x.dtype, y.dtype)  # float32 with float64: float64, as torch does
    work = torch.float64 if precision == "float64" else torch.promote_types(out_dtype, torch.float32)
    # The FFT filtering of the whole image cannot be tiled without changing the numbers: an
    # image too large is refused in one line, before anything is allocated.
    with memory_guard("fsim", [x, y], fsim_memory_needed(x.shape, x.dtype, work, chromatic)):
        return _fsim(x, y, data_range, chromatic, out_dtype, work)


#: Factor of :func:`fsim_memory_needed`'s model: measured peaks are 0.67-0.86 of the model
#: for 4000x4000 and 10000x10000 pairs (downsampled by 16 and 39), 0.85-0.95 for 300 x 4000 and
#: 300 x 8000 (not downsampled: the filter responses dominate), with or without gradients
#: (docs/metrics.md, "Large images: memory").
MEMORY_FACTOR = 1.0


def fsim_memory_needed(shape: Sequence[int], dtype: torch.dtype, work: torch.dtype, chromatic: bool) -> int:
    """Estimated bytes :func:`fsim` allocates for a pair of ``(N,C,H,W)`` batches of ``dtype``
    computed in ``work``: at full size, the two batches joined (and cast), their YIQ (the
    transform's own copy included) and its zero-padded copy for the box filter; after
    downsampling, the 16 complex filter responses of the images whose phase congruency is
    computed at once (:func:`phase_congruency`) and the similarity maps; times
    :data:`MEMORY_FACTOR`."""
    n, c, h, w = shape
    images, work_size = 2 * n, work.itemsize
    planes = 3 if chromatic else 1
    f = downsample_factor(h, w)
    full = images * h * w * (c * dtype.itemsize + (c if c == 3 else 0) * work_size + 2 * planes * work_size)
    small = math.ceil(h / f) * math.ceil(w / f)
    response = N_SCALES * N_ORIENTATIONS * small * 2 * work_size  # one image's complex responses
    per_chunk = max(1, _CHUNK_BYTES // response)
    in_flight = min(images, per_chunk * max(1, torch.get_num_threads()))
    reduced = in_flight * response * 7 + images * small * work_size * (planes + 12)
    return int(MEMORY_FACTOR * (full + reduced))


def _fsim(x: torch.Tensor, y: torch.Tensor, data_range: float, chromatic: bool, out_dtype: torch.dtype,
          work: torch.dtype) -> torch.Tensor:
    """:func:`fsim` on validated inputs, in ``work``, returned in ``out_dtype``."""
    scale = 255.0 / data_range  # FeatureSIM.m works on imread's 0..255 values
    pair = torch.cat((x, y)).to(work).mul_(scale)  # (2N, C, H, W): both images in one pass
    n, c, h, w = x.shape

    if c == 3:
        pair = rgb_to_yiq(pair, channels=3 if chromatic else 1)
    # Convert first, then downsample each of Y, I, Q (the order of FeatureSIM.m).
    pair = box_downsample(pair, downsample_factor(h, w), "zeros")
    luma = pair[:, :1]

    pc = phase_congruency(luma[:, 0])
    grad = scharr_gradient_magnitude(luma)[:, 0]
    pc1, pc2 = pc[:n], pc[n:]
    sim = similarity(pc1, pc2, T1_PC) * similarity(grad[:n], grad[n:], T2_GRADIENT)
    if chromatic:
        chroma_x, chroma_y = pair[:n], pair[n:]
        s_i = similarity(chroma_x[:, 1], chroma_y[:, 1], T3_I)
        s_q = similarity(chroma_x[:, 2], chroma_y[:, 2], T4_Q)
        sim = sim * _chroma_weight(s_i, s_q)
    pc_max = torch.maximum(pc1, pc2)
    # eps matters only when neither image has any phase congruency (flat images): the score
    # is then 1 instead of MATLAB's 0/0 = NaN, with a finite gradient (a much smaller constant
    # would overflow it). Elsewhere it moves the score by eps * (1 - score) / sum(PC_m), with
    # sum(PC_m) in the hundreds already for a 64x64 patch.
    eps = torch.finfo(work).eps
    score = ((sim * pc_max).sum(dim=(-2, -1)) + eps) / (pc_max.sum(dim=(-2, -1)) + eps)
    return score.to(out_dtype)


class FSIM(SimilarityIndex):
    """Feature similarity FSIM / FSIMc (chromatic=True), as the authors' MATLAB code (1 at best).

    Options: ``data_range`` (1 or 255, ...), ``chromatic`` (FSIMc, RGB only),
    ``convention="matlab"`` (FeatureSIM.m), ``precision`` (``"input"``: compute in the input
    dtype, the default; ``"float64"``: in float64). ``to_distance(s) = 1 - s``.
    """

    name = "fsim"
    symmetric = True
    colour_doc = "RGB or grey (Y of YIQ; FSIMc needs RGB)"
    distance_name = "1-fsim"
    differentiable = True
    min_size = MIN_SIZE
    channels = (1, 3)

    def __init__(
        self,
        data_range: float = 1.0,
        chromatic: bool = False,
        convention: MatlabConvention = "matlab",
        precision: Precision = "input",
        reduction: Reduction = "none",
        validate_args: bool = True,
    ) -> None:
        super().__init__(data_range, reduction, validate_args)
        precision = "input" if precision == "auto" else precision  # one name set: "auto" is "input" here
        if not isinstance(chromatic, bool):
            raise InputError(f"fsim: option chromatic must be True or False, got {chromatic!r}")
        check_choice(self.name, "convention", convention, CONVENTIONS)
        check_choice(self.name, "precision", precision, PRECISIONS)
        self.chromatic, self.convention, self.precision = chromatic, convention, precision
        self.options.update(chromatic=chromatic, convention=convention, precision=precision)

    def check(self, x: torch.Tensor, y: torch.Tensor) -> None:
        super().check(x, y)
        if self.chromatic and x.shape[1] != 3:
            raise InputError(f"fsim: chromatic=True (FSIMc) needs RGB images, got {x.shape[1]} channel(s); "
                             "use chromatic=False for grey")

    def formula(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return fsim(x, y, self.data_range, self.chromatic, self.precision)

