"""The 8-bit path (uint8 batches, channels last): what the benchmark hands every metric.

``percepmetric.metrics.eight_bit`` either converts the codes to float and runs the metric's
formula, or runs an integer path of its own (L2 through 256-entry tables, SSIM's lpips
convention through exact window sums, compiled or in torch). Each integer path is checked
against an independent computation of the same number (NumPy, scikit-image), never against
the float path's own code; the float hand-over is checked against the metric on floats
decoded here by NumPy.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.color import rgb2lab
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from percepmetric.errors import InputError
from percepmetric.metrics import eight_bit, kernels
from percepmetric.metrics.eight_bit import from_8bit, triplet_values_8bit, values_8bit
from percepmetric.metrics.pixel import L2
from percepmetric.registry import create_metric

from helpers import requires_weights


def _images(n: int = 5, size: int = 32, channels: int = 3, seed: int = 0) -> list[torch.Tensor]:
    """Three uint8 (N,H,W,C) batches: a smooth reference, a noisy and a darkened copy (values
    across 0..255, dark ones included, so Lab's linear branch and the truncation both occur)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 1, size // 4, size // 4, channels, generator=g).squeeze(1)
    ref = torch.nn.functional.interpolate(base.permute(0, 3, 1, 2), size=(size, size), mode="bilinear",
                                          align_corners=False).permute(0, 2, 3, 1)
    noisy = ref + 0.08 * torch.randn(ref.shape, generator=g)
    dark = ref * 0.2
    return [(t.clamp(0, 1) * 255).round().to(torch.uint8).contiguous() for t in (ref, noisy, dark)]


# ---------------------------------------------------------------- independent references (NumPy, scikit-image)

def lpips_truncated(codes: np.ndarray) -> np.ndarray:
    """The LPIPS code's uint8 round trip, written out as that code does it: ``v / 255`` ->
    ``(x - 0.5) / 0.5`` in float32 -> ``((t + 1) * 127.5).astype(uint8)`` (truncation)."""
    t = (codes.astype(np.float32) / np.float32(255.0) - np.float32(0.5)) / np.float32(0.5)
    return ((t + np.float32(1.0)) * np.float32(127.5)).astype(np.uint8)


def as_rgb(codes: np.ndarray) -> np.ndarray:
    return np.repeat(codes, 3, axis=-1) if codes.shape[-1] == 1 else codes


def lab(codes: np.ndarray) -> np.ndarray:
    """scikit-image's Lab (float64) of one uint8 (H,W,C) image, grey repeated to RGB."""
    return rgb2lab(as_rgb(codes))


def matlab_grey(codes: np.ndarray) -> np.ndarray:
    """MATLAB's rgb2gray of a uint8 image: 0.2989 R + 0.5870 G + 0.1140 B, rounded (halves up)
    to uint8 (the luma SSIM's matlab convention compares for 8-bit input)."""
    if codes.shape[-1] == 1:
        return codes[..., 0].astype(np.float64)
    luma = codes.astype(np.float64) @ np.array([0.2989, 0.5870, 0.1140])
    return np.floor(luma + 0.5)


def reference_value(name: str, options: dict, a: np.ndarray, b: np.ndarray) -> float:
    """The metric's value for one pair of uint8 (H,W,C) images, computed without percepmetric."""
    if name == "l2":
        if options.get("color") == "lab":
            if options.get("convention") == "lpips":
                # The LPIPS code's L2-Lab: 0.5 * mean(((Lab(x) - Lab(y)) / 100)^2) of the truncated images.
                return 0.5 * float(np.mean(((lab(lpips_truncated(a)) - lab(lpips_truncated(b))) / 100) ** 2))
            return float(np.mean(((lab(a) - lab(b)) / 100) ** 2))
        if options.get("color") == "grey":  # MATLAB's rgb2gray, unrounded; grey images as they are
            luma = np.array([0.2989, 0.5870, 0.1140]) if a.shape[-1] == 3 else np.ones(1)
            ga, gb = ((v / 255.0) @ luma for v in (a, b))
            return float(np.mean((ga - gb) ** 2))
        factor = 4.0 if options.get("convention") == "lpips" else 1.0  # [-1, 1] images: differences x2
        return factor * float(np.mean((a / 255.0 - b / 255.0) ** 2))
    if name == "l1":
        return float(np.mean(np.abs(lab(a) - lab(b)) / 100))
    if name == "psnr":
        return float(peak_signal_noise_ratio(a.astype(np.float64), b.astype(np.float64), data_range=255))
    if name == "ssim" and options.get("convention") == "lpips":
        if options.get("quantize", "auto") is not False:  # the default truncates
            a, b = lpips_truncated(a), lpips_truncated(b)
        if options.get("color") == "lab":
            return float(structural_similarity(lab(a), lab(b), data_range=100.0, channel_axis=2))
        return float(structural_similarity(a.astype(np.float64), b.astype(np.float64), data_range=255.0,
                                           channel_axis=2))
    if name == "ssim":
        # ssim.m on a 32x32 image (no downsampling): 11x11 Gaussian (sigma 1.5), population
        # moments, 'valid' map; scikit-image's Gaussian window is that 11x11 one (truncate 3.5).
        return float(structural_similarity(matlab_grey(a), matlab_grey(b), data_range=255.0, gaussian_weights=True,
                                           sigma=1.5, use_sample_covariance=False))
    raise KeyError(name)


# The 8-bit path computes in float32 (its integer paths: exact integer sums, then float32 or
# float64 ratios), the references in float64. Worst relative difference measured over these
# cases: 3e-7 (SSIM in Lab and the matlab convention, float32 moments), 1e-7 or less elsewhere.
# 2e-6 leaves a 7x margin; a wrong step (a missed truncation or rounding of the codes, another
# constant) moves these values by 1e-4 or more.
TOLERANCE = 2e-6
INDEPENDENT = [
    ("l2", {}),
    ("l2", {"convention": "lpips"}),
    ("l2", {"color": "lab"}),
    ("l2", {"color": "lab", "convention": "lpips"}),
    ("l2", {"color": "grey"}),
    ("l1", {"color": "lab"}),
    ("psnr", {}),
    ("ssim", {}),
    ("ssim", {"convention": "lpips"}),
    ("ssim", {"convention": "lpips", "quantize": False}),
    ("ssim", {"convention": "lpips", "color": "lab"}),
]
# Each case on RGB and on grey images; SSIM's integer path both compiled and in torch.
RUNS = [
    (name, options, c, compiled)
    for name, options in INDEPENDENT
    for c in (3, 1)
    for compiled in ((True, False) if name == "ssim" and options.get("convention") == "lpips" else (True,))
]


def _id(name: str, options: dict, channels: int, compiled: bool) -> str:
    return f"{name}-{'-'.join(f'{k}={v}' for k, v in options.items())}-c{channels}{'' if compiled else '-torch'}"


@pytest.mark.parametrize("name,options,channels,compiled", RUNS, ids=[_id(*run) for run in RUNS])
def test_8bit_values_equal_an_independent_computation(name, options, channels, compiled, monkeypatch):
    if not compiled:
        monkeypatch.setattr(kernels, "AVAILABLE", False)  # as without numba: the torch integer path
    metric = create_metric(name, **options)
    ref, p0, p1 = _images(channels=channels)
    got0, got1 = triplet_values_8bit(metric, ref, p0, p1)
    got_pair = values_8bit(metric, ref, p1)
    for i in range(ref.shape[0]):
        r, a, b = (t[i].numpy() for t in (ref, p0, p1))
        want0, want1 = reference_value(name, options, r, a), reference_value(name, options, r, b)
        assert got0[i].item() == pytest.approx(want0, rel=TOLERANCE)
        assert got1[i].item() == pytest.approx(want1, rel=TOLERANCE)
        assert got_pair[i].item() == pytest.approx(want1, rel=TOLERANCE)


def test_the_compiled_ssim_kernel_is_in_use():
    assert kernels.AVAILABLE, "numba is a dependency: the compiled kernel must be in use"


# Metrics the adapter hands floats (no integer path of their own): the same numbers as the metric
# on floats decoded by NumPy here. Their formulas are checked against their authors' numbers in
# their own test files (test_ssim, test_fsim, test_lpips).
FLOAT_HANDED = [
    pytest.param("ms_ssim", {}, id="ms_ssim"),
    pytest.param("fsim", {"chromatic": True}, id="fsim"),
    pytest.param("lpips", {"net": "alex"}, id="lpips", marks=requires_weights("alex")),
]


def _decoded(codes: torch.Tensor, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    floats = codes.numpy().astype(np.float32) / np.float32(255.0) * np.float32(hi - lo) + np.float32(lo)
    return torch.from_numpy(np.ascontiguousarray(floats.transpose(0, 3, 1, 2)))


@pytest.mark.parametrize("name,options", FLOAT_HANDED)
def test_metrics_without_an_integer_path_get_the_decoded_floats(name, options):
    metric = create_metric(name, **options)
    ref, p0, p1 = _images(n=3)
    got0, got1 = triplet_values_8bit(metric, ref, p0, p1)
    # Tolerance: same formula and dtype; only the memory layout differs (channels-last views),
    # which may change the order of float32 sums.
    torch.testing.assert_close(got0, metric(_decoded(ref), _decoded(p0)), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got1, metric(_decoded(ref), _decoded(p1)), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(values_8bit(metric, ref, p1), got1, rtol=1e-5, atol=1e-6)


def test_a_subclass_is_handed_floats_so_its_own_formula_counts():
    """Integer paths serve the registry's own classes: a subclass may change the formula."""

    class HalfL2(L2):
        def formula(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return super().formula(x, y) / 2

        def compute_triplet(self, ref, p0, p1):
            return self.formula(ref, p0), self.formula(ref, p1)

    ref, p0, p1 = _images(n=2)
    full = triplet_values_8bit(create_metric("l2"), ref, p0, p1)
    half = triplet_values_8bit(HalfL2(), ref, p0, p1)
    for f, h in zip(full, half):
        torch.testing.assert_close(h, f / 2, rtol=1e-6, atol=0)
    assert eight_bit._integer_path(HalfL2()) is None


@requires_weights("alex")
def test_from_8bit_maps_codes_onto_the_value_range():
    codes = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 1, 3, 1).expand(1, 1, 3, 3).contiguous()
    assert torch.equal(from_8bit(create_metric("l2"), codes)[0, 0, 0], torch.tensor([0.0, 0.2, 1.0]))
    lpips = create_metric("lpips", net="alex", input_range="-1,1")
    assert torch.equal(from_8bit(lpips, codes)[0, 0, 0], torch.tensor([-1.0, -0.6, 1.0]))


@pytest.mark.parametrize(
    "x,message",
    [
        (torch.zeros(2, 16, 16, 3), "must be a uint8 tensor"),
        (torch.zeros(2, 16, 16, dtype=torch.uint8), r"shape \(N,H,W,C\)"),
        (torch.zeros(2, 16, 16, 4, dtype=torch.uint8), "expected 1 or 3 channels, got 4"),
        (torch.zeros(2, 4, 4, 3, dtype=torch.uint8), "smaller than"),
    ],
)
def test_8bit_input_is_checked(x, message):
    y = torch.zeros(x.shape, dtype=torch.uint8)
    with pytest.raises(InputError, match=message):
        values_8bit(create_metric("ssim", convention="lpips"), x, y)


def test_8bit_batches_must_match():
    a = torch.zeros(2, 16, 16, 3, dtype=torch.uint8)
    with pytest.raises(InputError, match="differ in shape"):
        triplet_values_8bit(create_metric("l2"), a, a, a[:1])
