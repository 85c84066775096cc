"""ColorVideoVDP (Mantiuk et al. 2024) for still images: a visual difference predictor in JOD.

R. K. Mantiuk, P. Hanji, M. Ashraf, Y. Asano, A. Chapiro, "ColorVideoVDP: A visual difference
predictor for image, video and display distortions", ACM Transactions on Graphics 43(4), SIGGRAPH
2024. Reference implementation: the ``cvvdp`` package (``pycvvdp``) 0.5.7, MIT licence; its
calibrated parameters, CSF tables and display models are shipped unchanged in
``percepmetric/data_files/cvvdp`` (see the NOTICE there). This module imports no code of cvvdp and
reproduces its image path (one frame, so only the sustained temporal channel):

1. **Display model.** The display-encoded image ``V`` in [0, 1] (``x / data_range``) becomes
   absolute linear RGB: ``L = (Y_peak - Y_black) EOTF(V) + Y_black + Y_refl``, ``Y_black =
   Y_peak / contrast``, ``Y_refl = E_ambient / pi * k_refl`` (sRGB or gamma EOTF; PQ and HLG as
   cvvdp writes them), then ``DKL = M_LMS->DKL M_XYZ->LMS2006 M_RGB->XYZ L`` (achromatic,
   red-green, yellow-violet). A grey image is its luminance in all three channels, as in cvvdp.
   The display's size, resolution and viewing distance give the pixels per degree ``ppd``.
2. **Pyramid.** A decimated Laplacian pyramid (5-tap kernel ``[0.05 0.25 0.4 0.25 0.05]``,
   symmetric borders) of each channel of both images; ``n`` bands with the frequencies
   ``ppd/2 * (1, 0.3228, 0.3228/2, ...)`` down to the first at or below 0.2 cpd (at most
   ``floor(log2(min(H, W))) - 1`` levels), the last (the Gaussian base band) at 0.1 cpd.
3. **Contrast.** Band ``k`` divided by the expanded next Gaussian level of the achromatic channel
   of the same image (clamped at 0.01 cd/m^2), clamped at 1000, doubled for the inner bands; the
   base band is divided by the image mean of its achromatic level.
4. **CSF.** Sensitivity ``S`` per channel from castleCSF's look-up table (``weber_fixed_size``),
   log-linear in frequency and in the reference's background luminance, times
   ``10^(sensitivity_correction / 20)``.
5. **Masking** (inner bands, "mult-mutual"): ``T' = g T S``, ``R' = g R S`` (``g = (1, 1.45, 1)``),
   ``M = W^T safepow(blur_3(min(|T'|, |R'|)) 10^mask_c, q_c)`` (cross-channel weights ``W =
   2^xcm``, a Gaussian of sigma 3 px), ``D = d_clamp(safepow(|T' - R'|, p) / (1 + M))`` with the
   soft clamp ``d_clamp(d) = 10^d_max d / (10^d_max + d)``. Base band: ``D = |T - R| S``.
   ``safepow(x, p) = (x + 1e-5)^p - 1e-5^p``.
6. **Pooling.** Per band and channel the 2-norm mean over pixels, then the 4-norm over bands
   (base band weighted by ``baseband_weight``) and over channels (chromatic ones by
   ``ch_chrom_w``), times ``image_int``: ``Q``.
7. **JOD** ``= 10 - jod_a Q^jod_exp`` for ``Q > 0.1``, and below it the straight line from 10 at
   ``Q = 0`` that meets the power law at 0.1, ``10 - jod_a 0.1^(jod_exp - 1) Q`` (cvvdp's
   ``met2jod``, differentiable at 0): 10 for identical images.

:meth:`CVVDP.distance_map` is cvvdp's raw heatmap: the per-band differences pooled over channels
(4-norm, the same weights), collapsed by the Laplacian reconstruction and mapped as
``1 - JOD / 10``.

cvvdp quirk kept for parity: in the pyramid's reduce step the correction at the last *column*
depends on the parity of the number of *rows* (``gausspyr_reduce``).
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..options import Reduction
from .base import Metric, cached_table

DATA_DIR = Path(__file__).resolve().parent.parent / "data_files" / "cvvdp"

#: cvvdp's default display (``cvvdp(display_name="standard_4k")``).
DEFAULT_DISPLAY = "standard_4k"

#: CIE XYZ -> LMS (CIE 2006 cone fundamentals) and LMS -> DKL (D65), pycvvdp/display_model.py.
XYZ_TO_LMS2006 = (
    (0.187596268556126, 0.585168649077728, -0.026384263306304),
    (-0.133397430663221, 0.405505777260049, 0.034502127690364),
    (0.000244379021663, -0.000542995890619, 0.019406849066323),
)
LMS2006_TO_DKLD65 = (
    (1.0, 1.0, 0.0),
    (1.0, -2.311130179947035, 0.0),
    (-1.0, -1.0, 50.977571328718781),
)

#: The pyramid kernel ``[0.25 - a/2, 0.25, a, 0.25, 0.25 - a/2]`` with ``a = 0.4``.
KERNEL_A = 0.4
PYR_KERNEL = (0.25 - KERNEL_A / 2, 0.25, KERNEL_A, 0.25, 0.25 - KERNEL_A / 2)
#: Lowest band frequency (cpd) the pyramid goes down to, and the base band's nominal frequency.
MIN_FREQ = 0.2
BASEBAND_FREQ = 0.1
#: Clamps of the contrast computation: background luminance floor (cd/m^2), contrast ceiling.
MIN_BKG = 0.01
MAX_CONTRAST = 1000.0
#: Per-channel gain of the "mult-mutual" masking model (achromatic, red-green, yellow-violet).
MASK_CH_GAIN = (1.0, 1.45, 1.0)
#: ``safe_pow``'s offset.
SAFE_EPS = 1e-5
#: Below this Q the JOD mapping is linear (met2jod).
Q_LINEAR = 0.1

#: Smallest H and W: a pyramid of two bands (the band and the base band).
MIN_SIZE = 4


def _read_json(name: str) -> dict[str, Any]:
    with open(DATA_DIR / name, encoding="utf-8") as f:
        return json.load(f)


@functools.cache
def parameters() -> dict[str, Any]:
    """cvvdp_parameters.json (0.5.7), checked for the model this module implements."""
    p = _read_json("cvvdp_parameters.json")
    expected = {"masking_model": "mult-mutual", "contrast": "weber_g1", "local_adapt": "gpyr",
                "dclamp_type": "soft", "xchannel_masking": "on", "csf": "weber_fixed_size"}
    for key, value in expected.items():
        if p.get(key) != value:  # pragma: no cover - the shipped file is fixed
            raise RuntimeError(f"cvvdp_parameters.json: {key}={p.get(key)!r}, this implementation needs {value!r}")
    return p


@functools.cache
def display_names() -> tuple[str, ...]:
    """Names in display_models.json whose input is display-encoded in [0, 1] (not linear)."""
    spaces = _read_json("color_spaces.json")
    models = _read_json("display_models.json")
    return tuple(k for k, m in models.items() if spaces[m.get("colorspace", "sRGB")]["EOTF"] != "linear")


@dataclass(frozen=True)
class Display:
    """A display model: photometry (how ``V`` in [0, 1] becomes cd/m^2) and geometry (ppd)."""

    name: str
    eotf: str
    y_peak: float
    y_black: float
    y_refl: float
    exposure: float
    e_ambient: float
    rgb2xyz: tuple[tuple[float, ...], ...]
    ppd: float

    def luminance(self, v: torch.Tensor) -> torch.Tensor:
        """Display-encoded ``v`` in [0, 1] -> linear RGB (or grey) in cd/m^2 (cvvdp's ``forward``)."""
        v = v.clamp(0.0, 1.0)
        lift = self.y_black + self.y_refl
        if self.eotf == "PQ":
            return (_pq_to_linear(v) * self.exposure).clamp(0.005, self.y_peak) + lift
        if self.eotf == "sRGB":
            lin = torch.where(v > 0.04045, ((v + 0.055) / 1.055) ** 2.4, v / 12.92)
        elif self.eotf == "HLG":
            lin = _hlg_to_linear(v, self._hlg_gamma())
        else:  # a gamma, "2.2"
            lin = v ** float(self.eotf)
        if self.exposure != 1 or self.eotf not in ("sRGB", "HLG"):
            lin = (lin * self.exposure).clamp(0.0, 1.0)
        return (self.y_peak - self.y_black) * lin + lift

    def _hlg_gamma(self) -> float:
        if self.y_peak > 1000:
            return 1.2 + 0.42 * math.log10(self.y_peak / 1000) - 0.07623 * math.log10(self.e_ambient / 5)
        return 1.2

    def rgb_to_dkl(self) -> torch.Tensor:
        """``M_LMS->DKL M_XYZ->LMS M_RGB->XYZ`` (float64)."""
        m = torch.tensor(LMS2006_TO_DKLD65, dtype=torch.float64) @ torch.tensor(XYZ_TO_LMS2006, dtype=torch.float64)
        return m @ torch.tensor(self.rgb2xyz, dtype=torch.float64)


def _pq_to_linear(v: torch.Tensor) -> torch.Tensor:
    m, n, c1, c2, c3 = 78.84375, 0.1593017578125, 0.8359375, 18.8515625, 18.6875
    t = v.clamp(min=1e-12) ** (1.0 / m)
    return 10000.0 * ((t - c1).clamp(min=0.0) / (c2 - c3 * t)).clamp(min=1e-30) ** (1.0 / n)


def _hlg_to_linear(rgb: torch.Tensor, gamma: float) -> torch.Tensor:
    a = 0.17883277
    b = 1.0 - 4.0 * a
    c = 0.5 - a * math.log(4.0 * a)
    s = torch.where(rgb <= 0.5, rgb * rgb / 3.0, (torch.exp((rgb - c) / a) + b) / 12.0)
    if rgb.shape[1] != 3:
        return s
    ys = 0.2627 * s[:, 0:1] + 0.6780 * s[:, 1:2] + 0.0593 * s[:, 2:3]
    return ys.clamp(min=1e-12) ** (gamma - 1.0) * s


@functools.cache
def load_display(name: str) -> Display:
    """The display model ``name`` of display_models.json, as cvvdp reads it."""
    models = _read_json("display_models.json")
    if name not in display_names():
        raise InputError(f"cvvdp: display must be one of {', '.join(display_names())}, got {name!r}")
    model = models[name]
    space = _read_json("color_spaces.json")[model.get("colorspace", "sRGB")]
    peak = float(model["max_luminance"])
    if "min_luminance" in model:
        contrast = peak / model["min_luminance"]
    else:
        contrast = model.get("contrast", 500)
    refl = model.get("E_ambient", 0) / math.pi * model.get("k_refl", 0.005)
    rgb2xyz = (tuple(space["RGB2X"]), tuple(space["RGB2Y"]), tuple(space["RGB2Z"]))
    return Display(name=name, eotf=space["EOTF"], y_peak=peak, y_black=peak / contrast, y_refl=refl,
                   exposure=float(model.get("exposure", 1)),
                   e_ambient=float(model.get("E_ambient", 0)), rgb2xyz=rgb2xyz, ppd=_ppd(model))


def _ppd(model: dict[str, Any]) -> float:
    """Pixels per degree at the display's centre (cvvdp's ``vvdp_display_geometry``)."""
    res_w, res_h = model["resolution"]
    if "pixels_per_degree" in model:
        return float(model["pixels_per_degree"])
    ar = res_w / res_h
    size_w: float | None = None
    if "diagonal_size_meters" in model:
        diag_in = model["diagonal_size_meters"] / 0.0254
    else:
        diag_in = model.get("diagonal_size_inches")
    if diag_in is not None:
        height_mm = math.sqrt((diag_in * 25.4) ** 2 / (1 + ar**2))
        size_w = ar * height_mm / 1000
    if "viewing_distance_meters" in model:
        distance = float(model["viewing_distance_meters"])
    elif "viewing_distance_inches" in model:
        distance = model["viewing_distance_inches"] * 0.0254
    else:
        distance = 3.0
    if "fov_diagonal" in model:
        distance_px = math.sqrt(res_w**2 + res_h**2) / (2.0 * math.tan(math.radians(model["fov_diagonal"] * 0.5)))
        height_deg = math.degrees(math.atan(res_h / 2 / distance_px)) * 2
        size_w = 2 * math.tan(math.radians(height_deg / 2)) * distance * ar
    assert size_w is not None
    return 1.0 / (2 * math.degrees(math.atan(0.5 * size_w / res_w / distance)))


def band_frequencies(h: int, w: int, ppd: float) -> list[float]:
    """Nominal frequency (cpd) of each pyramid band, finest first; the last is the base band (0.1)."""
    max_levels = int(math.floor(math.log2(min(h, w)))) - 1
    candidates = [ppd / 2.0] + [0.3228 * 2.0 ** (-k) * ppd / 2.0 for k in range(14)]
    first_low = next(i for i, f in enumerate(candidates) if f <= MIN_FREQ)
    levels = max(0, min(first_low + 1, max_levels))
    return candidates[:levels] + [BASEBAND_FREQ]


# ---------------------------------------------------------------- the pyramid


def _reduce_dim(x: torch.Tensor, dim: int, odd_end: bool) -> torch.Tensor:
    """Blur with :data:`PYR_KERNEL` and keep every second sample along ``dim`` (-1 or -2).

    Borders: sample ``-1`` is sample 0, ``-2`` is sample 1; at the end, ``odd_end`` says how the
    last output is completed (``n`` odd: by samples ``n-1``, ``n-2``; even: by sample ``n-1``).
    """
    k0, k1, k2, k3, k4 = PYR_KERNEL
    n = x.shape[dim]
    out = (n + 1) // 2
    pad = (2, 2, 0, 0) if dim == -1 else (0, 0, 2, 2)
    p = F.pad(x, pad)
    taps = (k0, k1, k2, k3, k4)
    y = None
    for j, k in enumerate(taps):
        s = p.narrow(dim, j, 2 * out - 1)
        s = s[..., ::2] if dim == -1 else s[..., ::2, :]
        y = s * k if y is None else y + s * k
    assert y is not None
    first = x.narrow(dim, 0, 1) * k1 + x.narrow(dim, 1, 1) * k0
    last = x.narrow(dim, n - 1, 1)
    if odd_end:
        last = last * k3 + x.narrow(dim, n - 2, 1) * k4
    else:
        last = last * k4
    y.narrow(dim, 0, 1).add_(first)  # y is a fresh tensor: the border terms are added in place
    y.narrow(dim, out - 1, 1).add_(last)
    return y


def reduce2d(x: torch.Tensor) -> torch.Tensor:
    """One Gaussian pyramid step on the last two dims; both ends follow the row count's parity."""
    odd = x.shape[-2] % 2 == 1
    return _reduce_dim(_reduce_dim(x, -2, odd), -1, odd)


def _expand_dim(x: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    """Upsample by 2 along ``dim`` to ``size`` samples: zeros between samples, :data:`PYR_KERNEL`
    times 2, the border sample repeated once past each end."""
    k0, k1, k2, k3, k4 = PYR_KERNEL
    n = x.shape[dim]
    p = torch.cat((x.narrow(dim, 0, 1), x, x.narrow(dim, n - 1, 1)), dim=dim)
    a, b, c = p.narrow(dim, 0, n), p.narrow(dim, 1, n), p.narrow(dim, 2, n)
    even = (a * k0 + b * k2 + c * k4) * 2.0
    odd = (b * k1 + c * k3) * 2.0
    both = torch.stack((even, odd), dim=dim)  # (..., n, 2) or (..., n, 2, W): interleaved by the flatten
    both = both.flatten(-2) if dim == -1 else both.flatten(-3, -2)
    return both.narrow(dim, 0, size)


def expand2d(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return _expand_dim(_expand_dim(x, -2, size[0]), -1, size[1])


# ---------------------------------------------------------------- CSF


@cached_table(maxsize=64)
def _csf_rows(rho: float, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, float, float, int]:
    """castleCSF's log-sensitivity at frequency ``rho`` for each LUT luminance: ``(3, n_L)``
    (achromatic, red-green, yellow-violet; sustained), and the LUT's log-luminance range."""
    lut = _read_json(f"csf_lut_{parameters()['csf']}.json")
    log_rho = torch.log10(torch.tensor(lut["rho"], dtype=torch.float64))
    log_l = torch.log10(torch.tensor(lut["L_bkg"], dtype=torch.float64))
    q = math.log10(rho)
    i = int(torch.searchsorted(log_rho, torch.tensor(q, dtype=torch.float64)).item()) - 1
    i = min(max(i, 0), log_rho.numel() - 2)
    rows = []
    for c in range(3):
        table = torch.tensor(lut[f"o0_c{c + 1}"], dtype=torch.float64)  # (n_L, n_rho)
        slope = (table[:, i + 1] - table[:, i]) / (log_rho[i + 1] - log_rho[i])
        rows.append(table[:, i] + slope * (q - log_rho[i]))
    return (torch.stack(rows).to(device=device, dtype=dtype), float(log_l[0]), float(log_l[-1]), log_l.numel())


def sensitivity(rho: float, log_l: torch.Tensor) -> torch.Tensor:
    """``(N,H,W)`` log10 background luminance -> ``(N,3,H,W)`` CSF sensitivity at ``rho`` cpd."""
    rows, lo, hi, n = _csf_rows(rho, log_l.dtype, log_l.device)
    pos = ((log_l - lo) * ((n - 1) / (hi - lo))).clamp(0.0, n - 1)
    i0 = pos.detach().floor()
    frac = pos - i0
    i0 = i0.long()
    i1 = (i0 + 1).clamp(max=n - 1)
    v = rows[:, i0] * (1.0 - frac) + rows[:, i1] * frac  # (3, N, H, W)
    return (10.0 ** v).movedim(0, 1)


# ---------------------------------------------------------------- masking and pooling


def safe_pow(x: torch.Tensor, p: Any) -> torch.Tensor:
    """``(x + 1e-5)^p - 1e-5^p``: a power with a finite gradient at 0 (cvvdp's ``safe_pow``)."""
    if isinstance(p, torch.Tensor):
        return (x + SAFE_EPS) ** p - SAFE_EPS**p
    return (x + SAFE_EPS) ** p - SAFE_EPS ** float(p)


@cached_table(maxsize=8)
def _blur_kernel(sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    half = int(sigma * 4) // 2
    t = torch.linspace(-half, half, 2 * half + 1, dtype=dtype, device=device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


@cached_table(maxsize=64)
def _blur_matrix(n: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``(n, n)``: the 1-D Gaussian blur of ``n`` samples (reflected borders) as a matrix."""
    k = _blur_kernel(sigma, torch.float64, torch.device("cpu"))
    half = k.numel() // 2
    rows = torch.arange(n).view(-1, 1).expand(n, k.numel())
    src = (rows + torch.arange(-half, half + 1).view(1, -1)).abs()
    src = torch.where(src > n - 1, 2 * (n - 1) - src, src)
    m = torch.zeros(n, n, dtype=torch.float64)
    m.index_put_((rows.reshape(-1), src.reshape(-1)), k.expand(n, -1).reshape(-1), accumulate=True)
    return m.to(dtype=dtype, device=device)


def phase_uncertainty(m: torch.Tensor, sigma: float, gain: float) -> torch.Tensor:
    """Gaussian blur (sigma px, kernel of ``2 floor(2 sigma) + 1`` taps, reflected borders) times
    ``gain``; no blur on bands of at most ``2 sigma`` pixels (cvvdp's ``phase_uncertainty``, the
    blur of torchvision's ``GaussianBlur``). Applied as two matrix products (``B_H m B_W^T``),
    which on a CPU run faster than a one-channel convolution."""
    h, w = m.shape[-2:]
    pad = int(sigma * 2)
    if sigma == 0 or h <= pad or w <= pad:
        return m * gain
    bh = _blur_matrix(h, float(sigma), m.dtype, m.device)
    bw = _blur_matrix(w, float(sigma), m.dtype, m.device)
    return torch.matmul(torch.matmul(bh * gain, m), bw.t())


class _Model:
    """The parameters as tensors of one dtype and device."""

    def __init__(self, dtype: torch.dtype, device: torch.device) -> None:
        p = parameters()
        t = functools.partial(torch.tensor, dtype=dtype, device=device)
        self.mask_p = float(p["mask_p"])
        self.mask_q = t(p["mask_q"][:3]).view(1, 3, 1, 1)
        self.mask_c = 10.0 ** float(p["mask_c"])
        self.pu_sigma = float(p["pu_dilate"])
        xcm = 2.0 ** torch.tensor(p["xcm_weights"], dtype=torch.float64).view(4, 4)
        self.xcm = xcm[:3, :3].to(dtype=dtype, device=device)
        self.d_max = 10.0 ** float(p["d_max"])
        self.gain = t(MASK_CH_GAIN).view(1, 3, 1, 1)
        self.s_corr = 10.0 ** (float(p["sensitivity_correction"]) / 20.0)
        self.ch_w = t([1.0, p["ch_chrom_w"], p["ch_chrom_w"]])
        self.bb_w = t(p["baseband_weight"][:3])
        self.beta = float(p["beta"])
        self.beta_sch = float(p["beta_sch"])
        self.beta_tch = float(p["beta_tch"])
        self.image_int = float(p["image_int"])
        self.jod_a = float(p["jod_a"])
        self.jod_exp = float(p["jod_exp"])

    def band_difference(self, t: torch.Tensor, r: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Masked difference of one inner band: test and reference contrast ``(N,3,H,W)``."""
        g = s * self.gain
        tp, rp = t * g, r * g
        mm = phase_uncertainty(torch.minimum(tp.abs(), rp.abs()), self.pu_sigma, self.mask_c)
        m = torch.einsum("nkhw,kc->nchw", safe_pow(mm, self.mask_q), self.xcm)
        d = safe_pow((tp - rp).abs(), self.mask_p) / (1.0 + m)
        return self.d_max * d / (self.d_max + d)

    def met2jod(self, q: torch.Tensor) -> torch.Tensor:
        slope = self.jod_a * Q_LINEAR ** (self.jod_exp - 1.0)
        high = 10.0 - self.jod_a * q.clamp(min=Q_LINEAR) ** self.jod_exp
        return torch.where(q <= Q_LINEAR, 10.0 - slope * q, high)


@cached_table(maxsize=8)
def _model(dtype: torch.dtype, device: torch.device) -> _Model:
    return _Model(dtype, device)


def _to_dkl(v: torch.Tensor, display: Display) -> torch.Tensor:
    lin = display.luminance(v)
    if lin.shape[1] == 1:
        return lin.expand(-1, 3, -1, -1)
    m = display.rgb_to_dkl().to(dtype=v.dtype, device=v.device)
    return torch.einsum("nchw,kc->nkhw", lin, m)


def band_differences(x: torch.Tensor, y: torch.Tensor, display: Display) -> tuple[list[torch.Tensor], list[float]]:
    """Per-band differences ``D`` ``(N,3,h,w)`` (finest first, base band last) of the pair
    (``x`` reference, ``y`` test, display-encoded in [0, 1]) and the bands' frequencies."""
    n, _, h, w = x.shape
    model = _model(x.dtype, x.device)
    freqs = band_frequencies(h, w, display.ppd)
    nb = len(freqs)
    img = torch.stack((_to_dkl(y, display), _to_dkl(x, display)), dim=1)  # (N, 2 [test, ref], 3, H, W)
    gauss = [img]
    for _ in range(nb - 1):
        gauss.append(reduce2d(gauss[-1]))
    diffs = []
    for k in range(nb):
        g = gauss[k]
        if k < nb - 1:
            ex = expand2d(gauss[k + 1], (g.shape[-2], g.shape[-1]))
            bkg = ex[:, :, 0].clamp(min=MIN_BKG)  # (N, 2, h, w)
            contrast = ((g - ex) / bkg.unsqueeze(2)).clamp(max=MAX_CONTRAST)
            if k > 0:
                contrast = contrast * 2.0
        else:
            bkg = g[:, :, 0].clamp(min=MIN_BKG).mean(dim=(-2, -1), keepdim=True)  # (N, 2, 1, 1)
            contrast = (g / bkg.unsqueeze(2)).clamp(max=MAX_CONTRAST)
        s = sensitivity(freqs[k], torch.log10(bkg[:, 1])) * model.s_corr
        t, r = contrast[:, 0], contrast[:, 1]
        if k < nb - 1:
            diffs.append(model.band_difference(t, r, s))
        else:
            diffs.append((t - r).abs() * s)
    return diffs, freqs


def cvvdp_jod(x: torch.Tensor, y: torch.Tensor, display: Display) -> torch.Tensor:
    """ColorVideoVDP of each pair in JOD, ``(N,)``: ``x`` reference, ``y`` test, in [0, 1]."""
    model = _model(x.dtype, x.device)
    diffs, _ = band_differences(x, y, display)
    q = torch.stack([safe_pow(safe_pow(d, model.beta).flatten(2).mean(dim=2), 1.0 / model.beta) for d in diffs],
                    dim=2)  # (N, 3, bands)
    w = torch.ones(3, len(diffs), dtype=q.dtype, device=q.device)
    w[:, -1] = model.bb_w
    w = w * model.ch_w.view(3, 1)
    q_ch = safe_pow(safe_pow(q * w, model.beta_sch).sum(dim=2), 1.0 / model.beta_sch)
    q_all = safe_pow(safe_pow(q_ch, model.beta_tch).sum(dim=1), 1.0 / model.beta_tch)
    return model.met2jod(q_all * model.image_int)


def cvvdp_map(x: torch.Tensor, y: torch.Tensor, display: Display) -> torch.Tensor:
    """cvvdp's raw heatmap ``(N,1,H,W)``: ``1 - JOD/10`` of the per-pixel difference."""
    model = _model(x.dtype, x.device)
    diffs, _ = band_differences(x, y, display)
    nb = len(diffs)
    bands = []
    for k, d in enumerate(diffs):
        w = model.ch_w * model.image_int
        if k == nb - 1:
            w = w * model.bb_w
        pooled = safe_pow(safe_pow(d * w.view(1, 3, 1, 1), model.beta_tch).sum(dim=1, keepdim=True),
                          1.0 / model.beta_tch)
        bands.append(pooled / 2.0 if 0 < k < nb - 1 else pooled)
    img = bands[-1]
    for band in reversed(bands[:-1]):
        img = expand2d(img, (band.shape[-2], band.shape[-1])) + band
    return 1.0 - model.met2jod(img) / 10.0


class CVVDP(Metric):
    """ColorVideoVDP (Mantiuk et al. 2024) of still images, in JOD: 10 for identical images.

    ``x`` is the reference, ``y`` the test image, both display-encoded (sRGB for the SDR displays)
    in [0, data_range], RGB or grey. ``display`` names a display model of cvvdp's
    ``display_models.json`` (default ``standard_4k``: 30-inch 4K, 200 cd/m^2, 250 lux, 0.75 m);
    the linear-input HDR displays are not offered. Matches ``pycvvdp.cvvdp(display_name=...)
    .predict(y, x, dim_order="HWC")`` (see the module's doc for the model).

    Distance (:meth:`to_distance`): ``10 - JOD`` (0 for identical images). :meth:`distance_map`:
    cvvdp's raw heatmap. Not symmetric: the CSF sensitivity is taken at the reference's
    background luminance. Computes in the input's float dtype (float16 in float32).
    """

    name = "cvvdp"
    lower_is_better = False
    differentiable = True
    symmetric = False
    min_size = MIN_SIZE
    channels = (1, 3)
    unit = "JOD"
    distance_name = "10-jod"
    colour_doc = "RGB or grey (display model -> DKL)"

    def __init__(
        self,
        data_range: float = 1.0,
        display: str = DEFAULT_DISPLAY,
        reduction: Reduction = "none",
        validate_args: bool = True,
    ) -> None:
        super().__init__(data_range, reduction, validate_args)
        if not isinstance(display, str):
            raise InputError(f"cvvdp: display must be a display model's name, got {display!r}")
        self.display = load_display(display)
        self.options.update(display=display)

    def _prepare(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dtype in (torch.float16, torch.bfloat16):
            x, y = x.float(), y.float()
        return x / self.data_range, y / self.data_range

    def formula(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        xs, ys = self._prepare(x, y)
        return cvvdp_jod(xs, ys, self.display).to(dtype)

    def distance_map(self, x: Any, y: Any) -> torch.Tensor:
        """Per-pixel difference ``(N,1,H,W)``, cvvdp's raw heatmap (0 where nothing differs;
        ``1 - JOD/10`` of each pixel's pooled difference). Validated like :meth:`values`."""
        def heatmap(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return cvvdp_map(*self._prepare(x, y), self.display).to(x.dtype)

        return self.validated_call(heatmap, x, y)

    def to_distance(self, value: torch.Tensor) -> torch.Tensor:
        """``10 - JOD``: 0 for identical images, larger is worse."""
        return 10.0 - value
