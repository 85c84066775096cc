"""IW-SSIM: parity with the authors' iwssim.m (run under Octave), the pyramid, properties, gradients, bad input.

The shared property tests (tests/test_classic_properties.py, test_api.py's SMALL, test_range_doors.py)
run on images of 32 to 64 pixels; IW-SSIM needs 176 (iwssim.m's 11 * 2^4), so the same
properties are checked here at 176 and more.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from percepmetric import InputError, create_metric, distance, functional
from percepmetric.metrics.eight_bit import values_8bit
from percepmetric.metrics.iwssim import MIN_SIZE, _enlarge_matrix64
from percepmetric.metrics.pyramids import BINOM5, laplacian_pyramid
from percepmetric.metrics.resize import imresize

from helpers import cli_distance_value, load_reference_pair, reference_errors, reference_rows, reference_shapes

# iwssim.m's values are products of pooled SSIM terms in [0, 1]: 1e-4 absolute is the issue's
# parity target. Measured: float64 within 2e-15, float32 input within 5e-8.
TOLERANCE = 1e-4
MEASURED_F64 = 1e-12
MEASURED_F32 = 2e-7






def _pair(n: int = 2, channels: int = 3, h: int = 176, w: int = 181, dtype=torch.float32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, channels, h // 4, w // 4, generator=g, dtype=dtype)
    x = torch.nn.functional.interpolate(base, size=(h, w), mode="bilinear", align_corners=False)
    y = (x + 0.08 * torch.randn(x.shape, generator=g, dtype=dtype)).clamp(0, 1)
    return x, y


def test_reference_covers_sizes_and_colours(reference_dir):
    shapes = reference_shapes(reference_dir, "iw_ssim")
    assert any(s[1] == 1 for s in shapes) and any(s[1] == 3 for s in shapes)
    assert any(s[2] != s[3] for s in shapes)  # non-square
    assert any(s[2] % 2 or s[3] % 2 for s in shapes)  # odd sizes: the pyramid's edges
    assert any(min(s[2:]) == MIN_SIZE for s in shapes)  # the minimum
    assert len(shapes) >= 6


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_parity_with_authors_code(reference_dir, dtype):
    for row, err in reference_errors(reference_dir, "iw_ssim", "iw_ssim", dtype):
        assert err < TOLERANCE, row
        assert err < (MEASURED_F64 if dtype == torch.float64 else MEASURED_F32), (row, err)


def test_parity_from_8bit_codes_and_255_range(reference_dir):
    """The benchmark's uint8 path and data_range=255 give the same numbers; so does a batch."""
    rows = [r for r in reference_rows(reference_dir, "iw_ssim")
            if r["crop"] == "100 37 177 203" or "179x197" in r["reference"]]
    for row in rows:
        x, y = load_reference_pair(reference_dir, row)
        codes = [(t * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous() for t in (x, y)]
        got = values_8bit(create_metric("iw_ssim"), *codes)
        assert abs(got.item() - float(row["value"])) < MEASURED_F32, row
        byte = create_metric("iw_ssim", data_range=255)((x * 255).round(), (y * 255).round())
        assert abs(byte.item() - float(row["value"])) < MEASURED_F32, row


def test_pyramid_is_buildlpyr_written_with_numpy():
    """binom5 with 'reflect1' edges (mirror about the edge sample), keep every second sample;
    expand: zeros between the samples, same filter and edges (checked against the MEX files)."""
    f = np.array(BINOM5)

    def reduce1(v):
        p = np.pad(v, 2, mode="reflect")
        return np.convolve(p, f, mode="valid")[::2]

    def expand1(v, n):
        up = np.zeros(n)
        up[::2] = v
        return np.convolve(np.pad(up, 2, mode="reflect"), f, mode="valid")

    g = np.random.default_rng(0)
    im = g.uniform(0, 255, (23, 30))
    got = laplacian_pyramid(torch.from_numpy(im)[None], 3)
    want, x = [], im
    for _ in range(2):
        lo = np.apply_along_axis(reduce1, 0, np.apply_along_axis(reduce1, 1, x))
        up = np.apply_along_axis(expand1, 1, np.apply_along_axis(expand1, 0, lo, x.shape[0]), x.shape[1])
        want.append(x - up)
        x = lo
    want.append(x)
    assert [tuple(b.shape[1:]) for b in got] == [(23, 30), (12, 15), (6, 8)]
    for a, b in zip(got, want):
        np.testing.assert_allclose(a[0].numpy(), b, rtol=0, atol=1e-10)


def test_enlarge_matrices_are_imenlarge2():
    """imenlarge2.m step by step on a 2-D band (MATLAB bilinear imresize to [4M-3 4N-3], the
    border rows then columns extrapolated, every second sample) equals the two matrices."""
    g = torch.Generator().manual_seed(5)
    band = torch.randn(7, 10, generator=g, dtype=torch.float64)
    t1 = imresize(band, size=(4 * 7 - 3, 4 * 10 - 3), kernel="bilinear")
    t2 = torch.zeros(4 * 7 - 1, 4 * 10 - 1, dtype=torch.float64)
    t2[1:-1, 1:-1] = t1
    t2[0, :] = 2 * t2[1, :] - t2[2, :]
    t2[-1, :] = 2 * t2[-2, :] - t2[-3, :]
    t2[:, 0] = 2 * t2[:, 1] - t2[:, 2]
    t2[:, -1] = 2 * t2[:, -2] - t2[:, -3]
    want = t2[::2, ::2]
    eh, ew = _enlarge_matrix64(7, torch.device("cpu")), _enlarge_matrix64(10, torch.device("cpu"))
    assert eh.shape == (14, 7) and ew.shape == (20, 10)
    torch.testing.assert_close(eh @ band @ ew.T, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("channels", [1, 3])
def test_identity_batch_and_asymmetry(channels):
    m = create_metric("iw_ssim")
    x, y = _pair(n=3, channels=channels)
    torch.testing.assert_close(m(x, x.clone()), torch.ones(3), rtol=0, atol=1e-6)
    a = m(x, y)
    single = torch.cat([m(x[i : i + 1], y[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(a, single, rtol=0, atol=1e-6)
    assert ((a > 0.5) & (a < 1)).all()
    assert not torch.allclose(a, m(y, x), rtol=0, atol=1e-7)  # the weights are the reference's
    assert not m.symmetric and not m.lower_is_better
    torch.testing.assert_close(m.to_distance(a), 1 - a)
    assert distance(x, x, metric="iw_ssim").abs().max() < 1e-6
    torch.testing.assert_close(functional.iw_ssim(x, y), a)


def test_dtypes_and_flat_images():
    m = create_metric("iw_ssim")
    x, y = _pair(dtype=torch.float64)
    v64 = m(x, y)
    assert m(x.float(), y).dtype == torch.float64
    v32 = m(x.float(), y.float())
    assert v32.dtype == torch.float32
    torch.testing.assert_close(v32.double(), v64, rtol=0, atol=1e-6)
    flat = torch.full((1, 3, 176, 176), 0.5)
    assert m(flat, flat).item() == pytest.approx(1.0, abs=1e-6)  # MATLAB: NaN (weights 0/0); the plain mean here
    black = torch.zeros_like(flat)
    assert 0 <= m(black, flat).item() < 1 and torch.isfinite(m(flat, black)).all()


def test_gradients_finite_and_match_finite_differences():
    m = create_metric("iw_ssim")
    x, y = _pair()
    pairs = {"x == y": (x, x.clone()), "noisy": (x, y), "flat": (torch.full_like(x, 0.5), torch.full_like(x, 0.5)),
             "black vs image": (torch.zeros_like(x), x)}
    for label, (a, b) in pairs.items():
        a, b = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
        m.as_loss()(a, b).backward()
        assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all(), label
    g = torch.Generator().manual_seed(3)
    x64 = torch.rand(1, 1, 176, 177, generator=g, dtype=torch.float64, requires_grad=True)
    y64 = torch.rand(1, 1, 176, 177, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: m(y64, a), (x64,), eps=1e-6, atol=1e-5, fast_mode=True)


def test_bad_inputs_and_registry():
    m = create_metric("iw_ssim")
    with pytest.raises(InputError, match="smaller than the 176x176") as info:
        m(torch.rand(1, 3, 175, 300), torch.rand(1, 3, 175, 300))
    assert "\n" not in str(info.value)
    for option, value in (("convention", "piq"), ("quantize", "sometimes")):
        with pytest.raises(InputError, match=option):
            create_metric("iw_ssim", **{option: value})
    with pytest.raises(InputError, match="no option"):
        create_metric("iw_ssim", sigma_nsq=0.4)
    assert create_metric("iw_ssim").spec == "iw_ssim(convention=matlab,data_range=1.0,quantize=auto)"
    assert create_metric("iw_ssim", quantize="False").options["quantize"] is False
    assert m.differentiable and m.min_size == MIN_SIZE == 176


def test_against_piq(reference_dir):
    """piq 0.8's information_weighted_ssim (distorted image first) on the same rounded grey
    differs by up to 3e-5 (odd sizes: its pyramid's edges); on RGB by up to 2e-4 more (it takes
    the unrounded Y of YIQ, 0.299 R + 0.587 G + 0.114 B, where iwssim.m is fed rgb2gray's uint8)."""
    piq = pytest.importorskip("piq")
    for row in reference_rows(reference_dir, "iw_ssim"):
        x, y = (t.double() for t in load_reference_pair(reference_dir, row))
        want = float(row["value"])
        assert abs(piq.information_weighted_ssim(y, x, data_range=1.0, reduction="none").item() - want) < 3e-4
        if x.shape[1] == 1:
            assert abs(piq.information_weighted_ssim(y, x, data_range=1.0, reduction="none").item() - want) < 3e-5


def test_cli_distance(reference_dir):
    row = reference_rows(reference_dir, "iw_ssim")[-1]
    printed = cli_distance_value(reference_dir / row["reference"], reference_dir / row["distorted"], "iw_ssim")
    assert abs(printed - float(row["value"])) < 1e-6  # the value itself, printed to 6 digits
