"""MAD: parity with the authors' MAD_index.m (run under Octave), block statistics, properties, gradients, bad input."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from percepmetric import InputError, create_metric, distance
from percepmetric.io import load_image
from percepmetric.metrics.eight_bit import values_8bit
from percepmetric.metrics.mad import (
    BSIZE,
    MIN_SIZE,
    _block_grid,
    _block_moments,
    _smallest_neighbour,
    blend,
    luminance,
    mad_indices,
)

from helpers import cli_distance_value

# MAD is unbounded (0 .. ~200 here): the parity target is 1e-4 relative. Measured on the
# reference pairs: float64 within 1.4e-13 relative (MAD, HI and LO), float32 within 2.2e-5.
TOLERANCE = 1e-4
MEASURED_F64 = 1e-12
MEASURED_F32 = 5e-5


def reference_rows(reference_dir) -> list[dict[str, str]]:
    with open(reference_dir / "mad" / "expected.csv", newline="") as f:
        return list(csv.DictReader(f))


def load_pair(reference_dir, row, dtype=torch.float64):
    x = load_image(reference_dir / row["reference"]).to(dtype)
    y = load_image(reference_dir / row["distorted"]).to(dtype)
    if row["crop"]:
        r0, c0, h, w = map(int, row["crop"].split())
        x, y = x[..., r0 : r0 + h, c0 : c0 + w], y[..., r0 : r0 + h, c0 : c0 + w]
    return x, y


def _rel(got: float, want: float) -> float:
    return abs(got - want) / abs(want) if want else abs(got)


def test_reference_covers_sizes_and_colours(reference_dir):
    rows = reference_rows(reference_dir)
    shapes = {tuple(load_pair(reference_dir, r)[0].shape) for r in rows}
    assert any(s[1] == 1 for s in shapes) and any(s[1] == 3 for s in shapes)
    assert any(s[2] != s[3] for s in shapes)  # non-square
    assert any(s[2] % 2 and s[3] % 2 for s in shapes)  # odd sizes: the CSF and log-Gabor grids
    assert any((s[2] - BSIZE) % 4 == 0 for s in shapes) and any((s[2] - BSIZE) % 4 for s in shapes)
    assert any(min(s[2:]) == MIN_SIZE for s in shapes)  # the smallest size
    assert any(float(r["hi"]) == 0 for r in rows) and sum(float(r["hi"]) > 0 for r in rows) >= 10
    assert len(shapes) >= 8


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_parity_with_authors_code(reference_dir, dtype):
    bound = MEASURED_F64 if dtype == torch.float64 else MEASURED_F32
    for row in reference_rows(reference_dir):
        x, y = load_pair(reference_dir, row, dtype)
        got = create_metric("mad")(x, y)
        assert got.shape == (1,) and got.dtype == dtype
        err = _rel(got.item(), float(row["value"]))
        assert err < TOLERANCE, row
        assert err < bound, (row, err)
        m, hi, lo = mad_indices(x, y)
        assert _rel(hi.item(), float(row["hi"])) < bound, row
        assert _rel(lo.item(), float(row["lo"])) < bound, row


def test_parity_from_8bit_codes_and_255_range(reference_dir):
    """The benchmark's uint8 path and data_range=255 give the same numbers."""
    for row in reference_rows(reference_dir)[4:]:  # the smaller pairs
        x, y = load_pair(reference_dir, row)
        codes = [(t * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous() for t in (x, y)]
        got = values_8bit(create_metric("mad"), *codes)
        assert _rel(got.item(), float(row["value"])) < MEASURED_F32, row
        byte = create_metric("mad", data_range=255)((x * 255).round(), (y * 255).round())
        assert _rel(byte.item(), float(row["value"])) < MEASURED_F64, row


def test_batch_of_reference_pairs(reference_dir):
    rows = [r for r in reference_rows(reference_dir) if r["reference"].startswith("srsim/grey_121x88")]
    pairs = [load_pair(reference_dir, r) for r in rows]
    got = create_metric("mad")(torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs]))
    for value, row in zip(got.tolist(), rows):
        assert _rel(value, float(row["value"])) < MEASURED_F64


# ---------------------------------------------------------------- the block statistics, against the C loops

def _ical_stat_c(a: np.ndarray) -> tuple[np.ndarray, ...]:
    """ical_stat.c written out: 16x16 blocks, corners stepping by 4, values on the top-left 4x4."""
    h, w = a.shape
    out = [np.zeros_like(a) for _ in range(3)]
    for j in range(0, h - 15, 4):
        for i in range(0, w - 15, 4):
            b = a[j : j + 16, i : i + 16]
            d = b - b.mean()
            stmp = np.sqrt((d**2).sum() / 256)
            std = np.sqrt((d**2).sum() / 255)
            skw = (d**3).sum() / 256 / stmp**3 if stmp else 0.0
            krt = (d**4).sum() / 256 / stmp**4 if stmp else 0.0
            for o, v in zip(out, (std, skw, krt)):
                o[j : j + 4, i : i + 4] = v
    return tuple(out)


def _ical_std_c(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """ical_std.c written out: ``(std of x, min 8x8 std of y nearby, mean of y)``."""
    h, w = x.shape
    std2, std1, mean, tmp = (np.zeros_like(x) for _ in range(4))
    for j in range(0, h - 15, 4):
        for i in range(0, w - 15, 4):
            mean[j : j + 4, i : i + 4] = y[j : j + 16, i : i + 16].mean()
            std2[j : j + 4, i : i + 4] = x[j : j + 16, i : i + 16].std(ddof=1)
            tmp[j : j + 4, i : i + 4] = y[j : j + 8, i : i + 8].std(ddof=1)
    for j in range(0, h - 15, 4):
        for i in range(0, w - 15, 4):
            v = tmp[j, i]
            for jb in (j, j + 5):
                for ib in (i, i + 5):
                    if jb < h - 15 and ib < w - 15:
                        v = min(v, tmp[jb, ib])
            std1[j : j + 4, i : i + 4] = v
    return std2, std1, mean


@pytest.mark.parametrize("shape", [(34, 34), (36, 41), (48, 39), (53, 64)])
def test_block_statistics_are_the_mex_files(shape):
    g = np.random.default_rng(shape[0])
    a = g.gamma(2.0, 30.0, size=shape) + 100.0  # a large mean: the one-pass sums would lose digits
    b = g.normal(0.0, 3.0, size=shape)
    h, w = shape
    rows, cols = _block_grid(h, w)
    corner = (slice(0, 4 * rows, 4), slice(0, 4 * cols, 4))
    for dtype, tol in ((torch.float64, 1e-11), (torch.float32, 2e-4)):
        t = torch.from_numpy(a).to(dtype)[None]
        _, m2, m3, m4 = _block_moments(t, 4, rows, cols, order=4)
        var = m2 / 256
        stats = (torch.sqrt(m2 / 255), m3 / 256 / var**1.5, m4 / 256 / var**2)
        for mine, theirs in zip(stats, _ical_stat_c(a)):
            np.testing.assert_allclose(mine[0].double().numpy(), theirs[corner], rtol=tol)
        tb = torch.from_numpy(b).to(dtype)[None]
        std2, std1, mean = _ical_std_c(b, a)
        _, m2b = _block_moments(tb, 4, rows, cols, order=2)
        mean_a, _ = _block_moments(t, 4, rows, cols, order=2)
        _, m2s = _block_moments(t, 2, rows, cols, order=2)
        np.testing.assert_allclose(torch.sqrt(m2b / 255)[0].double().numpy(), std2[corner], rtol=tol)
        np.testing.assert_allclose(mean_a[0].double().numpy(), mean[corner], rtol=tol)
        np.testing.assert_allclose(_smallest_neighbour(torch.sqrt(m2s / 63), h, w)[0].double().numpy(),
                                   std1[corner], rtol=tol)


def test_luminance_table_saturates_at_254():
    """``LUT(uint8(v) + 1)``: uint8(255) + 1 is 255, so code 255 reads the entry of 254."""
    grey = torch.tensor([[[0.0, 1.0, 254.0, 255.0]]], dtype=torch.float64)
    lut = luminance(grey, torch.tensor([True]))
    np.testing.assert_allclose(lut[0, 0].numpy(), 0.02874 * np.array([0.0, 1.0, 254.0, 254.0]) ** (2.2 / 3))
    float_path = luminance(grey, torch.tensor([False]))
    assert float_path[0, 0, 3] > float_path[0, 0, 2]


def test_blend_is_the_sigmoid_of_lines_84_to_89():
    hi = torch.tensor([0.0, 1.0, 50.0, 3e4, 7.0], dtype=torch.float64)
    lo = torch.tensor([2.0, 1.5, 2.5, 3.0, 0.0], dtype=torch.float64)
    b1, b2 = np.exp(-2.55 / 3.35), 1 / (np.log(10) * 3.35)
    sig = 1 / (1 + b1 * hi.numpy() ** b2)
    want = lo.numpy() ** (1 - sig) * hi.numpy() ** sig
    np.testing.assert_allclose(blend(hi, lo).numpy(), want, rtol=1e-14)


# ---------------------------------------------------------------- properties

def _pair(n=2, channels=3, h=40, w=45, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, channels, h // 4, w // 4, generator=g, dtype=torch.float64)
    x = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    y = (x + 0.15 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return x, y


def test_identity_is_zero_and_asymmetric(reference_dir):
    m = create_metric("mad")
    for channels in (1, 3):
        x, _ = _pair(channels=channels)
        assert torch.equal(m(x, x.clone()), torch.zeros(2, dtype=torch.float64))
    row = next(r for r in reference_rows(reference_dir) if r["distorted"].endswith("grey_121x88_jpeg.png"))
    x, y = load_pair(reference_dir, row)
    assert abs(m(x, y).item() - m(y, x).item()) > 1e-3  # x is the reference
    assert not m.symmetric and m.lower_is_better
    assert m.to_distance(torch.tensor([12.5])).item() == pytest.approx(12.5)
    assert distance(x, x, metric="mad").abs().max() == 0


def test_gradients_are_finite_and_match_finite_differences():
    x, y = _pair(n=1, channels=1)
    m = create_metric("mad")
    for a, b in ((x, x.clone()), (x, y), (torch.zeros_like(x), x), (torch.full_like(x, 0.5), torch.full_like(x, 0.5))):
        a, b = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
        m(a, b).sum().backward()
        assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()
    # a smooth reference and a rough distorted image: HI > 0 (noise on a textured image is masked, HI = 0)
    rough = torch.rand(1, 1, 36, 37, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    smooth = x[..., :36, :37].clone().requires_grad_(True)
    _, hi, lo = mad_indices(smooth, rough)
    assert hi.item() > 0 and lo.item() > 0
    assert torch.autograd.gradcheck(lambda a: m(a, rough), (smooth,), eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=True)
    assert torch.autograd.gradcheck(lambda b: m(smooth.detach(), b), (rough.clone().requires_grad_(True),), eps=1e-6,
                                    atol=1e-5, rtol=1e-3, fast_mode=True)


def test_bad_inputs():
    m = create_metric("mad")
    with pytest.raises(InputError, match="smaller than the 34x34") as info:
        m(torch.rand(1, 3, 33, 40), torch.rand(1, 3, 33, 40))
    assert "\n" not in str(info.value)
    m(torch.rand(1, 3, 34, 34), torch.rand(1, 3, 34, 34))  # the minimum works
    for option, value in (("convention", "pyiqa"), ("quantize", "sometimes")):
        with pytest.raises(InputError, match=option):
            create_metric("mad", **{option: value})


def test_registry_round_trip():
    m = create_metric("mad", quantize="False")
    assert m.options == {"data_range": 1.0, "convention": "matlab", "quantize": False}
    assert create_metric("mad").spec == "mad(convention=matlab,data_range=1.0,quantize=auto)"
    assert m.differentiable and m.min_size == 34


def test_cli_distance(reference_dir):
    row = next(r for r in reference_rows(reference_dir) if r["distorted"].endswith("rgb_63x45_jpeg.png"))
    printed = cli_distance_value(reference_dir / row["reference"], reference_dir / row["distorted"], "mad")
    assert _rel(printed, float(row["value"])) < 1e-5  # the CLI prints 6 significant digits
