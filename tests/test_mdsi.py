"""MDSI: parity with the authors' MDSI.m (run under Octave), properties, gradients, bad input, CLI."""

from __future__ import annotations

import csv

import pytest
import torch

from percepmetric import InputError, create_metric, distance, functional
from percepmetric.io import load_image
from percepmetric.metrics.mdsi import mdsi

from helpers import cli_distance_value


def reference_rows(reference_dir) -> list[dict[str, str]]:
    with open(reference_dir / "mdsi" / "expected.csv", newline="") as f:
        return list(csv.DictReader(f))


def load_pair(reference_dir, row: dict[str, str], dtype: torch.dtype = torch.float32):
    """The pair as MDSI.m saw it: the files cropped to MATLAB's 1-based inclusive ranges (0: to the end)."""
    r0, r1, c0, c1 = (int(row[k]) for k in ("first_row", "last_row", "first_col", "last_col"))
    pair = [load_image(reference_dir / row[k], dtype=dtype)[..., r0 - 1 : (r1 or None), c0 - 1 : (c1 or None)]
            for k in ("reference", "distorted")]
    assert pair[0].shape[-2:] == (int(row["height"]), int(row["width"]))
    return pair


def test_reference_covers_sizes_downsampling_rgb_and_grey(reference_dir):
    rows = reference_rows(reference_dir)
    sizes = {(int(r["height"]), int(r["width"])) for r in rows}
    assert any(h % 2 for h, _ in sizes) and any(w % 2 for _, w in sizes) and any(h != w for h, w in sizes)
    assert any(min(s) >= 384 for s in sizes) and any(min(s) < 384 for s in sizes)  # f = 2 and f = 1
    assert {load_pair(reference_dir, r)[0].shape[1] for r in rows} == {1, 3}
    assert len(rows) == 15


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("combination", ["sum", "mult"])
def test_values_of_the_authors_code(reference_dir, dtype, combination):
    """Every pair of tests/data/mdsi/expected.csv (MDSI.m under Octave on imread's uint8, grey as
    three channels) within 1e-6 (measured: 3.7e-7 in float32, 4.1e-8 in float64, whose inputs
    load_image divides by 255 in float32; the target is 1e-4)."""
    m = create_metric("mdsi", combination=combination)
    for row in reference_rows(reference_dir):
        x, y = load_pair(reference_dir, row, dtype)
        got = m(x, y)
        assert got.shape == (1,) and got.dtype == dtype
        assert abs(got.item() - float(row[f"mdsi_{combination}"])) < (1e-6 if dtype == torch.float32 else 1e-7), row


def test_eight_bit_path_gives_the_reference_values(reference_dir):
    from percepmetric.metrics.eight_bit import values_8bit

    row = reference_rows(reference_dir)[10]  # TID2013 384x512: downsampled by 2
    codes = [(t[0].permute(1, 2, 0) * 255).round().to(torch.uint8)[None] for t in load_pair(reference_dir, row)]
    got = values_8bit(create_metric("mdsi"), *codes)
    assert abs(got.item() - float(row["mdsi_sum"])) < 1e-6


def test_identity_is_zero_and_reference_matters():
    g = torch.Generator().manual_seed(0)
    for c in (1, 3):
        x = torch.rand(2, c, 40, 37, generator=g)
        y = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)
        for combination in ("sum", "mult"):
            m = create_metric("mdsi", combination=combination)
            assert m(x, x.clone()).abs().max() == 0
            a = m(x, y)
            assert (a > 0).all() and torch.isfinite(a).all()
            assert not torch.allclose(a, m(y, x), rtol=0, atol=1e-6)  # x is the reference (GS_HVS)
    assert distance(x, x, metric="mdsi").abs().max() == 0
    assert create_metric("mdsi").lower_is_better and create_metric("mdsi").symmetric is False


def test_grey_is_three_equal_channels():
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(2, 1, 30, 41, generator=g), torch.rand(2, 1, 30, 41, generator=g)
    torch.testing.assert_close(mdsi(x, y), mdsi(x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1)), rtol=0, atol=0)


def test_dtype_promotion_and_data_range():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(3, 3, 48, 41, generator=g, dtype=torch.float64)
    y = (x + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    m = create_metric("mdsi")
    v64 = m(x, y)
    mixed = m(x.float(), y)
    assert v64.dtype == torch.float64 and mixed.dtype == torch.float64
    torch.testing.assert_close(mixed, m(x.float().double(), y), rtol=0, atol=1e-12)
    v32 = m(x.float(), y.float())
    assert v32.dtype == torch.float32
    torch.testing.assert_close(v32.double(), v64, rtol=0, atol=1e-6)
    byte = create_metric("mdsi", data_range=255)(x * 255, y * 255)
    torch.testing.assert_close(byte, v64, rtol=0, atol=1e-10)


@pytest.mark.parametrize("combination", ["sum", "mult"])
def test_finite_gradients(combination):
    g = torch.Generator().manual_seed(5)
    x = torch.rand(2, 3, 24, 24, generator=g)
    m = create_metric("mdsi", combination=combination)
    pairs = {
        "x == y": (x, x.clone()),
        "random": (x, torch.rand(2, 3, 24, 24, generator=g)),
        "flat images": (torch.full_like(x, 0.5), torch.full_like(x, 0.5)),
        "different flat images": (torch.full_like(x, 0.2), torch.full_like(x, 0.7)),
        "black vs random": (torch.zeros_like(x), x),
        "black vs black": (torch.zeros_like(x), torch.zeros_like(x)),
    }
    for label, (a, b) in pairs.items():
        a, b = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
        value = m(a, b)
        assert torch.isfinite(value).all(), label
        value.sum().backward()
        assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all(), label
    loss = create_metric("mdsi", combination=combination, as_loss=True)
    a = x.clone().requires_grad_(True)
    loss(a, torch.rand(2, 3, 24, 24, generator=g)).backward()
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0


def test_negative_gcs_takes_matlabs_complex_branch(reference_dir):
    """Reds against shifted cyans make CS and GS_HVS negative: MATLAB's powers of them are complex.
    The authors' value (last row of expected.csv) and one computed with torch's complex powers
    (principal branch, as MATLAB's) agree with the module's real/imaginary-part arithmetic."""
    from percepmetric.metrics import mdsi as module
    from percepmetric.metrics.fsim import similarity
    from percepmetric.metrics.gmsd import prewitt_magnitude

    row = reference_rows(reference_dir)[-1]
    assert row["reference"] == "mdsi/red_21x20.png"
    x, y = load_pair(reference_dir, row, torch.float64)
    pair = torch.cat((x, y)) * 255
    lhm = torch.einsum("kc,nchw->nkhw", torch.tensor(module.LHM_MATRIX, dtype=torch.float64), pair)
    g1, g2, gf = prewitt_magnitude(torch.cat((lhm[:, :1], lhm[:, :1].mean(dim=0, keepdim=True))))
    gs = similarity(g1, g2, 140) + similarity(g2, gf, 55) - similarity(g1, gf, 55)
    h, mm = lhm[:, 1], lhm[:, 2]
    cs = (2 * (h[0] * h[1] + mm[0] * mm[1]) + 550) / (h[0] ** 2 + h[1] ** 2 + mm[0] ** 2 + mm[1] ** 2 + 550)
    assert (gs < 0).any() and (cs < 0).any() and (0.6 * gs + 0.4 * cs < 0).any()
    gs, cs = gs.to(torch.complex128).flatten(), cs.to(torch.complex128).flatten()
    for combination, gcs in (("sum", 0.6 * gs + 0.4 * cs), ("mult", gs**0.2 * cs**0.1)):
        v = (gcs**0.5) ** 0.5
        want = ((v - v.mean()).abs().mean() ** 0.25).item()
        got = mdsi(x, y, combination=combination).item()
        assert abs(got - want) < 1e-8 and abs(got - float(row[f"mdsi_{combination}"])) < 1e-8


def test_bad_inputs():
    m = create_metric("mdsi")
    ok = torch.rand(1, 3, 16, 16)
    with pytest.raises(InputError, match="differ in shape"):
        m(ok, torch.rand(1, 3, 16, 17))
    for option, value in (("combination", "prod"), ("convention", "piq")):
        with pytest.raises(InputError, match=option) as info:
            create_metric("mdsi", **{option: value})
        assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="no option"):
        create_metric("mdsi", alpha=0.6)


def test_registry_round_trip():
    m = create_metric("mdsi", combination="MULT")
    assert m.options == {"data_range": 1.0, "combination": "mult", "convention": "matlab"}
    assert m.spec == "mdsi(combination=mult,convention=matlab,data_range=1.0)"
    assert m.differentiable and m.channels == (1, 3)
    x, y = torch.rand(2, 3, 20, 20), torch.rand(2, 3, 20, 20)
    torch.testing.assert_close(functional.mdsi(x, y), create_metric("mdsi")(x, y))
    torch.testing.assert_close(m.to_distance(m(x, y)), m(x, y))


def test_cli_prints_the_reference_value(reference_dir):
    row = reference_rows(reference_dir)[10]  # the whole TID2013 pair
    printed = cli_distance_value(reference_dir / row["reference"], reference_dir / row["distorted"], "mdsi")
    assert abs(printed - float(row["mdsi_sum"])) < 1e-5
