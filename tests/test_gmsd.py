"""GMSD: parity with the authors' GMSD.m (run under Octave), properties, gradients, bad input, CLI."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from scipy.signal import convolve2d

from percepmetric import InputError, create_metric, distance, functional
from percepmetric.io import load_image
from percepmetric.metrics.eight_bit import values_8bit
from percepmetric.metrics.gmsd import RGB2GRAY_EXACT, gms_map, gmsd, matlab_rgb2gray_255

from helpers import cli_distance_value

# GMSD.m's values are std2 of a similarity map in [0, 1]: 1e-4 absolute is the parity
# target. Measured: float64 within 3e-16, float32 within 5e-8.
TOLERANCE = 1e-4
MEASURED_F64 = 1e-12
MEASURED_F32 = 2e-7


def reference_rows(reference_dir) -> list[dict[str, str]]:
    with open(reference_dir / "gmsd" / "reference.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_reference_covers_sizes_and_colours(reference_dir):
    shapes = {tuple(load_image(reference_dir / r["reference"]).shape) for r in reference_rows(reference_dir)}
    assert any(s[1] == 1 for s in shapes) and any(s[1] == 3 for s in shapes)
    assert any(s[2] != s[3] for s in shapes)  # non-square
    assert any(s[2] % 2 or s[3] % 2 for s in shapes)  # odd sizes: the downsampling's edge
    assert len(shapes) >= 5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_parity_with_authors_code(reference_dir, dtype):
    for row in reference_rows(reference_dir):
        x = load_image(reference_dir / row["reference"]).to(dtype)
        y = load_image(reference_dir / row["distorted"]).to(dtype)
        got = create_metric("gmsd")(x, y)
        assert got.shape == (1,) and got.dtype == dtype
        err = abs(got.item() - float(row["value"]))
        assert err < TOLERANCE, row
        assert err < (MEASURED_F64 if dtype == torch.float64 else MEASURED_F32), (row, err)


def test_parity_from_8bit_codes_and_255_range(reference_dir):
    """The benchmark's uint8 path and data_range=255 give the same numbers."""
    for row in reference_rows(reference_dir):
        x = load_image(reference_dir / row["reference"])
        y = load_image(reference_dir / row["distorted"])
        codes = [(t * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous() for t in (x, y)]
        got = values_8bit(create_metric("gmsd"), *codes)
        assert abs(got.item() - float(row["value"])) < MEASURED_F32, row
        byte = create_metric("gmsd", data_range=255)((x * 255).round(), (y * 255).round())
        assert abs(byte.item() - float(row["value"])) < MEASURED_F32, row


def test_matlab_rgb2gray_rounds_as_uint8():
    codes = torch.tensor([[10, 200, 33], [255, 255, 255], [0, 0, 0], [128, 64, 250]], dtype=torch.float64)
    rgb = (codes / 255).T.reshape(1, 3, 4, 1)
    grey = matlab_rgb2gray_255(rgb, 1.0, "auto").flatten()
    expected = np.floor(codes.numpy() @ np.array(RGB2GRAY_EXACT) + 0.5)
    assert grey.tolist() == expected.tolist()
    unrounded = matlab_rgb2gray_255(rgb, 1.0, False).flatten()
    np.testing.assert_allclose(unrounded.numpy(), codes.numpy() @ np.array(RGB2GRAY_EXACT), atol=1e-12)
    # "auto" leaves off-grid images unrounded; True rounds them
    off = rgb + 0.3 / 255
    assert not torch.equal(matlab_rgb2gray_255(off, 1.0, "auto"), matlab_rgb2gray_255(off, 1.0, True))


def test_map_is_gmsd_m_written_with_conv2():
    """The batched map against GMSD.m's steps written out with scipy's conv2 ('same')."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 13, 10, generator=g, dtype=torch.float64)
    y = torch.rand(2, 1, 13, 10, generator=g, dtype=torch.float64)
    got = gms_map(x, y)
    dx = np.array([[1, 0, -1]] * 3) / 3.0
    for i in range(2):
        maps = []
        for img in (x[i, 0].numpy() * 255, y[i, 0].numpy() * 255):
            # MATLAB's conv2 'same' keeps full[1:, 1:] for a 2x2 kernel (scipy's 'same' keeps full[:-1, :-1])
            ave = convolve2d(img, np.ones((2, 2)) / 4, mode="full")[1:, 1:][::2, ::2]
            ix, iy = convolve2d(ave, dx, mode="same"), convolve2d(ave, dx.T, mode="same")
            maps.append(np.sqrt(ix**2 + iy**2))
        q = (2 * maps[0] * maps[1] + 170) / (maps[0] ** 2 + maps[1] ** 2 + 170)
        np.testing.assert_allclose(got[i, 0].numpy(), q, rtol=0, atol=1e-12)
        assert gmsd(x[i : i + 1], y[i : i + 1]).item() == pytest.approx(np.std(q, ddof=1), abs=1e-12)


def test_identity_is_zero_and_symmetric():
    g = torch.Generator().manual_seed(1)
    rgb = torch.rand(2, 3, 40, 37, generator=g)
    grey = torch.rand(2, 1, 40, 37, generator=g)
    m = create_metric("gmsd")
    for x in (rgb, grey):
        assert torch.equal(m(x, x.clone()), torch.zeros(2))
        y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
        a, b = m(x, y), m(y, x)
        assert torch.equal(a, b)
        assert ((a > 0) & (a < 0.5)).all()
    assert distance(rgb, rgb, metric="gmsd").abs().max() == 0
    assert m.lower_is_better and m.to_distance(torch.tensor([0.1])).item() == pytest.approx(0.1)


def test_bad_inputs():
    m = create_metric("gmsd")
    with pytest.raises(InputError, match="smaller than the 3x3") as info:
        m(torch.rand(1, 3, 2, 16), torch.rand(1, 3, 2, 16))
    assert "\n" not in str(info.value)
    m(torch.rand(1, 3, 3, 3), torch.rand(1, 3, 3, 3))  # the minimum works
    for option, value in (("convention", "piq"), ("quantize", "sometimes")):
        with pytest.raises(InputError, match=option):
            create_metric("gmsd", **{option: value})
    with pytest.raises(InputError, match="no option"):
        create_metric("gmsd", t=170)


def test_registry_round_trip():
    m = create_metric("gmsd", quantize="False")
    assert m.options == {"data_range": 1.0, "convention": "matlab", "quantize": False}
    assert create_metric("gmsd").spec == "gmsd(convention=matlab,data_range=1.0,quantize=auto)"
    assert m.lower_is_better and m.differentiable and m.symmetric


def test_against_piq(reference_dir):
    """piq's gmsd (0.8) differs by up to 3e-3 on these pairs: it uses the unrounded float luma
    of its own YIQ, pads the 2x2 mean on both sides (replicate) and the Prewitt kernels with
    reflection, and takes the population standard deviation (see docs/metrics.md)."""
    piq = pytest.importorskip("piq")
    diffs = []
    for row in reference_rows(reference_dir):
        x = load_image(reference_dir / row["reference"]).double()
        y = load_image(reference_dir / row["distorted"]).double()
        diffs.append(abs(piq.gmsd(y, x, data_range=1.0).item() - float(row["value"])))
    assert max(diffs) < 5e-3


def test_cli_distance(reference_dir):
    row = next(r for r in reference_rows(reference_dir) if r["distorted"].endswith("i01_01_5.bmp"))
    printed = cli_distance_value(reference_dir / row["reference"], reference_dir / row["distorted"], "gmsd")
    assert abs(printed - float(row["value"])) < 1e-6


# ---------------------------------------------------------------- MS-GMSD / MS-GMSDc (no authors' code: piq)

# MS-GMSD equals piq's multi_scale_gmsd to float64 rounding (measured 3e-17); MS-GMSDc differs
# by up to 5e-6: its I and Q rows are FeatureSIM.m's (0.596, -0.274, -0.322; 0.211, -0.523,
# 0.312), piq's are rounded to four digits (0.5959, -0.2746, -0.3213; 0.2115, -0.5227, 0.3112).
MS_PIQ_TOLERANCE = {False: 1e-12, True: 1e-5}


def piq_rows(reference_dir) -> list[dict[str, str]]:
    with open(reference_dir / "gmsd" / "ms_gmsd_piq.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ms_gmsd_matches_piq_values(reference_dir, dtype):
    rows = piq_rows(reference_dir)
    assert {r["chromatic"] for r in rows} == {"False", "True"} and len(rows) >= 10
    for row in rows:
        chromatic = row["chromatic"] == "True"
        # code / 255 in float64, as piq's values were made (load_image reads float32)
        x, y = ((load_image(reference_dir / row[k]).double() * 255).round() / 255 for k in ("reference", "distorted"))
        got = create_metric("ms_gmsd", chromatic=chromatic)(x.to(dtype), y.to(dtype))
        assert got.dtype == dtype
        tol = MS_PIQ_TOLERANCE[chromatic] if dtype == torch.float64 else 1e-5
        assert abs(got.item() - float(row["value"])) < tol, row


def test_ms_gmsd_against_live_piq():
    piq = pytest.importorskip("piq")
    g = torch.Generator().manual_seed(11)
    for shape in ((3, 3, 64, 64), (2, 3, 61, 79), (2, 1, 75, 50), (2, 3, 17, 18)):
        x = torch.rand(shape, generator=g, dtype=torch.float64)
        y = (x + 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0, 1)
        for chromatic in (False, True) if shape[1] == 3 else (False,):
            want = piq.multi_scale_gmsd(y, x, chromatic=chromatic, reduction="none")
            got = create_metric("ms_gmsd", chromatic=chromatic)(x, y)
            torch.testing.assert_close(got, want, rtol=0, atol=MS_PIQ_TOLERANCE[chromatic])


def test_ms_gmsd_properties():
    g = torch.Generator().manual_seed(12)
    x = torch.rand(4, 3, 40, 37, generator=g)
    y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    for chromatic in (False, True):
        m = create_metric("ms_gmsd", chromatic=chromatic)
        assert torch.equal(m(x, x.clone()), torch.zeros(4))
        a = m(x, y)
        torch.testing.assert_close(a, m(y, x), rtol=0, atol=1e-7)
        single = torch.cat([m(x[i : i + 1], y[i : i + 1]) for i in range(4)])
        torch.testing.assert_close(a, single, rtol=0, atol=1e-7)
        assert m(x, y.double()).dtype == torch.float64
        torch.testing.assert_close(m(x.double(), y.double()), a.double(), rtol=0, atol=1e-5)
        byte = create_metric("ms_gmsd", chromatic=chromatic, data_range=255)(x.double() * 255, y.double() * 255)
        torch.testing.assert_close(byte, m(x.double(), y.double()), rtol=0, atol=1e-10)
        assert ((a > 0) & (a < 0.5)).all()
    grey = torch.rand(2, 1, 20, 20, generator=g)
    assert torch.equal(functional.ms_gmsd(grey, grey), torch.zeros(2))


@pytest.mark.parametrize("chromatic", [False, True])
def test_ms_gmsd_gradients(chromatic):
    g = torch.Generator().manual_seed(13)
    x = torch.rand(2, 3, 20, 19, generator=g)
    m = create_metric("ms_gmsd", chromatic=chromatic)
    for a, b in ((x, x.clone()), (torch.full_like(x, 0.5), torch.full_like(x, 0.5)), (torch.zeros_like(x), x),
                 (x, torch.rand(x.shape, generator=g))):
        a, b = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
        m(a, b).sum().backward()
        assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()
    a = x.clone().requires_grad_(True)
    m(a, x).sum().backward()
    assert a.grad.abs().max() == 0
    x64 = torch.rand(1, 3, 17, 18, generator=g, dtype=torch.float64, requires_grad=True)
    y64 = torch.rand(1, 3, 17, 18, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: m(a, y64), (x64,), eps=1e-6, atol=1e-6)


def test_ms_gmsd_bad_inputs_and_registry():
    m = create_metric("ms_gmsd")
    with pytest.raises(InputError, match="smaller than the 17x17") as info:
        m(torch.rand(1, 3, 16, 40), torch.rand(1, 3, 16, 40))
    assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="needs RGB"):
        create_metric("ms_gmsd", chromatic=True)(torch.rand(1, 1, 20, 20), torch.rand(1, 1, 20, 20))
    with pytest.raises(InputError, match="chromatic"):
        create_metric("ms_gmsd", chromatic="maybe")
    mc = create_metric("ms_gmsd", chromatic="True")
    assert mc.spec == "ms_gmsd(chromatic=True,data_range=1.0)"
    assert mc.lower_is_better and mc.differentiable and mc.symmetric
