"""NLPD: parity with the authors' NLP_dist.m (run under Octave), the pyramid's steps, properties, pyiqa, CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import convolve, correlate

from percepmetric import InputError, create_metric, distance, functional
from percepmetric.metrics.eight_bit import values_8bit
from percepmetric.metrics.nlpd import DN_FILTERS, SIGMAS, divisive_normalization, laplacian_pyramid

from helpers import cli_distance_value, load_reference_pair, reference_errors, reference_rows, reference_shapes

# NLPD is unbounded: the parity target is 1e-4 relative. Measured on expected.csv:
# float64 within 4e-14; float32 within 1.1e-6, except the 1x1 and 2x3 crops (3.1e-5, 4.3e-6:
# their Laplacian levels are float32 rounding of J - J).
TOLERANCE = 1e-4
MEASURED_F64 = 1e-12
MEASURED_F32 = 4e-5






def test_reference_covers_sizes_and_colours(reference_dir):
    shapes = {s[1:] for s in reference_shapes(reference_dir, "nlpd")}
    assert {c for c, _, _ in shapes} == {1, 3}
    assert any(h != w for _, h, w in shapes) and any(h % 2 and w % 2 for _, h, w in shapes)
    assert any(min(h, w) >= 384 for _, h, w in shapes)
    assert (3, 1, 1) in shapes and any(min(h, w) <= 2 for _, h, w in shapes)  # borders wider than the image


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_parity_with_authors_code(reference_dir, dtype):
    for row, err in reference_errors(reference_dir, "nlpd", "nlpd", dtype, relative=True):
        assert err < TOLERANCE, row
        assert err < (MEASURED_F64 if dtype == torch.float64 else MEASURED_F32), (row, err)


def test_parity_from_8bit_codes_255_range_and_batches(reference_dir):
    """The benchmark's uint8 path, data_range=255 and a batch of same-sized pairs give the same numbers."""
    rows = [r for r in reference_rows(reference_dir, "nlpd") if r["reference"].startswith("gmsd/rgb_61x79")]
    pairs = [load_reference_pair(reference_dir, r) for r in rows]
    x, y = torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])
    want = torch.tensor([float(r["value"]) for r in rows], dtype=torch.float64)
    torch.testing.assert_close(create_metric("nlpd")(x.double(), y.double()), want, rtol=1e-12, atol=0)
    codes = [(t * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous() for t in (x, y)]
    torch.testing.assert_close(values_8bit(create_metric("nlpd"), *codes).double(), want, rtol=1e-5, atol=0)
    byte = create_metric("nlpd", data_range=255)((x.double() * 255).round(), (y.double() * 255).round())
    torch.testing.assert_close(byte, want, rtol=1e-12, atol=0)


def _matlab_pyramid(img: np.ndarray) -> list[np.ndarray]:
    """laplacian_pyramid_s written out with scipy: imfilter 'symmetric' (scipy's 'reflect' is
    MATLAB's 'symmetric' when the border is narrower than the image), padarray 'replicate',
    zero-interleaving and imfilter with a zero border."""
    f = np.array([0.05, 0.25, 0.4, 0.25, 0.05])
    k = np.outer(f, f)
    levels, j = [], img
    for _ in range(5):
        low = correlate(j, k, mode="reflect")[::2, ::2]
        odd = 2 * np.array(low.shape) - np.array(j.shape)
        p = np.pad(low, 1, mode="edge")
        r = np.zeros((2 * p.shape[0], 2 * p.shape[1]))
        r[::2, ::2] = 4 * p
        r = correlate(r, k, mode="constant")
        up = r[2 : r.shape[0] - 2 - odd[0], 2 : r.shape[1] - 2 - odd[1]]
        levels.append(j - up)
        j = low
    levels.append(j)
    return levels


def test_pyramid_and_normalisation_are_nlp_dist_m_written_with_scipy():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 1, 77, 70, generator=g, dtype=torch.float64)  # 77 -> 39 -> 20 -> 10 -> 5 -> 3
    ours = laplacian_pyramid(img)
    for i in range(2):
        for band, (got, want) in enumerate(zip(ours, _matlab_pyramid(img[i, 0].numpy()))):
            np.testing.assert_allclose(got[i, 0].numpy(), want, rtol=0, atol=1e-13)
            f2 = np.zeros((5, 5))
            for r, c, w in DN_FILTERS[band]:
                f2[r - 1, c - 1] = w
            dn = want / (SIGMAS[band] + convolve(np.abs(want), f2, mode="constant"))  # conv2 'same'
            np.testing.assert_allclose(divisive_normalization(got, band)[i, 0].numpy(), dn, rtol=0, atol=1e-12)


def test_identity_is_zero_symmetric_and_grey_is_used_as_is():
    g = torch.Generator().manual_seed(1)
    m = create_metric("nlpd")
    for x in (torch.rand(2, 3, 40, 37, generator=g), torch.rand(2, 1, 40, 37, generator=g)):
        assert torch.equal(m(x, x.clone()), torch.zeros(2))
        y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
        a = m(x, y)
        torch.testing.assert_close(a, m(y, x), rtol=1e-6, atol=0)
        assert (a > 0).all()
    assert distance(x, x, metric="nlpd").abs().max() == 0
    # an RGB image with equal channels on the 8-bit grid is its grey image
    grey = (torch.rand(1, 1, 30, 30, generator=g, dtype=torch.float64) * 255).round() / 255
    other = (grey + 0.05 * torch.randn(grey.shape, generator=g, dtype=torch.float64)).clamp(0, 1).mul(255).round() / 255
    torch.testing.assert_close(m(grey.expand(-1, 3, -1, -1), other.expand(-1, 3, -1, -1)), m(grey, other))
    assert m.lower_is_better and m.to_distance(torch.tensor([0.3])).item() == pytest.approx(0.3)


def test_more_distortion_is_farther():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(1, 1, 64, 64, generator=g, dtype=torch.float64)
    noise = torch.randn(x.shape, generator=g, dtype=torch.float64)
    values = [create_metric("nlpd")(x, (x + s * noise).clamp(0, 1)).item() for s in (0.01, 0.05, 0.2)]
    assert values == sorted(values)


def test_gradients_at_equality_and_gradcheck():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 21, 19, generator=g)
    m = create_metric("nlpd")
    a = x.clone().requires_grad_(True)
    m(a, x).sum().backward()
    assert torch.isfinite(a.grad).all() and a.grad.abs().max() == 0
    x64 = torch.rand(1, 1, 13, 18, generator=g, dtype=torch.float64, requires_grad=True)
    y64 = torch.rand(1, 1, 13, 18, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: create_metric("nlpd")(t, y64), (x64,), eps=1e-6, atol=1e-6)


def test_options_and_bad_inputs():
    m = create_metric("nlpd", quantize="False")
    assert m.options == {"data_range": 1.0, "convention": "matlab", "quantize": False}
    assert create_metric("nlpd").spec == "nlpd(convention=matlab,data_range=1.0,quantize=auto)"
    assert m.lower_is_better and m.differentiable and m.symmetric and m.min_size == 1
    create_metric("nlpd")(torch.rand(1, 3, 1, 1), torch.rand(1, 3, 1, 1))  # any size works, as in NLP_dist.m
    for option, value in (("convention", "pyiqa"), ("quantize", "sometimes")):
        with pytest.raises(InputError, match=option):
            create_metric("nlpd", **{option: value})
    with pytest.raises(InputError, match="channels"):
        create_metric("nlpd")(torch.rand(1, 2, 8, 8), torch.rand(1, 2, 8, 8))
    # quantize=False keeps the float luma: off-grid RGB differs from the rounded grey
    g = torch.Generator().manual_seed(4)
    x, y = torch.rand(2, 1, 3, 16, 16, generator=g, dtype=torch.float64)
    assert create_metric("nlpd", quantize=True)(x, y).item() != create_metric("nlpd", quantize=False)(x, y).item()
    assert torch.equal(functional.nlpd(x, y), create_metric("nlpd")(x, y))


def test_against_pyiqa(reference_dir):
    """pyiqa's nlpd (0.1.16) differs by 0.0056 on its own TID2013 calibration pair I04 (0.0139
    against NLP_dist.m's 0.0195) and by up to 1.1% here (0.46% on I01 / i01_01_5). Two reasons,
    measured one at a time: it feeds the pyramid YIQ's float luma 0.299 R + 0.587 G + 0.114 B
    where the evaluations feed double(rgb2gray(uint8)) / 255, rounded to integers (for nearly
    equal images that rounding noise dominates: it is all of I04's gap); and its first
    normalisation filter is NLP_dist.m's 5x5 F2 cut to 3x3, dropping the weight 0.0072 at (3, 5)
    (up to 1e-3)."""
    pyiqa = pytest.importorskip("pyiqa")
    metric = pyiqa.create_metric("nlpd", device="cpu", as_loss=False)
    diffs = []
    for row in reference_rows(reference_dir, "nlpd"):
        x, y = (t.expand(-1, 3, -1, -1) for t in load_reference_pair(reference_dir, row))  # pyiqa takes RGB only
        if min(x.shape[-2:]) < 3:  # pyiqa's symmetric padding needs 3 pixels
            continue
        diffs.append(abs(metric(y, x).item() - float(row["value"])) / float(row["value"]))
    assert 1e-3 < max(diffs) < 0.02


def test_cli_distance(reference_dir):
    rows = reference_rows(reference_dir, "nlpd")
    row = next(r for r in rows if r["distorted"].endswith("i01_01_5.bmp") and not r["crop"])
    printed = cli_distance_value(reference_dir / row["reference"], reference_dir / row["distorted"], "nlpd")
    assert abs(printed - float(row["value"])) / float(row["value"]) < 1e-5
