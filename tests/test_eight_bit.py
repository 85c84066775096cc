"""The 8-bit path (uint8 batches, channels last): what the benchmark hands every metric.

Metrics either convert to float and run their formula, or run an integer path of their own
(L2 through 256-entry tables, SSIM's lpips convention through exact window sums); both must
give the numbers of ``forward`` on the same images as floats.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from percepmetric.errors import InputError
from percepmetric.metrics.color import lpips_code_8bit_values
from percepmetric.registry import create_metric


def _images(n: int = 5, size: int = 24, channels: int = 3, seed: int = 0) -> list[torch.Tensor]:
    """Three uint8 (N,H,W,C) batches: a smooth reference, a noisy and a darkened copy (values
    across 0..255, dark ones included, so Lab's linear branch and the truncation both occur)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 1, size // 4, size // 4, channels, generator=g).squeeze(1)
    ref = torch.nn.functional.interpolate(base.permute(0, 3, 1, 2), size=(size, size), mode="bilinear",
                                          align_corners=False).permute(0, 2, 3, 1)
    noisy = ref + 0.08 * torch.randn(ref.shape, generator=g)
    dark = ref * 0.2
    return [(t.clamp(0, 1) * 255).round().to(torch.uint8).contiguous() for t in (ref, noisy, dark)]


CASES = [
    ("l2", {}),
    ("l2", {"color": "lab"}),
    ("l2", {"color": "lab", "convention": "lpips"}),
    ("l2", {"convention": "lpips"}),
    ("l2", {"color": "grey"}),
    ("l1", {"color": "lab"}),
    ("psnr", {}),
    ("ssim", {}),
    ("ssim", {"convention": "lpips"}),
    ("ssim", {"convention": "lpips", "quantize": False}),
    ("ssim", {"convention": "lpips", "color": "lab"}),
    ("ms_ssim", {}),
    ("fsim", {"chromatic": True}),
    ("lpips", {"net": "alex"}),
]
# Each case on RGB and on grey images (FSIMc compares colour: RGB only).
RUNS = [(name, options, c) for name, options in CASES for c in (3, 1) if not (name == "fsim" and c == 1)]


@pytest.mark.parametrize("name,options,channels", RUNS,
                         ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items())}-c{c}" for n, o, c in RUNS])
def test_8bit_values_equal_the_float_path(name, options, channels):
    metric = create_metric(name, **options)
    ref, p0, p1 = _images(size=32, channels=channels)
    as_float = [metric.from_8bit(t) for t in (ref, p0, p1)]
    want0, want1 = metric.triplet_values(*as_float)
    got0, got1 = metric.triplet_values_8bit(ref, p0, p1)
    for got, want in ((got0, want0), (got1, want1)):
        assert got.shape == want.shape == (ref.shape[0],)
        torch.testing.assert_close(got, want, rtol=2e-6, atol=2e-6)
    torch.testing.assert_close(metric.values_8bit(ref, p1), metric(as_float[0], as_float[2]), rtol=2e-6, atol=2e-6)


def test_ssim_integer_path_equals_scikit_image_on_the_truncated_images():
    from skimage.metrics import structural_similarity

    ref, p0, _ = _images(n=3, size=32, seed=3)
    metric = create_metric("ssim", convention="lpips")
    got = metric.values_8bit(ref, p0)
    # The lpips convention sees the 8-bit image after the reference code's float32 truncation.
    table = lpips_code_8bit_values(torch.arange(256, dtype=torch.float32) / 255.0).numpy()
    for i in range(3):
        a, b = (table[t[i].numpy()].astype(np.float64) for t in (ref, p0))
        want = structural_similarity(a, b, data_range=255.0, channel_axis=2)
        assert abs(got[i].item() - want) < 1e-6


@pytest.mark.parametrize("channels", [3, 1])
def test_ssim_compiled_kernel_equals_the_torch_integer_path(channels, monkeypatch):
    from percepmetric.metrics import kernels

    assert kernels.AVAILABLE, "numba is a dependency: the compiled kernel must be in use"
    metric = create_metric("ssim", convention="lpips")
    ref, p0, p1 = _images(n=6, size=40, channels=channels, seed=7)
    compiled = metric.triplet_values_8bit(ref, p0, p1)
    pair = metric.values_8bit(ref, p1)
    monkeypatch.setattr(kernels, "AVAILABLE", False)  # as without numba: the torch path
    in_torch = metric.triplet_values_8bit(ref, p0, p1)
    for a, b in zip(compiled, in_torch):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    torch.testing.assert_close(pair, metric.values_8bit(ref, p1), rtol=0, atol=1e-6)


def test_from_8bit_maps_codes_onto_the_value_range():
    codes = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 1, 3, 1).expand(1, 1, 3, 3).contiguous()
    assert torch.equal(create_metric("l2").from_8bit(codes)[0, 0, 0], torch.tensor([0.0, 0.2, 1.0]))
    lpips = create_metric("lpips", net="alex", input_range="-1,1")
    assert torch.equal(lpips.from_8bit(codes)[0, 0, 0], torch.tensor([-1.0, -0.6, 1.0]))


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
        create_metric("ssim", convention="lpips").values_8bit(x, y)


def test_8bit_batches_must_match():
    a = torch.zeros(2, 16, 16, 3, dtype=torch.uint8)
    with pytest.raises(InputError, match="differ in shape"):
        create_metric("l2").triplet_values_8bit(a, a, a[:1])
