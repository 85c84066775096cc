"""SR-SIM: parity with the authors' SR_SIM.m (run under Octave), properties, gradients, bad input, CLI."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest
import torch

from percepmetric import InputError, create_metric, distance, functional
from percepmetric.io import load_image
from percepmetric.metrics.srsim import spectral_residual_saliency, srsim


def reference_rows(reference_dir):
    """Rows of tests/data/srsim/expected.csv (made by tests/reference/srsim/make_reference.py)."""
    with open(reference_dir / "srsim" / "expected.csv", newline="") as f:
        return list(csv.DictReader(f))


def load_pair(reference_dir, row):
    x = load_image(reference_dir / row["reference"])
    y = load_image(reference_dir / row["distorted"])
    if row["crop"]:
        r0, c0, h, w = map(int, row["crop"].split())
        x, y = x[..., r0 : r0 + h, c0 : c0 + w], y[..., r0 : r0 + h, c0 : c0 + w]
    return x, y


def test_reference_set_covers_sizes_and_colours(reference_dir):
    rows = reference_rows(reference_dir)
    shapes = {tuple(load_pair(reference_dir, r)[0].shape[1:]) for r in rows}
    assert {c for c, _, _ in shapes} == {1, 3}
    assert any(h % 2 and w % 2 for _, h, w in shapes) and any(h != w for _, h, w in shapes)
    assert any(min(h, w) >= 384 for _, h, w in shapes)  # the downsampled branch (F = 2)


@pytest.mark.parametrize("precision,tolerance", [("input", 1e-6), ("float64", 1e-7)])
def test_authors_values(reference_dir, precision, tolerance):
    m = create_metric("srsim", precision=precision)
    for row in reference_rows(reference_dir):
        x, y = load_pair(reference_dir, row)
        got = m(x, y)
        assert got.shape == (1,) and got.dtype == torch.float32
        assert abs(got.item() - float(row["value"])) < tolerance, row


def test_batched_equals_reference_values(reference_dir):
    rows = [r for r in reference_rows(reference_dir) if r["reference"].startswith("srsim/grey_121x88")]
    pairs = [load_pair(reference_dir, r) for r in rows]
    x, y = torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])
    got = create_metric("srsim")(x, y)
    expected = torch.tensor([float(r["value"]) for r in rows])
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_identity_and_distance():
    g = torch.Generator().manual_seed(0)
    for c in (1, 3):
        x = torch.rand(2, c, 40, 52, generator=g)
        m = create_metric("srsim")
        value = m(x, x.clone())
        torch.testing.assert_close(value, torch.ones(2), rtol=0, atol=1e-6)
        torch.testing.assert_close(m.to_distance(value), torch.zeros(2), rtol=0, atol=1e-6)
        assert distance(x, x, metric="srsim").abs().max() < 1e-6
    flat = torch.full((1, 3, 16, 16), 0.5)
    torch.testing.assert_close(create_metric("srsim")(flat, flat), torch.ones(1))  # MATLAB: 0/0


def test_symmetric_and_bounded():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 3, 33, 47, generator=g)
    y = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    m = create_metric("srsim")
    a, b = m(x, y), m(y, x)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert ((a > 0) & (a < 1)).all()


def test_batch_equals_single_images():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(4, 3, 37, 50, generator=g)
    y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    m = create_metric("srsim")
    single = torch.cat([m(x[i : i + 1], y[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(m(x, y), single, rtol=0, atol=1e-6)


def test_dtype_promotion_and_precision():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 48, 40, generator=g, dtype=torch.float64)
    y = (x + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    v64 = srsim(x, y)
    mixed = create_metric("srsim")(x.float(), y)
    assert v64.dtype == torch.float64 and mixed.dtype == torch.float64
    torch.testing.assert_close(mixed, v64, rtol=0, atol=1e-6)  # x rounded to float32 first
    v32 = srsim(x.float(), y.float())
    assert v32.dtype == torch.float32
    torch.testing.assert_close(v32.double(), v64, rtol=0, atol=1e-5)
    torch.testing.assert_close(srsim(x.float(), y.float(), precision="float64").double(), v64, rtol=0, atol=1e-6)


def test_data_range_and_8bit():
    g = torch.Generator().manual_seed(4)
    x = torch.randint(0, 256, (2, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 256, (2, 3, 32, 32), generator=g, dtype=torch.uint8)
    one = create_metric("srsim")(x.double() / 255, y.double() / 255)
    byte = create_metric("srsim", data_range=255)(x.double(), y.double())
    torch.testing.assert_close(one, byte, rtol=0, atol=1e-10)
    torch.testing.assert_close(functional.srsim(x.double() / 255, y.double() / 255), one)


def test_grey_equals_three_equal_channels():
    g = torch.Generator().manual_seed(5)
    x, y = torch.rand(2, 1, 30, 30, generator=g), torch.rand(2, 1, 30, 30, generator=g)
    m = create_metric("srsim")
    torch.testing.assert_close(m(x, y), m(x.repeat(1, 3, 1, 1), y.repeat(1, 3, 1, 1)), rtol=0, atol=1e-5)


def test_finite_gradients():
    g = torch.Generator().manual_seed(6)
    x = torch.rand(2, 3, 24, 28, generator=g)
    m = create_metric("srsim")
    pairs = {
        "x == y": (x, x.clone()),
        "random": (x, torch.rand(x.shape, generator=g)),
        "flat images": (torch.full_like(x, 0.5), torch.full_like(x, 0.5)),
        "black vs random": (torch.zeros_like(x), x),
    }
    for label, (a, b) in pairs.items():
        a, b = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
        value = m(a, b)
        assert torch.isfinite(value).all(), label
        (1 - value).sum().backward()
        assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all(), label
    loss = create_metric("srsim").as_loss()
    a = x.clone().requires_grad_(True)
    loss(a, x).backward()
    assert torch.isfinite(a.grad).all()


def test_gradcheck_small_image():
    g = torch.Generator().manual_seed(7)
    x = torch.rand(1, 1, 12, 13, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.rand(1, 1, 12, 13, generator=g, dtype=torch.float64)
    m = create_metric("srsim")
    assert torch.autograd.gradcheck(lambda a: m(a, y), (x,), eps=1e-6, atol=1e-5, fast_mode=True)


def test_saliency_in_unit_range_at_full_size():
    g = torch.Generator().manual_seed(8)
    y = torch.rand(3, 1, 45, 61, generator=g, dtype=torch.float64) * 255
    s = spectral_residual_saliency(y)
    assert s.shape == y.shape
    assert s.min() > -0.1 and s.max() < 1.1  # [0, 1] up to the bicubic overshoot


def test_bad_inputs():
    m = create_metric("srsim")
    ok = torch.rand(1, 3, 16, 16)
    with pytest.raises(InputError, match="smaller than the 8x8"):
        m(torch.rand(1, 3, 7, 16), torch.rand(1, 3, 7, 16))
    with pytest.raises(InputError, match="outside"):
        m(ok * 2, ok)
    with pytest.raises(InputError, match="channels"):
        m(torch.rand(1, 2, 16, 16), torch.rand(1, 2, 16, 16))
    for option, value in (("convention", "piq"), ("precision", "half")):
        with pytest.raises(InputError, match=option):
            create_metric("srsim", **{option: value})


def test_registry_round_trip():
    m = create_metric("SRSIM")
    assert m.options == {"data_range": 1.0, "convention": "matlab", "precision": "input"}
    assert m.lower_is_better is False and m.differentiable
    torch.testing.assert_close(m.to_distance(torch.tensor([0.75])), torch.tensor([0.25]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    g = torch.Generator().manual_seed(9)
    x, y = torch.rand(2, 3, 40, 40, generator=g), torch.rand(2, 3, 40, 40, generator=g)
    m = create_metric("srsim")
    torch.testing.assert_close(m(x.cuda(), y.cuda()).cpu(), m(x, y), rtol=0, atol=1e-5)


def test_cli_distance(reference_dir):
    row = reference_rows(reference_dir)[0]
    out = subprocess.run(
        [sys.executable, "-m", "percepmetric.cli", "distance", str(reference_dir / row["reference"]),
         str(reference_dir / row["distorted"]), "-m", "srsim"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip().splitlines()[-1]
    assert line.startswith("srsim")
    assert abs(float(row["value"]) - float(line.split()[-1])) < 1e-5  # the score itself, as fsim


def test_close_to_piq(reference_dir):
    piq = pytest.importorskip("piq")
    for row in reference_rows(reference_dir):
        x, y = load_pair(reference_dir, row)
        assert abs(piq.srsim(x, y, data_range=1.0).item() - float(row["value"])) < 1e-5, row
