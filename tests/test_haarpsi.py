"""HaarPSI: parity with the authors' HaarPSI.m (run under Octave), properties, gradients, bad input, CLI."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from scipy.signal import convolve2d

from percepmetric import InputError, create_metric, distance, functional
from percepmetric.io import load_image
from percepmetric.metrics.haarpsi import haar_bank

from helpers import cli_distance_value

FOLDER = "haarpsi"


def reference_rows(reference_dir) -> list[dict[str, str]]:
    with open(reference_dir / FOLDER / "expected.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_reference_covers_rgb_grey_odd_and_non_square_sizes(reference_dir):
    rows = reference_rows(reference_dir)
    shapes = {load_image(reference_dir / FOLDER / f"{r['reference']}.png").shape for r in rows}
    assert {s[1] for s in shapes} == {1, 3}
    assert any(s[2] % 2 for s in shapes) and any(s[3] % 2 for s in shapes) and any(s[2] != s[3] for s in shapes)
    assert {r["subsample"] for r in rows} == {"0", "1"} and len(rows) == 20


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_values_of_the_authors_code(reference_dir, dtype):
    """Every pair of tests/data/haarpsi/expected.csv (HaarPSI.m under Octave on double(imread(..)))
    within 1e-6 (measured: 1.3e-7 in float32, 1.2e-8 in float64, whose inputs load_image divides
    by 255 in float32; the target is 1e-4)."""
    for row in reference_rows(reference_dir):
        x = load_image(reference_dir / FOLDER / f"{row['reference']}.png", dtype=dtype)
        y = load_image(reference_dir / FOLDER / f"{row['distorted']}.png", dtype=dtype)
        assert x.shape[1] == (3 if row["reference"].startswith("rgb") else 1)
        m = create_metric("haarpsi", subsample=row["subsample"] == "1")
        got = m(x, y)
        assert got.shape == (1,) and got.dtype == dtype
        assert abs(got.item() - float(row["haarpsi_m"])) < (1e-6 if dtype == torch.float32 else 1e-7), row


def test_eight_bit_path_gives_the_reference_values(reference_dir):
    from percepmetric.metrics.eight_bit import values_8bit

    row = reference_rows(reference_dir)[0]
    codes = [torch.from_numpy(np.asarray(load_image(reference_dir / FOLDER / f"{row[k]}.png")[0].permute(1, 2, 0)
                                         .mul(255).round().to(torch.uint8)))[None] for k in ("reference", "distorted")]
    got = values_8bit(create_metric("haarpsi"), *codes)
    assert abs(got.item() - float(row["haarpsi_m"])) < 1e-6


def test_identity_distance_and_symmetry():
    g = torch.Generator().manual_seed(0)
    for c in (1, 3):
        x = torch.rand(2, c, 40, 37, generator=g)
        y = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)
        m = create_metric("haarpsi")
        value = m(x, x.clone())
        torch.testing.assert_close(value, torch.ones(2), rtol=0, atol=1e-6)
        torch.testing.assert_close(m.to_distance(value), torch.zeros(2), rtol=0, atol=1e-6)
        a, b = m(x, y), m(y, x)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)  # every term of HaarPSI is symmetric
        assert ((a > 0) & (a < 1)).all()
    assert distance(x, x, metric="haarpsi").abs().max() < 1e-6
    black = torch.zeros(1, 3, 16, 16)  # HaarPSI.m: 0/0 = NaN; here uniform weights, 1
    assert create_metric("haarpsi")(black, black).item() == pytest.approx(1.0)


def test_data_range_255_matches_scaled_input():
    g = torch.Generator().manual_seed(4)
    x = torch.rand(2, 3, 32, 32, generator=g, dtype=torch.float64)
    y = torch.rand(2, 3, 32, 32, generator=g, dtype=torch.float64)
    one = create_metric("haarpsi")(x, y)
    byte = create_metric("haarpsi", data_range=255)(x * 255, y * 255)
    torch.testing.assert_close(one, byte, rtol=0, atol=1e-10)


def test_bad_inputs():
    m = create_metric("haarpsi")
    with pytest.raises(InputError, match=r"smaller than the 16x16") as info:
        m(torch.rand(1, 3, 15, 16), torch.rand(1, 3, 15, 16))
    assert "\n" not in str(info.value)
    for option, value in (("subsample", "maybe"), ("convention", "piq")):
        with pytest.raises(InputError, match=option):
            create_metric("haarpsi", **{option: value})
    with pytest.raises(InputError, match="no option"):
        create_metric("haarpsi", alpha=4.2)


def test_registry_round_trip():
    m = create_metric("haarpsi", subsample="False")
    assert m.options == {"data_range": 1.0, "subsample": False, "convention": "matlab"}
    assert m.spec == "haarpsi(convention=matlab,data_range=1.0,subsample=False)"
    assert m.lower_is_better is False and m.differentiable and m.channels == (1, 3)
    torch.testing.assert_close(m.to_distance(torch.tensor([0.75])), torch.tensor([0.25]))
    x, y = torch.rand(2, 3, 20, 20), torch.rand(2, 3, 20, 20)
    torch.testing.assert_close(functional.haarpsi(x, y), create_metric("haarpsi")(x, y))


def test_haar_bank_is_conv2_same():
    """The grouped 8x8 correlation equals MATLAB's conv2(X, haarFilter, 'same') of each scale:
    the full convolution's rows and columns from floor(k/2) on (scipy's own 'same' centres an
    even kernel one pixel earlier than MATLAB)."""
    rng = np.random.default_rng(0)
    img = rng.random((13, 10))
    bank = haar_bank(torch.device("cpu"), torch.float64)
    from percepmetric.metrics.haarpsi import _haar_magnitudes

    ours = _haar_magnitudes(torch.from_numpy(img)[None, None])[0].numpy()
    for k in range(1, 4):
        size = 2**k
        block = np.full((size, size), 2.0**-k)
        block[: size // 2] *= -1
        for index, kernel in ((k - 1, block), (k + 2, block.T)):
            full = convolve2d(img, kernel, mode="full")
            same = full[size // 2 : size // 2 + img.shape[0], size // 2 : size // 2 + img.shape[1]]
            np.testing.assert_allclose(ours[index], np.abs(same), atol=1e-12)
    assert bank.shape == (6, 1, 8, 8)


def test_cli_prints_the_reference_value(reference_dir):
    row = reference_rows(reference_dir)[0]
    folder = reference_dir / FOLDER
    printed = cli_distance_value(folder / f"{row['reference']}.png", folder / f"{row['distorted']}.png", "haarpsi")
    assert abs(printed - float(row["haarpsi_m"])) < 1e-5
