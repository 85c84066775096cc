"""VSI: parity with the authors' VSI.m (run under Octave), properties, gradients, bad input, CLI."""

from __future__ import annotations

import pytest
import torch

from percepmetric import InputError, create_metric, distance, functional
from percepmetric.metrics.vsi import rgb_to_lab_vsi, sdsp_saliency

from helpers import cli_distance_value, load_reference_pair, reference_rows, reference_shapes


def test_reference_set_covers_sizes_and_colours(reference_dir):
    shapes = {s[1:] for s in reference_shapes(reference_dir, "vsi")}
    assert {c for c, _, _ in shapes} == {1, 3}
    assert any(h % 2 and w % 2 for _, h, w in shapes) and any(h != w for _, h, w in shapes)
    assert any(min(h, w) >= 384 for _, h, w in shapes) and any(max(h, w) < 256 for _, h, w in shapes)


@pytest.mark.parametrize("precision,tolerance", [("input", 1e-5), ("float64", 1e-7)])  # measured 3.3e-6, 4.9e-9
def test_authors_values(reference_dir, precision, tolerance):
    m = create_metric("vsi", precision=precision)
    for row in reference_rows(reference_dir, "vsi"):
        x, y = load_reference_pair(reference_dir, row)
        got = m(x, y)
        assert got.shape == (1,) and got.dtype == torch.float32
        assert abs(got.item() - float(row["value"])) < tolerance, row


def test_batched_equals_reference_values(reference_dir):
    rows = [r for r in reference_rows(reference_dir, "vsi") if r["reference"].startswith("srsim/grey_121x88")]
    pairs = [load_reference_pair(reference_dir, r) for r in rows]
    x, y = torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])
    expected = torch.tensor([float(r["value"]) for r in rows])
    torch.testing.assert_close(create_metric("vsi")(x, y), expected, rtol=0, atol=1e-5)


def test_identity_and_distance():
    g = torch.Generator().manual_seed(0)
    for c in (1, 3):
        x = torch.rand(2, c, 40, 52, generator=g)
        m = create_metric("vsi")
        value = m(x, x.clone())
        torch.testing.assert_close(value, torch.ones(2), rtol=0, atol=1e-6)
        torch.testing.assert_close(m.to_distance(value), torch.zeros(2), rtol=0, atol=1e-6)
        assert distance(x, x, metric="vsi").abs().max() < 1e-6
    flat = torch.full((1, 3, 16, 16), 0.5)
    torch.testing.assert_close(create_metric("vsi")(flat, flat), torch.ones(1))  # MATLAB: NaN


def test_symmetric_and_bounded():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 3, 33, 47, generator=g)
    y = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    m = create_metric("vsi")
    a, b = m(x, y), m(y, x)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert ((a > 0) & (a < 1)).all()


def test_data_range_and_functional():
    g = torch.Generator().manual_seed(4)
    x = torch.randint(0, 256, (2, 3, 32, 32), generator=g).double()
    y = torch.randint(0, 256, (2, 3, 32, 32), generator=g).double()
    one = create_metric("vsi")(x / 255, y / 255)
    torch.testing.assert_close(create_metric("vsi", data_range=255)(x, y), one, rtol=0, atol=1e-10)
    torch.testing.assert_close(functional.vsi(x / 255, y / 255), one)


def test_grey_is_three_equal_channels():
    g = torch.Generator().manual_seed(5)
    x, y = torch.rand(2, 1, 30, 30, generator=g), torch.rand(2, 1, 30, 30, generator=g)
    m = create_metric("vsi")
    torch.testing.assert_close(m(x, y), m(x.repeat(1, 3, 1, 1), y.repeat(1, 3, 1, 1)), rtol=0, atol=1e-6)


def test_lab_without_cancellation():
    # a and b of near-grey colours: the rewritten differences in float32 match float64's plain ones
    g = torch.Generator().manual_seed(8)
    rgb = (torch.rand(1, 1, 16, 16, generator=g, dtype=torch.float64) * 255).repeat(1, 3, 1, 1)
    rgb = rgb + torch.randn(rgb.shape, generator=g, dtype=torch.float64) * 0.01
    lab64, lab32 = rgb_to_lab_vsi(rgb), rgb_to_lab_vsi(rgb.float()).double()
    torch.testing.assert_close(lab32[:, 1:], lab64[:, 1:], rtol=1e-5, atol=1e-7)


def test_lab_of_white_and_black():
    lab = rgb_to_lab_vsi(torch.tensor([255.0, 0.0], dtype=torch.float64).view(2, 1, 1, 1).expand(2, 3, 1, 1))
    assert abs(lab[1, 0].item()) < 1e-9 and abs(lab[0, 0].item() - 100.0) < 1e-5  # Y row sums to 1.0000001
    s = sdsp_saliency(torch.rand(2, 3, 41, 300, dtype=torch.float64) * 255)
    assert s.shape == (2, 1, 41, 300) and s.min() >= 0 and s.max() <= 1


def test_bad_inputs():
    m = create_metric("vsi")
    with pytest.raises(InputError, match="smaller than the 3x3"):
        m(torch.rand(1, 3, 2, 16), torch.rand(1, 3, 2, 16))
    for option, value in (("convention", "piq"), ("precision", "half")):
        with pytest.raises(InputError, match=option):
            create_metric("vsi", **{option: value})


def test_registry_round_trip():
    m = create_metric("VSI")
    assert m.options == {"data_range": 1.0, "convention": "matlab", "precision": "input"}
    assert m.lower_is_better is False and m.differentiable
    torch.testing.assert_close(m.to_distance(torch.tensor([0.75])), torch.tensor([0.25]))


def test_cli_distance(reference_dir):
    row = reference_rows(reference_dir, "vsi")[0]
    printed = cli_distance_value(reference_dir / row["reference"], reference_dir / row["distorted"], "vsi")
    assert abs(float(row["value"]) - printed) < 1e-5
