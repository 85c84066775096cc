"""CW-SSIM: parity with the authors' cwssim_index.m (run under Octave), the pyramid, properties, gradients, bad input.

The shared property tests (tests/test_classic_properties.py, test_api.py's SMALL, test_range_doors.py)
run on images of 32 to 48 pixels; CW-SSIM needs 64 (buildSCFpyr's 4 levels), so the same
properties are checked here at 64 and more.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from percepmetric import InputError, create_metric, distance, functional
from percepmetric.metrics.cwssim import MIN_SIZE, _pool_weights64
from percepmetric.metrics.eight_bit import values_8bit
from percepmetric.metrics.pyramids import point_op, scf_bands

from helpers import cli_distance_value, load_reference_pair, reference_errors, reference_rows, reference_shapes

# cwssim_index.m's values are means of pooled maps in [0, 1]: 1e-4 absolute is the issue's
# parity target. Measured: float64 within 5e-15, float32 input within 3e-8.
TOLERANCE = 1e-4
MEASURED_F64 = 1e-12
MEASURED_F32 = 1e-7






def _pair(n: int = 3, channels: int = 3, h: int = 64, w: int = 71, dtype=torch.float32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, channels, h // 4, w // 4, generator=g, dtype=dtype)
    x = torch.nn.functional.interpolate(base, size=(h, w), mode="bilinear", align_corners=False)
    y = (x + 0.08 * torch.randn(x.shape, generator=g, dtype=dtype)).clamp(0, 1)
    return x, y


def test_reference_covers_sizes_and_colours(reference_dir):
    shapes = reference_shapes(reference_dir, "cw_ssim")
    assert any(s[1] == 1 for s in shapes) and any(s[1] == 3 for s in shapes)
    assert any(s[2] != s[3] for s in shapes)  # non-square
    assert any(s[2] % 2 or s[3] % 2 for s in shapes)  # odd sizes: the spectrum's centre
    assert any(min(s[2:]) == MIN_SIZE for s in shapes)  # the minimum
    assert len(shapes) >= 8


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_parity_with_authors_code(reference_dir, dtype):
    for row, err in reference_errors(reference_dir, "cw_ssim", "cw_ssim", dtype):
        assert err < TOLERANCE, row
        assert err < (MEASURED_F64 if dtype == torch.float64 else MEASURED_F32), (row, err)


def test_parity_from_8bit_codes_and_255_range_and_batch(reference_dir):
    rows = [r for r in reference_rows(reference_dir, "cw_ssim") if r["reference"].startswith("srsim/grey")]
    xs, ys = [], []
    for row in rows:
        x, y = load_reference_pair(reference_dir, row)
        codes = [(t * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous() for t in (x, y)]
        got = values_8bit(create_metric("cw_ssim"), *codes)
        assert abs(got.item() - float(row["value"])) < MEASURED_F32, row
        byte = create_metric("cw_ssim", data_range=255)((x * 255).round(), (y * 255).round())
        assert abs(byte.item() - float(row["value"])) < MEASURED_F32, row
        xs.append(x)
        ys.append(y)
    batch = create_metric("cw_ssim")(torch.cat(xs).double(), torch.cat(ys).double())
    np.testing.assert_allclose(batch.numpy(), [float(r["value"]) for r in rows], rtol=0, atol=MEASURED_F64)


def test_point_op_is_pointop_mex():
    """pointOp.c: index = trunc((v - origin) / step) clipped to [0, n-2], linear in that segment
    (so the end segments extend past the table)."""
    lut = torch.tensor([0.0, 1.0, 4.0, 9.0], dtype=torch.float64)
    v = torch.tensor([-1.0, 0.0, 0.25, 1.5, 3.0, 4.0], dtype=torch.float64)
    got = point_op(v, lut, 0.0, 1.0)
    torch.testing.assert_close(got, torch.tensor([-1.0, 0.0, 0.25, 2.5, 9.0, 14.0], dtype=torch.float64))


def test_bands_are_analytic_and_tile_the_orientations():
    """The level-4 bands of a real image are complex (analytic, one lobe per orientation); their
    number and size follow buildSCFpyr (ceil halving three times)."""
    g = torch.Generator().manual_seed(0)
    im = torch.rand(2, 97, 131, generator=g, dtype=torch.float64) * 255
    bands = scf_bands(im, 4, 8)
    assert bands.shape == (2, 8, 13, 17) and bands.dtype == torch.complex128
    assert bands.imag.abs().max() > 1.0


def test_pool_weights_are_fspecial_gaussian():
    w = _pool_weights64(13, 17, torch.device("cpu"))
    assert w.shape == (7, 11)
    assert float(w.sum()) == pytest.approx(1.0, abs=1e-15)
    ratio = float(w[3, 5] / w[3, 6])  # one step off the centre, sigma = 13 / 4
    assert ratio == pytest.approx(math.exp(1 / (2 * (13 / 4) ** 2)), rel=1e-12)


@pytest.mark.parametrize("channels", [1, 3])
def test_identity_batch_and_symmetry(channels):
    m = create_metric("cw_ssim")
    x, y = _pair(channels=channels)
    torch.testing.assert_close(m(x, x.clone()), torch.ones(3), rtol=0, atol=1e-6)
    a = m(x, y)
    single = torch.cat([m(x[i : i + 1], y[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(a, single, rtol=0, atol=1e-6)
    assert ((a > 0.5) & (a < 1)).all()
    torch.testing.assert_close(a, m(y, x), rtol=0, atol=1e-6)
    assert m.symmetric and not m.lower_is_better
    torch.testing.assert_close(m.to_distance(a), 1 - a)
    assert distance(x, x, metric="cw_ssim").abs().max() < 1e-6
    torch.testing.assert_close(functional.cw_ssim(x, y), a)


def test_dtypes_flat_images_and_shift_tolerance():
    m = create_metric("cw_ssim")
    x, y = _pair(dtype=torch.float64)
    v64 = m(x, y)
    assert m(x.float(), y).dtype == torch.float64
    v32 = m(x.float(), y.float())
    assert v32.dtype == torch.float32
    torch.testing.assert_close(v32.double(), v64, rtol=0, atol=1e-6)
    flat = torch.full((1, 1, 64, 64), 0.5)
    assert m(flat, flat).item() == pytest.approx(1.0, abs=1e-6)  # MATLAB: NaN (0/0 with K = 0)
    assert torch.isfinite(m(torch.zeros_like(flat), flat)).all()
    # a one-pixel shift costs CW-SSIM far less than noise of the same mean squared error
    img = x[:1, :1]
    shifted = torch.roll(img, 1, dims=-1)
    mse = float(((shifted - img) ** 2).mean())
    noisy = (img + math.sqrt(mse) * torch.randn(img.shape, generator=torch.Generator().manual_seed(1),
                                                 dtype=torch.float64)).clamp(0, 1)
    assert m(img, shifted).item() > m(img, noisy).item()


def test_gradients_finite_and_match_finite_differences():
    m = create_metric("cw_ssim")
    x, y = _pair(n=2)
    pairs = {"x == y": (x, x.clone()), "noisy": (x, y), "flat": (torch.full_like(x, 0.5), torch.full_like(x, 0.5)),
             "black vs image": (torch.zeros_like(x), x)}
    for label, (a, b) in pairs.items():
        a, b = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
        m.as_loss()(a, b).backward()
        assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all(), label
    g = torch.Generator().manual_seed(3)
    x64 = torch.rand(1, 1, 64, 66, generator=g, dtype=torch.float64, requires_grad=True)
    y64 = torch.rand(1, 1, 64, 66, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: m(a, y64), (x64,), eps=1e-6, atol=1e-5, fast_mode=True)


def test_bad_inputs_and_registry():
    m = create_metric("cw_ssim")
    with pytest.raises(InputError, match="smaller than the 64x64") as info:
        m(torch.rand(1, 3, 63, 100), torch.rand(1, 3, 63, 100))
    assert "\n" not in str(info.value)
    for option, value in (("convention", "pyiqa"), ("quantize", "sometimes")):
        with pytest.raises(InputError, match=option):
            create_metric("cw_ssim", **{option: value})
    with pytest.raises(InputError, match="no option"):
        create_metric("cw_ssim", level=3)
    assert create_metric("cw_ssim").spec == "cw_ssim(convention=matlab,data_range=1.0,quantize=auto)"
    assert m.differentiable and m.min_size == MIN_SIZE == 64


def test_against_pyiqa(reference_dir):
    """pyiqa 0.1.16's cw_ssim (the same 4 levels, 8 orientations, K = 0) computes the same
    pyramid: on grey pairs it agrees to its float32 (measured 3e-8); on RGB it takes the
    unrounded Y of YIQ (0.299 R + 0.587 G + 0.114 B) where cwssim_index.m is fed rgb2gray's
    uint8, which moves the value by up to 7e-5 on these pairs."""
    pyiqa = pytest.importorskip("pyiqa")
    metric = pyiqa.create_metric("cw_ssim", device="cpu", as_loss=False)
    for row in reference_rows(reference_dir, "cw_ssim"):
        x, y = load_reference_pair(reference_dir, row)
        err = abs(float(metric(y, x)) - float(row["value"]))
        assert err < (1e-7 if x.shape[1] == 1 else 1e-4), (row, err)


def test_cli_distance(reference_dir):
    row = reference_rows(reference_dir, "cw_ssim")[-1]
    printed = cli_distance_value(reference_dir / row["reference"], reference_dir / row["distorted"], "cw_ssim")
    assert abs(printed - float(row["value"])) < 1e-6
